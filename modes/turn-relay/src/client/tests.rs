use core::time::Duration;

use stun_types::attribute::Username;
use turn_types::attribute::Lifetime;

use super::*;
use crate::creds::{Credentials, Source};
use crate::proto::Challenge;
use crate::state::State;
use crate::testkit::{self, Fake, Script, alice, sa, server};

const BUDGET: Duration = Duration::from_millis(3000);

fn with<T>(
    script: Script,
    creds: Option<Credentials>,
    challenge: Option<Challenge>,
    f: impl FnOnce(&mut Session<'_, Fake>) -> T,
) -> (T, Fake) {
    let mut fake = Fake::new(script);
    let out = f(&mut Session::new(
        &mut fake,
        server(),
        BUDGET,
        creds,
        challenge,
    ));
    (out, fake)
}

fn challenge() -> Challenge {
    Challenge {
        realm: testkit::REALM.into(),
        nonce: "nonce-1".into(),
    }
}

#[test]
fn an_allocation_after_a_challenge_gives_the_relayed_address() {
    let (a, fake) = with(Script::default(), Some(alice()), None, |s| allocate(s, 600));
    assert_eq!(
        a.unwrap(),
        Allocation {
            relayed: testkit::relayed(),
            mapped: Some(testkit::reflexive()),
            lifetime: 600
        }
    );
    assert_eq!(fake.sent.len(), 2, "unsigned, then signed");
}

#[test]
fn lifetimes_are_clamped_to_what_servers_grant() {
    for (asked, sent) in [(1, 60), (600, 600), (100_000, 3600)] {
        let (_, fake) = with(Script::default(), Some(alice()), None, |s| {
            allocate(s, asked)
        });
        let last = fake.requests().pop().unwrap();
        assert_eq!(last.attribute::<Lifetime>().unwrap().seconds(), sent);
    }
    let (a, _) = with(
        Script {
            max_lifetime: 120,
            ..Script::default()
        },
        Some(alice()),
        None,
        |s| allocate(s, 3600),
    );
    assert_eq!(a.unwrap().lifetime, 120, "what the server granted");
}

#[test]
fn refused_credentials_name_the_user() {
    let wrong = Credentials {
        username: "alice".into(),
        password: "guess".into(),
    };
    let (a, _) = with(Script::default(), Some(wrong), None, |s| allocate(s, 600));
    assert!(matches!(
        a.unwrap_err(),
        ModeError::Denied(w) if w == "the TURN server refused the credentials of user alice"
    ));
    let (a, _) = with(Script::default(), None, None, |s| allocate(s, 600));
    let ModeError::Denied(why) = a.unwrap_err() else {
        panic!("denied")
    };
    assert!(why.contains("config has none"), "{why}");
}

#[test]
fn allocate_errors_map_to_the_contract() {
    let fail = |code: u16, why: &'static str| {
        with(
            Script {
                allocate_error: Some((code, why)),
                ..Script::default()
            },
            Some(alice()),
            None,
            |s| allocate(s, 600),
        )
        .0
        .unwrap_err()
    };
    assert!(matches!(
        fail(486, "Allocation Quota Reached"),
        ModeError::Unavailable(w) if w == "allocation quota reached (486)"
    ));
    assert!(
        matches!(fail(508, "Insufficient Capacity"), ModeError::Unavailable(w) if w.contains("508"))
    );
    assert!(matches!(fail(403, "Forbidden"), ModeError::Denied(w) if w.contains("403")));
    assert!(matches!(
        fail(442, "Unsupported Transport"),
        ModeError::Unsupported(_)
    ));
    assert!(
        matches!(fail(437, "Allocation Mismatch"), ModeError::Unavailable(w) if w.contains("437"))
    );
    assert!(
        matches!(fail(420, "Unknown\u{1b}[31m"), ModeError::Protocol(w) if w.contains("420: Unknown\\u{1b}[31m"))
    );
}

#[test]
fn silence_is_a_timeout() {
    let (a, _) = with(
        Script {
            drop_first: usize::MAX,
            ..Script::default()
        },
        Some(alice()),
        None,
        |s| allocate(s, 600),
    );
    assert!(matches!(a, Err(ModeError::Timeout(_))));
}

#[test]
fn refresh_grants_and_437_means_lost() {
    let (r, fake) = with(Script::default(), Some(alice()), Some(challenge()), |s| {
        refresh(s, 900)
    });
    assert_eq!(
        r.unwrap(),
        Refreshed {
            lifetime: 900,
            relayed: None
        }
    );
    assert_eq!(fake.sent.len(), 1, "signed at once with the kept nonce");
    let gone = Script {
        refresh_error: Some((437, "Allocation Mismatch")),
        ..Script::default()
    };
    let (r, _) = with(gone.clone(), Some(alice()), Some(challenge()), |s| {
        refresh(s, 900)
    });
    assert!(matches!(r, Err(ModeError::MappingLost(_))));
    let (d, fake) = with(gone, Some(alice()), Some(challenge()), delete);
    assert!(d.is_ok(), "deleting what is gone succeeds: {d:?}");
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.attribute::<Lifetime>().unwrap().seconds(), 0);
}

