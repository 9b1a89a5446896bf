//! SSDP, HTTP, description XML, SOAP, the IGD and pinhole state blobs: no
//! panic, no runaway memory, no accepted mapping state with external port 0,
//! no accepted pinhole state with port 0, a lease out of 1..=86400 s or a
//! protocol other than TCP/UDP; accepted states round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pbroker_mode_upnp_igd::http::{parse_response, parse_url};
use p2pbroker_mode_upnp_igd::igd::MappingState;
use p2pbroker_mode_upnp_igd::pinhole::{PINHOLE_LEASE_MAX, PinholeState, parse_unique_id};
use p2pbroker_mode_upnp_igd::{ssdp, xml};

fuzz_target!(|data: &[u8]| {
    let _ = ssdp::parse_answer(data);
    if let Ok(r) = parse_response(data) {
        assert!(r.body.len() <= data.len());
    }
    let text = String::from_utf8_lossy(data);
    let base = parse_url("http://10.0.0.1:5000/rootDesc.xml").unwrap();
    if let Ok(svc) = xml::parse_description(&text, &base) {
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
});
