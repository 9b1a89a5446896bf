//! The stun MOD's codec and its discovery procedure. Input: a 12-byte
//! transaction id, then a datagram.
//!
//! On any datagram: no panic; a response that parses carries our id in
//! its header, and building a response with what was parsed and parsing
//! it again gives the same. On any sequence of test outcomes drawn from
//! the bytes: the procedure ends within eight steps, and a verdict names
//! mapping or filtering behaviour only with RFC 5780 support (an
//! OTHER-ADDRESS in test I).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use p2pbroker_mode_stun::codec::{self, Binding, Change};
use p2pbroker_mode_stun::discover::{Discovery, Next, Outcome};

/// One input.
pub fn run(data: &[u8]) {
    let Some((tid, datagram)) = data.split_first_chunk::<12>() else {
        return;
    };
    if let Ok(b) = codec::response(datagram, *tid) {
        assert_eq!(&datagram[8..20], tid);
        let request = codec::request(*tid, Change::NONE);
        let again = codec::response(&codec::success(&request, b.mapped, b.origin, b.other), *tid);
        assert_eq!(again.as_ref(), Ok(&b));
    }
    if codec::request_tid(datagram).is_some() {
        assert_eq!(datagram[0] & 0x01, 0, "a request's class bits");
    }
    procedure(data);
}

fn addr(a: u8, b: u8) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, a % 4)),
        3478 + u16::from(b % 3),
    )
}

fn procedure(data: &[u8]) {
    let server = addr(1, 0);
    let mut d = Discovery::new(server, vec![addr(9, 0)], data[0] & 1 == 1);
    let mut bytes = data.iter().copied();
    let mut next_byte = || bytes.next().unwrap_or(0);
    let mut other_in_test_one = None;
    let mut steps = 0;
    loop {
        match d.next() {
            Next::Ask { .. } => {
                steps += 1;
                let (k, a, b) = (next_byte(), next_byte(), next_byte());
                let outcome = match k % 5 {
                    0 => Outcome::Silence,
                    1 => Outcome::Denied,
                    2 => Outcome::Refused("420".into()),
                    _ => {
                        let other = (k % 2 == 0).then(|| addr(b, a));
                        Outcome::Answer(
                            Binding {
                                mapped: addr(a, b),
                                origin: None,
                                other,
                            },
                            addr(b, k),
                        )
                    }
                };
                if steps == 1 {
                    other_in_test_one = match &outcome {
                        Outcome::Answer(b, _) => Some(b.other.is_some()),
                        _ => None,
                    };
                }
                d.answered(outcome);
            }
            Next::Hairpin { .. } => {
                steps += 1;
                d.hairpinned(match next_byte() % 3 {
                    0 => None,
                    1 => Some(false),
                    _ => Some(true),
                });
            }
            Next::Done => break,
        }
        assert!(steps <= 8, "the procedure ends");
    }
    if let Ok(r) = d.report() {
        let rfc5780 = other_in_test_one == Some(true);
        if !rfc5780 {
            assert_eq!(r.filtering, None);
            assert!(r.mapping.is_none() || !r.nat);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_pseudo_random_inputs_pass() {
        crate::pseudo_random_inputs(20_000, 96, super::run);
    }
}
