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

/// Install the global subscriber: `filter` (e.g. `warn`, `info`), records
/// to standard error through [`Escaping`].
pub fn init(filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(Escaping(io::stderr))
        .init();
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
