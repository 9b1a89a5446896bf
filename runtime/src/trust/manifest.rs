//! The capability manifest a MOD carries inside its (signed) bytes: the
//! grants it asks for and its limits, as JSON in a custom section named
//! `p2pbroker-manifest`. `p2pb mode build` writes it from the crate's
//! `[package.metadata.p2pbroker]`.
//!
//! The effective grant is manifest ∩ policy: every capability the manifest
//! asks for must be covered by a policy grant, or the MOD is refused at load
//! with the capability named; the MOD then gets exactly what it asked for.
//! `optional_grants` are given only where the policy covers them, and
//! otherwise left out without refusing the MOD (a test it then skips, such
//! as the stun MOD's hairpinning).
//! Limits are the policy's, lowered to what the manifest declares.

use serde::{Deserialize, Serialize};

use crate::gate::{Grant, Target};
use crate::sandbox::limits::Limits;

pub use crate::build::MANIFEST_SECTION;
/// Largest manifest read (a manifest is a few hundred bytes).
pub const MANIFEST_MAX: usize = 64 * 1024;

/// A MOD's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The MOD's name (`[a-z0-9-]`, as its `info()` reports it): policies
    /// pin and configure MODs by name before running them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Grant strings the MOD asks for.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Grant strings the MOD uses when the policy grants them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_grants: Vec<String>,
    /// Limits the MOD declares it needs at most.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// More than one manifest section.
    #[error("the component carries {0} manifest sections (at most one)")]
    Duplicate(usize),
    /// Too large.
    #[error("the manifest is {0} bytes (at most {MANIFEST_MAX})")]
    TooLarge(usize),
    /// Not valid JSON of the expected shape.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// A grant string does not parse.
    #[error("manifest grant: {0}")]
    Grant(String),
    /// The MOD asks for more than the policy grants.
    #[error("the MOD asks for `{0}`, which the policy does not grant")]
    NotGranted(String),
    /// The binary could not be split into sections.
    #[error(transparent)]
    Binary(#[from] super::wasmsig::SigError),
}

impl Manifest {
    /// The grants, parsed (optional ones included, after the others).
    pub fn parsed_grants(&self) -> Result<Vec<Grant>, ManifestError> {
        self.grants
            .iter()
            .chain(&self.optional_grants)
            .map(|g| {
                g.parse::<Grant>()
                    .map_err(|e| ManifestError::Grant(e.to_string()))
            })
            .collect()
    }
}

/// The manifest of `bin`, if it has one.
pub fn read(bin: &[u8]) -> Result<Option<Manifest>, ManifestError> {
    let secs = super::wasmsig::sections(bin)?;
    let found: Vec<_> = secs
        .iter()
        .filter(|s| s.id == 0 && s.name.as_deref() == Some(MANIFEST_SECTION))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [s] => {
            let payload = &bin[s.payload.clone()];
            if payload.len() > MANIFEST_MAX {
                return Err(ManifestError::TooLarge(payload.len()));
            }
            let m: Manifest = serde_json::from_slice(payload)
                .map_err(|e| ManifestError::Malformed(e.to_string()))?;
            if let Some(n) = m
                .name
                .as_deref()
                .filter(|n| !crate::sandbox::contract::valid_name(n))
            {
                return Err(ManifestError::Malformed(format!(
                    "name {:?} is not [a-z0-9-]{{1,32}}",
                    crate::text::escape(n)
                )));
            }
            m.parsed_grants()?;
            Ok(Some(m))
        }
        more => Err(ManifestError::Duplicate(more.len())),
    }
}

/// `bin` with `m` appended as its manifest section.
pub fn append(bin: &[u8], m: &Manifest) -> Vec<u8> {
    let json = serde_json::to_vec(m).expect("manifests serialise");
    crate::build::append_section(bin, MANIFEST_SECTION, &json)
}

fn target_covers(policy: &Target, asked: &Target) -> bool {
    match (policy, asked) {
        (Target::Net(p), Target::Net(a)) => p.contains(a),
        (p, a) => p == a,
    }
}

/// Whether the policy's `grants` cover everything `asked` allows, one use
/// at a time.
pub fn covered(asked: &Grant, policy: &[Grant]) -> bool {
    match asked {
        Grant::NameLookup => policy.contains(&Grant::NameLookup),
        Grant::Socket {
            transport,
            uses,
            target,
            ports,
        } => uses.iter().all(|u| {
            policy.iter().any(|g| match g {
                Grant::Socket {
                    transport: t,
                    uses: us,
                    target: tg,
                    ports: (lo, hi),
                } => {
                    t == transport
                        && us.contains(u)
                        && target_covers(tg, target)
                        && *lo <= ports.0
                        && ports.1 <= *hi
                }
                Grant::NameLookup => false,
            })
        }),
    }
}

