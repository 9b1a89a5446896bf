//! Admission: may this component run, and with which grants?
//!
//! One pure decision over the component's bytes, the folder's allow-list
//! and the policy, taken before any byte is compiled. Everything it needs is
//! inside the signed bytes: the MOD's name and the capabilities it asks for
//! (its manifest), and its signatures. The guest never runs to decide.
//!
//! Order (each step names what it refuses):
//!
//! 1. **Revocation** by either hash: the file's sha256, or the hash of the
//!    signed content (the binary without its signature section), so adding
//!    or changing a signature cannot dodge a revocation.
//! 2. **Signatures**: distinct trusted, unrevoked public keys that signed
//!    exactly this content, at least `trust.threshold` of them.
//! 3. **Manifest**: present, well formed, and naming the MOD.
//! 4. **Policy entry** for that name.
//! 5. **Pin** (`modes.NAME.sha256`): the content hash or the file hash.
//! 6. **Per-MOD signers** and threshold.
//! 7. **Allowed at all**: on the folder's allow-list (either hash), pinned,
//!    or admitted by signatures.
//! 8. **Grants**: the manifest's, each covered by the policy's; limits the
//!    policy's, lowered to what the manifest declares.
//!
//! After compiling, the loader checks that the MOD's own `info()` gives the
//! same name ([`Admission::check_name`]).

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::manifest::{self, Manifest, ManifestError};
use super::wasmsig;
use crate::policy::{Policy, PolicyError};
use crate::sandbox::ModeSpec;

/// A component admitted to run.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The MOD's name, from its manifest.
    pub name: String,
    /// sha256 of the file (cache key, allow-lists).
    pub sha256: String,
    /// sha256 of the signed content (revocations, pins).
    pub content_sha256: String,
    /// Names of the trusted keys that signed it.
    pub signers: Vec<String>,
    /// What it may touch: effective grants, config, limits.
    pub spec: ModeSpec,
}

/// Why a component may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its file or content hash is revoked.
    #[error("component {0} is revoked by the policy")]
    Revoked(String),
    /// The signature data or the binary is unreadable.
    #[error("signature data: {0}")]
    Signature(String),
    /// Too few distinct trusted keys signed it.
    #[error("signed by {have} trusted key(s) {names:?}, the policy requires {need}{}", .mode.as_ref().map(|m| format!(" for mode `{m}`")).unwrap_or_default())]
    BelowThreshold {
        /// Distinct trusted signers found.
        have: usize,
        /// Their names.
        names: Vec<String>,
        /// Required.
        need: u32,
        /// The MOD, for a per-MOD threshold.
        mode: Option<String>,
    },
    /// No manifest, or one without a name.
    #[error("the component carries no manifest naming it (build it with `p2pb mode build`)")]
    Unnamed,
    /// The manifest is malformed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The policy has no entry for this MOD.
    #[error("mode `{0}` is not in the policy")]
    NotInPolicy(String),
    /// The policy pins another hash for this MOD.
    #[error("mode `{mode}`: component {found} is not the pinned {pinned}")]
    Pin {
        /// MOD name.
        mode: String,
        /// Its content hash.
        found: String,
        /// The pinned hash.
        pinned: String,
    },
    /// Neither listed, pinned nor signed.
    #[error(
        "component {0} is not on the allow-list, not pinned by the policy, and not signed by a trusted key"
    )]
    NotAllowed(String),
    /// The policy entry itself is wrong.
    #[error("{0}")]
    Policy(String),
    /// It asks for more than the policy grants.
    #[error("mode `{mode}`: {source}")]
    Grants {
        /// MOD name.
        mode: String,
        /// Which capability.
        source: ManifestError,
    },
    /// Its `info()` names another MOD than its manifest.
    #[error("the component calls itself `{said}` but its signed manifest names `{manifest}`")]
    NameMismatch {
        /// What `info()` said.
        said: String,
        /// What the manifest says.
        manifest: String,
    },
}

