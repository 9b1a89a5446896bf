//! Test fixtures: server answers built with stun-types/turn-types, and a
//! fake TURN server behind a [`Link`] with a virtual clock.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{HashSet, VecDeque};

use p2pbroker_mode_sdk::ModeError;
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username, XorMappedAddress};
use stun_types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageWrite, MessageWriteExt, MessageWriteVec,
};
use turn_types::attribute::{ChannelNumber, Lifetime, XorPeerAddress, XorRelayedAddress};
use turn_types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};

use crate::creds::Credentials;
use crate::exchange::Link;
use crate::proto::{self, Tid};

/// `s` as a socket address.
pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The fake server's address.
pub fn server() -> SocketAddr {
    sa("198.51.100.1:3478")
}

/// The relayed address it grants.
pub fn relayed() -> SocketAddr {
    sa("198.51.100.1:49152")
}

/// Where it sees the client.
pub fn reflexive() -> SocketAddr {
    sa("192.0.2.7:40000")
}

/// Long-term credentials the fake accepts.
pub fn alice() -> Credentials {
    Credentials {
        username: "alice".into(),
        password: "wonderland".into(),
    }
}

/// The realm the fake challenges with.
pub const REALM: &str = "example.org";

/// Message-integrity credentials for `user`/`password` in [`REALM`].
pub fn mi_creds(user: &str, password: &str) -> MessageIntegrityCredentials {
    LongTermKeyCredentials::new(user.into(), password.into(), REALM.into()).into()
}

/// A success response to `req` carrying the given attributes, signed
/// with `sign` when given.
pub fn success(
    req: &[u8],
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    lifetime: Option<u32>,
    sign: Option<&MessageIntegrityCredentials>,
) -> Vec<u8> {
    let msg = Message::from_bytes(req).unwrap();
    let id = msg.transaction_id();
    let mut out = Message::builder_success(&msg, MessageWriteVec::new());
    if let Some(a) = relayed {
        out.add_attribute(&XorRelayedAddress::new(a, id)).unwrap();
    }
    if let Some(a) = mapped {
        out.add_attribute(&XorMappedAddress::new(a, id)).unwrap();
    }
    if let Some(l) = lifetime {
        out.add_attribute(&Lifetime::new(l)).unwrap();
    }
    if let Some(c) = sign {
        out.add_message_integrity(c, IntegrityAlgorithm::Sha1)
            .unwrap();
    }
    out.add_fingerprint().unwrap();
    out.finish()
}

/// An error response to `req`.
pub fn error(
    req: &[u8],
    code: u16,
    reason: &str,
    realm: Option<&str>,
    nonce: Option<&str>,
) -> Vec<u8> {
    let msg = Message::from_bytes(req).unwrap();
    let mut out = Message::builder_error(&msg, MessageWriteVec::new());
    out.add_attribute(&ErrorCode::builder(code).reason(reason).build().unwrap())
        .unwrap();
    if let Some(r) = realm {
        out.add_attribute(&Realm::new(r).unwrap()).unwrap();
    }
    if let Some(n) = nonce {
        out.add_attribute(&Nonce::new(n).unwrap()).unwrap();
    }
    out.add_fingerprint().unwrap();
    out.finish()
}

/// How the fake TURN server behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// Credentials it accepts (None: it asks for none).
    pub accept: Option<Credentials>,
    /// Its current nonce.
    pub nonce: String,
    /// Requests it drops before answering any (lost datagrams).
    pub drop_first: usize,
    /// Answer every signed request with 438 and a fresh nonce.
    pub always_stale: bool,
    /// Answer Allocate with this error instead.
    pub allocate_error: Option<(u16, &'static str)>,
    /// Answer Refresh with this error instead.
    pub refresh_error: Option<(u16, &'static str)>,
    /// Peers it refuses (403) in ChannelBind.
    pub refused_peers: Vec<SocketAddr>,
    /// Lifetime it grants at most.
    pub max_lifetime: u32,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            accept: Some(alice()),
            nonce: "nonce-1".into(),
            drop_first: 0,
            always_stale: false,
            allocate_error: None,
            refresh_error: None,
            refused_peers: Vec::new(),
            max_lifetime: 3600,
        }
    }
}

/// A fake TURN server on a virtual clock, as a [`Link`].
pub struct Fake {
    /// Its behaviour.
    pub script: Script,
    /// The virtual clock.
    pub now: Duration,
    /// Delay between a request and its answer (requests arrive at once).
    pub rtt: Duration,
    /// Every message sent, with when.
    pub sent: Vec<(Duration, Vec<u8>)>,
    /// Every peer IP a CreatePermission named, in order.
    pub permitted: Vec<core::net::IpAddr>,
    /// Extra messages delivered before each answer (strays, forgeries).
    pub noise: Vec<Vec<u8>>,
    inbox: VecDeque<(Duration, Vec<u8>)>,
    tids: u32,
    outstanding: HashSet<Tid>,
    /// Most requests unanswered at once.
    pub max_outstanding: usize,
    stale_count: u32,
}

impl Fake {
    /// A fake with `script`.
    pub fn new(script: Script) -> Fake {
        Fake {
            script,
            now: Duration::ZERO,
            rtt: Duration::from_millis(20),
            sent: Vec::new(),
            permitted: Vec::new(),
            noise: Vec::new(),
            inbox: VecDeque::new(),
            tids: 0,
            outstanding: HashSet::new(),
            max_outstanding: 0,
            stale_count: 0,
        }
    }

