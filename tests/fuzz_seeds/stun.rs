//! coturn's STUN Binding answers (RFC 5780 server on two addresses), from
//! the host behind a full-cone NAT (so answers from the other address and
//! port get through): each must parse to the reflexive address, the
//! server's other address and the origin it came from. Seeds of the
//! `stun` target: the 12-byte transaction id, then the datagram.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use p2pbroker_mode_stun::codec::{self, Change};

use crate::exchange::Seeds;
use crate::lab::{GatewayOptions, HOST_IP, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP, WAN_IP};

/// Send `request` from a fresh socket to `to` and return the first answer,
/// from wherever it came (a change request is answered from elsewhere).
/// Up to ten tries, half a second each: a loaded machine can keep a
/// freshly started coturn from answering for a couple of seconds.
fn ask(to: SocketAddr, request: Vec<u8>) -> (Vec<u8>, SocketAddr) {
    let s = UdpSocket::bind(format!("{HOST_IP}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..10 {
        s.send_to(&request, to).unwrap();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                return (buf[..n].to_vec(), from);
            }
        }
    }
    panic!("coturn did not answer at {to}");
}

#[test]
fn coturns_binding_answers_parse_to_what_was_asked() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat: NatKind::FullCone,
    });
    let seeds = Seeds::from_env();
    let primary: SocketAddr = format!("{PUB_IP}:3478").parse().unwrap();
    let other: SocketAddr = format!("{PUB_ALT_IP}:3479").parse().unwrap();
    let cases = [
        ("binding", Change::NONE, primary),
        (
            "change-port",
            Change::PORT,
            format!("{PUB_IP}:3479").parse().unwrap(),
        ),
        ("change-both", Change::BOTH, other),
    ];
    for (i, (name, change, from_expected)) in cases.into_iter().enumerate() {
        let tid = [0x5a, i as u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let request = codec::request(tid, change);
        let (answer, from) = lab.in_ns(Ns::Host, move || ask(primary, request));
        assert_eq!(from, from_expected, "{name}: answered from");
        let b = codec::response(&answer, tid).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(b.mapped.ip().to_string(), WAN_IP, "{name}");
        assert_eq!(b.other, Some(other), "{name}: OTHER-ADDRESS");
        assert_eq!(b.origin, Some(from), "{name}: RESPONSE-ORIGIN");
        let mut seed = tid.to_vec();
        seed.extend_from_slice(&answer);
        seeds.keep("stun", &format!("coturn-{name}"), &seed);
    }
    // An unknown comprehension-required attribute: coturn answers 420.
    let tid = [0x5a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let mut request = codec::request(tid, Change::NONE);
    request[3] = 8; // message length: one 8-byte attribute
    request.extend_from_slice(&[0x00, 0x2f, 0, 4, 0, 0, 0, 0]);
    let (answer, _) = lab.in_ns(Ns::Host, move || ask(primary, request));
    match codec::response(&answer, tid) {
        Err(codec::Refused::Error { code, .. }) => assert_eq!(code, 420),
        other => panic!("an unknown attribute: {other:?}"),
    }
    let mut seed = tid.to_vec();
    seed.extend_from_slice(&answer);
    seeds.keep("stun", "coturn-420", &seed);
}
