//! Work that may create a mapping (a client's map, a renewal, a
//! re-establishment) and the shutdown that must wait for it.
//!
//! A stop that released the lease table while such work ran would miss the
//! mapping it was about to add and leave it on the gateway until the next
//! start (the intent journal's job, but only if the broker comes back).
//! So a stop closes the gate (no new work), waits a bounded time for the
//! work under way to settle into the table, and only then releases it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Counts the work under way; refuses new work once closed.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    closed: AtomicBool,
    idle: Notify,
}

/// Held for the length of one piece of work.
pub struct Work(Arc<InFlight>);

impl InFlight {
    /// Begin a piece of work, or `None` once the broker is shutting down.
    pub fn enter(self: &Arc<Self>) -> Option<Work> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.leave();
            return None;
        }
        Some(Work(self.clone()))
    }

    fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Pieces of work under way.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Refuse new work, then wait up to `cap` for the work under way to
    /// end. Says whether it all did.
    pub async fn close_and_settle(&self, cap: Duration) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        tokio::time::timeout(cap, async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                // Registered before the check, so a leave in between wakes it.
                idle.as_mut().enable();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_waits_for_work_under_way_and_refuses_new_work() {
        let f = Arc::new(InFlight::default());
        let w = f.enter().expect("open");
        assert_eq!(f.count(), 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let g = f.clone();
        let settling =
            tokio::spawn(async move { g.close_and_settle(Duration::from_secs(30)).await });
        // The stop has begun once new work is refused.
        for _ in 0..10_000 {
            match f.enter() {
                None => break,
                Some(extra) => drop(extra),
            }
            tokio::task::yield_now().await;
        }
        assert!(f.enter().is_none(), "new work refused while closing");
        assert!(!settling.is_finished(), "still waiting for the work");
        tokio::spawn(async move {
            drop(w);
            let _ = tx.send(());
        });
        rx.await.unwrap();
        assert!(settling.await.unwrap(), "settled once the work ended");
        assert_eq!(f.count(), 0);
    }

    #[tokio::test]
    async fn a_stop_gives_up_on_work_that_never_ends() {
        let f = Arc::new(InFlight::default());
        let _stuck = f.enter().unwrap();
        assert!(!f.close_and_settle(Duration::from_millis(1)).await);
        assert_eq!(f.count(), 1);
    }

    #[tokio::test]
    async fn nothing_under_way_settles_at_once() {
        let f = Arc::new(InFlight::default());
        drop(f.enter().unwrap());
        assert!(f.close_and_settle(Duration::from_secs(30)).await);
    }
}
