//! The audit log: one JSON line per capability decision, and one per
//! notable event (a MOD breaking the contract, lines suppressed).
//!
//! Every allow and every deny of the gate is recorded with the time, the
//! MOD's name and sha256, the address, the transport and use, and the
//! verdict, so a security team can replay what each MOD touched. A MOD
//! cannot flood the log: within one call a repeated decision is written
//! once and counted, and at most `limits.audit_lines` lines are written;
//! one `audit-suppressed` line then says how many were repeated or dropped
//! ([`CallAudit`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::gate::{Transport, Use};

/// The daemon's audit log in its state folder.
pub const FILE: &str = "audit.jsonl";

/// One capability decision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Decision {
    /// RFC 3339 UTC time of the decision.
    pub time: String,
    /// MOD name.
    pub mode: Arc<str>,
    /// MOD component sha256 (hex).
    pub sha256: Arc<str>,
    /// The socket address checked.
    pub address: SocketAddr,
    /// Transport of the socket.
    pub transport: Transport,
    /// What the address was to be used for.
    #[serde(rename = "use")]
    pub use_: Use,
    /// `allow` or `deny`.
    pub verdict: &'static str,
    /// The grant that allowed it (absent on deny).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

impl Decision {
    /// Whether the decision denied the use.
    pub fn denied(&self) -> bool {
        self.verdict == "deny"
    }

    /// The decision as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        crate::text::json_line(self)
    }
}

/// A notable event of one MOD call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum AuditEvent {
    /// A MOD returned a result that does not answer its request (another
    /// internal endpoint, transport, or an absurd lifetime). The result was
    /// refused: never journaled, never handed to a client.
    ContractBreach {
        /// RFC 3339 UTC time.
        time: String,
        /// MOD name.
        mode: Arc<str>,
        /// MOD component sha256 (hex).
        sha256: Arc<str>,
        /// The lifecycle call (`map`, `renew`).
        call: &'static str,
        /// What was wrong (escaped).
        reason: String,
    },
    /// A local user's outbound `connect` and what the broker decided: the
    /// rule that allowed it and the route that opened it, or why not.
    Connect {
        /// RFC 3339 UTC time.
        time: String,
        /// The requesting uid.
        uid: u32,
        /// The destination host (escaped).
        host: String,
        /// The destination port.
        port: u16,
        /// `allow` (a route opened it) or `deny`.
        verdict: &'static str,
        /// The `[[connect]]` rule that matched, by index.
        #[serde(skip_serializing_if = "Option::is_none")]
        rule: Option<usize>,
        /// The route that opened it (`direct` or a MOD).
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<String>,
        /// Why not, or which routes failed first.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Decisions of one call that were not written: repeats of a decision
    /// already written, and lines past the call's cap.
    AuditSuppressed {
        /// RFC 3339 UTC time.
        time: String,
        /// MOD name.
        mode: Arc<str>,
        /// MOD component sha256 (hex).
        sha256: Arc<str>,
        /// Repeats of decisions already written.
        repeated: u64,
        /// Decisions not written because the call had used up its
        /// `limits.audit_lines` (repeats of those included).
        dropped: u64,
    },
}

impl AuditEvent {
    /// The event as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        crate::text::json_line(self)
    }
}

/// One call's audit budget: each distinct decision is written once, at
/// most `lines` of them; the rest are only counted.
#[derive(Debug)]
pub struct CallAudit(Mutex<CallAuditState>);

#[derive(Debug)]
struct CallAuditState {
    seen: std::collections::HashSet<(SocketAddr, Transport, Use, bool)>,
    left: u32,
    repeated: u64,
    dropped: u64,
}

impl CallAudit {
    /// A budget of `lines` written lines.
    pub fn new(lines: u32) -> CallAudit {
        CallAudit(Mutex::new(CallAuditState {
            seen: Default::default(),
            left: lines,
            repeated: 0,
            dropped: 0,
        }))
    }

    /// Whether `d` is to be written (the first of its kind, within the cap).
    pub fn admit(&self, d: &Decision) -> bool {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (d.address, d.transport, d.use_, d.denied());
        if s.seen.contains(&key) {
            s.repeated += 1;
            return false;
        }
        if s.left == 0 {
            s.dropped += 1;
            return false;
        }
        s.left -= 1;
        s.seen.insert(key);
        true
    }

    /// (repeated, dropped) so far.
    pub fn suppressed(&self) -> (u64, u64) {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (s.repeated, s.dropped)
    }
}

/// Current time in the audit format.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Where decisions go.
pub trait AuditSink: Send + Sync {
    /// Record one decision. Must not block for long: it runs on the socket
    /// path of a MOD.
    fn record(&self, decision: &Decision);
    /// Record one event.
    fn event(&self, event: &AuditEvent);
    /// One lifecycle call finished (metrics; nothing is written by
    /// default).
    fn call(&self, _summary: &CallSummary) {}
}

