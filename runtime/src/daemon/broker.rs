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
    ApiError, ErrorCode, Event, EventKind, Lease as LeaseView, MapParams, ModeReason, Reached,
};
use tokio::sync::{Notify, broadcast};

use super::establish::Reach;
use super::holelog::{Activity, Hole, ModeRef, Who};
use super::journal::{Journal, LeaseRecord};
use super::leases::{Lease, LeaseTable, Requester, gate_transport};
use super::proof::{Proof, handed_socket, owned};
use super::selector::{self, Probe};
use super::{api, timing, views};
use crate::gate::Transport;
use crate::json::MappingJson;
use crate::netinfo::NetInfo;
use crate::policy::Policy;
use crate::sandbox::wit::relay::LeaseRelay;
use crate::sandbox::{Mode, ModeHost, Op};

/// Mutable broker state.
pub struct Shared {
    /// The policy in force.
    pub policy: Arc<Policy>,
    /// Loaded MODs the policy permits, by name.
    pub modes: BTreeMap<String, Arc<Mode>>,
    /// Components that could not be loaded, with why.
    pub load_errors: Vec<(String, String)>,
    /// Warnings of the last load (a MOD on its last good copy).
    pub mode_notes: Vec<String>,
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
    /// Held while a policy is applied (a fleet push, SIGHUP, a registry
    /// retry), so none applies over another's newer policy.
    pub applying: tokio::sync::Mutex<()>,
    /// A journal sync is scheduled ([`Broker::sync_journal_soon`]).
    pub journal_sync_pending: std::sync::atomic::AtomicBool,
    /// Denied `connect` requests written to the audit log this minute
    /// ([`super::connect::DENIALS_PER_MINUTE`]).
    pub connect_denials: Mutex<crate::rotate::SourceBudgets>,
    /// The LAN listener's gate, once it listens: a new policy's `[lan]`
    /// tokens replace its own.
    pub lan_gate: std::sync::OnceLock<Arc<super::server::lan::LanGate>>,
    /// MODs a new policy retired while a lease of theirs was still being
    /// released, by sha256: its retries unmap through them (no loaded MOD
    /// may know the mapping). Dropped once no lease needs them.
    pub retiring: Mutex<std::collections::HashMap<String, Arc<crate::sandbox::Mode>>>,
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
        self.log_lease(kind, lease, reason.clone());
        let _ = self.events.send(Event {
            kind,
            lease: views::lease(lease),
            reason,
        });
    }

    /// Write a lease event to the hole log only (what clients already
    /// heard of, such as the end of a release they were told of).
    pub fn log_lease(&self, kind: EventKind, lease: &Lease, reason: Option<String>) {
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
            why: reason,
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
        // A local user can send refusals (and requests answered `punch`) as
        // fast as it likes: only so many are written a minute, so they
        // cannot rotate real holes away.
        if matches!(h.activity, Activity::Refused | Activity::Punch) {
            let source = match &h.who.lan {
                Some(lan) => lan.clone(),
                None => format!("uid:{}", h.who.uid),
            };
            match log.admit_refusal(&source, h.time_ms) {
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
        match self.map_or_reach(p, who, passed, false).await? {
            Reached::Lease(l) => Ok(l),
            Reached::Punch(_) => Err(api(ErrorCode::Internal, "a map answered punch")),
        }
    }

    /// `reach` for a client: as [`Broker::map`], but where no gateway maps
    /// and the NAT lets the application hole-punch, the answer says so
    /// instead of spending a relay ([`Broker::reach_establish`]).
    pub async fn reach(
        self: &Arc<Self>,
        p: MapParams,
        who: Requester,
        passed: Option<OwnedFd>,
    ) -> Result<Reached, ApiError> {
        self.map_or_reach(p, who, passed, true).await
    }

    async fn map_or_reach(
        self: &Arc<Self>,
        p: MapParams,
        who: Requester,
        passed: Option<OwnedFd>,
        reach: bool,
    ) -> Result<Reached, ApiError> {
        let asked = (p.transport, p.port, p.address, p.mode.clone());
        let began = Instant::now();
        let r = self.map_checked(p, who.clone(), passed, reach).await;
        match &r {
            Ok(Reached::Lease(lease)) => self.metrics.mapped(&lease.mode, began.elapsed()),
            Ok(Reached::Punch(_)) => {}
            Err(e) => self.metrics.map_failed(e.code.as_str()),
        }
        let outcome = match &r {
            Ok(Reached::Lease(_)) => None,
            Ok(Reached::Punch(p)) => Some((
                Activity::Punch,
                format!(
                    "no mapping needed: {} (the application punches its own hole; {})",
                    p.nat.traversal, p.nat.detail
                ),
            )),
            Err(e) => Some((Activity::Refused, format!("{}: {}", e.code, e.message))),
        };
        if let Some((activity, why)) = outcome {
            let (transport, port, address, mode) = asked;
            let lan = who.lan.as_ref();
            let ip = address
                .or(lan.map(|l| l.ip))
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            self.log_hole(Hole {
                time_ms: now_ms(),
                activity,
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
                why: Some(crate::text::escaped(&why)),
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
        reach: bool,
    ) -> Result<Reached, ApiError> {
        let handed = handed_socket(&mut p, &who, passed)?;
        if p.until_closed && who.lan.is_some() {
            return Err(api(
                ErrorCode::BadRequest,
                "`until_closed` needs a local socket to follow; a LAN client has none here",
            ));
        }
        let transport = gate_transport(p.transport);
        let mut lap = Instant::now();
        let mut stage = |name| {
            self.metrics.map_stage(name, lap.elapsed());
            lap = Instant::now();
        };
        let auth = {
            let s = self.shared.lock().unwrap();
            s.table.authorize(&p, &who, &s.policy, &s.net, now_ms())?
        };
        stage("authorize");
        let holders = match handed {
            // A LAN client maps only its own address (checked above).
            None if who.lan.is_some() => Vec::new(),
            proof => owned(transport, auth.internal, Proof::of(who.uid, proof))
                .await
                .map_err(|e| api(ErrorCode::NotOwner, e.to_string()))?,
        };
        stage("ownership");
        let Some(work) = self.work.enter() else {
            return Err(api(ErrorCode::ShuttingDown, "the broker is shutting down"));
        };
        let id = self.shared.lock().unwrap().table.reserve(
            transport,
            auth.internal,
            p.external_port,
            &who,
        )?;
        stage("reserve");
        let follows = if p.until_closed { holders } else { Vec::new() };
        let target = Target {
            id,
            transport,
            internal: auth.internal,
            external_port: p.external_port,
            expires_ms: Some(auth.expires_ms),
        };
        let b = self.clone();
        let spawned = Instant::now();
        let task = tokio::spawn(async move {
            b.metrics.map_stage("spawn", spawned.elapsed());
            let r = b.map_reserved(target, &p, &who, follows, reach).await;
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
        reach: bool,
    ) -> Result<Reached, ApiError> {
        let created = now_ms();
        let established = match (reach, p.mode.as_deref()) {
            (true, None) => self.reach_establish(&t).await,
            (_, forced) => self.establish(&t, forced, None).await.map(Reach::Mapped),
        };
        let (mode, mapping, relay) = match established {
            Ok(Reach::Mapped(x)) => x,
            Ok(Reach::Punch(p)) => {
                // Nothing was mapped: the reservation and the last intent go.
                self.shared.lock().unwrap().table.cancel(t.id);
                self.forget_intent(t.id);
                return Ok(Reached::Punch(p));
            }
            Err(e) => {
                self.shared.lock().unwrap().table.cancel(t.id);
                self.forget_intent(t.id);
                return Err(e);
            }
        };
        let landed = Instant::now();
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
        let built = landed.elapsed();
        let journal_began = Instant::now();
        // Synced before the answer only where a mapping could be permanent
        // (see journal.rs); else just after it, off the answer's path.
        let sync_now = self.shared.lock().unwrap().policy.broker.permanent_allowed;
        let journaled = {
            let mut j = self.journal.lock().unwrap();
            if sync_now {
                j.put(&rec)
            } else {
                j.put_written(&rec)
            }
        };
        self.metrics.map_stage("journal", journal_began.elapsed());
        let installing = Instant::now();
        if let Err(e) = journaled {
            // Not durable: undo rather than hand out a mapping we could leak.
            self.undo_map(&t, &mode, mapping, &relay).await;
            return Err(api(ErrorCode::Internal, e.to_string()));
        }
        // Installed only if its MOD is still loaded, in the same lock a
        // new policy swaps MODs under: a reload that retired the MOD while
        // it mapped found no lease of it to release, so this map undoes
        // itself (else its mapping would be renewed by nobody and left).
        // And only if the access rules in force still allow it: a reload
        // that came meanwhile judged the leases there were, not this one.
        let installed = {
            let mut s = self.shared.lock().unwrap();
            let ports: Vec<u16> = std::iter::once(t.internal.port())
                .chain(p.external_port)
                .collect();
            let refused = if !s.modes.contains_key(mode.name()) {
                Some((
                    ErrorCode::NoMode,
                    format!("MOD `{}` is no longer permitted", mode.name()),
                ))
            } else {
                // A LAN client counts as the uid [lan] gives LAN clients now.
                let mut now_who = who.clone();
                if let (Some(_), Some(lan)) = (&who.lan, &s.policy.lan) {
                    now_who.uid = lan.uid;
                }
                let rules = s.policy.access_rules();
                super::leases::rule_for(&rules, &now_who, t.transport, &ports, p.persist)
                    .err()
                    .map(|e| (e.code, e.message))
            };
            match refused {
                None => Ok(s.table.install(
                    rec,
                    (!p.persist).then_some(who.conn),
                    now_ms(),
                    crate::daemon::random_u32(),
                )),
                Some(why) => Err((why, rec)),
            }
        };
        let (mut lease, orphaned) = match installed {
            Ok(x) => x,
            Err(((code, why), rec)) => {
                return Err(self.retract(rec, &mode, relay, code, &why).await);
            }
        };
        if !relay.is_empty() {
            lease.relay = self.record_relay(t.id, relay);
        }
        let view = views::lease(&lease);
        self.emit(
            EventKind::Mapped,
            &lease,
            Some(format!("via {}", lease.rec.mode)),
        );
        // Building the record (the owner's process name) and installing
        // it, without the journal's own time.
        self.metrics
            .map_stage("install", built + installing.elapsed());
        if orphaned {
            // Its client left while the MOD worked: nobody holds it.
            let _ = self.release(t.id, "its client disconnected").await;
        }
        if !sync_now {
            self.sync_journal_soon();
        }
        self.wake.notify_one();
        Ok(Reached::Lease(view))
    }

    /// A map the policy changed under (its MOD retired, or its access rule
    /// gone) while the MOD worked: it was a hole for a moment, so it is
    /// installed, logged, and released at once like any lease, through
    /// the MOD that made it (retried until the gateway answers). Installed
    /// already releasing, with its relay channels, in one critical section:
    /// nothing else acts on it meanwhile.
    async fn retract(
        self: &Arc<Self>,
        rec: LeaseRecord,
        mode: &Arc<Mode>,
        relay: Vec<u32>,
        code: ErrorCode,
        why: &str,
    ) -> ApiError {
        let relay = self.relay_of(relay);
        self.retiring
            .lock()
            .unwrap()
            .insert(rec.mode_sha256.clone(), mode.clone());
        let (lease, first) = {
            let mut s = self.shared.lock().unwrap();
            let id = rec.id;
            s.table.install(rec, None, now_ms(), 0);
            s.table.set_relay(id, relay);
            s.table.begin_release(id).expect("installed just now")
        };
        let via = format!(
            "via {}; the policy changed meanwhile: {why}",
            lease.rec.mode
        );
        self.log_lease(EventKind::Mapped, &lease, Some(via));
        let why = format!("the policy changed while it was mapped: {why}");
        self.release_begun(lease, first, &why, Some(mode.clone()))
            .await;
        api(
            code,
            format!("{why} (its mapping is removed through its MOD); map again"),
        )
    }

    /// Take back a map that will not become a lease: unmap it through its
    /// MOD, close its relay channels, drop its reservation and intent.
    async fn undo_map(
        &self,
        t: &Target,
        mode: &Mode,
        mapping: crate::sandbox::wit::Mapping,
        relay: &[u32],
    ) {
        let lease = LeaseRelay {
            kept: relay.to_vec(),
            internal: Some(t.internal),
        };
        let _ = mode.call_for(Op::Unmap(mapping), lease).await;
        self.close_relay(relay);
        self.shared.lock().unwrap().table.cancel(t.id);
        self.forget_intent(t.id);
    }

    /// Sync the journal on a blocking thread, once for every line written
    /// before it starts, [`timing::JOURNAL_SYNC_DELAY`] from now: a map's
    /// answer does not wait for it.
    pub fn sync_journal_soon(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.journal_sync_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let b = self.clone();
        tokio::spawn(async move {
            // Let the answer reach its client first: on a small machine the
            // sync's thread and the file system's own would otherwise take
            // the CPU the client wakes on (BENCHMARKS.md, eighth pass).
            tokio::time::sleep(timing::JOURNAL_SYNC_DELAY).await;
            let synced = tokio::task::spawn_blocking(move || {
                // Lines written from here on schedule a sync of their own.
                b.journal_sync_pending.store(false, Ordering::Release);
                // The lock only to take a handle: the sync runs without it.
                let handle = b.journal.lock().unwrap().sync_handle();
                handle.and_then(|f| f.sync_data())
            })
            .await;
            match synced {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("lease journal: sync failed: {e}"),
                Err(e) => tracing::error!("lease journal: the sync did not run: {e}"),
            }
        });
    }

    /// The intent of a map that did not happen: drop it from the journal.
    fn forget_intent(&self, id: u64) {
        if let Err(e) = self.journal.lock().unwrap().del(id) {
            tracing::error!("{e}");
        }
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
