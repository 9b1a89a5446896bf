//! The state blobs of the PCP MOD: fixed binary layout, versioned, parsed
//! without panics.

use core::net::{IpAddr, Ipv6Addr};

use crate::proto::pcp_addr;

const STATE_VERSION: u8 = 1;
const STATE_LEN: usize = 1 + 16 + 16 + 12 + 4 + 8 + 1 + 2 + 2 + 16 + 1;

/// What the MOD remembers between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpState {
    /// The PCP server.
    pub server: IpAddr,
    /// Our address as the server sees it (the client address field).
    pub client: IpAddr,
    /// The mapping's nonce (zero in a probe state).
    pub nonce: [u8; 12],
    /// Server epoch when last heard.
    pub epoch: u32,
    /// Our wall clock (Unix seconds) when last heard.
    pub seen: u64,
    /// IANA protocol number (0 in a probe state).
    pub protocol: u8,
    /// Internal port.
    pub internal_port: u16,
    /// External port.
    pub external_port: u16,
    /// Internal host when mapping for another LAN host (THIRD_PARTY).
    pub third_party: Option<IpAddr>,
}

fn ip(b: &[u8]) -> IpAddr {
    Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")).to_canonical()
}

impl PcpState {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(STATE_LEN);
        v.push(STATE_VERSION);
        v.extend_from_slice(&pcp_addr(self.server));
        v.extend_from_slice(&pcp_addr(self.client));
        v.extend_from_slice(&self.nonce);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.seen.to_be_bytes());
        v.push(self.protocol);
        v.extend_from_slice(&self.internal_port.to_be_bytes());
        v.extend_from_slice(&self.external_port.to_be_bytes());
        v.extend_from_slice(&pcp_addr(
            self.third_party.unwrap_or(IpAddr::from([0u8; 4])),
        ));
        v.push(self.third_party.is_some() as u8);
        v
    }

    /// Decode; `None` unless a complete blob of this version.
    pub fn decode(b: &[u8]) -> Option<PcpState> {
        if b.len() != STATE_LEN || b[0] != STATE_VERSION || b[STATE_LEN - 1] > 1 {
            return None;
        }
        Some(PcpState {
            server: ip(&b[1..17]),
            client: ip(&b[17..33]),
            nonce: b[33..45].try_into().ok()?,
            epoch: u32::from_be_bytes(b[45..49].try_into().ok()?),
            seen: u64::from_be_bytes(b[49..57].try_into().ok()?),
            protocol: b[57],
            internal_port: u16::from_be_bytes([b[58], b[59]]),
            external_port: u16::from_be_bytes([b[60], b[61]]),
            third_party: (b[STATE_LEN - 1] == 1).then(|| ip(&b[62..78])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let s = PcpState {
            server: "10.0.0.1".parse().unwrap(),
            client: "10.0.0.2".parse().unwrap(),
            nonce: [3; 12],
            epoch: 9,
            seen: 1_800_000_000,
            protocol: 17,
            internal_port: 4000,
            external_port: 4001,
            third_party: Some("10.0.0.7".parse().unwrap()),
        };
        assert_eq!(PcpState::decode(&s.encode()), Some(s));
        let none = PcpState {
            third_party: None,
            ..s
        };
        assert_eq!(PcpState::decode(&none.encode()), Some(none));
        assert_eq!(PcpState::decode(&s.encode()[1..]), None);
        let mut bad = s.encode();
        bad[STATE_LEN - 1] = 5;
        assert_eq!(PcpState::decode(&bad), None);
    }
}
