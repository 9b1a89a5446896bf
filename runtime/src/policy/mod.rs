//! Policy files: which MODs run, with which grants, config and limits.
//!
//! This is the unsigned core of the fleet policy; signing, trust roots and
//! profiles build on it. Unknown fields are rejected with their name and
//! line, and every grant is parsed up front, so a bad policy is refused
//! whole and the last good one stays in force.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::gate::Grant;
use crate::host::ModeSpec;
use crate::limits::Limits;

/// The built-in default policy (`policies/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");

/// A parsed policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; this broker reads version 1.
    pub version: u32,
    /// MODs by name.
    #[serde(default)]
    pub modes: BTreeMap<String, ModePolicy>,
}

/// One MOD's entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModePolicy {
    /// Grant strings (see [`crate::gate::grant`]).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Config values the MOD may read.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Per-call limits; omitted fields take their defaults.
    #[serde(default)]
    pub limits: Limits,
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// TOML syntax, a type mismatch or an unknown field (with its line).
    #[error("policy is not valid: {0}")]
    Parse(String),
    /// A MOD's limits are out of range.
    #[error("mode `{mode}`: {reason}")]
    Limits {
        /// The MOD's name.
        mode: String,
        /// Which limit and why.
        reason: String,
    },
    /// A version this broker does not read.
    #[error("policy version {0} is not supported (this broker reads version 1)")]
    Version(u32),
    /// A grant string of a MOD is wrong.
    #[error("mode `{mode}`: {source}")]
    Grant {
        /// The MOD's name.
        mode: String,
        /// The grammar error.
        source: crate::gate::GrantError,
    },
    /// The policy names no such MOD.
    #[error("the policy has no entry for mode `{0}`")]
    UnknownMode(String),
}

impl Policy {
    /// Parse and validate policy text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if p.version != 1 {
            return Err(PolicyError::Version(p.version));
        }
        for name in p.modes.keys() {
            p.spec(name)?;
        }
        Ok(p)
    }

    /// The built-in default.
    pub fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY).expect("the built-in policy is valid")
    }

    /// The spec (parsed grants, config, limits) for the MOD called `name`.
    pub fn spec(&self, name: &str) -> Result<ModeSpec, PolicyError> {
        let m = self
            .modes
            .get(name)
            .ok_or_else(|| PolicyError::UnknownMode(name.to_string()))?;
        let grants = m
            .grants
            .iter()
            .map(|g| g.parse::<Grant>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| PolicyError::Grant {
                mode: name.to_string(),
                source,
            })?;
        m.limits.validate().map_err(|reason| PolicyError::Limits {
            mode: name.to_string(),
            reason,
        })?;
        Ok(ModeSpec {
            grants,
            config: m.config.clone(),
            limits: m.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses() {
        let p = Policy::default_policy();
        assert!(p.spec("direct").unwrap().grants.is_empty());
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = Policy::parse("version = 1\n[modes.x]\ngrant = []\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `grant`"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn bad_grant_names_the_mode() {
        let e =
            Policy::parse("version = 1\n[modes.x]\ngrants = [\"udp:send@mars:1\"]\n").unwrap_err();
        assert!(e.to_string().starts_with("mode `x`: invalid grant"), "{e}");
    }

    #[test]
    fn limits_merge_with_defaults_and_versions_are_checked() {
        let p = Policy::parse("version = 1\n[modes.x.limits]\ntimeout_ms = 250\n").unwrap();
        let s = p.spec("x").unwrap();
        assert_eq!(s.limits.timeout_ms, 250);
        assert_eq!(s.limits.memory_bytes, Limits::default().memory_bytes);
        assert!(matches!(
            Policy::parse("version = 2"),
            Err(PolicyError::Version(2))
        ));
        assert!(matches!(p.spec("y"), Err(PolicyError::UnknownMode(_))));
        // A huge timeout would overflow deadline arithmetic: refused whole.
        let e = Policy::parse("version = 1\n[modes.x.limits]\ntimeout_ms = 18446744073709551615\n")
            .unwrap_err();
        assert!(e.to_string().contains("mode `x`: limits.timeout_ms"), "{e}");
    }
}
