//! The broker daemon: loads the MODs the policy permits, serves the client
//! API on a Unix socket, selects among MODs, keeps leases alive, journals
//! them, and releases them on unmap, disconnect and shutdown.
//!
//! Start-up order matters for "no mapping left behind": the journal is
//! opened and replayed before the socket is bound, so leases of a crashed
//! predecessor are reconciled (re-adopted or deleted) by the same upkeep
//! loop that serves new ones.

pub mod broker;
pub mod connect;
pub mod establish;
pub mod expiry;
pub mod fdpass;
pub mod fleet;
pub mod holelog;
pub mod http;
pub mod inflight;
pub mod journal;
pub mod leases;
pub mod metrics;
pub mod nat;
pub mod netwatch;
pub mod notify;
pub mod oci_retry;
pub mod ownership;
pub mod page;
pub mod process;
pub mod proof;
pub mod reconcile;
pub mod relay_routes;
pub mod relayed;
pub mod selector;
pub mod server;
pub mod sockdiag;
pub mod sources;
pub mod timing;
pub mod trust_state;
pub mod upkeep;
pub mod views;

pub use sources::{
    ModeSources, component_files, load_modes, load_one, read_allow_list, read_component,
};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{Notify, broadcast};

use crate::audit::{AuditSink, FileSink};
use crate::files::Links;
use crate::netinfo::NetInfo;
use crate::policy::Policy;
use crate::sandbox::{EngineConfig, ModeHost};
use broker::{Broker, Shared};
use journal::Journal;

/// How long shutdown waits for every lease to be unmapped.
pub const SHUTDOWN_CAP: Duration = Duration::from_secs(10);
/// Subscribers' event buffer: a subscriber this far behind loses events
/// (and is told so) rather than slowing the broker.
const EVENT_BUFFER: usize = 4096;

/// What `p2pb daemon` was given.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The client API socket.
    pub socket: PathBuf,
    /// With a gid, the socket is root's and that group's alone (0660).
    pub socket_group: Option<u32>,
    /// The built-in MODs and/or a folder of components with its
    /// `allow.list`.
    pub modes: ModeSources,
    /// Policy text and where it came from.
    pub policy: (String, String),
    /// The local policy file, re-read on SIGHUP (none: the built-in one).
    pub policy_file: Option<PathBuf>,
    /// Journal, cache and audit log folder.
    pub state_dir: PathBuf,
    /// Signed policy updates, if the fleet pushes them.
    pub fleet: Option<fleet::Fleet>,
    /// The hole log's rotation size (bytes) and how many rotated files
    /// it keeps.
    pub hole_log: (u64, u32),
    /// Where to serve metrics, if anywhere (see [`metrics`]).
    pub metrics: Option<std::net::SocketAddr>,
    /// Where to serve the status page, if anywhere (see [`page`]).
    pub http: Option<std::net::SocketAddr>,
}

/// An error answer without per-MOD reasons.
pub fn api(
    code: p2pbroker_client::ErrorCode,
    message: impl Into<String>,
) -> p2pbroker_client::ApiError {
    p2pbroker_client::ApiError {
        code,
        message: message.into(),
        reasons: Vec::new(),
    }
}

/// A uniform random u32 (jitter). Falls back to the clock's nanoseconds if
/// the OS source fails: jitter needs spread, not secrecy.
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

/// The default state folder: `/var/lib/p2pbroker` for root, else
/// `$XDG_STATE_HOME/p2pbroker` (or `~/.local/state/p2pbroker`).
pub fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/p2pbroker");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("p2pbroker");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/state/p2pbroker")
}

