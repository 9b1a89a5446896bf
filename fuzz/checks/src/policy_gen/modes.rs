//! `[modes.NAME]` of the policy model: grants, a config map with odd keys
//! and values, limits at and past their ranges, a pinned sha256 (any
//! text: the parser does not read it), signers and a threshold.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use p2pbroker::sandbox::limits::Limits;
use toml::{Table, Value};

use super::fleet;
use super::grants::GrantPick;
use super::model::strings;
use super::values::{Faults, Field, Int, Name, U32_MAX, U64_MAX, fault};

/// Entries past this many are not built; config values are cut.
const ITEMS_MAX: usize = 6;
const TEXT_MAX: usize = 64;

/// Each `[modes.NAME.limits]` key, with its documented range and
/// the largest value of its type.
const LIMITS: [(&str, u64, u64, u64); 11] = [
    ("memory_bytes", 64 * 1024, U64_MAX, U64_MAX),
    ("table_elements", 1, U64_MAX, U64_MAX),
    ("instances", 1, U64_MAX, U64_MAX),
    ("tables", 1, U64_MAX, U64_MAX),
    ("memories", 1, U64_MAX, U64_MAX),
    ("timeout_ms", 1, 600_000, U64_MAX),
    ("fuel", 1, U64_MAX, U64_MAX),
    ("sockets", 0, 1024, U32_MAX),
    ("table_entries", 16, 100_000, U32_MAX),
    ("audit_lines", 0, 10_000, U32_MAX),
    ("name_lookups", 0, 256, U32_MAX),
];

/// One MOD's entry.
#[derive(Arbitrary, Debug)]
pub struct Mode {
    name: Name,
    grants: Vec<GrantPick>,
    config: Vec<(ConfigKey, String)>,
    limits: Option<[Option<Int>; 11]>,
    sha256: Option<u8>,
    signers: Option<Vec<u8>>,
    threshold: Option<Int>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ConfigKey {
    /// One a MOD or `[services]` uses.
    Known(u8),
    Named(Name),
}

/// One MOD's entry as an accepted policy must hold it.
pub struct ModeExpect {
    /// Grant strings, as written.
    pub grants: Vec<String>,
    /// Its own config.
    pub config: BTreeMap<String, String>,
    /// What its spec's config holds: `[services]` fills in what the MOD's
    /// own config leaves out.
    pub spec_config: BTreeMap<String, String>,
    /// Limits, defaults filled in.
    pub limits: Limits,
    /// The pinned hash, as written.
    pub sha256: Option<String>,
    /// Signer names.
    pub signers: Option<Vec<String>>,
    /// Its own signature threshold.
    pub threshold: Option<u32>,
}

impl Mode {
    /// Its name.
    pub fn name(&self) -> String {
        self.name.text()
    }

    /// Its table; what an accepted policy holds.
    pub fn build(&self, fleet: &fleet::Expect, f: &mut Faults) -> (Table, ModeExpect) {
        let mut t = Table::new();
        let grants: Vec<String> = self
            .grants
            .iter()
            .take(ITEMS_MAX)
            .map(|g| g.text(f))
            .collect();
        t.insert("grants".into(), strings(&grants));
        let mut config = BTreeMap::new();
        for (k, v) in self.config.iter().take(ITEMS_MAX) {
            let key = match k {
                ConfigKey::Known(i) => ["forwards", "stun_servers", "http_proxy", "gateway"]
                    [usize::from(*i) % 4]
                    .into(),
                ConfigKey::Named(n) => n.text(),
            };
            config.insert(key, v.chars().take(TEXT_MAX).collect::<String>());
        }
        if !config.is_empty() {
            let c = config
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())));
            t.insert("config".into(), Value::Table(c.collect()));
        }
        let mut limits = Limits::default();
        if let Some(values) = &self.limits {
            let mut l = Table::new();
            for ((key, lo, hi, max), v) in LIMITS.iter().zip(values) {
                let Some(v) = v else { continue };
                let field = Field {
                    key,
                    path: format!("limits.{key}"),
                    lo: *lo,
                    hi: *hi,
                    max: *max,
                };
                let v = v.pick(&field, f);
                l.insert(key.to_string(), Value::Integer(v));
                let (n32, n64) = (v as u32, v as u64);
                match *key {
                    "memory_bytes" => limits.memory_bytes = n64 as usize,
                    "table_elements" => limits.table_elements = n64 as usize,
                    "instances" => limits.instances = n64 as usize,
                    "tables" => limits.tables = n64 as usize,
                    "memories" => limits.memories = n64 as usize,
                    "timeout_ms" => limits.timeout_ms = n64,
                    "fuel" => limits.fuel = Some(n64),
                    "sockets" => limits.sockets = n32,
                    "table_entries" => limits.table_entries = n32,
                    "audit_lines" => limits.audit_lines = n32,
                    _ => limits.name_lookups = n32,
                }
            }
            t.insert("limits".into(), Value::Table(l));
        }
        // Not checked by the parser: any text stays as written.
        let sha256 = self.sha256.map(|k| match k % 3 {
            0 => String::new(),
            1 => "not a digest".into(),
            _ => "ab".repeat(32),
        });
        if let Some(s) = &sha256 {
            t.insert("sha256".into(), Value::String(s.clone()));
        }
        // Signers name trusted keys, at times one that is not.
        let trusted: Vec<&String> = fleet.trust.keys.keys().collect();
        let signers = self.signers.as_ref().map(|s| {
            let names: Vec<String> = s
                .iter()
                .take(ITEMS_MAX)
                .filter_map(|k| match fault(*k, 1) {
                    Some(_) => {
                        f.must("signers");
                        Some("nobody".to_string())
                    }
                    None => trusted
                        .get(usize::from(*k) % trusted.len().max(1))
                        .map(|n| n.to_string()),
                })
                .collect();
            t.insert("signers".into(), strings(&names));
            names
        });
        let threshold = self.threshold.map(|v| {
            let v = v.pick(&Field::any("threshold", U32_MAX), f);
            t.insert("threshold".into(), Value::Integer(v));
            v as u32
        });
        let mut spec_config = config.clone();
        for (k, v) in &fleet.service_config {
            spec_config.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let e = ModeExpect {
            grants,
            config,
            spec_config,
            limits,
            sha256,
            signers,
            threshold,
        };
        (t, e)
    }
}
