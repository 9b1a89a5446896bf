//! `p2pb`: the P2P Broker command line.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