impl Broker {
    /// The metrics endpoint: `GET /metrics`, with lease counts and the
    /// policy read at each scrape. A request that came in on loopback must
    /// name the server by address or as localhost.
    pub fn metrics_handler(self: Arc<Self>) -> http::Handler {
        http::sync_handler(move |req: &http::Request| {
            // On loopback only a browser tricked by DNS rebinding sends
            // another name (a wildcard listener answers there too). On a
            // management network Prometheus may scrape by the host's
            // name, and the operator was warned that it is reachable.
            let loopback = req
                .local
                .is_none_or(|a| a.ip().to_canonical().is_loopback());
            if loopback && !page::host_allowed(req.host.as_deref()) {
                return http::Reply::text(403, "use the address the broker listens on\n");
            }
            if req.path != "/metrics" {
                return http::Reply::text(404, "only /metrics is served here\n");
            }
            let snapshot = {
                let s = self.shared.lock().unwrap();
                metrics::Snapshot {
                    leases: metrics::Snapshot::count(
                        s.table.all().map(|l| (l.rec.mode.as_str(), l.state)),
                    ),
                    policy_serial: s.policy.serial,
                    policy_expires_ms: s.policy.expires_ms(),
                    modes_loaded: s.modes.len(),
                }
            };
            http::Reply::bytes(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(&snapshot),
            )
        })
    }

    /// SIGHUP: re-read the local policy file and apply it as a fleet push
    /// is applied (leases of MODs still permitted are kept), or, for a
    /// fleet-managed broker, fetch now. A policy that does not parse or
    /// under which no MOD loads is logged; the last good one stays.
    pub async fn reload(self: &Arc<Self>, opts: &DaemonOptions) -> String {
        if let Some(fleet) = &opts.fleet {
            tracing::info!("SIGHUP: fetching the fleet policy now");
            // Without ETags: a full fetch, whatever the poll loop saw.
            self.fleet_update(fleet, &mut Default::default()).await;
            return "fleet policy fetched (p2pb status says what came of it)".into();
        }
        let Some(path) = &opts.policy_file else {
            tracing::info!("SIGHUP: the built-in policy is in force; nothing to reload");
            return "the built-in policy is in force; nothing to reload".into();
        };
        let shown = crate::text::escaped(&path.display().to_string());
        let text = match crate::files::read_text(
            path,
            crate::trust::bundle::MAX_DOCUMENT,
            Links::Follow,
        ) {
            Ok(t) => t,
            Err(e) => {
                let status = format!("cannot read the policy, the last good one stays: {e}");
                tracing::warn!("SIGHUP: {status}");
                return status;
            }
        };
        let policy = match Policy::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                let e = crate::text::escaped(&e.to_string());
                let status = format!("policy {shown} refused, the last good one stays: {e}");
                tracing::warn!("SIGHUP: {status}");
                return status;
            }
        };
        match self
            .apply_policy(policy, format!("{shown} (reloaded)"))
            .await
        {
            Ok(()) => {
                tracing::info!("SIGHUP: policy {shown} reloaded");
                format!("policy {shown} reloaded")
            }
            Err(e) => {
                let status = format!("policy {shown} not applied, the last good one stays: {e}");
                tracing::warn!("SIGHUP: {status}");
                status
            }
        }
    }
}

