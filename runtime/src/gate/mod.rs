//! The capability gate: the one place that decides which socket addresses a
//! MOD may use.
//!
//! A MOD's grants (see [`grant`]) are compiled once, against the host's
//! current network facts ([`NetInfo`]), into a [`Gate`] of concrete rules.
//! The runtime installs [`Gate::check`] as wasmtime-wasi's
//! `socket_addr_check`, so every bind, connect, send and receive is checked
//! before any system call, and every verdict is audit-logged by the caller.
//! Everything not granted is denied.

pub mod grant;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

pub use grant::{
    Grant, GrantError, SSDP_GROUP, SSDP_GROUP_V6, SSDP_PORT, Target, Transport, Use, Uses,
};

use crate::netinfo::NetInfo;

/// A compiled rule: one transport, a set of uses, one network, a port range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    transport: Transport,
    uses: Uses,
    net: IpNet,
    ports: (u16, u16),
    /// Index of the grant this rule came from, for audit lines.
    grant: usize,
}

/// A MOD's grants compiled against the host's network facts.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    rules: Vec<Rule>,
    grants: Vec<Grant>,
    name_lookup: bool,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by the grant with this index.
    Allow(usize),
    /// Nothing allows it.
    Deny,
}

impl Gate {
    /// Compile `grants` for the network described by `net`.
    ///
    /// Symbolic targets become concrete networks here: `gateway` the default
    /// gateways (IPv4 and IPv6), `lan` the subnets of local addresses plus
    /// the IPv6 link-local subnet, `ssdp` both SSDP groups, `local` the
    /// unspecified addresses plus the host's own addresses.
    pub fn compile(grants: &[Grant], net: &NetInfo) -> Gate {
        Gate::compile_with(grants, net, &Services::default())
    }

    /// [`Gate::compile`], with `stun` the addresses the `stun` target
    /// and `proxy` targets stand for (see [`Services::of`]).
    pub fn compile_with(grants: &[Grant], net: &NetInfo, services: &Services) -> Gate {
        let mut gate = Gate {
            grants: grants.to_vec(),
            ..Gate::default()
        };
        for (index, grant) in grants.iter().enumerate() {
            let Grant::Socket {
                transport,
                uses,
                target,
                ports,
            } = grant
            else {
                gate.name_lookup = true;
                continue;
            };
            if *target == Target::Api {
                // Exactly the configured endpoint, within the grant's ports.
                for api in services
                    .api
                    .iter()
                    .filter(|a| (ports.0..=ports.1).contains(&a.port()))
                {
                    gate.rules.push(Rule {
                        transport: *transport,
                        uses: *uses,
                        net: host_net(api.ip()),
                        ports: (api.port(), api.port()),
                        grant: index,
                    });
                }
                continue;
            }
            for n in resolve(target, net, services) {
                gate.rules.push(Rule {
                    transport: *transport,
                    uses: *uses,
                    net: n,
                    ports: *ports,
                    grant: index,
                });
            }
        }
        gate
    }

    /// The grants this gate was compiled from.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether `wasi:sockets/ip-name-lookup` is granted.
    pub fn name_lookup(&self) -> bool {
        self.name_lookup
    }

    /// Decide whether `addr` may be used for `use_` over `transport`.
    ///
    /// An IPv4-mapped IPv6 address is judged as the IPv4 address it carries,
    /// so a dual-stack socket cannot reach around an IPv4 rule. An implicit
    /// bind to an ephemeral port (port 0) on the unspecified address is
    /// allowed whenever the transport has any outbound rule: it opens nothing
    /// that a later, separately checked, send or connect would not.
    pub fn check(&self, transport: Transport, use_: Use, addr: SocketAddr) -> Verdict {
        let ip = addr.ip().to_canonical();
        let port = addr.port();
        if use_ == Use::Bind && port == 0 && ip.is_unspecified() {
            let outbound = self.rules.iter().find(|r| {
                r.transport == transport
                    && (r.uses.contains(Use::Send) || r.uses.contains(Use::Connect))
            });
            if let Some(r) = outbound {
                return Verdict::Allow(r.grant);
            }
        }
        self.rules
            .iter()
            .find(|r| {
                r.transport == transport
                    && r.uses.contains(use_)
                    && r.net.contains(&ip)
                    && (r.ports.0..=r.ports.1).contains(&port)
            })
            .map_or(Verdict::Deny, |r| Verdict::Allow(r.grant))
    }
}

