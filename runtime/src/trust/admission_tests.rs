//! Admission decisions over synthetic components: a component header, a
//! manifest section, and signatures made with throwaway keys.

use super::*;
use crate::trust::keys::{self, SecretKey};
use crate::trust::manifest::Manifest;

/// A component binary with `m` as its manifest (no code: admission never
/// needs any).
fn component(m: Option<Manifest>) -> Vec<u8> {
    let bin = b"\0asm\x0d\0\x01\0".to_vec();
    match m {
        Some(m) => manifest::append(&bin, &m),
        None => bin,
    }
}

fn named(name: &str, grants: &[&str]) -> Vec<u8> {
    component(Some(Manifest {
        optional_grants: Vec::new(),
        name: Some(name.into()),
        grants: grants.iter().map(|g| g.to_string()).collect(),
        limits: None,
    }))
}

fn key(dir: &tempfile::TempDir, name: &str) -> SecretKey {
    let (_, sk, _) = keys::generate(&dir.path().join(name)).unwrap();
    keys::read_secret(&sk).unwrap()
}

fn policy(text: &str) -> Policy {
    Policy::parse(&format!("version = 1\n{text}")).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(crate::sandbox::sha256(bytes))
}

fn content(bytes: &[u8]) -> String {
    hex::encode(content_sha256(bytes).unwrap())
}

fn listed(bytes: &[u8]) -> HashSet<String> {
    HashSet::from([sha(bytes)])
}

#[test]
fn a_listed_named_mod_gets_manifest_intersect_policy() {
    let bin = named("pcp", &["udp:send@gateway:5351"]);
    let p = policy("[modes.pcp]\ngrants = [\"udp:send,receive@gateway:5351\"]\n");
    let a = admit(&bin, &listed(&bin), &p).unwrap();
    assert_eq!(a.name, "pcp");
    assert_eq!(a.sha256, sha(&bin));
    let grants: Vec<String> = a.spec.grants.iter().map(|g| g.to_string()).collect();
    assert_eq!(grants, ["udp:send@gateway:5351"]);
    // Asking for more than the policy grants is refused, naming it.
    let greedy = named("pcp", &["udp:send@gateway:1-65535"]);
    let e = admit(&greedy, &listed(&greedy), &p).unwrap_err();
    assert!(matches!(e, Refusal::Grants { .. }), "{e}");
    assert!(e.to_string().contains("udp:send@gateway:1-65535"), "{e}");
}

#[test]
fn the_name_comes_from_the_signed_manifest_and_must_be_in_the_policy() {
    let p = policy("[modes.pcp]\n");
    for bin in [
        component(None),
        component(Some(Manifest {
            optional_grants: Vec::new(),
            name: None,
            grants: vec![],
            limits: None,
        })),
    ] {
        assert_eq!(
            admit(&bin, &listed(&bin), &p).unwrap_err(),
            Refusal::Unnamed
        );
    }
    let bin = named("stranger", &[]);
    assert_eq!(
        admit(&bin, &listed(&bin), &p).unwrap_err(),
        Refusal::NotInPolicy("stranger".into())
    );
    let a = admit(&named("pcp", &[]), &listed(&named("pcp", &[])), &p).unwrap();
    a.check_name("pcp").unwrap();
    let e = a.check_name("nat\npmp").unwrap_err();
    assert!(matches!(e, Refusal::NameMismatch { .. }));
    assert!(!e.to_string().contains('\n'), "escaped: {e}");
}

#[test]
fn an_unlisted_unpinned_unsigned_mod_is_not_allowed() {
    let bin = named("pcp", &[]);
    let p = policy("[modes.pcp]\n");
    let e = admit(&bin, &HashSet::new(), &p).unwrap_err();
    assert_eq!(e, Refusal::NotAllowed(sha(&bin)));
    // Listing either hash admits it.
    admit(&bin, &HashSet::from([content(&bin)]), &p).unwrap();
}

#[test]
fn a_revocation_names_the_content_so_a_new_signature_does_not_dodge_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key(&dir, "a"), key(&dir, "b"));
    let bin = crate::trust::sign(&named("pcp", &[]), &a).unwrap();
    let revoked = content(&bin);
    let p = policy(&format!(
        "[trust]\nrevoked_mods = [\"{revoked}\"]\n[modes.pcp]\n"
    ));
    let e = admit(&bin, &listed(&bin), &p).unwrap_err();
    assert_eq!(e, Refusal::Revoked(revoked.clone()));
    // Another signature appended: another file hash, the same content.
    let resigned = crate::trust::sign(&bin, &b).unwrap();
    assert_ne!(sha(&resigned), sha(&bin));
    assert_eq!(content(&resigned), revoked);
    let e = admit(&resigned, &listed(&resigned), &p).unwrap_err();
    assert_eq!(e, Refusal::Revoked(revoked));
    // A file hash may be revoked too.
    let p = policy(&format!(
        "[trust]\nrevoked_mods = [\"{}\"]\n[modes.pcp]\n",
        sha(&bin)
    ));
    assert!(matches!(
        admit(&bin, &listed(&bin), &p),
        Err(Refusal::Revoked(_))
    ));
}

#[test]
fn a_pin_names_the_content_and_survives_a_countersignature() {
    let dir = tempfile::tempdir().unwrap();
    let a = key(&dir, "a");
    let bin = named("pcp", &[]);
    let p = policy(&format!("[modes.pcp]\nsha256 = \"{}\"\n", content(&bin)));
    // Pinned: admitted without an allow-list entry, signed or not.
    admit(&bin, &HashSet::new(), &p).unwrap();
    let signed = crate::trust::sign(&bin, &a).unwrap();
    admit(&signed, &HashSet::new(), &p).unwrap();
    let other = named("pcp", &["udp:send@gateway:5351"]);
    let e = admit(&other, &listed(&other), &p).unwrap_err();
    assert!(matches!(e, Refusal::Pin { .. }), "{e}");
}

#[test]
fn thresholds_count_distinct_keys_and_per_mod_signer_sets() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (key(&dir, "a"), key(&dir, "b"), key(&dir, "c"));
    let keys = format!(
        "[trust.keys]\na = \"{}\"\nb = \"{}\"\nc = \"{}\"\n",
        a.public().hex(),
        b.public().hex(),
        c.public().hex()
    );
    let bin = crate::trust::sign(&named("pcp", &[]), &a).unwrap();
    let p = policy(&format!("[trust]\nthreshold = 2\n{keys}[modes.pcp]\n"));
    let e = admit(&bin, &HashSet::new(), &p).unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::BelowThreshold {
                have: 1,
                need: 2,
                ..
            }
        ),
        "{e}"
    );
    let both = crate::trust::sign(&bin, &b).unwrap();
    let ok = admit(&both, &HashSet::new(), &p).unwrap();
    assert_eq!(ok.signers, ["a", "b"]);
    // One key under two names is refused outright: it would count twice.
    let twice = format!(
        "version = 1\n[trust]\nthreshold = 2\n[trust.keys]\na = \"{0}\"\nalias = \"{0}\"\n",
        a.public().hex()
    );
    let e = Policy::parse(&twice).unwrap_err();
    assert!(e.to_string().contains("same public key"), "{e}");
    // A per-MOD signer set counts only its own keys.
    let p = policy(&format!(
        "[trust]\nthreshold = 1\n{keys}[modes.pcp]\nsigners = [\"c\"]\n"
    ));
    let e = admit(&both, &HashSet::new(), &p).unwrap_err();
    assert!(
        matches!(&e, Refusal::BelowThreshold { have: 0, mode: Some(m), .. } if m == "pcp"),
        "{e}"
    );
}
