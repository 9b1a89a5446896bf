//! `p2pb mode run`: one lifecycle call outside the daemon — the inner loop
//! of a MOD author, and how hostile components are tried by hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use p2pbroker::audit::{AuditSink, FileSink, NullSink};
use p2pbroker::gate::{Grant, Transport};
use p2pbroker::json::{MappingJson, wit_transport};
use p2pbroker::netinfo::NetInfo;
use p2pbroker::policy::Policy;
use p2pbroker::sandbox::load::AllowList;
use p2pbroker::sandbox::wit::{MapRequest, Mapping};
use p2pbroker::sandbox::{CallReport, ModeSpec, Op};

/// The lifecycle function to call.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Call {
    Info,
    Probe,
    Map,
    Renew,
    Unmap,
    /// NAT behaviour discovery (MODs exporting `discovery`, e.g. stun).
    Discover,
    /// A tunnel through the MOD's proxy (MODs exporting `connector`):
    /// `--to HOST:PORT`.
    Handshake,
}

/// Arguments of `p2pb mode run`.
#[derive(clap::Args)]
pub struct Args {
    /// The component file.
    file: PathBuf,
    /// The lifecycle call.
    #[arg(value_enum)]
    call: Call,
    /// A socket grant, TRANSPORT:USES@TARGET[:PORTS] (repeatable), e.g.
    /// `udp:send,receive@gateway:5351`. Without grants or a policy the MOD
    /// gets no sockets at all.
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// A config value the MOD reads, KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Take grants, config and limits from this policy file's entry for the
    /// MOD (flags add to it).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Per-call time budget in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory cap in MiB (sum of all memories).
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Fuel budget (enables fuel metering).
    #[arg(long)]
    fuel: Option<u64>,
    /// Also append audit lines to this file.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Compiled-code cache folder.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// map: transport.
    #[arg(long, default_value = "udp")]
    transport: TransportArg,
    /// map: the internal endpoint to make reachable.
    #[arg(long, default_value = "0.0.0.0:4000")]
    internal: SocketAddr,
    /// map: the external port wanted.
    #[arg(long)]
    external_port: Option<u16>,
    /// map/renew: lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    lifetime: u32,
    /// map: allow a permanent lease if that is all the gateway grants.
    #[arg(long)]
    permanent_allowed: bool,
    /// map: the probe state blob (hex) from an earlier `probe --json`.
    #[arg(long, default_value = "")]
    probe_state: String,
    /// renew/unmap: the mapping, as printed by `map --json` (or @FILE).
    #[arg(long)]
    mapping: Option<String>,
    /// handshake: where the tunnel goes, HOST:PORT (`[IPv6]:PORT`).
    #[arg(long)]
    to: Option<String>,
    /// handshake: once the tunnel is open, report what the far end sends
    /// within this many milliseconds (at most 4 KiB).
    #[arg(long, default_value_t = 0)]
    read_ms: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
}

pub async fn run(a: Args) -> anyhow::Result<u8> {
    let bytes = super::read_component(&a.file)?;
    let op = build_op(&a)?;
    let audit: Arc<dyn AuditSink> = match &a.audit_log {
        Some(p) => {
            let (size, keep) = (
                p2pbroker::daemon::holelog::DEFAULT_MAX_BYTES,
                p2pbroker::daemon::holelog::DEFAULT_KEEP,
            );
            Arc::new(
                FileSink::open(p, size, keep)
                    .with_context(|| format!("audit log {}", p.display()))?,
            )
        }
        None => Arc::new(NullSink),
    };
    let host = super::one_off_host(a.cache_dir.clone(), a.fuel.is_some(), audit)?;
    let net = Arc::new(NetInfo::read());
    let (mut mode, report) = host
        .load(&bytes, &AllowList::Any, ModeSpec::default(), net)
        .await?;
    let spec = build_spec(&a, mode.name())?;
    mode.respec(&host, spec)?;
    // A handshake needs the connection to the proxy first: its own path.
    let Some(op) = op else {
        return super::tunnel::run(&mode, &a.to, a.read_ms, a.json).await;
    };
    let call = mode.call(op).await;
    if a.json {
        print_json(&mode, &call);
    } else {
        print_human(&mode, &report, &call);
    }
    Ok(if call.result.is_ok() {
        0
    } else {
        super::EXIT_FAILED
    })
}

