//! The TURN control messages this MOD sends and the answers it reads
//! (RFC 8656 over RFC 8489 STUN). Pure: bytes in, bytes out, no clock, no
//! randomness (the transaction id is a parameter).
//!
//! Framing and attributes come from `stun-types` (header, USERNAME, REALM,
//! NONCE, ERROR-CODE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with the
//! long-term key, FINGERPRINT) and `turn-types` (the TURN methods,
//! XOR-RELAYED-ADDRESS, XOR-PEER-ADDRESS, LIFETIME, REQUESTED-TRANSPORT,
//! CHANNEL-NUMBER). `turn-client-proto` is not used: its client is an
//! in-memory state machine holding `Instant`s and pending transactions,
//! which cannot outlive the fresh instance each call runs in; what must
//! survive between calls travels in the mapping's state instead
//! ([`crate::state`]).

use core::net::SocketAddr;

use stun_types::attribute::{
    ErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, IntegrityKey, LongTermKeyCredentials, Message, MessageClass,
    MessageHeader, MessageType, MessageWrite, MessageWriteExt, MessageWriteVec, Method,
    StunWriteError, TransactionId,
};
use stun_types::prelude::AttributeStaticType;
use turn_types::attribute::{
    ChannelNumber, Lifetime, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};

/// A STUN transaction id: 96 random bits (RFC 8489 §5).
pub type Tid = [u8; 12];

/// ERROR-CODE values this MOD tells apart (RFC 8489 §14.8, RFC 8656 §19).
pub mod code {
    /// The request carried no or wrong credentials; REALM and NONCE follow.
    pub const UNAUTHORIZED: u16 = 401;
    /// Refused by the server's policy (e.g. a peer it does not relay to).
    pub const FORBIDDEN: u16 = 403;
    /// No allocation for this 5-tuple (or one already exists, on Allocate).
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// The NONCE expired; a fresh one follows.
    pub const STALE_NONCE: u16 = 438;
    /// The user has as many allocations as the server allows.
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// The server cannot take another allocation.
    pub const INSUFFICIENT_CAPACITY: u16 = 508;
}

/// Peers one CreatePermission carries (one XOR-PEER-ADDRESS each).
pub const PERMISSION_PEERS_MAX: usize = 8;

/// One to [`PERMISSION_PEERS_MAX`] peer addresses, by value (so a
/// [`Request`] stays `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSet {
    addrs: [SocketAddr; PERMISSION_PEERS_MAX],
    len: u8,
}

impl PeerSet {
    /// `peers`, if there are 1 to [`PERMISSION_PEERS_MAX`] of them.
    pub fn new(peers: &[SocketAddr]) -> Option<PeerSet> {
        let first = *peers.first()?;
        if peers.len() > PERMISSION_PEERS_MAX {
            return None;
        }
        let mut addrs = [first; PERMISSION_PEERS_MAX];
        addrs[..peers.len()].copy_from_slice(peers);
        Some(PeerSet {
            addrs,
            len: peers.len() as u8,
        })
    }

    /// The addresses.
    pub fn as_slice(&self) -> &[SocketAddr] {
        &self.addrs[..usize::from(self.len)]
    }
}

/// A request this MOD sends.
// CreatePermission's peers travel by value so that a request stays `Copy`,
// as the exchange code takes it; a request lives for one transaction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// STUN Binding: what address the server sees (probe).
    Binding,
    /// Allocate a UDP relay for `lifetime` seconds (RFC 8656 §7.1).
    Allocate {
        /// Requested LIFETIME.
        lifetime: u32,
    },
    /// Refresh the allocation for `lifetime` seconds; 0 deletes it (§8.1).
    Refresh {
        /// Requested LIFETIME.
        lifetime: u32,
    },
    /// Bind `channel` to `peer`, which also installs or refreshes the
    /// peer's permission (§12.1).
    ChannelBind {
        /// The peer.
        peer: SocketAddr,
        /// 0x4000–0x4FFF.
        channel: u16,
    },
    /// Install or refresh the permissions of `peers` (per IP address; the
    /// ports are ignored) without touching their channels (§9.1).
    CreatePermission {
        /// The peers.
        peers: PeerSet,
    },
}

