//! NAT-PMP response parsers and the state blob: no panic on any input;
//! whatever parses re-encodes to the same fields.

use p2pbroker_mode_nat_pmp::proto::{
    PmpProto, parse_external_address_response, parse_map_response,
};
use p2pbroker_mode_nat_pmp::state::PmpState;

/// One input.
pub fn run(data: &[u8]) {
    if let Ok(e) = parse_external_address_response(data) {
        assert!(data.len() >= 12 && data[..4] == [0, 128, 0, 0]);
        assert_eq!(e.address, [data[8], data[9], data[10], data[11]]);
    }
    for proto in [PmpProto::Udp, PmpProto::Tcp] {
        if let Ok(m) = parse_map_response(data, proto) {
            assert!(data.len() >= 16);
            assert_eq!(m.external_port, u16::from_be_bytes([data[10], data[11]]));
        }
    }
    if let Some(s) = PmpState::decode(data) {
        assert_eq!(s.encode(), data);
    }
}
