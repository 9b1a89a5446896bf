//! A guest thread's CPU priority: the broker's own, until a call on it
//! spins.
//!
//! A MOD call mostly waits for its gateway. When the answer comes, the
//! rest of the call, the broker's bookkeeping and the client's wake-up are
//! the map's critical path; at a lower priority, the guest thread lost the
//! CPU to whatever else was running then (in the lab, the gateway itself,
//! busy logging and listing its rules after it answered) and a whole
//! `p2pb map` took about 1 ms longer (BENCHMARKS.md, eighth pass). So a
//! guest thread runs at the broker's priority, and a call that has used
//! [`SPIN_CPU`] of CPU on it — a MOD computing or spinning, not waiting —
//! makes its thread [`GUEST_NICE`] nicer until it ends: from then on the
//! kernel gives the broker's threads and every other process the CPU first
//! (weight 1024 against 110), and the spinning MOD gets only CPU nobody
//! else wants, until its deadline stops it.
//!
//! Getting the priority back needs `RLIMIT_NICE` (the systemd unit sets
//! `LimitNICE=+0`) or `CAP_SYS_NICE`; without either, a thread once
//! demoted stays so (the priority every guest thread had before), and the
//! daemon says so, once for each such thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much nicer a spinning call's thread becomes than the broker's,
/// capped at 19: below every normal process, above idle.
pub const GUEST_NICE: i32 = 10;

/// CPU a call may use on its thread before it counts as spinning: one
/// epoch tick, the interval at which a guest running wasm yields (a map
/// uses well under a millisecond).
pub const SPIN_CPU: Duration = super::engine::EPOCH_TICK;

/// A guest thread's priority: its own, and how many of its calls spin.
#[derive(Debug)]
pub(crate) struct LanePriority {
    tid: libc::pid_t,
    base: i32,
    /// Calls spinning on it now, and whether it cannot be restored.
    spinning: Mutex<(u32, bool)>,
}

thread_local! {
    /// Set on guest threads: calls there are watched for spinning.
    static LANE: std::cell::OnceCell<Arc<LanePriority>> = const { std::cell::OnceCell::new() };
}

/// Make the calling thread a guest thread whose calls are watched, at the
/// priority it has now; its priority record.
pub(crate) fn mark_lane() -> Arc<LanePriority> {
    LANE.with(|l| {
        l.get_or_init(|| {
            Arc::new(LanePriority {
                tid: gettid(),
                base: thread_nice(),
                spinning: Mutex::new((0, false)),
            })
        })
        .clone()
    })
}

/// Give the calling thread niceness `nice` (a guest thread's helper
/// threads start at the guest thread's own priority); if that is not
/// permitted it keeps the one it inherited.
pub(crate) fn set_own_nice(nice: i32) {
    set_nice(gettid(), nice);
}

impl LanePriority {
    /// The priority the thread has when no call on it spins.
    pub(crate) fn base(&self) -> i32 {
        self.base
    }

    /// Whether the thread runs nicer now: a call on it spins, or it could
    /// not be given its priority back.
    pub(crate) fn demoted(&self) -> bool {
        let s = self.spinning.lock().unwrap();
        s.0 > 0 || s.1
    }

    /// Make the thread nicer for one more spinning call.
    pub(crate) fn demote(&self) {
        let mut s = self.spinning.lock().unwrap();
        if s.0 == 0 {
            set_nice(self.tid, (self.base + GUEST_NICE).min(19));
        }
        s.0 += 1;
    }

    /// One spinning call ended: the thread's priority back once none is
    /// left.
    pub(crate) fn restore(&self) {
        let mut s = self.spinning.lock().unwrap();
        s.0 = s.0.saturating_sub(1);
        if s.0 > 0 || s.1 {
            return;
        }
        if let Err(e) = try_set_nice(self.tid, self.base) {
            s.1 = true;
            tracing::warn!(
                "a guest thread keeps nice {} after a spinning MOD call: {e} \
                 (give the daemon LimitNICE=+0 or CAP_SYS_NICE)",
                (self.base + GUEST_NICE).min(19)
            );
        }
    }
}

