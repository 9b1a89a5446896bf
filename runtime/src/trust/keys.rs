//! Ed25519 signing keys in the files wasmsign2 reads: a public key is
//! `0x01 ‖ pk` (33 bytes), a key pair `0x81 ‖ sk ‖ pk` (65 bytes). A key's
//! ID is derived from the public key as wasmsign2 derives its default key
//! ID — the first 12 bytes of HMAC-SHA256 keyed with the public key over
//! `"key_id"` — so each tool finds the other's signatures by key ID. It is
//! shown as 24 hex digits and written into each signature the key makes.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

const PK_TAG: u8 = 0x01;
const KP_TAG: u8 = 0x81;

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Refusing to overwrite a key.
    #[error("{0} exists: refusing to overwrite a key")]
    Exists(String),
    /// The file could not be read (the text names it).
    #[error("{0}")]
    Read(String),
    /// Not a key file of the expected kind.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A secret key readable by others.
    #[error("{0}: a secret key must be readable by its owner only (chmod 600)")]
    Permissions(String),
    /// No randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A public key with its ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    /// The Ed25519 key.
    pub key: VerifyingKey,
}

impl PublicKey {
    /// The key's 12-byte ID.
    pub fn id(&self) -> [u8; 12] {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.key.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"key_id");
        mac.finalize().into_bytes()[..12]
            .try_into()
            .expect("12 bytes")
    }

    /// The ID as 24 hex digits.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id())
    }

    /// The public key as 64 hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// Parse 32 raw bytes, the 33-byte file form, or 64 hex digits.
    pub fn from_bytes(b: &[u8]) -> Result<PublicKey, String> {
        let text = std::str::from_utf8(b).ok().map(str::trim);
        let raw: Vec<u8> = match (b.len(), text) {
            (33, _) if b[0] == PK_TAG => b[1..].to_vec(),
            (32, _) => b.to_vec(),
            (_, Some(t)) if t.len() == 64 => hex::decode(t).map_err(|e| e.to_string())?,
            _ => return Err(
                "not an Ed25519 public key (33-byte wasmsign2 file, 32 raw bytes or 64 hex digits)"
                    .into(),
            ),
        };
        let arr: [u8; 32] = raw.try_into().map_err(|_| "wrong length".to_string())?;
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|e| format!("not a valid Ed25519 point: {e}"))?;
        // Thresholds count distinct keys by their bytes: a point must have
        // one encoding only, or one signer could be listed as two.
        if key.to_edwards().compress().to_bytes() != arr {
            return Err("not the canonical encoding of its Ed25519 point".into());
        }
        // A small-order point verifies forged signatures; it is nobody's key.
        if key.is_weak() {
            return Err("a weak (small-order) Ed25519 point, refused".into());
        }
        Ok(PublicKey { key })
    }
}

/// A signing key read from its file.
pub struct SecretKey {
    /// The Ed25519 signing key.
    pub key: SigningKey,
}

impl SecretKey {
    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Generate a key pair: `OUT.key` (owner-only, never overwritten) and
/// `OUT.pub`. Returns the public key.
pub fn generate(out: &Path) -> Result<(PublicKey, PathBuf, PathBuf), KeyError> {
    let secret_path = out.with_extension("key");
    let public_path = out.with_extension("pub");
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(KeyError::Exists(p.display().to_string()));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let sk = SigningKey::from_bytes(&seed);
    let pk = PublicKey {
        key: sk.verifying_key(),
    };
    let mut kp = vec![KP_TAG];
    kp.extend_from_slice(&sk.to_bytes());
    kp.extend_from_slice(pk.key.as_bytes());
    // create_new: a race with another writer fails instead of clobbering.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .map_err(io(&secret_path))?;
    f.write_all(&kp)
        .and_then(|()| f.sync_all())
        .map_err(io(&secret_path))?;
    let mut pubfile = vec![PK_TAG];
    pubfile.extend_from_slice(pk.key.as_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&public_path)
        .and_then(|mut f| f.write_all(&pubfile))
        .map_err(io(&public_path))?;
    Ok((pk, secret_path, public_path))
}

/// A key file's bytes (a key file is at most 65 bytes; anything larger or
/// not a regular file is refused before it is read).
fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    // The file error names the file already.
    crate::files::read_document(path, 4096, crate::files::Links::Follow)
        .map_err(|e| KeyError::Read(e.to_string()))
}

