//! The daemon's part of a policy: lease settings, the MOD order per network
//! profile, and which local users may map which ports.
//!
//! Each struct documents its defaults; everything is validated once when
//! the policy is parsed, so the daemon never meets an inconsistent value.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::gate::Transport;
use crate::netinfo::NetInfo;

/// `[broker]`: lease and probing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Seconds asked of a gateway per mapping; the broker renews at half of
    /// what is granted. Default 3600: long enough that renewals are rare,
    /// short enough that a lost broker's mappings vanish within the hour.
    pub mapping_lifetime: u32,
    /// Cap on a lease's total lifetime in seconds (default 7 days).
    pub max_lifetime: u32,
    /// Cap on live leases across all clients (default 4096).
    pub max_leases: u32,
    /// Whether a MOD may fall back to a permanent mapping (UPnP 725). The
    /// journal then guarantees its deletion. Default false.
    pub permanent_allowed: bool,
    /// Budget of one MOD's probe in ms (default 250: a LAN gateway answers
    /// in a few ms; waiting longer only delays the first mapping).
    pub probe_budget_ms: u64,
    /// Cap on a whole parallel probe round in ms (default 1000).
    pub probe_cap_ms: u64,
    /// How long probe results stay fresh, in seconds (default 300).
    pub probe_ttl_s: u64,
    /// How often the network (gateways, addresses) is polled for changes,
    /// in ms (default 2000).
    pub netwatch_ms: u64,
    /// Client API connections one client may hold open at once (default
    /// 64). A client is a local uid, or a LAN source address (an IPv6
    /// source counts by its /64). One application needs one or two; the cap
    /// keeps one user from taking the descriptors every other user needs.
    pub max_connections_per_client: u32,
    /// Requests one client may have in flight at once, over all its
    /// connections (default 64); more are answered `limit`.
    pub max_requests_per_client: u32,
    /// Maps (`map`, `reach`) one client other than root may ask for per
    /// minute: that many at once, then refilled at that rate (default 120;
    /// 0: no limit). Each map is work for the gateway and lines in the
    /// hole log.
    pub max_maps_per_minute: u32,
    /// On a clean stop (SIGTERM, `systemctl stop`), keep persistent
    /// (`--detach`) leases mapped and journaled for the next start instead
    /// of releasing them (default false: a stop releases everything).
    /// Permanent mappings are released even then: nothing would end them
    /// if the broker never came back.
    pub keep_leases_on_stop: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            mapping_lifetime: 3600,
            max_lifetime: 7 * 24 * 3600,
            max_leases: 4096,
            permanent_allowed: false,
            probe_budget_ms: 250,
            probe_cap_ms: 1000,
            probe_ttl_s: 300,
            netwatch_ms: 2000,
            max_connections_per_client: 64,
            max_requests_per_client: 64,
            max_maps_per_minute: 120,
            keep_leases_on_stop: false,
        }
    }
}

impl BrokerSettings {
    /// Range checks; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, u64, u64, u64); 10] = [
            ("mapping_lifetime", self.mapping_lifetime.into(), 10, 86_400),
            ("max_lifetime", self.max_lifetime.into(), 1, 365 * 86_400),
            // A root `list` of every lease must fit the client's line cap.
            ("max_leases", self.max_leases.into(), 1, 100_000),
            ("probe_budget_ms", self.probe_budget_ms, 10, 60_000),
            ("probe_cap_ms", self.probe_cap_ms, 10, 120_000),
            ("probe_ttl_s", self.probe_ttl_s, 1, 86_400),
            ("netwatch_ms", self.netwatch_ms, 100, 3_600_000),
            (
                "max_connections_per_client",
                self.max_connections_per_client.into(),
                1,
                65_536,
            ),
            (
                "max_requests_per_client",
                self.max_requests_per_client.into(),
                1,
                65_536,
            ),
            (
                "max_maps_per_minute",
                self.max_maps_per_minute.into(),
                0,
                1_000_000,
            ),
        ];
        for (name, v, lo, hi) in checks {
            if v < lo || v > hi {
                return Err(format!("broker.{name} = {v} is outside {lo}..={hi}"));
            }
        }
        if self.probe_cap_ms < self.probe_budget_ms {
            return Err("broker.probe_cap_ms is smaller than broker.probe_budget_ms".into());
        }
        Ok(())
    }
}

