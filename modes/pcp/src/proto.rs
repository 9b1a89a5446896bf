//! PCP wire format (RFC 6887), as pure functions over bytes: ANNOUNCE and
//! MAP requests (with the THIRD_PARTY option), and response parsing that
//! checks version, opcode, result code and — for MAP — the nonce.

use core::net::{IpAddr, Ipv6Addr};

/// PCP version (RFC 6887 §7).
pub const PCP_VERSION: u8 = 2;
/// The PCP server port (RFC 6887 §19.1).
pub const PCP_PORT: u16 = 5351;
/// R bit: set in responses (RFC 6887 §7.2).
const PCP_RESPONSE_BIT: u8 = 0x80;
/// Opcode ANNOUNCE (RFC 6887 §14.1).
pub const PCP_OP_ANNOUNCE: u8 = 0;
/// Opcode MAP (RFC 6887 §11).
pub const PCP_OP_MAP: u8 = 1;
/// Option THIRD_PARTY (RFC 6887 §13.1).
pub const PCP_OPTION_THIRD_PARTY: u8 = 1;
/// Common header size (RFC 6887 §7.1, §7.2).
const PCP_HEADER_LEN: usize = 24;
/// MAP opcode data size (RFC 6887 §11.1).
const PCP_MAP_LEN: usize = 36;
/// IANA protocol numbers used in MAP.
pub const PCP_PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PCP_PROTO_UDP: u8 = 17;

/// Result codes (RFC 6887 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcpResult {
    /// 0
    Success,
    /// 1: the server speaks another version (NAT-PMP servers answer so).
    UnsuppVersion,
    /// 2
    NotAuthorized,
    /// 3
    MalformedRequest,
    /// 4
    UnsuppOpcode,
    /// 5
    UnsuppOption,
    /// 6
    MalformedOption,
    /// 7
    NetworkFailure,
    /// 8: e.g. miniupnpd with a reserved WAN address.
    NoResources,
    /// 9
    UnsuppProtocol,
    /// 10
    UserExQuota,
    /// 11
    CannotProvideExternal,
    /// 12: the client address field is not the packet's source.
    AddressMismatch,
    /// 13
    ExcessiveRemotePeers,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for PcpResult {
    fn from(c: u8) -> Self {
        use PcpResult::*;
        match c {
            0 => Success,
            1 => UnsuppVersion,
            2 => NotAuthorized,
            3 => MalformedRequest,
            4 => UnsuppOpcode,
            5 => UnsuppOption,
            6 => MalformedOption,
            7 => NetworkFailure,
            8 => NoResources,
            9 => UnsuppProtocol,
            10 => UserExQuota,
            11 => CannotProvideExternal,
            12 => AddressMismatch,
            13 => ExcessiveRemotePeers,
            other => Unknown(other),
        }
    }
}

/// Why a response was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcpError {
    /// Shorter than required.
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes required.
        want: usize,
    },
    /// Version 0 answer: the server is NAT-PMP only (RFC 6887 §9).
    NatPmpOnly,
    /// Another version.
    Version(u8),
    /// Not a response to the opcode sent.
    Opcode(u8),
    /// A MAP response whose nonce is not ours (RFC 6887 §11.3: discard).
    Nonce,
    /// A failure result code, with the lifetime the server suggests waiting.
    Result(PcpResult, u32),
}

/// A parsed response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpHeader {
    /// Lifetime granted (or, on error, how long the error is valid).
    pub lifetime: u32,
    /// Server epoch time, seconds.
    pub epoch: u32,
}

/// A parsed MAP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpMap {
    /// Header fields.
    pub header: PcpHeader,
    /// Protocol number.
    pub protocol: u8,
    /// Internal port echoed.
    pub internal_port: u16,
    /// Assigned external port.
    pub external_port: u16,
    /// Assigned external address.
    pub external_ip: IpAddr,
}

/// An address as PCP's 16-byte field (IPv4 as IPv4-mapped IPv6).
pub fn pcp_addr(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn from_pcp_addr(b: &[u8]) -> IpAddr {
    let a: [u8; 16] = b.try_into().expect("16 bytes");
    Ipv6Addr::from(a).to_canonical()
}

fn header(opcode: u8, lifetime: u32, client: IpAddr) -> Vec<u8> {
    let mut b = Vec::with_capacity(PCP_HEADER_LEN + PCP_MAP_LEN + 20);
    b.push(PCP_VERSION);
    b.push(opcode);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&lifetime.to_be_bytes());
    b.extend_from_slice(&pcp_addr(client));
    b
}

/// ANNOUNCE request (RFC 6887 §14.1): lifetime 0, no opcode data.
pub fn build_announce(client: IpAddr) -> Vec<u8> {
    header(PCP_OP_ANNOUNCE, 0, client)
}