/// Build the broker: policy, journal, engine, MODs, adopted leases.
pub async fn start(opts: &DaemonOptions) -> anyhow::Result<Arc<Broker>> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("cannot create {}", opts.state_dir.display()))?;
    // With fleet push, the last signed policy applied survives a restart;
    // damaged trust state stops the start (see `trust_state`).
    let (trust, persisted) = match &opts.fleet {
        Some(f) => {
            let l = fleet::load_state(f, &opts.state_dir)?;
            (Some(l.state), l.policy)
        }
        None => (None, None),
    };
    let (policy_text, policy_source) = match persisted {
        Some((text, serial)) => (text, format!("signed policy serial {serial} (persisted)")),
        None => opts.policy.clone(),
    };
    let policy = Policy::parse(&policy_text).with_context(|| format!("policy {policy_source}"))?;
    let (journal, replay) = Journal::open(&opts.state_dir)?;
    for w in &replay.warnings {
        tracing::warn!("lease journal: {w}");
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let audit: Arc<dyn AuditSink> = Arc::new(metrics::MeteredSink {
        // Rotated as the hole log is (same size and count).
        inner: Arc::new(FileSink::open(
            &opts.state_dir.join(crate::audit::FILE),
            opts.hole_log.0,
            opts.hole_log.1,
        )?),
        metrics: metrics.clone(),
    });
    let holes = holelog::HoleLog::open(&opts.state_dir, opts.hole_log.0, opts.hole_log.1)?;
    let nofile = process::raise_nofile();
    let mut host = ModeHost::new(
        EngineConfig {
            cache_dir: Some(opts.state_dir.join("cache")),
            max_mod_sockets: process::mod_socket_budget(nofile),
            ..Default::default()
        },
        audit,
    )
    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // TURN MODs keep relay channels whose data path runs on this runtime.
    host.enable_relay(tokio::runtime::Handle::current());
    let net = Arc::new(NetInfo::read());
    let sources::Loaded {
        modes,
        errors: load_errors,
        notes: mode_notes,
        pulled,
    } = load_modes(&host, &opts.modes, &policy, net.clone()).await?;
    for (file, why) in &load_errors {
        tracing::warn!("{file}: not loaded: {why}");
    }
    if modes.is_empty() {
        bail!(
            "no MOD could be loaded from {} (each needs an allow-list entry and a policy entry)",
            opts.modes.describe()
        );
    }
    // The policy is in force from here: its registry MODs' copies are kept.
    sources::keep_in_cache(&opts.modes, pulled, &policy).await;
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let broker = Arc::new(Broker {
        host,
        shared: Mutex::new(Shared {
            policy: Arc::new(policy),
            modes,
            load_errors,
            mode_notes,
            net,
            probes: BTreeMap::new(),
            probed_at: None,
            nat: None,
            table: leases::LeaseTable::new(replay.max_id),
        }),
        journal: Mutex::new(journal),
        work: Default::default(),
        relay_calls: Default::default(),
        applying: Default::default(),
        journal_sync_pending: Default::default(),
        lan_gate: Default::default(),
        retiring: Default::default(),
        connect_denials: Mutex::new(crate::rotate::SourceBudgets::new(
            connect::DENIALS_PER_MINUTE,
            connect::DENIALS_PER_MINUTE_ALL,
            holelog::REFUSAL_SOURCES,
        )),
        events,
        probing: tokio::sync::Mutex::new(()),
        discovering: tokio::sync::Mutex::new(()),
        wake: Notify::new(),
        started: Instant::now(),
        policy_source: Mutex::new(policy_source),
        modes: opts.modes.clone(),
        holes: Mutex::new(holes),
        metrics,
        state_dir: opts.state_dir.clone(),
        trust: Mutex::new(trust),
    });
    if let Some(hub) = broker.host.relay_hub() {
        hub.set_dialer(relay_routes::dialer(&broker));
    }
    broker
        .shared
        .lock()
        .unwrap()
        .table
        .adopt(replay.leases.into_values(), broker::now_ms());
    broker
        .reconcile(replay.intents.into_values().collect())
        .await;
    Ok(broker)
}

/// Bind the opt-in HTTP endpoints (metrics and the status page) before
/// the broker starts: a mistyped or busy address is found before any
/// lease is adopted or any gateway reached.
async fn bind_web(
    opts: &DaemonOptions,
) -> anyhow::Result<Vec<(tokio::net::TcpListener, &'static str)>> {
    let mut bound = Vec::new();
    let wanted = [
        (opts.metrics, "metrics", "/metrics"),
        (opts.http, "the status page", "/"),
    ];
    for (addr, what, path) in wanted {
        let Some(addr) = addr else { continue };
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for {what}"))?;
        tracing::info!("{what} on http://{}{path}", l.local_addr()?);
        if !addr.ip().is_loopback() {
            // Neither endpoint has a login: say so where the operator looks.
            tracing::warn!(
                "{what} on {addr} is reachable beyond this host and has no authentication"
            );
        }
        bound.push((l, path));
    }
    Ok(bound)
}

