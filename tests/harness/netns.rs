//! A private network namespace for one test: only loopback, set up so that
//! SSDP multicast (239.255.255.250) stays on it. Fake gateways answer from
//! 127.0.0.x addresses, so a test can play the gateway, another LAN host
//! and the host's own services without touching any real network.
//!
//! The namespace is made with `unshare(CLONE_NEWNET)` on a fresh thread,
//! which then builds the test's tokio runtime: every runtime thread, and
//! every socket the broker and the fakes open, inherit the namespace. It
//! disappears with its last thread, also when the test fails. Needs root
//! (CAP_SYS_ADMIN); without it the test fails and says so.

use std::future::Future;
use std::process::Command;

/// The namespace a thread is in, as the kernel names it.
fn netns_of(path: &str) -> String {
    std::fs::read_link(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Run `test` on a fresh thread, in a fresh network namespace, on a tokio
/// runtime made there. Build components before (the build needs no
/// network, but it need not run in here either).
pub fn run<T, F>(test: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    std::thread::spawn(move || {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            uid, 0,
            "SSDP fakes need root for a private network namespace; run the suite as root, as CI does"
        );
        let before = netns_of("/proc/thread-self/ns/net");
        // SAFETY: unshare on this thread only; it takes no pointers.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET) failed");
        // Refuse to go on unless this thread really left its namespace.
        assert_ne!(
            netns_of("/proc/thread-self/ns/net"),
            before,
            "still in the test's own network namespace"
        );
        // Children inherit this thread's namespace.
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "lo", "multicast", "on"],
            &[
                "route",
                "add",
                "239.255.255.250/32",
                "dev",
                "lo",
                "src",
                "127.0.0.1",
            ],
        ] {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("run `ip`");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(test())
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
