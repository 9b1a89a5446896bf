//! The policy model: every key of the schema (`p2pbroker::policy`), built
//! into a TOML table, with the refusals its values call for and what an
//! accepted policy must hold. The fleet sections (profiles, access, LAN,
//! trust, services) are in [`super::fleet`].

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use p2pbroker::policy::BrokerSettings;
use toml::{Table, Value};

use super::fleet::Fleet;
use super::modes::{Mode, ModeExpect};
use super::values::{
    BAD_DATES, DATES, Faults, Field, GHOSTS, Int, U32_MAX as U32, U64_MAX as U64, fault, pick,
};

/// A policy.
#[derive(Arbitrary, Debug)]
pub struct Model {
    /// At times no version key.
    version_missing: u8,
    version: Int,
    serial: Option<Int>,
    issued_at: Option<u8>,
    expires: Option<u8>,
    order: Vec<Ref>,
    broker: Option<Broker>,
    fleet: Fleet,
    modes: Vec<Mode>,
    /// At times a key the schema does not have.
    unknown: u8,
}

/// A MOD name in an order: one of the policy's, or one it lacks.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Ref {
    ghost: u8,
    index: u8,
}

impl Ref {
    /// The name, recording the refusal of a name the policy lacks.
    pub fn name(self, modes: &[String], faults: &mut Faults) -> Option<String> {
        if let Some(i) = fault(self.ghost, GHOSTS.len()) {
            let g = GHOSTS[i];
            faults.must(format!("names mode `{g}`"));
            return Some(g.into());
        }
        modes
            .get(usize::from(self.index) % modes.len().max(1))
            .cloned()
    }
}

/// Each `[broker]` key: name, documented range, the largest value of its
/// type.
const BROKER: [(&str, u64, u64, u64); 9] = [
    ("mapping_lifetime", 10, 86_400, U32),
    ("max_lifetime", 1, 365 * 86_400, U32),
    ("max_leases", 1, 100_000, U32),
    ("probe_budget_ms", 10, 60_000, U64),
    ("probe_cap_ms", 10, 120_000, U64),
    ("probe_ttl_s", 1, 86_400, U64),
    ("netwatch_ms", 100, 3_600_000, U64),
    ("max_connections_per_client", 1, 65_536, U32),
    ("max_requests_per_client", 1, 65_536, U32),
];

#[derive(Arbitrary, Debug)]
struct Broker {
    values: [Option<Int>; 9],
    permanent_allowed: Option<bool>,
}

/// What an accepted policy must hold: the values built, defaults where a
/// key was left out.
pub struct Expect {
    /// `serial`.
    pub serial: Option<u64>,
    /// `issued_at`, as written.
    pub issued_at: Option<String>,
    /// `expires`, as written.
    pub expires: Option<String>,
    /// The top-level `order`.
    pub order: Vec<String>,
    /// `[broker]`, defaults filled in.
    pub broker: BrokerSettings,
    /// The fleet sections.
    pub fleet: super::fleet::Expect,
    /// Each MOD by name.
    pub modes: BTreeMap<String, ModeExpect>,
}

/// A built policy: its text, the refusals it calls for, what it holds.
pub struct Built {
    /// The policy as TOML.
    pub text: String,
    /// The refusals its values call for.
    pub faults: Faults,
    /// What it holds if accepted.
    pub expect: Expect,
}

/// Collections past these sizes are not built.
const MODES_MAX: usize = 6;
const ITEMS_MAX: usize = 6;

