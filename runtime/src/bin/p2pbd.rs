//! `p2pbd`: every `p2pb` command, the daemon and the MOD and policy tools
//! included (`p2pb` hands those over to it).

// `outln!` and `errln!`: lines with text from outside, escaped.
#[macro_use]
extern crate p2pb;

#[path = "../cli/mod.rs"]
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
