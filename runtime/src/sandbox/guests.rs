//! Where guest code runs: threads of its own, each with a single-threaded
//! tokio runtime; a call that spins makes its thread nicer
//! ([`super::priority`]).
//!
//! Epoch yields alone are not enough on a small machine: a spinning guest
//! yields every tick (10 ms) but is rescheduled at once, so with two MODs
//! spinning on two cores every task of the broker — an API request, a
//! renewal — waits a tick per scheduling point, and `p2pb status` took
//! 237 ms (daemon bench). On threads of their own, guests never hold a
//! worker the API needs, and a spinning one runs below every other thread.
//!
//! Each guest thread drives its own I/O and timers, and a call stays on
//! the thread it started on. On one multi-threaded runtime a call moved
//! between threads at every socket it opened (wasmtime-wasi waits for a new
//! socket's first readiness, which the thread holding the I/O driver had to
//! be woken to see) and again when its answer came: hand-offs between idle
//! CPUs, each a wake-up, on every map's path (BENCHMARKS.md). A new call
//! goes to a thread no spinning call has made nicer, if there is one, and
//! among those to the one with the fewest calls in flight; there are at
//! least two, so one guest spinning between its yields never holds up, or
//! slows down, every other call.
//!
//! A MOD's sockets belong to the network namespace of the thread that
//! opens them. The guest threads live in the namespace of the thread that
//! started them — the daemon's, which is the whole process's. A caller on a
//! thread that entered another namespace (the lab tests' in-process harness
//! does) runs its call inline instead, where its sockets must be: a call
//! never changes namespace by moving threads.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::{Builder, Handle};
use tokio::task::JoinHandle;

use super::priority::LanePriority;

/// One guest thread: its runtime, its priority, and how many calls it has
/// in flight.
struct Lane {
    handle: Handle,
    priority: Arc<LanePriority>,
    calls: AtomicUsize,
}

/// The guest threads and the network namespace they live in.
struct Guests {
    lanes: Vec<Lane>,
    netns: Option<u64>,
}

static GUESTS: OnceLock<Guests> = OnceLock::new();

fn guests() -> &'static Guests {
    GUESTS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        Guests {
            // Spawned from this thread: they share its namespace.
            lanes: (0..n).map(|_| start_lane()).collect(),
            netns: netns(),
        }
    })
}

/// Start a guest thread (never stopped: it lives as long as the process)
/// at the priority of the thread that starts it, and return its runtime's
/// handle. Its blocking pool's threads (`p2pb-guest-io`: name lookups)
/// start at that priority too, even when spawned while a spinning call
/// had made the guest thread nicer.
fn start_lane() -> Lane {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("p2pb-guest".into())
        .spawn(move || {
            let priority = super::priority::mark_lane();
            let base = priority.base();
            let rt = Builder::new_current_thread()
                .thread_name("p2pb-guest-io")
                .on_thread_start(move || super::priority::set_own_nice(base))
                .enable_all()
                .build()
                .expect("start a guest runtime");
            let _ = tx.send((rt.handle().clone(), priority));
            rt.block_on(std::future::pending::<()>());
        })
        .expect("spawn a guest thread");
    let (handle, priority) = rx.recv().expect("the guest thread starts its runtime");
    Lane {
        handle,
        priority,
        calls: AtomicUsize::new(0),
    }
}

/// The calling thread's network namespace (its inode), if readable.
pub fn netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// The guest thread for a new call (see the module docs: not made nicer,
/// then the fewest calls in flight, then the first, so an idle daemon keeps
/// using one warm thread), if the caller is in the guest threads'
/// namespace.
fn lane() -> Option<&'static Lane> {
    let g = guests();
    let here = netns();
    if here.is_none() || here != g.netns {
        return None;
    }
    let i = least_loaded(g.lanes.iter().map(|l| {
        let calls = l.calls.load(Ordering::Relaxed);
        (l.priority.demoted(), calls)
    }));
    g.lanes.get(i)
}

/// The index of the smallest of `loads` (demoted first, then calls in
/// flight), the first of equals (0 if empty).
fn least_loaded(loads: impl Iterator<Item = (bool, usize)>) -> usize {
    loads
        .enumerate()
        .min_by_key(|&(i, load)| (load, i))
        .map_or(0, |(i, _)| i)
}

