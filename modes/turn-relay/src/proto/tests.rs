use hmac::{Hmac, Mac};
use sha1::Sha1;
use stun_types::attribute::{Fingerprint, MessageIntegrity};
use stun_types::message::{LongTermKeyCredentials, MessageIntegrityCredentials};

use super::*;
use crate::testkit::{self, REALM, error, mi_creds, sa};

const TID: Tid = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

fn auth() -> Auth {
    Auth {
        username: "alice".into(),
        password: "wonderland".into(),
        realm: REALM.into(),
        nonce: "nonce-1".into(),
    }
}

fn parsed(bytes: &[u8]) -> Message<'_> {
    // from_bytes also checks FINGERPRINT.
    Message::from_bytes(bytes).expect("a well-formed message")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_binding_request_is_a_header_and_a_fingerprint() {
    let b = build_request(&Request::Binding, TID, None).unwrap();
    assert_eq!(&b[..2], &[0, 1], "Binding request");
    assert_eq!(&b[4..8], &[0x21, 0x12, 0xa4, 0x42], "magic cookie");
    assert_eq!(&b[8..20], &TID);
    assert_eq!(b.len(), 20 + 8, "FINGERPRINT only");
    let m = parsed(&b);
    assert!(m.has_attribute(Fingerprint::TYPE));
    assert!(!m.has_attribute(MessageIntegrity::TYPE));
    assert_eq!(transaction_id(&b), Some(TID));
}

#[test]
fn an_unsigned_allocate_asks_for_udp_and_a_lifetime() {
    let b = build_request(&Request::Allocate { lifetime: 600 }, TID, None).unwrap();
    assert_eq!(&b[..2], &[0, 3], "Allocate request");
    let m = parsed(&b);
    assert_eq!(
        m.attribute::<RequestedTransport>().unwrap().protocol(),
        17,
        "UDP"
    );
    assert_eq!(m.attribute::<Lifetime>().unwrap().seconds(), 600);
    assert!(m.attribute::<Username>().is_err());
    assert!(!m.has_attribute(MessageIntegrity::TYPE));
}

#[test]
fn a_signed_request_carries_the_challenge_and_verifies_with_the_right_key_only() {
    let b = build_request(&Request::Allocate { lifetime: 600 }, TID, Some(&auth())).unwrap();
    let m = parsed(&b);
    assert_eq!(m.attribute::<Username>().unwrap().username(), "alice");
    assert_eq!(m.attribute::<Realm>().unwrap().realm(), REALM);
    assert_eq!(m.attribute::<Nonce>().unwrap().nonce(), "nonce-1");
    assert!(
        m.validate_integrity(&mi_creds("alice", "wonderland"))
            .is_ok()
    );
    assert!(m.validate_integrity(&mi_creds("alice", "wrong")).is_err());
    let other_realm: MessageIntegrityCredentials =
        LongTermKeyCredentials::new("alice".into(), "wonderland".into(), "other".into()).into();
    assert!(m.validate_integrity(&other_realm).is_err());
}

#[test]
fn message_integrity_matches_an_independent_hmac() {
    // RFC 8489 §14.5: HMAC-SHA1 keyed with MD5("alice:example.org:wonderland")
    // (computed offline with Python's hashlib) over the message up to the
    // attribute, its length field covering the attribute.
    let key = hex("72f86f2053703faa0f521ce71cfe6f59");
    let b = build_request(&Request::Refresh { lifetime: 0 }, TID, Some(&auth())).unwrap();
    let m = parsed(&b);
    let (offset, mi) = m.attribute_and_offset::<MessageIntegrity>().unwrap();
    let mut covered = b[..offset].to_vec();
    let len = (offset - 20 + 24) as u16;
    covered[2..4].copy_from_slice(&len.to_be_bytes());
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).unwrap();
    mac.update(&covered);
    assert_eq!(mac.finalize().into_bytes().as_slice(), mi.hmac());
    // And the library's key is the same MD5.
    assert_eq!(auth().key(), {
        let c = LongTermKeyCredentials::new("alice".into(), "wonderland".into(), REALM.into());
        c.make_key(IntegrityAlgorithm::Sha1)
    });
}

#[test]
fn refresh_and_channel_bind_carry_their_attributes() {
    let b = build_request(&Request::Refresh { lifetime: 0 }, TID, Some(&auth())).unwrap();
    assert_eq!(&b[..2], &[0, 4], "Refresh request");
    assert_eq!(parsed(&b).attribute::<Lifetime>().unwrap().seconds(), 0);

    for peer in [sa("203.0.113.5:4000"), sa("[2001:db8::5]:4000")] {
        let req = Request::ChannelBind {
            peer,
            channel: 0x4001,
        };
        let b = build_request(&req, TID, Some(&auth())).unwrap();
        assert_eq!(&b[..2], &[0, 9], "ChannelBind request");
        let m = parsed(&b);
        assert_eq!(m.attribute::<ChannelNumber>().unwrap().channel(), 0x4001);
        let id = m.transaction_id();
        assert_eq!(m.attribute::<XorPeerAddress>().unwrap().addr(id), peer);
        assert!(
            m.validate_integrity(&mi_creds("alice", "wonderland"))
                .is_ok()
        );
    }
}

