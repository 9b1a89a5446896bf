//! Lease timing as pure functions of time (unix milliseconds) and a random
//! draw, so the schedule is unit-tested without clocks.

/// Renew at half of the granted lifetime (RFC 6886 §3.3 recommends renewing
/// at half; the same margin suits PCP and UPnP).
pub const RENEW_FRACTION_PERCENT: u64 = 50;
/// ±10 % jitter on the renewal point, so thousands of leases made in one
/// burst do not all renew in the same instant.
pub const JITTER_PERCENT: u64 = 10;
/// First retry after a failed renewal: soon enough to keep the mapping,
/// late enough not to hammer a gateway that is rebooting.
pub const RETRY_MIN_MS: u64 = 2_000;
/// Retries back off up to this.
pub const RETRY_MAX_MS: u64 = 60_000;

/// No renewal asks for less than this much time (ms) before the lease or
/// the policy ends: renewing ever shorter grants would poll the gateway
/// every half-second in the last moments.
pub const RENEW_FLOOR_MS: u64 = 30_000;

/// When to renew a mapping granted `lifetime_s` seconds at `granted_ms`,
/// given a uniform draw `r` (any u32). `None` for a permanent mapping.
pub fn renew_at(granted_ms: u64, lifetime_s: u32, r: u32) -> Option<u64> {
    if lifetime_s == 0 {
        return None;
    }
    let life = u64::from(lifetime_s) * 1000;
    let half = life * RENEW_FRACTION_PERCENT / 100;
    let span = half * JITTER_PERCENT / 100;
    // r mapped onto [-span, +span].
    let offset = (u64::from(r) * (2 * span + 1)) >> 32;
    Some(granted_ms + half - span + offset)
}

/// When to retry after the `attempt`-th consecutive failed renewal (1 =
/// first), never later than the gateway's expiry `expiry_ms` (the last
/// moment the mapping can still be kept).
pub fn retry_at(now_ms: u64, attempt: u32, expiry_ms: Option<u64>) -> u64 {
    let backoff = RETRY_MIN_MS
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(RETRY_MAX_MS);
    let at = now_ms + backoff;
    match expiry_ms {
        Some(e) if e > now_ms => at.min(e),
        _ => at,
    }
}

/// The gateway lifetime to ask for: the policy's mapping lifetime, but no
/// longer than what is left of the lease (at least 1 s).
pub fn gateway_lifetime(policy_s: u32, now_ms: u64, lease_expiry_ms: Option<u64>) -> u32 {
    match lease_expiry_ms {
        Some(e) => {
            let left = e.saturating_sub(now_ms).div_ceil(1000);
            policy_s.min(u32::try_from(left).unwrap_or(u32::MAX)).max(1)
        }
        None => policy_s,
    }
}

/// A fresh probe (`probe` with `fresh: true`) within this long of the last
/// round is answered from it: a burst of fresh probes from any client must
/// not make the broker run probe rounds back to back (each round sends
/// packets to the gateway from every MOD). A human re-running
/// `p2pb probe` waits at most this for new results; a network change
/// drops cached probes at once, whatever this says.
pub const FRESH_PROBE_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How long after a map's answer its journal line is synced (see
/// `Broker::sync_journal_soon`): long enough for a one-shot client to have
/// its answer and exit, short against the gateway lifetime a line lost to
/// a power loss in the meantime leaves its mapping.
pub const JOURNAL_SYNC_DELAY: std::time::Duration = std::time::Duration::from_millis(3);

/// Whether the last probe round serves a request for probes: it finished
/// `age` ago (`None`: no round, or results dropped), `after_asked` if it
/// finished after the request came (a round the request waited for). A
/// plain request takes results up to the policy's `ttl` old; a `fresh`
/// one up to [`FRESH_PROBE_MIN_INTERVAL`] (or `ttl`, if shorter).
pub fn probes_serve(
    age: Option<std::time::Duration>,
    after_asked: bool,
    fresh: bool,
    ttl: std::time::Duration,
) -> bool {
    let Some(age) = age else {
        return false;
    };
    let window = if fresh {
        ttl.min(FRESH_PROBE_MIN_INTERVAL)
    } else {
        ttl
    };
    after_asked || age < window
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_probes_coalesce_onto_a_recent_round() {
        use std::time::Duration;
        let ttl = Duration::from_secs(300);
        let s = Duration::from_secs;
        // A burst of fresh probes right after a round: no new round.
        assert!(probes_serve(Some(s(0)), false, true, ttl));
        assert!(probes_serve(Some(s(9)), false, true, ttl));
        // Once the interval passed, a fresh probe runs a new round...
        assert!(!probes_serve(
            Some(FRESH_PROBE_MIN_INTERVAL),
            false,
            true,
            ttl
        ));
        // ...unless it waited for one that finished after it asked.
        assert!(probes_serve(Some(s(60)), true, true, ttl));
        // Plain requests use the TTL; dropped results serve nobody.
        assert!(probes_serve(Some(s(299)), false, false, ttl));
        assert!(!probes_serve(Some(s(300)), false, false, ttl));
        assert!(!probes_serve(None, false, true, ttl));
        assert!(!probes_serve(None, false, false, ttl));
        // A TTL shorter than the interval bounds fresh probes too.
        assert!(!probes_serve(Some(s(2)), false, true, s(1)));
    }

    #[test]
    fn renewal_is_at_half_life_within_the_jitter() {
        let granted = 1_000_000;
        assert_eq!(renew_at(granted, 0, 7), None);
        let lo = renew_at(granted, 3600, 0).unwrap();
        let mid = renew_at(granted, 3600, u32::MAX / 2).unwrap();
        let hi = renew_at(granted, 3600, u32::MAX).unwrap();
        assert_eq!(lo, granted + 1_800_000 - 180_000);
        assert!(hi <= granted + 1_800_000 + 180_000 && hi > mid && mid > lo);
        assert!((mid as i64 - (granted + 1_800_000) as i64).abs() <= 1);
    }

    #[test]
    fn retries_back_off_but_never_past_the_gateway_expiry() {
        assert_eq!(retry_at(0, 1, None), 2_000);
        assert_eq!(retry_at(0, 2, None), 4_000);
        assert_eq!(retry_at(0, 40, None), RETRY_MAX_MS);
        assert_eq!(retry_at(0, 5, Some(10_000)), 10_000);
        assert_eq!(retry_at(20_000, 1, Some(10_000)), 22_000, "already expired");
    }

    #[test]
    fn gateway_lifetime_is_capped_by_what_is_left_of_the_lease() {
        assert_eq!(gateway_lifetime(3600, 0, None), 3600);
        assert_eq!(gateway_lifetime(3600, 0, Some(600_500)), 601);
        assert_eq!(gateway_lifetime(3600, 10_000, Some(5_000)), 1);
    }
}
