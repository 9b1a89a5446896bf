//! Metrics in the OpenMetrics text format (`p2pb daemon --metrics ADDR`),
//! with the prometheus-client crate. Counters and histograms are fed as
//! things happen; lease counts and the policy's serial and expiry are read
//! from the broker's state at each scrape, so they can never drift from it.
//!
//! Label values are bounded: MOD names come from the loaded components
//! (the policy names them), operations and error kinds are fixed sets, so
//! nobody outside can make a family grow. The names are documented in
//! docs/operations.md ("Metrics").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pbroker_client::LeaseState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::{AuditEvent, AuditSink, CallSummary, Decision};

/// `mode="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: String,
}

/// `stage="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

/// `mode="…",op="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    mode: String,
    op: String,
}

/// `mode="…",op="…",kind="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    mode: String,
    op: String,
    kind: String,
}

/// `mode="…",state="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    mode: String,
    state: String,
}

/// `code="…"` / `result="…"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.5 ms to about 16 s, doubling: a MOD call on a
/// LAN takes milliseconds, a gateway that stalls up to the call budget.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Stage buckets from 10 µs to about 2.6 s, doubling: most stages of a
/// map take well under the 0.5 ms a whole map's first bucket starts at.
fn stage_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 19))
}

/// The stages of a map the broker times (`p2pb_map_stage_duration_seconds`).
pub const MAP_STAGES: [&str; 9] = [
    "authorize",
    "ownership",
    "reserve",
    "spawn",
    "select",
    "intent",
    "mod",
    "journal",
    "install",
];

/// What a fleet fetch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetResult {
    /// Nothing new (304, or the same bundle).
    Unchanged,
    /// A new policy was verified and applied.
    Applied,
    /// The fetch failed (network, HTTP status, size).
    FetchFailed,
    /// Fetched, but refused (signature, rollback, expiry, load).
    Refused,
}

impl FleetResult {
    fn as_str(self) -> &'static str {
        match self {
            FleetResult::Unchanged => "unchanged",
            FleetResult::Applied => "applied",
            FleetResult::FetchFailed => "fetch-failed",
            FleetResult::Refused => "refused",
        }
    }
}

/// What a scrape reads from the broker's state.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Leases by (MOD, state).
    pub leases: BTreeMap<(String, &'static str), i64>,
    /// The policy in force: its serial, if signed.
    pub policy_serial: Option<u64>,
    /// When the policy in force expires (unix ms), if it does.
    pub policy_expires_ms: Option<u64>,
    /// MODs loaded and permitted.
    pub modes_loaded: usize,
}

