//! The policy in force, and the root of trust, expire.
//!
//! Past the policy's `expires` the lease table refuses new maps
//! (`policy-expired`) and renews nothing — also when the fleet server keeps
//! answering 304 Not Modified or stalls: expiry is a property of the policy
//! in force, judged against the clock, never against what the server says.
//! This module makes that visible: what `status` reports (the expiry, an
//! `expired` flag, warnings from a day ahead), and one log line when a
//! stage is reached. The decisions are pure functions of the expiry and
//! `now` (unix ms); the loop at the end only pumps.

use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, now_ms};
use crate::trust::bundle::Root;

/// Warn this long before an expiry: a day gives a security team time to
/// publish a fresh policy (or root) before brokers refuse new maps.
pub const WARN_BEFORE_MS: u64 = 24 * 3600 * 1000;
/// The watch re-reads the expiry at least this often (a new policy may
/// have been applied meanwhile); otherwise it sleeps until the next stage.
const RECHECK: Duration = Duration::from_secs(5);

/// Where an expiry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No expiry, or more than [`WARN_BEFORE_MS`] away.
    Valid,
    /// Within [`WARN_BEFORE_MS`].
    Soon,
    /// Passed.
    Expired,
}

/// The stage of `expires_ms` at `now_ms`.
pub fn stage(expires_ms: Option<u64>, now_ms: u64) -> Stage {
    match expires_ms {
        Some(e) if now_ms >= e => Stage::Expired,
        Some(e) if now_ms.saturating_add(WARN_BEFORE_MS) >= e => Stage::Soon,
        _ => Stage::Valid,
    }
}

/// When the stage of `expires_ms` next changes after `now_ms`.
pub fn next_change(expires_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    let e = expires_ms?;
    match stage(expires_ms, now_ms) {
        Stage::Valid => Some(e.saturating_sub(WARN_BEFORE_MS)),
        Stage::Soon => Some(e),
        Stage::Expired => None,
    }
}

