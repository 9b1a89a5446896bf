//! Lease upkeep: renew at half-life, detect loss, re-establish (through
//! another MOD if needed), expire, release, and reconcile the journal after
//! a crash. One loop wakes at the earliest due lease and hands each due
//! lease to its own task, at most [`UPKEEP_PARALLEL`] at a time.

use std::sync::Arc;
use std::time::Duration;

use p2pbroker_client::{ApiError, ErrorCode, EventKind, Lease as LeaseView, LeaseState};

use super::broker::{Broker, Lease, api, now_ms};
use super::journal::LeaseRecord;
use super::timing;
use super::views;
use crate::bindings::Mapping;
use crate::host::{Op, Output};
use crate::json::MappingJson;

/// Upkeep calls running at once: enough to renew thousands of leases per
/// minute, few enough to leave pool slots for clients' maps.
pub const UPKEEP_PARALLEL: usize = 8;
/// The loop re-checks at least this often (a clock jump, a missed wake).
const MAX_SLEEP: Duration = Duration::from_secs(5);

enum Due {
    Expire,
    Renew,
    Reestablish,
    Release,
}

impl Broker {
    /// Run upkeep until the task is dropped.
    pub async fn upkeep_loop(self: Arc<Self>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(UPKEEP_PARALLEL));
        loop {
            let now = now_ms();
            let (due, next) = self.take_due(now);
            for (id, what) in due {
                let b = self.clone();
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                tokio::spawn(async move {
                    b.upkeep_one(id, what).await;
                    drop(permit);
                    b.wake.notify_one();
                });
            }
            let sleep = next
                .map(|n| Duration::from_millis(n.saturating_sub(now_ms())))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Mark due leases busy and return them, with the next due time.
    fn take_due(&self, now: u64) -> (Vec<(u64, Due)>, Option<u64>) {
        let mut s = self.shared.lock().unwrap();
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        for l in s.leases.values_mut().filter(|l| !l.busy) {
            let expiry = l.rec.expires_at.map(|e| e * 1000);
            let what = if l.releasing {
                Due::Release
            } else if expiry.is_some_and(|e| e <= now) {
                Due::Expire
            } else if l.state != LeaseState::Active {
                Due::Reestablish
            } else {
                Due::Renew
            };
            let at = match what {
                Due::Expire => now,
                _ => match (l.due_ms, expiry) {
                    (Some(d), Some(e)) => d.min(e),
                    (d, e) => match d.or(e) {
                        Some(x) => x,
                        None => continue,
                    },
                },
            };
            if at <= now {
                l.busy = true;
                due.push((l.rec.id, what));
            } else {
                next = Some(next.map_or(at, |n: u64| n.min(at)));
            }
        }
        (due, next)
    }

    async fn upkeep_one(self: &Arc<Self>, id: u64, what: Due) {
        match what {
            Due::Expire => {
                let _ = self.release(id, "its lifetime ended").await;
            }
            Due::Release => {
                let _ = self.release(id, "retrying an unfinished release").await;
            }
            Due::Renew => self.renew(id).await,
            Due::Reestablish => self.reestablish(id, None).await,
        }
        if let Some(l) = self.shared.lock().unwrap().leases.get_mut(&id) {
            l.busy = false;
        }
    }

    fn snapshot(&self, id: u64) -> Option<Lease> {
        self.shared.lock().unwrap().leases.get(&id).cloned()
    }

    fn mode_of(&self, l: &Lease) -> Option<Arc<crate::host::Mode>> {
        self.shared.lock().unwrap().modes.get(&l.rec.mode).cloned()
    }

    /// Journal and store an updated record; false if the journal failed
    /// (the lease then stays as it was, and upkeep retries).
    fn commit(&self, rec: &LeaseRecord) -> bool {
        match self.journal.lock().unwrap().put(rec) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }
    }

