//! P2P Broker runtime: the host side of the MOD sandbox.
//!
//! A MOD (Mode of Operation) is a WebAssembly component implementing the
//! `p2pbroker:mode` WIT contract. This crate loads components (hash check,
//! compile, authenticated on-disk cache), runs each lifecycle call in a fresh
//! wasmtime store under memory, table, instance, time and optional fuel
//! limits, and gives a MOD only the sockets its grants allow, through one
//! capability gate whose every decision is audit-logged.
#![warn(missing_docs)]

pub mod audit;
#[doc(hidden)]
pub mod bench;
pub mod bindings;
pub mod build;
pub mod cache;
mod call;
pub mod contract;
pub mod daemon;
pub mod error;
pub mod gate;
pub mod host;
pub mod json;
pub mod limits;
pub mod loader;
pub mod netinfo;
pub mod policy;
mod state;
pub mod trust;

pub use state::{LOG_LINE_MAX, LOG_LINES_MAX, LogLine};
