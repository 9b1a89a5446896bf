//! SSDP, HTTP, description XML, SOAP and the IGD state blobs: no panic, no
//! runaway memory, and no accepted mapping state with external port 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pbroker_mode_upnp_igd::http::{parse_response, parse_url};
use p2pbroker_mode_upnp_igd::igd::MappingState;
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
    let _ = xml::parse_soap(&text, "AddPortMapping");
    if let Some(s) = MappingState::decode(data) {
        assert_ne!(s.args.external_port, 0);
        assert_eq!(MappingState::decode(&s.encode()), Some(s));
    }
});