fn build_spec(a: &Args, name: &str) -> anyhow::Result<ModeSpec> {
    let mut spec = match &a.policy {
        Some(p) => {
            let text = p2pbroker::files::read_text(
                p,
                p2pbroker::trust::bundle::MAX_DOCUMENT,
                p2pbroker::files::Links::Follow,
            )
            .with_context(|| format!("policy {}", p.display()))?;
            Policy::parse(&text)?.spec(name)?
        }
        None => ModeSpec::default(),
    };
    for g in &a.grants {
        spec.grants.push(g.parse::<Grant>()?);
    }
    for kv in &a.config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config `{kv}` is not KEY=VALUE"))?;
        spec.config.insert(k.to_string(), v.to_string());
    }
    if let Some(t) = a.timeout_ms {
        spec.limits.timeout_ms = t;
    }
    if let Some(m) = a.memory_mib {
        spec.limits.memory_bytes = m
            .checked_mul(1 << 20)
            .with_context(|| format!("--memory-mib {m} is too large"))?;
    }
    if a.fuel.is_some() {
        spec.limits.fuel = a.fuel;
    }
    Ok(spec)
}

/// The lifecycle call to make; `None` for `handshake` (see `tunnel::run`).
fn build_op(a: &Args) -> anyhow::Result<Option<Op>> {
    Ok(Some(match a.call {
        Call::Info => Op::Info,
        Call::Probe => Op::Probe,
        Call::Map => Op::Map(MapRequest {
            transport: wit_transport(match a.transport {
                TransportArg::Udp => Transport::Udp,
                TransportArg::Tcp => Transport::Tcp,
            }),
            internal: a.internal.into(),
            external_port: a.external_port,
            lifetime: a.lifetime,
            permanent_allowed: a.permanent_allowed,
            probe_state: hex::decode(&a.probe_state).context("--probe-state is not hex")?,
        }),
        Call::Renew => Op::Renew(mapping_arg(a)?, a.lifetime),
        Call::Unmap => Op::Unmap(mapping_arg(a)?),
        Call::Discover => Op::Discover,
        Call::Handshake => return Ok(None),
    }))
}

fn mapping_arg(a: &Args) -> anyhow::Result<Mapping> {
    let Some(text) = &a.mapping else {
        bail!("renew and unmap need --mapping (the JSON printed by `map --json`)");
    };
    let text = match text.strip_prefix('@') {
        Some(path) => p2pbroker::files::read_text(
            std::path::Path::new(path),
            1 << 20,
            p2pbroker::files::Links::Follow,
        )
        .with_context(|| format!("reading {path}"))?,
        None => text.clone(),
    };
    // Accept either the mapping itself or the whole `map --json` output.
    let v: serde_json::Value = serde_json::from_str(&text).context("--mapping is not JSON")?;
    let v = v.get("result").cloned().unwrap_or(v);
    let j: MappingJson = serde_json::from_value(v).context("--mapping is not a mapping")?;
    j.try_into().map_err(|e: String| anyhow::anyhow!(e))
}

fn print_json(mode: &p2pbroker::sandbox::Mode, c: &CallReport) {
    let mut v = serde_json::json!({
        "mode": mode.name(),
        "sha256": mode.sha256(),
        "ok": c.result.is_ok(),
        "audit": c.decisions,
        "logs": c.logs,
        "logs_dropped": c.logs_dropped,
        "elapsed_us": c.elapsed.as_micros() as u64,
    });
    match &c.result {
        Ok(o) => v["result"] = p2pbroker::json::output(o),
        Err(e) => v["error"] = p2pbroker::json::call_error(e),
    }
    println!("{}", p2pbroker::text::json_line(&v));
}

fn print_human(
    mode: &p2pbroker::sandbox::Mode,
    r: &p2pbroker::sandbox::load::LoadReport,
    c: &CallReport,
) {
    outln!("mode      {} (sha256 {})", mode.name(), mode.sha256());
    let grants: Vec<String> = mode.gate().grants().iter().map(|g| g.to_string()).collect();
    outln!(
        "grants    {}",
        if grants.is_empty() {
            "none".to_string()
        } else {
            grants.join(" ")
        }
    );
    match &c.result {
        Ok(o) => {
            outln!("result    ok");
            print_fields(&p2pbroker::json::output(o));
        }
        Err(e) => {
            outln!("result    error ({})", e.kind());
            outln!("  {e}");
        }
    }
    outln!("audit     {} decision(s)", c.decisions.len());
    for d in &c.decisions {
        outln!("  {}", d.to_json_line());
    }
    if !c.logs.is_empty() || c.logs_dropped > 0 {
        outln!(
            "log       {} line(s), {} dropped",
            c.logs.len(),
            c.logs_dropped
        );
        for l in &c.logs {
            outln!("  [{}] {}", l.level, l.message);
        }
    }
    outln!(
        "time      {:.3} ms (code {} in {:.1} ms)",
        c.elapsed.as_secs_f64() * 1e3,
        r.cache,
        r.compile_time.as_secs_f64() * 1e3
    );
}

fn print_fields(v: &serde_json::Value) {
    let Some(obj) = v.as_object() else { return };
    let fields: BTreeMap<&String, &serde_json::Value> = obj.iter().collect();
    for (k, v) in fields {
        let text = match v {
            serde_json::Value::String(s) if s.is_empty() => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        outln!("  {k:<18}{text}");
    }
}
