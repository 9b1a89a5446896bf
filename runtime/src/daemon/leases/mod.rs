//! The lease table: every decision the broker makes about leases, as pure
//! functions of the table, the request, the policy and `now` (unix ms).
//!
//! The async daemon only pumps: it asks the table whether a request is
//! allowed ([`LeaseTable::authorize`]), reserves the endpoint
//! ([`LeaseTable::reserve`]), runs the MOD, and hands the result back
//! ([`LeaseTable::install`], [`LeaseTable::settle`]); upkeep asks what is
//! due ([`LeaseTable::take_due`]). No socket, clock, journal or wasm here,
//! so every rule is unit-tested with plain values.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use p2pbroker_client::{ApiError, ErrorCode, LeaseState};

use super::api;
use super::journal::LeaseRecord;
use super::timing;
use crate::gate::Transport;

/// A lease as the broker holds it.
#[derive(Debug, Clone)]
pub struct Lease {
    /// What the journal holds.
    pub rec: LeaseRecord,
    /// Client-visible state.
    pub state: LeaseState,
    /// The connection that holds it, unless persistent.
    pub conn: Option<u64>,
    /// Next upkeep action (unix ms): renewal, retry or re-establishment.
    pub due_ms: Option<u64>,
    /// Consecutive failed renewals or re-establishments.
    pub failures: u32,
    /// An upkeep task is working on it.
    pub busy: bool,
    /// Being released (unmap in flight or failed and retried): hidden from
    /// clients, kept in the journal until the gateway has forgotten it.
    pub releasing: bool,
    /// The relay channels it holds (a TURN MOD's; gone with the process,
    /// so never journaled) and what they carry.
    pub relay: Relay,
}

/// A relayed lease's channels (contract 0.1.4 `relay`).
#[derive(Debug, Clone, Default)]
pub struct Relay {
    /// Channel ids, oldest first.
    pub channels: Vec<u32>,
    /// What the first carries.
    pub carrying: Option<crate::relay::Carrying>,
}

impl Lease {
    /// Whether `who` may see (list, follow, release) it.
    pub fn visible_to(&self, who: &Requester) -> bool {
        !self.releasing && who.sees(self.rec.owner_uid, self.rec.owner_lan.as_deref())
    }
}

/// A map in flight: its endpoint is taken and it counts toward the caps.
#[derive(Debug, Clone)]
struct Pending {
    transport: Transport,
    internal: SocketAddr,
    external_port: Option<u16>,
    owner_uid: u32,
    owner_lan: Option<String>,
    conn: u64,
}

/// What upkeep must do for a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Its lifetime ended: release it.
    Expire,
    /// The policy in force expired and the gateway's lifetime ran out:
    /// release it (it is not renewed beyond the policy's expiry).
    PolicyExpired,
    /// Renew it on its gateway.
    Renew,
    /// Its mapping was lost: map it again.
    Reestablish,
    /// A release did not finish: try again.
    Release,
}

/// Every lease and every map in flight.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: BTreeMap<u64, Lease>,
    pending: BTreeMap<u64, Pending>,
    /// Closed connections that still have a map in flight: what lands for
    /// them is released at once.
    closed: std::collections::BTreeSet<u64>,
    next_id: u64,
}

impl LeaseTable {
    /// An empty table whose ids start after `max_id` (ids are never reused).
    pub fn new(max_id: u64) -> LeaseTable {
        LeaseTable {
            next_id: max_id,
            ..LeaseTable::default()
        }
    }