/// The effective grants: the manifest's, each covered by the policy.
pub fn effective_grants(m: &Manifest, policy: &[Grant]) -> Result<Vec<Grant>, ManifestError> {
    let asked = m.parsed_grants()?;
    let (required, optional) = asked.split_at(m.grants.len());
    for (g, text) in required.iter().zip(&m.grants) {
        if !covered(g, policy) {
            return Err(ManifestError::NotGranted(text.clone()));
        }
    }
    let mut out = required.to_vec();
    out.extend(optional.iter().filter(|g| covered(g, policy)).cloned());
    Ok(out)
}

/// The policy's limits, lowered to what the manifest declares.
pub fn effective_limits(policy: Limits, m: &Manifest) -> Limits {
    let Some(d) = m.limits else { return policy };
    Limits {
        memory_bytes: policy.memory_bytes.min(d.memory_bytes),
        table_elements: policy.table_elements.min(d.table_elements),
        instances: policy.instances.min(d.instances),
        tables: policy.tables.min(d.tables),
        memories: policy.memories.min(d.memories),
        timeout_ms: policy.timeout_ms.min(d.timeout_ms),
        fuel: match (policy.fuel, d.fuel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        sockets: policy.sockets.min(d.sockets),
        table_entries: policy.table_entries.min(d.table_entries),
        audit_lines: policy.audit_lines.min(d.audit_lines),
        name_lookups: policy.name_lookups.min(d.name_lookups),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(v: &[&str]) -> Vec<Grant> {
        v.iter().map(|g| g.parse().unwrap()).collect()
    }

    fn manifest(g: &[&str]) -> Manifest {
        Manifest {
            optional_grants: Vec::new(),
            name: None,
            grants: g.iter().map(|s| s.to_string()).collect(),
            limits: None,
        }
    }

    #[test]
    fn optional_grants_are_given_only_where_the_policy_covers_them() {
        let mut m = manifest(&["udp:send,receive@stun:1-65535"]);
        m.optional_grants = vec!["udp:send,receive@0.0.0.0/0:1-65535".into()];
        let narrow = grants(&["udp:send,receive@stun:1-65535"]);
        assert_eq!(effective_grants(&m, &narrow).unwrap(), narrow);
        let wide = grants(&[
            "udp:send,receive@stun:1-65535",
            "udp:send,receive@0.0.0.0/0:1-65535",
        ]);
        assert_eq!(effective_grants(&m, &wide).unwrap(), wide);
        // A required grant still refuses the MOD.
        assert_eq!(
            effective_grants(&m, &grants(&[])),
            Err(ManifestError::NotGranted(
                "udp:send,receive@stun:1-65535".into()
            ))
        );
        // And a malformed optional grant is a malformed manifest.
        m.optional_grants = vec!["udp:send@nowhere:1".into()];
        assert!(matches!(m.parsed_grants(), Err(ManifestError::Grant(_))));
    }

    #[test]
    fn the_manifest_must_fit_inside_the_policy() {
        let policy = grants(&[
            "udp:send,receive@gateway:5351",
            "tcp:connect@10.0.0.0/8:1-65535",
        ]);
        let m = manifest(&["udp:send@gateway:5351", "tcp:connect@10.1.0.0/16:80"]);
        assert_eq!(effective_grants(&m, &policy).unwrap().len(), 2);
        for (asked, named) in [
            ("udp:send,bind@gateway:5351", "udp:send,bind@gateway:5351"),
            ("udp:send@gateway:5350-5351", "udp:send@gateway:5350-5351"),
            ("tcp:connect@lan:80", "tcp:connect@lan:80"),
            (
                "tcp:connect@192.168.0.0/16:80",
                "tcp:connect@192.168.0.0/16:80",
            ),
            ("name-lookup", "name-lookup"),
        ] {
            let e = effective_grants(&manifest(&[asked]), &policy).unwrap_err();
            assert_eq!(e, ManifestError::NotGranted(named.into()));
        }
    }

    #[test]
    fn the_section_round_trips_and_is_bounded() {
        let bin = b"\0asm\x0d\0\x01\0".to_vec();
        assert_eq!(read(&bin).unwrap(), None);
        let m = manifest(&["udp:send@gateway:5351"]);
        let with = append(&bin, &m);
        assert_eq!(read(&with).unwrap(), Some(m.clone()));
        let twice = append(&with, &m);
        assert_eq!(read(&twice).unwrap_err(), ManifestError::Duplicate(2));
        let bad = append(&bin, &manifest(&["udp:fly@mars"]));
        assert!(matches!(read(&bad), Err(ManifestError::Grant(_))));
    }

    #[test]
    fn limits_never_exceed_either_side() {
        let policy = Limits::default();
        let mut m = manifest(&[]);
        m.limits = Some(Limits {
            memory_bytes: 1 << 20,
            timeout_ms: policy.timeout_ms * 10,
            ..policy
        });
        let l = effective_limits(policy, &m);
        assert_eq!(l.memory_bytes, 1 << 20);
        assert_eq!(l.timeout_ms, policy.timeout_ms);
    }
}