    async fn renew(self: &Arc<Self>, id: u64) {
        let Some(l) = self.snapshot(id) else { return };
        let Some(mode) = self.mode_of(&l) else {
            return self
                .lost(id, format!("mode `{}` is no longer loaded", l.rec.mode))
                .await;
        };
        let policy = self.shared.lock().unwrap().policy.clone();
        let lifetime = timing::gateway_lifetime(
            policy.broker.mapping_lifetime,
            now_ms(),
            l.rec.expires_at.map(|e| e * 1000),
        );
        let mapping = match Mapping::try_from(l.rec.mapping.clone()) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .lost(id, format!("journaled state unusable: {e}"))
                    .await;
            }
        };
        let r = mode.call(Op::Renew(mapping, lifetime)).await;
        match r.result {
            Ok(Output::Mapping(m)) => {
                let mut rec = l.rec.clone();
                let previous = rec.mapping.external;
                rec.mapping = MappingJson::from(&m);
                let moved = rec.mapping.external != previous;
                rec.granted_at = now_ms() / 1000;
                if self.is_releasing(id) {
                    return;
                }
                if !self.commit(&rec) {
                    return self.retry_later(id);
                }
                let Some(lease) = self.settle(id, rec) else {
                    return;
                };
                let reason = moved.then(|| "the external endpoint changed".to_string());
                self.emit(EventKind::Renewed, &lease, reason);
            }
            Ok(_) => self.retry_later(id),
            Err(e) => {
                let f = super::selector::failure(&e);
                let expired = l.rec.gateway_expiry().is_some_and(|x| x * 1000 <= now_ms());
                if f.kind == "mapping-lost" || expired {
                    self.lost(id, format!("{}: {}", f.kind, f.reason)).await;
                } else {
                    tracing::warn!(
                        "lease {id}: renew failed ({}: {}), retrying",
                        f.kind,
                        f.reason
                    );
                    self.retry_later(id);
                }
            }
        }
    }

    /// Install a journaled record: the lease is active again and its next
    /// renewal scheduled. `None` if the lease is gone meanwhile.
    fn settle(&self, id: u64, rec: LeaseRecord) -> Option<Lease> {
        let mut s = self.shared.lock().unwrap();
        let x = s.leases.get_mut(&id)?;
        x.rec = rec;
        x.state = LeaseState::Active;
        x.failures = 0;
        x.due_ms = timing::renew_at(
            now_ms(),
            x.rec.mapping.lifetime,
            crate::daemon::random_u32(),
        );
        Some(x.clone())
    }

    /// A release started meanwhile: its journal `del` must stay the last
    /// word, so upkeep must not journal this lease again.
    fn is_releasing(&self, id: u64) -> bool {
        let s = self.shared.lock().unwrap();
        s.leases.get(&id).is_none_or(|l| l.releasing)
    }

    fn retry_later(&self, id: u64) {
        let mut s = self.shared.lock().unwrap();
        if let Some(l) = s.leases.get_mut(&id) {
            l.failures += 1;
            let expiry = l.rec.gateway_expiry().map(|e| e * 1000);
            l.due_ms = Some(timing::retry_at(now_ms(), l.failures, expiry));
        }
    }

    /// The mapping is gone: tell the client, then re-establish at once.
    async fn lost(self: &Arc<Self>, id: u64, reason: String) {
        let lease = {
            let mut s = self.shared.lock().unwrap();
            let Some(l) = s.leases.get_mut(&id) else {
                return;
            };
            l.state = LeaseState::Lost;
            l.failures = 0;
            l.clone()
        };
        tracing::warn!("lease {id} lost: {reason}");
        self.emit(EventKind::Lost, &lease, Some(reason));
        self.invalidate_probes();
        self.reestablish(id, Some(lease.rec.mode.clone())).await;
    }

    /// Map the lease again, preferring its previous MOD and external port.
    async fn reestablish(self: &Arc<Self>, id: u64, prefer: Option<String>) {
        let Some(l) = self.snapshot(id) else { return };
        if let Some(x) = self.shared.lock().unwrap().leases.get_mut(&id) {
            x.state = LeaseState::ReEstablishing;
        }
        let m = &l.rec.mapping;
        let prefer = prefer.unwrap_or_else(|| l.rec.mode.clone());
        let r = self
            .establish(
                m.transport,
                m.internal,
                Some(m.external.port()),
                l.rec.expires_at.map(|e| e * 1000),
                None,
                Some(&prefer),
            )
            .await;
        let r = match r {
            // The old port may now be someone else's: take any.
            Err(e) if e.code == ErrorCode::Conflict => {
                self.establish(
                    m.transport,
                    m.internal,
                    None,
                    l.rec.expires_at.map(|e| e * 1000),
                    None,
                    Some(&prefer),
                )
                .await
            }
            other => other,
        };
        match r {
            Ok((mode, mapping)) => {
                let mut rec = l.rec.clone();
                rec.mode = mode.name().to_string();
                rec.mode_sha256 = mode.sha256().to_string();
                rec.mapping = MappingJson::from(&mapping);
                rec.granted_at = now_ms() / 1000;
                if self.is_releasing(id) || !self.commit(&rec) {
                    let _ = mode.call(Op::Unmap(mapping)).await;
                    return self.retry_later(id);
                }
                let Some(lease) = self.settle(id, rec) else {
                    return;
                };
                self.emit(
                    EventKind::ReEstablished,
                    &lease,
                    Some(format!("via {}", lease.rec.mode)),
                );
            }
            Err(e) => {
                tracing::warn!("lease {id}: cannot re-establish yet: {}", e.message);
                let mut s = self.shared.lock().unwrap();
                if let Some(x) = s.leases.get_mut(&id) {
                    x.state = LeaseState::Lost;
                    x.failures += 1;
                    x.due_ms = Some(timing::retry_at(now_ms(), x.failures, None));
                }
            }
        }
    }

    /// Unmap lease `id` and forget it. If the MOD cannot unmap it now, the
    /// lease stays journaled (hidden from clients) and upkeep retries until
    /// the gateway has forgotten it anyway.
    pub async fn release(self: &Arc<Self>, id: u64, why: &str) -> Result<LeaseView, ApiError> {
        self.release_with(id, why, None).await
    }

    /// [`Broker::release`] through a given MOD (one a new policy has just
    /// retired, so it is no longer among the loaded ones).
    pub async fn release_with(
        self: &Arc<Self>,
        id: u64,
        why: &str,
        via: Option<Arc<crate::host::Mode>>,
    ) -> Result<LeaseView, ApiError> {
        let Some(mut l) = self.snapshot(id) else {
            return Err(api(ErrorCode::NotFound, format!("no lease {id}")));
        };
        let first = !l.releasing;
        if let Some(x) = self.shared.lock().unwrap().leases.get_mut(&id) {
            x.releasing = true;
            x.busy = true;
        }
        let mode = via.or_else(|| self.mode_of(&l));
        let outcome = match (mode, Mapping::try_from(l.rec.mapping.clone())) {
            (Some(mode), Ok(m)) => match mode.call(Op::Unmap(m)).await.result {
                Ok(_) => Ok(()),
                Err(e) => {
                    let f = super::selector::failure(&e);
                    // Gone already is as good as deleted.
                    if f.kind == "mapping-lost" {
                        Ok(())
                    } else {
                        Err(format!("{}: {}", f.kind, f.reason))
                    }
                }
            },
            (None, _) => Err(format!("mode `{}` is not loaded", l.rec.mode)),
            (_, Err(e)) => Err(e),
        };
        let forgotten = l.rec.gateway_expiry().is_some_and(|x| x * 1000 <= now_ms());
        l.state = LeaseState::Active;
        let view = views::lease(&l);
        match outcome {
            Ok(()) => {}
            Err(reason) if !forgotten => {
                tracing::warn!("lease {id}: unmap failed ({reason}); will retry");
                let mut s = self.shared.lock().unwrap();
                if let Some(x) = s.leases.get_mut(&id) {
                    x.failures += 1;
                    x.due_ms = Some(timing::retry_at(now_ms(), x.failures, None));
                    x.busy = false;
                }
                drop(s);
                if first {
                    self.emit(EventKind::Released, &l, Some(why.to_string()));
                }
                return Ok(view);
            }
            Err(reason) => tracing::info!("lease {id}: unmap failed ({reason}) but it has expired"),
        }
        if let Err(e) = self.journal.lock().unwrap().del(id) {
            tracing::error!("{e}");
        }
        self.shared.lock().unwrap().leases.remove(&id);
        if first {
            self.emit(EventKind::Released, &l, Some(why.to_string()));
        }
        Ok(view)
    }

    /// Release every lease (daemon shutdown), all at once, within `cap`.
    pub async fn release_all(self: &Arc<Self>, cap: Duration) {
        let ids: Vec<u64> = self.shared.lock().unwrap().leases.keys().copied().collect();
        let mut set = tokio::task::JoinSet::new();
        for id in ids {
            let b = self.clone();
            set.spawn(async move {
                let _ = b.release(id, "the broker is shutting down").await;
            });
        }
        let _ = tokio::time::timeout(cap, async { while set.join_next().await.is_some() {} }).await;
    }

    /// After a start: adopt the journal's leases. Persistent, unexpired
    /// ones are kept and renewed now (renew finds out whether they survived);
    /// the others were held by connections that died with the old process,
    /// so they are released.
    pub fn adopt(&self, records: Vec<LeaseRecord>) {
        let now = now_ms();
        let mut s = self.shared.lock().unwrap();
        for rec in records {
            s.next_id = s.next_id.max(rec.id);
            let keep = rec.persist && rec.expires_at.is_none_or(|e| e * 1000 > now);
            s.leases.insert(
                rec.id,
                Lease {
                    rec,
                    state: LeaseState::Active,
                    conn: None,
                    due_ms: Some(now),
                    failures: 0,
                    busy: false,
                    releasing: !keep,
                },
            );
        }
    }
}
