//! Command-line parsing and dispatch.
//!
//! Exit codes: 0 success; 1 the operation ran and failed (a MOD error, a
//! trap, a denied capability, a request the broker refused); 2 bad usage or
//! input (unreadable file, invalid component, invalid policy or grant); 3 no
//! broker answers on the socket; 4 the daemon could not start or stopped on
//! an error of its own (after its flags and files were read).

// `outln!` and `errln!` come from the p2pb crate (`#[macro_use]` in
// p2pbd.rs): every line of text from outside is escaped before it is printed.

mod audit;
mod builtin;
mod daemon;
mod inspect;
mod lan;
mod new;
mod oci;
mod policy_check;
mod run;
mod trust;
mod tunnel;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use p2pb::{EXIT_FAILED, EXIT_USAGE};
/// Exit code: the daemon failed at start or while running.
pub const EXIT_DAEMON: u8 = 4;

#[derive(Parser)]
#[command(
    name = "p2pb",
    version,
    about = "P2P Broker: inbound reachability for P2P applications"
)]
#[command(
    after_help = "Exit codes: 0 success, 1 the operation failed, 2 bad usage or input, 3 no broker on the socket, 4 the daemon failed."
)]
struct Cli {
    #[command(flatten)]
    globals: p2pb::Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker daemon (until SIGTERM/SIGINT, which release every lease).
    Daemon(daemon::Args),
    /// The client commands (`p2pb` runs these itself).
    #[command(flatten)]
    Client(p2pb::ClientCommand),
    /// The hole log: who opened which hole when, through which MOD (reads
    /// the daemon's state folder; root).
    Audit(audit::Args),
    /// Sharing the broker on the LAN: tokens.
    Lan {
        #[command(subcommand)]
        command: lan::LanCommand,
    },
    /// Policies: check one before deploying it; sign, verify, publish.
    Policy {
        #[command(subcommand)]
        command: trust::PolicyCommand,
    },
    /// Signing keys: generate, show.
    Key {
        #[command(subcommand)]
        command: trust::KeyCommand,
    },
    /// Write the man pages (p2pb.1, p2pb-SUBCOMMAND.1) to DIR; for
    /// packagers (`cargo xtask deb`).
    #[command(hide = true)]
    Man {
        /// Folder to write them to.
        dir: PathBuf,
    },
    /// Work with MOD components: build, inspect, run one lifecycle call.
    Mode {
        #[command(subcommand)]
        command: ModeCommand,
    },
}

#[derive(Subcommand)]
enum ModeCommand {
    /// Compile a mode crate to a component; print its path, size and sha256.
    Build {
        /// The mode crate's folder (holding its Cargo.toml).
        path: PathBuf,
        /// Where to write the component (default: <target-dir>/modes).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Cargo target folder for the wasm build.
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new MOD project (a NAT-PMP MOD with its tests) to start
    /// from: it builds, passes its tests and runs as it is.
    New(new::Args),
    /// List the MODs built into this binary (name, size, sha256).
    Builtin {
        /// Also write them, with an allow.list, to this folder.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a component's name, version, sha256, imports (its capability
    /// surface), exports and size.
    Inspect(inspect::Args),
    /// Run one lifecycle call of a component outside the daemon.
    Run(Box<run::Args>),
    /// Add an Ed25519 signature (tool-conventions format, as wasmsign2).
    Sign(trust::SignArgs),
    /// Push a component to an OCI registry; print the digest-pinned
    /// reference a policy names it by.
    Push(oci::PushArgs),
    /// Pull a component from an OCI registry, checked against its digests.
    Pull(oci::PullArgs),
    /// Check that each given key signed exactly these bytes.
    Verify(trust::VerifyArgs),
}

/// Parse arguments, run, and map the outcome to an exit code. This is
/// `p2pbd`, which runs every command; `p2pb` (the p2pb package) runs the
/// client commands itself and hands it the rest. What only these commands
/// use (wasmtime, the built-in MODs) is then not in `p2pb` at all.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let to = cli.globals.target();
    let outcome = match cli.command {
        Command::Client(c) => Ok(p2pb::run(c, &to)),
        other => {
            p2pbroker::logging::init(&cli.globals.log);
            full(other, to.socket)
        }
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("p2pb: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The commands only `p2pbd` runs.
fn full(command: Command, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    match command {
        Command::Daemon(a) => runtime().block_on(daemon::run(a, socket)),
        Command::Lan { command } => lan::run(command),
        Command::Audit(a) => audit::run(a),
        Command::Key { command } => trust::key(command),
        Command::Man { dir } => man(&dir),
        Command::Policy { command } => trust::policy(command),
        Command::Mode { command } => match command {
            ModeCommand::Build {
                path,
                out,
                target_dir,
                json,
            } => build(path, out, target_dir, json),
            ModeCommand::New(a) => new::run(a),
            ModeCommand::Builtin { export, json } => builtin::run(export.as_deref(), json),
            ModeCommand::Inspect(a) => runtime().block_on(inspect::run(a)),
            ModeCommand::Run(a) => runtime().block_on(run::run(*a)),
            ModeCommand::Sign(a) => trust::sign(a),
            ModeCommand::Push(a) => oci::push(a),
            ModeCommand::Pull(a) => oci::pull(a),
            ModeCommand::Verify(a) => trust::verify(a),
        },
        Command::Client(_) => unreachable!("client commands run in main"),
    }
}

/// The man pages of `p2pb` and of each visible subcommand, from the same
/// definitions as `--help`.
fn man(dir: &std::path::Path) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let write = |name: &str, c: &clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        // A one-off command: leaking each page's name is fine.
        let title: &'static str = Box::leak(name.to_string().into_boxed_str());
        clap_mangen::Man::new(c.clone().name(title))
            .render(&mut out)
            .map_err(|e| anyhow::anyhow!("rendering {name}.1: {e}"))?;
        std::fs::write(&path, out)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    write("p2pb", &cmd)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write(&format!("p2pb-{}", sub.get_name()), sub)?;
    }
    Ok(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn build(
    path: PathBuf,
    out: Option<PathBuf>,
    target_dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<u8> {
    let opts = p2pbroker::build::BuildOptions {
        target_dir,
        out_dir: out,
        verbose: !json,
    };
    let b = p2pbroker::build::build_mode(&path, &opts)?;
    if json {
        let v = serde_json::json!({
            "package": b.package, "path": b.path, "size": b.size, "sha256": b.sha256,
            "toolchain": b.toolchain.to_string(),
        });
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        outln!("built    {}", b.package);
        outln!("path     {}", b.path.display());
        outln!("size     {} bytes", b.size);
        outln!("sha256   {}", b.sha256);
    }
    Ok(0)
}

/// Read a component file with a clear error.
pub(crate) fn read_component(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use p2pbroker::files::{Links, read_document};
    use p2pbroker::sandbox::load::COMPONENT_MAX;
    read_document(path, COMPONENT_MAX, Links::Follow)
        .map_err(|e| anyhow::anyhow!("cannot read {e}"))
}

/// A host for one-off commands: no pool pressure, cache only if asked.
pub(crate) fn one_off_host(
    cache_dir: Option<PathBuf>,
    fuel: bool,
    audit: std::sync::Arc<dyn p2pbroker::audit::AuditSink>,
) -> anyhow::Result<p2pbroker::sandbox::ModeHost> {
    let cfg = p2pbroker::sandbox::EngineConfig {
        concurrent_calls: 4,
        fuel,
        cache_dir,
        ..Default::default()
    };
    p2pbroker::sandbox::ModeHost::new(cfg, audit).map_err(|e| anyhow::anyhow!("{e:#}"))
}