/// Serve what [`bind_web`] bound.
fn serve_web(
    bound: Vec<(tokio::net::TcpListener, &'static str)>,
    broker: &Arc<Broker>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut web = Vec::new();
    for (l, path) in bound {
        let handler = match path {
            "/metrics" => broker.clone().metrics_handler(),
            _ => page::handler(broker.clone()),
        };
        web.push(tokio::spawn(http::serve(l, handler)));
    }
    web
}

/// Run the daemon until SIGTERM or SIGINT, then release every lease.
pub async fn run(opts: DaemonOptions) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    process::abort_on_panic();
    // A folder where the socket is not safe is refused before anything
    // starts (the socket itself is bound after the journal is replayed).
    server::socket::prepare(&opts.socket)?;
    let bound = bind_web(&opts).await?;
    let broker = start(&opts).await?;
    let (listener, socket) = server::bind(&opts.socket, opts.socket_group)?;
    let web = serve_web(bound, &broker);
    let limits = server::limits::Limits::new(server::limits::connection_budget(process::nofile()));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let upkeep = tokio::spawn(broker.clone().upkeep_loop());
    let expiry = tokio::spawn(broker.clone().expiry_loop());
    let netwatch = tokio::spawn(broker.clone().netwatch_loop());
    let warm = {
        // Probe now so the first map does not wait for it.
        let b = broker.clone();
        tokio::spawn(async move {
            b.probes(true).await;
        })
    };
    let serve = tokio::spawn(server::serve(broker.clone(), listener, limits.clone()));
    let lan = broker.shared.lock().unwrap().policy.lan.clone();
    let serve_lan = match lan {
        Some(lan) => {
            let l = tokio::net::TcpListener::bind(lan.listen)
                .await
                .with_context(|| format!("cannot listen on {} for LAN clients", lan.listen))?;
            tracing::info!("LAN clients on {}", lan.listen);
            Some(tokio::spawn(server::serve_lan(
                broker.clone(),
                l,
                lan,
                limits.clone(),
            )))
        }
        None => None,
    };
    let oci_task = tokio::spawn(broker.clone().oci_retry_loop());
    let fleet_task = opts
        .fleet
        .clone()
        .map(|f| tokio::spawn(broker.clone().fleet_loop(f)));
    let _ = notify::notify("READY=1");
    tracing::info!("listening on {}", socket.display());
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: releasing every lease");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: releasing every lease");
                break;
            }
            _ = hup.recv() => {
                let _ = notify::notify("RELOADING=1");
                // A reload can take long (MODs pulled from a registry, the
                // retired MODs' leases released one by one): a stop asked
                // meanwhile ends it at its next await, so systemd's stop
                // timeout is spent releasing leases, not waiting for it.
                // What it had not released yet is released below.
                let reload = broker.reload(&opts);
                tokio::pin!(reload);
                let stopped = tokio::select! {
                    status = &mut reload => Err(status),
                    _ = term.recv() => Ok("SIGTERM"),
                    _ = int.recv() => Ok("SIGINT"),
                };
                match stopped {
                    Ok(signal) => {
                        tracing::info!("{signal} during a reload: releasing every lease");
                        break;
                    }
                    // `systemctl status` shows how the last reload went.
                    Err(status) => {
                        let line = crate::text::escaped(&status).replace(['\n', '\r'], " ");
                        let _ = notify::notify(&format!("READY=1\nSTATUS=last reload: {line}"));
                    }
                }
            }
        }
    }
    let _ = notify::notify("STOPPING=1");
    serve.abort();
    for w in web {
        w.abort();
    }
    if let Some(f) = fleet_task {
        f.abort();
    }
    oci_task.abort();
    if let Some(l) = serve_lan {
        l.abort();
    }
    warm.abort();
    netwatch.abort();
    expiry.abort();
    upkeep.abort();
    server::unbind(&socket);
    // Maps and renewals under way land in the table first, so the release
    // below sees every mapping they made.
    if !broker.work.close_and_settle(SHUTDOWN_CAP).await {
        tracing::warn!(
            "{} map(s) or renewal(s) still running after {} s; the journal's intents cover them",
            broker.work.count(),
            SHUTDOWN_CAP.as_secs()
        );
    }
    broker.release_all(SHUTDOWN_CAP).await;
    // A deferred sync (`sync_journal_soon`) still waiting when the runtime
    // stops never runs: what the journal keeps for the next start is made
    // durable here.
    let synced = broker.journal.lock().unwrap().sync_handle();
    if let Err(e) = synced.and_then(|f| f.sync_data()) {
        tracing::error!("lease journal: sync at stop failed: {e}");
    }
    let left = {
        let s = broker.shared.lock().unwrap();
        let keep = s.policy.broker.keep_leases_on_stop;
        s.table
            .all()
            .filter(|l| !(upkeep::kept_on_stop(keep, l) && s.modes.contains_key(&l.rec.mode)))
            .count()
    };
    if left > 0 {
        tracing::warn!(
            "{left} lease(s) could not be unmapped; the journal keeps them for the next start"
        );
    }
    Ok(())
}