impl Snapshot {
    /// Count `leases` (MOD, state) by pair: only the distinct pairs are
    /// kept, so a scrape of 10,000 leases copies a handful of names.
    pub fn count<'a>(
        leases: impl Iterator<Item = (&'a str, LeaseState)>,
    ) -> BTreeMap<(String, &'static str), i64> {
        let mut by: BTreeMap<(&str, &'static str), i64> = BTreeMap::new();
        for (mode, state) in leases {
            *by.entry((mode, state.as_str())).or_default() += 1;
        }
        by.into_iter()
            .map(|((m, st), n)| ((m.to_string(), st), n))
            .collect()
    }
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    map_seconds: Histograms<ModeLabel>,
    map_stage_seconds: Histograms<StageLabel>,
    renew_seconds: Histograms<ModeLabel>,
    call_seconds: Histograms<CallLabels>,
    memory_peak: Family<ModeLabel, Gauge>,
    failures: Family<FailureLabels, Counter>,
    map_errors: Family<CodeLabel, Counter>,
    denials: Family<ModeLabel, Counter>,
    fleet: Family<ResultLabel, Counter>,
    leases: Family<LeaseLabels, Gauge>,
    policy_serial: Gauge,
    policy_expiry: Gauge,
    modes_loaded: Gauge,
    /// One scrape at a time: the scrape-time gauges are cleared and set.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family, registered under `p2pb_`.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("p2pb");
        let m = Metrics {
            registry: Registry::default(),
            map_seconds: Family::new_with_constructor(latency),
            map_stage_seconds: Family::new_with_constructor(stage_latency),
            renew_seconds: Family::new_with_constructor(latency),
            call_seconds: Family::new_with_constructor(latency),
            memory_peak: Family::default(),
            failures: Family::default(),
            map_errors: Family::default(),
            denials: Family::default(),
            fleet: Family::default(),
            leases: Family::default(),
            policy_serial: Gauge::default(),
            policy_expiry: Gauge::default(),
            modes_loaded: Gauge::default(),
            scrape: Mutex::new(()),
        };
        r.register(
            "build",
            "The broker's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "leases",
            "Leases held, by the MOD that serves them and their state",
            m.leases.clone(),
        );
        r.register_with_unit(
            "map_duration",
            "Client maps that succeeded, request to answer, by serving MOD",
            Unit::Seconds,
            m.map_seconds.clone(),
        );
        r.register_with_unit(
            "map_stage_duration",
            "Where maps spend their time, by stage (client maps and re-establishments)",
            Unit::Seconds,
            m.map_stage_seconds.clone(),
        );
        r.register_with_unit(
            "renew_duration",
            "Lease renewals that succeeded, by MOD",
            Unit::Seconds,
            m.renew_seconds.clone(),
        );
        r.register(
            "map_errors",
            "Client maps refused or failed, by API error code",
            m.map_errors.clone(),
        );
        r.register(
            "mod_failures",
            "MOD calls that failed, by MOD, operation and error kind",
            m.failures.clone(),
        );
        r.register_with_unit(
            "mod_call_duration",
            "Every MOD lifecycle call in the sandbox, by MOD and operation",
            Unit::Seconds,
            m.call_seconds.clone(),
        );
        r.register_with_unit(
            "mod_memory_peak",
            "The most linear memory one call of the MOD has held",
            Unit::Bytes,
            m.memory_peak.clone(),
        );
        r.register(
            "gate_denials",
            "Socket uses the capability gate denied, by MOD",
            m.denials.clone(),
        );
        r.register(
            "fleet_fetches",
            "Fleet policy fetches, by result",
            m.fleet.clone(),
        );
        r.register(
            "policy_serial",
            "Serial of the signed policy in force (0: an unsigned local policy)",
            m.policy_serial.clone(),
        );
        r.register_with_unit(
            "policy_expiry_timestamp",
            "When the policy in force expires, unix time (0: it does not)",
            Unit::Seconds,
            m.policy_expiry.clone(),
        );
        r.register(
            "mods_loaded",
            "MODs loaded and permitted by the policy",
            m.modes_loaded.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// A client map answered with a lease from `mode`.
    pub fn mapped(&self, mode: &str, took: Duration) {
        self.map_seconds
            .get_or_create(&mode_label(mode))
            .observe(took.as_secs_f64());
    }

    /// One stage of a map (one of [`MAP_STAGES`]) took `took`.
    pub fn map_stage(&self, stage: &'static str, took: Duration) {
        debug_assert!(MAP_STAGES.contains(&stage), "{stage}");
        self.map_stage_seconds
            .get_or_create(&StageLabel {
                stage: stage.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A client map answered with an error (its API code).
    pub fn map_failed(&self, code: &str) {
        self.map_errors
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }

    /// A renewal through `mode` succeeded.
    pub fn renewed(&self, mode: &str, took: Duration) {
        self.renew_seconds
            .get_or_create(&mode_label(mode))
            .observe(took.as_secs_f64());
    }

    /// A MOD call failed with `kind` ([`CallError::failure_kind`]); fed by
    /// [`Metrics::call`], so every call site counts.
    ///
    /// [`CallError::failure_kind`]: crate::sandbox::CallError::failure_kind
    pub fn mod_failed(&self, mode: &str, op: &str, kind: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                mode: mode.to_string(),
                op: op.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// A fleet fetch finished.
    pub fn fleet_fetch(&self, result: FleetResult) {
        self.fleet
            .get_or_create(&ResultLabel {
                result: result.as_str().to_string(),
            })
            .inc();
    }

    /// A lifecycle call finished in the sandbox.
    pub fn call(&self, c: &CallSummary) {
        let mode = mode_label(&c.mode);
        self.call_seconds
            .get_or_create(&CallLabels {
                mode: mode.mode.clone(),
                op: c.op.to_string(),
            })
            .observe(c.elapsed.as_secs_f64());
        let peak = i64::try_from(c.memory_peak).unwrap_or(i64::MAX);
        self.memory_peak
            .get_or_create(&mode)
            .inner()
            .fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
        if c.denials > 0 {
            self.denials.get_or_create(&mode).inc_by(c.denials as u64);
        }
        if let Some(kind) = c.failed {
            self.mod_failed(&c.mode, c.op, kind);
        }
    }

    /// The whole exposition, with the scrape-time gauges set from `s`.
    pub fn encode(&self, s: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.leases.clear();
        for ((mode, state), n) in &s.leases {
            self.leases
                .get_or_create(&LeaseLabels {
                    mode: mode.to_string(),
                    state: state.to_string(),
                })
                .set(*n);
        }
        self.policy_serial.set(
            s.policy_serial
                .map_or(0, |x| i64::try_from(x).unwrap_or(i64::MAX)),
        );
        self.policy_expiry.set(
            s.policy_expires_ms
                .map_or(0, |ms| i64::try_from(ms / 1000).unwrap_or(i64::MAX)),
        );
        self.modes_loaded
            .set(i64::try_from(s.modes_loaded).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn mode_label(mode: &str) -> ModeLabel {
    ModeLabel {
        mode: mode.to_string(),
    }
}

/// The daemon's audit sink: writes through to `inner` and feeds the
/// metrics with what each call cost.
pub struct MeteredSink {
    /// Where decisions and events are written.
    pub inner: Arc<dyn AuditSink>,
    /// Where call costs are counted.
    pub metrics: Arc<Metrics>,
}

impl AuditSink for MeteredSink {
    fn record(&self, decision: &Decision) {
        self.inner.record(decision);
    }

    fn event(&self, event: &AuditEvent) {
        self.inner.event(event);
    }

    fn call(&self, summary: &CallSummary) {
        self.metrics.call(summary);
        self.inner.call(summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(mode: &str, op: &'static str, memory_peak: usize, denials: usize) -> CallSummary {
        CallSummary {
            mode: mode.into(),
            op,
            elapsed: Duration::from_millis(3),
            memory_peak,
            denials,
            failed: None,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn scrape_time_gauges_follow_the_state_and_forget_what_is_gone() {
        let m = Metrics::new();
        let mut s = Snapshot {
            leases: Snapshot::count(
                [
                    ("nat-pmp", LeaseState::Active),
                    ("nat-pmp", LeaseState::Active),
                    ("upnp-igd", LeaseState::ReEstablishing),
                ]
                .into_iter(),
            ),
            policy_serial: Some(7),
            policy_expires_ms: Some(1_900_000_000_500),
            modes_loaded: 3,
        };
        let t = m.encode(&s);
        assert_eq!(
            line(&t, "p2pb_leases{mode=\"nat-pmp\",state=\"active\"}"),
            Some("p2pb_leases{mode=\"nat-pmp\",state=\"active\"} 2")
        );
        assert!(t.contains("p2pb_leases{mode=\"upnp-igd\",state=\"re-establishing\"} 1"));
        assert!(t.contains("p2pb_policy_serial 7\n"), "{t}");
        assert!(
            t.contains("p2pb_policy_expiry_timestamp_seconds 1900000000\n"),
            "{t}"
        );
        assert!(t.contains("p2pb_mods_loaded 3\n"));
        assert!(t.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
        s.leases = Snapshot::count([("nat-pmp", LeaseState::Active)].into_iter());
        s.policy_serial = None;
        let t = m.encode(&s);
        assert!(t.contains("p2pb_leases{mode=\"nat-pmp\",state=\"active\"} 1"));
        assert!(
            !t.contains("upnp-igd"),
            "a state no lease is in is not reported: {t}"
        );
        assert!(t.contains("p2pb_policy_serial 0\n"));
    }

    #[test]
    fn calls_feed_latency_memory_peaks_and_denials_through_the_sink() {
        let m = Arc::new(Metrics::new());
        let sink = MeteredSink {
            inner: Arc::new(crate::audit::NullSink),
            metrics: m.clone(),
        };
        sink.call(&summary("pcp", "map", 2 << 20, 0));
        sink.call(&summary("pcp", "map", 1 << 20, 2));
        sink.call(&summary("pcp", "probe", 0, 1));
        let mut renew = summary("pcp", "renew", 0, 0);
        renew.failed = Some("timeout");
        sink.call(&renew);
        m.mapped("pcp", Duration::from_millis(12));
        m.map_failed("no-mode");
        m.fleet_fetch(FleetResult::Refused);
        let t = m.encode(&Snapshot::default());
        assert!(
            t.contains("p2pb_mod_call_duration_seconds_count{mode=\"pcp\",op=\"map\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("p2pb_mod_memory_peak_bytes{mode=\"pcp\"} 2097152"),
            "the peak, not the last call: {t}"
        );
        assert!(t.contains("p2pb_gate_denials_total{mode=\"pcp\"} 3"), "{t}");
        assert!(t.contains("p2pb_map_duration_seconds_count{mode=\"pcp\"} 1"));
        // 12 ms falls in the 16 ms bucket and every one above it.
        assert!(t.contains("p2pb_map_duration_seconds_bucket{le=\"0.016\",mode=\"pcp\"} 1"));
        assert!(t.contains("p2pb_map_duration_seconds_bucket{le=\"0.008\",mode=\"pcp\"} 0"));
        assert!(t.contains("p2pb_map_errors_total{code=\"no-mode\"} 1"));
        assert!(
            t.contains("p2pb_mod_failures_total{mode=\"pcp\",op=\"renew\",kind=\"timeout\"} 1")
        );
        assert!(
            !t.contains("p2pb_mod_failures_total{mode=\"pcp\",op=\"map\""),
            "a call that succeeded is no failure: {t}"
        );
        assert!(t.contains("p2pb_fleet_fetches_total{result=\"refused\"} 1"));
        assert!(t.contains("p2pb_build_info{version=\""));
    }

    #[test]
    fn label_values_from_outside_are_escaped() {
        let m = Metrics::new();
        m.mod_failed("a\"b\nc", "map", "fault");
        let t = m.encode(&Snapshot::default());
        assert!(t.contains("mode=\"a\\\"b\\nc\""), "{t}");
        assert!(!t.contains("b\nc"));
    }
}
