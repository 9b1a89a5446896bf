//! Signed policy bundles and the root of trust, as pure functions.
//!
//! A **bundle** is the exact policy bytes (`policy.toml`) plus a detached
//! signature file (`policy.toml.sig`): no canonicalisation, the bytes that
//! were signed are the bytes that are parsed. The **root** (`root.toml`) says
//! which keys may sign policies, how many must, its own version and expiry;
//! it rotates like TUF: root N+1 must be signed by a threshold of root N's
//! keys *and* a threshold of its own.
//!
//! Anti-rollback: a policy's `serial` must exceed the highest seen (kept by
//! the caller across restarts); the same serial is accepted only for the
//! same bytes. Freeze: expiry is checked against the time the update
//! started, not when it finished, so a slow server cannot stretch a
//! policy's life. Each key counts once however many signatures it left.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ed25519_dalek::Signer;
use serde::Deserialize;

use super::keys::{PublicKey, SecretKey};
use crate::sandbox::sha256;

/// Domain separation: a policy signature can never pass as a root's.
const POLICY_DOMAIN: &[u8] = b"p2pbroker policy v1\0";
const ROOT_DOMAIN: &[u8] = b"p2pbroker root v1\0";
/// Caps against absurd inputs (a policy is a few KiB).
pub const MAX_DOCUMENT: usize = 1 << 20;
/// Signature lines read.
pub const MAX_SIGNATURES: usize = 64;

/// Why a root or bundle was refused. The previous good state stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Larger than [`MAX_DOCUMENT`].
    #[error("{0} is {1} bytes, more than the {MAX_DOCUMENT} allowed")]
    TooLarge(&'static str, usize),
    /// The signature file is malformed.
    #[error("signature file line {0}: {1}")]
    SigFile(usize, String),
    /// Too few distinct trusted keys signed.
    #[error("{what} is signed by {have} trusted key(s), {need} required")]
    Threshold {
        /// `policy`, `root (old keys)`, `root (new keys)`.
        what: &'static str,
        /// Distinct valid signers.
        have: usize,
        /// Required.
        need: u32,
    },
    /// Not valid TOML of the expected shape.
    #[error("{0}: {1}")]
    Malformed(&'static str, String),
    /// Expired before the update started.
    #[error("{what} expired at {expires} (update started {started})")]
    Expired {
        /// What.
        what: &'static str,
        /// Its expiry.
        expires: String,
        /// When the update began.
        started: String,
    },
    /// An older serial than already applied.
    #[error("policy serial {got} is older than {have}, already applied (rollback)")]
    Rollback {
        /// Offered.
        got: u64,
        /// Highest seen.
        have: u64,
    },
    /// The same serial with other bytes.
    #[error("policy serial {0} was already applied with other content")]
    SameSerialOtherBytes(u64),
    /// Nothing new.
    #[error("policy serial {0} is already in force")]
    Unchanged(u64),
    /// A root update that does not follow the previous root.
    #[error("root version {got} does not follow {have} (must be exactly one more)")]
    RootVersion {
        /// Offered.
        got: u64,
        /// Current.
        have: u64,
    },
}

/// `root.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Monotonic root version.
    pub version: u64,
    /// RFC 3339 expiry.
    pub expires: String,
    /// Signatures from distinct keys a policy (and the next root) needs.
    pub threshold: u32,
    /// Policy-signing keys by name (64 hex digits).
    pub keys: BTreeMap<String, String>,
}

fn parse_time(what: &'static str, t: &str) -> Result<SystemTime, BundleError> {
    humantime::parse_rfc3339(t).map_err(|e| BundleError::Malformed(what, format!("`{t}`: {e}")))
}

fn check_fresh(what: &'static str, expires: &str, started: SystemTime) -> Result<(), BundleError> {
    if parse_time(what, expires)? <= started {
        return Err(BundleError::Expired {
            what,
            expires: expires.to_string(),
            started: humantime::format_rfc3339_seconds(started).to_string(),
        });
    }
    Ok(())
}

impl Root {
    /// Parse and validate root text.
    pub fn parse(text: &[u8]) -> Result<Root, BundleError> {
        if text.len() > MAX_DOCUMENT {
            return Err(BundleError::TooLarge("root", text.len()));
        }
        let s =
            std::str::from_utf8(text).map_err(|e| BundleError::Malformed("root", e.to_string()))?;
        let r: Root =
            toml::from_str(s).map_err(|e| BundleError::Malformed("root", e.to_string()))?;
        parse_time("root expires", &r.expires)?;
        let keys = r.public_keys()?;
        // Thresholds count distinct keys: one key under two names is one.
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].contains(k) {
                return Err(BundleError::Malformed(
                    "root",
                    format!("key {} is listed twice", k.id_hex()),
                ));
            }
        }
        if r.threshold == 0 || r.threshold as usize > r.keys.len() {
            return Err(BundleError::Malformed(
                "root",
                format!("threshold {} with {} key(s)", r.threshold, r.keys.len()),
            ));
        }
        Ok(r)
    }

    /// The keys, parsed.
    pub fn public_keys(&self) -> Result<Vec<PublicKey>, BundleError> {
        self.keys
            .iter()
            .map(|(n, k)| {
                PublicKey::from_bytes(k.as_bytes())
                    .map_err(|e| BundleError::Malformed("root", format!("key `{n}`: {e}")))
            })
            .collect()
    }
}

/// One line of a signature file: `ed25519 KEY_ID_HEX SIGNATURE_HEX`.
pub fn sign_line(domain_root: bool, doc: &[u8], sk: &SecretKey) -> String {
    let sig = sk.key.sign(&message(domain_root, doc));
    format!(
        "ed25519 {} {}\n",
        sk.public().id_hex(),
        hex::encode(sig.to_bytes())
    )
}

