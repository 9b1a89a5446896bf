//! Client for the P2P Broker: ask the host's broker to make a local port
//! reachable from outside, and hear when the mapping is renewed, lost,
//! re-established or released.
//!
//! ```no_run
//! # async fn f() -> Result<(), p2pbroker_client::ClientError> {
//! use p2pbroker_client::{Client, MapOptions};
//! let client = Client::open_default().await?;
//! let lease = client.map(MapOptions::tcp(6881)).await?;
//! println!("reachable at {}", lease.external);
//! let mut events = client.subscribe().await?;
//! while let Some(e) = events.next().await {
//!     println!("{}: now {}", e.kind, e.lease.external);
//! }
//! # Ok(()) }
//! ```
//!
//! # Leases live as long as the connection
//!
//! A lease belongs to the [`Client`] connection that made it: **dropping
//! the client closes the connection and the broker releases the lease**,
//! removing the mapping from the gateway. Keep the client for as long as
//! the port must stay reachable. Only a lease made with
//! [`MapOptions::persist`] outlives the connection; it lasts until
//! [`Client::unmap`] or the end of its lifetime.
//!
//! # Contract
//!
//! The [`proto`] module is the wire protocol, version 1 (newline-delimited
//! JSON on a Unix socket), shared with the broker: pure types and codecs,
//! no I/O. [`parse_request`] never panics on any input (fuzzed in
//! `fuzz/`). `docs/client-api.md` documents the protocol for other
//! languages. A version 1 client ignores fields it does not know, so the
//! broker may add fields without a new version; removing or changing one
//! needs version 2.
#![warn(missing_docs)]

mod client;
mod fdpass;
pub mod fdrecv;
mod lines;
mod options;
mod outbound;
pub mod proto;
mod socket;
pub mod text;

pub use client::{Client, ClientError, DEFAULT_TIMEOUT, MAX_BROKER_LINE, Subscription};
pub use fdpass::{describe as describe_socket, trusted_broker_uids};
pub use lines::read_frame;
pub use options::MapOptions;
pub use outbound::Outbound;
pub use proto::*;
pub use socket::{SYSTEM_SOCKET, default_socket_path, user_socket_path};
