//! NAT-PMP wire format (RFC 6886), as pure functions over bytes.
//!
//! Requests are built with `build_*`, responses parsed with `parse_*`; the
//! parsers check length, version, opcode and result code and never panic
//! on any input (fuzzed).

/// NAT-PMP version (RFC 6886 §3).
pub const PMP_VERSION: u8 = 0;
/// The port NAT-PMP servers listen on (RFC 6886 §3).
pub const PMP_PORT: u16 = 5351;
/// Response opcodes are request opcodes plus 128 (RFC 6886 §3.2).
const PMP_RESPONSE_BIT: u8 = 128;
/// Opcode: external address request (RFC 6886 §3.2).
pub const PMP_OP_EXTERNAL_ADDRESS: u8 = 0;
/// Opcode: map UDP (RFC 6886 §3.3).
pub const PMP_OP_MAP_UDP: u8 = 1;
/// Opcode: map TCP (RFC 6886 §3.3).
pub const PMP_OP_MAP_TCP: u8 = 2;

/// Result codes (RFC 6886 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmpResult {
    /// 0: success.
    Success,
    /// 1: unsupported version (a PCP-only server answers NAT-PMP with this).
    UnsupportedVersion,
    /// 2: not authorized / refused (e.g. NAT-PMP switched off).
    NotAuthorized,
    /// 3: network failure (e.g. the NAT has no external address yet).
    NetworkFailure,
    /// 4: out of resources (no ports left).
    OutOfResources,
    /// 5: unsupported opcode.
    UnsupportedOpcode,
    /// Any other code.
    Unknown(u16),
}

impl From<u16> for PmpResult {
    fn from(c: u16) -> Self {
        match c {
            0 => PmpResult::Success,
            1 => PmpResult::UnsupportedVersion,
            2 => PmpResult::NotAuthorized,
            3 => PmpResult::NetworkFailure,
            4 => PmpResult::OutOfResources,
            5 => PmpResult::UnsupportedOpcode,
            other => PmpResult::Unknown(other),
        }
    }
}

/// Transport of a NAT-PMP mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmpProto {
    /// UDP (opcode 1).
    Udp,
    /// TCP (opcode 2).
    Tcp,
}

impl PmpProto {
    fn opcode(self) -> u8 {
        match self {
            PmpProto::Udp => PMP_OP_MAP_UDP,
            PmpProto::Tcp => PMP_OP_MAP_TCP,
        }
    }
}

/// A parsed external-address response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmpExternal {
    /// Seconds since the gateway's mapping table was (re)initialised.
    pub epoch: u32,
    /// The gateway's external IPv4 address.
    pub address: [u8; 4],
}

/// A parsed mapping response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmpMapping {
    /// Seconds since start of epoch.
    pub epoch: u32,
    /// Echo of the internal port.
    pub internal_port: u16,
    /// The external port granted.
    pub external_port: u16,
    /// Lifetime granted, seconds (0 after a delete).
    pub lifetime: u32,
}

/// Why a response was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PmpError {
    /// Shorter than the fixed size for its opcode.
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes required.
        want: usize,
    },
    /// Version byte is not 0.
    Version(u8),
    /// Not the response to the request sent.
    Opcode {
        /// Opcode received.
        got: u8,
        /// Opcode expected.
        want: u8,
    },
    /// The gateway answered with a failure code.
    Result(PmpResult),
}

/// The external-address request (RFC 6886 §3.2).
pub fn build_external_address_request() -> [u8; 2] {
    [PMP_VERSION, PMP_OP_EXTERNAL_ADDRESS]
}

/// A map request (RFC 6886 §3.3). `lifetime` 0 with `external_port` 0
/// deletes the mapping for `internal_port`.
pub fn build_map_request(
    proto: PmpProto,
    internal_port: u16,
    external_port: u16,
    lifetime: u32,
) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = PMP_VERSION;
    b[1] = proto.opcode();
    // b[2..4] reserved, zero.
    b[4..6].copy_from_slice(&internal_port.to_be_bytes());
    b[6..8].copy_from_slice(&external_port.to_be_bytes());
    b[8..12].copy_from_slice(&lifetime.to_be_bytes());
    b
}

