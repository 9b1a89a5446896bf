//! Address classification per the IANA special-purpose registries
//! (RFC 6890 and its updates), so a MOD can tell a globally routable
//! external address from a double-NAT or CGNAT one.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::AddressClass;

/// How routable `ip` is.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The WIT name of a class (`global`, `private`, `shared`, ...).
pub fn class_name(c: AddressClass) -> &'static str {
    match c {
        AddressClass::Global => "global",
        AddressClass::Private => "private",
        AddressClass::Shared => "shared",
        AddressClass::Loopback => "loopback",
        AddressClass::LinkLocal => "link-local",
        AddressClass::Reserved => "reserved",
    }
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn ip4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    // First match wins: the globally reachable anycast /32s come before the
    // block that holds them. Anything unlisted is global unicast.
    let table: &[(Ipv4Addr, u32, AddressClass)] = &[
        (ip4(192, 0, 0, 9), 32, Global),  // PCP anycast, RFC 7723
        (ip4(192, 0, 0, 10), 32, Global), // TURN anycast, RFC 8155
        (ip4(127, 0, 0, 0), 8, Loopback),
        (ip4(10, 0, 0, 0), 8, Private),    // RFC 1918
        (ip4(172, 16, 0, 0), 12, Private), // RFC 1918
        (ip4(192, 168, 0, 0), 16, Private),
        (ip4(100, 64, 0, 0), 10, Shared), // RFC 6598, carrier-grade NAT
        (ip4(169, 254, 0, 0), 16, LinkLocal),
        (ip4(0, 0, 0, 0), 8, Reserved),       // "this network"
        (ip4(192, 0, 0, 0), 24, Reserved),    // IETF protocol assignments
        (ip4(192, 0, 2, 0), 24, Reserved),    // TEST-NET-1
        (ip4(198, 18, 0, 0), 15, Reserved),   // benchmarking, RFC 2544
        (ip4(198, 51, 100, 0), 24, Reserved), // TEST-NET-2
        (ip4(203, 0, 113, 0), 24, Reserved),  // TEST-NET-3
        (ip4(192, 88, 99, 0), 24, Reserved),  // 6to4 relay anycast (deprecated)
        (ip4(224, 0, 0, 0), 4, Reserved),     // multicast: never a mapping address
        (ip4(240, 0, 0, 0), 4, Reserved),     // reserved, includes broadcast
    ];
    table
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map_or(Global, |(_, _, class)| *class)
}

fn ip6(s: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::from(s)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    // An IPv4-mapped address is that IPv4 host (dual-stack sockets show them).
    if let Some(a) = ip.to_ipv4_mapped() {
        return classify_v4(a);
    }
    // First match wins: the globally reachable exceptions come before
    // 2001::/23, which holds them. Outside 2000::/3 nothing is global unicast.
    let table: &[(Ipv6Addr, u32, AddressClass)] = &[
        (ip6([0, 0, 0, 0, 0, 0, 0, 1]), 128, Loopback),
        (ip6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10, LinkLocal),
        (ip6([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7, Private), // RFC 4193 unique local
        (ip6([0x2001, 1, 0, 0, 0, 0, 0, 1]), 128, Global), // PCP anycast, RFC 7723
        (ip6([0x2001, 1, 0, 0, 0, 0, 0, 2]), 128, Global), // TURN anycast, RFC 8155
        (ip6([0x2001, 1, 0, 0, 0, 0, 0, 3]), 128, Global), // DNS-SD SRP anycast, RFC 9665
        (ip6([0x2001, 3, 0, 0, 0, 0, 0, 0]), 32, Global), // AMT, RFC 7450
        (ip6([0x2001, 4, 0x112, 0, 0, 0, 0, 0]), 48, Global), // AS112-v6, RFC 7535
        (ip6([0x2001, 0x20, 0, 0, 0, 0, 0, 0]), 28, Global), // ORCHIDv2, RFC 7343
        (ip6([0x2001, 0x30, 0, 0, 0, 0, 0, 0]), 28, Global), // drone remote ID, RFC 9374
        // IETF protocol assignments: Teredo, benchmarking 2001:2::/48, ...
        (ip6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 23, Reserved),
        (ip6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, Reserved), // documentation
        (ip6([0x3fff, 0, 0, 0, 0, 0, 0, 0]), 20, Reserved),     // documentation, RFC 9637
        (ip6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16, Reserved),     // 6to4: a tunnel, not a host's own
        (ip6([0x5f00, 0, 0, 0, 0, 0, 0, 0]), 16, Reserved),     // SRv6 SIDs, RFC 9602
        (ip6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3, Global),        // global unicast
    ];
    // Unlisted means outside 2000::/3: unspecified, NAT64 64:ff9b::/96 and
    // 64:ff9b:1::/48, discard-only 100::/64, multicast ff00::/8, ...
    table
        .iter()
        .find(|(net, len, _)| in_v6(ip, *net, *len))
        .map_or(Reserved, |(_, _, class)| *class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn c(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4_blocks() {
        for (a, want) in [
            ("8.8.8.8", Global),
            ("1.1.1.1", Global),
            ("10.1.2.3", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Global),
            ("192.168.1.1", Private),
            ("100.64.0.1", Shared),
            ("100.127.255.255", Shared),
            ("100.128.0.1", Global),
            ("127.0.0.1", Loopback),
            ("169.254.1.1", LinkLocal),
            ("0.1.2.3", Reserved),
            ("192.0.2.1", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.1", Reserved),
            ("198.51.100.1", Reserved),
            ("203.0.113.9", Reserved),
            ("239.255.255.250", Reserved),
            ("255.255.255.255", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.0.9", Global), // PCP anycast
            ("192.0.0.10", Global),
            ("192.0.0.11", Reserved),
            ("192.88.99.1", Reserved),
            ("100.63.255.255", Global),
            ("169.254.0.0", LinkLocal),
        ] {
            assert_eq!(c(a), want, "{a}");
        }
    }

    #[test]
    fn ipv6_blocks() {
        for (a, want) in [
            ("2606:4700::1111", Global),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("fd00::1", Private),
            ("2001:db8::1", Reserved),
            ("64:ff9b::1.2.3.4", Reserved),
            ("ff02::1", Reserved),
            ("::", Reserved),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Global),
            ("::ffff:100.64.0.1", Shared),
            ("64:ff9b:1::1", Reserved),
            ("100::1", Reserved),
            ("2001::1", Reserved),   // Teredo
            ("2001:2::1", Reserved), // benchmarking
            ("2001:1::1", Global),   // PCP anycast
            ("2001:1::4", Reserved),
            ("2001:4:112::1", Global),      // AS112-v6
            ("2001:200::1", Global),        // just past 2001::/23
            ("2002:c000:201::1", Reserved), // 6to4
            ("3fff:123::1", Reserved),      // documentation
            ("3fff:f000::1", Global),       // just past 3fff::/20
            ("5f00::1", Reserved),          // SRv6
            ("fec0::1", Reserved),          // deprecated site-local
            ("4000::1", Reserved),          // outside 2000::/3
        ] {
            assert_eq!(c(a), want, "{a}");
        }
    }
}
