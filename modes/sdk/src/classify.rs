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

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    // Order matters only where blocks nest; none of these do.
    let table: &[([u8; 4], u32, AddressClass)] = &[
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),    // RFC 1918
        ([172, 16, 0, 0], 12, Private), // RFC 1918
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, Shared), // RFC 6598, carrier-grade NAT
        ([169, 254, 0, 0], 16, LinkLocal),
        ([0, 0, 0, 0], 8, Reserved),       // "this network"
        ([192, 0, 0, 0], 24, Reserved),    // IETF protocol assignments
        ([192, 0, 2, 0], 24, Reserved),    // TEST-NET-1
        ([198, 18, 0, 0], 15, Reserved),   // benchmarking, RFC 2544
        ([198, 51, 100, 0], 24, Reserved), // TEST-NET-2
        ([203, 0, 113, 0], 24, Reserved),  // TEST-NET-3
        ([192, 88, 99, 0], 24, Reserved),  // 6to4 relay anycast (deprecated)
        ([224, 0, 0, 0], 4, Reserved),     // multicast: never a mapping address
        ([240, 0, 0, 0], 4, Reserved),     // reserved, includes broadcast
    ];
    table
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map_or(Global, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if ip.is_loopback() {
        Loopback
    } else if s[0] & 0xffc0 == 0xfe80 {
        LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 {
        Private // RFC 4193 unique local
    } else if ip.is_unspecified()
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 well-known prefix
        || s[0] & 0xff00 == 0xff00 // multicast
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || s[0] & 0xe000 != 0x2000
    // outside 2000::/3, the global unicast space
    {
        Reserved
    } else {
        Global
    }
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
        ] {
            assert_eq!(c(a), want, "{a}");
        }
    }
}
