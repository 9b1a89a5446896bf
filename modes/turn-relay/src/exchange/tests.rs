use stun_types::attribute::{Nonce, Username};

use super::*;
use crate::proto::Success;
use crate::state::PeerChannel;
use crate::testkit::{self, Fake, Script, alice, mi_creds, server};

const BUDGET: Duration = Duration::from_millis(3000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn session<'l>(link: &'l mut Fake, creds: Option<Credentials>) -> Session<'l, Fake> {
    Session::new(link, server(), BUDGET, creds, None)
}

#[test]
fn an_unanswered_request_is_sent_at_0_500_and_1500_ms_then_times_out() {
    let mut fake = Fake::new(Script {
        drop_first: usize::MAX,
        ..Script::default()
    });
    let err = session(&mut fake, None).one(Request::Binding).unwrap_err();
    let ModeError::Timeout(why) = err else {
        panic!("timeout expected")
    };
    assert!(
        why.contains("did not answer the Binding request within 3000 ms"),
        "{why}"
    );
    let times: Vec<Duration> = fake.sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![ms(0), ms(500), ms(1500)]);
    assert_eq!(fake.now, BUDGET, "waited the whole budget, no longer");
    // Retransmissions are the same bytes (same transaction).
    assert!(fake.sent.iter().all(|(_, m)| *m == fake.sent[0].1));
}

#[test]
fn a_longer_budget_gets_the_fourth_transmission_at_3500_ms() {
    let mut fake = Fake::new(Script {
        drop_first: usize::MAX,
        ..Script::default()
    });
    let mut s = Session::new(&mut fake, server(), ms(4000), None, None);
    assert!(s.one(Request::Binding).is_err());
    let times: Vec<Duration> = fake.sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![ms(0), ms(500), ms(1500), ms(3500)]);
}

#[test]
fn a_lost_request_is_answered_on_retransmission() {
    let mut fake = Fake::new(Script {
        drop_first: 2,
        ..Script::default()
    });
    let outcome = session(&mut fake, None).one(Request::Binding).unwrap();
    assert_eq!(
        outcome,
        Outcome::Success(Success {
            mapped: Some(testkit::reflexive()),
            ..Success::default()
        })
    );
    assert_eq!(fake.sent.len(), 3);
    assert_eq!(fake.now, ms(1500) + fake.rtt);
}

#[test]
fn strays_garbage_and_forgeries_are_skipped() {
    let mut fake = Fake::new(Script::default());
    // Before the first (401) answer: garbage, and an answer to another
    // transaction.
    let other = proto::build_request(&Request::Binding, [9; 12], None).unwrap();
    fake.noise = vec![
        b"\x00\x01garbage".to_vec(),
        testkit::success(&other, None, Some(testkit::reflexive()), None, None),
    ];
    let mut s = session(&mut fake, Some(alice()));
    let outcome = s.one(Request::Allocate { lifetime: 600 }).unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Success(Success {
                relayed: Some(_),
                ..
            })
        ),
        "{outcome:?}"
    );
}

#[test]
fn a_forged_success_is_ignored_and_the_genuine_one_taken() {
    let mut fake = Fake::new(Script::default());
    let mut s = session(&mut fake, Some(alice()));
    s.challenge = Some(Challenge {
        realm: testkit::REALM.into(),
        nonce: "nonce-1".into(),
    });
    // The forgery must answer the request that will be sent: tid 1.
    let tid = {
        let mut t = [0xa5u8; 12];
        t[8..].copy_from_slice(&1u32.to_be_bytes());
        t
    };
    let req = proto::build_request(&Request::Refresh { lifetime: 600 }, tid, None).unwrap();
    let forged = testkit::success(&req, None, None, Some(1), Some(&mi_creds("alice", "guess")));
    s.link.noise = vec![forged];
    let outcome = s.one(Request::Refresh { lifetime: 600 }).unwrap();
    assert_eq!(
        outcome,
        Outcome::Success(Success {
            lifetime: Some(600),
            ..Success::default()
        })
    );
}