/// What a MAP request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapParams {
    /// Random nonce, kept for renewals and deletion.
    pub nonce: [u8; 12],
    /// IANA protocol number.
    pub protocol: u8,
    /// Internal port.
    pub internal_port: u16,
    /// Suggested external port (0: any).
    pub external_port: u16,
    /// Suggested external address (unspecified: any).
    pub external_ip: IpAddr,
    /// Requested lifetime; 0 deletes.
    pub lifetime: u32,
    /// The PCP client's own address (the packet's source).
    pub client: IpAddr,
    /// Another LAN host the mapping is for (THIRD_PARTY option).
    pub third_party: Option<IpAddr>,
}

/// MAP request (RFC 6887 §11.1), with THIRD_PARTY (§13.1) when asked.
pub fn build_map(p: &MapParams) -> Vec<u8> {
    let mut b = header(PCP_OP_MAP, p.lifetime, p.client);
    b.extend_from_slice(&p.nonce);
    b.push(p.protocol);
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(&p.internal_port.to_be_bytes());
    b.extend_from_slice(&p.external_port.to_be_bytes());
    b.extend_from_slice(&pcp_addr(p.external_ip));
    if let Some(tp) = p.third_party {
        b.push(PCP_OPTION_THIRD_PARTY);
        b.push(0);
        b.extend_from_slice(&16u16.to_be_bytes());
        b.extend_from_slice(&pcp_addr(tp));
    }
    b
}

/// Parse a response header for `opcode`.
pub fn parse_header(b: &[u8], opcode: u8) -> Result<PcpHeader, PcpError> {
    if b.is_empty() {
        return Err(PcpError::Truncated {
            got: 0,
            want: PCP_HEADER_LEN,
        });
    }
    if b[0] == 0 {
        return Err(PcpError::NatPmpOnly);
    }
    if b[0] != PCP_VERSION {
        return Err(PcpError::Version(b[0]));
    }
    if b.len() < PCP_HEADER_LEN {
        return Err(PcpError::Truncated {
            got: b.len(),
            want: PCP_HEADER_LEN,
        });
    }
    if b[1] != opcode | PCP_RESPONSE_BIT {
        return Err(PcpError::Opcode(b[1]));
    }
    let lifetime = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let epoch = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    let result = PcpResult::from(b[3]);
    if result != PcpResult::Success {
        return Err(PcpError::Result(result, lifetime));
    }
    Ok(PcpHeader { lifetime, epoch })
}

/// Parse a MAP response and check it answers our `nonce`.
pub fn parse_map(b: &[u8], nonce: &[u8; 12]) -> Result<PcpMap, PcpError> {
    let want = PCP_HEADER_LEN + PCP_MAP_LEN;
    // An error response may carry the opcode data too; the nonce is checked
    // first whenever it is there, so a forged error cannot stop us either.
    if b.len() >= want && b[0] == PCP_VERSION && &b[24..36] != nonce {
        return Err(PcpError::Nonce);
    }
    let header = parse_header(b, PCP_OP_MAP)?;
    if b.len() < want {
        return Err(PcpError::Truncated { got: b.len(), want });
    }
    Ok(PcpMap {
        header,
        protocol: b[36],
        internal_port: u16::from_be_bytes([b[40], b[41]]),
        external_port: u16::from_be_bytes([b[42], b[43]]),
        external_ip: from_pcp_addr(&b[44..60]),
    })
}

/// Whether the server lost its state (RFC 6887 §8.5): its epoch went back
/// by more than 1 s, or the two clocks' deltas since the last answer
/// disagree by more than 2 s plus 1/16 (either way round).
pub fn epoch_reset(prev_epoch: u32, prev_seen_s: u64, epoch: u32, now_s: u64) -> bool {
    let (prev, curr) = (i64::from(prev_epoch), i64::from(epoch));
    if curr + 1 < prev {
        return true;
    }
    let client = i64::try_from(now_s.saturating_sub(prev_seen_s)).unwrap_or(i64::MAX / 2);
    let server = curr - prev;
    client + 2 < server - server / 16 || server + 2 < client - client / 16
}

