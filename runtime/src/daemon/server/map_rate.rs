//! How fast one client may ask for mappings (`map` and `reach`), as a
//! token bucket per client (a local uid other than root, or a LAN source):
//! up to `broker.max_maps_per_minute` at once, refilled at that rate.
//! Root's clients are not limited: root may change the policy anyway, and
//! scripts and benches run as root map in bulk.
//!
//! Each map costs the gateway real work (miniupnpd rewrites its firewall
//! rules for every one) and writes hole-log lines; without a rate a user
//! allowed to map one port could loop map and unmap on it, keep the
//! gateway busy, and rotate everybody's history out of the hole log in
//! minutes. Sans-I/O: the caller passes the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::limits::Source;

/// Clients whose buckets are kept; past it, full (idle) buckets are
/// forgotten first, and a newcomer that still finds no room is let through
/// untracked (clients are uids and LAN sources: a bounded set).
pub const MAX_CLIENTS: usize = 4096;

/// The buckets.
#[derive(Debug, Default)]
pub struct MapRate {
    buckets: HashMap<Source, (f64, Instant)>,
}

impl MapRate {
    /// Take one map for `source` at `now` under a rate of `per_minute`
    /// (0: no limit). `Err` says how long until one is free.
    pub fn take(&mut self, source: Source, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 || source == Source::Uid(0) {
            return Ok(());
        }
        let burst = f64::from(per_minute);
        let per_second = burst / 60.0;
        let level = |(tokens, at): (f64, Instant)| {
            (tokens + now.saturating_duration_since(at).as_secs_f64() * per_second).min(burst)
        };
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_CLIENTS {
            self.buckets.retain(|_, b| level(*b) < burst);
            if self.buckets.len() >= MAX_CLIENTS {
                return Ok(());
            }
        }
        let b = self.buckets.entry(source).or_insert((burst, now));
        let tokens = level(*b);
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            Ok(())
        } else {
            *b = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_other_clients_unaffected() {
        let mut r = MapRate::default();
        let t0 = Instant::now();
        let me = Source::Uid(1000);
        for _ in 0..120 {
            assert!(r.take(me, 120, t0).is_ok());
        }
        let wait = r.take(me, 120, t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(r.take(Source::Uid(1001), 120, t0).is_ok(), "another uid");
        for _ in 0..1000 {
            assert!(r.take(Source::Uid(0), 120, t0).is_ok(), "root");
        }
        // Two a second at 120 a minute.
        assert!(r.take(me, 120, t0 + Duration::from_millis(500)).is_ok());
        assert!(r.take(me, 120, t0 + Duration::from_millis(600)).is_err());
        // No limit at all with 0.
        for _ in 0..1000 {
            assert!(r.take(me, 0, t0).is_ok());
        }
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut r = MapRate::default();
        let t0 = Instant::now();
        for uid in 1..(MAX_CLIENTS as u32 * 2) {
            let _ = r.take(Source::Uid(uid), 60, t0);
        }
        assert!(r.buckets.len() <= MAX_CLIENTS);
        // Once idle (full again), old buckets make room for new clients.
        let later = t0 + Duration::from_secs(60);
        assert!(r.take(Source::Uid(u32::MAX), 60, later).is_ok());
        assert!(r.buckets.contains_key(&Source::Uid(u32::MAX)));
    }
}
