//! `[trust]`: which keys a fleet trusts to sign MODs, how many signatures a
//! MOD needs, and what is revoked. Applied by
//! [`crate::trust::admission`] before any byte of a MOD is compiled.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::trust::keys::PublicKey;

/// `[trust]` (all optional: without keys, unsigned MODs on the allow-list
/// load as before).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// Trusted signing keys by name (64 hex digits of the public key).
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// Signatures from distinct trusted keys every MOD needs (default 0).
    #[serde(default)]
    pub threshold: u32,
    /// Revoked keys (key ID, 24 hex digits, or public key, 64).
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// Revoked MODs: the sha256 of their signed content (what `p2pb mode
    /// inspect` shows as `content sha256`; a changed signature section does
    /// not change it), or of the whole file.
    #[serde(default)]
    pub revoked_mods: Vec<String>,
}

impl TrustSettings {
    /// Parse keys and check the thresholds can be met.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen: BTreeMap<[u8; 32], &str> = BTreeMap::new();
        for (name, k) in &self.keys {
            let key = PublicKey::from_bytes(k.as_bytes())
                .map_err(|e| format!("trust.keys.{name}: {e}"))?;
            // A threshold counts keys, not names: one key under two names
            // would let one signer pass for two.
            if let Some(first) = seen.insert(key.key.to_bytes(), name) {
                return Err(format!(
                    "trust.keys.{name} is the same public key as trust.keys.{first}"
                ));
            }
        }
        if self.threshold as usize > self.keys.len() {
            return Err(format!(
                "trust.threshold = {} but only {} key(s) are trusted",
                self.threshold,
                self.keys.len()
            ));
        }
        for r in &self.revoked_keys {
            if !(r.len() == 24 || r.len() == 64) || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "trust.revoked_keys: `{r}` is not a key ID or public key"
                ));
            }
        }
        for r in &self.revoked_mods {
            if r.len() != 64 || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("trust.revoked_mods: `{r}` is not a sha256"));
            }
        }
        Ok(())
    }

    fn revoked(&self, k: &PublicKey) -> bool {
        self.revoked_keys
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&k.id_hex()) || r.eq_ignore_ascii_case(&k.hex()))
    }

    /// Trusted, unrevoked keys with their names, each key once.
    pub fn trusted(&self) -> Vec<(String, PublicKey)> {
        let mut out: Vec<(String, PublicKey)> = Vec::new();
        let keys = self
            .keys
            .iter()
            .filter_map(|(n, k)| Some((n.clone(), PublicKey::from_bytes(k.as_bytes()).ok()?)));
        for (n, k) in keys.filter(|(_, k)| !self.revoked(k)) {
            if !out.iter().any(|(_, o)| *o == k) {
                out.push((n, k));
            }
        }
        out
    }
}
