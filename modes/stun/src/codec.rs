//! STUN Binding requests and responses (RFC 8489) with the RFC 5780
//! attributes NAT behaviour discovery needs. Pure: bytes in, bytes out.
//!
//! Framing, XOR-MAPPED-ADDRESS and ERROR-CODE come from `stun-types`;
//! CHANGE-REQUEST (0x0003), RESPONSE-ORIGIN (0x802B) and OTHER-ADDRESS
//! (0x802C) are defined here on its address helper.

use core::net::SocketAddr;

use stun_types::attribute::{
    AttributeType, ErrorCode, MappedSocketAddr, RawAttribute, XorMappedAddress,
};
use stun_types::message::{
    BINDING, Message, MessageClass, MessageType, MessageWrite, MessageWriteExt, MessageWriteVec,
    TransactionId,
};

/// MAPPED-ADDRESS (RFC 8489 §14.1): what RFC 3489 servers send instead of
/// the XOR form.
const MAPPED_ADDRESS: u16 = 0x0001;
/// CHANGE-REQUEST (RFC 5780 §7.2).
const CHANGE_REQUEST: u16 = 0x0003;
/// RESPONSE-ORIGIN (RFC 5780 §7.3).
const RESPONSE_ORIGIN: u16 = 0x802B;
/// OTHER-ADDRESS (RFC 5780 §7.4).
const OTHER_ADDRESS: u16 = 0x802C;

/// What a request asks the server to change in the response's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// Answer from the other IP address.
    pub ip: bool,
    /// Answer from the other port.
    pub port: bool,
}

impl Change {
    /// No change: answer from where the request went.
    pub const NONE: Change = Change {
        ip: false,
        port: false,
    };
    /// Both: answer from OTHER-ADDRESS.
    pub const BOTH: Change = Change {
        ip: true,
        port: true,
    };
    /// The port only.
    pub const PORT: Change = Change {
        ip: false,
        port: true,
    };

    fn flags(self) -> [u8; 4] {
        [
            0,
            0,
            0,
            (u8::from(self.ip) << 2) | (u8::from(self.port) << 1),
        ]
    }
}

/// A Binding request with transaction id `tid`, asking for `change`.
pub fn request(tid: [u8; 12], change: Change) -> Vec<u8> {
    let mtype = MessageType::from_class_method(MessageClass::Request, BINDING);
    let id = TransactionId::from(u128::from_be_bytes(widen(tid)));
    let mut msg = Message::builder(mtype, id, MessageWriteVec::new());
    if change != Change::NONE {
        let flags = change.flags();
        let attr = RawAttribute::new(AttributeType::new(CHANGE_REQUEST), &flags);
        msg.add_attribute(&attr)
            .expect("one attribute fits a fresh message");
    }
    msg.finish()
}

fn widen(tid: [u8; 12]) -> [u8; 16] {
    let mut out = [0; 16];
    out[4..].copy_from_slice(&tid);
    out
}

/// A Binding success response, as far as discovery uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Where the server saw the request come from (the reflexive address).
    pub mapped: SocketAddr,
    /// Where the server sent the response from, if it said.
    pub origin: Option<SocketAddr>,
    /// The server's other address for CHANGE-REQUEST, if it has one
    /// (RFC 5780 support).
    pub other: Option<SocketAddr>,
}

/// Why a datagram is not the awaited response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a STUN message at all, or a malformed one.
    Malformed(String),
    /// A STUN message, but not a response to this request (another
    /// transaction, method or class): ignored, as a late or stray reply.
    NotOurs,
    /// The server answered with an error response.
    Error {
        /// ERROR-CODE's number (300–699), 0 when the attribute is missing.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A success response without a usable mapped address.
    NoAddress,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refused::Malformed(why) => write!(f, "malformed STUN message: {why}"),
            Refused::NotOurs => f.write_str("not a response to our request"),
            Refused::Error { code, reason } => write!(f, "STUN error {code}: {reason}"),
            Refused::NoAddress => f.write_str("success response without a mapped address"),
        }
    }
}

/// Parse `data` as the response to the request with transaction id `tid`.
pub fn response(data: &[u8], tid: [u8; 12]) -> Result<Binding, Refused> {
    let msg = Message::from_bytes(data).map_err(|e| Refused::Malformed(format!("{e}")))?;
    let id = TransactionId::from(u128::from_be_bytes(widen(tid)));
    if msg.transaction_id() != id || !msg.has_method(BINDING) {
        return Err(Refused::NotOurs);
    }
    match msg.class() {
        MessageClass::Success => {}
        MessageClass::Error => {
            let (code, reason) = match msg.attribute::<ErrorCode>() {
                Ok(e) => (e.code(), e.reason().to_string()),
                Err(_) => (0, "no ERROR-CODE".to_string()),
            };
            return Err(Refused::Error { code, reason });
        }
        _ => return Err(Refused::NotOurs),
    }
    let address = |atype: u16| {
        msg.raw_attribute(AttributeType::new(atype))
            .and_then(|raw| MappedSocketAddr::from_raw(&raw).ok())
            .map(|a| a.addr())
    };
    let mapped = match msg.attribute::<XorMappedAddress>() {
        Ok(x) => Some(x.addr(id)),
        Err(_) => address(MAPPED_ADDRESS),
    }
    .ok_or(Refused::NoAddress)?;
    Ok(Binding {
        mapped,
        origin: address(RESPONSE_ORIGIN),
        other: address(OTHER_ADDRESS),
    })
}

