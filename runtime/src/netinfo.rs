//! What the host knows about its network: default gateways and local
//! addresses. MODs see it through the broker interface; the gate resolves
//! symbolic targets (`gateway`, `lan`, `local`) against it.
//!
//! The `/proc/net` parsers are pure functions over text so they are unit
//! tested; [`NetInfo::read`] is the thin I/O glue.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A unicast address of this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalAddress {
    /// The address.
    pub address: IpAddr,
    /// Prefix length of its subnet.
    pub prefix_len: u8,
    /// Interface name.
    pub interface: String,
}

/// A snapshot of the host's network facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetInfo {
    /// Default gateways, IPv4 first, in routing-table order.
    pub gateways: Vec<IpAddr>,
    /// Unicast addresses, loopback excluded.
    pub addresses: Vec<LocalAddress>,
}

impl NetInfo {
    /// Read the current facts from `/proc/net` and the interface list.
    ///
    /// Unreadable sources give empty lists rather than an error: a host with
    /// no route is a fact the MODs should see, not a broker failure.
    pub fn read() -> NetInfo {
        let mut gateways = std::fs::read_to_string("/proc/net/route")
            .map(|t| parse_ipv4_routes(&t))
            .unwrap_or_default();
        gateways.extend(
            std::fs::read_to_string("/proc/net/ipv6_route")
                .map(|t| parse_ipv6_routes(&t))
                .unwrap_or_default(),
        );
        let addresses = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i.is_loopback())
            .map(|i| LocalAddress {
                address: i.ip(),
                prefix_len: prefix_len(&i.addr),
                interface: i.name,
            })
            .collect();
        NetInfo {
            gateways,
            addresses,
        }
    }

    /// The lab host's facts, for unit tests: gateway 10.0.0.1, address
    /// 10.0.0.2/24 on eth0.
    #[cfg(test)]
    pub fn lab_host() -> NetInfo {
        NetInfo {
            gateways: vec!["10.0.0.1".parse().unwrap()],
            addresses: vec![LocalAddress {
                address: "10.0.0.2".parse().unwrap(),
                prefix_len: 24,
                interface: "eth0".into(),
            }],
        }
    }
}

fn prefix_len(addr: &if_addrs::IfAddr) -> u8 {
    let bits = match addr {
        if_addrs::IfAddr::V4(a) => u32::from(a.netmask).count_ones(),
        if_addrs::IfAddr::V6(a) => u128::from(a.netmask).count_ones(),
    };
    bits as u8
}

/// `RTF_GATEWAY` from `<linux/route.h>`: the route goes through a gateway.
const RTF_GATEWAY: u32 = 0x2;

/// Default-route gateways from the text of `/proc/net/route`.
///
/// Columns: Iface Destination Gateway Flags ...; addresses are hex in host
/// (little-endian on every platform we run on) byte order.
pub fn parse_ipv4_routes(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [_, dest, gw, flags, ..] = cols.as_slice() else {
            continue;
        };
        let (Ok(dest), Ok(gw), Ok(flags)) = (
            u32::from_str_radix(dest, 16),
            u32::from_str_radix(gw, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if dest == 0 && flags & RTF_GATEWAY != 0 && gw != 0 {
            let ip = IpAddr::V4(Ipv4Addr::from(gw.swap_bytes()));
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Default-route next hops from the text of `/proc/net/ipv6_route`.
///
/// Columns: dest dest_len src src_len next_hop metric refcnt use flags iface,
/// addresses as 32 hex digits.
pub fn parse_ipv6_routes(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [dest, dest_len, _, _, hop, ..] = cols.as_slice() else {
            continue;
        };
        let (Ok(dest), Ok(0), Ok(hop)) = (
            u128::from_str_radix(dest, 16),
            u8::from_str_radix(dest_len, 16),
            u128::from_str_radix(hop, 16),
        ) else {
            continue;
        };
        if dest == 0 && hop != 0 {
            let ip = IpAddr::V6(Ipv6Addr::from(hop));
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_default_route_gateway_is_decoded_little_endian() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    eth1\t00000000\t0101A8C0\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        // eth1's default route lacks RTF_GATEWAY and is not a gateway.
        assert_eq!(
            parse_ipv4_routes(text),
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn ipv6_default_route_next_hop() {
        let text = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                    20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
                    garbage line\n";
        assert_eq!(
            parse_ipv6_routes(text),
            vec!["fe80::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn malformed_tables_give_nothing_not_a_panic() {
        assert!(parse_ipv4_routes("").is_empty());
        assert!(parse_ipv4_routes("hdr\nx y z\neth0 zz 01 02").is_empty());
        assert!(parse_ipv6_routes("0 0 0 0 0\n\u{0}").is_empty());
    }
}
