//! MODs the policy pulls from a registry that could not be pulled (none
//! loaded, or the last good copy serves): pulled again with backoff, and
//! the policy re-applied once they are (leases of MODs still permitted
//! kept, as for a fleet push).

use std::sync::Arc;
use std::time::Duration;

use super::broker::Broker;
use crate::oci::cache::Cache;
use crate::policy::Policy;

/// First retry after a failed pull; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(30);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// Whether some MOD of `policy` pinned in a registry is not cached: the
/// daemon runs without it, or on its last good copy.
pub fn behind(cache: &Cache, policy: &Policy) -> bool {
    policy
        .modes
        .values()
        .filter_map(|m| m.oci_reference()?.ok()?.digest)
        .any(|d| !cache.has(&d))
}

impl Broker {
    /// Retry pulls the policy's registries owe, for the daemon's life.
    pub async fn oci_retry_loop(self: Arc<Self>) {
        let Some(dir) = self.modes.oci_cache.clone() else {
            return;
        };
        let cache = Cache::new(dir);
        let mut wait = RETRY_FIRST;
        loop {
            tokio::time::sleep(wait).await;
            let applying = self.applying.lock().await;
            let policy = self.shared.lock().unwrap().policy.clone();
            if !behind(&cache, &policy) {
                wait = RETRY_FIRST;
                continue;
            }
            tracing::info!("pulling the policy's MODs again from their registries");
            let source = self.policy_source.lock().unwrap().clone();
            // Under `applying`: the policy re-applied is the one in force.
            if let Err(e) = self.apply_policy_locked((*policy).clone(), source).await {
                tracing::warn!("the policy's MODs are still not loaded: {e}");
            }
            drop(applying);
            wait = if behind(&cache, &policy) {
                (wait * 2).min(RETRY_MAX)
            } else {
                RETRY_FIRST
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;
    use crate::oci::client::Pulled;

    #[test]
    fn a_pin_not_in_the_cache_is_owed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let a = crate::oci::manifest::artifact(b"c", Some("m"), "2026-12-01T00:00:00Z");
        let policy = |d: Digest| {
            Policy::parse(&format!(
                "version = 1\n[modes.m]\noci = \"oci://reg.example/m:1@{d}\"\n"
            ))
            .unwrap()
        };
        assert!(behind(&cache, &policy(a.digest)));
        cache
            .put(&Pulled {
                digest: a.digest,
                manifest: a.manifest.clone(),
                component: b"c".to_vec(),
            })
            .unwrap();
        assert!(!behind(&cache, &policy(a.digest)));
        assert!(behind(&cache, &policy(Digest::of(b"other"))));
        assert!(
            !behind(&cache, &Policy::default_policy()),
            "no registry MODs"
        );
    }
}
