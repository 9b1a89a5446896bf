//! The `stun` MOD: NAT behaviour discovery (RFC 5780) against the
//! policy's STUN servers.
pub mod codec;
pub mod discover;
