//! The MOD against a fake gateway (the SDK's `FakeGateway`: scripted
//! answers on a virtual clock), and its messages byte by byte.

use core::net::{Ipv4Addr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::addr::{from_socket, to_ip, to_socket};
use p2pbroker_mode_sdk::testing::FakeGateway;
use p2pbroker_mode_sdk::{AddressClass, MapRequest, ModeError, Transport};

use super::*;

const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn gw() -> SocketAddr {
    SocketAddr::from((GW, PORT))
}

/// An answer: version 0, opcode `op` + 128, result code, epoch 1000, `tail`.
fn answer(op: u8, result: u16, tail: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 128 + op];
    b.extend_from_slice(&result.to_be_bytes());
    b.extend_from_slice(&1000u32.to_be_bytes());
    b.extend_from_slice(tail);
    b
}

/// A gateway that works: its external address, and every mapping granted
/// as asked (an external port of 0 becomes 40000) for at most an hour.
fn good_gateway(_: usize, req: &[u8]) -> Vec<Vec<u8>> {
    match req {
        [0, 0] => vec![answer(0, 0, &EXTERNAL.octets())],
        [0, op @ (1 | 2), 0, 0, i0, i1, e0, e1, l0, l1, l2, l3] => {
            let ext = match u16::from_be_bytes([*e0, *e1]) {
                0 => 40000,
                p => p,
            };
            let life = u32::from_be_bytes([*l0, *l1, *l2, *l3]).min(3600);
            let mut tail = vec![*i0, *i1];
            tail.extend_from_slice(&ext.to_be_bytes());
            tail.extend_from_slice(&life.to_be_bytes());
            vec![answer(*op, 0, &tail)]
        }
        _ => vec![],
    }
}

fn request(port: u16, lifetime: u32) -> MapRequest {
    MapRequest {
        transport: Transport::Tcp,
        internal: from_socket(SocketAddr::from(([0, 0, 0, 0], port))),
        external_port: None,
        lifetime,
        permanent_allowed: false,
        probe_state: Vec::new(),
    }
}

#[test]
fn probe_then_map_renew_and_unmap_on_a_fake_gateway() {
    let mut fake = FakeGateway::new(gw(), good_gateway);
    let report = probe_at(&mut fake, GW).unwrap();
    assert_eq!(
        report.external_address.map(|a| to_ip(&a)),
        Some(EXTERNAL.into())
    );
    assert_eq!(
        report.external_class,
        Some(AddressClass::Reserved),
        "a documentation address"
    );

    // A warm map uses the probe's state: one request, no second address query.
    let known = State::decode(&report.state);
    let m = map_at(&mut fake, GW, known, &request(6881, 7200)).unwrap();
    assert_eq!(fake.sent.len(), 2);
    assert_eq!(to_socket(&m.external), SocketAddr::from((EXTERNAL, 6881)));
    assert_eq!(m.lifetime, 3600, "the gateway's grant, not the request");
    assert_eq!(
        to_socket(&m.internal),
        to_socket(&request(6881, 7200).internal),
        "answers the request"
    );

    let renewed = renew_at(&mut fake, &m, 600).unwrap();
    assert_eq!(to_socket(&renewed.external), to_socket(&m.external));
    assert_eq!(fake.sent[2].1, natpmp::map_request(2, 6881, 6881, 600));

    unmap_at(&mut fake, &m).unwrap();
    assert_eq!(
        fake.sent[3],
        (gw(), natpmp::map_request(2, 6881, 0, 0).to_vec())
    );
}

#[test]
fn a_cold_map_asks_for_the_external_address_first() {
    let mut fake = FakeGateway::new(gw(), good_gateway);
    let m = map_at(&mut fake, GW, None, &request(7000, 60)).unwrap();
    assert_eq!(fake.sent.len(), 2);
    assert_eq!(fake.sent[0].1, natpmp::external_request());
    assert_eq!(m.lifetime, 60);
}

#[test]
fn a_silent_gateway_times_out_after_four_tries() {
    let mut fake = FakeGateway::new(gw(), |_, _: &[u8]| vec![]);
    let e = probe_at(&mut fake, GW).unwrap_err();
    assert!(matches!(e, ModeError::Timeout(_)), "{e:?}");
    assert_eq!(fake.sent.len(), 4);
    assert_eq!(fake.now(), Duration::from_millis(250 + 500 + 1000 + 2000));
}

