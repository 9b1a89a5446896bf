//! The mapping's opaque state blob: what a later call on the lease needs
//! to speak for the allocation (pure; JSON, bounded).
//!
//! ```json
//! {"v":1,"server":"198.51.100.1:3478","realm":"example.org","nonce":"…",
//!  "username":"1700086400:alice","peers":[{"peer":"203.0.113.5:4000",
//!  "channel":16384}],"next_channel":16385,"lifetime":600,"channels_at":1700000000}
//! ```
//!
//! It holds no password and no key: those are derived from config at each
//! call ([`crate::creds`]). The broker journals it, so anything secret in
//! it would land on disk.

use core::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::proto::Challenge;

/// The format's version.
pub const VERSION: u32 = 1;
/// The contract's bound on a state blob.
pub const STATE_MAX: usize = 64 * 1024;
/// Peers one lease may have (bounds the state and a renewal's work).
pub const PEERS_MAX: usize = 256;
/// Peers one `permit` call may add (the contract's bound).
pub const PERMIT_MAX: usize = 64;
/// The first channel number (RFC 8656 §12).
pub const CHANNEL_FIRST: u16 = 0x4000;
/// The last channel number (RFC 8656 §12).
pub const CHANNEL_LAST: u16 = 0x4FFF;
/// RFC 8489 §14.9, §14.10: REALM and NONCE are under 764 bytes.
const CHALLENGE_MAX: usize = 763;
/// RFC 8489 §14.3: USERNAME is under 514 bytes.
const USERNAME_MAX: usize = 513;

/// A peer and the channel bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerChannel {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Its channel number.
    pub channel: u16,
}

/// What travels between calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`VERSION`].
    pub v: u32,
    /// The TURN server that holds the allocation.
    pub server: SocketAddr,
    /// REALM of the last challenge (empty: the server asked for none).
    pub realm: String,
    /// NONCE of the last challenge, so the next call signs at once.
    pub nonce: String,
    /// USERNAME the allocation was made with (empty: none); fixed for the
    /// allocation's life.
    pub username: String,
    /// Bound peers, in the order they were bound.
    pub peers: Vec<PeerChannel>,
    /// The channel number the next new peer gets.
    pub next_channel: u16,
    /// The allocation's lifetime as the server last granted it, seconds.
    pub lifetime: u32,
    /// Unix seconds when every peer's channel was last bound (0: never,
    /// as in a state written before this field: the next renewal binds).
    #[serde(default)]
    pub channels_at: u64,
}

impl State {
    /// The state of a fresh allocation.
    pub fn new(
        server: SocketAddr,
        challenge: Option<&Challenge>,
        username: &str,
        lifetime: u32,
    ) -> State {
        let mut s = State {
            v: VERSION,
            server,
            realm: String::new(),
            nonce: String::new(),
            username: username.to_string(),
            peers: Vec::new(),
            next_channel: CHANNEL_FIRST,
            lifetime,
            channels_at: 0,
        };
        s.set_challenge(challenge);
        s
    }

    /// The challenge to sign the next request with, if any.
    pub fn challenge(&self) -> Option<Challenge> {
        (!self.realm.is_empty() && !self.nonce.is_empty()).then(|| Challenge {
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
        })
    }

    /// Remember the server's latest challenge.
    pub fn set_challenge(&mut self, challenge: Option<&Challenge>) {
        if let Some(c) = challenge {
            self.realm = c.realm.clone();
            self.nonce = c.nonce.clone();
        }
    }

