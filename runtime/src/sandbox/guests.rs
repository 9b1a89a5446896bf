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

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// How much nicer guest threads are than the thread that starts them (the
/// broker's), capped at 19: below every normal process, above idle.
pub const GUEST_NICE: i32 = 10;

static GUESTS: OnceLock<Runtime> = OnceLock::new();

fn handle() -> &'static Handle {
    GUESTS
        .get_or_init(|| {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("p2pb-guest")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .expect("start the guest runtime")
        })
        .handle()
}

/// Lower the calling thread's priority (Linux: niceness is per thread and
/// inherited), relative to what it inherited, so a broker started nice
/// never gets guests above itself. Raising niceness needs no privilege; if
/// it fails the guest still runs.
fn lower_priority() {
    // SAFETY: gettid, getpriority and setpriority on this thread only.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + GUEST_NICE).min(19));
    }
}

/// Aborts the task when the caller stops waiting, as dropping the call's
/// future did before it moved here: nothing runs on that nobody awaits.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run `fut` on the guest runtime and wait for it.
pub async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut task = AbortOnDrop(handle().spawn(fut));
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
            // SAFETY: getpriority on this thread.
            let nice =
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            (std::thread::current().name().map(str::to_owned), nice)
        })
        .await;
        assert_eq!(name.as_deref(), Some("p2pb-guest"));
        // SAFETY: getpriority on this thread.
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert!(
            nice >= (ours + GUEST_NICE).min(19),
            "guest nice {nice}, ours {ours}"
        );
        let here = std::thread::current().name().map(str::to_owned);
        assert_ne!(here.as_deref(), Some("p2pb-guest"));
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