/// What one lifecycle call cost, for metrics.
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// The MOD's name.
    pub mode: Arc<str>,
    /// The lifecycle call (`map`, `renew`, ...).
    pub op: &'static str,
    /// Wall time of the whole call.
    pub elapsed: std::time::Duration,
    /// Linear memory held at the end of the call: its peak, as a call's
    /// memory only grows.
    pub memory_peak: usize,
    /// Socket uses the gate denied during the call (every one, whether or
    /// not the audit log wrote it out).
    pub denials: usize,
    /// The call's failure kind ([`crate::sandbox::CallError::failure_kind`]),
    /// `None` when it succeeded: every call site is counted the same way.
    pub failed: Option<&'static str>,
}

/// Discards decisions (benchmarks of the raw path only).
#[derive(Debug, Default)]
pub struct NullSink;

impl AuditSink for NullSink {
    fn record(&self, _: &Decision) {}
    fn event(&self, _: &AuditEvent) {}
}

/// Keeps decisions and events in memory (tests, `p2pb mode run`).
#[derive(Debug, Default)]
pub struct MemorySink(Mutex<Vec<Decision>>, Mutex<Vec<AuditEvent>>);

impl MemorySink {
    /// Every decision recorded so far.
    pub fn take(&self) -> Vec<Decision> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every event recorded so far.
    pub fn take_events(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut self.1.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl AuditSink for MemorySink {
    fn record(&self, decision: &Decision) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(decision.clone());
    }

    fn event(&self, event: &AuditEvent) {
        self.1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

/// Appends JSON lines to a file, rotated by size ([`crate::rotate`]): a
/// local user's refused requests and a busy MOD's decisions can fill
/// `max_bytes × (keep + 1)` of disk, never more.
#[derive(Debug)]
pub struct FileSink(Mutex<crate::rotate::Rotating>);

impl FileSink {
    /// Open (create, mode 0600, or append to) the audit file at `path`,
    /// rotated at `max_bytes` with `keep` older files.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> anyhow::Result<FileSink> {
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(d), Some(n)) => (
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                },
                n,
            ),
            _ => anyhow::bail!("{} is not a file name", path.display()),
        };
        let log = crate::rotate::Rotating::open(dir, name, max_bytes, keep)?;
        Ok(FileSink(Mutex::new(log)))
    }
}

impl FileSink {
    fn write(&self, line: String) {
        // A failing audit disk is reported but must not turn into a MOD
        // failure.
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.append(&line) {
            tracing::error!("audit log: {e}");
        }
    }
}

impl AuditSink for FileSink {
    fn record(&self, decision: &Decision) {
        self.write(decision.to_json_line());
    }

    fn event(&self, event: &AuditEvent) {
        self.write(event.to_json_line());
    }
}

/// Sends each decision to several sinks.
pub struct Tee(pub Vec<Arc<dyn AuditSink>>);

impl AuditSink for Tee {
    fn record(&self, decision: &Decision) {
        for s in &self.0 {
            s.record(decision);
        }
    }

    fn event(&self, event: &AuditEvent) {
        for s in &self.0 {
            s.event(event);
        }
    }

    fn call(&self, summary: &CallSummary) {
        for s in &self.0 {
            s.call(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_every_field() {
        let d = Decision {
            time: now_rfc3339(),
            mode: "nat-pmp".into(),
            sha256: "ab".into(),
            address: "10.0.0.1:5351".parse().unwrap(),
            transport: Transport::Udp,
            use_: Use::Send,
            verdict: "allow",
            grant: Some("udp:send@gateway:5351".into()),
        };
        let v: serde_json::Value = serde_json::from_str(&d.to_json_line()).unwrap();
        assert_eq!(v["mode"], "nat-pmp");
        assert_eq!(v["address"], "10.0.0.1:5351");
        assert_eq!(v["use"], "send");
        assert_eq!(v["transport"], "udp");
        assert_eq!(v["verdict"], "allow");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_call_writes_each_decision_once_and_at_most_its_cap() {
        let audit = CallAudit::new(2);
        let d = |port: u16, verdict| Decision {
            time: now_rfc3339(),
            mode: "m".into(),
            sha256: "00".into(),
            address: SocketAddr::from(([10, 0, 0, 1], port)),
            transport: Transport::Udp,
            use_: Use::Send,
            verdict,
            grant: None,
        };
        assert!(audit.admit(&d(1, "deny")));
        for _ in 0..1000 {
            assert!(!audit.admit(&d(1, "deny")), "a repeat is counted only");
        }
        assert!(
            audit.admit(&d(1, "allow")),
            "another verdict is another line"
        );
        assert!(!audit.admit(&d(2, "deny")), "over the cap");
        assert_eq!(audit.suppressed(), (1000, 1));
    }

    #[test]
    fn file_sink_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = FileSink::open(&path, 1 << 20, 1).unwrap();
        let d = Decision {
            time: now_rfc3339(),
            mode: "m".into(),
            sha256: "00".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            transport: Transport::Tcp,
            use_: Use::Connect,
            verdict: "deny",
            grant: None,
        };
        sink.record(&d);
        sink.record(&d);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.contains("\"verdict\":\"deny\"")));
    }
}
