//! coturn's TURN answers (RFC 8656) to the turn-relay MOD's own requests,
//! from the host behind the lab's NAT: the 401 challenge, a signed
//! Allocate, Refresh, CreatePermission, ChannelBind and delete, a Binding,
//! a Refresh where there is no allocation (437), a wrong password (401),
//! a nonce another 5-tuple was given (438) and the user's quota (486). Each must parse to what was asked. Seeds of
//! the `turn` target: a flags byte (the request, and 8 when it was signed
//! with the lab's key), the transaction id, the datagram; and one whole
//! conversation (flags 0x88) as the target replays it: the answers to an
//! unsigned Allocate, the signed one and a Refresh, with the ids the
//! target gives its requests (`7a 01 00…`, `7a 02 00…`, `7a 03 00…`).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use p2pbroker_mode_turn_relay::proto::{
    self, Auth, Challenge, Outcome, PeerSet, Request, Tid, build_request, parse_response,
};

use crate::exchange::Seeds;
use crate::lab::{
    GatewayOptions, HOST_IP, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP, TURN_PASSWORD, TURN_REALM,
    TURN_USER, WAN_IP,
};

/// A UDP socket of the lab host talking to coturn (one 5-tuple: one
/// allocation).
struct Turn {
    s: UdpSocket,
    server: SocketAddr,
}

impl Turn {
    fn new() -> Turn {
        let s = UdpSocket::bind(format!("{HOST_IP}:0")).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Turn {
            s,
            server: format!("{PUB_IP}:3478").parse().unwrap(),
        }
    }

    /// Send `req` with id `tid` (signed with `auth` when given) and return
    /// the answer. Up to ten tries, half a second each: a freshly started
    /// coturn on a loaded machine may not answer at once.
    fn ask(&self, req: &Request, tid: Tid, auth: Option<&Auth>) -> Vec<u8> {
        let bytes = build_request(req, tid, auth).unwrap();
        let mut buf = [0u8; 1500];
        for _ in 0..10 {
            self.s.send_to(&bytes, self.server).unwrap();
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(n) = self.s.recv(&mut buf)
                    && proto::transaction_id(&buf[..n]) == Some(tid)
                {
                    return buf[..n].to_vec();
                }
            }
        }
        panic!("coturn did not answer {}", req.name());
    }
}

