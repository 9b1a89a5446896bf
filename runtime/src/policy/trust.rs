//! `[trust]`: which keys a fleet trusts to sign MODs, how many signatures a
//! MOD needs, and what is revoked. Checked before any byte of a MOD is
//! compiled ([`TrustSettings::admit`]), and per MOD once its name is known
//! ([`TrustSettings::admit_mode`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ModePolicy;
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
    /// Revoked MOD component hashes (sha256 hex).
    #[serde(default)]
    pub revoked_mods: Vec<String>,
}

/// Why a MOD was refused on trust grounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustRefusal {
    /// Its hash is revoked.
    #[error("component {0} is revoked by the policy")]
    RevokedMod(String),
    /// Too few distinct trusted keys signed it.
    #[error("signed by {have} trusted key(s) {names:?}, the policy requires {need}")]
    BelowThreshold {
        /// Distinct trusted signers found.
        have: usize,
        /// Their names.
        names: Vec<String>,
        /// Required.
        need: u32,
    },
    /// The policy pins another hash for this MOD name.
    #[error("mode `{mode}`: component {found} is not the pinned {pinned}")]
    Pin {
        /// MOD name.
        mode: String,
        /// Its hash.
        found: String,
        /// The pinned hash.
        pinned: String,
    },
    /// The signatures are unreadable.
    #[error("signature data: {0}")]
    Signature(String),
}

impl TrustSettings {
    /// Parse keys and check the thresholds can be met.
    pub fn validate(&self) -> Result<(), String> {
        for (name, k) in &self.keys {
            PublicKey::from_bytes(k.as_bytes()).map_err(|e| format!("trust.keys.{name}: {e}"))?;
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

    /// Trusted, unrevoked keys with their names.
    pub fn trusted(&self) -> Vec<(String, PublicKey)> {
        self.keys
            .iter()
            .filter_map(|(n, k)| Some((n.clone(), PublicKey::from_bytes(k.as_bytes()).ok()?)))
            .filter(|(_, k)| !self.revoked(k))
            .collect()
    }

    /// Before compiling: the hash is not revoked and enough distinct trusted
    /// keys signed exactly these bytes. Returns the signers' names.
    pub fn admit(&self, bytes: &[u8], sha256: &str) -> Result<Vec<String>, TrustRefusal> {
        if self
            .revoked_mods
            .iter()
            .any(|r| r.eq_ignore_ascii_case(sha256))
        {
            return Err(TrustRefusal::RevokedMod(sha256.to_string()));
        }
        let trusted = self.trusted();
        let keys: Vec<PublicKey> = trusted.iter().map(|(_, k)| *k).collect();
        let found = crate::trust::verify(bytes, &keys)
            .map_err(|e| TrustRefusal::Signature(e.to_string()))?;
        let names: Vec<String> = trusted
            .iter()
            .filter(|(_, k)| found.contains(k))
            .map(|(n, _)| n.clone())
            .collect();
        if names.len() < self.threshold as usize {
            return Err(TrustRefusal::BelowThreshold {
                have: names.len(),
                names,
                need: self.threshold,
            });
        }
        Ok(names)
    }

    /// Once the MOD's name is known: its pin, and its own signer set and
    /// threshold if the policy gives them.
    pub fn admit_mode(
        &self,
        mode: &str,
        m: &ModePolicy,
        sha256: &str,
        signers: &[String],
    ) -> Result<(), TrustRefusal> {
        if let Some(pin) = m
            .sha256
            .as_ref()
            .filter(|p| !p.eq_ignore_ascii_case(sha256))
        {
            return Err(TrustRefusal::Pin {
                mode: mode.to_string(),
                found: sha256.to_string(),
                pinned: pin.clone(),
            });
        }
        let counted: Vec<String> = match &m.signers {
            Some(set) => signers
                .iter()
                .filter(|s| set.contains(s))
                .cloned()
                .collect(),
            None => signers.to_vec(),
        };
        let need = m.threshold.unwrap_or(self.threshold);
        if counted.len() < need as usize {
            return Err(TrustRefusal::BelowThreshold {
                have: counted.len(),
                names: counted,
                need,
            });
        }
        Ok(())
    }
}
