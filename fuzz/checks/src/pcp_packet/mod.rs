//! PCP responses built field by field (RFC 6887 §7, §11, §14): version,
//! opcode with or without the response bit (MAP, PEER, ANNOUNCE, others),
//! result code, lifetime, epoch, MAP/PEER opcode data with our nonce or
//! another, IPv4-mapped or IPv6 addresses, options (THIRD_PARTY,
//! PREFER_FAILURE, FILTER, unknown) with honest, lying or missing lengths
//! and padding, the whole cut short or not.
//!
//! Checks: a MAP success with our nonce parses to exactly the fields built;
//! another nonce, another opcode (or a request), another version, a failure
//! result or a packet cut short of the MAP data is refused with the error
//! that names it; an ANNOUNCE success header parses; options are not read
//! (`parse_map` reads fixed offsets), so no option, whatever its length
//! says, changes the verdict; and the byte-level `pcp` checks hold.

mod packet;

use arbitrary::{Arbitrary, Unstructured};
use p2pbroker_mode_pcp::proto::{
    PCP_OP_ANNOUNCE, PCP_OP_MAP, PCP_VERSION, PcpError, PcpHeader, PcpResult, parse_header,
    parse_map,
};

use packet::Packet;

/// The nonce our request carried (the `pcp` target's too).
const OURS: [u8; 12] = [0x5a; 12];
/// Header (RFC 6887 §7.2) and MAP opcode data (§11.1) sizes.
const HEADER_LEN: usize = 24;
const MAP_END: usize = HEADER_LEN + 36;

/// One input.
pub fn run(data: &[u8]) {
    if let Some((p, bytes)) = built(data) {
        check(&p, &bytes);
        crate::pcp::run(&bytes);
    }
}

/// The packet the input describes and its bytes, cut where it says.
fn built(data: &[u8]) -> Option<(Packet, Vec<u8>)> {
    let p = Packet::arbitrary(&mut Unstructured::new(data)).ok()?;
    let mut bytes = p.build();
    if let Some(n) = p.cut() {
        bytes.truncate(usize::from(n) % (bytes.len() + 1));
    }
    Some((p, bytes))
}

/// What `parse_header` must answer for the first `len` bytes of `p`,
/// asked about `opcode` (RFC 6887 §8.3, §9).
fn expected_header(p: &Packet, len: usize, opcode: u8) -> Result<PcpHeader, PcpError> {
    match p.version() {
        _ if len == 0 => Err(PcpError::Truncated {
            got: 0,
            want: HEADER_LEN,
        }),
        0 => Err(PcpError::NatPmpOnly),
        PCP_VERSION => {
            if len < HEADER_LEN {
                Err(PcpError::Truncated {
                    got: len,
                    want: HEADER_LEN,
                })
            } else if p.opcode() != opcode | 0x80 {
                Err(PcpError::Opcode(p.opcode()))
            } else if p.result() != 0 {
                Err(PcpError::Result(
                    PcpResult::from(p.result()),
                    p.header().lifetime,
                ))
            } else {
                Ok(p.header())
            }
        }
        v => Err(PcpError::Version(v)),
    }
}

fn check(p: &Packet, bytes: &[u8]) {
    let len = bytes.len();
    // The twelve bytes where a MAP answer's nonce sits, whatever was built
    // there (an ANNOUNCE's options, say).
    let nonce_field = bytes.get(HEADER_LEN..HEADER_LEN + 12);
    let expected_map = if len >= MAP_END && p.version() == PCP_VERSION && nonce_field != Some(&OURS)
    {
        // Checked before anything else, so a forged failure cannot stop
        // a mapping either (RFC 6887 §11.3: discard it).
        Err(PcpError::Nonce)
    } else {
        expected_header(p, len, PCP_OP_MAP).and_then(|header| {
            if len < MAP_END {
                return Err(PcpError::Truncated {
                    got: len,
                    want: MAP_END,
                });
            }
            Ok(p.map(header))
        })
    };
    let map = parse_map(bytes, &OURS);
    assert_eq!(map, expected_map, "{bytes:02x?}");
    assert_eq!(
        parse_header(bytes, PCP_OP_ANNOUNCE),
        expected_header(p, len, PCP_OP_ANNOUNCE),
        "{bytes:02x?}"
    );
    // Options follow MAP's fixed part and are never read: dropping them
    // changes nothing, honest or lying. (An ANNOUNCE has no opcode data,
    // so its options sit where a MAP answer's nonce would.)
    if p.has_map_data() && len > MAP_END {
        assert_eq!(
            parse_map(&bytes[..MAP_END], &OURS),
            map,
            "options changed the verdict"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_packets_pass() {
        crate::pseudo_random_inputs(4000, 200, run);
    }

    /// The builder reaches every verdict from plain random bytes, so the
    /// test above checks each of them.
    #[test]
    fn pseudo_random_packets_reach_every_verdict() {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<&str>> = Mutex::new(Vec::new());
        crate::pseudo_random_inputs(4000, 200, |data| {
            let Some((_, b)) = built(data) else {
                return;
            };
            let verdict = match parse_map(&b, &OURS) {
                Ok(_) => "ok",
                Err(PcpError::Nonce) => "nonce",
                Err(PcpError::Opcode(_)) => "opcode",
                Err(PcpError::Result(..)) => "result",
                Err(PcpError::Truncated { .. }) => "truncated",
                Err(PcpError::Version(_)) => "version",
                Err(PcpError::NatPmpOnly) => "nat-pmp",
            };
            SEEN.lock().unwrap().push(verdict);
        });
        let seen = SEEN.lock().unwrap();
        for v in [
            "ok",
            "nonce",
            "opcode",
            "result",
            "truncated",
            "version",
            "nat-pmp",
        ] {
            assert!(seen.contains(&v), "no input reached {v}");
        }
    }
}
