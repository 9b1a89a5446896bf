//! PCP parsers and state: no panic; a parsed MAP response carries our
//! nonce; state blobs round-trip.

use p2pbroker_mode_pcp::proto::{PCP_OP_ANNOUNCE, PCP_OP_MAP, parse_header, parse_map};
use p2pbroker_mode_pcp::state::PcpState;

/// One input.
pub fn run(data: &[u8]) {
    let nonce = [0x5a; 12];
    if parse_map(data, &nonce).is_ok() {
        assert_eq!(&data[24..36], &nonce);
        assert_eq!(data[1], PCP_OP_MAP | 0x80);
    }
    let _ = parse_header(data, PCP_OP_ANNOUNCE);
    if let Some(s) = PcpState::decode(data) {
        assert_eq!(PcpState::decode(&s.encode()), Some(s));
    }
}
