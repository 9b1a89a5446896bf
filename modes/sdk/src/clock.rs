//! Time from `wasi:clocks` (std's clocks do not exist on
//! wasm32-unknown-unknown).

use core::time::Duration;

use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};

/// Monotonic now, nanoseconds since an arbitrary origin.
pub fn now_ns() -> u64 {
    monotonic_clock::now()
}

/// Seconds since the Unix epoch, from the wall clock.
pub fn unix_seconds() -> u64 {
    wall_clock::now().seconds
}

/// A point on the monotonic clock after which an operation gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at_ns: u64,
}

impl Deadline {
    /// The deadline `d` from now.
    pub fn after(d: Duration) -> Deadline {
        Deadline::from_ns(now_ns(), d)
    }

    /// The deadline `d` after the monotonic instant `now_ns` (pure).
    pub fn from_ns(now_ns: u64, d: Duration) -> Deadline {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Deadline {
            at_ns: now_ns.saturating_add(d),
        }
    }

    /// The instant, for `monotonic-clock.subscribe-instant`.
    pub fn instant_ns(&self) -> u64 {
        self.at_ns
    }

    /// Time left at `now_ns`, or `None` when passed (pure).
    pub fn remaining_at(&self, now_ns: u64) -> Option<Duration> {
        self.at_ns
            .checked_sub(now_ns)
            .filter(|n| *n > 0)
            .map(Duration::from_nanos)
    }

    /// Time left now, or `None` when passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.remaining_at(now_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_arithmetic_saturates() {
        let d = Deadline::from_ns(100, Duration::from_nanos(50));
        assert_eq!(d.remaining_at(120), Some(Duration::from_nanos(30)));
        assert_eq!(d.remaining_at(150), None);
        assert_eq!(d.remaining_at(999), None);
        assert_eq!(
            Deadline::from_ns(u64::MAX - 1, Duration::MAX).instant_ns(),
            u64::MAX
        );
    }
}