/// The transaction id a request carries (bytes 8..20), if it is one.
pub fn request_tid(data: &[u8]) -> Option<[u8; 12]> {
    let msg = Message::from_bytes(data).ok()?;
    if msg.class() != MessageClass::Request {
        return None;
    }
    let id = u128::from(msg.transaction_id()).to_be_bytes();
    id[4..].try_into().ok()
}

/// A Binding success response to the request `req` (for tests and fakes:
/// the MOD never answers requests, but the hairpinning test sends one to
/// itself and reads it back as a request).
pub fn success(
    req: &[u8],
    mapped: SocketAddr,
    origin: Option<SocketAddr>,
    other: Option<SocketAddr>,
) -> Vec<u8> {
    let msg = Message::from_bytes(req).expect("a request we built");
    let id = msg.transaction_id();
    let mut out = Message::builder_success(&msg, MessageWriteVec::new());
    out.add_attribute(&XorMappedAddress::new(mapped, id))
        .expect("fits");
    for (atype, addr) in [(RESPONSE_ORIGIN, origin), (OTHER_ADDRESS, other)] {
        if let Some(a) = addr {
            let m = MappedSocketAddr::new(a);
            out.add_attribute(&m.to_raw(AttributeType::new(atype)))
                .expect("fits");
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_request_is_a_binding_request_with_our_id_and_change_flags() {
        let plain = request(TID, Change::NONE);
        assert_eq!(plain.len(), 20, "header only");
        assert_eq!(&plain[..2], &[0, 1], "Binding request");
        assert_eq!(&plain[4..8], &[0x21, 0x12, 0xa4, 0x42], "magic cookie");
        assert_eq!(&plain[8..], &TID);
        assert_eq!(request_tid(&plain), Some(TID));

        let both = request(TID, Change::BOTH);
        assert_eq!(&both[20..], &[0, 3, 0, 4, 0, 0, 0, 6]);
        let port = request(TID, Change::PORT);
        assert_eq!(&port[20..], &[0, 3, 0, 4, 0, 0, 0, 2]);
    }

    #[test]
    fn a_success_response_gives_mapped_origin_and_other() {
        let req = request(TID, Change::NONE);
        let (m, o, x) = (
            sa("198.51.100.2:40000"),
            sa("198.51.100.1:3478"),
            sa("198.51.100.3:3479"),
        );
        let b = response(&success(&req, m, Some(o), Some(x)), TID).unwrap();
        assert_eq!(
            b,
            Binding {
                mapped: m,
                origin: Some(o),
                other: Some(x)
            }
        );
        let v6 = sa("[2001:db8::2]:40000");
        let b = response(&success(&req, v6, None, None), TID).unwrap();
        assert_eq!((b.mapped, b.origin, b.other), (v6, None, None));
    }

    #[test]
    fn another_transaction_is_not_ours_and_garbage_is_malformed() {
        let req = request(TID, Change::NONE);
        let resp = success(&req, sa("198.51.100.2:1"), None, None);
        let mut other = TID;
        other[0] ^= 1;
        assert_eq!(response(&resp, other), Err(Refused::NotOurs));
        // Our own request read back (hairpinning) is no response.
        assert_eq!(response(&req, TID), Err(Refused::NotOurs));
        assert!(matches!(
            response(b"hello", TID),
            Err(Refused::Malformed(_))
        ));
        assert!(matches!(
            response(&resp[..resp.len() - 1], TID),
            Err(Refused::Malformed(_))
        ));
    }

    #[test]
    fn an_error_response_carries_its_code() {
        let req = request(TID, Change::BOTH);
        let msg = Message::from_bytes(&req).unwrap();
        let mut out = Message::builder_error(&msg, MessageWriteVec::new());
        let e = ErrorCode::builder(420)
            .reason("Unknown Attribute")
            .build()
            .unwrap();
        out.add_attribute(&e).unwrap();
        let got = response(&out.finish(), TID);
        assert_eq!(
            got,
            Err(Refused::Error {
                code: 420,
                reason: "Unknown Attribute".into()
            })
        );
    }

    #[test]
    fn a_success_without_an_address_is_refused() {
        let req = request(TID, Change::NONE);
        let msg = Message::from_bytes(&req).unwrap();
        let out = Message::builder_success(&msg, MessageWriteVec::new()).finish();
        assert_eq!(response(&out, TID), Err(Refused::NoAddress));
    }
}
