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
use std::net::{IpAddr, SocketAddr};

use p2pbroker_client::{ApiError, ErrorCode, LeaseState, MapParams};

use super::api;
use super::journal::LeaseRecord;
use super::timing;
use crate::gate::Transport;
use crate::netinfo::NetInfo;
use crate::policy::Policy;

/// A LAN client, told apart by the token it authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanPeer {
    /// Its address: it may only map that address...
    pub ip: IpAddr,
    /// ...unless the policy lets LAN clients map other hosts.
    pub third_party: bool,
    /// Its identity: a short digest of its token. Leases of one LAN client
    /// are invisible to every other.
    pub id: String,
}

/// Who asks: a local user (uid from SO_PEERCRED) or a LAN client, and the
/// connection (for release on close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The uid the access rules see (a LAN client's is the policy's).
    pub uid: u32,
    /// The connection id.
    pub conn: u64,
    /// Set for a LAN client.
    pub lan: Option<LanPeer>,
}

impl Requester {
    /// How refusals name the requester.
    pub fn describe(&self) -> String {
        match &self.lan {
            Some(l) => format!("LAN client {} ({})", l.id, l.ip),
            None => format!("uid {}", self.uid),
        }
    }

    /// Whether a lease with this owner is this requester's own.
    pub fn owns(&self, owner_uid: u32, owner_lan: Option<&str>) -> bool {
        match (&self.lan, owner_lan) {
            (Some(me), Some(them)) => me.id == them,
            (None, None) => self.uid == owner_uid,
            _ => false,
        }
    }

    /// Whether this requester may see and release such a lease: its own,
    /// and every lease for local root.
    pub fn sees(&self, owner_uid: u32, owner_lan: Option<&str>) -> bool {
        (self.lan.is_none() && self.uid == 0) || self.owns(owner_uid, owner_lan)
    }
}

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
}

impl Lease {
    /// Whether `who` may see (list, follow, release) it.
    pub fn visible_to(&self, who: &Requester) -> bool {
        !self.releasing && who.sees(self.rec.owner_uid, self.rec.owner_lan.as_deref())
    }
}