/// Read a public key file (or a secret key file's public half).
pub fn read_public(path: &Path) -> Result<PublicKey, KeyError> {
    let b = read_key_file(path)?;
    if b.len() == 65 && b[0] == KP_TAG {
        return PublicKey::from_bytes(&b[33..]).map_err(|why| KeyError::Format {
            path: path.display().to_string(),
            why,
        });
    }
    PublicKey::from_bytes(&b).map_err(|why| KeyError::Format {
        path: path.display().to_string(),
        why,
    })
}

/// Read a secret key file; refuses one that others can read.
pub fn read_secret(path: &Path) -> Result<SecretKey, KeyError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Permissions(path.display().to_string()));
    }
    let b = read_key_file(path)?;
    let format = |why: &str| KeyError::Format {
        path: path.display().to_string(),
        why: why.into(),
    };
    if b.len() != 65 || b[0] != KP_TAG {
        return Err(format(
            "not an Ed25519 key pair file (65 bytes starting 0x81)",
        ));
    }
    let sk = SigningKey::from_bytes(&b[1..33].try_into().expect("32 bytes"));
    if sk.verifying_key().as_bytes() != &b[33..] {
        return Err(format("the public half does not match the secret key"));
    }
    Ok(SecretKey { key: sk })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_read_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("team");
        let (pk, sk_path, pk_path) = generate(&out).unwrap();
        let mode = std::fs::metadata(&sk_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_public(&pk_path).unwrap(), pk);
        assert_eq!(read_public(&sk_path).unwrap(), pk);
        assert_eq!(read_secret(&sk_path).unwrap().public(), pk);
        assert!(matches!(generate(&out), Err(KeyError::Exists(_))));
        assert_eq!(pk.id_hex().len(), 24);
    }

    #[test]
    fn loose_permissions_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, sk_path, pk_path) = generate(&dir.path().join("k")).unwrap();
        std::fs::set_permissions(&sk_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_secret(&sk_path),
            Err(KeyError::Permissions(_))
        ));
        assert!(matches!(
            read_secret(&pk_path),
            Err(KeyError::Permissions(_)) | Err(KeyError::Format { .. })
        ));
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(matches!(read_public(&junk), Err(KeyError::Format { .. })));
        let hexkey = dir.path().join("hex");
        let pk = read_public(&pk_path).unwrap();
        std::fs::write(&hexkey, pk.hex()).unwrap();
        assert_eq!(read_public(&hexkey).unwrap(), pk);
    }

    /// `y + p` little-endian: another encoding of the point with small
    /// coordinate `y` (< 19), which a lax decoder reduces to `y`.
    fn non_canonical(y: u8) -> [u8; 32] {
        let mut b = [0xff; 32];
        b[0] = 0xed + y;
        b[31] = 0x7f;
        b
    }

    #[test]
    fn one_point_has_one_encoding_and_weak_points_are_refused() {
        // A point of large order whose y is small has a second encoding; if
        // both were accepted, one key could be listed as two distinct keys.
        let y = (0u8..19)
            .find(|y| {
                let mut b = [0u8; 32];
                b[0] = *y;
                VerifyingKey::from_bytes(&b).is_ok_and(|k| !k.is_weak())
            })
            .expect("a strong point with a small y");
        let mut canonical = [0u8; 32];
        canonical[0] = y;
        assert!(PublicKey::from_bytes(&canonical).is_ok());
        let e = PublicKey::from_bytes(&non_canonical(y)).unwrap_err();
        assert!(e.contains("not the canonical encoding"), "{e}");
        // The identity (y = 1), a small-order point: nobody's key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let e = PublicKey::from_bytes(&identity).unwrap_err();
        assert!(e.contains("weak"), "{e}");
    }
}
