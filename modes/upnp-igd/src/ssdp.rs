//! SSDP discovery (UPnP Device Architecture 1.1 §1.3): the M-SEARCH
//! request and the parsing of its unicast answers. Pure.

/// The SSDP multicast group and port.
pub const SSDP_ADDR: &str = "239.255.255.250:1900";
/// The link-local IPv6 SSDP group (UDA 1.1 §1.1.2). An IGD answers it with
/// a LOCATION on its IPv6 address, which pinhole requests need: gateways
/// check that they come from the internal client's own IPv6 address.
pub const SSDP_ADDR_V6: &str = "[ff02::c]:1900";
/// Search targets, most specific first: IGD v2 and v1 devices, and the
/// WAN connection services themselves (some routers answer only those).
pub const SEARCH_TARGETS: [&str; 4] = [
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
/// Search targets for IPv6 pinholes: the firewall service itself, and IGD
/// v2 devices (some answer only device types).
pub const SEARCH_TARGETS_V6: [&str; 2] = [
    "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
];
/// MX (seconds a device may wait before answering). UDA 1.1 allows 1..5;
/// 1 keeps answers fast, and we stop listening early anyway.
const SSDP_MX: u8 = 1;

/// One M-SEARCH request for `target`, sent to the IPv4 group.
pub fn build_msearch(target: &str) -> Vec<u8> {
    msearch(SSDP_ADDR, target)
}

/// One M-SEARCH request for `target`, sent to the IPv6 group.
pub fn build_msearch_v6(target: &str) -> Vec<u8> {
    msearch("[FF02::C]:1900", target)
}

fn msearch(host: &str, target: &str) -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: {host}\r\nMAN: \"ssdp:discover\"\r\nMX: {SSDP_MX}\r\nST: {target}\r\n\r\n"
    )
    .into_bytes()
}

/// What a gateway's search response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsdpAnswer {
    /// The device description URL.
    pub location: String,
    /// The search target it answered.
    pub st: String,
    /// Its `SERVER` header, for diagnostics.
    pub server: String,
}

/// Parse a search response; `None` for anything that is not a `200` with
/// a `LOCATION` (notifications, other searchers' requests, garbage).
pub fn parse_answer(b: &[u8]) -> Option<SsdpAnswer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(b).ok()?;
    if resp.code != Some(200) {
        return None;
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(|v| v.trim().to_string())
    };
    Some(SsdpAnswer {
        location: get("location")?,
        st: get("st").unwrap_or_default(),
        server: get("server").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msearch_is_well_formed() {
        let m = String::from_utf8(build_msearch(SEARCH_TARGETS[1])).unwrap();
        assert!(m.starts_with("M-SEARCH * HTTP/1.1\r\n"));
        assert!(m.contains("MAN: \"ssdp:discover\"\r\n"));
        assert!(m.ends_with("ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"));
        let m6 = String::from_utf8(build_msearch_v6(SEARCH_TARGETS_V6[0])).unwrap();
        assert!(m6.starts_with("M-SEARCH * HTTP/1.1\r\nHOST: [FF02::C]:1900\r\n"));
        assert!(m6.contains("ST: urn:schemas-upnp-org:service:WANIPv6FirewallControl:1\r\n"));
        assert_eq!(
            SSDP_ADDR_V6
                .parse::<core::net::SocketAddr>()
                .unwrap()
                .port(),
            1900
        );
    }

    #[test]
    fn parses_miniupnpd_answer_case_insensitively() {
        let a = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x::urn\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nlocation: http://10.0.0.1:5000/rootDesc.xml\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n\r\n";
        let p = parse_answer(a).unwrap();
        assert_eq!(p.location, "http://10.0.0.1:5000/rootDesc.xml");
        assert!(p.server.contains("MiniUPnPd"));
        // Captured from miniupnpd 2.3.1 answering on [ff02::c] in the lab.
        let a6 = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:service:WANIPv6FirewallControl:1\r\nUSN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07d::urn:schemas-upnp-org:service:WANIPv6FirewallControl:1\r\nEXT:\r\nSERVER: Debian UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://[2001:db8:1::1]:5000/rootDesc.xml\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1795592135\r\nBOOTID.UPNP.ORG: 1795592135\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n";
        let p = parse_answer(a6).unwrap();
        assert_eq!(p.location, "http://[2001:db8:1::1]:5000/rootDesc.xml");
        assert_eq!(p.st, SEARCH_TARGETS_V6[0]);
    }

    #[test]
    fn ignores_what_is_not_an_answer() {
        assert!(parse_answer(&build_msearch(SEARCH_TARGETS[0])).is_none());
        assert!(parse_answer(b"HTTP/1.1 404 Not Found\r\nLOCATION: x\r\n\r\n").is_none());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n").is_none());
        assert!(parse_answer(b"\x00\xff garbage").is_none());
    }
}
