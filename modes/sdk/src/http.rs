//! HTTP/1.1 for MODs that drive a management API (a firewall's) over the
//! streams the broker lends them (`tls` import, contract 0.1.3).
//!
//! The codec is pure ([`request`], [`parse_response`]) and host-tested;
//! [`Conn`] is the thin I/O glue: one persistent connection, one request
//! at a time. Everything a peer sends is bounded ([`HEAD_MAX`],
//! [`BODY_MAX`]); a response is framed by `Content-Length`, by chunked
//! transfer coding, or by the peer closing.

use crate::ModeError;
use crate::bindings::wasi::io::streams::{InputStream, OutputStream};
use crate::clock::Deadline;
use crate::stream::{read_some, write_all};

/// Largest response head accepted.
pub const HEAD_MAX: usize = 8 * 1024;
/// Largest response body accepted (an API's JSON answer is small).
pub const BODY_MAX: usize = 64 * 1024;
/// Most headers in a response head.
const HEADERS_MAX: usize = 48;

/// A response: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body, decoded from its transfer coding.
    pub body: Vec<u8>,
}

/// What [`parse_response`] found in the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole response, and how many bytes of the input it took.
    Done(Response, usize),
}

/// Why a response is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, or a framing error; the text says what.
    Malformed(String),
    /// The head or body exceeds its bound.
    TooLarge(&'static str),
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HttpError::Malformed(why) => write!(f, "malformed HTTP response: {why}"),
            HttpError::TooLarge(what) => write!(f, "HTTP response {what} too large"),
        }
    }
}

/// A request: `method path`, `Host`, the extra `headers`, and the body
/// (JSON) with its length. Header values must come from config or the MOD
/// itself; CR and LF are refused so no value can add a header.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Vec<u8>, HttpError> {
    let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    if bad(method) || bad(host) || bad(path) || path.contains(' ') {
        return Err(HttpError::Malformed(
            "request line with CR, LF or space".into(),
        ));
    }
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        if bad(name) || bad(value) || name.contains(':') {
            return Err(HttpError::Malformed(format!(
                "header `{}` holds CR, LF or a colon",
                crate::escape(name, 64)
            )));
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    Ok(bytes)
}

/// How the body is framed.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parse one response from `buf`; `closed` says the peer has closed, so
/// a body framed by the close is complete. Informational (1xx) responses
/// are skipped.
pub fn parse_response(buf: &[u8], closed: bool) -> Result<Parsed, HttpError> {
    let mut start = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut r = httparse::Response::new(&mut headers);
        let head_len = match r.parse(&buf[start..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() - start > HEAD_MAX => {
                return Err(HttpError::TooLarge("head"));
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooLarge("head")),
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        };
        if head_len > HEAD_MAX {
            return Err(HttpError::TooLarge("head"));
        }
        let status = r.code.unwrap_or(0);
        if (100..200).contains(&status) {
            start += head_len;
            continue;
        }
        let framing = framing(r.headers, status)?;
        let body_at = start + head_len;
        return Ok(match body(&buf[body_at..], framing, closed)? {
            Some((body, used)) => Parsed::Done(Response { status, body }, body_at + used),
            None => Parsed::Incomplete,
        });
    }
}

fn framing(headers: &[httparse::Header<'_>], status: u16) -> Result<Framing, HttpError> {
    if status == 204 || status == 304 {
        return Ok(Framing::Length(0));
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| {
                core::str::from_utf8(h.value)
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
    };
    if let Some(te) = value("transfer-encoding") {
        if te == "chunked" {
            return Ok(Framing::Chunked);
        }
        return Err(HttpError::Malformed(format!(
            "transfer coding `{}`",
            crate::escape(&te, 64)
        )));
    }
    match value("content-length") {
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n > BODY_MAX => Err(HttpError::TooLarge("body")),
            Ok(n) => Ok(Framing::Length(n)),
            Err(_) => Err(HttpError::Malformed(
                "Content-Length is not a number".into(),
            )),
        },
        None => Ok(Framing::UntilClose),
    }
}

/// The body and the bytes it took, once complete.
fn body(buf: &[u8], framing: Framing, closed: bool) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    match framing {
        Framing::Length(n) => Ok((buf.len() >= n).then(|| (buf[..n].to_vec(), n))),
        Framing::UntilClose if buf.len() > BODY_MAX => Err(HttpError::TooLarge("body")),
        Framing::UntilClose => Ok(closed.then(|| (buf.to_vec(), buf.len()))),
        Framing::Chunked => chunked(buf),
    }
}

/// The end of the line starting at `at` (index of its CRLF), if present.
fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    buf.get(at..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| at + p)
}

fn chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(end) = line_end(buf, at) else {
            return if buf.len() - at > 1024 {
                Err(HttpError::Malformed("chunk size line too long".into()))
            } else {
                Ok(None)
            };
        };
        let line = core::str::from_utf8(&buf[at..end])
            .map_err(|_| HttpError::Malformed("chunk size is not text".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|_| !size_text.is_empty() && size_text.len() <= 8)
            .ok_or_else(|| {
                HttpError::Malformed(format!("chunk size `{}`", crate::escape(size_text, 32)))
            })?;
        at = end + 2;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some(end) = line_end(buf, at) else {
                    return if buf.len() - at > HEAD_MAX {
                        Err(HttpError::TooLarge("trailer"))
                    } else {
                        Ok(None)
                    };
                };
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Ok(Some((out, at)));
                }
            }
        }
        if out.len() + size > BODY_MAX {
            return Err(HttpError::TooLarge("body"));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
        }
        out.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// One persistent connection to an API: requests in turn, responses read
