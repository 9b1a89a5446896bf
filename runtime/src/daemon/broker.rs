//! The broker's state and its client-facing operations: map, unmap, list,
//! status, probe. Lease upkeep (renewal, loss, re-establishment, release)
//! lives in [`super::upkeep`].
//!
//! Locking: `shared` is a plain mutex never held across an `.await`; MOD
//! calls run outside it. The journal has its own mutex, taken after
//! `shared` is released, and every change is journaled before a client or
//! subscriber hears of it.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pbroker_client::{
    ApiError, ErrorCode, Event, EventKind, Lease as LeaseView, LeaseState, MapParams, ModeReason,
};
use tokio::sync::{Notify, broadcast};

use super::journal::{Journal, LeaseRecord};
use super::selector::{self, Failure, Probe};
use super::timing;
use super::views;
use crate::bindings::MapRequest;
use crate::gate::Transport;
use crate::host::{Mode, ModeHost, Op, Output};
use crate::json::{MappingJson, wit_transport};
use crate::netinfo::NetInfo;
use crate::policy::Policy;

/// Who asked: the peer's uid and its connection (for release on close).
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    /// uid from SO_PEERCRED (or the LAN identity's mapped uid).
    pub uid: u32,
    /// The connection id.
    pub conn: u64,
    /// For a LAN client, its address: it may only map that address...
    pub lan_peer: Option<IpAddr>,
    /// ...unless the policy lets LAN clients map other hosts.
    pub third_party: bool,
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

/// Mutable broker state.
pub struct Shared {
    /// The policy in force.
    pub policy: Arc<Policy>,
    /// Loaded MODs the policy permits, by name.
    pub modes: BTreeMap<String, Arc<Mode>>,
    /// Components that could not be loaded, with why.
    pub load_errors: Vec<(String, String)>,
    /// The network as last read.
    pub net: Arc<NetInfo>,
    /// The latest probe of each MOD.
    pub probes: BTreeMap<String, Probe>,
    /// When the last full probe round finished.
    pub probed_at: Option<Instant>,
    /// Leases by id.
    pub leases: BTreeMap<u64, Lease>,
    /// The next lease id.
    pub next_id: u64,
    /// (transport, internal endpoint) of maps in flight.
    pub pending: HashSet<(Transport, SocketAddr)>,
}

/// The broker.
pub struct Broker {
    /// The sandbox host.
    pub host: ModeHost,
    /// State.
    pub shared: Mutex<Shared>,
    /// The lease journal.
    pub journal: Mutex<Journal>,
    /// Subscribers' feed.
    pub events: broadcast::Sender<Event>,
    /// Held while a probe round runs, so concurrent requests share one
    /// round instead of each starting their own.
    pub probing: tokio::sync::Mutex<()>,
    /// Wakes the upkeep loop when a lease's schedule changed.
    pub wake: Notify,
    /// When the daemon started.
    pub started: Instant,
    /// Where the policy in force came from (shown in status).
    pub policy_source: Mutex<String>,
    /// The MODs folder (reloaded when the policy changes).
    pub modes_dir: std::path::PathBuf,
    /// The state folder (journal, cache, trust state).
    pub state_dir: std::path::PathBuf,
    /// Root of trust and anti-rollback state, when fleet push is on.
    pub trust: Mutex<Option<super::fleet::TrustState>>,
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn api(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        message: message.into(),
        reasons: Vec::new(),
    }
}

fn gate_transport(t: p2pbroker_client::Transport) -> Transport {
    match t {
        p2pbroker_client::Transport::Tcp => Transport::Tcp,
        p2pbroker_client::Transport::Udp => Transport::Udp,
    }
}

/// This host's address to map for a local client: the one on the subnet of
/// the first default gateway, else the first address of the family.
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

impl Broker {
    /// Emit an event to subscribers (none listening is fine).
    pub fn emit(&self, kind: EventKind, lease: &Lease, reason: Option<String>) {
        let _ = self.events.send(Event {
            kind,
            lease: views::lease(lease),
            reason,
        });
    }

