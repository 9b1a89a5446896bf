//! The audit log: one JSON line per capability decision.
//!
//! Every allow and every deny of the gate is recorded with the time, the
//! MOD's name and sha256, the address, the transport and use, and the
//! verdict, so a security team can replay what each MOD touched.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::gate::{Transport, Use};

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
        serde_json::to_string(self).expect("decision serialises")
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
}

/// Discards decisions (benchmarks of the raw path only).
#[derive(Debug, Default)]
pub struct NullSink;

impl AuditSink for NullSink {
    fn record(&self, _: &Decision) {}
}

/// Keeps decisions in memory (tests, `p2pb mode run`).
#[derive(Debug, Default)]
pub struct MemorySink(Mutex<Vec<Decision>>);

impl MemorySink {
    /// Everything recorded so far.
    pub fn take(&self) -> Vec<Decision> {
        std::mem::take(&mut self.0.lock().expect("audit lock"))
    }
}

impl AuditSink for MemorySink {
    fn record(&self, decision: &Decision) {
        self.0.lock().expect("audit lock").push(decision.clone());
    }
}

/// Appends JSON lines to a file.
#[derive(Debug)]
pub struct FileSink(Mutex<std::fs::File>);

impl FileSink {
    /// Open (create or append to) the audit file at `path`.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(FileSink(Mutex::new(file)))
    }
}

impl AuditSink for FileSink {
    fn record(&self, decision: &Decision) {
        let mut line = decision.to_json_line();
        line.push('\n');
        // One write per line keeps lines whole under O_APPEND; a failing
        // audit disk is reported but must not turn into a MOD failure.
        if let Err(e) = self
            .0
            .lock()
            .expect("audit lock")
            .write_all(line.as_bytes())
        {
            tracing::error!("audit log write failed: {e}");
        }
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
    fn file_sink_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = FileSink::open(&path).unwrap();
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
