//! SSDP, HTTP, URLs, description XML, SOAP, the IGD and pinhole state
//! blobs, the SSDP origin rule: no panic (no arithmetic overflow on any
//! size the peer sends), no runaway memory, a response the framing calls
//! complete parses or names its error, no accepted URL whose path could
//! split a request, no accepted SSDP answer off the default gateway, no
//! accepted mapping state with external port 0, no accepted pinhole state
//! with port 0, a lease out of 1..=86400 s or a protocol other than
//! TCP/UDP; accepted states round-trip.

use std::net::IpAddr;

use p2pbroker_mode_upnp_igd::http::{HTTP_MAX_RESPONSE, is_complete, parse_response};
use p2pbroker_mode_upnp_igd::igd::MappingState;
use p2pbroker_mode_upnp_igd::origin::{check_answer, is_gateway};
use p2pbroker_mode_upnp_igd::pinhole::{PINHOLE_LEASE_MAX, PinholeState, parse_unique_id};
use p2pbroker_mode_upnp_igd::url::parse_url;
use p2pbroker_mode_upnp_igd::{ssdp, xml};

/// One input.
pub fn run(data: &[u8]) {
    let _ = ssdp::parse_answer(data);
    if let Ok(r) = parse_response(data) {
        assert!(r.body.len() <= data.len());
    }
    // Stopping to read where the framing says the response is complete
    // loses nothing: more bytes after it change nothing.
    if is_complete(data) && data.len() + 16 <= HTTP_MAX_RESPONSE {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\r\nmore\r\n");
        match (parse_response(data), parse_response(&more)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("complete, yet more bytes changed {a:?} into {b:?}"),
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(u) = parse_url(&text) {
        assert!(u.path.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(parse_url(&u.to_string()), Ok(u));
    }
    let gateways: [IpAddr; 2] = [
        "10.0.0.1".parse().unwrap(),
        "2001:db8:1::1".parse().unwrap(),
    ];
    for from in ["10.0.0.1", "fe80::1", "10.0.0.7"] {
        if let Ok(u) = check_answer(&text, from.parse().unwrap(), &gateways) {
            assert!(is_gateway(u.addr.ip(), &gateways), "{u}");
        }
    }
    let base = parse_url("http://10.0.0.1:5000/rootDesc.xml").unwrap();
    if let Ok(Some(svc)) = xml::parse_description(&text, &base) {
        assert!(svc.control.addr.port() != 0);
    }
    let base6 = parse_url("http://[2001:db8:1::1]:5000/rootDesc.xml").unwrap();
    if let Ok(Some(control)) = xml::parse_firewall6(&text, &base6) {
        assert!(control.addr.port() != 0);
    }
    if let Ok(xml::SoapReply::Ok(out)) = xml::parse_soap(&text, "AddPinhole") {
        let _ = parse_unique_id(&out);
    }
    let _ = xml::parse_soap(&text, "AddPortMapping");
    if let Some(s) = MappingState::decode(data) {
        assert_ne!(s.args.external_port, 0);
        assert_eq!(MappingState::decode(&s.encode()), Some(s));
    }
    if let Some(p) = PinholeState::decode(data) {
        assert_ne!(p.args.internal_port, 0);
        assert!((1..=PINHOLE_LEASE_MAX).contains(&p.args.lease));
        assert!(matches!(p.args.protocol, 6 | 17));
        assert!(
            MappingState::decode(data).is_none(),
            "one blob, one meaning"
        );
        assert_eq!(PinholeState::decode(&p.encode()), Some(p));
    }
}
