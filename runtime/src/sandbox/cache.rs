//! On-disk cache of compiled MODs.
//!
//! `Component::deserialize` runs native code from the file it is given, so
//! the cache only ever hands it bytes the broker itself wrote:
//!
//! - the cache folder must belong to the broker's user and be writable by
//!   nobody else, or the cache is not used at all;
//! - each entry is keyed by (component sha256, engine compatibility hash);
//! - each entry carries an HMAC-SHA256 under a per-installation key kept in
//!   the folder (mode 0600), over the header and the compiled bytes.
//!
//! A file that fails any check (foreign, truncated, corrupt, other engine) is
//! deleted and the component recompiled; it is never trusted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"P2PBCC01";
const KEY_FILE: &str = "cache.key";
const HEADER_LEN: usize = 8 + 32 + 32 + 8;
const MAC_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// A usable cache folder with its key.
pub struct Cache {
    dir: PathBuf,
    key: [u8; 32],
}

/// Why a cache entry was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// No entry for this key.
    Missing,
    /// The entry failed a check; the reason says which. It was deleted.
    Discarded(String),
}

impl Cache {
    /// Open (creating if needed) the cache at `dir`.
    ///
    /// Fails when the folder is not exclusively the broker's: the caller
    /// then runs without a cache.
    pub fn open(dir: &Path) -> std::io::Result<Cache> {
        fs::create_dir_all(dir)?;
        let meta = fs::metadata(dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "cache folder {} must be owned by uid {uid} and not writable by group or others",
                dir.display()
            )));
        }
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    fn path(&self, sha256: &[u8; 32], compat: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(sha256),
            hex::encode(&compat[..8])
        ))
    }

    /// The compiled bytes for this key, if a valid entry exists.
    pub fn get(&self, sha256: &[u8; 32], compat: &[u8; 32]) -> Result<Vec<u8>, Reject> {
        let path = self.path(sha256, compat);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(_) => return Err(Reject::Missing),
        };
        match self.verify(&data, sha256, compat) {
            Ok(()) => {
                // Hand over the payload without copying it.
                let mut data = data;
                data.drain(..HEADER_LEN + MAC_LEN);
                Ok(data)
            }
            Err(reason) => {
                let _ = fs::remove_file(&path);
                Err(Reject::Discarded(reason))
            }
        }
    }

    fn verify(&self, data: &[u8], sha256: &[u8; 32], compat: &[u8; 32]) -> Result<(), String> {
        if data.len() < HEADER_LEN + MAC_LEN {
            return Err("truncated header".into());
        }
        let (header, rest) = data.split_at(HEADER_LEN);
        let (mac, payload) = rest.split_at(MAC_LEN);
        if &header[..8] != MAGIC {
            return Err("not a broker cache file".into());
        }
        if &header[8..40] != sha256 || &header[40..72] != compat {
            return Err("entry is for another component or engine".into());
        }
        let len = u64::from_le_bytes(header[72..80].try_into().expect("8 bytes"));
        if len != payload.len() as u64 {
            return Err("length mismatch".into());
        }
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(header);
        m.update(payload);
        m.verify_slice(mac)
            .map_err(|_| "authentication failed (corrupt or foreign file)".to_string())
    }

    /// Store compiled bytes for this key (atomically: write then rename).
    pub fn put(
        &self,
        sha256: &[u8; 32],
        compat: &[u8; 32],
        compiled: &[u8],
    ) -> std::io::Result<()> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(sha256);
        header.extend_from_slice(compat);
        header.extend_from_slice(&(compiled.len() as u64).to_le_bytes());
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(&header);
        m.update(compiled);
        let mac = m.finalize().into_bytes();

        let path = self.path(sha256, compat);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&header)?;
        f.write_all(&mac)?;
        f.write_all(compiled)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    }
}

fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    match fs::read(path) {
        Ok(k) if k.len() == 32 => return Ok(k.try_into().expect("32 bytes")),
        Ok(_) => {
            // A damaged key only invalidates entries; start over.
            fs::remove_file(path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key)
}

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A `Hasher` that feeds SHA-256, to turn wasmtime's compatibility hash
/// (an `impl Hash`) into stable bytes for cache keys.
#[derive(Default)]
pub struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl Sha256Hasher {
    /// The full digest.
    pub fn digest(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(&dir.path().join("c")).unwrap();
        (dir, c)
    }

    #[test]
    fn round_trip_and_key_mismatch() {
        let (_d, c) = cache();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(c.get(&a, &b), Err(Reject::Missing));
        c.put(&a, &b, b"compiled").unwrap();
        assert_eq!(c.get(&a, &b).unwrap(), b"compiled");
        assert_eq!(c.get(&a, &[3u8; 32]), Err(Reject::Missing));
    }

    #[test]
    fn every_flipped_byte_is_discarded_and_deleted() {
        let (_d, c) = cache();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        c.put(&a, &b, b"compiled code").unwrap();
        let path = c.path(&a, &b);
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(
                matches!(c.get(&a, &b), Err(Reject::Discarded(_))),
                "byte {i}"
            );
            assert!(!path.exists());
        }
    }

    #[test]
    fn foreign_file_with_right_layout_but_other_key_is_discarded() {
        let (_d, c) = cache();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let other_dir = tempfile::tempdir().unwrap();
        let other = Cache::open(other_dir.path()).unwrap();
        other.put(&a, &b, b"evil").unwrap();
        fs::copy(other.path(&a, &b), c.path(&a, &b)).unwrap();
        let Err(Reject::Discarded(why)) = c.get(&a, &b) else {
            panic!("foreign file accepted")
        };
        assert!(why.contains("authentication"), "{why}");
    }

    #[test]
    fn refuses_a_group_writable_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = Cache::open(dir.path()).err().expect("must refuse");
        assert!(e.to_string().contains("not writable by group or others"));
    }
}
