//! Reading request lines and writing answers, each within a time limit, so
//! a client that stops talking or stops reading cannot hold a connection,
//! its descriptor and its tasks forever.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use p2pbroker_client::fdrecv::send_with_fd;
use p2pbroker_client::framing::{Frame, LineSplitter};
use p2pbroker_client::read_frame;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// A connection with no lease, no subscription and no request in flight is
/// closed after this long without a request. Long enough for an
/// application that connects at start and maps a little later; short
/// enough that forgotten connections give their slot under the
/// per-client cap back within minutes. (A connection that holds something
/// is never idle: it must stay open for its leases to live.)
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Once a line has begun, the rest must arrive within this: a request is
/// at most 16 KiB, which even a slow LAN link carries in well under a
/// second, so only a client dribbling bytes on purpose (slowloris) hits it.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// One answer or event line must be written within this. A client that
/// does not read fills its socket buffer; after this long the connection
/// is closed instead of a writer task waiting on it forever. Generous,
/// because the largest answers (root's `status` with thousands of leases)
/// are megabytes.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadLine {
    /// A complete line (without its newline).
    Line(Vec<u8>),
    /// A line longer than the limit, consumed up to its newline.
    TooLong,
    /// End of stream.
    Eof,
}

/// Read one line of at most `max` bytes without buffering more than that.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<ReadLine> {
    let mut splitter = LineSplitter::new(max);
    Ok(match read_frame(r, &mut splitter).await? {
        Some(Frame::Line(line)) => ReadLine::Line(line),
        Some(Frame::TooLong) => ReadLine::TooLong,
        None => ReadLine::Eof,
    })
}

/// What waiting for the next request gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A line (or the end of the stream).
    Read(ReadLine),
    /// Nothing arrived for [`IDLE_TIMEOUT`] and the connection held
    /// nothing: close it.
    Idle,
    /// A line began but did not end within [`LINE_TIMEOUT`]: close it.
    Slow,
}

/// Wait for the next request line. While nothing arrives, `busy` is asked
/// every [`IDLE_TIMEOUT`] whether the connection holds something (so it
/// is closed between one and two idle periods after it last did).
pub async fn next_line<R, F>(r: &mut R, max: usize, mut busy: F) -> std::io::Result<Next>
where
    R: AsyncBufRead + Unpin,
    F: FnMut() -> bool,
{
    loop {
        // `fill_buf` is cancel safe: a timeout here loses no byte.
        match tokio::time::timeout(IDLE_TIMEOUT, r.fill_buf()).await {
            Ok(Ok([])) => return Ok(Next::Read(ReadLine::Eof)),
            Ok(Ok(_)) => break,
            Ok(Err(e)) => return Err(e),
            Err(_) if busy() => continue,
            Err(_) => return Ok(Next::Idle),
        }
    }
    match tokio::time::timeout(LINE_TIMEOUT, read_line(r, max)).await {
        Ok(read) => read.map(Next::Read),
        Err(_) => Ok(Next::Slow),
    }
}

/// Why a connection's writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEnd {
    /// Its queue closed: the connection is done.
    Done,
    /// A write failed (the client went away).
    Failed,
    /// A line could not be written within [`WRITE_TIMEOUT`].
    Stalled,
}

/// One line for the client, and the socket it hands over, if any (a
/// `connect` answer).
#[derive(Debug)]
pub struct Out {
    /// The line, newline included.
    pub line: String,
    /// Sent with the line's first byte (SCM_RIGHTS), then closed here.
    pub fd: Option<OwnedFd>,
}

impl From<String> for Out {
    fn from(line: String) -> Out {
        Out { line, fd: None }
    }
}

/// Where a connection's lines go.
pub trait LineSink: AsyncWrite + Unpin {
    /// The Unix socket a descriptor can travel on; `None` for a connection
    /// that cannot carry one (LAN).
    fn unix(&self) -> Option<&UnixStream> {
        None
    }
}

impl LineSink for tokio::net::unix::OwnedWriteHalf {
    fn unix(&self) -> Option<&UnixStream> {
        Some(self.as_ref())
    }
}
impl LineSink for tokio::net::tcp::OwnedWriteHalf {}
impl LineSink for tokio::io::DuplexStream {}