fn tid(a: u8, b: u8) -> Tid {
    [a, b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

fn auth(password: &str, ch: &Challenge) -> Auth {
    Auth {
        username: TURN_USER.into(),
        password: password.into(),
        realm: ch.realm.clone(),
        nonce: ch.nonce.clone(),
    }
}

/// The flags byte of a datagram seed: the request's index in the target's
/// list (Allocate 0, Refresh 1, Binding 2, delete 3, CreatePermission 4,
/// ChannelBind 5), 8 when signed.
fn seed(flags: u8, tid: Tid, answer: &[u8]) -> Vec<u8> {
    let mut s = vec![flags];
    s.extend_from_slice(&tid);
    s.extend_from_slice(answer);
    s
}

fn challenge(o: Outcome) -> Challenge {
    match o {
        Outcome::Unauthorized(Some(ch)) => ch,
        other => panic!("not a challenge: {other:?}"),
    }
}

fn success(o: Outcome) -> proto::Success {
    match o {
        Outcome::Success(ok) => ok,
        other => panic!("not a success: {other:?}"),
    }
}

#[test]
fn coturns_turn_answers_parse_to_what_was_asked() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat: NatKind::PortRestricted,
    });
    let seeds = Seeds::from_env();
    let peer: SocketAddr = format!("{PUB_ALT_IP}:6000").parse().unwrap();
    let kept = lab.in_ns(Ns::Host, move || {
        let mut kept: Vec<(&str, Vec<u8>)> = Vec::new();
        let t = Turn::new();
        let allocate = Request::Allocate { lifetime: 600 };
        // The conversation the target replays: its first three ids.
        let (t1, t2, t3) = (tid(0x7a, 1), tid(0x7a, 2), tid(0x7a, 3));
        let a401 = t.ask(&allocate, t1, None);
        let ch = challenge(parse_response(&a401, t1, allocate.method(), None).unwrap());
        assert_eq!(ch.realm, TURN_REALM);
        let good = auth(TURN_PASSWORD, &ch);
        let key = good.key();
        let granted = t.ask(&allocate, t2, Some(&good));
        let ok = success(parse_response(&granted, t2, allocate.method(), Some(&key)).unwrap());
        assert_eq!(ok.relayed.unwrap().ip().to_string(), PUB_IP, "{ok:?}");
        assert_eq!(ok.mapped.unwrap().ip().to_string(), WAN_IP, "{ok:?}");
        assert_eq!(ok.lifetime, Some(600));
        let refresh = Request::Refresh { lifetime: 600 };
        let refreshed = t.ask(&refresh, t3, Some(&good));
        let ok = success(parse_response(&refreshed, t3, refresh.method(), Some(&key)).unwrap());
        assert_eq!(ok.lifetime, Some(600));
        let mut conversation = vec![0x88];
        for answer in [&a401, &granted, &refreshed] {
            conversation.extend_from_slice(&(answer.len() as u16).to_be_bytes());
            conversation.extend_from_slice(answer);
        }
        kept.push(("coturn-conversation", conversation));
        kept.push(("coturn-401", seed(0, t1, &a401)));
        kept.push(("coturn-allocate", seed(8, t2, &granted)));
        kept.push(("coturn-refresh", seed(9, t3, &refreshed)));

        let permit = Request::CreatePermission {
            peers: PeerSet::new(&[peer]).unwrap(),
        };
        let bind = Request::ChannelBind {
            peer,
            channel: 0x4000,
        };
        for (name, flags, req, id) in [
            ("coturn-permission", 8 | 4, permit, tid(0x7b, 1)),
            ("coturn-channel-bind", 8 | 5, bind, tid(0x7b, 2)),
            ("coturn-binding", 2, Request::Binding, tid(0x7b, 3)),
        ] {
            let answer = t.ask(&req, id, (flags & 8 != 0).then_some(&good));
            let ok = success(parse_response(&answer, id, req.method(), Some(&key)).unwrap());
            if let Request::Binding = req {
                assert_eq!(ok.mapped.unwrap().ip().to_string(), WAN_IP, "{name}");
            }
            kept.push((name, seed(flags, id, &answer)));
        }

        let delete = Request::Refresh { lifetime: 0 };
        let gone = t.ask(&delete, tid(0x7b, 4), Some(&good));
        success(parse_response(&gone, tid(0x7b, 4), delete.method(), Some(&key)).unwrap());
        kept.push(("coturn-delete", seed(8 | 3, tid(0x7b, 4), &gone)));
        // Another 5-tuple, which has no allocation: a Refresh is 437
        // (coturn still grants one on the deleted allocation's 5-tuple for
        // a while), and a wrong password is a 401 again.
        let other = Turn::new();
        let first = other.ask(&allocate, tid(0x7c, 1), None);
        let c = challenge(parse_response(&first, tid(0x7c, 1), allocate.method(), None).unwrap());
        let signed = auth(TURN_PASSWORD, &c);
        let mismatch = other.ask(&refresh, tid(0x7c, 3), Some(&signed));
        assert_eq!(
            parse_response(&mismatch, tid(0x7c, 3), refresh.method(), Some(&key)),
            Ok(Outcome::AllocationMismatch),
            "a Refresh where there is no allocation"
        );
        kept.push(("coturn-437", seed(8 | 1, tid(0x7c, 3), &mismatch)));
        let wrong = auth("not-the-password", &c);
        let refused = other.ask(&allocate, tid(0x7c, 2), Some(&wrong));
        assert!(matches!(
            parse_response(
                &refused,
                tid(0x7c, 2),
                allocate.method(),
                Some(&wrong.key())
            ),
            Ok(Outcome::Unauthorized(_))
        ));
        kept.push(("coturn-wrong-password", seed(8, tid(0x7c, 2), &refused)));

        // The lab user may hold two allocations: the third is 486.
        // (Nonces are per 5-tuple: another socket's first signed request
        // is a 438 naming its own, which signs the second.)
        let held: Vec<Turn> = (0..3).map(|_| Turn::new()).collect();
        let (mut quota, mut stale) = (None, None);
        for (i, h) in held.iter().enumerate() {
            let id = tid(0x7d, i as u8);
            let answer = h.ask(&allocate, id, Some(&good));
            let (id, answer) = match parse_response(&answer, id, allocate.method(), Some(&key)) {
                Ok(Outcome::StaleNonce {
                    nonce: Some(nonce),
                    realm,
                }) => {
                    assert_eq!(realm.as_deref(), Some(TURN_REALM));
                    stale.get_or_insert_with(|| seed(8, id, &answer));
                    let fresh = Challenge {
                        realm: TURN_REALM.into(),
                        nonce,
                    };
                    let again = tid(0x7d, 0x10 + i as u8);
                    (
                        again,
                        h.ask(&allocate, again, Some(&auth(TURN_PASSWORD, &fresh))),
                    )
                }
                _ => (id, answer),
            };
            match parse_response(&answer, id, allocate.method(), Some(&key)).unwrap() {
                Outcome::Success(_) => {}
                Outcome::QuotaReached => quota = Some(seed(8, id, &answer)),
                other => panic!("allocation {i}: {other:?}"),
            }
        }
        if let Some(s) = stale {
            kept.push(("coturn-438", s));
        }
        kept.push((
            "coturn-486",
            quota.expect("the third allocation is over the quota"),
        ));
        for h in &held {
            // Leave nothing allocated (best effort: the lab goes anyway).
            let _ = h.s.send_to(
                &build_request(&delete, tid(0x7e, 0), Some(&good)).unwrap(),
                h.server,
            );
        }
        kept
    });
    for (name, bytes) in kept {
        seeds.keep("turn", name, &bytes);
    }
}
