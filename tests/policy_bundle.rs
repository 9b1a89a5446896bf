//! Signed policy bundles and root rotation, modelled on the TUF
//! conformance cases: every bad update is refused with its own error, and
//! the caller's state (root, highest serial) is untouched by a refusal.

use std::time::{Duration, SystemTime};

use p2pbroker::trust::bundle::{
    BundleError, MAX_DOCUMENT, Root, Seen, check_policy, sign_line, update_root,
};
use p2pbroker::trust::keys::{self, SecretKey};

struct K {
    _dir: tempfile::TempDir,
    k: Vec<SecretKey>,
}

fn keys(n: usize) -> K {
    let dir = tempfile::tempdir().unwrap();
    let k = (0..n)
        .map(|i| {
            let (_, sk, _) = keys::generate(&dir.path().join(format!("k{i}"))).unwrap();
            keys::read_secret(&sk).unwrap()
        })
        .collect();
    K { _dir: dir, k }
}

fn root_text(version: u64, threshold: u32, ks: &[&SecretKey], expires: &str) -> String {
    let mut s =
        format!("version = {version}\nexpires = \"{expires}\"\nthreshold = {threshold}\n[keys]\n");
    for (i, k) in ks.iter().enumerate() {
        s.push_str(&format!("k{i} = \"{}\"\n", k.public().hex()));
    }
    s
}

const LATER: &str = "2099-01-01T00:00:00Z";

fn policy(serial: u64, expires: &str) -> String {
    format!(
        "version = 1\nserial = {serial}\nissued_at = \"2026-11-25T00:00:00Z\"\nexpires = \"{expires}\"\n[modes.direct]\ngrants = []\n"
    )
}

