//! `p2pb daemon`: run the broker.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use p2pbroker::daemon::{DaemonOptions, default_state_dir};
use p2pbroker::files::{Links, read_text};
use p2pbroker::policy::DEFAULT_POLICY;
use p2pbroker::trust::bundle::MAX_DOCUMENT;

/// `p2pb daemon` arguments.
#[derive(ClapArgs)]
pub struct Args {
    /// A folder of further MOD components (*.wasm) with their allow.list;
    /// one that declares a built-in MOD's name replaces it.
    #[arg(long, env = "P2PB_MODES")]
    modes: Option<PathBuf>,
    /// Serve only the `--modes` folder's MODs, none of those built in.
    #[arg(long, requires = "modes")]
    no_builtin_modes: bool,
    /// Policy file (TOML); default: the built-in policy.
    #[arg(long, env = "P2PB_POLICY")]
    policy: Option<PathBuf>,
    /// Folder for the lease journal, the compiled-code cache and the audit
    /// log (default: /var/lib/p2pbroker as root, else the XDG state folder).
    #[arg(long, env = "P2PB_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Poll signed policy bundles from this base URL (HTTP or HTTPS; ETag).
    #[arg(long, conflicts_with = "policy_dir", requires = "root")]
    policy_url: Option<String>,
    /// Poll signed policy bundles from this folder.
    #[arg(long, requires = "root")]
    policy_dir: Option<PathBuf>,
    /// The root of trust that signs policies (root.toml).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Let only root and this group's members connect to the socket
    /// (mode 0660) instead of every local user (0666).
    #[arg(long, env = "P2PB_SOCKET_GROUP")]
    socket_group: Option<String>,
    /// Rotate the hole log (holes.jsonl in the state folder) at this size,
    /// in bytes.
    #[arg(long, default_value_t = p2pbroker::daemon::holelog::DEFAULT_MAX_BYTES)]
    hole_log_max_bytes: u64,
    /// Rotated hole-log files kept (holes.jsonl.1 the newest).
    #[arg(long, default_value_t = p2pbroker::daemon::holelog::DEFAULT_KEEP)]
    hole_log_keep: u32,
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR/metrics (off
    /// by default; unauthenticated, so keep it on loopback or a management
    /// network).
    #[arg(long, value_name = "ADDR", env = "P2PB_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// Serve the status page at http://ADDR/ (off by default; it shows
    /// every lease to whoever reaches ADDR, so keep it on loopback).
    #[arg(long, value_name = "ADDR", env = "P2PB_HTTP")]
    http: Option<std::net::SocketAddr>,
    /// How often to poll for a new policy, in ms.
    #[arg(long, default_value_t = 300_000)]
    policy_interval_ms: u64,
}

/// Run the daemon until SIGTERM/SIGINT, on `socket` or the default one.
pub async fn run(a: Args, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    let socket = match socket {
        Some(s) => s,
        None => p2pbroker::daemon::server::socket::default_path()?,
    };
    let policy = match &a.policy {
        // Capped, a regular file only (a FIFO would hang the start); a
        // link is followed, since the operator named the path.
        Some(p) => (
            read_text(p, MAX_DOCUMENT, Links::Follow)
                .map_err(|e| anyhow::anyhow!("cannot read the policy: {e}"))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_POLICY.to_string(), "built-in default".to_string()),
    };
    use p2pbroker::daemon::fleet::{Fleet, Source};
    let source = match (a.policy_url, a.policy_dir) {
        (Some(u), _) => Some(Source::Url(u)),
        (None, Some(d)) => Some(Source::Dir(d)),
        (None, None) => None,
    };
    let fleet = source.map(|source| Fleet {
        source,
        root: a.root.clone().expect("clap requires --root"),
        interval: std::time::Duration::from_millis(a.policy_interval_ms.max(100)),
    });
    let socket_group = match &a.socket_group {
        Some(g) => Some(p2pbroker::daemon::server::socket::group_id(g)?),
        None => None,
    };
    let state_dir = a.state_dir.unwrap_or_else(default_state_dir);
    let opts = DaemonOptions {
        socket,
        socket_group,
        modes: p2pbroker::daemon::ModeSources {
            dir: a.modes,
            builtin: !a.no_builtin_modes,
            oci_cache: Some(state_dir.join("oci")),
        },
        policy,
        policy_file: a.policy.clone(),
        state_dir,
        fleet,
        hole_log: (a.hole_log_max_bytes, a.hole_log_keep),
        metrics: a.metrics,
        http: a.http,
    };
    // Bad input is usage (2): a socket folder others could write, a policy
    // that does not parse.
    p2pbroker::daemon::server::socket::prepare(&opts.socket)?;
    p2pbroker::policy::Policy::parse(&opts.policy.0)
        .map_err(|e| anyhow::anyhow!("policy {}: {e}", opts.policy.1))?;
    // Past the flags and files: a failure is the daemon's own (socket in
    // use, no MOD loads, state folder damaged), told apart from bad usage.
    match p2pbroker::daemon::run(opts).await {
        Ok(()) => Ok(0),
        Err(e) => {
            errln!("p2pb daemon: {e:#}");
            Ok(super::EXIT_DAEMON)
        }
    }
}
