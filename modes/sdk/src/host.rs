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

/// Whether `ip` is inside `net/prefix_len` (pure).
pub fn in_subnet(ip: IpAddr, net: IpAddr, prefix_len: u8) -> bool {
    let bits = u32::from(prefix_len);
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// This host's address towards `peer`: the local address on `peer`'s
/// subnet, else the first of the same family. (Gateways check it: PCP's
/// client address, UPnP's NewInternalClient.)
pub fn local_address_towards(peer: IpAddr) -> Option<IpAddr> {
    let addrs = local_addresses();
    addrs
        .iter()
        .find(|a| in_subnet(a.address, peer, a.prefix_len))
        .or_else(|| addrs.iter().find(|a| a.address.is_ipv4() == peer.is_ipv4()))
        .map(|a| a.address)
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

/// A cryptographically secure random `u32` (e.g. transaction ids).
pub fn random_u32() -> u32 {
    // Truncation keeps the low half, which is as random as the whole.
    random_u64() as u32
}

/// A cryptographically secure random `u64`.
pub fn random_u64() -> u64 {
    crate::bindings::wasi::random::random::get_random_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_subnet(ip("10.0.0.7"), ip("10.0.0.1"), 24));
        assert!(!in_subnet(ip("10.0.1.7"), ip("10.0.0.1"), 24));
        assert!(in_subnet(ip("1.2.3.4"), ip("9.9.9.9"), 0));
        assert!(in_subnet(ip("2001:db8::5"), ip("2001:db8::1"), 64));
        assert!(!in_subnet(ip("2001:db8::5"), ip("10.0.0.1"), 8));
        assert!(!in_subnet(ip("10.0.0.1"), ip("10.0.0.1"), 33));
    }
}
