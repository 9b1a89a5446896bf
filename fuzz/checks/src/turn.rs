//! The turn-relay MOD's reading of a TURN server's answers (RFC 8656): what
//! the relay, or anyone spoofing it over UDP, sends. Input: a flags byte,
//! then either a 12-byte transaction id and one datagram ([`request`]
//! names the request it answers), or (with [`CONVERSATION`]) datagrams,
//! each behind a 2-byte length: the server's side of a conversation whose
//! requests carry the ids [`Link::tid`] gives (`7a 01 00…`, `7a 02 00…`).
//!
//! One datagram: no panic; an answer taken is to our transaction (its
//! header carries our id) and, when the request was signed and the answer
//! carries MESSAGE-INTEGRITY, that integrity verifies with our key; the
//! same bytes give the same verdict. The bytes as a state blob: a blob
//! that reads writes back to one that reads the same.
//!
//! A conversation: an Allocate (then a Refresh) run against the
//! datagrams as the server's answers, on a virtual clock. It ends (within
//! the session's budget, every datagram used or not); a granted
//! allocation has a usable relayed address and a lifetime other than 0;
//! an error's text carries no control character.

use std::net::SocketAddr;
use std::time::Duration;

use p2pbroker_mode_sdk::{ModeError, reason};
use p2pbroker_mode_turn_relay::client::{allocate, refresh};
use p2pbroker_mode_turn_relay::creds::Credentials;
use p2pbroker_mode_turn_relay::exchange::{Link, Session};
use p2pbroker_mode_turn_relay::proto::{self, Auth, PeerSet, Request, Tid};
use p2pbroker_mode_turn_relay::state::State;
use stun_types::attribute::{AttributeStaticType, MessageIntegrity};
use stun_types::message::Message;

/// The lab's long-term credentials (tests/lab: coturn's user and realm),
/// so the seeds captured there verify.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "wonderland";
/// Its realm.
pub const REALM: &str = "lab.invalid";

/// The request a single datagram answers, by the flags' low three bits
/// (bit 3: it was signed with the lab's key).
pub fn request(flags: u8) -> Request {
    let peer: SocketAddr = "198.51.100.3:6000".parse().unwrap();
    match flags & 7 {
        0 => Request::Allocate { lifetime: 600 },
        1 => Request::Refresh { lifetime: 600 },
        2 => Request::Binding,
        3 => Request::Refresh { lifetime: 0 },
        4 => Request::CreatePermission {
            peers: PeerSet::new(&[peer]).expect("one peer"),
        },
        _ => Request::ChannelBind {
            peer,
            channel: 0x4000,
        },
    }
}

/// Flags bit: the request was signed with the lab's key.
pub const SIGNED: u8 = 8;
/// Flags bit: the input is a conversation, not one datagram.
pub const CONVERSATION: u8 = 0x80;
/// Flags bit (conversation): each datagram takes the id of the request
/// last sent.
pub const OWN_IDS: u8 = 0x40;

/// One input.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & CONVERSATION == 0 {
        datagram(flags, rest);
    } else {
        conversation(flags, rest);
    }
}

fn key() -> stun_types::message::IntegrityKey {
    Auth {
        username: USER.into(),
        password: PASSWORD.into(),
        realm: REALM.into(),
        nonce: String::new(),
    }
    .key()
}

fn datagram(flags: u8, rest: &[u8]) {
    let Some((tid, msg)) = rest.split_first_chunk::<12>() else {
        return;
    };
    let method = request(flags).method();
    let key = (flags & SIGNED != 0).then(key);
    let verdict = proto::parse_response(msg, *tid, method, key.as_ref());
    if verdict.is_ok() {
        assert_eq!(
            proto::transaction_id(msg),
            Some(*tid),
            "an answer to another transaction was taken"
        );
        if let Some(k) = &key {
            let m = Message::from_bytes(msg).expect("it parsed");
            if m.has_attribute(MessageIntegrity::TYPE) {
                assert!(
                    m.validate_integrity_with_key(k).is_ok(),
                    "an answer whose integrity does not verify was taken"
                );
            }
        }
    }
    assert_eq!(
        proto::parse_response(msg, *tid, method, key.as_ref()),
        verdict,
        "the same bytes, another verdict"
    );
    if let Ok(s) = State::from_bytes(msg) {
        let again = s.to_bytes();
        let back = State::from_bytes(&again).expect("a written state reads");
        assert_eq!(back.to_bytes(), again, "the state round-trips");
    }
}

