//! The `turn-relay` MOD: a relayed UDP address on the policy's TURN server
//! (RFC 8656), for a host no other MOD can make reachable.
//!
//! The broker owns the socket to the server (contract 0.1.4 `relay`
//! import: an allocation belongs to the 5-tuple that made it, and each
//! call runs in a fresh instance) and carries the data; this MOD speaks
//! the TURN control protocol over the channel. `map` allocates and keeps
//! the channel for the lease; `renew` refreshes the allocation and
//! rebinds every peer's channel (which refreshes its permission);
//! `unmap` deletes the allocation and closes the channel; `permit` (the
//! `relay-control` export) binds channels to new peers. `probe` asks a
//! Binding request: the address the server sees.
//!
//! Pure parts: [`proto`] (messages), [`exchange`] (retransmission and
//! credentials over any [`exchange::Link`]), [`client`] (operations and
//! their errors), [`creds`], [`state`], [`config`] (the config keys are
//! listed there); they compile and test on the host.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod creds;
pub mod exchange;
pub mod proto;
pub mod state;
#[cfg(test)]
mod testkit;
