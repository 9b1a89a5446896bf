//! The grant grammar: what a policy or a command-line flag may allow a MOD.
//!
//! ```text
//! GRANT     := TRANSPORT ":" USES "@" TARGET [":" PORTS]
//!            | "name-lookup"
//! TRANSPORT := "udp" | "tcp"
//! USES      := USE ("," USE)*
//! USE       := "bind" | "connect" | "send" | "receive" | "listen" | "accept"
//! TARGET    := "gateway" | "ssdp" | "lan" | "local" | "stun" | "turn" | "proxy" | "api" | CIDR | IP
//!            | "[" IPV6 "]"
//! PORTS     := PORT | PORT "-" PORT          (PORT 0 only for "bind")
//! ```
//!
//! Examples: `udp:send,receive@gateway:5351`, `udp:send@ssdp`,
//! `tcp:connect@lan:1024-65535`, `udp:bind@local:5350`,
//! `udp:send,receive@198.51.100.0/24:3478`.
//!
//! There is deliberately no allow-all shorthand: a target and a port range are
//! always spelled out (`ssdp` alone implies port 1900).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Transport a grant applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP streams.
    Tcp,
}

/// What a socket address is used for; one per `wasi:sockets` check point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Use {
    /// Bind a local address (explicitly, or implicitly before send/connect).
    Bind,
    /// Open a TCP connection to a remote address.
    Connect,
    /// Send a UDP datagram to a remote address.
    Send,
    /// Accept a UDP datagram from a remote address.
    Receive,
    /// Put a TCP socket into listening mode on a local address.
    Listen,
    /// Accept a TCP connection from a remote address.
    Accept,
}

impl Use {
    const ALL: [Use; 6] = [
        Use::Bind,
        Use::Connect,
        Use::Send,
        Use::Receive,
        Use::Listen,
        Use::Accept,
    ];

    /// The grammar's word for this use.
    pub fn as_str(self) -> &'static str {
        match self {
            Use::Bind => "bind",
            Use::Connect => "connect",
            Use::Send => "send",
            Use::Receive => "receive",
            Use::Listen => "listen",
            Use::Accept => "accept",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn valid_for(self, t: Transport) -> bool {
        match t {
            Transport::Udp => matches!(self, Use::Bind | Use::Send | Use::Receive),
            Transport::Tcp => matches!(self, Use::Bind | Use::Connect | Use::Listen | Use::Accept),
        }
    }
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// A set of [`Use`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Uses(u8);

impl Uses {
    /// Whether `u` is in the set.
    pub fn contains(self, u: Use) -> bool {
        self.0 & u.bit() != 0
    }

    fn insert(&mut self, u: Use) {
        self.0 |= u.bit();
    }

    /// The uses in the set, in grammar order.
    pub fn iter(self) -> impl Iterator<Item = Use> {
        Use::ALL.into_iter().filter(move |u| self.contains(*u))
    }
}

/// Where a grant lets a MOD send, connect, bind or receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The host's default gateways.
    Gateway,
    /// The SSDP multicast groups: 239.255.255.250 and the link-local IPv6
    /// group ff02::c (port 1900 unless given).
    Ssdp,
    /// Every subnet the host has an address on.
    Lan,
    /// The unspecified address and the host's own addresses (for binds).
    Local,
    /// The addresses of the policy's STUN servers (`[services] stun`, IP
    /// literals), on the grant's ports.
    Stun,
    /// The addresses of the policy's TURN relays (`[services] turn`, as
    /// the MOD's config `turn_servers`; IP literals), on the grant's ports.
    Turn,
    /// The address of the MOD's proxy (its config `proxy`, `IP:PORT`), on
    /// the grant's ports: what the broker connects to for a connector MOD.
    Proxy,
    /// The MOD's management API (its config `api`, `IP:PORT`): that
    /// address and only that port, if the grant's ports include it. What a
    /// firewall-API MOD connects to through the `tls` import.
    Api,
    /// An explicit network.
    Net(IpNet),
}

/// The SSDP multicast group (UPnP Device Architecture 1.1, section 1.1.2).
pub const SSDP_GROUP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(239, 255, 255, 250));
/// The link-local IPv6 SSDP group (same section). IGDs answer it with their
/// IPv6 LOCATION, which IPv6 pinhole requests need.
pub const SSDP_GROUP_V6: IpAddr =
    IpAddr::V6(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xc));