fn header(b: &[u8], opcode: u8, want: usize) -> Result<u32, PmpError> {
    // The version, opcode and result come first in every response: check
    // them before the length, so a short error reply still says why.
    if b.len() < 4 {
        return Err(PmpError::Truncated { got: b.len(), want });
    }
    if b[0] != PMP_VERSION {
        return Err(PmpError::Version(b[0]));
    }
    let expected = opcode | PMP_RESPONSE_BIT;
    if b[1] != expected {
        return Err(PmpError::Opcode {
            got: b[1],
            want: expected,
        });
    }
    let result = PmpResult::from(u16::from_be_bytes([b[2], b[3]]));
    if result != PmpResult::Success {
        return Err(PmpError::Result(result));
    }
    if b.len() < want {
        return Err(PmpError::Truncated { got: b.len(), want });
    }
    Ok(u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
}

/// Parse an external-address response (12 bytes).
pub fn parse_external_address_response(b: &[u8]) -> Result<PmpExternal, PmpError> {
    let epoch = header(b, PMP_OP_EXTERNAL_ADDRESS, 12)?;
    Ok(PmpExternal {
        epoch,
        address: [b[8], b[9], b[10], b[11]],
    })
}

/// Parse a map response (16 bytes) to a request for `proto`.
pub fn parse_map_response(b: &[u8], proto: PmpProto) -> Result<PmpMapping, PmpError> {
    let epoch = header(b, proto.opcode(), 16)?;
    Ok(PmpMapping {
        epoch,
        internal_port: u16::from_be_bytes([b[8], b[9]]),
        external_port: u16::from_be_bytes([b[10], b[11]]),
        lifetime: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
    })
}

/// Whether the gateway lost its state between two observations (RFC 6886
/// §3.6): its epoch must advance at least 7/8 as fast as our clock, less a
/// 2 s allowance for rounding; otherwise it rebooted or reset its table.
pub fn epoch_reset(prev_epoch: u32, prev_seen_s: u64, epoch: u32, now_s: u64) -> bool {
    let elapsed = now_s.saturating_sub(prev_seen_s);
    let expected = u64::from(prev_epoch) + elapsed * 7 / 8;
    u64::from(epoch) + 2 < expected
}

/// Retransmission schedule (RFC 6886 §3.1): 250 ms, doubling each time, up
/// to 9 attempts. Returns the wait after attempt `n` (0-based) in ms, or
/// `None` after the last one.
pub fn retransmit_after_ms(n: u32) -> Option<u64> {
    /// RFC 6886 §3.1: "initial 250 ms ... doubled ... up to 9 times".
    const PMP_ATTEMPTS: u32 = 9;
    (n < PMP_ATTEMPTS).then(|| 250u64 << n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_rfc_layout() {
        assert_eq!(build_external_address_request(), [0, 0]);
        assert_eq!(
            build_map_request(PmpProto::Tcp, 6881, 6881, 7200),
            [0, 2, 0, 0, 0x1a, 0xe1, 0x1a, 0xe1, 0, 0, 0x1c, 0x20]
        );
        assert_eq!(build_map_request(PmpProto::Udp, 4000, 0, 0)[1], 1);
    }

    #[test]
    fn parses_external_address() {
        let b = [0, 128, 0, 0, 0, 0, 0x10, 0, 203, 0, 113, 7];
        assert_eq!(
            parse_external_address_response(&b),
            Ok(PmpExternal {
                epoch: 4096,
                address: [203, 0, 113, 7]
            })
        );
    }

    #[test]
    fn parses_map_and_checks_opcode() {
        let b = [
            0, 130, 0, 0, 0, 0, 0, 9, 0x1a, 0xe1, 0x1a, 0xe2, 0, 0, 0x1c, 0x20,
        ];
        assert_eq!(
            parse_map_response(&b, PmpProto::Tcp),
            Ok(PmpMapping {
                epoch: 9,
                internal_port: 6881,
                external_port: 6882,
                lifetime: 7200
            })
        );
        assert_eq!(
            parse_map_response(&b, PmpProto::Udp),
            Err(PmpError::Opcode {
                got: 130,
                want: 129
            })
        );
    }

    #[test]
    fn errors_are_specific() {
        // miniupnpd with a reserved WAN address answers 3 in a short reply.
        assert_eq!(
            parse_map_response(&[0, 129, 0, 3], PmpProto::Udp),
            Err(PmpError::Result(PmpResult::NetworkFailure))
        );
        assert_eq!(
            parse_external_address_response(&[0, 128, 0, 0, 0]),
            Err(PmpError::Truncated { got: 5, want: 12 })
        );
        assert_eq!(
            parse_external_address_response(&[2, 128, 0, 0]),
            Err(PmpError::Version(2))
        );
        assert_eq!(
            parse_external_address_response(&[]),
            Err(PmpError::Truncated { got: 0, want: 12 })
        );
        assert_eq!(
            parse_external_address_response(&[0, 128, 0, 77]),
            Err(PmpError::Result(PmpResult::Unknown(77)))
        );
    }

    #[test]
    fn epoch_reset_detection() {
        // 100 s later the epoch advanced 100: fine.
        assert!(!epoch_reset(1000, 0, 1100, 100));
        // Slightly slow clock within 7/8 and the 2 s allowance: fine.
        assert!(!epoch_reset(1000, 0, 1086, 100));
        // Gateway restarted: epoch went back.
        assert!(epoch_reset(1000, 0, 5, 100));
    }

    #[test]
    fn retransmission_schedule() {
        let waits: Vec<u64> = (0..10).map_while(retransmit_after_ms).collect();
        assert_eq!(
            waits,
            vec![250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]
        );
    }
}
