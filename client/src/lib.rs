//! Client for the P2P Broker: ask the host's broker to make a local port
//! reachable from outside, and hear when the mapping is renewed, lost,
//! re-established or released.
//!
//! ```no_run
//! # async fn f() -> Result<(), p2pbroker_client::ClientError> {
//! use p2pbroker_client::{Client, MapOptions};
//! let client = Client::connect_default().await?;
//! let lease = client.map(MapOptions::tcp(6881)).await?;
//! println!("reachable at {}", lease.external);
//! // Keep `client` alive: dropping it releases the lease.
//! # Ok(()) }
//! ```
//!
//! The [`proto`] module is the wire protocol (newline-delimited JSON,
//! version 1), shared with the broker; `docs/client-api.md` documents it
//! for other languages.
#![warn(missing_docs)]

mod client;
pub mod proto;

pub use client::{
    Client, ClientError, DEFAULT_TIMEOUT, MapOptions, Subscription, default_socket_path,
};
pub use proto::*;