/// `[[profiles]]`: a MOD order for networks that match. A profile without
/// matchers matches every network; the first matching profile wins, and
/// the policy's top-level `order` applies when none does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name shown in `p2pb status` and `p2pb probe`.
    pub name: String,
    /// Matches when this is one of the host's default gateways.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Matches when a local address lies in this subnet.
    #[serde(default)]
    pub subnet: Option<IpNet>,
    /// Matches when a local address is on this interface.
    #[serde(default)]
    pub interface: Option<String>,
    /// MOD names, best first.
    pub order: Vec<String>,
}

impl Profile {
    /// Whether every matcher this profile sets holds on `net`.
    pub fn matches(&self, net: &NetInfo) -> bool {
        let gw = self.gateway.is_none_or(|g| net.gateways.contains(&g));
        let subnet = self
            .subnet
            .is_none_or(|s| net.addresses.iter().any(|a| s.contains(&a.address)));
        let iface = self
            .interface
            .as_ref()
            .is_none_or(|i| net.addresses.iter().any(|a| &a.interface == i));
        gw && subnet && iface
    }
}

/// `[[access]]`: what local users may map. A request is allowed by the
/// first rule that matches its uid and covers its transport and port; with
/// no such rule it is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The uids this rule is for; absent means every uid.
    #[serde(default)]
    pub uids: Option<Vec<u32>>,
    /// Transports allowed (default both).
    #[serde(default = "both")]
    pub transports: Vec<Transport>,
    /// Internal and external ports allowed, `LO-HI` or one port
    /// (default `1024-65535`: low ports are root's).
    #[serde(default = "high_ports")]
    pub ports: String,
    /// Cap on this uid's live leases (default: no cap beyond
    /// `broker.max_leases`).
    #[serde(default)]
    pub max_leases: Option<u32>,
    /// Cap on a lease's total lifetime for this uid, in seconds.
    #[serde(default)]
    pub max_lifetime: Option<u32>,
    /// Whether leases may outlive the client's connection (default true).
    #[serde(default = "yes")]
    pub persist: bool,
}

fn both() -> Vec<Transport> {
    vec![Transport::Tcp, Transport::Udp]
}
fn high_ports() -> String {
    "1024-65535".into()
}
fn yes() -> bool {
    true
}

impl AccessRule {
    /// The port range, parsed (validated at policy load).
    pub fn port_range(&self) -> (u16, u16) {
        crate::gate::grant::parse_ports(&self.ports).unwrap_or((1, 0))
    }

    /// Whether this rule is for `uid`.
    pub fn applies_to(&self, uid: u32) -> bool {
        self.uids.as_ref().is_none_or(|u| u.contains(&uid))
    }

    /// Whether it covers `transport` on every port of `ports`.
    pub fn covers(&self, transport: Transport, ports: &[u16]) -> bool {
        let (lo, hi) = self.port_range();
        self.transports.contains(&transport) && ports.iter().all(|p| (lo..=hi).contains(p))
    }

    /// Syntax checks; the error names the rule and field.
    pub fn validate(&self, index: usize) -> Result<(), String> {
        let (lo, _) = crate::gate::grant::parse_ports(&self.ports)
            .map_err(|e| format!("access[{index}].ports: {e}"))?;
        if lo == 0 {
            return Err(format!("access[{index}].ports: port 0 cannot be mapped"));
        }
        if self.transports.is_empty() {
            return Err(format!("access[{index}].transports is empty"));
        }
        if self.max_lifetime == Some(0) {
            return Err(format!("access[{index}].max_lifetime must be at least 1"));
        }
        Ok(())
    }
}

