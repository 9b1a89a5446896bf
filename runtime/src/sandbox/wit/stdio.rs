//! A MOD's stdout and stderr. Components built by other languages'
//! toolchains (componentize-py, jco) import `wasi:cli` and write there
//! (`print`, tracebacks); the broker has no terminal to give them. What
//! they write is kept, up to a cap, and becomes the call's log lines when
//! it ends (stdout at level info, stderr at warn), under the same per-call
//! line cap and escaping as `broker.log`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::broker::{LOG_LINE_MAX, LOG_LINES_MAX};

/// Most bytes kept per stream and call: as much as the log lines could
/// hold. Beyond it writes succeed and the bytes are counted, not kept, so
/// a MOD that prints in a loop holds no more host memory than this.
pub const STDIO_MAX: usize = LOG_LINES_MAX * LOG_LINE_MAX;

#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    dropped: u64,
}

/// One output stream of one call (clones share it).
#[derive(Clone, Default)]
pub struct StdioLog(Arc<Mutex<Kept>>);

impl StdioLog {
    /// The lines written (the last one even without its newline), and how
    /// many bytes were dropped over the cap.
    pub fn take(&self) -> (Vec<String>, u64) {
        let kept = std::mem::take(&mut *self.0.lock().unwrap());
        let lines = kept
            .bytes
            .split(|b| *b == b'\n')
            .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
            .collect::<Vec<_>>();
        // A trailing newline leaves an empty piece, not a line.
        let n = lines.len() - usize::from(kept.bytes.ends_with(b"\n") || kept.bytes.is_empty());
        (lines.into_iter().take(n).collect(), kept.dropped)
    }

    fn write(&self, buf: &[u8]) {
        let mut k = self.0.lock().unwrap();
        let room = STDIO_MAX.saturating_sub(k.bytes.len());
        let n = room.min(buf.len());
        k.bytes.extend_from_slice(&buf[..n]);
        k.dropped += (buf.len() - n) as u64;
    }
}

impl IsTerminal for StdioLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for StdioLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_out_whole_and_the_rest_is_counted() {
        let s = StdioLog::default();
        s.write(b"one\r\ntwo\npartial");
        assert_eq!(
            s.take(),
            (vec!["one".into(), "two".into(), "partial".into()], 0)
        );
        assert_eq!(s.take(), (vec![], 0), "taken once");
        s.write(b"x\n");
        assert_eq!(s.take().0, vec!["x".to_string()]);
        s.write(&vec![b'a'; STDIO_MAX + 10]);
        let (lines, dropped) = s.take();
        assert_eq!(dropped, 10);
        assert_eq!(lines.concat().len(), STDIO_MAX);
    }
}