#[test]
fn a_refused_peer_is_denied_with_the_reason_escaped() {
    let peers = [
        PeerChannel {
            peer: sa("203.0.113.5:4000"),
            channel: 0x4000,
        },
        PeerChannel {
            peer: sa("10.0.0.5:4000"),
            channel: 0x4001,
        },
    ];
    let script = Script {
        refused_peers: vec![sa("10.0.0.5:4000")],
        ..Script::default()
    };
    let (b, _) = with(script, Some(alice()), Some(challenge()), |s| {
        bind(s, &peers)
    });
    let ModeError::Denied(why) = b.unwrap_err() else {
        panic!("denied")
    };
    assert!(why.contains("peer 10.0.0.5:4000"), "{why}");
    assert!(why.contains("Forbidden\\u{d}\\u{a}FAKE LOG LINE"), "{why}");
    let (b, fake) = with(Script::default(), Some(alice()), Some(challenge()), |s| {
        bind(s, &peers)
    });
    assert!(b.is_ok(), "{b:?}");
    assert_eq!(fake.sent.len(), 2);
}

#[test]
fn permissions_are_refreshed_per_ip_eight_to_a_request() {
    // 20 peers on 10 IPs (two ports each): 10 addresses, two requests.
    let peers: Vec<PeerChannel> = (0..20u16)
        .map(|i| PeerChannel {
            peer: sa(&format!("203.0.113.{}:{}", 10 + i / 2, 4000 + i % 2)),
            channel: 0x4000 + i,
        })
        .collect();
    let reqs = create_permissions(&peers);
    assert_eq!(reqs.len(), 2);
    let (r, fake) = with(Script::default(), Some(alice()), Some(challenge()), |s| {
        refresh_permissions(s, &peers)
    });
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(fake.sent.len(), 2, "two CreatePermissions, no ChannelBind");
    let mut ips = fake.permitted.clone();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 10);
    assert_eq!(fake.permitted.len(), 10, "each IP once");

    let script = Script {
        refused_peers: vec![sa("203.0.113.19:1")],
        ..Script::default()
    };
    let (r, _) = with(script, Some(alice()), Some(challenge()), |s| {
        refresh_permissions(s, &peers)
    });
    let ModeError::Denied(why) = r.unwrap_err() else {
        panic!("denied")
    };
    assert!(why.contains("203.0.113.19") && why.contains("403"), "{why}");
    let (r, fake) = with(Script::default(), Some(alice()), Some(challenge()), |s| {
        refresh_permissions(s, &[])
    });
    assert!(r.is_ok() && fake.sent.is_empty(), "no peers: no request");
}

#[test]
fn rest_credentials_allocate_and_the_state_keeps_no_secret() {
    let source = Source::Rest {
        user: "alice".into(),
        secret: "north-secret".into(),
        ttl_s: 86_400,
    };
    let creds = source.fresh(1_700_000_000).unwrap();
    let script = Script {
        accept: Some(Credentials {
            username: "1700086400:alice".into(),
            // Computed offline: base64(HMAC-SHA1("north-secret", user name)).
            password: "Nni2GlD6PVaoCP0Cx2DhLKDWjyY=".into(),
        }),
        ..Script::default()
    };
    let mut fake = Fake::new(script);
    let mut s = Session::new(&mut fake, server(), BUDGET, Some(creds), None);
    let a = allocate(&mut s, 600).unwrap();
    let st = State::new(server(), s.challenge(), s.username().unwrap(), a.lifetime);
    let signed = fake.requests().pop().unwrap();
    assert_eq!(
        signed.attribute::<Username>().unwrap().username(),
        "1700086400:alice"
    );
    let text = String::from_utf8(st.to_bytes()).unwrap();
    assert!(text.contains("\"username\":\"1700086400:alice\""), "{text}");
    assert!(text.contains("\"nonce\":\"nonce-1\""), "{text}");
    for secret in [
        "north-secret",
        "Nni2GlD6PVaoCP0Cx2DhLKDWjyY=",
        // The long-term key, MD5(user:realm:password) (computed offline).
        "247df1512c5c3bbe622e4dc72532dd70",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn a_granted_lifetime_of_zero_is_never_a_mapping() {
    let ended = Script {
        max_lifetime: 0,
        ..Script::default()
    };
    let (a, _) = with(ended.clone(), Some(alice()), None, |s| allocate(s, 600));
    assert!(matches!(a, Err(ModeError::Protocol(w)) if w.contains("LIFETIME 0")));
    let (r, _) = with(ended, Some(alice()), Some(challenge()), |s| refresh(s, 600));
    assert!(matches!(r, Err(ModeError::MappingLost(_))));
}