#[test]
fn a_401_makes_the_request_signed_with_the_challenge() {
    let mut fake = Fake::new(Script::default());
    let mut s = session(&mut fake, Some(alice()));
    assert!(matches!(
        s.one(Request::Allocate { lifetime: 600 }).unwrap(),
        Outcome::Success(_)
    ));
    assert_eq!(s.challenge().unwrap().nonce, "nonce-1");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].attribute::<Username>().is_err(), "first unsigned");
    assert_ne!(
        reqs[0].transaction_id(),
        reqs[1].transaction_id(),
        "a signed retry is a new transaction"
    );
    assert_eq!(reqs[1].attribute::<Nonce>().unwrap().nonce(), "nonce-1");
    assert!(
        reqs[1]
            .validate_integrity(&mi_creds("alice", "wonderland"))
            .is_ok()
    );
}

#[test]
fn a_stale_nonce_is_replaced_once() {
    let mut fake = Fake::new(Script::default());
    let old = Challenge {
        realm: testkit::REALM.into(),
        nonce: "nonce-0".into(),
    };
    let mut s = Session::new(&mut fake, server(), BUDGET, Some(alice()), Some(old));
    assert!(matches!(
        s.one(Request::Refresh { lifetime: 600 }).unwrap(),
        Outcome::Success(_)
    ));
    assert_eq!(s.challenge().unwrap().nonce, "nonce-2");
    let nonces: Vec<String> = fake
        .requests()
        .iter()
        .map(|m| m.attribute::<Nonce>().unwrap().nonce().to_string())
        .collect();
    assert_eq!(nonces, ["nonce-0", "nonce-2"]);

    let mut stubborn = Fake::new(Script {
        always_stale: true,
        ..Script::default()
    });
    let mut s = session(&mut stubborn, Some(alice()));
    let outcome = s.one(Request::Refresh { lifetime: 600 }).unwrap();
    assert!(matches!(outcome, Outcome::StaleNonce { .. }), "{outcome:?}");
    assert_eq!(stubborn.sent.len(), 3, "unsigned, signed, re-signed once");
}

#[test]
fn wrong_credentials_end_in_401_after_one_signed_try() {
    let mut fake = Fake::new(Script::default());
    let wrong = Credentials {
        username: "alice".into(),
        password: "guess".into(),
    };
    let outcome = session(&mut fake, Some(wrong))
        .one(Request::Allocate { lifetime: 600 })
        .unwrap();
    assert!(matches!(outcome, Outcome::Unauthorized(Some(_))));
    assert_eq!(fake.sent.len(), 2);
}

#[test]
fn without_credentials_a_401_is_final() {
    let mut fake = Fake::new(Script::default());
    let outcome = session(&mut fake, None)
        .one(Request::Allocate { lifetime: 600 })
        .unwrap();
    assert!(matches!(outcome, Outcome::Unauthorized(Some(_))));
    assert_eq!(fake.sent.len(), 1);
}

#[test]
fn many_requests_go_out_together_within_the_window() {
    let mut fake = Fake::new(Script::default());
    fake.rtt = ms(50);
    let ch = Challenge {
        realm: testkit::REALM.into(),
        nonce: "nonce-1".into(),
    };
    let peers: Vec<PeerChannel> = (0..40u16)
        .map(|i| PeerChannel {
            peer: SocketAddr::from(([203, 0, 113, i as u8], 4000)),
            channel: 0x4000 + i,
        })
        .collect();
    let reqs = crate::client::channel_binds(&peers);
    let mut s = Session::new(&mut fake, server(), BUDGET, Some(alice()), Some(ch));
    let outcomes = s.run(&reqs).unwrap();
    assert_eq!(outcomes.len(), 40);
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Success(_))));
    assert_eq!(fake.sent.len(), 40, "no retransmission needed");
    assert_eq!(fake.max_outstanding, WINDOW);
    // Three windows' worth of round trips, not forty.
    assert!(fake.now <= ms(150), "{:?}", fake.now);
}
