//! The daemon's copies of pulled MODs: content-addressed blobs (checked
//! against their digest on every read), and per MOD name the last pin
//! that loaded, so a policy that moves the pin while the registry is down
//! keeps the last good copy until the new one can be pulled.
//!
//! Disk use is bounded: [`Cache::retain`] keeps only what the policy pins
//! and the last good copies of the MODs it names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::{Client, Pulled};
use super::manifest::{self, MANIFEST_MAX};
use super::{Digest, OciError, Reference};
use crate::files::Links;
use crate::sandbox::load::COMPONENT_MAX;

/// The cache folder (`STATE/oci`).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// Where a MOD's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The cache had the pinned copy.
    Cache,
    /// Pulled from the registry now.
    Registry,
    /// The pinned copy could not be pulled; this is the last good one.
    LastGood {
        /// The pin that could not be pulled.
        wanted: Digest,
        /// Why.
        why: String,
    },
}

/// A MOD obtained for loading.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// The component.
    pub component: Vec<u8>,
    /// Its manifest's digest.
    pub digest: Digest,
    /// Where it came from.
    pub origin: Origin,
}

fn cache_err(path: &Path, e: impl std::fmt::Display) -> OciError {
    OciError::Cache {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

impl Cache {
    /// The cache in `dir` (created when first written).
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    fn blob(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    fn pin_file(&self, name: &str) -> PathBuf {
        // MOD names are policy keys: any text. Hex keeps them one file name.
        self.dir.join("pins").join(hex::encode(name))
    }

    /// A blob's bytes if cached and intact; a damaged one is removed.
    fn read_blob(&self, d: &Digest, max: usize) -> Option<Vec<u8>> {
        let path = self.blob(d);
        let bytes = crate::files::read_document(&path, max, Links::Refuse).ok()?;
        if Digest::of(&bytes) == *d {
            return Some(bytes);
        }
        tracing::warn!("MOD cache: {} is damaged; removed", path.display());
        let _ = std::fs::remove_file(&path);
        None
    }

    fn write_blob(&self, bytes: &[u8]) -> Result<(), OciError> {
        let path = self.blob(&Digest::of(bytes));
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| cache_err(dir, e))?;
        crate::daemon::trust_state::write_atomically(&path, bytes).map_err(|e| cache_err(&path, e))
    }

    /// The component of the manifest `d`, if both are cached and intact.
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        let m = self.read_blob(d, MANIFEST_MAX)?;
        let (layer, size) = manifest::component_layer(&m).ok()?;
        self.read_blob(&layer, COMPONENT_MAX)
            .filter(|c| c.len() as u64 == size)
    }

    /// Whether the manifest `d` and its component are on disk (not read
    /// through: [`Self::get`] checks them).
    pub fn has(&self, d: &Digest) -> bool {
        let Some(m) = self.read_blob(d, MANIFEST_MAX) else {
            return false;
        };
        manifest::component_layer(&m).is_ok_and(|(l, _)| self.blob(&l).is_file())
    }

    /// Keep a pull (manifest and component).
    pub fn put(&self, p: &Pulled) -> Result<(), OciError> {
        self.write_blob(&p.component)?;
        self.write_blob(&p.manifest)
    }

    /// The pin that last loaded for MOD `name`.
    pub fn last_good(&self, name: &str) -> Option<Digest> {
        let path = self.pin_file(name);
        let t = crate::files::read_text(&path, 128, Links::Refuse).ok()?;
        Digest::parse(t.trim()).ok()
    }

    /// Record `d` as MOD `name`'s last good pin.
    pub fn set_last_good(&self, name: &str, d: &Digest) -> Result<(), OciError> {
        if self.last_good(name) == Some(*d) {
            return Ok(());
        }
        let path = self.pin_file(name);
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| cache_err(dir, e))?;
        crate::daemon::trust_state::write_atomically(&path, format!("{d}\n").as_bytes())
            .map_err(|e| cache_err(&path, e))
    }

    /// The pinned MOD `name`: from the cache, else pulled within
    /// `deadline` (and cached), else its last good copy; an error only
    /// when there is none. The caller records the pin as the last good
    /// one ([`Cache::set_last_good`]) once the MOD has loaded: a copy the
    /// admission refused is never fallen back to.
    pub fn obtain(
        &self,
        name: &str,
        r: &Reference,
        deadline: Duration,
    ) -> Result<Obtained, OciError> {
        let pin = r
            .digest
            .ok_or_else(|| OciError::Reference(format!("{r} pins no digest")))?;
        let found = |component, origin| {
            Ok(Obtained {
                component,
                digest: pin,
                origin,
            })
        };
        if let Some(c) = self.get(&pin) {
            return found(c, Origin::Cache);
        }
        let pulled = Client::new(super::auth::Credentials::from_env(), deadline).pull(r);
        match pulled {
            Ok(p) => {
                self.put(&p)?;
                found(p.component, Origin::Registry)
            }
            Err(e) => {
                let last = self.last_good(name).filter(|d| *d != pin);
                match last.and_then(|d| Some((d, self.get(&d)?))) {
                    Some((d, component)) => Ok(Obtained {
                        component,
                        digest: d,
                        origin: Origin::LastGood {
                            wanted: pin,
                            why: e.to_string(),
                        },
                    }),
                    None => Err(e),
                }
            }
        }
    }

    /// Remove every blob and pin record except `pins` (manifest digests,
    /// with their components) and the last good pins of `names`.
    pub fn retain(&self, pins: &[Digest], names: &[String]) {
        let mut keep: BTreeSet<Digest> = pins.iter().copied().collect();
        let keep_names: BTreeSet<String> = names.iter().map(hex::encode).collect();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("pins")) {
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().to_string();
                if !keep_names.contains(&file) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        keep.extend(names.iter().filter_map(|n| self.last_good(n)));
        let layers: Vec<Digest> = keep
            .iter()
            .filter_map(|d| self.read_blob(d, MANIFEST_MAX))
            .filter_map(|m| manifest::component_layer(&m).ok().map(|(l, _)| l))
            .collect();
        keep.extend(layers);
        let Ok(rd) = std::fs::read_dir(self.dir.join("blobs/sha256")) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let kept = Digest::parse(&format!("sha256:{name}")).is_ok_and(|d| keep.contains(&d));
            if !kept {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(component: &[u8]) -> Pulled {
        let a = manifest::artifact(component, Some("m"), "2026-12-01T00:00:00Z");
        Pulled {
            digest: a.digest,
            manifest: a.manifest,
            component: component.to_vec(),
        }
    }

    fn reference(d: Digest) -> Reference {
        // Port 9 of loopback: nothing listens; a pull fails at once.
        Reference::parse(&format!("oci+http://127.0.0.1:9/m:1@{d}")).unwrap()
    }

    #[test]
    fn a_cached_pin_needs_no_registry_and_damage_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf());
        let p = pulled(b"component one");
        c.put(&p).unwrap();
        let got = c
            .obtain("m", &reference(p.digest), Duration::from_secs(5))
            .unwrap();
        assert_eq!(got.origin, Origin::Cache);
        assert_eq!(got.component, b"component one");
        assert_eq!(c.last_good("m"), None, "not before it loads");
        // A flipped byte on disk: not served, removed, and the pull fails.
        let layer = c.blob(&Digest::of(b"component one"));
        std::fs::write(&layer, b"component 0ne").unwrap();
        assert!(c.get(&p.digest).is_none());
        assert!(!layer.exists());
        let e = c.obtain("m", &reference(p.digest), Duration::from_secs(5));
        assert!(matches!(e, Err(OciError::Unreachable { .. })), "{e:?}");
    }

    #[test]
    fn a_new_pin_that_cannot_be_pulled_keeps_the_last_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf());
        let old = pulled(b"old");
        c.put(&old).unwrap();
        c.obtain("m", &reference(old.digest), Duration::from_secs(5))
            .unwrap();
        c.set_last_good("m", &old.digest).unwrap();
        let new = Digest::of(b"a manifest never pushed");
        let got = c
            .obtain("m", &reference(new), Duration::from_secs(5))
            .unwrap();
        assert_eq!(got.component, b"old");
        assert_eq!(got.digest, old.digest);
        assert!(matches!(got.origin, Origin::LastGood { wanted, .. } if wanted == new));
        // The last good pin stays the old one until the new one loads.
        assert_eq!(c.last_good("m"), Some(old.digest));
        // Another MOD's name has no last good copy.
        assert!(
            c.obtain("other", &reference(new), Duration::from_secs(5))
                .is_err()
        );
    }

    #[test]
    fn retain_keeps_only_pins_and_last_good_copies() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path().to_path_buf());
        let (a, b, x) = (pulled(b"a"), pulled(b"b"), pulled(b"x"));
        for p in [&a, &b, &x] {
            c.put(p).unwrap();
        }
        c.set_last_good("kept", &b.digest).unwrap();
        c.set_last_good("gone", &x.digest).unwrap();
        c.retain(&[a.digest], &["kept".to_string()]);
        assert!(c.get(&a.digest).is_some());
        assert!(
            c.get(&b.digest).is_some(),
            "the last good copy of a named MOD"
        );
        assert!(c.get(&x.digest).is_none());
        assert_eq!(c.last_good("gone"), None);
        let files = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(files, 4, "two manifests and their components");
    }
}
