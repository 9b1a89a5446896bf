//! Command-line parsing and dispatch.
//!
//! Exit codes: 0 success; 1 the operation ran and failed (a MOD error, a
//! trap, a denied capability, a request the broker refused); 2 bad usage or
//! input (unreadable file, invalid component, invalid policy or grant); 3 no
//! broker answers on the socket; 4 the daemon could not start or stopped on
//! an error of its own (after its flags and files were read).

/// `println!` for a line that may hold text from outside (the broker, a
/// MOD, a file): the whole line goes through [`p2pbroker::text::escape`],
/// so no control character, escape sequence or bidi override reaches the
/// terminal as itself. One line each: a `\n` in the format would be
/// escaped too.
macro_rules! outln {
    () => {
        println!()
    };
    ($($t:tt)*) => {
        println!("{}", p2pbroker::text::escape(&format!($($t)*)))
    };
}

/// [`outln!`] for standard error.
macro_rules! errln {
    ($($t:tt)*) => {
        eprintln!("{}", p2pbroker::text::escape(&format!($($t)*)))
    };
}

mod audit;
mod builtin;
mod client;
mod connect;
mod daemon;
mod inspect;
mod lan;
mod new;
mod oci;
mod policy_check;
mod run;
mod status;
mod table;
mod trust;
mod tunnel;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the operation ran and failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or input.
pub const EXIT_USAGE: u8 = 2;
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
    /// Log filter for the broker's own diagnostics (e.g. `info`, `debug`).
    #[arg(long, global = true, env = "P2PB_LOG", default_value = "warn")]
    log: String,
    /// The broker's client API socket (default: /run/p2pbroker/broker.sock
    /// if a system broker is there or for root, else
    /// $XDG_RUNTIME_DIR/p2pbroker/broker.sock).
    #[arg(long, global = true, env = "P2PB_SOCKET")]
    socket: Option<PathBuf>,
    /// Talk to a LAN-shared broker at HOST:PORT instead (the token is read
    /// from P2PB_TOKEN).
    #[arg(long, global = true, env = "P2PB_LAN")]
    lan: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker daemon (until SIGTERM/SIGINT, which release every lease).
    Daemon(daemon::Args),
    /// Make a local port reachable from outside; prints the external
    /// endpoint and holds the lease until Ctrl-C (or `--detach`).
    Map(client::MapArgs),
    /// Release a lease: by id (from `p2pb list`), or by `TRANSPORT PORT`.
    Unmap {
        /// A lease id, or a transport and port (`tcp 6881`).
        #[arg(num_args = 1..=2, required = true)]
        lease: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let peers reach a relayed lease: a TURN relay forwards only what
    /// permitted peers send (`p2pb permit 3 203.0.113.7:5000`).
    Permit {
        /// The lease id (from `p2pb list`).
        lease: u64,
        /// Peer addresses, `IP:PORT`.
        #[arg(num_args = 1..=64, required = true)]
        peers: Vec<std::net::SocketAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List leases (yours; root sees all).
    List(client::JsonArg),
    /// The broker's MODs, their probe results, and leases.
    Status(client::JsonArg),
    /// Diagnose the network: gateways, which protocols answer, the external
    /// address, double NAT / CGNAT, and which MOD would be chosen and why.
    Probe(client::ProbeArgs),
    /// Open an outbound TCP connection by the route the broker's policy
    /// picks (direct, or a corporate proxy) and pipe stdin/stdout to it.
    Connect(connect::ConnectArgs),
    /// The hole log: who opened which hole when, through which MOD (reads
    /// the daemon's state folder; root).
    Audit(audit::Args),
    /// Sharing the broker on the LAN: tokens.
    Lan {
        #[command(subcommand)]
        command: lan::LanCommand,
    },
    /// Signed policies: sign, verify, publish.
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

/// The binary that runs every command (the daemon, MOD and policy tools);
/// `p2pb` hands it whatever is not a client command.
pub const FULL_BINARY: &str = "p2pbd";

/// Parse arguments, run, and map the outcome to an exit code. `CLIENT`:
/// this is `p2pb`, which runs the client commands itself and hands every
/// other one to [`FULL_BINARY`] beside it (exec: same process, same
/// arguments). What only the other commands use (wasmtime, the built-in
/// MODs) is then not in `p2pb` at all, and a `p2pb map` starts in a
/// fraction of the time: a position-independent binary pays at every
/// start for every relocation in it.
pub fn main<const CLIENT: bool>() -> ExitCode {
    let cli = Cli::parse();
    p2pbroker::logging::init(&cli.log);
    // An empty P2PB_SOCKET counts as unset, as in the client library.
    let socket = cli.socket.clone().filter(|p| !p.as_os_str().is_empty());
    let to = client::Target {
        socket: socket.clone(),
        lan: cli.lan.clone(),
    };
    let outcome = match cli.command {
        Command::Map(a) => Ok(client_runtime().block_on(client::map(a, &to))),
        Command::Unmap { lease, json } => {
            Ok(client_runtime().block_on(client::unmap(&lease, json, &to)))
        }
        Command::Permit { lease, peers, json } => {
            Ok(client_runtime().block_on(client::permit(lease, peers, json, &to)))
        }
        Command::List(a) => Ok(client_runtime().block_on(client::list(a.json, &to))),
        Command::Status(a) => Ok(client_runtime().block_on(status::status(a.json, &to))),
        Command::Probe(a) => Ok(client_runtime().block_on(client::probe(a, &to))),
        Command::Connect(a) => Ok(client_runtime().block_on(connect::run(a, &to))),
        // A constant condition: in `p2pb` the arm below is dead code, and
        // nothing only it reaches is linked in.
        _ if CLIENT => return hand_over(),
        other => full(other, socket),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("p2pb: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The commands only [`FULL_BINARY`] runs.
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
        // Run in `main`.
        Command::Map(_)
        | Command::Unmap { .. }
        | Command::Permit { .. }
        | Command::List(_)
        | Command::Status(_)
        | Command::Probe(_)
        | Command::Connect(_) => unreachable!("client commands run in main"),
    }
}

/// Replace this process with [`FULL_BINARY`] from this binary's folder,
/// with the same arguments and environment (a systemd unit's
/// `NOTIFY_SOCKET` included; the PID stays).
fn hand_over() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let full = std::env::current_exe()
        .map(|p| p.with_file_name(FULL_BINARY))
        .unwrap_or_else(|_| PathBuf::from(FULL_BINARY));
    let e = std::process::Command::new(&full)
        .args(std::env::args_os().skip(1))
        .exec();
    errln!(
        "p2pb: this command runs in {} (installed beside p2pb), which cannot be started: {e}",
        full.display()
    );
    ExitCode::from(EXIT_USAGE)
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

/// A client command talks to one socket at a time: one thread does, and
/// a whole `p2pb map` neither starts worker threads nor waits for them to
/// stop.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
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
