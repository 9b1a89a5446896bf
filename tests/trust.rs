//! The MOD tamper suite, modelled on the TUF conformance cases: signed
//! components go through the daemon's own admission path
//! (`daemon::load_one`), and every tampering or policy violation is refused
//! with its specific reason, before the MOD runs.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::HashSet;
use std::sync::Arc;

use p2pbroker::daemon::load_one;
use p2pbroker::netinfo::NetInfo;
use p2pbroker::policy::Policy;
use p2pbroker::trust::keys::{self, SecretKey};
use p2pbroker::trust::wasmsig::{self, SignatureData};

struct Keys {
    _dir: tempfile::TempDir,
    a: SecretKey,
    b: SecretKey,
    c: SecretKey,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let k = |n: &str| {
        let (_, sk, _) = keys::generate(&dir.path().join(n)).unwrap();
        keys::read_secret(&sk).unwrap()
    };
    let (a, b, c) = (k("a"), k("b"), k("c"));
    Keys { _dir: dir, a, b, c }
}

/// A policy trusting a and b, needing `threshold`, with `extra` appended
/// to the `[trust]` table and `mode` lines to the MOD's entry.
fn policy(k: &Keys, threshold: u32, extra: &str, mode: &str) -> Policy {
    let text = format!(
        "version = 1\n[trust]\nthreshold = {threshold}\n{extra}\n[trust.keys]\na = \"{}\"\nb = \"{}\"\n\
         [modes.direct]\ngrants = []\n{mode}\n\
         [modes.nat-pmp]\ngrants = [\"udp:send@gateway:5351\"]\n",
        k.a.public().hex(),
        k.b.public().hex()
    );
    Policy::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn admit(bytes: &[u8], p: &Policy) -> Result<String, String> {
    let (host, _) = harness::host();
    let none = HashSet::new();
    load_one(&host, bytes, &none, p, Arc::new(NetInfo::default()))
        .await
        .map(|m| m.name().to_string())
}

fn direct() -> Vec<u8> {
    harness::component("modes/direct")
}

fn signed(by: &[&SecretKey]) -> Vec<u8> {
    by.iter()
        .fold(direct(), |b, k| p2pbroker::trust::sign(&b, k).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_two_loads_and_fewer_is_refused() {
    let k = keys();
    let p = policy(&k, 2, "", "");
    assert_eq!(admit(&signed(&[&k.a, &k.b]), &p).await.unwrap(), "direct");
    let e = admit(&signed(&[&k.a]), &p).await.unwrap_err();
    assert!(
        e.contains("signed by 1 trusted key(s) [\"a\"], the policy requires 2"),
        "{e}"
    );
    let e = admit(&direct(), &p).await.unwrap_err();
    assert!(e.contains("signed by 0 trusted key(s)"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_keys_and_duplicate_signatures_do_not_count() {
    let k = keys();
    let p = policy(&k, 2, "", "");
    let e = admit(&signed(&[&k.a, &k.c]), &p).await.unwrap_err();
    assert!(
        e.contains("signed by 1 trusted key(s)"),
        "unknown key c: {e}"
    );
    // The same key's signature twice in the set counts once.
    let once = signed(&[&k.a]);
    let parsed = wasmsig::parse(&once).unwrap();
    let mut data: SignatureData = parsed.data.clone().unwrap();
    let dup = data.sets[0].signatures[0].clone();
    data.sets[0].signatures.push(dup);
    let doubled = wasmsig::embed(&once, &parsed, &data);
    let e = admit(&doubled, &p).await.unwrap_err();
    assert!(e.contains("signed by 1 trusted key(s)"), "duplicate: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_keys_and_hashes_are_refused() {
    let k = keys();
    let both = signed(&[&k.a, &k.b]);
    let p = policy(
        &k,
        2,
        &format!("revoked_keys = [\"{}\"]", k.b.public().id_hex()),
        "",
    );
    let e = admit(&both, &p).await.unwrap_err();
    assert!(e.contains("signed by 1 trusted key(s) [\"a\"]"), "{e}");
    // A revocation names the signed content: what the signatures cover.
    let content = hex::encode(p2pbroker::trust::admission::content_sha256(&both).unwrap());
    let p = policy(&k, 1, &format!("revoked_mods = [\"{content}\"]"), "");
    let e = admit(&both, &p).await.unwrap_err();
    assert_eq!(e, format!("component {content} is revoked by the policy"));
    // Appending a signature (or junk in the signature section) changes the
    // file's hash, not its content: the revocation still holds.
    let resigned = p2pbroker::trust::sign(&both, &k.c).unwrap();
    assert_ne!(p2pbroker::sha256(&resigned), p2pbroker::sha256(&both));
    let e = admit(&resigned, &p).await.unwrap_err();
    assert_eq!(e, format!("component {content} is revoked by the policy"));
    let parsed = wasmsig::parse(&both).unwrap();
    let mut data: SignatureData = parsed.data.clone().unwrap();
    data.sets[0].signatures[0].key_id.extend_from_slice(b"junk");
    let junk = wasmsig::embed(&both, &parsed, &data);
    assert_ne!(p2pbroker::sha256(&junk), p2pbroker::sha256(&both));
    let e = admit(&junk, &p).await.unwrap_err();
    assert_eq!(e, format!("component {content} is revoked by the policy"));
    // Revoking the file hash works too.
    let sha = hex::encode(p2pbroker::sha256(&both));
    let p = policy(&k, 1, &format!("revoked_mods = [\"{sha}\"]"), "");
    assert!(admit(&both, &p).await.unwrap_err().contains("is revoked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_flipped_byte_anywhere_is_refused() {
    let k = keys();
    let p = policy(&k, 1, "", "");
    let good = signed(&[&k.a]);
    assert!(admit(&good, &p).await.is_ok());
    let secs = wasmsig::sections(&good).unwrap();
    let sig = &secs[0];
    assert_eq!(sig.name.as_deref(), Some("signature"));
    let code = secs
        .iter()
        .filter(|s| s.id != 0)
        .max_by_key(|s| s.range.len())
        .unwrap();
    let other = secs.iter().rfind(|s| s.id != 0).unwrap();
    let custom = secs.iter().skip(1).find(|s| s.id == 0).unwrap();
    for (what, at) in [
        ("code", code.payload.start + code.payload.len() / 2),
        ("another section", other.payload.start),
        ("a custom section", custom.payload.end - 1),
        ("the signature itself", sig.payload.end - 1),
        ("the signer's key ID", sig.payload.end - 70),
        ("a signed hash", sig.payload.end - 90),
    ] {
        let mut t = good.clone();
        t[at] ^= 0x20;
        let e = admit(&t, &p).await.expect_err(what);
        assert!(
            e.contains("signed by 0 trusted key(s)") || e.contains("signature data"),
            "{what}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mod_asking_for_more_than_the_policy_grants_is_refused_by_name() {
    let k = keys();
    let p = policy(&k, 1, "", "");
    // nat-pmp's manifest asks for udp:send,receive@gateway:5351; the policy
    // grants send only.
    let pmp = p2pbroker::trust::sign(&harness::component("modes/nat-pmp"), &k.a).unwrap();
    let e = admit(&pmp, &p).await.unwrap_err();
    assert_eq!(
        e,
        "mode `nat-pmp`: the MOD asks for `udp:send,receive@gateway:5351`, which the policy does not grant"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_and_per_mod_signer_sets_apply_once_the_name_is_known() {
    let k = keys();
    let both = signed(&[&k.a, &k.b]);
    let p = policy(
        &k,
        1,
        "",
        "sha256 = \"00000000000000000000000000000000000000000000000000000000000000ff\"",
    );
    let e = admit(&both, &p).await.unwrap_err();
    assert!(e.contains("is not the pinned"), "{e}");
    let p = policy(&k, 1, "", "signers = [\"b\"]\nthreshold = 1");
    assert!(admit(&signed(&[&k.b]), &p).await.is_ok());
    let e = admit(&signed(&[&k.a]), &p).await.unwrap_err();
    assert!(
        e.contains("signed by 0 trusted key(s)"),
        "a does not count for direct: {e}"
    );
    // Unsigned and not allow-listed: refused even with threshold 0.
    let p = policy(&k, 0, "", "");
    let e = admit(&direct(), &p).await.unwrap_err();
    assert!(e.contains("not on the allow-list"), "{e}");
}
