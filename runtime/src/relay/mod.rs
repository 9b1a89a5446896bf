//! The broker's side of TURN relaying (contract 0.1.4 `relay`, 0.1.5 `open-tls`): the
//! channels MODs keep for relayed leases and the native ChannelData data
//! path between each relay server and the application. The TURN control
//! protocol itself runs in the MOD's sandbox; see docs/relay.md for why the
//! framing, and only the framing, runs here.

pub mod frame;
pub mod hub;
pub mod stream;

pub use hub::{Carrying, PeerChannel, RelayHub};