/// The SSDP port.
pub const SSDP_PORT: u16 = 1900;

/// One parsed grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Socket rule.
    Socket {
        /// Transport it applies to.
        transport: Transport,
        /// What the addresses may be used for.
        uses: Uses,
        /// Which addresses.
        target: Target,
        /// Inclusive port range.
        ports: (u16, u16),
    },
    /// `wasi:sockets/ip-name-lookup` (off unless granted).
    NameLookup,
}

/// A grant string that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid grant `{input}`: {reason} (expected TRANSPORT:USES@TARGET[:PORTS], e.g. `udp:send,receive@gateway:5351`)"
)]
pub struct GrantError {
    /// The offending text.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| GrantError {
            input: s.to_string(),
            reason,
        };
        if s == "name-lookup" {
            return Ok(Grant::NameLookup);
        }
        let (head, rest) = s
            .split_once('@')
            .ok_or_else(|| err("missing `@TARGET`".into()))?;
        let (transport, uses_text) = head
            .split_once(':')
            .ok_or_else(|| err("missing `:USES` after the transport".into()))?;
        let transport = match transport {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            other => return Err(err(format!("unknown transport `{other}` (udp or tcp)"))),
        };
        let mut uses = Uses::default();
        for word in uses_text.split(',') {
            let u = Use::ALL
                .into_iter()
                .find(|u| u.as_str() == word)
                .ok_or_else(|| err(format!("unknown use `{word}`")))?;
            if !u.valid_for(transport) {
                return Err(err(format!("`{word}` does not apply to {transport}")));
            }
            uses.insert(u);
        }
        let (target, ports) = parse_target_ports(rest).map_err(err)?;
        if ports.0 == 0 && !(uses == single(Use::Bind)) {
            return Err(err("port 0 is only meaningful for `bind`".into()));
        }
        Ok(Grant::Socket {
            transport,
            uses,
            target,
            ports,
        })
    }
}

fn single(u: Use) -> Uses {
    let mut s = Uses::default();
    s.insert(u);
    s
}

fn parse_target_ports(s: &str) -> Result<(Target, (u16, u16)), String> {
    // An IPv6 address with a port is written in brackets, `[::1]:80`, as in
    // URLs; a bare IPv6 literal or CIDR is taken whole when it parses.
    if let Some(inner) = s.strip_prefix('[') {
        let (addr, rest) = inner
            .split_once(']')
            .ok_or_else(|| "missing `]` after an IPv6 address".to_string())?;
        let ip: std::net::Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv6 address"))?;
        let ports = rest
            .strip_prefix(':')
            .ok_or_else(|| "missing `:PORTS` after `]`".to_string())?;
        return Ok((
            Target::Net(IpNet::from(IpAddr::V6(ip))),
            parse_ports(ports)?,
        ));
    }
    let (target_text, port_text) = match s.rsplit_once(':') {
        _ if parse_target(s).is_ok() => (s, None),
        Some((t, p)) => (t, Some(p)),
        None => (s, None),
    };
    let target = parse_target(target_text)?;
    let ports = match (port_text, &target) {
        (Some(p), _) => parse_ports(p)?,
        (None, Target::Ssdp) => (SSDP_PORT, SSDP_PORT),
        (None, _) => return Err("missing `:PORTS` (a port or a range such as 1024-65535)".into()),
    };
    Ok((target, ports))
}

