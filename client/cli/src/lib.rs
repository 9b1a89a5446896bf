//! The P2P Broker's client commands: `map`, `unmap`, `permit`, `list`,
//! `status`, `probe` and `connect`, which talk to a running broker.
//!
//! Two binaries run them: `p2pb` (this package's), which has nothing else
//! and hands every other command to `p2pbd`; and `p2pbd`, which offers
//! every command (the daemon, MOD and policy tools) and flattens
//! [`ClientCommand`] into its own. Neither the engine nor the built-in MODs
//! are linked here, so `p2pb` builds for a static target and a `p2pb map`
//! starts in a fraction of the time a large dynamic binary takes.
//!
//! Exit codes: 0 success; 1 the operation ran and failed; 2 bad usage or
//! input; 3 no broker answers on the socket.

/// `println!` for a line that may hold text from outside (the broker, a
/// MOD, a file): the whole line goes through [`text::escape`], so no
/// control character, escape sequence or bidi override reaches the
/// terminal as itself. One line each: a `\n` in the format would be
/// escaped too.
#[macro_export]
macro_rules! outln {
    () => {
        println!()
    };
    ($($t:tt)*) => {
        println!("{}", $crate::text::escape(&format!($($t)*)))
    };
}

/// [`outln!`] for standard error.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => {
        eprintln!("{}", $crate::text::escape(&format!($($t)*)))
    };
}

pub mod client;
pub mod connect;
pub mod status;
pub mod table;

use std::path::PathBuf;

use clap::Subcommand;

pub use client::{EXIT_NO_BROKER, Target};
pub use p2pbroker_client::text;

/// Exit code: the operation ran and failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or input.
pub const EXIT_USAGE: u8 = 2;

/// The options every command takes, before or after its name.
#[derive(clap::Args)]
pub struct Globals {
    /// Log filter for the broker's own diagnostics (e.g. `info`, `debug`).
    #[arg(long, global = true, env = "P2PB_LOG", default_value = "warn")]
    pub log: String,
    /// The broker's client API socket (default: /run/p2pbroker/broker.sock
    /// if a system broker is there or for root, else
    /// $XDG_RUNTIME_DIR/p2pbroker/broker.sock).
    #[arg(long, global = true, env = "P2PB_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Talk to a LAN-shared broker at HOST:PORT instead (the token is read
    /// from P2PB_TOKEN).
    #[arg(long, global = true, env = "P2PB_LAN")]
    pub lan: Option<String>,
}

impl Globals {
    /// The broker these options name. An empty P2PB_SOCKET counts as
    /// unset, as in the client library.
    pub fn target(&self) -> Target {
        Target {
            socket: self.socket.clone().filter(|p| !p.as_os_str().is_empty()),
            lan: self.lan.clone(),
        }
    }
}

/// The client commands. Each one's arguments are defined only when it is
/// the one invoked (`defer`): a `p2pb map` does not build the other
/// commands' definitions, which took most of its parsing time.
#[derive(Subcommand)]
#[command(defer = true)]
pub enum ClientCommand {
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
}

/// The names [`ClientCommand`] parses (a unit test holds them to it):
/// what `p2pb` runs itself rather than hand over.
pub const CLIENT_COMMANDS: [&str; 7] = [
    "map", "unmap", "permit", "list", "status", "probe", "connect",
];

/// Whether `args` (without the program name) name a client command: its
/// first word that is neither an option nor the value of a global option
/// is one of [`CLIENT_COMMANDS`]. Anything else (`--help`, `--version`,
/// `daemon`, `help map`, no command at all) is for the full binary.
pub fn is_client_command<I, S>(args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    const VALUED: [&str; 3] = ["--log", "--socket", "--lan"];
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let Some(a) = a.as_ref().to_str() else {
            return false;
        };
        if VALUED.contains(&a) {
            args.next();
            continue;
        }
        if VALUED
            .iter()
            .any(|v| a.strip_prefix(v).is_some_and(|r| r.starts_with('=')))
        {
            continue;
        }
        return CLIENT_COMMANDS.contains(&a);
    }
    false
}

/// Run a client command against the broker `to` names; the exit code. One
/// thread talks to one socket: a `p2pb map` neither starts worker threads
/// nor waits for them to stop.
pub fn run(command: ClientCommand, to: &Target) -> u8 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        match command {
            ClientCommand::Map(a) => client::map(a, to).await,
            ClientCommand::Unmap { lease, json } => client::unmap(&lease, json, to).await,
            ClientCommand::Permit { lease, peers, json } => {
                client::permit(lease, peers, json, to).await
            }
            ClientCommand::List(a) => client::list(a.json, to).await,
            ClientCommand::Status(a) => status::status(a.json, to).await,
            ClientCommand::Probe(a) => client::probe(a, to).await,
            ClientCommand::Connect(a) => connect::run(a, to).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        globals: Globals,
        #[command(subcommand)]
        command: ClientCommand,
    }

    #[test]
    fn the_list_of_client_commands_is_the_enums() {
        let cmd = Cli::command();
        let mut names: Vec<&str> = cmd
            .get_subcommands()
            .flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases()))
            .collect();
        names.sort_unstable();
        let mut listed = CLIENT_COMMANDS.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed);
    }

    #[test]
    fn client_commands_are_found_past_the_global_options() {
        let yes: &[&[&str]] = &[
            &["map", "tcp", "80"],
            &["--socket", "/s", "list"],
            &["--socket=/s", "--log", "debug", "status", "--json"],
            &["--lan", "h:1", "unmap", "3"],
        ];
        for a in yes {
            assert!(is_client_command(*a), "{a:?}");
        }
        let no: &[&[&str]] = &[
            &[],
            &["--help"],
            &["--version"],
            &["daemon"],
            &["help", "map"],
            &["--socket", "map"],
            &["mode", "run", "x", "map"],
            &["--socket"],
        ];
        for a in no {
            assert!(!is_client_command(*a), "{a:?}");
        }
    }
}
