//! Process-wide settings of the daemon: its file-descriptor budget, and
//! what a panic does.

/// The highest descriptor limit the daemon asks for: far above what it
/// needs, low enough that per-descriptor tables stay small.
const NOFILE_CEILING: u64 = 1 << 20;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (at most
/// [`NOFILE_CEILING`]) and return the soft limit now in force. Distributions
/// start services at 1024, which a few busy MODs plus many clients would
/// exhaust; the systemd unit sets `LimitNOFILE` as well.
pub fn raise_nofile() -> u64 {
    let Some(lim) = nofile_limits() else {
        return 1024;
    };
    let want = lim.rlim_max.min(NOFILE_CEILING);
    if want > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            return want;
        }
        tracing::warn!(
            "cannot raise the descriptor limit from {} to {want}",
            lim.rlim_cur
        );
    }
    lim.rlim_cur
}

/// The soft `RLIMIT_NOFILE` in force (1024 if it cannot be read).
pub fn nofile() -> u64 {
    nofile_limits().map_or(1024, |l| l.rlim_cur)
}

fn nofile_limits() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// How many sockets all MODs together may hold, given the descriptor limit:
/// at most half of it, so client connections, the journal, the audit log
/// and the compiled-code cache always find a descriptor.
pub fn mod_socket_budget(nofile: u64) -> usize {
    usize::try_from(nofile / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 65_536)
}

/// Make any panic end the process. A panic inside a lock would otherwise
/// poison it and leave a daemon that answers nothing while holding the
/// socket; a process that dies is restarted by its supervisor, and the
/// journal reconciles every mapping at the next start.
pub fn abort_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        tracing::error!("the broker panicked ({info}); aborting so it can be restarted cleanly");
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "P2PB_TEST_PANIC_CHILD";

    #[test]
    fn the_socket_budget_leaves_half_the_descriptors_to_the_daemon() {
        assert_eq!(mod_socket_budget(1024), 512);
        assert_eq!(mod_socket_budget(65_536), 32_768);
        assert_eq!(mod_socket_budget(10), 16);
        assert_eq!(mod_socket_budget(u64::MAX), 65_536);
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        let now = raise_nofile();
        assert!(now >= before.rlim_cur.min(NOFILE_CEILING));
        assert!(now <= before.rlim_max);
    }

    /// A task that panics while holding the broker's lock must take the
    /// whole process down, not leave it running with a poisoned lock. The
    /// test runs itself again as a child that does exactly that.
    #[test]
    fn a_panic_under_a_lock_aborts_the_process() {
        if std::env::var_os(CHILD).is_some() {
            abort_on_panic();
            let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
            let shared = std::sync::Arc::new(std::sync::Mutex::new(0u32));
            let held = shared.clone();
            rt.spawn(async move {
                let _guard = held.lock().unwrap();
                panic!("injected panic under the lock");
            });
            // Without the hook the runtime swallows the panic and this
            // process would carry on with a poisoned lock: say so and exit
            // normally, which the parent counts as a failure.
            for _ in 0..100 {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if shared.is_poisoned() {
                    std::process::exit(0);
                }
            }
            std::process::exit(3);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "daemon::process::tests::a_panic_under_a_lock_aborts_the_process",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("injected panic"));
    }
}