/// The server's side of a conversation, from the input.
struct Script<'a> {
    data: &'a [u8],
    now: Duration,
    next_tid: u8,
    /// The last request sent, whose id a datagram may take (flags bit 6).
    last_sent: Option<Tid>,
    own_ids: bool,
    sends: u32,
}

impl Link for Script<'_> {
    fn send(&mut self, message: &[u8]) -> Result<(), ModeError> {
        self.sends += 1;
        assert!(
            self.sends <= 64,
            "a conversation of two requests sent {} times",
            self.sends
        );
        self.last_sent = proto::transaction_id(message);
        Ok(())
    }

    fn receive(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, ModeError> {
        let Some((len, rest)) = self.data.split_first_chunk::<2>() else {
            self.now += wait;
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (msg, rest) = rest.split_at(len);
        self.data = rest;
        self.now += Duration::from_millis(1);
        let mut msg = msg.to_vec();
        if self.own_ids
            && msg.len() >= 20
            && let Some(tid) = self.last_sent
        {
            // Answer the request in flight, as a server would.
            msg[8..20].copy_from_slice(&tid);
        }
        Ok(Some(msg))
    }

    fn now(&self) -> Duration {
        self.now
    }

    fn tid(&mut self) -> Tid {
        self.next_tid = self.next_tid.wrapping_add(1);
        conversation_tid(self.next_tid)
    }
}

/// The transaction id of a conversation's `n`th request (from 1).
pub fn conversation_tid(n: u8) -> Tid {
    [0x7a, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

fn no_control(e: &ModeError) {
    let text = reason(e);
    assert!(
        !text.chars().any(char::is_control),
        "an error carries a control character: {text:?}"
    );
}

/// Run a conversation: how many of its two requests (Allocate, then
/// Refresh) succeeded.
fn conversation(flags: u8, rest: &[u8]) -> usize {
    let server: SocketAddr = "198.51.100.1:3478".parse().unwrap();
    let mut link = Script {
        data: rest,
        now: Duration::ZERO,
        next_tid: 0,
        last_sent: None,
        own_ids: flags & OWN_IDS != 0,
        sends: 0,
    };
    let creds = (flags & SIGNED != 0).then(|| Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let budget = Duration::from_secs(10);
    let mut s = Session::new(&mut link, server, budget, creds, None);
    let succeeded = match allocate(&mut s, 600) {
        Ok(a) => {
            assert!(a.relayed.port() != 0 && !a.relayed.ip().is_unspecified());
            assert_ne!(a.lifetime, 0);
            match refresh(&mut s, 600) {
                Ok(r) => {
                    assert_ne!(r.lifetime, 0);
                    2
                }
                Err(e) => {
                    no_control(&e);
                    1
                }
            }
        }
        Err(e) => {
            no_control(&e);
            0
        }
    };
    // Both sessions ran within their budgets on the virtual clock (plus
    // a millisecond per datagram, which a flood of answers spends).
    let used = rest.len() as u64 / 2 + 1;
    assert!(
        link.now <= budget * 2 + Duration::from_millis(used),
        "ran past the budget: {:?}",
        link.now
    );
    succeeded
}

#[cfg(test)]
mod tests {
    #[test]
    fn pseudo_random_inputs_pass() {
        crate::pseudo_random_inputs(3000, 160, super::run);
        // Conversations, with and without the ids of the requests sent.
        crate::pseudo_random_inputs(500, 160, |d| {
            super::run(&[&[super::CONVERSATION | super::SIGNED][..], d].concat())
        });
        crate::pseudo_random_inputs(500, 160, |d| {
            super::run(&[&[super::CONVERSATION | super::OWN_IDS][..], d].concat())
        });
    }

    /// The captured conversation is replayed as coturn answered it: the
    /// target's request ids are the ones the capture used.
    #[test]
    fn the_captured_conversation_allocates_and_refreshes() {
        let seed = include_bytes!("../../corpus/turn/coturn-conversation");
        assert_eq!(super::conversation(seed[0], &seed[1..]), 2);
    }
}