/// Watches one call for spinning (see the module docs); made where the
/// call's store is, on the thread that runs it. Dropping it ends the
/// call's demotion.
#[derive(Debug)]
pub(crate) struct SpinWatch {
    lane: Option<Arc<LanePriority>>,
    cpu_at_start: Option<Duration>,
    demoted: bool,
}

impl SpinWatch {
    /// Start watching a call on the calling thread (on a thread that is
    /// not a guest thread, the call is not watched).
    pub(crate) fn start() -> SpinWatch {
        let lane = LANE.with(|l| l.get().cloned());
        SpinWatch {
            cpu_at_start: lane.as_ref().and_then(|_| thread_cpu()),
            lane,
            demoted: false,
        }
    }

    /// At each epoch yield of the call's guest: demote its thread once the
    /// call has used [`SPIN_CPU`].
    pub(crate) fn tick(&mut self) {
        if self.demoted {
            return;
        }
        let (Some(lane), Some(start), Some(now)) = (&self.lane, self.cpu_at_start, thread_cpu())
        else {
            return;
        };
        if now.saturating_sub(start) >= SPIN_CPU {
            lane.demote();
            self.demoted = true;
        }
    }

    /// Whether the call made its thread nicer.
    #[cfg(test)]
    pub(crate) fn demoted(&self) -> bool {
        self.demoted
    }
}

impl Drop for SpinWatch {
    fn drop(&mut self) {
        if let (true, Some(lane)) = (self.demoted, &self.lane) {
            lane.restore();
        }
    }
}

fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// The calling thread's niceness.
fn thread_nice() -> i32 {
    nice_of(gettid())
}

/// Niceness of thread `tid` (of this process).
fn nice_of(tid: libc::pid_t) -> i32 {
    // SAFETY: getpriority reads a thread's priority; no memory is passed.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
}

/// Raising niceness needs no privilege; if it fails the call still runs.
fn set_nice(tid: libc::pid_t, nice: i32) {
    let _ = try_set_nice(tid, nice);
}

fn try_set_nice(tid: libc::pid_t, nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority on one of this process's threads; no memory.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The guest thread's id, for tests that watch its priority from outside.
#[cfg(test)]
pub(crate) fn lane_tid() -> Option<libc::pid_t> {
    LANE.with(|l| l.get().map(|p| p.tid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread of its own, marked as a guest thread: a call that uses
    /// a tick of CPU demotes it, and the thread gets its priority back
    /// when the call (its watch) ends. The suite runs as root (it builds
    /// the lab), so the restore is permitted.
    #[test]
    fn a_spinning_call_is_demoted_until_it_ends() {
        std::thread::spawn(|| {
            let lane = mark_lane();
            let tid = lane_tid().unwrap();
            let base = nice_of(tid);
            let mut watch = SpinWatch::start();
            watch.tick();
            assert!(!watch.demoted(), "no CPU used yet");
            // Use a tick of CPU (bounded by the CPU clock itself).
            let start = thread_cpu().unwrap();
            while thread_cpu().unwrap() - start < SPIN_CPU {
                std::hint::black_box(0u64.wrapping_add(1));
            }
            watch.tick();
            assert!(watch.demoted());
            assert!(lane.demoted(), "the lane says so, for choosing lanes");
            assert_eq!(nice_of(tid), (base + GUEST_NICE).min(19));
            // A second spinning call on the same thread keeps it demoted
            // until both end.
            let mut other = SpinWatch::start();
            other.cpu_at_start = Some(Duration::ZERO);
            other.tick();
            drop(watch);
            assert_eq!(nice_of(tid), (base + GUEST_NICE).min(19));
            drop(other);
            assert_eq!(nice_of(tid), base, "the priority is back");
            assert!(!lane.demoted());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn calls_off_guest_threads_are_not_watched() {
        std::thread::spawn(|| {
            let base = thread_nice();
            let mut watch = SpinWatch::start();
            watch.cpu_at_start = Some(Duration::ZERO);
            watch.tick();
            assert!(!watch.demoted());
            assert_eq!(thread_nice(), base);
        })
        .join()
        .unwrap();
    }
}