    /// Lease `id`.
    pub fn get(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every lease, releasing ones included.
    pub fn all(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Live (not releasing) leases `who` may see.
    pub fn visible(&self, who: &Requester) -> impl Iterator<Item = &Lease> {
        self.leases.values().filter(move |l| l.visible_to(who))
    }

    /// Leases held by connection `conn` (released when it closes).
    pub fn of_connection(&self, conn: u64) -> Vec<u64> {
        self.leases
            .values()
            .filter(|l| l.conn == Some(conn) && !l.releasing)
            .map(|l| l.rec.id)
            .collect()
    }

    /// Take the endpoint for a map in flight, refusing one that collides
    /// with a lease or another map in flight: the same internal endpoint,
    /// or an external port another holds. Returns the new lease's id.
    pub fn reserve(
        &mut self,
        transport: Transport,
        internal: SocketAddr,
        external_port: Option<u16>,
        who: &Requester,
    ) -> Result<u64, ApiError> {
        let held = self
            .leases
            .values()
            .filter(|l| !l.releasing && l.rec.mapping.transport == transport)
            .map(|l| {
                (
                    format!("lease {}", l.rec.id),
                    l.rec.mapping.internal,
                    Some(l.rec.mapping.external.port()),
                )
            });
        let flying = self
            .pending
            .values()
            .filter(|p| p.transport == transport)
            .map(|p| ("another request".to_string(), p.internal, p.external_port));
        for (by, int, ext) in held.chain(flying) {
            if int == internal {
                return Err(api(
                    ErrorCode::Conflict,
                    format!("{internal} ({transport}) is already mapped by {by}"),
                ));
            }
            if external_port.is_some() && ext == external_port {
                return Err(api(
                    ErrorCode::Conflict,
                    format!(
                        "external port {} ({transport}) is held by {by} of this broker",
                        external_port.unwrap_or_default()
                    ),
                ));
            }
        }
        self.next_id += 1;
        self.pending.insert(
            self.next_id,
            Pending {
                transport,
                internal,
                external_port,
                owner_uid: who.uid,
                owner_lan: who.lan.as_ref().map(|l| l.id.clone()),
                conn: who.conn,
            },
        );
        Ok(self.next_id)
    }

    /// Drop a reservation (the map failed, or was refused).
    pub fn cancel(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            self.forget_closed(p.conn);
        }
    }

    /// Connection `conn` closed: remember it while a map of it is in flight.
    pub fn close_connection(&mut self, conn: u64) {
        if self.pending.values().any(|p| p.conn == conn) {
            self.closed.insert(conn);
        }
    }

    fn forget_closed(&mut self, conn: u64) {
        if !self.pending.values().any(|p| p.conn == conn) {
            self.closed.remove(&conn);
        }
    }

    /// Whether reservation `id` is still open.
    pub fn is_pending(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Turn reservation `rec.id` into a lease (its mapping is journaled),
    /// held by connection `conn` unless persistent; `r` draws the jitter.
    /// Also says whether that connection closed while the map was in
    /// flight: then nobody holds the lease and the caller releases it.
    pub fn install(
        &mut self,
        rec: LeaseRecord,
        conn: Option<u64>,
        now_ms: u64,
        r: u32,
    ) -> (Lease, bool) {
        let orphaned = match self.pending.remove(&rec.id) {
            Some(p) => {
                let gone = self.closed.contains(&p.conn);
                self.forget_closed(p.conn);
                gone && conn.is_some()
            }
            None => false,
        };
        let lease = Lease {
            due_ms: timing::renew_at(now_ms, rec.mapping.lifetime, r),
            rec,
            state: LeaseState::Active,
            conn,
            failures: 0,
            busy: false,
            releasing: false,
            relay: Relay::default(),
        };
        self.leases.insert(lease.rec.id, lease.clone());
        (lease, orphaned)
    }

    /// Mark due leases busy and return them, with the next due time.
    /// After the policy's expiry (`policy_expiry_ms`) nothing is renewed or
    /// re-established: leases are released once their gateway lifetime
    /// (which renewals never stretch past the expiry) runs out.
    pub fn take_due(
        &mut self,
        now_ms: u64,
        policy_expiry_ms: Option<u64>,
    ) -> (Vec<(u64, Due)>, Option<u64>) {
        let expired_policy = policy_expiry_ms.is_some_and(|e| now_ms >= e);
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        for l in self.leases.values_mut().filter(|l| !l.busy) {
            let expiry = l.rec.expires_at.map(|e| e * 1000);
            let gateway = l.rec.gateway_expiry().map(|e| e * 1000);
            let (what, at) = if l.releasing {
                (Due::Release, l.due_ms)
            } else if expiry.is_some_and(|e| e <= now_ms) {
                (Due::Expire, Some(now_ms))
            } else if expired_policy {
                // A lost lease has no mapping to wait for.
                let lapse = if l.state == LeaseState::Active {
                    gateway
                } else {
                    Some(now_ms)
                };
                (Due::PolicyExpired, min_some(lapse, expiry))
            } else if l.state != LeaseState::Active {
                (Due::Reestablish, min_some(l.due_ms, expiry))
            } else {
                (Due::Renew, min_some(l.due_ms, expiry))
            };
            let Some(at) = at else { continue };
            if at <= now_ms {
                l.busy = true;
                let what = match what {
                    Due::Renew | Due::Reestablish if expiry.is_some_and(|e| e <= now_ms) => {
                        Due::Expire
                    }
                    w => w,
                };
                due.push((l.rec.id, what));
            } else {
                next = Some(next.map_or(at, |n: u64| n.min(at)));
            }
        }
        (due, next)
    }

    /// An upkeep task finished with lease `id`.
    pub fn done(&mut self, id: u64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.busy = false;
        }
    }

    /// Install a journaled record after a renewal or re-establishment: the
    /// lease is active again and its next renewal scheduled. `None` if the
    /// lease is gone or being released meanwhile.
    pub fn settle(&mut self, rec: LeaseRecord, now_ms: u64, r: u32) -> Option<Lease> {
        let l = self.leases.get_mut(&rec.id).filter(|l| !l.releasing)?;
        l.due_ms = timing::renew_at(now_ms, rec.mapping.lifetime, r);
        l.rec = rec;
        l.state = LeaseState::Active;
        l.failures = 0;
        Some(l.clone())
    }

    /// Whether lease `id` is gone or being released (its journal `del`
    /// must stay the last word).
    pub fn is_releasing(&self, id: u64) -> bool {
        self.leases.get(&id).is_none_or(|l| l.releasing)
    }

    /// A renewal failed: retry with back-off, never past the gateway expiry.
    pub fn retry_later(&mut self, id: u64, now_ms: u64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.failures += 1;
            let expiry = l.rec.gateway_expiry().map(|e| e * 1000);
            l.due_ms = Some(timing::retry_at(now_ms, l.failures, expiry));
        }
    }

