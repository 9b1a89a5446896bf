//! SSDP discovery (UPnP Device Architecture 1.1 §1.3): the M-SEARCH
//! request and the parsing of its unicast answers. Pure.

/// The SSDP multicast group and port.
pub const SSDP_ADDR: &str = "239.255.255.250:1900";
/// Search targets, most specific first: IGD v2 and v1 devices, and the
/// WAN connection services themselves (some routers answer only those).
pub const SEARCH_TARGETS: [&str; 4] = [
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
/// MX (seconds a device may wait before answering). UDA 1.1 allows 1..5;
/// 1 keeps answers fast, and we stop listening early anyway.
const SSDP_MX: u8 = 1;

/// One M-SEARCH request for `target`.
pub fn build_msearch(target: &str) -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: {SSDP_ADDR}\r\nMAN: \"ssdp:discover\"\r\nMX: {SSDP_MX}\r\nST: {target}\r\n\r\n"
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
    }

    #[test]
    fn parses_miniupnpd_answer_case_insensitively() {
        let a = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x::urn\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nlocation: http://10.0.0.1:5000/rootDesc.xml\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n\r\n";
        let p = parse_answer(a).unwrap();
        assert_eq!(p.location, "http://10.0.0.1:5000/rootDesc.xml");
        assert!(p.server.contains("MiniUPnPd"));
    }

    #[test]
    fn ignores_what_is_not_an_answer() {
        assert!(parse_answer(&build_msearch(SEARCH_TARGETS[0])).is_none());
        assert!(parse_answer(b"HTTP/1.1 404 Not Found\r\nLOCATION: x\r\n\r\n").is_none());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n").is_none());
        assert!(parse_answer(b"\x00\xff garbage").is_none());
    }
}