/// A call in flight on a lane: aborts the task when the caller stops
/// waiting, as dropping the call's future did before it moved here
/// (nothing runs on that nobody awaits), and counts the call off.
struct InFlight<T> {
    task: JoinHandle<T>,
    lane: &'static Lane,
}

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        self.task.abort();
        self.lane.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Run `fut` on a guest thread and wait for it; inline if the caller is
/// in another network namespace than the guest threads.
pub async fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match lane() {
        Some(lane) => run_on(lane, fut).await,
        None => fut.await,
    }
}

/// Run `fut` on `lane` and wait for it.
async fn run_on<F>(lane: &'static Lane, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    lane.calls.fetch_add(1, Ordering::Relaxed);
    let mut call = InFlight {
        task: lane.handle.spawn(fut),
        lane,
    };
    match (&mut call.task).await {
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
    async fn guests_run_on_threads_of_their_own_that_watch_for_spinning() {
        let (name, watched) = run(async {
            (
                std::thread::current().name().map(str::to_owned),
                super::super::priority::lane_tid().is_some(),
            )
        })
        .await;
        assert_eq!(name.as_deref(), Some("p2pb-guest"));
        assert!(watched, "calls on a guest thread are watched for spinning");
        let here = std::thread::current().name().map(str::to_owned);
        assert_ne!(here.as_deref(), Some("p2pb-guest"));
        assert!(super::super::priority::lane_tid().is_none());
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

    #[test]
    fn a_call_goes_to_the_first_lane_with_the_fewest_calls() {
        let calm = |calls: &[usize]| calls.iter().map(|&n| (false, n)).collect::<Vec<_>>();
        assert_eq!(least_loaded(calm(&[0, 0]).into_iter()), 0);
        assert_eq!(least_loaded(calm(&[1, 0]).into_iter()), 1);
        assert_eq!(least_loaded(calm(&[2, 1, 1, 3]).into_iter()), 1);
        assert_eq!(least_loaded(std::iter::empty()), 0);
    }

    /// The lane chosen for a new call is never one a spinning call made
    /// nicer while another is not (the unit test below covers the order).
    #[test]
    fn a_new_call_skips_a_lane_a_spinning_call_made_nicer() {
        let lanes = &guests().lanes;
        lanes[0].priority.demote();
        let picked_first = lane().map(|l| std::ptr::eq(l, &lanes[0]));
        lanes[0].priority.restore();
        assert_eq!(picked_first, Some(false));
        assert!(!lanes[0].priority.demoted());
    }

    /// A lane a spinning call made nicer gets new calls only when every
    /// lane is: its calls would run at the spinner's priority.
    #[test]
    fn a_call_avoids_a_lane_made_nicer_by_a_spinning_call() {
        assert_eq!(least_loaded([(true, 0), (false, 3)].into_iter()), 1);
        assert_eq!(least_loaded([(true, 2), (true, 1)].into_iter()), 1);
        assert_eq!(
            least_loaded([(false, 1), (true, 0), (false, 1)].into_iter()),
            0
        );
    }

    /// A guest that blocks its thread (between two epoch yields, say)
    /// holds up only the calls on its own lane: another lane's call runs
    /// meanwhile, on another thread.
    #[tokio::test]
    async fn a_blocked_lane_does_not_hold_up_another() {
        let lanes = &guests().lanes;
        assert!(lanes.len() >= 2, "at least two guest threads");
        let (tx, rx) = std::sync::mpsc::channel::<std::thread::ThreadId>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let blocked = run_on(&lanes[0], async move {
            let _ = started_tx.send(());
            // Bounded, so a lane that never runs the other call fails the
            // test instead of hanging it.
            let other = rx.recv_timeout(std::time::Duration::from_secs(10));
            (std::thread::current().id(), other)
        });
        let blocked = tokio::spawn(blocked);
        // The first lane's thread is blocked from here on.
        started.await.unwrap();
        let freed = run_on(&lanes[1], async move {
            tx.send(std::thread::current().id()).unwrap();
        });
        freed.await;
        let (first, second) = blocked.await.unwrap();
        let second = second.expect("the second lane ran while the first was blocked");
        assert_ne!(first, second, "two lanes are two threads");
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