fn sigs(doc: &str, by: &[&SecretKey], root: bool) -> String {
    by.iter()
        .map(|k| sign_line(root, doc.as_bytes(), k))
        .collect()
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn a_policy_signed_by_the_threshold_is_accepted_and_parses() {
    let k = keys(3);
    let root =
        Root::parse(root_text(1, 2, &[&k.k[0], &k.k[1], &k.k[2]], LATER).as_bytes()).unwrap();
    let p = policy(5, LATER);
    let (text, serial) = check_policy(
        &root,
        &Seen::default(),
        p.as_bytes(),
        sigs(&p, &[&k.k[0], &k.k[2]], false).as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(serial, 5);
    let parsed = p2pbroker::policy::Policy::parse(&text).unwrap();
    assert_eq!(parsed.serial, Some(5));
}

#[test]
fn below_threshold_unknown_keys_and_duplicates_are_refused() {
    let k = keys(3);
    let root = Root::parse(root_text(1, 2, &[&k.k[0], &k.k[1]], LATER).as_bytes()).unwrap();
    let p = policy(1, LATER);
    let threshold = |have| BundleError::Threshold {
        what: "policy",
        have,
        need: 2,
    };
    let one = sigs(&p, &[&k.k[0]], false);
    assert_eq!(
        check_policy(&root, &Seen::default(), p.as_bytes(), one.as_bytes(), now()),
        Err(threshold(1))
    );
    // The same key's line twice counts once.
    let twice = format!("{one}{one}");
    assert_eq!(
        check_policy(
            &root,
            &Seen::default(),
            p.as_bytes(),
            twice.as_bytes(),
            now()
        ),
        Err(threshold(1))
    );
    // A key the root does not list counts for nothing.
    let stranger = sigs(&p, &[&k.k[0], &k.k[2]], false);
    assert_eq!(
        check_policy(
            &root,
            &Seen::default(),
            p.as_bytes(),
            stranger.as_bytes(),
            now()
        ),
        Err(threshold(1))
    );
    // A root signature is not a policy signature (domain separation).
    let as_root = sigs(&p, &[&k.k[0], &k.k[1]], true);
    assert_eq!(
        check_policy(
            &root,
            &Seen::default(),
            p.as_bytes(),
            as_root.as_bytes(),
            now()
        ),
        Err(threshold(0))
    );
    // Other bytes than were signed.
    let good = sigs(&p, &[&k.k[0], &k.k[1]], false);
    let edited = p.replace("grants = []", "grants = [\"udp:send@gateway:5351\"]");
    assert_eq!(
        check_policy(
            &root,
            &Seen::default(),
            edited.as_bytes(),
            good.as_bytes(),
            now()
        ),
        Err(threshold(0))
    );
}

#[test]
fn rollback_same_serial_and_freeze_are_refused() {
    let k = keys(1);
    let root = Root::parse(root_text(1, 1, &[&k.k[0]], LATER).as_bytes()).unwrap();
    let p7 = policy(7, LATER);
    let sha7 = hex::encode(p2pbroker::sha256(p7.as_bytes()));
    let seen = Seen {
        root_version: 1,
        policy_serial: 7,
        policy_sha256: sha7,
    };
    let p6 = policy(6, LATER);
    assert_eq!(
        check_policy(
            &root,
            &seen,
            p6.as_bytes(),
            sigs(&p6, &[&k.k[0]], false).as_bytes(),
            now()
        ),
        Err(BundleError::Rollback { got: 6, have: 7 })
    );
    assert_eq!(
        check_policy(
            &root,
            &seen,
            p7.as_bytes(),
            sigs(&p7, &[&k.k[0]], false).as_bytes(),
            now()
        ),
        Err(BundleError::Unchanged(7))
    );
    let other7 = p7.replace("[modes.direct]", "# other bytes\n[modes.direct]");
    assert_eq!(
        check_policy(
            &root,
            &seen,
            other7.as_bytes(),
            sigs(&other7, &[&k.k[0]], false).as_bytes(),
            now()
        ),
        Err(BundleError::SameSerialOtherBytes(7))
    );
    // Freeze: expired at the moment the update started, even if valid a second before.
    let soon = humantime::format_rfc3339_seconds(now() + Duration::from_secs(60)).to_string();
    let p8 = policy(8, &soon);
    let started = now() + Duration::from_secs(120);
    let e = check_policy(
        &root,
        &seen,
        p8.as_bytes(),
        sigs(&p8, &[&k.k[0]], false).as_bytes(),
        started,
    )
    .unwrap_err();
    assert!(
        matches!(e, BundleError::Expired { what: "policy", .. }),
        "{e}"
    );
    // An expired root signs nothing.
    let old_root =
        Root::parse(root_text(1, 1, &[&k.k[0]], "2020-01-01T00:00:00Z").as_bytes()).unwrap();
    let p9 = policy(9, LATER);
    let e = check_policy(
        &old_root,
        &seen,
        p9.as_bytes(),
        sigs(&p9, &[&k.k[0]], false).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(e, BundleError::Expired { what: "root", .. }),
        "{e}"
    );
}

#[test]
fn root_rotation_needs_old_and_new_keys() {
    let k = keys(4);
    let (old_a, old_b, new_c, new_d) = (&k.k[0], &k.k[1], &k.k[2], &k.k[3]);
    let r1 = Root::parse(root_text(1, 2, &[old_a, old_b], LATER).as_bytes()).unwrap();
    let r2 = root_text(2, 2, &[new_c, new_d], LATER);
    let by = |ks: &[&SecretKey]| sigs(&r2, ks, true);
    let old_only =
        update_root(&r1, r2.as_bytes(), by(&[old_a, old_b]).as_bytes(), now()).unwrap_err();
    assert_eq!(
        old_only,
        BundleError::Threshold {
            what: "root (new keys)",
            have: 0,
            need: 2
        }
    );
    let new_only =
        update_root(&r1, r2.as_bytes(), by(&[new_c, new_d]).as_bytes(), now()).unwrap_err();
    assert_eq!(
        new_only,
        BundleError::Threshold {
            what: "root (old keys)",
            have: 0,
            need: 2
        }
    );
    let accepted = update_root(
        &r1,
        r2.as_bytes(),
        by(&[old_a, old_b, new_c, new_d]).as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(accepted.version, 2);
    // Skipping a version, or replaying the same one, is refused.
    let r3 = root_text(3, 2, &[new_c, new_d], LATER);
    let e = update_root(
        &r1,
        r3.as_bytes(),
        sigs(&r3, &[old_a, old_b, new_c, new_d], true).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert_eq!(e, BundleError::RootVersion { got: 3, have: 1 });
    let e = update_root(
        &accepted,
        r2.as_bytes(),
        by(&[old_a, old_b, new_c, new_d]).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert_eq!(e, BundleError::RootVersion { got: 2, have: 2 });
}

#[test]
fn malformed_documents_and_absurd_sizes_are_refused() {
    let k = keys(1);
    let root = Root::parse(root_text(1, 1, &[&k.k[0]], LATER).as_bytes()).unwrap();
    let bad_toml = "version = 1\nserial = \n";
    let e = check_policy(
        &root,
        &Seen::default(),
        bad_toml.as_bytes(),
        sigs(bad_toml, &[&k.k[0]], false).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, BundleError::Malformed("policy", _)), "{e}");
    let no_serial = "version = 1\nexpires = \"2099-01-01T00:00:00Z\"\n";
    let e = check_policy(
        &root,
        &Seen::default(),
        no_serial.as_bytes(),
        sigs(no_serial, &[&k.k[0]], false).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs `serial`"), "{e}");
    let huge = vec![b'#'; MAX_DOCUMENT + 1];
    assert_eq!(
        check_policy(&root, &Seen::default(), &huge, b"", now()),
        Err(BundleError::TooLarge("policy", MAX_DOCUMENT + 1))
    );
    let p = policy(1, LATER);
    for garbage in ["ed25519 zz 00\n", "rsa 00 00\n", "just words\n"] {
        let e = check_policy(
            &root,
            &Seen::default(),
            p.as_bytes(),
            garbage.as_bytes(),
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, BundleError::SigFile(1, _)), "{garbage}: {e}");
    }
    assert!(Root::parse(b"version = 1\nexpires = \"never\"\nthreshold = 1\n[keys]\n").is_err());
    assert!(
        Root::parse(root_text(1, 2, &[&k.k[0]], LATER).as_bytes()).is_err(),
        "threshold above key count"
    );
    // An unknown field in a signed policy is refused by the policy parser, by name.
    let extra = format!("{}colour = 1\n", policy(2, LATER)).replace(
        "[modes.direct]\ngrants = []\ncolour = 1\n",
        "colour = 1\n[modes.direct]\ngrants = []\n",
    );
    let (text, _) = check_policy(
        &root,
        &Seen::default(),
        extra.as_bytes(),
        sigs(&extra, &[&k.k[0]], false).as_bytes(),
        now(),
    )
    .unwrap();
    let e = p2pbroker::policy::Policy::parse(&text).unwrap_err();
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
}

#[test]
fn a_signature_repeated_many_times_counts_once_on_every_threshold_path() {
    let k = keys(4);
    let (a, b, c, d) = (&k.k[0], &k.k[1], &k.k[2], &k.k[3]);
    // A policy: one key's line five times, and its key ID with a bad
    // signature besides, is one signer.
    let root = Root::parse(root_text(1, 2, &[a, b], LATER).as_bytes()).unwrap();
    let p = policy(1, LATER);
    let line = sigs(&p, &[a], false);
    let bogus = format!("ed25519 {} {}\n", a.public().id_hex(), "00".repeat(64));
    let many = format!("{}{bogus}", line.repeat(5));
    assert_eq!(
        check_policy(
            &root,
            &Seen::default(),
            p.as_bytes(),
            many.as_bytes(),
            now()
        ),
        Err(BundleError::Threshold {
            what: "policy",
            have: 1,
            need: 2
        })
    );
    // A root rotation: repeats count once for the old keys and for the new.
    let r2 = root_text(2, 2, &[c, d], LATER);
    let by = |ks: &[&SecretKey]| sigs(&r2, ks, true);
    let old_repeated = format!("{}{}", by(&[a]).repeat(4), by(&[c, d]));
    assert_eq!(
        update_root(&root, r2.as_bytes(), old_repeated.as_bytes(), now()),
        Err(BundleError::Threshold {
            what: "root (old keys)",
            have: 1,
            need: 2
        })
    );
    let new_repeated = format!("{}{}", by(&[a, b]), by(&[d]).repeat(4));
    assert_eq!(
        update_root(&root, r2.as_bytes(), new_repeated.as_bytes(), now()),
        Err(BundleError::Threshold {
            what: "root (new keys)",
            have: 1,
            need: 2
        })
    );
    // A key in both roots signs once and counts once in each.
    let r2_shared = root_text(2, 2, &[a, c], LATER);
    let shared = sigs(&r2_shared, &[a, a, a, c], true);
    assert_eq!(
        update_root(&root, r2_shared.as_bytes(), shared.as_bytes(), now()),
        Err(BundleError::Threshold {
            what: "root (old keys)",
            have: 1,
            need: 2
        })
    );
    let enough = sigs(&r2, &[a, b, c, d], true);
    assert_eq!(
        update_root(&root, r2.as_bytes(), enough.as_bytes(), now())
            .unwrap()
            .version,
        2
    );
}

#[test]
fn a_root_listing_one_key_under_two_names_is_refused() {
    let k = keys(2);
    let (a, b) = (&k.k[0], &k.k[1]);
    let twice = format!(
        "version = 1\nexpires = \"{LATER}\"\nthreshold = 2\n[keys]\nalice = \"{0}\"\nalias = \"{0}\"\n",
        a.public().hex()
    );
    let e = Root::parse(twice.as_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("key {} is listed twice", a.public().id_hex())),
        "{e}"
    );
    // The same key in upper case hex is the same key.
    let shouting = format!(
        "version = 1\nexpires = \"{LATER}\"\nthreshold = 2\n[keys]\nalice = \"{}\"\nalias = \"{}\"\n",
        a.public().hex(),
        a.public().hex().to_uppercase()
    );
    assert!(Root::parse(shouting.as_bytes()).is_err());
    // Nor can a rotation bring one in: root 2 listing a twice is refused
    // even when signed by every key involved.
    let root = Root::parse(root_text(1, 1, &[a, b], LATER).as_bytes()).unwrap();
    let r2 = twice.replace("version = 1", "version = 2");
    let e = update_root(
        &root,
        r2.as_bytes(),
        sigs(&r2, &[a, b], true).as_bytes(),
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, BundleError::Malformed("root", _)), "{e}");
    // A second encoding of a point (y + p for a small y) is not a second key.
    let mut other_encoding = [0xffu8; 32];
    other_encoding[0] = 0xed + 3;
    other_encoding[31] = 0x7f;
    let odd = format!(
        "version = 1\nexpires = \"{LATER}\"\nthreshold = 1\n[keys]\nodd = \"{}\"\n",
        hex::encode(other_encoding)
    );
    let e = Root::parse(odd.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("canonical"), "{e}");
}
