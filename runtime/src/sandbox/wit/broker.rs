//! The `p2pbroker:mode/broker` interface, implemented on a narrow view of
//! the store: the network facts, the MOD's config, and where its log lines
//! go.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime_wasi::p2::bindings::sockets::network::IpAddress;

use super::p2pbroker::mode::{broker, types};
use super::{Level, WitLocalAddress};
use crate::netinfo::NetInfo;

/// Longest log line kept, bytes; longer lines are cut (on a char boundary).
pub const LOG_LINE_MAX: usize = 1024;
/// Most log lines kept per call; further lines are counted, not kept, so a
/// chatty or hostile MOD cannot fill the broker's memory or logs.
pub const LOG_LINES_MAX: usize = 256;
/// Longest config key the broker looks up; policy keys are short words.
const CONFIG_KEY_MAX: usize = 256;

/// One line a MOD logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// Severity.
    pub level: &'static str,
    /// Text, at most [`LOG_LINE_MAX`] bytes.
    pub message: String,
}

/// What the broker interface may see: the network facts, the MOD's config,
/// and where its log lines go.
pub struct BrokerCtx {
    pub(crate) net: Arc<NetInfo>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) mode: Arc<str>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) logs_dropped: u64,
    /// What the MOD wrote to stdout and stderr (`wasi:cli`).
    pub(crate) stdio: [super::stdio::StdioLog; 2],
}

impl BrokerCtx {
    /// Turn what the MOD wrote to stdout (info) and stderr (warn) into log
    /// lines, after those it logged; bytes over the cap count as one
    /// dropped line.
    pub(crate) fn absorb_stdio(&mut self) {
        use broker::Host as _;
        let [out, err] = self.stdio.clone();
        for (stream, level) in [(out, Level::Info), (err, Level::Warn)] {
            let (lines, dropped) = stream.take();
            for line in lines {
                self.log(level, line);
            }
            self.logs_dropped += u64::from(dropped > 0);
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl types::Host for BrokerCtx {}

impl broker::Host for BrokerCtx {
    fn default_gateways(&mut self) -> Vec<IpAddress> {
        self.net.gateways.iter().map(|ip| (*ip).into()).collect()
    }

    fn local_addresses(&mut self) -> Vec<WitLocalAddress> {
        self.net
            .addresses
            .iter()
            .map(|a| WitLocalAddress {
                address: a.address.into(),
                prefix_len: a.prefix_len,
                interface_name: a.interface.clone(),
            })
            .collect()
    }

    fn config(&mut self, key: String) -> Option<String> {
        if key.len() > CONFIG_KEY_MAX {
            return None;
        }
        self.config.get(&key).cloned()
    }

    fn log(&mut self, level: Level, message: String) {
        if self.logs.len() >= LOG_LINES_MAX {
            self.logs_dropped += 1;
            return;
        }
        // Clipped, then escaped: a MOD's line can forge no log record.
        let message = crate::sandbox::contract::clean_text(truncate(message, LOG_LINE_MAX));
        let level = level_name(level);
        tracing::debug!(mode = %self.mode, level, "{message}");
        self.logs.push(LogLine { level, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::wit::p2pbroker::mode::broker::Host as _;

    fn ctx() -> BrokerCtx {
        BrokerCtx {
            net: Arc::new(NetInfo::default()),
            config: Arc::new(BTreeMap::from([("k".to_string(), "v".to_string())])),
            mode: "m".into(),
            logs: Vec::new(),
            logs_dropped: 0,
            stdio: Default::default(),
        }
    }

    #[test]
    fn log_lines_are_truncated_and_capped() {
        let mut c = ctx();
        for _ in 0..LOG_LINES_MAX + 10 {
            c.log(Level::Info, "é".repeat(LOG_LINE_MAX));
        }
        assert_eq!(c.logs.len(), LOG_LINES_MAX);
        assert_eq!(c.logs_dropped, 10);
        assert!(c.logs[0].message.len() <= LOG_LINE_MAX + '…'.len_utf8());
    }

    #[test]
    fn config_lookup_ignores_absurd_keys() {
        let mut c = ctx();
        assert_eq!(c.config("k".into()), Some("v".into()));
        assert_eq!(c.config("k".repeat(10_000)), None);
    }
}