#[test]
fn oversized_credentials_cannot_be_built() {
    let mut a = auth();
    a.username = "u".repeat(600);
    assert!(build_request(&Request::Binding, TID, Some(&a)).is_err());
}

fn request(method: Request) -> Vec<u8> {
    build_request(&method, TID, None).unwrap()
}

#[test]
fn a_success_gives_relayed_mapped_and_lifetime() {
    let req = request(Request::Allocate { lifetime: 600 });
    let resp = testkit::success(
        &req,
        Some(testkit::relayed()),
        Some(testkit::reflexive()),
        Some(600),
        None,
    );
    assert_eq!(
        parse_response(&resp, TID, ALLOCATE, None),
        Ok(Outcome::Success(Success {
            relayed: Some(testkit::relayed()),
            mapped: Some(testkit::reflexive()),
            lifetime: Some(600),
        }))
    );
}

#[test]
fn error_codes_are_typed() {
    let req = request(Request::Allocate { lifetime: 600 });
    let parse = |resp: Vec<u8>| parse_response(&resp, TID, ALLOCATE, None).unwrap();
    assert_eq!(
        parse(error(&req, 401, "Unauthorized", Some(REALM), Some("n1"))),
        Outcome::Unauthorized(Some(Challenge {
            realm: REALM.into(),
            nonce: "n1".into()
        }))
    );
    assert_eq!(
        parse(error(&req, 401, "Unauthorized", Some(REALM), None)),
        Outcome::Unauthorized(None)
    );
    assert_eq!(
        parse(error(&req, 438, "Stale Nonce", None, Some("n2"))),
        Outcome::StaleNonce {
            nonce: Some("n2".into()),
            realm: None
        }
    );
    assert_eq!(
        parse(error(&req, 437, "Allocation Mismatch", None, None)),
        Outcome::AllocationMismatch
    );
    assert_eq!(
        parse(error(&req, 486, "Allocation Quota Reached", None, None)),
        Outcome::QuotaReached
    );
    assert_eq!(
        parse(error(&req, 508, "Insufficient Capacity", None, None)),
        Outcome::InsufficientCapacity
    );
    assert_eq!(
        parse(error(&req, 403, "Forbidden IP", None, None)),
        Outcome::Forbidden("Forbidden IP".into())
    );
    assert_eq!(
        parse(error(
            &req,
            442,
            "Unsupported Transport Protocol",
            None,
            None
        )),
        Outcome::Error {
            code: 442,
            reason: "Unsupported Transport Protocol".into()
        }
    );
}

#[test]
fn garbage_truncation_and_broken_fingerprints_are_malformed() {
    let req = request(Request::Allocate { lifetime: 600 });
    let resp = testkit::success(&req, Some(testkit::relayed()), None, Some(600), None);
    let malformed = |data: &[u8]| {
        matches!(
            parse_response(data, TID, ALLOCATE, None),
            Err(Ignored::Malformed(_))
        )
    };
    assert!(malformed(b"hello, this is no STUN message"));
    assert!(malformed(&[]));
    assert!(malformed(&resp[..resp.len() - 1]), "truncated");
    assert!(malformed(&resp[..12]), "header cut");
    let mut flipped = resp.clone();
    flipped[24] ^= 0x01; // inside XOR-RELAYED-ADDRESS: FINGERPRINT breaks
    assert!(malformed(&flipped));
}

#[test]
fn other_transactions_methods_and_classes_are_not_ours() {
    let req = request(Request::Allocate { lifetime: 600 });
    let resp = testkit::success(&req, Some(testkit::relayed()), None, Some(600), None);
    let mut other = TID;
    other[11] ^= 1;
    assert_eq!(
        parse_response(&resp, other, ALLOCATE, None),
        Err(Ignored::NotOurs)
    );
    assert_eq!(
        parse_response(&resp, TID, REFRESH, None),
        Err(Ignored::NotOurs)
    );
    // Our own request echoed back is no response.
    assert_eq!(
        parse_response(&req, TID, ALLOCATE, None),
        Err(Ignored::NotOurs)
    );
}

#[test]
fn a_response_signed_with_another_key_is_discarded() {
    let req = build_request(&Request::Allocate { lifetime: 600 }, TID, Some(&auth())).unwrap();
    let key = auth().key();
    let forged = testkit::success(
        &req,
        Some(testkit::relayed()),
        None,
        Some(600),
        Some(&mi_creds("alice", "guess")),
    );
    assert_eq!(
        parse_response(&forged, TID, ALLOCATE, Some(&key)),
        Err(Ignored::BadIntegrity)
    );
    let genuine = testkit::success(
        &req,
        Some(testkit::relayed()),
        None,
        Some(600),
        Some(&mi_creds("alice", "wonderland")),
    );
    assert!(matches!(
        parse_response(&genuine, TID, ALLOCATE, Some(&key)),
        Ok(Outcome::Success(_))
    ));
    // Unsigned answers are taken (error answers are never signed).
    let unsigned = error(&req, 438, "Stale Nonce", None, Some("n2"));
    assert!(matches!(
        parse_response(&unsigned, TID, ALLOCATE, Some(&key)),
        Ok(Outcome::StaleNonce { .. })
    ));
}
