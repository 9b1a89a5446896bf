//! Trust: signing keys and signed MODs.
//!
//! A MOD carries its signatures inside the component ([`wasmsig`], the
//! tool-conventions format wasmsign2 implements); several may coexist
//! (author, security team). [`sign`] adds one; [`verify`] says which of a
//! set of trusted keys signed exactly these bytes.

pub mod admission;
pub mod bundle;
pub mod keys;
pub mod manifest;
pub mod wasmsig;

use keys::{PublicKey, SecretKey};
use wasmsig::{ALG_ED25519, SigError, Signature, SignatureData, SignedHashes};

/// Why a component could not be signed or verified.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The binary or its signature data is malformed.
    #[error(transparent)]
    Format(#[from] SigError),
    /// This key already signed these bytes.
    #[error("key {0} has already signed this component")]
    AlreadySigned(String),
}

/// Sign `bin` with `sk`, keeping any signatures already there.
pub fn sign(bin: &[u8], sk: &SecretKey) -> Result<Vec<u8>, TrustError> {
    use ed25519_dalek::Signer;
    let p = wasmsig::parse(bin)?;
    let mut data = p.data.clone().unwrap_or_default();
    let pk = sk.public();
    let id = pk.id().to_vec();
    let sig = sk.key.sign(&wasmsig::signed_message(&p.hashes));
    let signature = Signature {
        key_id: id.clone(),
        alg: ALG_ED25519,
        sig: sig.to_bytes().to_vec(),
    };
    match data.sets.iter_mut().find(|s| s.hashes == p.hashes) {
        Some(set) if set.signatures.iter().any(|s| s.key_id == id) => {
            return Err(TrustError::AlreadySigned(pk.id_hex()));
        }
        Some(set) => set.signatures.push(signature),
        None => data.sets.push(SignedHashes {
            hashes: p.hashes.clone(),
            signatures: vec![signature],
        }),
    }
    Ok(wasmsig::embed(bin, &p, &data))
}

/// A signature found in a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The key ID the signature names (hex; empty if none).
    pub key_id: String,
    /// Whether it covers exactly the bytes present (no section added,
    /// removed or changed since).
    pub covers_content: bool,
    /// The trusted key that verified it, if any.
    pub verified_by: Option<PublicKey>,
}

/// Every signature in `bin`, checked against `trusted`. A component without
/// a signature section has none.
pub fn signers(bin: &[u8], trusted: &[PublicKey]) -> Result<Vec<Signer>, TrustError> {
    use ed25519_dalek::Signature as Ed;
    let p = wasmsig::parse(bin)?;
    let data = p.data.clone().unwrap_or(SignatureData::default());
    let mut out = Vec::new();
    for set in &data.sets {
        let covers = set.hashes == p.hashes;
        let msg = wasmsig::signed_message(&set.hashes);
        for s in &set.signatures {
            let verified_by = if covers && s.alg == ALG_ED25519 {
                let ed = <[u8; 64]>::try_from(s.sig.as_slice())
                    .ok()
                    .map(|b| Ed::from_bytes(&b));
                trusted.iter().copied().find(|k| {
                    (s.key_id.is_empty() || s.key_id == k.id())
                        && ed.is_some_and(|e| k.key.verify_strict(&msg, &e).is_ok())
                })
            } else {
                None
            };
            out.push(Signer {
                key_id: hex::encode(&s.key_id),
                covers_content: covers,
                verified_by,
            });
        }
    }
    Ok(out)
}

/// The distinct trusted keys that signed exactly `bin` (each key counts
/// once however many signatures it left).
pub fn verify(bin: &[u8], trusted: &[PublicKey]) -> Result<Vec<PublicKey>, TrustError> {
    let mut keys: Vec<PublicKey> = Vec::new();
    for s in signers(bin, trusted)? {
        if let Some(k) = s.verified_by
            && !keys.contains(&k)
        {
            keys.push(k);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 1, 0]);
        m.extend_from_slice(&[0, 5, 1, b'x', 1, 2, 3]);
        m
    }

    fn key(dir: &std::path::Path, name: &str) -> SecretKey {
        let (_, sk, _) = keys::generate(&dir.join(name)).unwrap();
        keys::read_secret(&sk).unwrap()
    }

    #[test]
    fn two_signers_coexist_and_each_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            key(dir.path(), "a"),
            key(dir.path(), "b"),
            key(dir.path(), "c"),
        );
        let once = sign(&module(), &a).unwrap();
        let twice = sign(&once, &b).unwrap();
        assert!(matches!(
            sign(&twice, &a),
            Err(TrustError::AlreadySigned(_))
        ));
        let trusted = [a.public(), b.public(), c.public()];
        let v = verify(&twice, &trusted).unwrap();
        assert_eq!(v, vec![a.public(), b.public()]);
        assert!(verify(&module(), &trusted).unwrap().is_empty());
        assert!(
            verify(&twice, &[c.public()]).unwrap().is_empty(),
            "unknown signers verify nothing"
        );
    }

    #[test]
    fn any_flipped_byte_breaks_or_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(dir.path(), "a");
        let signed = sign(&module(), &a).unwrap();
        let trusted = [a.public()];
        assert_eq!(verify(&signed, &trusted).unwrap().len(), 1);
        for i in 8..signed.len() {
            let mut t = signed.clone();
            t[i] ^= 0x01;
            let ok = matches!(verify(&t, &trusted), Ok(v) if !v.is_empty());
            assert!(!ok, "flipping byte {i} still verified");
        }
    }
}