impl Request {
    /// The STUN method.
    pub fn method(&self) -> Method {
        match self {
            Request::Binding => BINDING,
            Request::Allocate { .. } => ALLOCATE,
            Request::Refresh { .. } => REFRESH,
            Request::ChannelBind { .. } => CHANNEL_BIND,
            Request::CreatePermission { .. } => CREATE_PERMISSION,
        }
    }

    /// The method's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Binding => "Binding",
            Request::Allocate { .. } => "Allocate",
            Request::Refresh { .. } => "Refresh",
            Request::ChannelBind { .. } => "ChannelBind",
            Request::CreatePermission { .. } => "CreatePermission",
        }
    }
}

/// Long-term credentials with the server's current challenge: what signs a
/// request (RFC 8489 §9.2). Lives for one call only; the password is
/// never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// USERNAME.
    pub username: String,
    /// The password (a REST credential is the base64 HMAC).
    pub password: String,
    /// REALM, as the server gave it.
    pub realm: String,
    /// NONCE, as the server gave it last.
    pub nonce: String,
}

impl core::fmt::Debug for Auth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the password.
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The MESSAGE-INTEGRITY key: MD5(username ":" realm ":" password)
    /// (RFC 8489 §9.2.2). The password is used as given (no SASLprep).
    pub fn key(&self) -> IntegrityKey {
        LongTermKeyCredentials::new(
            self.username.clone(),
            self.password.clone(),
            self.realm.clone(),
        )
        .make_key(IntegrityAlgorithm::Sha1)
    }
}

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

fn stun_tid(tid: Tid) -> TransactionId {
    let mut wide = [0u8; 16];
    wide[4..].copy_from_slice(&tid);
    TransactionId::from(u128::from_be_bytes(wide))
}

fn tid_bytes(id: TransactionId) -> Tid {
    let wide = u128::from(id).to_be_bytes();
    let mut out = [0u8; 12];
    out.copy_from_slice(&wide[4..]);
    out
}

/// `req` with transaction id `tid`, signed with `auth` when given
/// (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY), always with FINGERPRINT.
pub fn build_request(req: &Request, tid: Tid, auth: Option<&Auth>) -> Result<Vec<u8>, BuildError> {
    let id = stun_tid(tid);
    let mtype = MessageType::from_class_method(MessageClass::Request, req.method());
    let mut msg = Message::builder(mtype, id, MessageWriteVec::new());
    // A fresh message has room for all of these; only oversized USERNAME,
    // REALM or NONCE values can fail, and they are refused here.
    let fail = |e: StunWriteError| BuildError(format!("{} request: {e}", req.name()));
    match *req {
        Request::Binding => {}
        Request::Allocate { lifetime } => {
            msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
                .map_err(fail)?;
            msg.add_attribute(&Lifetime::new(lifetime)).map_err(fail)?;
        }
        Request::Refresh { lifetime } => {
            msg.add_attribute(&Lifetime::new(lifetime)).map_err(fail)?;
        }
        Request::ChannelBind { peer, channel } => {
            msg.add_attribute(&ChannelNumber::new(channel))
                .map_err(fail)?;
            msg.add_attribute(&XorPeerAddress::new(peer, id))
                .map_err(fail)?;
        }
        Request::CreatePermission { peers } => {
            for peer in peers.as_slice() {
                msg.add_attribute(&XorPeerAddress::new(*peer, id))
                    .map_err(fail)?;
            }
        }
    }
    if let Some(a) = auth {
        msg.add_attribute(&Username::new(&a.username).map_err(fail)?)
            .map_err(fail)?;
        msg.add_attribute(&Realm::new(&a.realm).map_err(fail)?)
            .map_err(fail)?;
        msg.add_attribute(&Nonce::new(&a.nonce).map_err(fail)?)
            .map_err(fail)?;
        msg.add_message_integrity_with_key(&a.key(), IntegrityAlgorithm::Sha1)
            .map_err(fail)?;
    }
    msg.add_fingerprint().map_err(fail)?;
    Ok(msg.finish())
}

/// The transaction id of a STUN message, without parsing the rest.
pub fn transaction_id(data: &[u8]) -> Option<Tid> {
    MessageHeader::from_bytes(data)
        .ok()
        .map(|h| tid_bytes(h.transaction_id()))
}

/// What a success response said (each attribute only if present).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Success {
    /// XOR-RELAYED-ADDRESS: the allocation's address (Allocate).
    pub relayed: Option<SocketAddr>,
    /// XOR-MAPPED-ADDRESS: where the server sees us (Allocate, Binding).
    pub mapped: Option<SocketAddr>,
    /// LIFETIME granted, seconds (Allocate, Refresh).
    pub lifetime: Option<u32>,
}