    /// Do nothing for lease `id` until `at` (unix ms): not worth renewing.
    pub fn hold_until(&mut self, id: u64, at: u64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.due_ms = Some(at);
        }
    }

    /// The mapping is gone: the lease is lost (until re-established).
    pub fn mark_lost(&mut self, id: u64) -> Option<Lease> {
        let l = self.leases.get_mut(&id).filter(|l| !l.releasing)?;
        l.state = LeaseState::Lost;
        l.failures = 0;
        Some(l.clone())
    }

    /// A re-establishment starts.
    pub fn begin_reestablish(&mut self, id: u64) -> Option<Lease> {
        let l = self.leases.get_mut(&id).filter(|l| !l.releasing)?;
        l.state = LeaseState::ReEstablishing;
        Some(l.clone())
    }

    /// A re-establishment failed: lost again, retried with back-off.
    pub fn reestablish_failed(&mut self, id: u64, now_ms: u64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.state = LeaseState::Lost;
            l.failures += 1;
            l.due_ms = Some(timing::retry_at(now_ms, l.failures, None));
        }
    }

    /// Start releasing lease `id`: hidden from clients from now on. Returns
    /// the lease and whether this is the first attempt (the client hears
    /// `released` once).
    pub fn begin_release(&mut self, id: u64) -> Option<(Lease, bool)> {
        let l = self.leases.get_mut(&id)?;
        let first = !l.releasing;
        l.releasing = true;
        l.busy = true;
        Some((l.clone(), first))
    }

    /// The unmap failed: keep the lease (journaled, hidden) and retry.
    pub fn release_failed(&mut self, id: u64, now_ms: u64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.failures += 1;
            l.due_ms = Some(timing::retry_at(now_ms, l.failures, None));
            l.busy = false;
        }
    }

    /// Record the relay channels lease `id` holds now.
    pub fn set_relay(&mut self, id: u64, relay: Relay) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.relay = relay;
        }
    }

    /// Forget lease `id` (its mapping is gone and its `del` journaled).
    pub fn remove(&mut self, id: u64) -> Option<Lease> {
        self.leases.remove(&id)
    }

    /// After a start: adopt the journal's leases. Persistent, unexpired ones
    /// are kept and renewed now (renewal finds out whether they survived);
    /// the others were held by connections that died with the old process,
    /// so they are released.
    pub fn adopt(&mut self, records: impl IntoIterator<Item = LeaseRecord>, now_ms: u64) {
        for rec in records {
            self.next_id = self.next_id.max(rec.id);
            let keep = rec.persist && rec.expires_at.is_none_or(|e| e * 1000 > now_ms);
            self.leases.insert(
                rec.id,
                Lease {
                    rec,
                    state: LeaseState::Active,
                    conn: None,
                    due_ms: Some(now_ms),
                    failures: 0,
                    busy: false,
                    releasing: !keep,
                    relay: Relay::default(),
                },
            );
        }
    }

    /// Every lease is due now (the network changed: find out which
    /// survived).
    pub fn renew_all_now(&mut self, now_ms: u64) {
        for l in self.leases.values_mut().filter(|l| !l.releasing) {
            l.due_ms = Some(now_ms);
        }
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

mod authorize;
#[cfg(test)]
mod tests;

pub use authorize::{
    Authorized, LanPeer, Requester, gate_transport, local_internal, owner_in, refused_by_rules,
    rule_for, wire_transport,
};
