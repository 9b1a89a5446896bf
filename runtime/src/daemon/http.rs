//! A small HTTP/1.1 server for the daemon's opt-in read-only endpoints
//! (`--metrics`, `--http`): GET and HEAD only, one request per connection,
//! no request body; an answer is whole or a stream (server-sent events).
//! Requests are parsed by httparse; hyper would bring a second HTTP stack
//! and its build time for what is a single GET.
//!
//! Anyone who can reach the address can hold what it costs, so it is
//! bounded: [`MAX_CONNECTIONS`] at once and [`MAX_PER_PEER`] from one
//! address (more are closed unanswered), a request head of at most
//! [`MAX_HEAD`] bytes read within [`HEAD_TIMEOUT`], and an answer written
//! within [`WRITE_TIMEOUT`]. A whole answer shared between requests (the
//! status JSON) is written from one copy, however many clients are slow
//! to take it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections served at once from one peer address: a LAN host cannot
/// take every slot (a browser opens up to six to one server).
pub const MAX_PER_PEER: usize = 8;
/// The largest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request: what the handler sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path, query string removed.
    pub path: String,
    /// The `Host` header, if one was sent and is text.
    pub host: Option<String>,
    /// The address the connection came in on (a wildcard listener answers
    /// on loopback too); set by the server, not the parser.
    pub local: Option<std::net::SocketAddr>,
}

/// An answer's body.
#[derive(Debug)]
pub enum Body {
    /// Whole, with its length.
    Bytes(Vec<u8>),
    /// Whole, and shared with other answers (written without a copy).
    Shared(Arc<Vec<u8>>),
    /// Chunks as they come, until the sender is dropped (the connection
    /// is then closed: that ends the body).
    Stream(mpsc::Receiver<Vec<u8>>),
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers (name, value).
    pub headers: Vec<(&'static str, &'static str)>,
    /// The body.
    pub body: Body,
}

impl Reply {
    /// A whole answer.
    pub fn bytes(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Bytes(body.into()),
        }
    }

    /// A whole answer shared with others.
    pub fn shared(status: u16, content_type: &'static str, body: Arc<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Shared(body),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::bytes(status, "text/plain; charset=utf-8", body.into())
    }

    /// The status line and headers.
    pub fn head(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type
        );
        match &self.body {
            Body::Bytes(b) => out.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Shared(b) => out.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Stream(_) => {}
        }
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Connection: close\r\n\r\n",
        );
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// What the bytes read so far amount to.
#[derive(Debug)]
pub enum Head {
    /// More is needed.
    Partial,
    /// A whole request head.
    Done(Request),
    /// Refused, with the answer to give.
    Bad(Reply),
}

/// Parse a request head (sans-I/O).
pub fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            Head::Bad(Reply::text(431, "request head too large\n"))
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Head::Bad(Reply::text(431, "too many header fields\n"))
        }
        Err(e) => Head::Bad(Reply::text(400, format!("bad request: {e}\n"))),
        Ok(httparse::Status::Complete(_)) => {
            let method = req.method.unwrap_or_default();
            if method != "GET" && method != "HEAD" {
                return Head::Bad(Reply::text(405, "only GET and HEAD are served\n"));
            }
            let path = req.path.unwrap_or("/");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::to_string);
            Head::Done(Request {
                method: method.to_string(),
                path: path.to_string(),
                host,
                local: None,
            })
        }
    }
}

/// The handler: a request to its answer.
pub type Handler = Arc<
    dyn Fn(Request) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>
        + Send
        + Sync,
>;

/// A handler from a function that answers at once.
pub fn sync_handler(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Handler {
    let f = Arc::new(f);
    Arc::new(move |r: Request| {
        let f = f.clone();
        Box::pin(async move { f(&r) })
    })
}

/// Serve `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, handler: Handler) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(Peers::default());
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            // Out of descriptors, most likely: give them a moment back.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Over a cap the connection is closed at once, never queued.
        let Some(peer) = peers.clone().enter(from.ip()) else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let h = handler.clone();
        tokio::spawn(async move {
            let _held = (slot, peer);
            one(stream, &h).await;
        });
    }
}

/// Connections open per peer address.
#[derive(Default)]
struct Peers(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection counted against its peer until dropped.
struct PeerSlot(Arc<Peers>, std::net::IpAddr);

impl Peers {
    fn enter(self: Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= MAX_PER_PEER {
            return None;
        }
        *n += 1;
        drop(open);
        Some(PeerSlot(self, ip))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                // The map holds only peers with a connection open.
                open.remove(&self.1);
            }
        }
    }
}