fn message(root: bool, doc: &[u8]) -> Vec<u8> {
    let mut m = if root { ROOT_DOMAIN } else { POLICY_DOMAIN }.to_vec();
    m.extend_from_slice(&sha256(doc));
    m
}

/// One signature line: the signer's key ID and the signature.
pub type SigLine = ([u8; 12], [u8; 64]);

/// Parse a signature file into (key ID, signature) pairs.
pub fn parse_sigs(text: &[u8]) -> Result<Vec<SigLine>, BundleError> {
    if text.len() > MAX_DOCUMENT {
        return Err(BundleError::TooLarge("signature file", text.len()));
    }
    let s = std::str::from_utf8(text).map_err(|_| BundleError::SigFile(0, "not UTF-8".into()))?;
    let mut out = Vec::new();
    for (i, line) in s.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if out.len() == MAX_SIGNATURES {
            return Err(BundleError::SigFile(
                i + 1,
                format!("more than {MAX_SIGNATURES} signatures"),
            ));
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| BundleError::SigFile(i + 1, why.to_string());
        let [alg, id, sig] = f.as_slice() else {
            return Err(bad("expected `ed25519 KEY_ID SIGNATURE`"));
        };
        if *alg != "ed25519" {
            return Err(bad("unknown algorithm"));
        }
        let id: [u8; 12] = hex::decode(id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("key ID is not 24 hex digits"))?;
        let sig: [u8; 64] = hex::decode(sig)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("signature is not 128 hex digits"))?;
        out.push((id, sig));
    }
    Ok(out)
}

/// The distinct keys of `keys` with a valid signature over `doc`.
fn valid_signers(
    root: bool,
    doc: &[u8],
    sigs: &[([u8; 12], [u8; 64])],
    keys: &[PublicKey],
) -> usize {
    let msg = message(root, doc);
    let mut distinct: Vec<&PublicKey> = Vec::new();
    for k in keys {
        if !distinct.contains(&k) {
            distinct.push(k);
        }
    }
    distinct
        .into_iter()
        .filter(|k| {
            sigs.iter().any(|(id, s)| {
                *id == k.id()
                    && k.key
                        .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(s))
                        .is_ok()
            })
        })
        .count()
}

/// Accept `new` as the successor of `current`: version exactly one more,
/// signed by a threshold of the old keys and a threshold of the new, and not
/// expired when the update started.
pub fn update_root(
    current: &Root,
    new_text: &[u8],
    sig_text: &[u8],
    started: SystemTime,
) -> Result<Root, BundleError> {
    let new = Root::parse(new_text)?;
    if new.version != current.version + 1 {
        return Err(BundleError::RootVersion {
            got: new.version,
            have: current.version,
        });
    }
    let sigs = parse_sigs(sig_text)?;
    for (what, root) in [("root (old keys)", current), ("root (new keys)", &new)] {
        let have = valid_signers(true, new_text, &sigs, &root.public_keys()?);
        if have < root.threshold as usize {
            return Err(BundleError::Threshold {
                what,
                have,
                need: root.threshold,
            });
        }
    }
    check_fresh("root", &new.expires, started)?;
    Ok(new)
}

/// What a policy bundle must say about itself besides the policy proper.
#[derive(Debug, Clone, Deserialize)]
struct Header {
    serial: Option<u64>,
    expires: Option<String>,
}

/// The anti-rollback record kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Seen {
    /// Highest root version accepted.
    pub root_version: u64,
    /// Highest policy serial applied.
    pub policy_serial: u64,
    /// sha256 (hex) of that policy's bytes.
    pub policy_sha256: String,
}

/// Check a policy bundle against `root` and what was seen before. On
/// success returns the policy text and its serial; the caller parses the
/// policy, applies it, and only then records the serial.
pub fn check_policy(
    root: &Root,
    seen: &Seen,
    policy: &[u8],
    sig_text: &[u8],
    started: SystemTime,
) -> Result<(String, u64), BundleError> {
    if policy.len() > MAX_DOCUMENT {
        return Err(BundleError::TooLarge("policy", policy.len()));
    }
    check_fresh("root", &root.expires, started)?;
    let sigs = parse_sigs(sig_text)?;
    let have = valid_signers(false, policy, &sigs, &root.public_keys()?);
    if have < root.threshold as usize {
        return Err(BundleError::Threshold {
            what: "policy",
            have,
            need: root.threshold,
        });
    }
    let text = std::str::from_utf8(policy)
        .map_err(|e| BundleError::Malformed("policy", e.to_string()))?
        .to_string();
    // Only the bundle fields here; the full policy is validated by the caller.
    #[derive(Deserialize)]
    struct Outer {
        #[serde(flatten)]
        h: Header,
        #[serde(flatten)]
        _rest: BTreeMap<String, toml::Value>,
    }
    let o: Outer =
        toml::from_str(&text).map_err(|e| BundleError::Malformed("policy", e.to_string()))?;
    let serial = o
        .h
        .serial
        .ok_or_else(|| BundleError::Malformed("policy", "a signed policy needs `serial`".into()))?;
    let expires = o.h.expires.ok_or_else(|| {
        BundleError::Malformed("policy", "a signed policy needs `expires`".into())
    })?;
    check_fresh("policy", &expires, started)?;
    let digest = hex::encode(sha256(policy));
    if serial < seen.policy_serial {
        return Err(BundleError::Rollback {
            got: serial,
            have: seen.policy_serial,
        });
    }
    if serial == seen.policy_serial && seen.policy_serial != 0 {
        return Err(if digest == seen.policy_sha256 {
            BundleError::Unchanged(serial)
        } else {
            BundleError::SameSerialOtherBytes(serial)
        });
    }
    Ok((text, serial))
}