/// Unix ms of a root's expiry (its text was validated when parsed).
pub fn root_expires_ms(root: &Root) -> Option<u64> {
    let t = humantime::parse_rfc3339(&root.expires).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn relative(at_ms: u64, now_ms: u64) -> String {
    let secs = |ms: u64| Duration::from_secs(ms / 1000);
    if at_ms > now_ms {
        format!("in {}", humantime::format_duration(secs(at_ms - now_ms)))
    } else {
        format!("{} ago", humantime::format_duration(secs(now_ms - at_ms)))
    }
}

/// The policy warning for `status` and the log, if any.
pub fn policy_warning(expires_ms: Option<u64>, now_ms: u64) -> Option<String> {
    let e = expires_ms?;
    let at = crate::policy::rfc3339_ms(e);
    match stage(expires_ms, now_ms) {
        Stage::Valid => None,
        Stage::Soon => Some(format!(
            "the policy in force expires at {at} ({}): publish a newer one before then, or new \
             maps will be refused and leases not renewed",
            relative(e, now_ms)
        )),
        Stage::Expired => Some(format!(
            "the policy in force EXPIRED at {at} ({}): new maps are refused (policy-expired) \
             and leases are not renewed until a newer valid policy is in force",
            relative(e, now_ms)
        )),
    }
}

/// The root-of-trust warning for `status` and the log, if any.
pub fn root_warning(root: &Root, now_ms: u64) -> Option<String> {
    let e = root_expires_ms(root);
    let at = &root.expires;
    let v = root.version;
    match stage(e, now_ms) {
        Stage::Valid => None,
        Stage::Soon => Some(format!(
            "the root of trust (version {v}) expires at {at} ({}): publish a rotated root \
             before then, or no signed policy will be accepted",
            relative(e?, now_ms)
        )),
        Stage::Expired => Some(format!(
            "the root of trust (version {v}) expired at {at} ({}): no signed policy is accepted \
             until a rotated root is published (or installed with --root)",
            relative(e?, now_ms)
        )),
    }
}

/// Remembers which stage of which expiry was last logged, so each is
/// logged once (a new policy with another expiry starts afresh).
#[derive(Debug, Default)]
pub struct Watch {
    logged: Option<(u64, Stage)>,
}

impl Watch {
    /// The stage to log now, if it was not logged yet.
    pub fn observe(&mut self, expires_ms: Option<u64>, now_ms: u64) -> Option<Stage> {
        let Some(e) = expires_ms else {
            self.logged = None;
            return None;
        };
        let s = stage(expires_ms, now_ms);
        if s == Stage::Valid || self.logged == Some((e, s)) {
            return None;
        }
        self.logged = Some((e, s));
        Some(s)
    }
}

impl Broker {
    /// Log each expiry stage of the policy in force and of the root of
    /// trust once, until the task is dropped.
    pub async fn expiry_loop(self: Arc<Self>) {
        let (mut policy, mut root) = (Watch::default(), Watch::default());
        loop {
            let now = now_ms();
            let p = self.shared.lock().unwrap().policy.expires_ms();
            let r = self.trust.lock().unwrap().as_ref().map(|t| t.root.clone());
            let re = r.as_ref().and_then(root_expires_ms);
            if policy.observe(p, now).is_some()
                && let Some(w) = policy_warning(p, now)
            {
                tracing::warn!("{w}");
            }
            if root.observe(re, now).is_some()
                && let Some(w) = r.as_ref().and_then(|r| root_warning(r, now))
            {
                tracing::warn!("{w}");
            }
            let next = [next_change(p, now), next_change(re, now)]
                .into_iter()
                .flatten()
                .min();
            let sleep = next
                .map_or(RECHECK, |n| Duration::from_millis(n.saturating_sub(now)))
                .min(RECHECK);
            tokio::time::sleep(sleep).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 1_800_000_000_000;

    #[test]
    fn stages_follow_the_clock() {
        assert_eq!(stage(None, E), Stage::Valid);
        assert_eq!(stage(Some(E), E - WARN_BEFORE_MS - 1), Stage::Valid);
        assert_eq!(stage(Some(E), E - WARN_BEFORE_MS), Stage::Soon);
        assert_eq!(stage(Some(E), E - 1), Stage::Soon);
        assert_eq!(stage(Some(E), E), Stage::Expired);
        assert_eq!(next_change(Some(E), 0), Some(E - WARN_BEFORE_MS));
        assert_eq!(next_change(Some(E), E - 1), Some(E));
        assert_eq!(next_change(Some(E), E), None);
        assert_eq!(next_change(None, E), None);
    }

    #[test]
    fn warnings_say_when_and_what_follows() {
        assert_eq!(policy_warning(Some(E), E - WARN_BEFORE_MS - 1), None);
        let soon = policy_warning(Some(E), E - 3_600_000).unwrap();
        assert!(
            soon.contains("expires at 2027-01-15T08:00:00Z (in 1h)"),
            "{soon}"
        );
        let gone = policy_warning(Some(E), E + 90_000).unwrap();
        assert!(
            gone.contains("EXPIRED at 2027-01-15T08:00:00Z (1m 30s ago)"),
            "{gone}"
        );
        assert!(gone.contains("policy-expired"), "{gone}");
        let root = Root {
            version: 4,
            expires: "2027-01-15T08:00:00Z".into(),
            threshold: 1,
            keys: Default::default(),
        };
        assert_eq!(root_expires_ms(&root), Some(E));
        assert_eq!(root_warning(&root, E - WARN_BEFORE_MS - 1), None);
        let r = root_warning(&root, E).unwrap();
        assert!(r.contains("root of trust (version 4) expired"), "{r}");
    }

    #[test]
    fn each_stage_is_logged_once_per_expiry() {
        let mut w = Watch::default();
        assert_eq!(w.observe(Some(E), E - WARN_BEFORE_MS - 1), None);
        assert_eq!(w.observe(Some(E), E - 10), Some(Stage::Soon));
        assert_eq!(w.observe(Some(E), E - 5), None);
        assert_eq!(w.observe(Some(E), E), Some(Stage::Expired));
        assert_eq!(w.observe(Some(E), E + 60_000), None);
        // A new policy, expired too (say, persisted): logged again.
        assert_eq!(w.observe(Some(E + 1), E + 60_000), Some(Stage::Expired));
        // No expiry: nothing, and a later expiry is news again.
        assert_eq!(w.observe(None, E), None);
        assert_eq!(w.observe(Some(E + 1), E + 60_000), Some(Stage::Expired));
    }
}