async fn one(mut stream: TcpStream, handler: &Handler) {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(HEAD_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            match parse_head(&buf) {
                Head::Partial => continue,
                h => return Some(h),
            }
        }
    })
    .await;
    let (reply, head_only) = match head {
        Ok(Some(Head::Done(mut req))) => {
            req.local = stream.local_addr().ok();
            let head_only = req.method == "HEAD";
            (handler(req).await, head_only)
        }
        Ok(Some(Head::Bad(reply))) => (reply, false),
        // Closed, or too slow: nothing to answer.
        _ => return,
    };
    let first = reply.head();
    let (body, mut rest) = match reply.body {
        _ if head_only => (None, None),
        Body::Bytes(b) => (Some(Arc::new(b)), None),
        Body::Shared(b) => (Some(b), None),
        Body::Stream(rx) => (None, Some(rx)),
    };
    // Head and body go out as two writes: without this Nagle would hold
    // the body's last segment for the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let whole = async {
        stream.write_all(&first).await?;
        match &body {
            Some(b) => stream.write_all(b).await,
            None => Ok(()),
        }
    };
    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, whole).await, Ok(Ok(()))) {
        return;
    }
    // Each chunk must be taken within the write budget: a client that
    // stops reading is cut off rather than held.
    while let Some(chunk) = match rest.as_mut() {
        Some(rx) => rx.recv().await,
        None => None,
    } {
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.shutdown()).await;
    // Closing with unread bytes (a body, a pipelined request) would send a
    // reset that can cut the answer off at the client: read them away, a
    // bounded amount for a bounded time (a client closes at our EOF).
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut sink = [0u8; 1024];
        let mut read = 0;
        while read < MAX_HEAD * 8 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// How long a connection is read away after its answer before it closes.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_is_parsed_once_whole_and_its_query_dropped() {
        let partial = parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(partial, Head::Partial), "{partial:?}");
        let Head::Done(r) = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHOST: x:1\r\n\r\n") else {
            panic!("a whole head")
        };
        let want = Request {
            method: "GET".into(),
            path: "/metrics".into(),
            host: Some("x:1".into()),
            local: None,
        };
        assert_eq!(r, want);
    }

    #[test]
    fn other_methods_garbage_and_oversized_heads_are_refused() {
        let status = |b: &[u8]| match parse_head(b) {
            Head::Bad(r) => r.status,
            h => panic!("{h:?}"),
        };
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"\x00\x01 garbage\r\n\r\n"), 400);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(status(&big), 431);
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn a_whole_answer_has_its_length_and_a_stream_none() {
        let head = String::from_utf8(Reply::text(200, "abc").head()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 3\r\n") && head.ends_with("\r\n\r\n"));
        let (_tx, rx) = mpsc::channel(1);
        let mut r = Reply::bytes(200, "text/event-stream", Vec::new());
        r.body = Body::Stream(rx);
        r.headers.push(("X-A", "b"));
        let head = String::from_utf8(r.head()).unwrap();
        assert!(!head.contains("Content-Length") && head.contains("X-A: b\r\n"));
        let Head::Bad(r) = parse_head(b"POST / HTTP/1.1\r\n\r\n") else {
            panic!("a POST is refused")
        };
        let head = String::from_utf8(r.head()).unwrap();
        assert!(head.contains("Allow: GET, HEAD\r\n"), "{head}");
        let shared = Reply::shared(500, "text/plain", Arc::new(b"abcd".to_vec()));
        let head = String::from_utf8(shared.head()).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{head}"
        );
        assert!(head.contains("Content-Length: 4\r\n"), "{head}");
    }

    #[test]
    fn one_peer_holds_at_most_its_share_and_gets_it_back() {
        let peers = Arc::new(Peers::default());
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..MAX_PER_PEER)
            .map(|_| peers.clone().enter(a).expect("within the share"))
            .collect();
        assert!(peers.clone().enter(a).is_none(), "past its share");
        let other = peers.clone().enter(b);
        assert!(other.is_some(), "another peer is not affected");
        drop(held);
        drop(other);
        assert!(peers.0.lock().unwrap().is_empty(), "no entry left behind");
        assert!(peers.clone().enter(a).is_some());
    }

    #[tokio::test]
    async fn the_server_answers_and_closes_connections_over_the_cap() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = sync_handler(|r: &Request| Reply::text(200, r.path.clone()));
        let server = tokio::spawn(serve(l, h));
        // Hold every slot with clients that send nothing, from as many
        // loopback addresses as the per-peer share needs.
        let from = |n: usize| -> std::net::SocketAddr {
            format!("127.0.0.{}:0", 1 + n / MAX_PER_PEER)
                .parse()
                .unwrap()
        };
        let mut idle = Vec::new();
        for n in 0..MAX_CONNECTIONS {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(from(n)).unwrap();
            idle.push(s.connect(addr).await.unwrap());
        }
        // From an address with no connection of its own: the total cap.
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(from(MAX_CONNECTIONS + MAX_PER_PEER)).unwrap();
        let mut extra = s.connect(addr).await.unwrap();
        let mut got = Vec::new();
        extra.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "over the cap: closed unanswered");
        drop(idle);
        // The slots come back once the idle clients are gone.
        let mut answered = String::new();
        for _ in 0..200 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
            answered.clear();
            c.read_to_string(&mut answered).await.unwrap();
            if !answered.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(answered.ends_with("\r\n\r\n/x"), "{answered}");
        server.abort();
    }

    #[tokio::test]
    async fn a_stream_is_written_as_it_comes_and_ends_with_its_sender() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let rx = std::sync::Mutex::new(Some(rx));
        let h = sync_handler(move |_: &Request| {
            let mut r = Reply::bytes(200, "text/event-stream", Vec::new());
            r.body = Body::Stream(rx.lock().unwrap().take().unwrap());
            r
        });
        let server = tokio::spawn(serve(l, h));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /e HTTP/1.1\r\n\r\n").await.unwrap();
        tx.send(b"data: 1\n\n".to_vec()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&got).contains("data: 1") {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first chunk");
            got.extend_from_slice(&buf[..n]);
        }
        drop(tx);
        c.read_to_end(&mut got).await.unwrap();
        assert!(String::from_utf8_lossy(&got).ends_with("data: 1\n\n"));
        server.abort();
    }
}