/// The server's challenge: what to sign the next request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// REALM.
    pub realm: String,
    /// NONCE.
    pub nonce: String,
}

/// A response to our request, typed by what the MOD does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Success(Success),
    /// 401: sign the request (with the challenge, when both REALM and
    /// NONCE came) or, if it was signed, the credentials are wrong.
    Unauthorized(Option<Challenge>),
    /// 438: sign again with the new NONCE (and REALM, if it changed).
    StaleNonce {
        /// The new NONCE, if the server sent one.
        nonce: Option<String>,
        /// A REALM, if the server sent one.
        realm: Option<String>,
    },
    /// 437: no such allocation (Refresh, ChannelBind), or one already
    /// exists (Allocate).
    AllocationMismatch,
    /// 486: the user's allocation quota is reached.
    QuotaReached,
    /// 508: the server is out of capacity.
    InsufficientCapacity,
    /// 403 with its reason phrase.
    Forbidden(String),
    /// Any other error, with its reason phrase (0: no ERROR-CODE).
    Error {
        /// ERROR-CODE number.
        code: u16,
        /// Reason phrase, unescaped as the server sent it.
        reason: String,
    },
}

/// Why a datagram is not the awaited response: the caller keeps waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// Not a STUN message, or a malformed one (bad length, FINGERPRINT).
    Malformed(String),
    /// Another transaction, method or class (a late answer, an indication).
    NotOurs,
    /// MESSAGE-INTEGRITY present but not made with our key: forged or
    /// corrupted, discarded as RFC 8489 §9.2.5 says for UDP.
    BadIntegrity,
}

/// Parse `data` as the response to the `method` request with id `tid`.
/// When the request was signed, pass its `key`: a response carrying
/// MESSAGE-INTEGRITY must then verify with it. (A response without one
/// is taken: many servers sign successes only, and error answers such as
/// 401 and 438 never.)
pub fn parse_response(
    data: &[u8],
    tid: Tid,
    method: Method,
    key: Option<&IntegrityKey>,
) -> Result<Outcome, Ignored> {
    let msg = Message::from_bytes(data).map_err(|e| Ignored::Malformed(format!("{e}")))?;
    let id = stun_tid(tid);
    if msg.transaction_id() != id || !msg.has_method(method) {
        return Err(Ignored::NotOurs);
    }
    let class = msg.class();
    if !matches!(class, MessageClass::Success | MessageClass::Error) {
        return Err(Ignored::NotOurs);
    }
    if let Some(key) = key
        && msg.has_attribute(MessageIntegrity::TYPE)
        && msg.validate_integrity_with_key(key).is_err()
    {
        return Err(Ignored::BadIntegrity);
    }
    if class == MessageClass::Success {
        return Ok(Outcome::Success(Success {
            relayed: msg
                .attribute::<XorRelayedAddress>()
                .ok()
                .map(|a| a.addr(id)),
            mapped: msg.attribute::<XorMappedAddress>().ok().map(|a| a.addr(id)),
            lifetime: msg.attribute::<Lifetime>().ok().map(|l| l.seconds()),
        }));
    }
    let (code, reason) = match msg.attribute::<ErrorCode>() {
        Ok(e) => (e.code(), e.reason().to_string()),
        Err(_) => (0, "no ERROR-CODE".to_string()),
    };
    let realm = msg.attribute::<Realm>().ok().map(|r| r.realm().to_string());
    let nonce = msg.attribute::<Nonce>().ok().map(|n| n.nonce().to_string());
    Ok(match code {
        code::UNAUTHORIZED => Outcome::Unauthorized(
            realm
                .zip(nonce)
                .map(|(realm, nonce)| Challenge { realm, nonce }),
        ),
        code::STALE_NONCE => Outcome::StaleNonce { nonce, realm },
        code::ALLOCATION_MISMATCH => Outcome::AllocationMismatch,
        code::ALLOCATION_QUOTA_REACHED => Outcome::QuotaReached,
        code::INSUFFICIENT_CAPACITY => Outcome::InsufficientCapacity,
        code::FORBIDDEN => Outcome::Forbidden(reason),
        _ => Outcome::Error { code, reason },
    })
}

#[cfg(test)]
mod tests;