/// Retransmission (RFC 6887 §8.1.1): IRT 3 s, doubling, capped at MRT
/// 1024 s. Returns the wait after attempt `n`, in ms.
pub fn retransmit_after_ms(n: u32) -> Option<u64> {
    /// Initial retransmission time, RFC 6887 §8.1.1.
    const PCP_IRT_MS: u64 = 3_000;
    /// Maximum retransmission time, RFC 6887 §8.1.1.
    const PCP_MRT_MS: u64 = 1_024_000;
    Some(PCP_IRT_MS.saturating_mul(1 << n.min(20)).min(PCP_MRT_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> MapParams {
        MapParams {
            nonce: [7; 12],
            protocol: PCP_PROTO_TCP,
            internal_port: 4000,
            external_port: 4000,
            external_ip: "0.0.0.0".parse().unwrap(),
            lifetime: 600,
            client: "10.0.0.2".parse().unwrap(),
            third_party: None,
        }
    }

    fn response(opcode: u8, result: u8, nonce: [u8; 12], ext_port: u16) -> Vec<u8> {
        let mut b = vec![2, opcode | 0x80, 0, result, 0, 0, 2, 88, 0, 0, 0, 42];
        b.extend_from_slice(&[0; 12]);
        if opcode == PCP_OP_MAP {
            b.extend_from_slice(&nonce);
            b.extend_from_slice(&[6, 0, 0, 0, 0x0f, 0xa0]);
            b.extend_from_slice(&ext_port.to_be_bytes());
            b.extend_from_slice(&pcp_addr("198.51.100.2".parse().unwrap()));
        }
        b
    }

    #[test]
    fn map_request_layout() {
        let b = build_map(&params());
        assert_eq!(b.len(), 60);
        assert_eq!(&b[..4], &[2, 1, 0, 0]);
        assert_eq!(&b[4..8], &600u32.to_be_bytes());
        assert_eq!(&b[8..24], &pcp_addr("10.0.0.2".parse().unwrap()));
        assert_eq!(&b[8..20], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&b[24..36], &[7; 12]);
        assert_eq!(b[36], 6);
        let tp = build_map(&MapParams {
            third_party: Some("10.0.0.9".parse().unwrap()),
            ..params()
        });
        assert_eq!(tp.len(), 80);
        assert_eq!(&tp[60..64], &[1, 0, 0, 16]);
        assert_eq!(build_announce("10.0.0.2".parse().unwrap()).len(), 24);
    }

    #[test]
    fn parses_map_response_and_checks_the_nonce() {
        let ok = response(PCP_OP_MAP, 0, [7; 12], 4001);
        let m = parse_map(&ok, &[7; 12]).unwrap();
        assert_eq!(
            (
                m.external_port,
                m.internal_port,
                m.header.lifetime,
                m.header.epoch
            ),
            (4001, 4000, 600, 42)
        );
        assert_eq!(m.external_ip, "198.51.100.2".parse::<IpAddr>().unwrap());
        assert_eq!(parse_map(&ok, &[8; 12]), Err(PcpError::Nonce));
        // A forged error with the wrong nonce is a nonce error, not a failure.
        assert_eq!(
            parse_map(&response(PCP_OP_MAP, 2, [9; 12], 0), &[7; 12]),
            Err(PcpError::Nonce)
        );
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(
            parse_header(&[0, 128, 0, 1], PCP_OP_MAP),
            Err(PcpError::NatPmpOnly)
        );
        assert_eq!(parse_header(&[3], PCP_OP_MAP), Err(PcpError::Version(3)));
        assert_eq!(
            parse_header(&[2, 0x81, 0], PCP_OP_MAP),
            Err(PcpError::Truncated { got: 3, want: 24 })
        );
        assert_eq!(
            parse_header(&response(PCP_OP_ANNOUNCE, 0, [0; 12], 0), PCP_OP_MAP),
            Err(PcpError::Opcode(0x80))
        );
        assert_eq!(
            parse_map(&response(PCP_OP_MAP, 8, [7; 12], 0), &[7; 12]),
            Err(PcpError::Result(PcpResult::NoResources, 600))
        );
        let short = &response(PCP_OP_MAP, 0, [7; 12], 1)[..40];
        assert_eq!(
            parse_map(short, &[7; 12]),
            Err(PcpError::Truncated { got: 40, want: 60 })
        );
        assert_eq!(
            parse_header(&[], 0),
            Err(PcpError::Truncated { got: 0, want: 24 })
        );
    }

    #[test]
    fn schedule_and_epoch() {
        assert_eq!(retransmit_after_ms(0), Some(3000));
        assert_eq!(retransmit_after_ms(1), Some(6000));
        assert_eq!(retransmit_after_ms(30), Some(1_024_000));
        assert!(epoch_reset(1000, 0, 3, 10));
        assert!(!epoch_reset(1000, 0, 1010, 10));
        // Reordering: back by one second is tolerated, by two is not.
        assert!(!epoch_reset(1000, 0, 999, 0));
        assert!(epoch_reset(1000, 0, 998, 0));
        // A restart just after the last answer: epoch 0 -> 1 in 4 s.
        assert!(epoch_reset(0, 0, 1, 4));
        // The server's clock running ahead of ours is a reset too.
        assert!(epoch_reset(1000, 0, 1100, 10));
        // Within 1/16 and 2 s: fine.
        assert!(!epoch_reset(1000, 0, 1098, 100));
        // The largest epochs and elapsed times do not overflow.
        assert!(epoch_reset(u32::MAX, 0, 0, u64::MAX));
    }
}