/// fe80::/64, the IPv6 link-local subnet (RFC 4291 §2.5.6). Every IPv6
/// interface has an address in it and it never leaves the link, so it is
/// part of `lan`, although the interface list the broker reads (if-addrs)
/// hides link-local addresses. IGDs answer IPv6 SSDP from theirs.
const IPV6_LINK_LOCAL: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
    64,
));

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip.to_canonical())
}

/// The `host:port` of a TURN URL (RFC 7065: `turn:` or `turns:`, then
/// optionally `?transport=udp` or `?transport=tcp`), or `None`.
pub fn turn_host_port(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("turns:")
        .or_else(|| url.strip_prefix("turn:"))?;
    Some(match rest.split_once('?') {
        None => rest,
        Some((hp, "transport=udp" | "transport=tcp")) => hp,
        Some(_) => return None,
    })
}

/// The servers a MOD's config names, for the `stun` and `proxy` targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    /// `stun_servers` (comma-separated `IP:PORT`, as the policy's
    /// `[services] stun` hands them on).
    pub stun: Vec<IpAddr>,
    /// `turn_servers` (comma-separated `turn:IP:PORT` or `turns:IP:PORT`
    /// URLs, as the policy's `[services] turn` hands them on).
    pub turn: Vec<IpAddr>,
    /// `proxy` (`IP:PORT`).
    pub proxy: Vec<IpAddr>,
    /// `api` (`IP:PORT`): a management API, address and port.
    pub api: Vec<SocketAddr>,
}

impl Services {
    /// Read them from a MOD's config. Names are skipped: the gate resolves
    /// nothing through DNS.
    pub fn of(config: &std::collections::BTreeMap<String, String>) -> Services {
        let addrs = |key: &str| -> Vec<IpAddr> {
            config
                .get(key)
                .map(|list| {
                    list.split(',')
                        .filter_map(|s| s.trim().parse::<SocketAddr>().ok())
                        .map(|a| a.ip().to_canonical())
                        .collect()
                })
                .unwrap_or_default()
        };
        Services {
            stun: addrs("stun_servers"),
            turn: config
                .get("turn_servers")
                .map(|list| {
                    list.split(',')
                        .filter_map(|u| turn_host_port(u.trim())?.parse::<SocketAddr>().ok())
                        .map(|a| a.ip().to_canonical())
                        .collect()
                })
                .unwrap_or_default(),
            proxy: addrs("proxy").into_iter().take(1).collect(),
            api: config
                .get("api")
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                .filter(|a| a.port() != 0)
                .into_iter()
                .collect(),
        }
    }
}