    /// The blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serialises")
    }

    /// Read and check a blob.
    pub fn from_bytes(bytes: &[u8]) -> Result<State, String> {
        if bytes.len() > STATE_MAX {
            return Err(format!("{} bytes, more than {STATE_MAX}", bytes.len()));
        }
        let s: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        if self.v != VERSION {
            return Err(format!("version {}, not {VERSION}", self.v));
        }
        if self.realm.len() > CHALLENGE_MAX
            || self.nonce.len() > CHALLENGE_MAX
            || self.username.len() > USERNAME_MAX
        {
            return Err("realm, nonce or user name longer than STUN allows".into());
        }
        if self.peers.len() > PEERS_MAX {
            return Err(format!("{} peers, more than {PEERS_MAX}", self.peers.len()));
        }
        if !(CHANNEL_FIRST..=CHANNEL_LAST + 1).contains(&self.next_channel) {
            return Err(format!(
                "next channel {:#x} out of range",
                self.next_channel
            ));
        }
        for (i, p) in self.peers.iter().enumerate() {
            if !(CHANNEL_FIRST..self.next_channel).contains(&p.channel) {
                return Err(format!("peer {} has channel {:#x}", p.peer, p.channel));
            }
            if self.peers[..i]
                .iter()
                .any(|q| q.peer == p.peer || q.channel == p.channel)
            {
                return Err(format!("peer {} or its channel is listed twice", p.peer));
            }
        }
        Ok(())
    }

    /// Add the `peers` not yet bound, each with the next channel number,
    /// and return the added ones (in order, duplicates once). Refused,
    /// with nothing added: a peer of another address family than
    /// `relayed` or no address to reach, more peers than a lease may have,
    /// or no channel number left.
    pub fn admit(
        &mut self,
        relayed: SocketAddr,
        peers: &[SocketAddr],
    ) -> Result<Vec<PeerChannel>, String> {
        let mut added: Vec<PeerChannel> = Vec::new();
        let mut next = self.next_channel;
        for &peer in peers {
            if peer.is_ipv4() != relayed.is_ipv4() {
                return Err(format!(
                    "peer {peer} is not of the relayed address's family ({relayed})"
                ));
            }
            if peer.port() == 0 || peer.ip().is_unspecified() {
                return Err(format!("peer {peer} is no address to reach"));
            }
            let known = |list: &[PeerChannel]| list.iter().any(|p| p.peer == peer);
            if known(&self.peers) || known(&added) {
                continue;
            }
            if self.peers.len() + added.len() >= PEERS_MAX {
                return Err(format!("a lease has at most {PEERS_MAX} peers"));
            }
            if next > CHANNEL_LAST {
                return Err("no TURN channel number left for this allocation".into());
            }
            added.push(PeerChannel {
                peer,
                channel: next,
            });
            next += 1;
        }
        self.peers.extend_from_slice(&added);
        self.next_channel = next;
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sample() -> State {
        let c = Challenge {
            realm: "example.org".into(),
            nonce: "n0nce".into(),
        };
        let mut s = State::new(sa("198.51.100.1:3478"), Some(&c), "1700086400:alice", 600);
        s.admit(
            sa("192.0.2.7:40000"),
            &[sa("203.0.113.5:4000"), sa("203.0.113.6:4000")],
        )
        .unwrap();
        s
    }

    #[test]
    fn the_state_round_trips_in_its_documented_form() {
        let s = sample();
        let bytes = s.to_bytes();
        assert_eq!(State::from_bytes(&bytes).unwrap(), s);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(
                "{\"v\":1,\"server\":\"198.51.100.1:3478\",\"realm\":\"example.org\",\
                 \"nonce\":\"n0nce\",\"username\":\"1700086400:alice\",\"peers\":\
                 [{\"peer\":\"203.0.113.5:4000\",\"channel\":16384}"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\"next_channel\":16386,\"lifetime\":600,\"channels_at\":0}"),
            "{text}"
        );
        // A state written before `channels_at`: its next renewal binds.
        let old = text.replace(",\"channels_at\":0", "");
        assert_eq!(State::from_bytes(old.as_bytes()).unwrap().channels_at, 0);
        assert_eq!(s.challenge().unwrap().nonce, "n0nce");
    }

    #[test]
    fn the_state_has_no_field_for_a_secret() {
        // The whole format is the fields above: unknown fields (a
        // "password", a "key") are refused, and none is written.
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        for word in ["password", "credential", "secret", "key"] {
            assert!(!text.contains(word), "{word} in {text}");
        }
        let with_password = text.replacen('{', "{\"password\":\"x\",", 1);
        assert!(State::from_bytes(with_password.as_bytes()).is_err());
    }

    #[test]
    fn broken_or_oversized_states_are_refused() {
        let good = sample();
        let mut bad = good.clone();
        bad.v = 2;
        assert!(State::from_bytes(&bad.to_bytes()).is_err());
        let mut bad = good.clone();
        bad.peers[1].channel = bad.peers[0].channel;
        assert!(State::from_bytes(&bad.to_bytes()).is_err());
        let mut bad = good.clone();
        bad.next_channel = 0x3fff;
        assert!(State::from_bytes(&bad.to_bytes()).is_err());
        let mut bad = good.clone();
        bad.nonce = "n".repeat(764);
        assert!(State::from_bytes(&bad.to_bytes()).is_err());
        assert!(State::from_bytes(&vec![b' '; STATE_MAX + 1]).is_err());
        assert!(State::from_bytes(b"not json").is_err());
    }

    #[test]
    fn admit_skips_known_peers_and_numbers_new_ones_in_order() {
        let mut s = sample();
        let added = s
            .admit(
                sa("192.0.2.7:40000"),
                &[
                    sa("203.0.113.5:4000"),
                    sa("203.0.113.9:1"),
                    sa("203.0.113.9:1"),
                ],
            )
            .unwrap();
        assert_eq!(
            added,
            vec![PeerChannel {
                peer: sa("203.0.113.9:1"),
                channel: 0x4002
            }]
        );
        assert_eq!((s.peers.len(), s.next_channel), (3, 0x4003));
    }

    #[test]
    fn admit_refuses_whole_calls_it_cannot_honour() {
        let relayed = sa("192.0.2.7:40000");
        let mut s = sample();
        let before = s.clone();
        for peers in [
            vec![sa("203.0.113.9:1"), sa("[2001:db8::9]:1")],
            vec![sa("203.0.113.9:0")],
            vec![sa("0.0.0.0:1")],
        ] {
            assert!(s.admit(relayed, &peers).is_err(), "{peers:?}");
            assert_eq!(s, before, "nothing added");
        }
        let many: Vec<SocketAddr> = (0..=PEERS_MAX as u32)
            .map(|i| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1)))
            .collect();
        let why = s.admit(relayed, &many).unwrap_err();
        assert!(why.contains("at most 256"), "{why}");
        let mut full = sample();
        full.next_channel = CHANNEL_LAST + 1;
        assert!(full.admit(relayed, &[sa("203.0.113.9:1")]).is_err());
    }
}