    /// The sent messages, parsed.
    pub fn requests(&self) -> Vec<Message<'_>> {
        self.sent
            .iter()
            .map(|(_, m)| Message::from_bytes(m).unwrap())
            .collect()
    }

    /// Whether `msg` is signed as the script wants (always, when it
    /// wants no credentials).
    fn signed_well(&self, msg: &Message) -> bool {
        let Some(c) = &self.script.accept else {
            return true;
        };
        let user_ok = msg
            .attribute::<Username>()
            .is_ok_and(|u| u.username() == c.username);
        user_ok
            && msg
                .validate_integrity(&mi_creds(&c.username, &c.password))
                .is_ok()
    }

    fn answer(&mut self, req: &[u8]) -> Option<Vec<u8>> {
        if self.script.drop_first > 0 {
            self.script.drop_first -= 1;
            return None;
        }
        let msg = Message::from_bytes(req).unwrap();
        assert_eq!(msg.class(), MessageClass::Request);
        let nonce = |m: &Message| m.attribute::<Nonce>().ok().map(|n| n.nonce().to_string());
        if msg.method() != stun_types::message::BINDING {
            if !self.signed_well(&msg) {
                let n = self.script.nonce.clone();
                return Some(error(req, 401, "Unauthorized", Some(REALM), Some(&n)));
            }
            if self.script.accept.is_some()
                && (self.script.always_stale || nonce(&msg).as_deref() != Some(&self.script.nonce))
            {
                self.stale_count += 1;
                self.script.nonce = format!("nonce-{}", self.stale_count + 1);
                let n = self.script.nonce.clone();
                return Some(error(req, 438, "Stale Nonce", Some(REALM), Some(&n)));
            }
        }
        let sign = self
            .script
            .accept
            .as_ref()
            .map(|c| mi_creds(&c.username, &c.password));
        let sign = sign
            .as_ref()
            .filter(|_| msg.method() != stun_types::message::BINDING);
        let granted = |m: &Message| {
            m.attribute::<Lifetime>()
                .map(|l| l.seconds().min(self.script.max_lifetime))
                .ok()
        };
        Some(match msg.method() {
            m if m == ALLOCATE => match self.script.allocate_error {
                Some((code, why)) => error(req, code, why, None, None),
                None => success(req, Some(relayed()), Some(reflexive()), granted(&msg), sign),
            },
            m if m == REFRESH => match self.script.refresh_error {
                Some((code, why)) => error(req, code, why, None, None),
                None => success(req, None, None, granted(&msg), sign),
            },
            m if m == CHANNEL_BIND => {
                let id = msg.transaction_id();
                let peer = msg.attribute::<XorPeerAddress>().unwrap().addr(id);
                let channel = msg.attribute::<ChannelNumber>().unwrap().channel();
                assert!((0x4000..=0x4fff).contains(&channel));
                if self.script.refused_peers.contains(&peer) {
                    error(req, 403, "Forbidden\r\nFAKE LOG LINE", None, None)
                } else {
                    success(req, None, None, None, sign)
                }
            }
            m if m == CREATE_PERMISSION => {
                let id = msg.transaction_id();
                // Bounded: a request carries a handful of peers.
                let peers: Vec<SocketAddr> = (0..32)
                    .map_while(|n| msg.nth_attribute::<XorPeerAddress>(n).ok())
                    .map(|p| p.addr(id))
                    .collect();
                assert!(!peers.is_empty(), "a CreatePermission names a peer");
                self.permitted.extend(peers.iter().map(|p| p.ip()));
                let refused = peers
                    .iter()
                    .any(|p| self.script.refused_peers.iter().any(|r| r.ip() == p.ip()));
                if refused {
                    error(req, 403, "Forbidden", None, None)
                } else {
                    success(req, None, None, None, sign)
                }
            }
            _ => success(req, None, Some(reflexive()), None, None),
        })
    }
}

impl Link for Fake {
    fn send(&mut self, message: &[u8]) -> Result<(), ModeError> {
        self.sent.push((self.now, message.to_vec()));
        if let Some(tid) = proto::transaction_id(message) {
            self.outstanding.insert(tid);
            self.max_outstanding = self.max_outstanding.max(self.outstanding.len());
        }
        if let Some(reply) = self.answer(message) {
            for n in self.noise.drain(..) {
                self.inbox.push_back((self.now, n));
            }
            self.inbox.push_back((self.now + self.rtt, reply));
        }
        Ok(())
    }

    fn receive(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, ModeError> {
        let until = self.now + wait;
        let first = self
            .inbox
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= until)
            .min_by_key(|(_, (at, _))| *at)
            .map(|(i, _)| i);
        match first.and_then(|i| self.inbox.remove(i)) {
            Some((at, msg)) => {
                self.now = self.now.max(at);
                if let Some(tid) = proto::transaction_id(&msg) {
                    self.outstanding.remove(&tid);
                }
                Ok(Some(msg))
            }
            None => {
                self.now = until;
                Ok(None)
            }
        }
    }

    fn now(&self) -> Duration {
        self.now
    }

    fn tid(&mut self) -> Tid {
        self.tids += 1;
        let mut t = [0xa5u8; 12];
        t[8..].copy_from_slice(&self.tids.to_be_bytes());
        t
    }
}
