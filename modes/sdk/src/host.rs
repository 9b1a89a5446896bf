//! What the broker offers beyond WASI: network facts, config, logging.

use core::net::IpAddr;

use crate::addr::to_ip;
use crate::bindings::p2pbroker::mode::broker::{self, Level};

/// A local address of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    /// The address.
    pub address: IpAddr,
    /// Prefix length of its subnet.
    pub prefix_len: u8,
    /// Interface name.
    pub interface: String,
}

/// The host's default gateways, best first.
pub fn default_gateways() -> Vec<IpAddr> {
    broker::default_gateways().iter().map(to_ip).collect()
}

/// The host's unicast addresses, loopback excluded.
pub fn local_addresses() -> Vec<LocalAddress> {
    broker::local_addresses()
        .into_iter()
        .map(|a| LocalAddress {
            address: to_ip(&a.address),
            prefix_len: a.prefix_len,
            interface: a.interface_name,
        })
        .collect()
}

/// This MOD's config value for `key`, from the policy.
pub fn config(key: &str) -> Option<String> {
    broker::config(key)
}

/// This MOD's config value for `key` parsed as `T`, or `default` when it
/// is absent or does not parse.
pub fn config_or<T: core::str::FromStr>(key: &str, default: T) -> T {
    config(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Log at debug level.
pub fn debug(msg: &str) {
    broker::log(Level::Debug, msg)
}

/// Log at info level.
pub fn info(msg: &str) {
    broker::log(Level::Info, msg)
}

/// Log at warn level.
pub fn warn(msg: &str) {
    broker::log(Level::Warn, msg)
}

/// Log at error level.
pub fn error(msg: &str) {
    broker::log(Level::Error, msg)
}

/// `n` cryptographically secure random bytes (e.g. PCP nonces).
pub fn random_bytes(n: u64) -> Vec<u8> {
    crate::bindings::wasi::random::random::get_random_bytes(n)
}

/// A cryptographically secure random `u64`.
pub fn random_u64() -> u64 {
    crate::bindings::wasi::random::random::get_random_u64()
}
