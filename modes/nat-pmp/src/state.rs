//! The opaque state blobs this MOD hands the broker: what a warm `map`
//! needs from `probe`, and what `renew`/`unmap` need from `map`. A fixed
//! little binary layout, versioned, parsed without panics.

/// Layout version of [`PmpState`].
const STATE_VERSION: u8 = 1;
/// Encoded size of [`PmpState`].
const STATE_LEN: usize = 1 + 4 + 4 + 8 + 4 + 2 + 2;

/// What the MOD remembers between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmpState {
    /// The gateway that answered.
    pub gateway: [u8; 4],
    /// Its epoch (seconds since start of epoch) when last heard.
    pub epoch: u32,
    /// Our wall clock (Unix seconds) when last heard.
    pub seen: u64,
    /// The gateway's external address.
    pub external: [u8; 4],
    /// Internal port of the mapping (0 in a probe state).
    pub internal_port: u16,
    /// External port of the mapping (0 in a probe state).
    pub external_port: u16,
}

impl PmpState {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(STATE_LEN);
        v.push(STATE_VERSION);
        v.extend_from_slice(&self.gateway);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.seen.to_be_bytes());
        v.extend_from_slice(&self.external);
        v.extend_from_slice(&self.internal_port.to_be_bytes());
        v.extend_from_slice(&self.external_port.to_be_bytes());
        v
    }

    /// Decode; `None` for anything but a complete blob of this version.
    pub fn decode(b: &[u8]) -> Option<PmpState> {
        if b.len() != STATE_LEN || b[0] != STATE_VERSION {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u16_at = |i: usize| u16::from_be_bytes(b[i..i + 2].try_into().expect("2 bytes"));
        Some(PmpState {
            gateway: b[1..5].try_into().expect("4 bytes"),
            epoch: u32_at(5),
            seen: u64::from_be_bytes(b[9..17].try_into().expect("8 bytes")),
            external: b[17..21].try_into().expect("4 bytes"),
            internal_port: u16_at(21),
            external_port: u16_at(23),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let s = PmpState {
            gateway: [10, 0, 0, 1],
            epoch: 77,
            seen: 1_800_000_000,
            external: [203, 0, 113, 5],
            internal_port: 4000,
            external_port: 4001,
        };
        assert_eq!(PmpState::decode(&s.encode()), Some(s));
        assert_eq!(PmpState::decode(&[]), None);
        let mut bad = s.encode();
        bad[0] = 9;
        assert_eq!(PmpState::decode(&bad), None);
        assert_eq!(PmpState::decode(&s.encode()[..10]), None);
    }
}
