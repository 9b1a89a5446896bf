//! `p2pbd`: every `p2pb` command, the daemon and the MOD and policy tools
//! included (`p2pb` hands those over to it).

#[path = "../cli/mod.rs"]
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main::<false>()
}