fn parse_target(s: &str) -> Result<Target, String> {
    Ok(match s {
        "gateway" => Target::Gateway,
        "ssdp" => Target::Ssdp,
        "lan" => Target::Lan,
        "local" => Target::Local,
        "stun" => Target::Stun,
        "turn" => Target::Turn,
        "proxy" => Target::Proxy,
        "api" => Target::Api,
        _ => {
            if let Ok(net) = s.parse::<IpNet>() {
                Target::Net(net.trunc())
            } else if let Ok(ip) = s.parse::<IpAddr>() {
                Target::Net(IpNet::from(ip))
            } else {
                return Err(format!(
                    "unknown target `{s}` (gateway, ssdp, lan, local, stun, turn, proxy, api, an address or a CIDR)"
                ));
            }
        }
    })
}

pub(crate) fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number (0-65535)"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("port range `{s}` is empty"));
    }
    if lo == 0 && hi != 0 {
        return Err("a range may not include port 0".into());
    }
    Ok((lo, hi))
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::NameLookup => f.write_str("name-lookup"),
            Grant::Socket {
                transport,
                uses,
                target,
                ports,
            } => {
                let uses: Vec<&str> = uses.iter().map(Use::as_str).collect();
                write!(f, "{transport}:{}@", uses.join(","))?;
                match target {
                    Target::Gateway => f.write_str("gateway")?,
                    Target::Ssdp => f.write_str("ssdp")?,
                    Target::Lan => f.write_str("lan")?,
                    Target::Local => f.write_str("local")?,
                    Target::Stun => f.write_str("stun")?,
                    Target::Turn => f.write_str("turn")?,
                    Target::Proxy => f.write_str("proxy")?,
                    Target::Api => f.write_str("api")?,
                    Target::Net(IpNet::V6(n)) if n.prefix_len() == 128 => {
                        write!(f, "[{}]", n.addr())?
                    }
                    Target::Net(n) => write!(f, "{n}")?,
                }
                if ports.0 == ports.1 {
                    write!(f, ":{}", ports.0)
                } else {
                    write!(f, ":{}-{}", ports.0, ports.1)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Grant, GrantError> {
        s.parse()
    }

    #[test]
    fn round_trips_canonical_forms() {
        for s in [
            "udp:send,receive@gateway:5351",
            "udp:send@ssdp:1900",
            "tcp:connect@lan:1024-65535",
            "udp:bind@local:0",
            "udp:send,receive@198.51.100.0/24:3478",
            "tcp:connect@2001:db8::/32:443",
            "tcp:connect@[2001:db8::1]:443",
            "name-lookup",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn ssdp_defaults_to_1900_and_hosts_become_single_networks() {
        let Grant::Socket { ports, .. } = parse("udp:send@ssdp").unwrap() else {
            panic!()
        };
        assert_eq!(ports, (1900, 1900));
        let Grant::Socket { target, .. } = parse("udp:send@127.0.0.1:9").unwrap() else {
            panic!()
        };
        assert_eq!(target, Target::Net("127.0.0.1/32".parse().unwrap()));
        let Grant::Socket { target, .. } = parse("tcp:connect@[::1]:80").unwrap() else {
            panic!()
        };
        assert_eq!(target, Target::Net("::1/128".parse().unwrap()));
    }

    #[test]
    fn rejects_with_specific_reasons() {
        let cases = [
            ("udp:send", "missing `@TARGET`"),
            ("udp@gateway:1", "missing `:USES`"),
            ("sctp:send@gateway:1", "unknown transport `sctp`"),
            ("udp:connect@gateway:1", "`connect` does not apply to udp"),
            ("tcp:send@gateway:1", "`send` does not apply to tcp"),
            ("udp:shout@gateway:1", "unknown use `shout`"),
            ("udp:send@gateway", "missing `:PORTS`"),
            ("udp:send@everywhere:1", "unknown target `everywhere`"),
            ("udp:send@gateway:99999", "not a port number"),
            ("udp:send@gateway:9-1", "is empty"),
            ("udp:send@gateway:0", "only meaningful for `bind`"),
            ("udp:bind@local:0-10", "may not include port 0"),
        ];
        for (input, want) in cases {
            let e = parse(input).unwrap_err();
            assert!(e.to_string().contains(want), "{input}: {e}");
        }
    }
}