impl Model {
    /// The policy; `None` if TOML cannot write it.
    pub fn build(&self) -> Option<Built> {
        let mut f = Faults::default();
        let mut t = Table::new();
        if fault(self.version_missing, 1).is_some() {
            f.must("version");
        } else {
            let field = Field {
                key: "version",
                path: "policy version".into(),
                lo: 1,
                hi: 1,
                max: U32,
            };
            t.insert(
                "version".into(),
                Value::Integer(self.version.pick(&field, &mut f)),
            );
        }
        let serial = self
            .serial
            .map(|s| s.pick(&Field::any("serial", U64), &mut f));
        if let Some(s) = serial {
            t.insert("serial".into(), Value::Integer(s));
        }
        let mut date = |key: &str, k: Option<u8>| {
            let d = pick(&DATES, &BAD_DATES, k?, &mut f, key).to_string();
            t.insert(key.into(), Value::String(d.clone()));
            Some(d)
        };
        let issued_at = date("issued_at", self.issued_at);
        let expires = date("expires", self.expires);
        // The last entry of a name wins, as a TOML table can hold it once.
        let mut by_name: BTreeMap<String, &Mode> = BTreeMap::new();
        for m in self.modes.iter().take(MODES_MAX) {
            by_name.insert(m.name(), m);
        }
        let names: Vec<String> = by_name.keys().cloned().collect();
        let order: Vec<String> = self
            .order
            .iter()
            .take(ITEMS_MAX)
            .filter_map(|r| r.name(&names, &mut f))
            .collect();
        if !order.is_empty() {
            t.insert("order".into(), strings(&order));
        }
        let broker = self
            .broker
            .as_ref()
            .map_or_else(BrokerSettings::default, |b| b.build(&mut t, &mut f));
        let fleet = self.fleet.build(&mut t, &names, &mut f);
        let mut modes = Table::new();
        let mut modes_expect = BTreeMap::new();
        for (name, m) in by_name {
            let (table, e) = m.build(&fleet, &mut f);
            modes.insert(name.clone(), Value::Table(table));
            modes_expect.insert(name, e);
        }
        if !modes.is_empty() {
            t.insert("modes".into(), Value::Table(modes));
        }
        if fault(self.unknown, 1).is_some() {
            t.insert("orders".into(), Value::Array(Vec::new()));
            f.must("unknown field `orders`");
        }
        Some(Built {
            text: toml::to_string(&t).ok()?,
            faults: f,
            expect: Expect {
                serial: serial.map(|s| s as u64),
                issued_at,
                expires,
                order,
                broker,
                fleet,
                modes: modes_expect,
            },
        })
    }
}

/// A TOML array of strings.
pub fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// A TOML array of tables.
pub fn tables(items: Vec<Table>) -> Value {
    Value::Array(items.into_iter().map(Value::Table).collect())
}

impl Broker {
    fn build(&self, t: &mut Table, f: &mut Faults) -> BrokerSettings {
        let mut b = Table::new();
        let mut s = BrokerSettings::default();
        for ((key, lo, hi, max), v) in BROKER.iter().zip(&self.values) {
            let Some(v) = v else { continue };
            // The probe cap may not be below the budget: picked against
            // it, its faults include that.
            // (An absent cap is 1000.)
            let (lo, hi) = match *key {
                "probe_cap_ms" => ((*lo).max(s.probe_budget_ms).min(*hi), *hi),
                "probe_budget_ms" if self.values[4].is_none() => (*lo, 1000),
                _ => (*lo, *hi),
            };
            let field = Field {
                key,
                path: format!("broker.{key}"),
                lo,
                hi,
                max: *max,
            };
            let v = v.pick(&field, f);
            b.insert(key.to_string(), Value::Integer(v));
            let (n32, n64) = (v as u32, v as u64);
            match *key {
                "mapping_lifetime" => s.mapping_lifetime = n32,
                "max_lifetime" => s.max_lifetime = n32,
                "max_leases" => s.max_leases = n32,
                "probe_budget_ms" => s.probe_budget_ms = n64,
                "probe_cap_ms" => s.probe_cap_ms = n64,
                "probe_ttl_s" => s.probe_ttl_s = n64,
                "netwatch_ms" => s.netwatch_ms = n64,
                "max_connections_per_client" => s.max_connections_per_client = n32,
                _ => s.max_requests_per_client = n32,
            }
        }
        if s.probe_cap_ms < s.probe_budget_ms {
            f.must("broker.probe_cap_ms");
        }
        if let Some(p) = self.permanent_allowed {
            b.insert("permanent_allowed".into(), Value::Boolean(p));
            s.permanent_allowed = p;
        }
        t.insert("broker".into(), Value::Table(b));
        s
    }
}
