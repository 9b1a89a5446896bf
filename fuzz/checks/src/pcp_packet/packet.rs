//! The PCP response model and its bytes: header (RFC 6887 §7.2), MAP
//! and PEER opcode data (§11.1, §12.1), options (§7.3).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use p2pbroker_mode_pcp::proto::{PCP_OP_ANNOUNCE, PCP_OP_MAP, PCP_VERSION, PcpHeader, PcpMap};

use super::OURS;

/// Options past this many are not built: more only repeat the same codes.
const OPTIONS_MAX: usize = 12;

#[derive(Arbitrary, Debug)]
enum Version {
    Pcp,
    /// 0: a NAT-PMP server's answer.
    NatPmp,
    Other(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Opcode {
    Map,
    Peer,
    Announce,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum Nonce {
    Ours,
    /// Ours with one byte changed: the check must compare all twelve.
    OneOff(u8, u8),
    Other([u8; 12]),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    /// The 16-byte field (IPv4 as IPv4-mapped IPv6, RFC 6887 §5).
    fn field(self) -> [u8; 16] {
        match self {
            Addr::V4(a) => Ipv4Addr::from(a).to_ipv6_mapped().octets(),
            Addr::V6(a) => a,
        }
    }

    /// The address a parser must report: IPv4 for a mapped field.
    fn ip(self) -> IpAddr {
        match self {
            Addr::V4(a) => IpAddr::V4(a.into()),
            Addr::V6(a) => match Ipv6Addr::from(a).to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a.into()),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum OptionBody {
    ThirdParty(Addr),
    PreferFailure,
    Filter { prefix: u8, port: u16, peer: Addr },
    Unknown { code: u8, data: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum OptionLength {
    Honest,
    Lying(u16),
}

#[derive(Arbitrary, Debug)]
enum Padding {
    /// To a multiple of 4 (RFC 6887 §7.3).
    Honest,
    None,
    Extra(u8),
}

#[derive(Arbitrary, Debug)]
struct PcpOption {
    body: OptionBody,
    reserved: u8,
    length: OptionLength,
    padding: Padding,
}

impl PcpOption {
    fn write(&self, b: &mut Vec<u8>) {
        let (code, data): (u8, Vec<u8>) = match &self.body {
            OptionBody::ThirdParty(a) => (1, a.field().to_vec()),
            OptionBody::PreferFailure => (2, Vec::new()),
            OptionBody::Filter { prefix, port, peer } => {
                let mut d = vec![0, *prefix];
                d.extend_from_slice(&port.to_be_bytes());
                d.extend_from_slice(&peer.field());
                (3, d)
            }
            OptionBody::Unknown { code, data } => (*code, data.iter().take(64).copied().collect()),
        };
        let len = match self.length {
            OptionLength::Honest => data.len() as u16,
            OptionLength::Lying(n) => n,
        };
        b.extend_from_slice(&[code, self.reserved]);
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&data);
        let pad = match self.padding {
            Padding::Honest => (4 - data.len() % 4) % 4,
            Padding::None => 0,
            Padding::Extra(n) => usize::from(n % 8),
        };
        b.resize(b.len() + pad, 0);
    }
}

/// A PCP response as built.
#[derive(Arbitrary, Debug)]
pub struct Packet {
    version: Version,
    opcode: Opcode,
    /// A request's opcode (R bit clear) where a response belongs.
    request: bool,
    reserved: u8,
    /// SUCCESS when `None` (one time in two), else this code.
    result: Option<u8>,
    lifetime: u32,
    epoch: u32,
    reserved_header: [u8; 12],
    nonce: Nonce,
    protocol: u8,
    reserved_map: [u8; 3],
    internal_port: u16,
    external_port: u16,
    external_ip: Addr,
    /// PEER's remote peer port and address (RFC 6887 §12.1).
    peer: (u16, Addr),
    options: Vec<PcpOption>,
    cut: Option<u16>,
}

impl Packet {
    /// The version byte.
    pub fn version(&self) -> u8 {
        match self.version {
            Version::Pcp => PCP_VERSION,
            Version::NatPmp => 0,
            Version::Other(v) => v,
        }
    }

    /// The opcode byte, R bit included.
    pub fn opcode(&self) -> u8 {
        let op = match self.opcode {
            Opcode::Map => PCP_OP_MAP,
            Opcode::Peer => 2,
            Opcode::Announce => PCP_OP_ANNOUNCE,
            Opcode::Other(o) => o & 0x7f,
        };
        if self.request { op } else { op | 0x80 }
    }

    /// The result code.
    pub fn result(&self) -> u8 {
        self.result.unwrap_or(0)
    }

    fn nonce(&self) -> [u8; 12] {
        match self.nonce {
            Nonce::Ours => OURS,
            Nonce::OneOff(i, x) => {
                let mut n = OURS;
                n[usize::from(i) % 12] ^= x.max(1);
                n
            }
            Nonce::Other(n) => n,
        }
    }

    /// The opcode data: none for ANNOUNCE (RFC 6887 §14.1), MAP's for the
    /// rest, PEER's remote peer after it.
    pub fn has_map_data(&self) -> bool {
        self.opcode != Opcode::Announce
    }

    /// The bytes, uncut.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![self.version(), self.opcode(), self.reserved, self.result()];
        b.extend_from_slice(&self.lifetime.to_be_bytes());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.reserved_header);
        if self.has_map_data() {
            b.extend_from_slice(&self.nonce());
            b.push(self.protocol);
            b.extend_from_slice(&self.reserved_map);
            b.extend_from_slice(&self.internal_port.to_be_bytes());
            b.extend_from_slice(&self.external_port.to_be_bytes());
            b.extend_from_slice(&self.external_ip.field());
        }
        if self.opcode == Opcode::Peer {
            b.extend_from_slice(&self.peer.0.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&self.peer.1.field());
        }
        for o in self.options.iter().take(OPTIONS_MAX) {
            o.write(&mut b);
        }
        b
    }

    /// The header fields a success must report.
    pub fn header(&self) -> PcpHeader {
        PcpHeader {
            lifetime: self.lifetime,
            epoch: self.epoch,
        }
    }

    /// The MAP answer a success must report, after `header`.
    pub fn map(&self, header: PcpHeader) -> PcpMap {
        PcpMap {
            header,
            protocol: self.protocol,
            internal_port: self.internal_port,
            external_port: self.external_port,
            external_ip: self.external_ip.ip(),
        }
    }

    /// Where to cut the bytes, if anywhere.
    pub fn cut(&self) -> Option<u16> {
        self.cut
    }
}

#[cfg(test)]
mod tests {
    use p2pbroker_mode_pcp::proto::parse_map;

    use super::*;

    #[test]
    fn a_success_with_our_nonce_and_options_parses() {
        let p = Packet {
            version: Version::Pcp,
            opcode: Opcode::Map,
            request: false,
            reserved: 0,
            result: None,
            lifetime: 7200,
            epoch: 99,
            reserved_header: [0; 12],
            nonce: Nonce::Ours,
            protocol: 17,
            reserved_map: [0; 3],
            internal_port: 4000,
            external_port: 40000,
            external_ip: Addr::V4([198, 51, 100, 2]),
            peer: (0, Addr::V4([0; 4])),
            options: vec![PcpOption {
                body: OptionBody::ThirdParty(Addr::V4([10, 0, 0, 9])),
                reserved: 0,
                length: OptionLength::Lying(999),
                padding: Padding::None,
            }],
            cut: None,
        };
        let b = p.build();
        let m = parse_map(&b, &OURS).unwrap();
        assert_eq!(m.external_ip, "198.51.100.2".parse::<IpAddr>().unwrap());
        super::super::check(&p, &b);
    }
}