fn resolve(target: &Target, net: &NetInfo, services: &Services) -> Vec<IpNet> {
    match target {
        Target::Stun => services.stun.iter().copied().map(host_net).collect(),
        Target::Turn => services.turn.iter().copied().map(host_net).collect(),
        Target::Proxy => services.proxy.iter().copied().map(host_net).collect(),
        Target::Api => services.api.iter().map(|a| host_net(a.ip())).collect(),
        Target::Gateway => net.gateways.iter().copied().map(host_net).collect(),
        Target::Ssdp => vec![host_net(SSDP_GROUP), host_net(SSDP_GROUP_V6)],
        Target::Lan => net
            .addresses
            .iter()
            .filter(|a| !a.address.is_loopback())
            .filter_map(|a| IpNet::new(a.address, a.prefix_len).ok())
            .map(|n| n.trunc())
            .chain([IPV6_LINK_LOCAL])
            .collect(),
        Target::Local => {
            let mut nets = vec![
                host_net(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                host_net(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
            ];
            nets.extend(net.addresses.iter().map(|a| host_net(a.address)));
            nets
        }
        Target::Net(n) => vec![*n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netinfo::LocalAddress;

    fn gate(grants: &[&str]) -> Gate {
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        Gate::compile(&grants, &NetInfo::lab_host())
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_stun_target_is_the_configured_servers_and_nothing_else() {
        let config = [(
            "stun_servers".to_string(),
            "198.51.100.1:3478, stun.example:3478,198.51.100.3:3478".to_string(),
        )]
        .into();
        let services = Services::of(&config);
        assert_eq!(services.stun.len(), 2, "names are skipped: {services:?}");
        let grants: Vec<Grant> = vec!["udp:send,receive@stun:1-65535".parse().unwrap()];
        let g = Gate::compile_with(&grants, &NetInfo::lab_host(), &services);
        for to in ["198.51.100.1:3478", "198.51.100.3:3479"] {
            assert_eq!(
                g.check(Transport::Udp, Use::Send, sa(to)),
                Verdict::Allow(0)
            );
        }
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("198.51.100.2:3478")),
            Verdict::Deny
        );
        assert_eq!(grants[0].to_string(), "udp:send,receive@stun:1-65535");
        // Without servers the target stands for nothing.
        let g = Gate::compile(&grants, &NetInfo::lab_host());
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("198.51.100.1:3478")),
            Verdict::Deny
        );
    }

    #[test]
    fn the_proxy_target_is_the_configured_proxy() {
        let config = [("proxy".to_string(), "172.16.0.1:3128".to_string())].into();
        let grants: Vec<Grant> = vec!["tcp:connect@proxy:1-65535".parse().unwrap()];
        let g = Gate::compile_with(&grants, &NetInfo::lab_host(), &Services::of(&config));
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("172.16.0.1:3128")),
            Verdict::Allow(0)
        );
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("172.16.0.2:3128")),
            Verdict::Deny
        );
        assert_eq!(grants[0].to_string(), "tcp:connect@proxy:1-65535");
    }

    #[test]
    fn the_api_target_is_exactly_the_configured_endpoint() {
        let config = [("api".to_string(), "10.0.0.1:8443".to_string())].into();
        let grants: Vec<Grant> = vec!["tcp:connect@api:1-65535".parse().unwrap()];
        let g = Gate::compile_with(&grants, &NetInfo::lab_host(), &Services::of(&config));
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("10.0.0.1:8443")),
            Verdict::Allow(0)
        );
        for other in ["10.0.0.1:22", "10.0.0.1:8444", "10.0.0.2:8443"] {
            assert_eq!(
                g.check(Transport::Tcp, Use::Connect, sa(other)),
                Verdict::Deny,
                "{other}"
            );
        }
        // A grant whose ports exclude the API's allows nothing.
        let narrow: Vec<Grant> = vec!["tcp:connect@api:443".parse().unwrap()];
        let g = Gate::compile_with(&narrow, &NetInfo::lab_host(), &Services::of(&config));
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("10.0.0.1:8443")),
            Verdict::Deny
        );
        assert_eq!(grants[0].to_string(), "tcp:connect@api:1-65535");
    }

    #[test]
    fn deny_by_default() {
        let g = gate(&[]);
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("10.0.0.1:5351")),
            Verdict::Deny
        );
        assert_eq!(
            g.check(Transport::Udp, Use::Bind, sa("0.0.0.0:0")),
            Verdict::Deny
        );
        assert!(!g.name_lookup());
    }

    #[test]
    fn gateway_rule_matches_only_gateway_port_and_use() {
        let g = gate(&["udp:send,receive@gateway:5351"]);
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("10.0.0.1:5351")),
            Verdict::Allow(0)
        );
        assert_eq!(
            g.check(Transport::Udp, Use::Receive, sa("10.0.0.1:5351")),
            Verdict::Allow(0)
        );
        for (t, u, a) in [
            (Transport::Udp, Use::Send, "10.0.0.1:5350"),
            (Transport::Udp, Use::Send, "10.0.0.9:5351"),
            (Transport::Tcp, Use::Connect, "10.0.0.1:5351"),
            (Transport::Udp, Use::Bind, "10.0.0.2:5351"),
        ] {
            assert_eq!(g.check(t, u, sa(a)), Verdict::Deny, "{t} {u:?} {a}");
        }
    }

    #[test]
    fn ephemeral_bind_follows_outbound_rules_but_fixed_ports_need_a_grant() {
        let g = gate(&["udp:send@gateway:5351"]);
        assert_eq!(
            g.check(Transport::Udp, Use::Bind, sa("0.0.0.0:0")),
            Verdict::Allow(0)
        );
        assert_eq!(
            g.check(Transport::Udp, Use::Bind, sa("0.0.0.0:5350")),
            Verdict::Deny
        );
        assert_eq!(
            g.check(Transport::Tcp, Use::Bind, sa("0.0.0.0:0")),
            Verdict::Deny
        );
        let g = gate(&["udp:bind@local:5350"]);
        assert_eq!(
            g.check(Transport::Udp, Use::Bind, sa("10.0.0.2:5350")),
            Verdict::Allow(0)
        );
        assert_eq!(
            g.check(Transport::Udp, Use::Bind, sa("10.0.0.3:5350")),
            Verdict::Deny
        );
    }

    #[test]
    fn lan_and_ssdp_resolve_to_concrete_networks() {
        let g = gate(&["tcp:connect@lan:80-8080", "udp:send@ssdp"]);
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("10.0.0.77:5000")),
            Verdict::Allow(0)
        );
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("10.0.1.77:5000")),
            Verdict::Deny
        );
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("239.255.255.250:1900")),
            Verdict::Allow(1)
        );
    }

    /// A dual-stack host as in the lab, as [`NetInfo::read`] sees it: an
    /// IPv6 default gateway on the LAN prefix and a global address (the
    /// link-local one is not listed).
    fn dual_stack() -> NetInfo {
        let mut net = NetInfo::lab_host();
        net.gateways.push("2001:db8:1::1".parse().unwrap());
        net.addresses.push(LocalAddress {
            address: "2001:db8:1::2".parse().unwrap(),
            prefix_len: 64,
            interface: "eth0".into(),
        });
        net
    }

    fn gate_on(grants: &[&str], net: &NetInfo) -> Gate {
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        Gate::compile(&grants, net)
    }

    #[test]
    fn ipv6_gateways_and_on_link_addresses_are_covered() {
        let net = dual_stack();
        let g = gate_on(&["udp:send,receive@gateway:5351"], &net);
        for a in ["[2001:db8:1::1]:5351", "10.0.0.1:5351"] {
            assert_eq!(
                g.check(Transport::Udp, Use::Send, sa(a)),
                Verdict::Allow(0),
                "{a}"
            );
        }
        for a in [
            "[2001:db8:1::9]:5351",
            "[2001:db8:2::1]:5351",
            "[::ffff:10.0.0.9]:5351",
        ] {
            assert_eq!(
                g.check(Transport::Udp, Use::Send, sa(a)),
                Verdict::Deny,
                "{a}"
            );
        }
        // An implicit IPv6 bind follows the outbound rule as the IPv4 one does.
        assert_eq!(
            g.check(Transport::Udp, Use::Bind, sa("[::]:0")),
            Verdict::Allow(0)
        );
        let g = gate_on(&["tcp:connect@lan:1-65535", "udp:receive@lan:1900"], &net);
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("[2001:db8:1::1]:5000")),
            Verdict::Allow(0)
        );
        // SSDP answers over IPv6 come from the gateway's link-local address
        // (seen in the lab), unlisted but on-link; the scope id the socket
        // reports does not change the verdict. Other link-local space is not.
        assert_eq!(
            g.check(Transport::Udp, Use::Receive, sa("[fe80::1%2]:1900")),
            Verdict::Allow(1)
        );
        assert_eq!(
            g.check(Transport::Udp, Use::Receive, sa("[fe80:1::1]:1900")),
            Verdict::Deny
        );
        assert_eq!(
            g.check(Transport::Tcp, Use::Connect, sa("[2001:db8:ff::1]:5000")),
            Verdict::Deny
        );
    }

    #[test]
    fn ssdp_covers_both_groups_and_nothing_else() {
        let g = gate(&["udp:send@ssdp"]);
        for a in ["239.255.255.250:1900", "[ff02::c]:1900"] {
            assert_eq!(
                g.check(Transport::Udp, Use::Send, sa(a)),
                Verdict::Allow(0),
                "{a}"
            );
        }
        for a in ["[ff05::c]:1900", "[ff02::c]:1901", "[ff02::1]:1900"] {
            assert_eq!(
                g.check(Transport::Udp, Use::Send, sa(a)),
                Verdict::Deny,
                "{a}"
            );
        }
    }

    #[test]
    fn mapped_ipv6_is_judged_as_ipv4() {
        let g = gate(&["udp:send@gateway:5351"]);
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("[::ffff:10.0.0.1]:5351")),
            Verdict::Allow(0)
        );
        let g = gate(&["udp:send@::/0:5351"]);
        assert_eq!(
            g.check(Transport::Udp, Use::Send, sa("[::ffff:10.0.0.1]:5351")),
            Verdict::Deny
        );
    }
}
