//! The daemon's and the CLI's own log: one record per line, always.
//!
//! Log records carry text from outside (a MOD's reason, a client's mode
//! name, a fleet server's error). Rather than trust every call site to
//! escape its values, the writer escapes every control character, line
//! separator and bidi control inside a record (see
//! [`crate::text::escape_controls`]) and keeps only the record's final
//! newline: no value that reaches a `tracing` macro can end a record early,
//! forge another, or drive the terminal. Colours are off for the same
//! reason (they would be escaped).

use std::io;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The target of hole-log records (see `daemon::holelog`): always on at
/// `info`, whatever the filter, unless the filter names it.
pub const HOLE_TARGET: &str = "p2pbroker::hole";

/// Install the global subscriber: `filter` (e.g. `warn`, `info`). Under
/// systemd (standard error is the journal's stream, as `JOURNAL_STREAM`
/// says) records go to journald natively with their fields (prefixed
/// `P2PB_`); otherwise to standard error through [`Escaping`].
pub fn init(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!("{HOLE_TARGET}=info,{filter}"));
    if stderr_is_journal()
        && let Ok(journal) = tracing_journald::layer()
    {
        let journal = journal
            .with_field_prefix(Some("P2PB".into()))
            .with_syslog_identifier("p2pb".into());
        tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Escaping(io::stderr))
        .init();
}

/// Whether standard error is the stream systemd connected to the journal:
/// `JOURNAL_STREAM` is `DEVICE:INODE` of it (a child that inherited the
/// variable but not the descriptor writes to stderr as usual).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on fd 2 into a valid stat buffer.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    v.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino))
}

/// A [`MakeWriter`] whose writers escape each record (see the module docs).
#[derive(Debug, Clone)]
pub struct Escaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        EscapingWriter(self.0.make_writer_for(meta))
    }
}

/// Writes each buffer it is given (the formatter gives one whole record)
/// escaped, but for a final newline.
#[derive(Debug)]
pub struct EscapingWriter<W>(W);

impl<W: io::Write> io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (buf, false),
        };
        let text = String::from_utf8_lossy(body);
        let mut out = crate::text::escape_controls(&text).into_owned();
        if newline {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_cannot_forge_a_record_or_reach_the_terminal() {
        let buf = Buffer::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Escaping(move || sink.clone()))
            .finish();
        let hostile = "no IGD\n2030-01-01T00:00:00Z ERROR forged record\u{1b}[2J\r\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("upnp-igd: probe failed: {hostile}");
            tracing::warn!(reason = %hostile, "displayed field");
            tracing::info!("a plain record");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.ends_with('\n'));
        for raw in ['\u{1b}', '\r', '\u{202e}'] {
            assert!(!out.contains(raw), "{raw:?} in {out}");
        }
        assert!(!out.lines().any(|l| l.starts_with("2030")), "{out}");
        assert!(out.contains("no IGD\\u{a}2030-01-01"), "{out}");
    }
}
