//! The broker's state and its client-facing operations: map, unmap, list,
//! probe. The decisions are the [`LeaseTable`]'s; this file pumps: it reads
//! the socket table, runs MODs, journals, and tells subscribers. Lease
//! upkeep lives in [`super::upkeep`].
//!
//! Locking: `shared` is a plain mutex never held across an `.await`; MOD
//! calls run outside it. The journal has its own mutex, taken after
//! `shared` is released, and every change is journaled before a client or
//! subscriber hears of it.
//!
//! Cancel safety: a map runs in a task of its own, so a client that goes
//! away mid-map cannot leave a reservation or an unjournaled mapping
//! behind. Each MOD attempt is journaled as an intent first, so even a
//! crash mid-call is reconciled at the next start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pbroker_client::{
    ApiError, ErrorCode, Event, EventKind, Lease as LeaseView, MapParams, ModeReason,
};
use tokio::sync::{Notify, broadcast};

use super::holelog::{Activity, Hole, ModeRef, Who};
use super::journal::{Intent, Journal, LeaseRecord};
use super::leases::{Lease, LeaseTable, Requester, gate_transport};
use super::proof::{Proof, handed_socket, owned};
use super::selector::{self, Probe};
use super::{api, timing, views};
use crate::gate::Transport;
use crate::json::{MappingJson, wit_transport};
use crate::netinfo::NetInfo;
use crate::policy::Policy;
use crate::sandbox::wit::relay::LeaseRelay;
use crate::sandbox::wit::{MapRequest, Mapping};
use crate::sandbox::{CallError, Mode, ModeHost, Op, Output};

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
    /// The latest NAT behaviour discovery.
    pub nat: Option<super::nat::NatSeen>,
    /// Leases and maps in flight.
    pub table: LeaseTable,
}

/// The broker.
pub struct Broker {
    /// The sandbox host.
    pub host: ModeHost,
    /// Everything that changes, under one lock.
    pub shared: Mutex<Shared>,
    /// The lease journal.
    pub journal: Mutex<Journal>,
    /// Events for subscribers.
    pub events: broadcast::Sender<Event>,
    /// Held while a probe round runs, so concurrent requests share one
    /// round instead of each starting their own.
    pub probing: tokio::sync::Mutex<()>,
    /// Held while a NAT discovery runs (one at a time).
    pub discovering: tokio::sync::Mutex<()>,
    /// Wakes the upkeep loop when a lease's schedule changed.
    pub wake: Notify,
    /// When the daemon started.
    pub started: Instant,
    /// Where the policy in force came from (shown in status).
    pub policy_source: Mutex<String>,
    /// Where MODs come from (reloaded when the policy changes).
    pub modes: super::ModeSources,
    /// The state folder (journal, cache, trust state).
    pub state_dir: std::path::PathBuf,
    /// Root of trust and anti-rollback state, when fleet push is on.
    pub trust: Mutex<Option<super::fleet::TrustState>>,
    /// Who opened which hole, when (see [`super::holelog`]).
    pub holes: Mutex<super::holelog::HoleLog>,
    /// Counters and histograms (`--metrics`; fed whether served or not).
    pub metrics: Arc<super::metrics::Metrics>,
    /// Maps and renewals under way, which a stop waits for.
    pub work: Arc<super::inflight::InFlight>,
    /// Held across a MOD call on a relayed lease: two calls on one relay
    /// channel would take each other's answers.
    pub relay_calls: tokio::sync::Mutex<()>,
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What to map and for whom: a new lease, or a lost one mapped again.
#[derive(Debug, Clone)]
pub struct Target {
    /// The lease id (its journal intent is written under it).
    pub id: u64,
    /// TCP or UDP.
    pub transport: Transport,
    /// The internal endpoint.
    pub internal: SocketAddr,
    /// The external port wanted, if any.
    pub external_port: Option<u16>,
    /// When the lease ends (unix ms): no gateway lifetime past it.
    pub expires_ms: Option<u64>,
}

impl Broker {
    /// Write a lease event to the hole log and emit it to subscribers
    /// (none listening is fine).
    pub fn emit(&self, kind: EventKind, lease: &Lease, reason: Option<String>) {
        let view = views::lease(lease);
        let rec = &lease.rec;
        self.log_hole(Hole {
            time_ms: now_ms(),
            activity: Activity::of(kind),
            who: Who {
                uid: rec.owner_uid,
                pid: rec.owner_pid,
                process: rec.owner_process.clone(),
                lan: rec.owner_lan.clone(),
            },
            transport: view.transport.to_string(),
            internal: view.internal,
            external: Some(view.external),
            lifetime: Some(view.gateway_lifetime),
            lease: Some(view.id),
            mode: Some(ModeRef {
                name: rec.mode.clone(),
                sha256: rec.mode_sha256.clone(),
                signers: Vec::new(),
            }),
            policy_serial: None,
            why: reason.clone(),
        });
        let _ = self.events.send(Event {
            kind,
            lease: view,
            reason,
        });
    }