/// A map the table allowed: what to map and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The internal endpoint.
    pub internal: SocketAddr,
    /// When the lease ends (unix ms): the request's lifetime, or the cap
    /// that applies to the requester when it gave none.
    pub expires_ms: u64,
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

    /// Whether `who` may release lease `id`.
    pub fn may_unmap(&self, id: u64, who: &Requester) -> Result<(), ApiError> {
        match self.leases.get(&id) {
            Some(l) if l.visible_to(who) => Ok(()),
            // Another's lease is "not found" to a LAN client, so one cannot
            // probe for the ids of another; local users share one host.
            Some(l) if !l.releasing && who.lan.is_none() => Err(api(
                ErrorCode::Unauthorized,
                format!("lease {id} belongs to another user"),
            )),
            _ => Err(api(ErrorCode::NotFound, format!("no lease {id}"))),
        }
    }

    /// Check a map request against the policy: expiry, access rules, caps
    /// (maps in flight count), lifetime, and whose address may be mapped.
    /// Ownership of the endpoint is checked by the caller against the
    /// host's socket table ([`super::ownership`]).
    pub fn authorize(
        &self,
        p: &MapParams,
        who: &Requester,
        policy: &Policy,
        net: &NetInfo,
        now_ms: u64,
    ) -> Result<Authorized, ApiError> {
        self.authorize_as(None, p, who, policy, net, now_ms)
    }

    /// [`LeaseTable::authorize`] for lease `id`, which already exists (it
    /// is being re-established): it does not count against the caps.
    pub fn authorize_existing(
        &self,
        id: u64,
        p: &MapParams,
        who: &Requester,
        policy: &Policy,
        net: &NetInfo,
        now_ms: u64,
    ) -> Result<Authorized, ApiError> {
        self.authorize_as(Some(id), p, who, policy, net, now_ms)
    }

    fn authorize_as(
        &self,
        existing: Option<u64>,
        p: &MapParams,
        who: &Requester,
        policy: &Policy,
        net: &NetInfo,
        now_ms: u64,
    ) -> Result<Authorized, ApiError> {
        if let Some(at) = policy.expires_ms().filter(|e| now_ms >= *e) {
            return Err(api(
                ErrorCode::PolicyExpired,
                format!(
                    "the policy in force expired at {}; no new mapping until a valid policy arrives",
                    crate::policy::rfc3339_ms(at)
                ),
            ));
        }
        let transport = gate_transport(p.transport);
        if p.port == 0 || p.external_port == Some(0) || p.lifetime == Some(0) {
            return Err(api(
                ErrorCode::BadRequest,
                "port and lifetime must be at least 1",
            ));
        }
        let ports: Vec<u16> = std::iter::once(p.port).chain(p.external_port).collect();
        let whom = who.describe();
        let rules = policy.access_rules();
        let rule = rules
            .iter()
            .find(|r| r.applies_to(who.uid) && r.covers(transport, &ports))
            .ok_or_else(|| {
                api(
                    ErrorCode::Unauthorized,
                    format!("policy does not allow {whom} to map {transport:?} port(s) {ports:?}"),
                )
            })?;
        if p.persist && !rule.persist {
            return Err(api(
                ErrorCode::Unauthorized,
                format!("policy does not allow {whom} leases that outlive the connection"),
            ));
        }
        let cap = rule
            .max_lifetime
            .unwrap_or(u32::MAX)
            .min(policy.broker.max_lifetime);
        let lifetime = p.lifetime.unwrap_or(cap);
        if lifetime > cap {
            return Err(api(
                ErrorCode::Limit,
                format!("lifetime {lifetime} s exceeds the cap of {cap} s for {whom}"),
            ));
        }
        let (total, mine) = self.counts(who, existing);
        if total >= policy.broker.max_leases as usize {
            return Err(api(
                ErrorCode::Limit,
                format!(
                    "the broker holds its maximum of {} leases (maps in flight included)",
                    policy.broker.max_leases
                ),
            ));
        }
        if let Some(max) = rule.max_leases.filter(|m| mine >= *m as usize) {
            return Err(api(
                ErrorCode::Limit,
                format!("{whom} already holds its maximum of {max} leases"),
            ));
        }
        let ip = match (p.address, &who.lan) {
            (Some(a), Some(l)) if l.third_party => a,
            (Some(a), Some(l)) if a != l.ip => {
                return Err(api(
                    ErrorCode::Unauthorized,
                    format!(
                        "a LAN client may only map its own address {}, not {a}",
                        l.ip
                    ),
                ));
            }
            (_, Some(l)) => l.ip,
            (Some(a), None) => {
                if !net.addresses.iter().any(|x| x.address == a) {
                    return Err(api(
                        ErrorCode::Unauthorized,
                        format!("{a} is not an address of this host"),
                    ));
                }
                a
            }
            (None, None) => local_internal(net)
                .ok_or_else(|| api(ErrorCode::NoMode, "this host has no address to map"))?,
        };
        Ok(Authorized {
            internal: SocketAddr::new(ip, p.port),
            expires_ms: now_ms.saturating_add(u64::from(lifetime) * 1000),
        })
    }

    /// Live leases and maps in flight, but for `except`: in all, and
    /// `who`'s own.
    fn counts(&self, who: &Requester, except: Option<u64>) -> (usize, usize) {
        let lan = |l: &Option<String>| l.clone();
        let live = self
            .leases
            .values()
            .filter(|l| !l.releasing && Some(l.rec.id) != except)
            .map(|l| (l.rec.owner_uid, lan(&l.rec.owner_lan)));
        let pending = self
            .pending
            .values()
            .map(|p| (p.owner_uid, lan(&p.owner_lan)));
        live.chain(pending).fold((0, 0), |(t, m), (uid, lan)| {
            (t + 1, m + usize::from(who.owns(uid, lan.as_deref())))
        })
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
                    format!("{internal} ({transport:?}) is already mapped by {by}"),
                ));
            }
            if external_port.is_some() && ext == external_port {
                return Err(api(
                    ErrorCode::Conflict,
                    format!(
                        "external port {} ({transport:?}) is held by {by} of this broker",
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

/// The gate's transport for a client API transport.
pub fn gate_transport(t: p2pbroker_client::Transport) -> Transport {
    match t {
        p2pbroker_client::Transport::Tcp => Transport::Tcp,
        p2pbroker_client::Transport::Udp => Transport::Udp,
    }
}

/// This host's address to map for a local client: the one on the subnet of
/// the first default gateway, else the first IPv4 address.
pub fn local_internal(net: &NetInfo) -> Option<IpAddr> {
    let on_link = |gw: &IpAddr| {
        net.addresses
            .iter()
            .find(|a| ipnet::IpNet::new(a.address, a.prefix_len).is_ok_and(|n| n.contains(gw)))
    };
    net.gateways
        .iter()
        .find_map(on_link)
        .map(|a| a.address)
        .or_else(|| {
            net.addresses
                .iter()
                .map(|a| a.address)
                .find(IpAddr::is_ipv4)
        })
}

#[cfg(test)]
#[path = "leases_tests.rs"]
mod tests;
