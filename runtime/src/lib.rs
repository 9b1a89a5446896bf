//! P2P Broker runtime: the host side of the MOD sandbox, and the daemon.
//!
//! A MOD (Mode of Operation) is a WebAssembly component implementing the
//! `p2pbroker:mode` WIT contract. The tree follows the boundaries:
//!
//! - [`trust`]: may this component run, and with which grants
//!   ([`trust::admission`], pure, before any byte is compiled);
//! - [`sandbox`]: the mode host — compile (authenticated cache), a fresh
//!   store per call under memory, table, socket, time and fuel limits, the
//!   results checked against the contract;
//! - [`gate`]: what a MOD may touch — the one capability gate, every
//!   decision audit-logged ([`audit`]);
//! - [`policy`]: the policy file, validated once;
//! - [`daemon`]: the broker — the pure lease table and the async glue
//!   around it (client API, selector, upkeep, journal, fleet push).
#![warn(missing_docs)]

pub mod audit;
#[doc(hidden)]
pub mod bench;
pub mod build;
pub mod builtin;
pub mod daemon;
pub mod files;
pub mod gate;
pub mod json;
pub mod logging;
pub mod netinfo;
pub mod oci;
pub mod policy;
pub mod relay;
pub mod rotate;
pub mod sandbox;
pub mod scaffold;
/// Text from outside made safe for a terminal or a log line (it lives in
/// the client crate, which `p2pb` shares).
pub use p2pbroker_client::text;
pub mod trust;

pub use sandbox::sha256;
pub use sandbox::wit::{LOG_LINE_MAX, LOG_LINES_MAX, LogLine};