    /// Append to the hole log, with the policy serial in force and the
    /// MOD's signers if that very component is still loaded. A failed
    /// write is logged; it does not undo what happened.
    pub fn log_hole(&self, mut h: Hole) {
        {
            let s = self.shared.lock().unwrap();
            h.policy_serial = s.policy.serial;
            if let Some(m) = h.mode.as_mut()
                && let Some(loaded) = s.modes.get(&m.name).filter(|l| l.sha256() == m.sha256)
            {
                m.signers = loaded.signers().to_vec();
            }
        }
        let mut log = self.holes.lock().unwrap();
        // A local user can send refusals as fast as it likes: only so many
        // are written a minute, so they cannot rotate real holes away.
        if h.activity == Activity::Refused {
            match log.admit_refusal(h.time_ms) {
                Some(0) => {}
                Some(n) => {
                    let why = h.why.take().unwrap_or_default();
                    h.why = Some(format!("{why} ({n} earlier refusals not logged)"));
                }
                None => return,
            }
            // Read only for a refusal that is written (a lease's is its
            // record's, taken at map time: the pid may be another's now).
            h.who.process = h.who.pid.and_then(super::holelog::process_name);
        }
        if let Err(e) = log.write(&super::holelog::record(&h)) {
            tracing::error!("{e}");
        }
        drop(log);
        super::holelog::trace(&h);
    }