    /// Probe results no older than the policy's TTL, probing now if needed
    /// (or if `fresh`).
    pub async fn probes(&self, fresh: bool) -> BTreeMap<String, Probe> {
        let asked = Instant::now();
        let _round = self.probing.lock().await;
        let (modes, budget, cap) = {
            let s = self.shared.lock().unwrap();
            let ttl = Duration::from_secs(s.policy.broker.probe_ttl_s);
            // A round that finished after we asked is fresh enough even
            // for `fresh`: at most one round old.
            let done = s
                .probed_at
                .filter(|t| *t >= asked || (!fresh && t.elapsed() < ttl));
            if done.is_some() {
                return s.probes.clone();
            }
            let b = &s.policy.broker;
            (
                s.modes.values().cloned().collect::<Vec<_>>(),
                Duration::from_millis(b.probe_budget_ms),
                Duration::from_millis(b.probe_cap_ms),
            )
        };
        let probes = selector::probe_all(modes, budget, cap).await;
        let mut s = self.shared.lock().unwrap();
        s.probes = probes.into_iter().map(|p| (p.mode.clone(), p)).collect();
        s.probed_at = Some(Instant::now());
        s.probes.clone()
    }

    /// Forget probe results (network changed, a MOD failed).
    pub fn invalidate_probes(&self) {
        self.shared.lock().unwrap().probed_at = None;
    }

    /// Check a map request against the access rules and caps; returns the
    /// internal endpoint to map.
    fn authorize(&self, p: &MapParams, owner: &Owner) -> Result<SocketAddr, ApiError> {
        let s = self.shared.lock().unwrap();
        let policy = &s.policy;
        let transport = gate_transport(p.transport);
        if p.port == 0 || p.external_port == Some(0) || p.lifetime == Some(0) {
            return Err(api(
                ErrorCode::BadRequest,
                "port and lifetime must be at least 1",
            ));
        }
        let ports: Vec<u16> = std::iter::once(p.port).chain(p.external_port).collect();
        let rules = policy.access_rules();
        let who = match owner.lan_peer {
            Some(ip) => format!("LAN client {ip}"),
            None => format!("uid {}", owner.uid),
        };
        let rule = rules
            .iter()
            .find(|r| r.applies_to(owner.uid) && r.covers(transport, &ports))
            .ok_or_else(|| {
                api(
                    ErrorCode::Unauthorized,
                    format!("policy does not allow {who} to map {transport:?} port(s) {ports:?}"),
                )
            })?;
        if p.persist && !rule.persist {
            return Err(api(
                ErrorCode::Unauthorized,
                format!("policy does not allow {who} leases that outlive the connection"),
            ));
        }
        let cap = rule
            .max_lifetime
            .unwrap_or(u32::MAX)
            .min(policy.broker.max_lifetime);
        if let Some(l) = p.lifetime.filter(|l| *l > cap) {
            return Err(api(
                ErrorCode::Limit,
                format!("lifetime {l} s exceeds the cap of {cap} s for {who}"),
            ));
        }
        let live = s.leases.values().filter(|l| !l.releasing);
        let (total, mine) = live.fold((0u32, 0u32), |(t, m), l| {
            (t + 1, m + u32::from(l.rec.owner_uid == owner.uid))
        });
        if total + s.pending.len() as u32 >= policy.broker.max_leases {
            return Err(api(
                ErrorCode::Limit,
                format!("the broker holds its maximum of {total} leases"),
            ));
        }
        if let Some(max) = rule.max_leases.filter(|m| mine >= *m) {
            return Err(api(
                ErrorCode::Limit,
                format!("{who} already holds its maximum of {max} leases"),
            ));
        }
        let ip = match (p.address, owner.lan_peer) {
            (Some(a), Some(_)) if owner.third_party => a,
            (Some(a), Some(peer)) if a != peer => {
                return Err(api(
                    ErrorCode::Unauthorized,
                    format!("a LAN client may only map its own address {peer}, not {a}"),
                ));
            }
            (_, Some(peer)) => peer,
            (Some(a), None) => {
                if !s.net.addresses.iter().any(|x| x.address == a) {
                    return Err(api(
                        ErrorCode::Unauthorized,
                        format!("{a} is not an address of this host"),
                    ));
                }
                a
            }
            (None, None) => local_internal(&s.net)
                .ok_or_else(|| api(ErrorCode::NoMode, "this host has no address to map"))?,
        };
        Ok(SocketAddr::new(ip, p.port))
    }