#[test]
fn a_lost_request_is_sent_again() {
    let mut fake = FakeGateway::new(
        gw(),
        |n, req: &[u8]| {
            if n == 0 { vec![] } else { good_gateway(n, req) }
        },
    );
    probe_at(&mut fake, GW).unwrap();
    assert_eq!(fake.sent.len(), 2);
    assert_eq!(fake.now(), Duration::from_millis(250));
}

#[test]
fn garbage_and_strangers_are_ignored() {
    let mut fake = FakeGateway::new(gw(), |n, req: &[u8]| {
        let mut out = vec![vec![0xff; 3], answer(1, 0, &[0; 8])];
        out.extend(good_gateway(n, req));
        out
    });
    // A forged answer from another address comes first.
    fake.inject(
        SocketAddr::from(([192, 168, 1, 66], PORT)),
        &answer(0, 0, &[6, 6, 6, 6]),
    );
    let report = probe_at(&mut fake, GW).unwrap();
    assert_eq!(
        report.external_address.map(|a| to_ip(&a)),
        Some(EXTERNAL.into())
    );
}

#[test]
fn refusals_carry_the_gateways_reason() {
    let mut fake = FakeGateway::new(gw(), |_, req: &[u8]| vec![answer(req[1], 2, &[0; 8])]);
    let e = probe_at(&mut fake, GW).unwrap_err();
    assert!(
        matches!(&e, ModeError::Denied(s) if s.contains("not authorized") && s.contains("result 2")),
        "{e:?}"
    );
    let mut fake = FakeGateway::new(gw(), |_, req: &[u8]| vec![answer(req[1], 3, &[0; 8])]);
    let e = map_at(&mut fake, GW, None, &request(7000, 60)).unwrap_err();
    assert!(
        matches!(&e, ModeError::Unavailable(s) if s.contains("network failure")),
        "{e:?}"
    );
}

#[test]
fn an_answer_for_another_port_is_a_protocol_error() {
    let mut fake = FakeGateway::new(gw(), |n, req: &[u8]| {
        let mut a = good_gateway(n, req);
        if req.len() == 12 {
            a[0][9] ^= 1; // the internal port's low byte
        }
        a
    });
    let e = map_at(&mut fake, GW, None, &request(7000, 60)).unwrap_err();
    assert!(matches!(e, ModeError::Protocol(_)), "{e:?}");
}

#[test]
fn ipv6_and_foreign_state_are_refused_before_any_packet() {
    let mut fake = FakeGateway::new(gw(), good_gateway);
    let mut req = request(7000, 60);
    req.internal = from_socket("[::]:7000".parse().unwrap());
    assert!(matches!(
        map_at(&mut fake, GW, None, &req),
        Err(ModeError::Unsupported(_))
    ));
    let mut m = map_at(&mut fake, GW, None, &request(7000, 60)).unwrap();
    let sent = fake.sent.len();
    m.state = vec![1, 2, 3];
    assert!(matches!(
        renew_at(&mut fake, &m, 60),
        Err(ModeError::InvalidRequest(_))
    ));
    assert!(matches!(
        unmap_at(&mut fake, &m),
        Err(ModeError::InvalidRequest(_))
    ));
    assert_eq!(fake.sent.len(), sent);
}

#[test]
fn messages_byte_by_byte() {
    assert_eq!(natpmp::external_request(), [0, 0]);
    assert_eq!(
        natpmp::map_request(1, 0x1234, 0x5678, 0x0102_0304),
        [0, 1, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4]
    );
    let a = answer(2, 0, &[0x1a, 0xe1, 0x9c, 0x40, 0, 0, 0x0e, 0x10]);
    assert_eq!(
        natpmp::parse_map(&a, 2),
        Ok(natpmp::Granted {
            internal: 6881,
            external: 40000,
            lifetime: 3600
        })
    );
    assert_eq!(natpmp::parse_map(&a, 1), Err(natpmp::Refusal::NotOurs));
    assert_eq!(
        natpmp::parse_map(&a[..15], 2),
        Err(natpmp::Refusal::NotOurs)
    );
    assert_eq!(
        natpmp::parse_external(&answer(0, 4, &[0; 4])),
        Err(natpmp::Refusal::Result(4))
    );
    let st = State {
        gateway: GW,
        external: EXTERNAL,
    };
    assert_eq!(State::decode(&st.encode()), Some(st));
    assert_eq!(State::decode(&[0; 7]), None);
}