    /// Probe results no older than the policy's TTL, probing now if needed
    /// (or if `fresh`, unless a round finished within
    /// [`timing::FRESH_PROBE_MIN_INTERVAL`]).
    pub async fn probes(&self, fresh: bool) -> BTreeMap<String, Probe> {
        let asked = Instant::now();
        let _round = self.probing.lock().await;
        let (modes, budget, cap) = {
            let s = self.shared.lock().unwrap();
            let ttl = Duration::from_secs(s.policy.broker.probe_ttl_s);
            // A round that finished after we asked is fresh enough even
            // for `fresh`, and so is one within the minimum interval.
            let serves = timing::probes_serve(
                s.probed_at.map(|t| t.elapsed()),
                s.probed_at.is_some_and(|t| t >= asked),
                fresh,
                ttl,
            );
            if serves {
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

    /// Map for a client (see [`Broker::map_checked`]); a refusal goes to
    /// the hole log too.
    pub async fn map(
        self: &Arc<Self>,
        p: MapParams,
        who: Requester,
        passed: Option<OwnedFd>,
    ) -> Result<LeaseView, ApiError> {
        let asked = (p.transport, p.port, p.address, p.mode.clone());
        let began = Instant::now();
        let r = self.map_checked(p, who.clone(), passed).await;
        match &r {
            Ok(lease) => self.metrics.mapped(&lease.mode, began.elapsed()),
            Err(e) => self.metrics.map_failed(e.code.as_str()),
        }
        if let Err(e) = &r {
            let (transport, port, address, mode) = asked;
            let lan = who.lan.as_ref();
            let ip = address
                .or(lan.map(|l| l.ip))
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            self.log_hole(Hole {
                time_ms: now_ms(),
                activity: Activity::Refused,
                who: Who {
                    uid: who.uid,
                    pid: who.pid,
                    process: None,
                    lan: lan.map(|l| l.id.clone()),
                },
                transport: transport.to_string(),
                internal: SocketAddr::new(ip, port),
                external: None,
                lifetime: None,
                lease: None,
                mode: mode.map(|m| ModeRef {
                    name: crate::text::escaped(&m),
                    ..ModeRef::default()
                }),
                policy_serial: None,
                why: Some(crate::text::escaped(&format!("{}: {}", e.code, e.message))),
            });
        }
        r
    }

    /// Authorize, prove ownership of the endpoint, reserve, then map in a
    /// task of its own (see the module docs) and answer when it is
    /// journaled. `passed` is the socket the client handed over with the
    /// request, if any.
    async fn map_checked(
        self: &Arc<Self>,
        mut p: MapParams,
        who: Requester,
        passed: Option<OwnedFd>,
    ) -> Result<LeaseView, ApiError> {
        let handed = handed_socket(&mut p, &who, passed)?;
        if p.until_closed && who.lan.is_some() {
            return Err(api(
                ErrorCode::BadRequest,
                "`until_closed` needs a local socket to follow; a LAN client has none here",
            ));
        }
        let transport = gate_transport(p.transport);
        let auth = {
            let s = self.shared.lock().unwrap();
            s.table.authorize(&p, &who, &s.policy, &s.net, now_ms())?
        };
        let holders = match handed {
            // A LAN client maps only its own address (checked above).
            None if who.lan.is_some() => Vec::new(),
            proof => owned(transport, auth.internal, Proof::of(who.uid, proof))
                .await
                .map_err(|e| api(ErrorCode::NotOwner, e.to_string()))?,
        };
        let Some(work) = self.work.enter() else {
            return Err(api(ErrorCode::ShuttingDown, "the broker is shutting down"));
        };
        let id = self.shared.lock().unwrap().table.reserve(
            transport,
            auth.internal,
            p.external_port,
            &who,
        )?;
        let follows = if p.until_closed { holders } else { Vec::new() };
        let target = Target {
            id,
            transport,
            internal: auth.internal,
            external_port: p.external_port,
            expires_ms: Some(auth.expires_ms),
        };
        let b = self.clone();
        let task = tokio::spawn(async move {
            let r = b.map_reserved(target, &p, &who, follows).await;
            drop(work);
            r
        });
        match task.await {
            Ok(r) => r,
            Err(e) => {
                self.shared.lock().unwrap().table.cancel(id);
                Err(api(ErrorCode::Internal, format!("map task failed: {e}")))
            }
        }
    }

    async fn map_reserved(
        self: &Arc<Self>,
        t: Target,
        p: &MapParams,
        who: &Requester,
        follows: Vec<u64>,
    ) -> Result<LeaseView, ApiError> {
        let created = now_ms();
        let (mode, mapping, relay) = match self.establish(&t, p.mode.as_deref(), None).await {
            Ok(x) => x,
            Err(e) => {
                self.shared.lock().unwrap().table.cancel(t.id);
                self.forget_intent(t.id);
                return Err(e);
            }
        };
        let rec = LeaseRecord {
            id: t.id,
            mode: mode.name().to_string(),
            mode_sha256: mode.sha256().to_string(),
            mapping: MappingJson::from(&mapping),
            granted_at: now_ms() / 1000,
            owner_uid: who.uid,
            owner_lan: who.lan.as_ref().map(|l| l.id.clone()),
            persist: p.persist,
            expires_at: t.expires_ms.map(|e| e.div_ceil(1000)),
            created_at: created / 1000,
            follows,
            owner_pid: who.pid,
            owner_process: who.pid.and_then(super::holelog::process_name),
        };
        let journaled = self.journal.lock().unwrap().put(&rec);
        if let Err(e) = journaled {
            // Not durable: undo rather than hand out a mapping we could leak.
            let lease = LeaseRelay {
                kept: relay.clone(),
                internal: Some(t.internal),
            };
            let _ = mode.call_for(Op::Unmap(mapping), lease).await;
            self.close_relay(&relay);
            self.shared.lock().unwrap().table.cancel(t.id);
            self.forget_intent(t.id);
            return Err(api(ErrorCode::Internal, e.to_string()));
        }
        let (mut lease, orphaned) = self.shared.lock().unwrap().table.install(
            rec,
            (!p.persist).then_some(who.conn),
            now_ms(),
            crate::daemon::random_u32(),
        );
        if !relay.is_empty() {
            lease.relay = self.record_relay(t.id, relay);
        }
        let view = views::lease(&lease);
        self.emit(
            EventKind::Mapped,
            &lease,
            Some(format!("via {}", lease.rec.mode)),
        );
        if orphaned {
            // Its client left while the MOD worked: nobody holds it.
            let _ = self.release(t.id, "its client disconnected").await;
        }
        self.wake.notify_one();
        Ok(view)
    }

    /// The intent of a map that did not happen: drop it from the journal.
    fn forget_intent(&self, id: u64) {
        if let Err(e) = self.journal.lock().unwrap().del(id) {
            tracing::error!("{e}");
        }
    }

    /// Find a MOD that maps `t`: the forced one, or the ranked candidates
    /// in turn (`prefer` first if it is one). Each attempt is journaled as
    /// an intent before the MOD runs. The error lists every MOD's reason.
    pub async fn establish(
        &self,
        t: &Target,
        forced: Option<&str>,
        prefer: Option<&str>,
    ) -> Result<(Arc<Mode>, Mapping, Vec<u32>), ApiError> {
        let probes = self.probes(false).await;
        let (candidates, mut reasons, policy) = {
            let s = self.shared.lock().unwrap();
            let (_, order) = s.policy.order_for(&s.net);
            let ranking = match forced {
                Some(name) if !s.modes.contains_key(name) => {
                    return Err(api(
                        ErrorCode::NotFound,
                        format!(
                            "mode `{}` is not loaded or not permitted by the policy",
                            crate::text::escape(name)
                        ),
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
            let until = min_some(t.expires_ms, policy.expires_ms());
            let lifetime =
                timing::gateway_lifetime(policy.broker.mapping_lifetime, now_ms(), until);
            let intent = Intent {
                id: t.id,
                mode: mode.name().to_string(),
                transport: t.transport,
                internal: t.internal,
                external_port: t.external_port,
            };
            if let Err(e) = self.journal.lock().unwrap().intent(&intent) {
                // Without the intent a crash mid-call could leak a mapping.
                return Err(api(ErrorCode::Internal, e.to_string()));
            }
            let probe_state = probes
                .get(mode.name())
                .and_then(|p| p.result.as_ref().ok())
                .map(|s| s.state.clone())
                .unwrap_or_default();
            let req = MapRequest {
                transport: wit_transport(t.transport),
                internal: t.internal.into(),
                external_port: t.external_port,
                lifetime,
                permanent_allowed: policy.broker.permanent_allowed,
                probe_state,
            };
            let lease = LeaseRelay {
                kept: Vec::new(),
                internal: Some(t.internal),
            };
            let r = mode.call_for(Op::Map(req), lease).await;
            if let Err(CallError::ContractBreach {
                mapping: Some(forged),
                ..
            }) = &r.result
            {
                // Whatever the MOD made, it is asked to remove (best effort:
                // a hostile MOD may not; the breach is audited either way).
                let _ = mode.call(Op::Unmap((**forged).clone())).await;
            }
            match Output::mapping(r.result) {
                Ok(m) => return Ok((mode, m, r.relay.kept)),
                Err(e) => {
                    let f = selector::failure(&e);
                    let conflict = f.kind == "conflict" && t.external_port.is_some();
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
        // What the NAT allows instead, if a discovery already said
        // (never waited for here).
        let advice = self
            .nat_cached()
            .and_then(|n| super::nat::advice(&n))
            .map(|a| format!("; {a}"))
            .unwrap_or_default();
        // A MOD that failed may see the network differently next time.
        self.invalidate_probes();
        Err(ApiError {
            code,
            message: format!(
                "no MOD could map {} ({}): {summary}{advice}",
                t.internal, t.transport
            ),
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

    /// Release lease `id` for `who` (local root may release any).
    pub async fn unmap(self: &Arc<Self>, id: u64, who: &Requester) -> Result<LeaseView, ApiError> {
        self.shared.lock().unwrap().table.may_unmap(id, who)?;
        self.release(id, "released by its client").await
    }

    /// Leases visible to `who` (local root sees all).
    pub fn list(&self, who: &Requester) -> Vec<LeaseView> {
        let s = self.shared.lock().unwrap();
        s.table.visible(who).map(views::lease).collect()
    }

    /// Release every non-persistent lease of connection `conn`; a map of
    /// it still in flight is released when it lands.
    pub async fn connection_closed(self: &Arc<Self>, conn: u64) {
        let ids = {
            let mut s = self.shared.lock().unwrap();
            s.table.close_connection(conn);
            s.table.of_connection(conn)
        };
        for id in ids {
            let _ = self.release(id, "its client disconnected").await;
        }
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
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
