//! Lease upkeep: renew at half-life, detect loss, re-establish (through
//! another MOD if needed, after the same authorisation as a new map),
//! expire, release, and reconcile the journal after a crash. One loop wakes
//! at the earliest due lease (the table says which) and hands each to its
//! own task, at most [`UPKEEP_PARALLEL`] at a time.

use std::sync::Arc;
use std::time::Duration;

use p2pbroker_client::{ApiError, ErrorCode, EventKind, Lease as LeaseView, MapParams};

use super::api;
use super::broker::{Broker, Target, now_ms};
use super::journal::LeaseRecord;
use super::leases::{Due, Requester, wire_transport};
use super::ownership;
use super::proof::{Proof, owned};
use super::{timing, views};
use crate::json::MappingJson;
use crate::sandbox::wit::Mapping;
use crate::sandbox::{CallError, Mode, Op, Output};

/// Upkeep calls running at once: enough to renew thousands of leases per
/// minute, few enough to leave pool slots for clients' maps.
pub const UPKEEP_PARALLEL: usize = 8;
/// The loop re-checks at least this often (a clock jump, a missed wake).
const MAX_SLEEP: Duration = Duration::from_secs(5);

impl Broker {
    /// Run upkeep until the task is dropped.
    pub async fn upkeep_loop(self: Arc<Self>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(UPKEEP_PARALLEL));
        loop {
            let now = now_ms();
            let (due, next) = {
                let mut s = self.shared.lock().unwrap();
                let expiry = s.policy.expires_ms();
                s.table.take_due(now, expiry)
            };
            for (id, what) in due {
                let b = self.clone();
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let Some(work) = self.work.enter() else {
                    // Shutting down: the release of every lease follows.
                    return;
                };
                tokio::spawn(async move {
                    b.upkeep_one(id, what).await;
                    drop((permit, work));
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

    async fn upkeep_one(self: &Arc<Self>, id: u64, what: Due) {
        match what {
            Due::Expire => {
                let _ = self.release(id, "its lifetime ended").await;
            }
            Due::PolicyExpired => {
                let _ = self
                    .release(id, "the policy in force expired; it is not renewed")
                    .await;
            }
            Due::Release => {
                let _ = self.release(id, "retrying an unfinished release").await;
            }
            Due::Renew => self.renew(id).await,
            Due::Reestablish => self.reestablish(id, None).await,
        }
        self.shared.lock().unwrap().table.done(id);
    }

    pub(super) fn snapshot(&self, id: u64) -> Option<super::leases::Lease> {
        self.shared.lock().unwrap().table.get(id).cloned()
    }

    /// The loaded MOD called `name`, if any.
    pub(super) fn mode_named(&self, name: &str) -> Option<Arc<Mode>> {
        self.shared.lock().unwrap().modes.get(name).cloned()
    }

    /// Journal an updated record; false if the journal failed (the lease
    /// then stays as it was, and upkeep retries).
    pub(super) fn commit(&self, rec: &LeaseRecord) -> bool {
        match self.journal.lock().unwrap().put(rec) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{e}");
                false
            }
        }
    }

    fn retry_later(&self, id: u64) {
        self.shared.lock().unwrap().table.retry_later(id, now_ms());
    }

    /// Install a journaled record and tell subscribers.
    pub(super) fn settled(&self, rec: LeaseRecord, kind: EventKind, reason: Option<String>) {
        let lease =
            self.shared
                .lock()
                .unwrap()
                .table
                .settle(rec, now_ms(), crate::daemon::random_u32());
        if let Some(lease) = lease {
            self.emit(kind, &lease, reason);
        }
    }

    async fn renew(self: &Arc<Self>, id: u64) {
        let Some(l) = self.snapshot(id) else { return };
        let Some(mode) = self.mode_named(&l.rec.mode) else {
            return self
                .lost(id, format!("mode `{}` is no longer loaded", l.rec.mode))
                .await;
        };
        let policy = self.shared.lock().unwrap().policy.clone();
        let until = [l.rec.expires_at.map(|e| e * 1000), policy.expires_ms()]
            .into_iter()
            .flatten()
            .min();
        if let Some(u) = until.filter(|u| u.saturating_sub(now_ms()) < timing::RENEW_FLOOR_MS) {
            // Too little left to be worth a renewal: the mapping lapses
            // with its grant, and the lease ends at `until`.
            self.shared.lock().unwrap().table.hold_until(id, u);
            return;
        }
        let lifetime = timing::gateway_lifetime(policy.broker.mapping_lifetime, now_ms(), until);
        let mapping = match Mapping::try_from(l.rec.mapping.clone()) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .lost(id, format!("journaled state unusable: {e}"))
                    .await;
            }
        };
        let began = std::time::Instant::now();
        let relayed = !l.relay.channels.is_empty();
        let r = {
            // Only for the call: a loss below re-establishes, which
            // permits again under the same lock.
            let _one_at_a_time = match relayed {
                true => Some(self.relay_calls.lock().await),
                false => None,
            };
            let lease = self.lease_relay(id, l.rec.mapping.internal);
            mode.call_for(Op::Renew(mapping, lifetime), lease).await
        };
        if relayed {
            self.record_relay(id, r.relay.kept.clone());
        }
        match Output::mapping(r.result) {
            Ok(m) => {
                let mut rec = l.rec.clone();
                let previous = rec.mapping.external;
                rec.mapping = MappingJson::from(&m);
                let moved = rec.mapping.external != previous;
                rec.granted_at = now_ms() / 1000;
                if self.shared.lock().unwrap().table.is_releasing(id) {
                    return;
                }
                if !self.commit(&rec) {
                    return self.retry_later(id);
                }
                let reason = moved.then(|| "the external endpoint changed".to_string());
                self.settled(rec, EventKind::Renewed, reason);
                self.metrics.renewed(mode.name(), began.elapsed());
            }
            Err(CallError::ContractBreach { reason, mapping }) => {
                // The gateway may now forward elsewhere: undo what the MOD
                // says it did, and map the lease again from scratch.
                if let Some(forged) = mapping {
                    let _ = mode.call(Op::Unmap(*forged)).await;
                }
                self.lost(id, format!("contract-breach: {reason}")).await;
            }
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

    /// The mapping is gone: tell the client, then re-establish at once.
    async fn lost(self: &Arc<Self>, id: u64, reason: String) {
        let Some(lease) = self.shared.lock().unwrap().table.mark_lost(id) else {
            return;
        };
        tracing::warn!("lease {id} lost: {reason}");
        self.emit(EventKind::Lost, &lease, Some(reason));
        self.invalidate_probes();
        self.reestablish(id, Some(lease.rec.mode.clone())).await;
    }

    /// The lease's owner as a requester, to authorise it again.
    fn owner_of(&self, rec: &LeaseRecord) -> Requester {
        super::leases::owner_in(rec, &self.shared.lock().unwrap().policy)
    }

    /// The leases the policy in force no longer allows their owners (no
    /// access rule covers them, or none lets them outlive the connection),
    /// with why: what a reload or fleet push releases.
    pub(super) fn refused_by_policy(&self) -> Vec<(u64, String)> {
        let s = self.shared.lock().unwrap();
        super::leases::refused_by_rules(&s.table, &s.policy)
    }

    /// Whether the lease's owner may still hold it: the same authorisation
    /// as a new map (the policy may have changed since), and the endpoint
    /// still its own. `Err((transient, why))`.
    async fn reauthorize(&self, l: &super::leases::Lease) -> Result<(), (bool, String)> {
        let who = self.owner_of(&l.rec);
        let m = &l.rec.mapping;
        let p = params_of(&l.rec);
        {
            let s = self.shared.lock().unwrap();
            s.table
                .authorize_existing(l.rec.id, &p, &who, &s.policy, &s.net, now_ms())
                .map_err(|e| (false, e.message))?;
        }
        if who.lan.is_some() {
            return Ok(());
        }
        // A followed socket is its own proof while it lives.
        let proof = l
            .rec
            .follows
            .first()
            .map_or(Proof::Uid(who.uid), |i| Proof::Socket(*i));
        match owned(m.transport, m.internal, proof).await {
            Ok(_) => Ok(()),
            Err(ownership::NotOwner::Foreign) => {
                Err((false, "the socket it followed has closed".into()))
            }
            Err(e) => Err((e.transient(), e.to_string())),
        }
    }

    /// Map the lease again, preferring its previous MOD and external port.
    async fn reestablish(self: &Arc<Self>, id: u64, prefer: Option<String>) {
        let Some(l) = self.shared.lock().unwrap().table.begin_reestablish(id) else {
            return;
        };
        match self.reauthorize(&l).await {
            Ok(()) => {}
            Err((true, why)) => {
                // The application may be restarting: try again later.
                tracing::warn!("lease {id}: cannot re-establish yet: {why}");
                self.shared
                    .lock()
                    .unwrap()
                    .table
                    .reestablish_failed(id, now_ms());
                return;
            }
            Err((false, why)) => {
                let why = format!("no longer allowed: {why}");
                tracing::warn!("lease {id}: {why}");
                let _ = self.release(id, &why).await;
                return;
            }
        }
        // The old allocation's channels are of no more use; its peers are
        // admitted again on the new one.
        let peers: Vec<std::net::SocketAddr> = l
            .relay
            .carrying
            .iter()
            .flat_map(|c| c.peers.iter().map(|(peer, _)| *peer))
            .collect();
        self.close_relay(&l.relay.channels);
        self.record_relay(id, Vec::new());
        let m = &l.rec.mapping;
        let prefer = prefer.unwrap_or_else(|| l.rec.mode.clone());
        let mut t = Target {
            id,
            transport: m.transport,
            internal: m.internal,
            external_port: Some(m.external.port()),
            expires_ms: l.rec.expires_at.map(|e| e * 1000),
        };
        let mut r = self.establish(&t, None, Some(&prefer)).await;
        if matches!(&r, Err(e) if e.code == ErrorCode::Conflict) {
            // The old port may now be someone else's: take any.
            t.external_port = None;
            r = self.establish(&t, None, Some(&prefer)).await;
        }
        match r {
            Ok((mode, mapping, relay)) => {
                let mut rec = l.rec.clone();
                rec.mode = mode.name().to_string();
                rec.mode_sha256 = mode.sha256().to_string();
                rec.mapping = MappingJson::from(&mapping);
                rec.granted_at = now_ms() / 1000;
                // As for a new map (broker.rs): a MOD a reload retired
                // while it mapped undoes its mapping rather than serve a
                // lease no policy permits, which nobody would unmap.
                let (releasing, retired) = {
                    let s = self.shared.lock().unwrap();
                    (s.table.is_releasing(id), !s.modes.contains_key(mode.name()))
                };
                if releasing || retired || !self.commit(&rec) {
                    let lease = super::relayed::lease_of(&relay, m.internal);
                    let _ = mode.call_for(Op::Unmap(mapping), lease).await;
                    self.close_relay(&relay);
                    return self.retry_later(id);
                }
                if !relay.is_empty() {
                    self.record_relay(id, relay);
                }
                let reason = Some(format!("via {}", rec.mode));
                let relayed = mode.relays() && !peers.is_empty();
                self.settled(rec, EventKind::ReEstablished, reason);
                if relayed {
                    self.permit_again(id, peers).await;
                }
            }
            Err(e) => {
                tracing::warn!("lease {id}: cannot re-establish yet: {}", e.message);
                // The old record stands (and supersedes the failed intents).
                let _ = self.commit(&l.rec);
                self.shared
                    .lock()
                    .unwrap()
                    .table
                    .reestablish_failed(id, now_ms());
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
        via: Option<Arc<Mode>>,
    ) -> Result<LeaseView, ApiError> {
        let Some((l, first)) = self.shared.lock().unwrap().table.begin_release(id) else {
            return Err(api(ErrorCode::NotFound, format!("no lease {id}")));
        };
        Ok(self.release_begun(l, first, why, via).await)
    }

    /// The rest of [`Broker::release_with`], for lease `l` whose release
    /// has begun (`first`: this is its first attempt).
    pub(super) async fn release_begun(
        self: &Arc<Self>,
        mut l: super::leases::Lease,
        first: bool,
        why: &str,
        via: Option<Arc<Mode>>,
    ) -> LeaseView {
        let id = l.rec.id;
        let mode = via.or_else(|| self.mode_named(&l.rec.mode)).or_else(|| {
            self.retiring
                .lock()
                .unwrap()
                .get(&l.rec.mode_sha256)
                .cloned()
        });
        let outcome = match (mode, Mapping::try_from(l.rec.mapping.clone())) {
            (Some(mode), Ok(m)) => match self.unmap_call(&mode, &l, m).await {
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
        l.state = p2pbroker_client::LeaseState::Active;
        let view = views::lease(&l);
        // The hole log says when the hole closed: a first attempt that
        // failed says the release is pending, and the attempt that ends it
        // gets a line of its own (clients hear `released` once, at first).
        let closed = match outcome {
            Ok(()) => "unmapped on the gateway".to_string(),
            Err(reason) if !forgotten => {
                tracing::warn!("lease {id}: unmap failed ({reason}); will retry");
                self.shared
                    .lock()
                    .unwrap()
                    .table
                    .release_failed(id, now_ms());
                if first {
                    let why = format!(
                        "{why}; the gateway's unmap failed ({reason}): the hole stays open \
                         until a retry removes it or it expires"
                    );
                    self.emit(EventKind::Released, &l, Some(why));
                }
                return view;
            }
            Err(reason) => {
                tracing::info!("lease {id}: unmap failed ({reason}) but it has expired");
                "expired on the gateway before it could be unmapped".to_string()
            }
        };
        if let Err(e) = self.journal.lock().unwrap().del(id) {
            tracing::error!("{e}");
        }
        self.close_relay(&l.relay.channels);
        {
            let mut s = self.shared.lock().unwrap();
            s.table.remove(id);
            let table = &s.table;
            let mut retiring = self.retiring.lock().unwrap();
            retiring.retain(|sha, _| table.all().any(|l| l.rec.mode_sha256 == *sha));
        }
        if first {
            self.emit(EventKind::Released, &l, Some(why.to_string()));
        } else {
            self.log_lease(
                EventKind::Released,
                &l,
                Some(format!("{why}: {closed} on a retry")),
            );
        }
        view
    }

    /// The MOD's `unmap` for lease `l`, with its relay channels.
    async fn unmap_call(
        &self,
        mode: &Mode,
        l: &super::leases::Lease,
        m: Mapping,
    ) -> Result<Output, CallError> {
        // A relay channel answers one call at a time.
        let _one_at_a_time = match l.relay.channels.is_empty() {
            false => Some(self.relay_calls.lock().await),
            true => None,
        };
        let lease = self.lease_relay(l.rec.id, l.rec.mapping.internal);
        mode.call_for(Op::Unmap(m), lease).await.result
    }

    /// Release every lease (daemon shutdown), all at once, within `cap`.
    pub async fn release_all(self: &Arc<Self>, cap: Duration) {
        let (ids, kept): (Vec<u64>, usize) = {
            let s = self.shared.lock().unwrap();
            let keep = s.policy.broker.keep_leases_on_stop;
            // A lease of a MOD no longer loaded (a reload under way when
            // the stop came) is released through the retired MOD: the next
            // start could not renew it.
            let (kept, released): (Vec<_>, Vec<_>) = s
                .table
                .all()
                .partition(|l| kept_on_stop(keep, l) && s.modes.contains_key(&l.rec.mode));
            (released.iter().map(|l| l.rec.id).collect(), kept.len())
        };
        if kept > 0 {
            tracing::info!(
                "{kept} persistent lease(s) kept mapped and journaled for the next start \
                 (broker.keep_leases_on_stop)"
            );
        }
        let mut set = tokio::task::JoinSet::new();
        for id in ids {
            let b = self.clone();
            set.spawn(async move {
                let _ = b.release(id, "the broker is shutting down").await;
            });
        }
        let _ = tokio::time::timeout(cap, async { while set.join_next().await.is_some() {} }).await;
    }
}

/// The request a lease amounts to now (what is left of its lifetime).
fn params_of(rec: &LeaseRecord) -> MapParams {
    let m = &rec.mapping;
    MapParams {
        lifetime: rec.expires_at.map(|e| {
            let left = e.saturating_sub(now_ms() / 1000);
            u32::try_from(left.max(1)).unwrap_or(u32::MAX)
        }),
        persist: rec.persist,
        address: Some(m.internal.ip()),
        ..MapParams::new(wire_transport(m.transport), m.internal.port())
    }
}

/// Whether a clean stop keeps `lease` mapped and journaled (with
/// `broker.keep_leases_on_stop`): a persistent lease with a finite gateway
/// lifetime, which the next start adopts; a permanent mapping never, as
/// nothing would end it if the broker did not come back; a relayed one
/// never, as its allocation belongs to a socket that dies with the process
/// (the next start would only find it lost and allocate anew); nor one
/// already being released (its unmap waiting for a retry): it was ended,
/// and the next start must not adopt and renew it.
pub(crate) fn kept_on_stop(keep: bool, lease: &super::leases::Lease) -> bool {
    keep && lease.rec.persist
        && !lease.releasing
        && lease.rec.mapping.lifetime > 0
        && lease.relay.channels.is_empty()
}
