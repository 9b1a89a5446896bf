//! `p2pb`: the P2P Broker command line. It runs the client commands
//! (map, unmap, list, status, probe, connect) and hands every other one to
//! `p2pbd` beside it (see `cli::main`).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main::<true>()
}