    /// Refuse a map that would collide with a lease of this broker: the
    /// same internal endpoint, or an external port another lease holds.
    fn reserve(
        &self,
        transport: Transport,
        internal: SocketAddr,
        ext: Option<u16>,
    ) -> Result<(), ApiError> {
        let mut s = self.shared.lock().unwrap();
        for l in s.leases.values().filter(|l| !l.releasing) {
            let m = &l.rec.mapping;
            if m.transport != transport {
                continue;
            }
            if m.internal == internal {
                return Err(api(
                    ErrorCode::Conflict,
                    format!(
                        "{internal} ({transport:?}) is already mapped by lease {}",
                        l.rec.id
                    ),
                ));
            }
            if ext == Some(m.external.port()) {
                return Err(api(
                    ErrorCode::Conflict,
                    format!(
                        "external port {} ({transport:?}) is held by another lease of this broker",
                        m.external.port()
                    ),
                ));
            }
        }
        if !s.pending.insert((transport, internal)) {
            return Err(api(
                ErrorCode::Conflict,
                format!("{internal} ({transport:?}) is being mapped by another request"),
            ));
        }
        Ok(())
    }

    /// Map for a client: authorize, select, map, journal, then answer.
    pub async fn map(self: &Arc<Self>, p: MapParams, owner: Owner) -> Result<LeaseView, ApiError> {
        let internal = self.authorize(&p, &owner)?;
        let transport = gate_transport(p.transport);
        self.reserve(transport, internal, p.external_port)?;
        let result = self.map_reserved(&p, &owner, transport, internal).await;
        self.shared
            .lock()
            .unwrap()
            .pending
            .remove(&(transport, internal));
        result
    }

    async fn map_reserved(
        self: &Arc<Self>,
        p: &MapParams,
        owner: &Owner,
        transport: Transport,
        internal: SocketAddr,
    ) -> Result<LeaseView, ApiError> {
        let now = now_ms();
        let expires_ms = p.lifetime.map(|l| now + u64::from(l) * 1000);
        let (mode, mapping) = self
            .establish(
                transport,
                internal,
                p.external_port,
                expires_ms,
                p.mode.as_deref(),
                None,
            )
            .await?;
        let id = {
            let mut s = self.shared.lock().unwrap();
            s.next_id += 1;
            s.next_id
        };
        let rec = LeaseRecord {
            id,
            mode: mode.name().to_string(),
            mode_sha256: mode.sha256().to_string(),
            mapping: MappingJson::from(&mapping),
            granted_at: now_ms() / 1000,
            owner_uid: owner.uid,
            persist: p.persist,
            expires_at: expires_ms.map(|e| e.div_ceil(1000)),
            created_at: now / 1000,
        };
        let journaled = self.journal.lock().unwrap().put(&rec);
        if let Err(e) = journaled {
            // Not durable: undo rather than hand out a mapping we could leak.
            let _ = mode.call(Op::Unmap(mapping)).await;
            return Err(api(ErrorCode::Internal, e.to_string()));
        }
        let lease = Lease {
            due_ms: timing::renew_at(now_ms(), rec.mapping.lifetime, crate::daemon::random_u32()),
            rec,
            state: LeaseState::Active,
            conn: (!p.persist).then_some(owner.conn),
            failures: 0,
            busy: false,
            releasing: false,
        };
        let view = views::lease(&lease);
        self.emit(
            EventKind::Mapped,
            &lease,
            Some(format!("via {}", lease.rec.mode)),
        );
        self.shared.lock().unwrap().leases.insert(id, lease);
        self.wake.notify_one();
        Ok(view)
    }

