//! `p2pb`: the P2P Broker command line. It runs the client commands (map,
//! unmap, permit, list, status, probe, connect) and hands every other one,
//! `--help` and `--version` included, to `p2pbd` beside it, which has
//! them all.

use std::process::ExitCode;

use clap::Parser;
use p2pb::{ClientCommand, EXIT_USAGE, Globals, errln};

/// The static (musl) build's allocator: see Cargo.toml.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The binary that runs every command (the daemon, MOD and policy tools).
const FULL_BINARY: &str = "p2pbd";

#[derive(Parser)]
#[command(name = "p2pb", version)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: ClientCommand,
}

fn main() -> ExitCode {
    // Decided before parsing: building the whole command tree would cost
    // what this binary exists to save.
    if !p2pb::is_client_command(std::env::args_os().skip(1)) {
        return hand_over();
    }
    // The client writes no log of its own: `--log` is accepted, unused.
    let cli = Cli::parse();
    ExitCode::from(p2pb::run(cli.command, &cli.globals.target()))
}

/// Replace this process with [`FULL_BINARY`] from this binary's folder,
/// with the same arguments and environment (a systemd unit's
/// `NOTIFY_SOCKET` included; the PID stays).
fn hand_over() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let full = std::env::current_exe()
        .map(|p| p.with_file_name(FULL_BINARY))
        .unwrap_or_else(|_| FULL_BINARY.into());
    let mut args = std::env::args_os();
    // Its usage lines then say `p2pb`, the name the user typed.
    let name = args.next().unwrap_or_else(|| "p2pb".into());
    let e = std::process::Command::new(&full)
        .arg0(name)
        .args(args)
        .exec();
    errln!(
        "p2pb: this command runs in {} (installed beside p2pb), which cannot be started: {e}",
        full.display()
    );
    ExitCode::from(EXIT_USAGE)
}
