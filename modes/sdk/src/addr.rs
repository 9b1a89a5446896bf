//! Conversions between WIT addresses and `core::net` types (pure), as
//! functions and as `From` impls.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::bindings::wasi::sockets::network::{
    IpAddress, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};

/// WIT address → std address.
pub fn to_ip(a: &IpAddress) -> IpAddr {
    match *a {
        IpAddress::Ipv4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    }
}

/// std address → WIT address.
pub fn from_ip(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            IpAddress::Ipv4((a, b, c, d))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            IpAddress::Ipv6((a, b, c, d, e, f, g, h))
        }
    }
}

/// WIT socket address → std socket address.
pub fn to_socket(a: &IpSocketAddress) -> SocketAddr {
    match *a {
        IpSocketAddress::Ipv4(v4) => {
            let (a, b, c, d) = v4.address;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), v4.port))
        }
        IpSocketAddress::Ipv6(v6) => {
            let (a, b, c, d, e, f, g, h) = v6.address;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(a, b, c, d, e, f, g, h),
                v6.port,
                v6.flow_info,
                v6.scope_id,
            ))
        }
    }
}

/// std socket address → WIT socket address.
pub fn from_socket(a: SocketAddr) -> IpSocketAddress {
    match a {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (a, b, c, d),
            })
        }
        SocketAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: v6.flowinfo(),
                address: (a, b, c, d, e, f, g, h),
                scope_id: v6.scope_id(),
            })
        }
    }
}

// `From` forms of the functions above, for `.into()` at call sites.

impl From<IpAddress> for IpAddr {
    fn from(a: IpAddress) -> Self {
        to_ip(&a)
    }
}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        from_ip(ip)
    }
}

impl From<IpSocketAddress> for SocketAddr {
    fn from(a: IpSocketAddress) -> Self {
        to_socket(&a)
    }
}

impl From<SocketAddr> for IpSocketAddress {
    fn from(a: SocketAddr) -> Self {
        from_socket(a)
    }
}

/// Whether `host` is a usable destination name for a proxy: a DNS name or
/// an IP literal (IPv6 without brackets), 1–255 bytes, nothing that could
/// end a request line or a field (only letters, digits and `.-:_`).
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "198.51.100.7:4000",
            "[2001:db8::7]:53",
            "[::ffff:1.2.3.4]:1",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(to_socket(&from_socket(a)), a);
            assert_eq!(to_ip(&from_ip(a.ip())), a.ip());
            let wit: IpSocketAddress = a.into();
            assert_eq!(SocketAddr::from(wit), a);
            let wit: IpAddress = a.ip().into();
            assert_eq!(IpAddr::from(wit), a.ip());
        }
    }
}