/// sha256 of the signed content: the binary without its signature section
/// (header and every other section, in order).
pub fn content_sha256(bytes: &[u8]) -> Result<[u8; 32], Refusal> {
    let p = wasmsig::parse(bytes).map_err(|e| Refusal::Signature(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(p.header);
    h.update(&bytes[p.content_start..]);
    Ok(h.finalize().into())
}

fn matches(list: &[String], sha: &str, content: &str) -> bool {
    list.iter()
        .any(|r| r.eq_ignore_ascii_case(sha) || r.eq_ignore_ascii_case(content))
}

/// Decide whether `bytes` may run under `policy`, loaded from a folder
/// whose `allow.list` holds `allow_list` (hex sha256 digests).
pub fn admit(
    bytes: &[u8],
    allow_list: &HashSet<String>,
    policy: &Policy,
) -> Result<Admission, Refusal> {
    let sha = hex::encode(crate::sandbox::sha256(bytes));
    let content = hex::encode(content_sha256(bytes)?);
    let trust = &policy.trust;
    if matches(&trust.revoked_mods, &sha, &content) {
        return Err(Refusal::Revoked(content));
    }
    let trusted = trust.trusted();
    let keys: Vec<_> = trusted.iter().map(|(_, k)| *k).collect();
    let found = super::verify(bytes, &keys).map_err(|e| Refusal::Signature(e.to_string()))?;
    // One name per distinct key (a key listed twice counts once).
    let mut signers: Vec<String> = Vec::new();
    for k in &found {
        if let Some((n, _)) = trusted.iter().find(|(_, t)| t == k) {
            signers.push(n.clone());
        }
    }
    if signers.len() < trust.threshold as usize {
        return Err(Refusal::BelowThreshold {
            have: signers.len(),
            names: signers,
            need: trust.threshold,
            mode: None,
        });
    }
    let m: Manifest = manifest::read(bytes)?.ok_or(Refusal::Unnamed)?;
    let name = m.name.clone().ok_or(Refusal::Unnamed)?;
    let entry = policy
        .modes
        .get(&name)
        .ok_or_else(|| Refusal::NotInPolicy(name.clone()))?;
    let pinned = match &entry.sha256 {
        Some(pin) if !pin.eq_ignore_ascii_case(&content) && !pin.eq_ignore_ascii_case(&sha) => {
            return Err(Refusal::Pin {
                mode: name,
                found: content,
                pinned: pin.clone(),
            });
        }
        Some(_) => true,
        None => false,
    };
    let counted: Vec<String> = match &entry.signers {
        Some(set) => signers
            .iter()
            .filter(|s| set.contains(s))
            .cloned()
            .collect(),
        None => signers.clone(),
    };
    let need = entry.threshold.unwrap_or(trust.threshold);
    if counted.len() < need as usize {
        return Err(Refusal::BelowThreshold {
            have: counted.len(),
            names: counted,
            need,
            mode: Some(name),
        });
    }
    let listed = allow_list.contains(&sha) || allow_list.contains(&content);
    if !(listed || pinned || need > 0) {
        return Err(Refusal::NotAllowed(sha));
    }
    let mut spec = policy
        .spec(&name)
        .map_err(|e: PolicyError| Refusal::Policy(e.to_string()))?;
    spec.grants =
        manifest::effective_grants(&m, &spec.grants).map_err(|source| Refusal::Grants {
            mode: name.clone(),
            source,
        })?;
    spec.limits = manifest::effective_limits(spec.limits, &m);
    Ok(Admission {
        name,
        sha256: sha,
        content_sha256: content,
        signers,
        spec,
    })
}

impl Admission {
    /// After compiling: the MOD's own `info()` must give the manifest's name.
    pub fn check_name(&self, said: &str) -> Result<(), Refusal> {
        if said != self.name {
            return Err(Refusal::NameMismatch {
                said: crate::text::escaped(said),
                manifest: self.name.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
