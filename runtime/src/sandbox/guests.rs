//! Where guest code runs: a tokio runtime of its own, on threads of lower
//! CPU priority than the broker's.
//!
//! Epoch yields alone are not enough on a small machine: a spinning guest
//! yields every tick (10 ms) but is rescheduled at once, so with two MODs
//! spinning on two cores every task of the broker — an API request, a
//! renewal — waits a tick per scheduling point, and `p2pb status` took
//! 237 ms (daemon bench). On their own runtime, guests never hold a worker
//! the API needs; at nice 10 the kernel gives the broker's threads and any
//! other process the CPU first (weight 1024 against 110), so a spinning MOD
//! uses only CPU nobody else wants, until its deadline stops it.
//!
//! A MOD's sockets belong to the network namespace of the thread that
//! opens them. The guest runtime's threads live in the namespace of the
//! thread that started it — the daemon's, which is the whole process's. A
//! caller on a thread that entered another namespace (the lab tests'
//! in-process harness does) runs its call inline instead, where its
//! sockets must be: a call never changes namespace by moving threads.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// How much nicer guest threads are than the thread that starts them (the
/// broker's), capped at 19: below every normal process, above idle.
pub const GUEST_NICE: i32 = 10;

/// The guest runtime and the network namespace its threads live in.
static GUESTS: OnceLock<(Runtime, Option<u64>)> = OnceLock::new();

fn guests() -> &'static (Runtime, Option<u64>) {
    GUESTS.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let rt = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("p2pb-guest")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("start the guest runtime");
        // Its threads are spawned from this one and share its namespace.
        (rt, netns())
    })
}

/// The calling thread's network namespace (its inode), if readable.
pub fn netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

fn handle() -> Option<&'static Handle> {
    let (rt, ns) = guests();
    let here = netns();
    (here.is_some() && here == *ns).then(|| rt.handle())
}

/// Lower the calling thread's priority (Linux: niceness is per thread and
/// inherited), relative to what it inherited, so a broker started nice
/// never gets guests above itself. Raising niceness needs no privilege; if
/// it fails the guest still runs.
fn lower_priority() {
    let nice = (thread_nice() + GUEST_NICE).min(19);
    // SAFETY: gettid and setpriority on this thread only.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
    }
}

/// The calling thread's niceness.
fn thread_nice() -> i32 {
    // SAFETY: gettid and getpriority on this thread only.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Aborts the task when the caller stops waiting, as dropping the call's
/// future did before it moved here: nothing runs on that nobody awaits.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run `fut` on the guest runtime and wait for it; inline if the caller
/// is in another network namespace than the guest runtime.
pub async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let Some(guests) = handle() else {
        return fut.await;
    };
    let mut task = AbortOnDrop(guests.spawn(fut));
    match (&mut task.0).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only abort cancels it, and only our drop aborts.
        Err(e) => unreachable!("guest task cancelled while awaited: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guests_run_on_their_own_lower_priority_threads() {
        let (name, nice) = run(async {
            (
                std::thread::current().name().map(str::to_owned),
                thread_nice(),
            )
        })
        .await;
        assert_eq!(name.as_deref(), Some("p2pb-guest"));
        let ours = thread_nice();
        assert!(
            nice >= (ours + GUEST_NICE).min(19),
            "guest nice {nice}, ours {ours}"
        );
        let here = std::thread::current().name().map(str::to_owned);
        assert_ne!(here.as_deref(), Some("p2pb-guest"));
    }

    /// The lab harness's case: a thread that entered another network
    /// namespace keeps its calls (and their sockets) in it.
    #[test]
    fn a_caller_in_another_namespace_runs_its_call_where_it_is() {
        // Start the guest runtime from this process's namespace first.
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run(async {
                (netns(), std::thread::current().name().map(str::to_owned))
            }));
        assert_eq!(outer.1.as_deref(), Some("p2pb-guest"));
        let (inner_ns, ran_ns, ran_on) = std::thread::spawn(|| {
            // SAFETY: unshare on this thread only; it needs CAP_SYS_ADMIN,
            // which the test suite has (it builds the NAT lab).
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) needs root: {}",
                std::io::Error::last_os_error()
            );
            let inner = netns();
            let (ns, on) = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(run(async {
                    (netns(), std::thread::current().name().map(str::to_owned))
                }));
            (inner, ns, on)
        })
        .join()
        .unwrap();
        assert_ne!(inner_ns, outer.0, "a new namespace");
        assert_eq!(ran_ns, inner_ns, "the call ran in the caller's namespace");
        assert_ne!(ran_on.as_deref(), Some("p2pb-guest"));
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_stops_the_guest() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = run(async move {
            // Held until the task is dropped; then `rx` sees the sender gone.
            let _tx = tx;
            std::future::pending::<()>().await
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(20), waiting).await;
        assert!(timed_out.is_err());
        // Bounded, so a guest left running fails the test instead of hanging it.
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await;
        assert!(
            matches!(dropped, Ok(Err(_))),
            "the abandoned guest task was dropped"
        );
    }
}