/// Write `out` whole.
async fn put<W: LineSink>(wr: &mut W, out: &Out) -> std::io::Result<()> {
    match (&out.fd, wr.unix()) {
        (Some(fd), Some(sock)) => send_with_fd(sock, out.line.as_bytes(), fd.as_fd()).await,
        // Only local connections ask for sockets; the descriptor closes here.
        _ => wr.write_all(out.line.as_bytes()).await,
    }
}

/// Write each queued line, each within [`WRITE_TIMEOUT`].
pub async fn write_lines<W: LineSink>(mut wr: W, mut rx: mpsc::Receiver<Out>) -> WriteEnd {
    while let Some(out) = rx.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, put(&mut wr, &out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return WriteEnd::Failed,
            Err(_) => return WriteEnd::Stalled,
        }
    }
    WriteEnd::Done
}

/// Write one line within [`WRITE_TIMEOUT`]; false if that failed.
pub async fn write_one<W: AsyncWrite + Unpin>(wr: &mut W, line: &str) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes())).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, BufReader};

    async fn lines(input: &[u8], max: usize) -> Vec<ReadLine> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        for _ in 0..16 {
            let l = read_line(&mut r, max).await.unwrap();
            let eof = l == ReadLine::Eof;
            out.push(l);
            if eof {
                break;
            }
        }
        out
    }

    #[tokio::test]
    async fn long_lines_are_skipped_whole_and_the_stream_goes_on() {
        let got = lines(b"ab\n0123456789\ncd\nlast", 5).await;
        assert_eq!(
            got,
            vec![
                ReadLine::Line(b"ab".to_vec()),
                ReadLine::TooLong,
                ReadLine::Line(b"cd".to_vec()),
                ReadLine::Line(b"last".to_vec()),
                ReadLine::Eof
            ]
        );
        assert_eq!(lines(b"", 5).await, vec![ReadLine::Eof]);
        assert_eq!(
            lines(b"123456", 5).await,
            vec![ReadLine::TooLong, ReadLine::Eof]
        );
    }

    // The tests below run on tokio's paused clock: timers fire as soon as
    // every task waits, so they take no real time and prove the outcome,
    // not a duration.

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_that_holds_nothing_is_closed() {
        let (_client, server) = tokio::io::duplex(64);
        let mut r = BufReader::new(server);
        let mut asked = 0;
        let next = next_line(&mut r, 100, || {
            asked += 1;
            false
        })
        .await
        .unwrap();
        assert_eq!((next, asked), (Next::Idle, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_holds_something_is_never_idle() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = BufReader::new(server);
        let talk = tokio::spawn(async move {
            // Silent for many idle periods, then a request.
            tokio::time::sleep(IDLE_TIMEOUT * 5).await;
            client.write_all(b"{\"v\":1}\n").await.unwrap();
            client
        });
        let mut asked = 0;
        let next = next_line(&mut r, 100, || {
            asked += 1;
            true
        })
        .await
        .unwrap();
        assert_eq!(next, Next::Read(ReadLine::Line(b"{\"v\":1}".to_vec())));
        assert!(asked >= 4, "asked {asked} times");
        drop(talk.await.unwrap());
        let end = next_line(&mut r, 100, || true).await.unwrap();
        assert_eq!(end, Next::Read(ReadLine::Eof));
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_that_never_ends_closes_the_connection() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut r = BufReader::new(server);
        // A slowloris: the start of a request, then a byte now and then,
        // never the newline.
        let drip = tokio::spawn(async move {
            client.write_all(b"{\"v\":1,").await.unwrap();
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if client.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        let next = next_line(&mut r, 100_000, || true).await.unwrap();
        assert_eq!(next, Next::Slow);
        drop(r);
        drip.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_stops_the_writer() {
        let (client, server) = tokio::io::duplex(256);
        let (tx, rx) = mpsc::channel(8);
        let writer = tokio::spawn(write_lines(server, rx));
        tx.send("x".repeat(10_000).into()).await.unwrap();
        assert_eq!(writer.await.unwrap(), WriteEnd::Stalled);
        drop(client);

        // A client that reads gets every line, and the writer ends with
        // its queue.
        let (mut client, server) = tokio::io::duplex(256);
        let (tx, rx) = mpsc::channel(8);
        let writer = tokio::spawn(write_lines(server, rx));
        tx.send("y".repeat(10_000).into()).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 10_000);
        assert_eq!(writer.await.unwrap(), WriteEnd::Done);
    }
}
