//! `[trust]` of the policy model: keys under their names (valid, in
//! either case, padded, malformed, one key under two names), the
//! threshold against their count, revoked key IDs, keys and MODs.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use p2pbroker::policy::TrustSettings;
use toml::{Table, Value};

use super::model::strings;
use super::values::{Faults, Field, Int, U32_MAX, fault};

/// Entries past this many are not built.
const ITEMS_MAX: usize = 4;

/// Names of `[trust.keys]`, and the valid Ed25519 public key each has
/// (those of the example policies).
const KEY_NAMES: [&str; 2] = ["author", "security"];
/// See [`KEY_NAMES`].
const KEYS: [&str; 2] = [
    "d6f14b71d4864f63affeb77cab4d980516d940b224c48c47c8eb28c78dd594e9",
    "91579d7c533d81b4965b1ef1ecbf6ed108d527b28a120243fa5ca876f24b4fbb",
];

/// The `[trust]` section.
#[derive(Arbitrary, Debug)]
pub struct TrustModel {
    keys: Vec<(u8, u8)>,
    threshold: Option<Int>,
    revoked_keys: Vec<u8>,
    revoked_mods: Vec<u8>,
}

/// Hex digits from `k`, `len` of them.
fn hex(k: u8, len: usize) -> String {
    format!("{k:02x}").repeat(len / 2 + 1)[..len].to_string()
}

/// `s` with its first character not a hex digit.
fn not_hex(s: String) -> String {
    format!("g{}", &s[1..])
}

/// Hex strings of one of `lengths` each (picked by its byte), at times a
/// digit short or holding a non-hex one: the parser must refuse those,
/// naming `marker`.
pub fn digests(bytes: &[u8], lengths: &[usize], f: &mut Faults, marker: &str) -> Vec<String> {
    let digest = |k: u8, f: &mut Faults| {
        let len = lengths[usize::from(k) % lengths.len()];
        match fault(k, 2) {
            Some(0) => {
                f.must(marker);
                hex(k, len - 1)
            }
            Some(_) => {
                f.must(marker);
                not_hex(hex(k, len))
            }
            None => hex(k, len),
        }
    };
    bytes
        .iter()
        .take(ITEMS_MAX)
        .map(|k| digest(*k, f))
        .collect()
}

impl TrustModel {
    /// Writes the section into `t`; what an accepted policy holds.
    pub fn build(&self, t: &mut Table, f: &mut Faults) -> TrustSettings {
        // By name, the last entry winning, as in a TOML table; with which
        // of the two keys each is (`None`: not a key).
        let mut keys: BTreeMap<String, (String, Option<usize>)> = BTreeMap::new();
        for (name, k) in self.keys.iter().take(ITEMS_MAX) {
            let n = usize::from(*name) % KEY_NAMES.len();
            let key = match (fault(*k, 2), k % 8) {
                (Some(0), _) => (hex(*k, 62), None),
                (Some(_), _) => (not_hex(KEYS[n].into()), None),
                // The other name's key: one signer would count twice.
                (None, 7) => (KEYS[1 - n].into(), Some(1 - n)),
                // Hex digits in either case, and whitespace around them.
                (None, 1) => (KEYS[n].to_uppercase(), Some(n)),
                (None, 2) => (format!(" {} ", KEYS[n]), Some(n)),
                (None, _) => (KEYS[n].into(), Some(n)),
            };
            keys.insert(KEY_NAMES[n].to_string(), key);
        }
        let mut seen = Vec::new();
        for (_, which) in keys.values() {
            match which {
                None => f.must("trust.keys"),
                // One key under two names would count twice.
                Some(w) if seen.contains(w) => f.must("same public key"),
                Some(w) => seen.push(*w),
            }
        }
        let mut tr = Table::new();
        let key_table = keys
            .iter()
            .map(|(n, (k, _))| (n.clone(), Value::String(k.clone())));
        tr.insert("keys".into(), Value::Table(key_table.collect()));
        let threshold = self.threshold.map(|v| {
            let field = Field {
                key: "threshold",
                path: "trust.threshold".into(),
                lo: 0,
                hi: keys.len() as u64,
                max: U32_MAX,
            };
            v.pick(&field, f)
        });
        if let Some(v) = threshold {
            tr.insert("threshold".into(), Value::Integer(v));
        }
        // Key IDs or whole public keys; SHA-256 digests.
        let revoked_keys = digests(&self.revoked_keys, &[24, 64], f, "trust.revoked_keys");
        let revoked_mods = digests(&self.revoked_mods, &[64], f, "trust.revoked_mods");
        tr.insert("revoked_keys".into(), strings(&revoked_keys));
        tr.insert("revoked_mods".into(), strings(&revoked_mods));
        t.insert("trust".into(), Value::Table(tr));
        TrustSettings {
            keys: keys.into_iter().map(|(n, (k, _))| (n, k)).collect(),
            threshold: threshold.map_or(0, |v| v as u32),
            revoked_keys,
            revoked_mods,
        }
    }
}
