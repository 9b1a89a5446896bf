//! `p2pb daemon`: run the broker.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use p2pbroker::daemon::{DaemonOptions, default_state_dir};
use p2pbroker::policy::DEFAULT_POLICY;

/// Where installed MODs live unless `--modes` or `P2PB_MODES` says otherwise.
pub const DEFAULT_MODES_DIR: &str = "/usr/lib/p2pbroker/modes";

/// `p2pb daemon` arguments.
#[derive(ClapArgs)]
pub struct Args {
    /// Folder of MOD components (*.wasm) with their allow.list
    /// (`cargo xtask build-modes` writes one to target/modes).
    #[arg(long, env = "P2PB_MODES", default_value = DEFAULT_MODES_DIR)]
    modes: PathBuf,
    /// Policy file (TOML); default: the built-in policy.
    #[arg(long, env = "P2PB_POLICY")]
    policy: Option<PathBuf>,
    /// Folder for the lease journal, the compiled-code cache and the audit
    /// log (default: /var/lib/p2pbroker as root, else the XDG state folder).
    #[arg(long, env = "P2PB_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

/// Run the daemon until SIGTERM/SIGINT.
pub async fn run(a: Args, socket: PathBuf) -> anyhow::Result<u8> {
    let policy = match &a.policy {
        Some(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read policy {}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_POLICY.to_string(), "built-in default".to_string()),
    };
    let opts = DaemonOptions {
        socket,
        modes_dir: a.modes,
        policy,
        state_dir: a.state_dir.unwrap_or_else(default_state_dir),
    };
    p2pbroker::daemon::run(opts).await?;
    Ok(0)
}