    /// Find a MOD that maps `internal`: the forced one, or the ranked
    /// candidates in turn (`prefer` first if it is one). The error lists
    /// every MOD's reason.
    pub async fn establish(
        &self,
        transport: Transport,
        internal: SocketAddr,
        external_port: Option<u16>,
        expires_ms: Option<u64>,
        forced: Option<&str>,
        prefer: Option<&str>,
    ) -> Result<(Arc<Mode>, crate::bindings::Mapping), ApiError> {
        let probes = self.probes(false).await;
        let (candidates, mut reasons, policy) = {
            let s = self.shared.lock().unwrap();
            let (_, order) = s.policy.order_for(&s.net);
            let ranking = match forced {
                Some(name) if !s.modes.contains_key(name) => {
                    return Err(api(
                        ErrorCode::NotFound,
                        format!("mode `{name}` is not loaded or not permitted by the policy"),
                    ));
                }
                Some(name) => selector::Ranking {
                    candidates: vec![name.to_string()],
                    excluded: vec![],
                },
                None => {
                    let order: Vec<String> = order
                        .into_iter()
                        .filter(|m| s.modes.contains_key(m))
                        .collect();
                    selector::rank(&order, &probes)
                }
            };
            let mut c = ranking.candidates;
            if let Some(pos) = prefer.and_then(|m| c.iter().position(|x| x == m)) {
                let m = c.remove(pos);
                c.insert(0, m);
            }
            let modes: Vec<Arc<Mode>> = c.iter().filter_map(|n| s.modes.get(n).cloned()).collect();
            (modes, ranking.excluded, s.policy.clone())
        };
        for mode in candidates {
            let lifetime =
                timing::gateway_lifetime(policy.broker.mapping_lifetime, now_ms(), expires_ms);
            let probe_state = probes
                .get(mode.name())
                .and_then(|p| p.result.as_ref().ok())
                .map(|s| s.state.clone())
                .unwrap_or_default();
            let req = MapRequest {
                transport: wit_transport(transport),
                internal: internal.into(),
                external_port,
                lifetime,
                permanent_allowed: policy.broker.permanent_allowed,
                probe_state,
            };
            let r = mode.call(Op::Map(req)).await;
            match r.result {
                Ok(Output::Mapping(m)) => return Ok((mode, m)),
                Ok(_) => reasons.push((
                    mode.name().to_string(),
                    Failure::new("fault", "map returned no mapping"),
                )),
                Err(e) => {
                    let f = selector::failure(&e);
                    let conflict = f.kind == "conflict" && external_port.is_some();
                    reasons.push((mode.name().to_string(), f));
                    if conflict {
                        // The port is taken on the gateway: another MOD on the
                        // same gateway would only say so again.
                        break;
                    }
                }
            }
        }
        let code = if reasons.iter().any(|(_, f)| f.kind == "conflict") {
            ErrorCode::Conflict
        } else {
            ErrorCode::NoMode
        };
        let summary = if reasons.is_empty() {
            "no MOD is permitted by the policy".to_string()
        } else {
            reasons
                .iter()
                .map(|(m, f)| format!("{m}: {} ({})", f.kind, f.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        // A MOD that failed may see the network differently next time.
        self.invalidate_probes();
        Err(ApiError {
            code,
            message: format!("no MOD could map {internal} ({transport:?}): {summary}"),
            reasons: reasons
                .into_iter()
                .map(|(mode, f)| ModeReason {
                    mode,
                    kind: f.kind,
                    reason: f.reason,
                })
                .collect(),
        })
    }

    /// Release lease `id` for its owner (root may release any).
    pub async fn unmap(self: &Arc<Self>, id: u64, owner: &Owner) -> Result<LeaseView, ApiError> {
        {
            let s = self.shared.lock().unwrap();
            match s.leases.get(&id) {
                Some(l) if !l.releasing && (l.rec.owner_uid == owner.uid || owner.uid == 0) => {}
                Some(l) if !l.releasing => {
                    return Err(api(
                        ErrorCode::Unauthorized,
                        format!("lease {id} belongs to another user"),
                    ));
                }
                _ => return Err(api(ErrorCode::NotFound, format!("no lease {id}"))),
            }
        }
        self.release(id, "released by its client").await
    }

    /// Leases visible to `owner` (root sees all).
    pub fn list(&self, owner: &Owner) -> Vec<LeaseView> {
        let s = self.shared.lock().unwrap();
        s.leases
            .values()
            .filter(|l| !l.releasing && (owner.uid == 0 || l.rec.owner_uid == owner.uid))
            .map(views::lease)
            .collect()
    }

    /// Release every non-persistent lease of connection `conn`.
    pub async fn connection_closed(self: &Arc<Self>, conn: u64) {
        let ids: Vec<u64> = {
            let s = self.shared.lock().unwrap();
            s.leases
                .values()
                .filter(|l| l.conn == Some(conn) && !l.releasing)
                .map(|l| l.rec.id)
                .collect()
        };
        for id in ids {
            let _ = self.release(id, "its client disconnected").await;
        }
    }
}

/// Reasons as (mode, failure) pairs for a `no-mode` answer.
pub fn reasons_of(probes: &BTreeMap<String, Probe>) -> Vec<ModeReason> {
    probes
        .values()
        .filter_map(|p| p.result.as_ref().err().map(|f| (p, f)))
        .map(|(p, f)| ModeReason {
            mode: p.mode.clone(),
            kind: f.kind.clone(),
            reason: f.reason.clone(),
        })
        .collect()
}