/// `[lan]`: an optional TCP listener that makes the broker a shared LAN
/// resource. A LAN client proves it holds a token whose sha256 is listed
/// (the policy holds only hashes, so it can be published); it is treated as
/// `uid` for the access rules and may map only its own address unless
/// `third_party` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanSettings {
    /// Address and port to listen on (a LAN address, never a public one).
    pub listen: std::net::SocketAddr,
    /// Hex sha256 digests of the accepted tokens.
    pub token_sha256: Vec<String>,
    /// The uid LAN clients count as for `[[access]]` (default 65534).
    #[serde(default = "nobody")]
    pub uid: u32,
    /// Whether a LAN client may map another host's address (default false).
    #[serde(default)]
    pub third_party: bool,
}

fn nobody() -> u32 {
    65534
}

impl LanSettings {
    /// At least one token, each a 64-digit hex digest.
    pub fn validate(&self) -> Result<(), String> {
        if self.token_sha256.is_empty() {
            return Err("lan.token_sha256 is empty: no LAN client could authenticate".into());
        }
        for (i, t) in self.token_sha256.iter().enumerate() {
            if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("lan.token_sha256[{i}] is not a hex sha256 digest"));
            }
        }
        Ok(())
    }
}

/// Leases one non-root uid may hold under the built-in rules.
pub const DEFAULT_USER_LEASES: u32 = 64;

/// The built-in access rules when a policy has none: root may map any
/// port, every other user ports 1024-65535, at most
/// [`DEFAULT_USER_LEASES`] at a time.
pub fn default_access() -> Vec<AccessRule> {
    vec![
        AccessRule {
            uids: Some(vec![0]),
            transports: both(),
            ports: "1-65535".into(),
            max_leases: None,
            max_lifetime: None,
            persist: true,
        },
        AccessRule {
            uids: None,
            transports: both(),
            ports: high_ports(),
            max_leases: Some(DEFAULT_USER_LEASES),
            max_lifetime: None,
            persist: true,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(gw: Option<&str>, subnet: Option<&str>, iface: Option<&str>) -> Profile {
        Profile {
            name: "p".into(),
            gateway: gw.map(|g| g.parse().unwrap()),
            subnet: subnet.map(|s| s.parse().unwrap()),
            interface: iface.map(String::from),
            order: vec![],
        }
    }

    #[test]
    fn profiles_match_on_every_matcher_they_set() {
        let n = NetInfo::lab_host();
        assert!(profile(None, None, None).matches(&n));
        assert!(profile(Some("10.0.0.1"), Some("10.0.0.0/24"), Some("eth0")).matches(&n));
        assert!(!profile(Some("10.0.0.9"), None, None).matches(&n));
        assert!(!profile(None, Some("192.168.0.0/16"), None).matches(&n));
        assert!(!profile(Some("10.0.0.1"), None, Some("wlan0")).matches(&n));
    }

    #[test]
    fn access_rules_cover_ports_and_transports() {
        let rules = default_access();
        assert!(rules[0].applies_to(0) && !rules[0].applies_to(1000));
        assert!(rules[1].applies_to(1000));
        assert!(rules[0].covers(Transport::Tcp, &[80]));
        assert!(!rules[1].covers(Transport::Tcp, &[80]));
        assert!(rules[1].covers(Transport::Udp, &[6881, 6881]));
        assert!(!rules[1].covers(Transport::Udp, &[6881, 443]));
    }

    #[test]
    fn settings_are_range_checked_by_name() {
        let s = BrokerSettings {
            mapping_lifetime: 5,
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .contains("broker.mapping_lifetime")
        );
        let s = BrokerSettings {
            probe_cap_ms: 100,
            probe_budget_ms: 200,
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("probe_cap_ms"));
        let s = BrokerSettings {
            max_connections_per_client: 0,
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .contains("broker.max_connections_per_client = 0")
        );
        let s = BrokerSettings {
            max_requests_per_client: 1_000_000,
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .contains("max_requests_per_client")
        );
        assert!(BrokerSettings::default().validate().is_ok());
    }
}