/// up to their end, what follows kept for the next.
pub struct Conn {
    input: InputStream,
    output: OutputStream,
    buf: Vec<u8>,
    closed: bool,
    peer: String,
}

impl Conn {
    /// A connection over lent streams; `peer` names the server in errors.
    pub fn new(input: InputStream, output: OutputStream, peer: &str) -> Conn {
        Conn {
            input,
            output,
            buf: Vec::new(),
            closed: false,
            peer: peer.into(),
        }
    }

    /// Whether the peer has closed (a further request would fail).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Send `req` (from [`request`]) and read its response by `deadline`.
    /// A malformed or oversized response is `protocol`; a close before its
    /// end `unavailable`.
    pub fn exchange(&mut self, req: &[u8], deadline: Deadline) -> Result<Response, ModeError> {
        if self.closed {
            return Err(ModeError::Unavailable(format!(
                "{} closed the connection",
                self.peer
            )));
        }
        write_all(&self.output, req, deadline, &self.peer)?;
        loop {
            match parse_response(&self.buf, self.closed) {
                Ok(Parsed::Done(response, used)) => {
                    self.buf.drain(..used);
                    return Ok(response);
                }
                Ok(Parsed::Incomplete) if self.closed => {
                    return Err(ModeError::Unavailable(format!(
                        "{} closed the connection {}",
                        self.peer,
                        if self.buf.is_empty() {
                            "without answering"
                        } else {
                            "in the middle of its answer"
                        }
                    )));
                }
                Ok(Parsed::Incomplete) => {}
                Err(e) => return Err(ModeError::Protocol(format!("{}: {e}", self.peer))),
            }
            match read_some(&self.input, 16 * 1024, deadline, &self.peer)? {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => self.closed = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8], closed: bool) -> (Response, usize) {
        match parse_response(buf, closed).unwrap() {
            Parsed::Done(r, n) => (r, n),
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn requests_carry_host_headers_and_a_sized_body() {
        let r = request(
            "POST",
            "10.0.0.1:8443",
            "/api/v1/apply",
            &[("X-API-Token", "t")],
            Some(b"{}"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /api/v1/apply HTTP/1.1\r\nHost: 10.0.0.1:8443\r\nX-API-Token: t\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn no_value_can_add_a_header_or_split_the_request() {
        assert!(request("GET", "h", "/", &[("X-API-Token", "t\r\nEvil: 1")], None).is_err());
        assert!(request("GET", "h", "/a b", &[], None).is_err());
        assert!(request("GET", "h\n", "/", &[], None).is_err());
        assert!(request("GET", "h", "/", &[("A:B", "v")], None).is_err());
    }

    #[test]
    fn content_length_frames_and_keeps_what_follows() {
        let buf = b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\n{\"id\":\"7\"}HTTP/1.1";
        let (r, used) = done(buf, false);
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"{\"id\":\"7\"}");
        assert_eq!(&buf[used..], b"HTTP/1.1");
        // Every shorter prefix is incomplete, never an error.
        for n in 0..used {
            assert_eq!(
                parse_response(&buf[..n], false),
                Ok(Parsed::Incomplete),
                "{n}"
            );
        }
    }

    #[test]
    fn chunked_bodies_decode() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nT: v\r\n\r\n";
        let (r, used) = done(buf, false);
        assert_eq!(r.body, b"{\"a\":1}");
        assert_eq!(used, buf.len());
        for n in 0..buf.len() {
            assert_eq!(
                parse_response(&buf[..n], false),
                Ok(Parsed::Incomplete),
                "{n}"
            );
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse_response(bad, false),
            Err(HttpError::Malformed(_))
        ));
        let no_crlf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc";
        assert!(matches!(
            parse_response(no_crlf, false),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn a_body_without_length_ends_at_the_close() {
        let buf = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(buf, false), Ok(Parsed::Incomplete));
        assert_eq!(done(buf, true).0.body, b"{}");
    }

    #[test]
    fn informational_responses_are_skipped() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (r, used) = done(buf, false);
        assert_eq!((r.status, used), (204, buf.len()));
    }

    #[test]
    fn oversized_and_garbage_answers_are_errors() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            BODY_MAX + 1
        );
        assert_eq!(
            parse_response(huge.as_bytes(), false),
            Err(HttpError::TooLarge("body"))
        );
        let long_head = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(HEAD_MAX + 1));
        assert_eq!(
            parse_response(long_head.as_bytes(), false),
            Err(HttpError::TooLarge("head"))
        );
        assert!(matches!(
            parse_response(b"SSH-2.0-x\r\n\r\n", false),
            Err(HttpError::Malformed(_))
        ));
        let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert!(matches!(
            parse_response(gzip, false),
            Err(HttpError::Malformed(_))
        ));
        let many: String = (0..HEADERS_MAX + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse_response(many.as_bytes(), false),
            Err(HttpError::TooLarge("head"))
        );
        let until_close = format!("HTTP/1.1 200 OK\r\n\r\n{}", "x".repeat(BODY_MAX + 1));
        assert_eq!(
            parse_response(until_close.as_bytes(), false),
            Err(HttpError::TooLarge("body"))
        );
    }
}
