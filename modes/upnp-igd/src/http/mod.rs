//! The little HTTP/1.1 a UPnP control point needs, as pure functions: GET
//! and SOAP POST requests, and responses with Content-Length, chunked or
//! close-delimited bodies (URLs are in [`url`](crate::url)).
//!
//! Hand-written on top of `httparse` (which parses the head) because a
//! general HTTP client would pull name resolution and TLS into a MOD that
//! must do neither. Every number the peer sends (Content-Length, chunk
//! sizes) is checked against [`HTTP_MAX_RESPONSE`] as a `u64` before any
//! arithmetic or indexing, so a hostile gateway gets an error, never a trap
//! (the MOD runs on a 32-bit target, where `usize` overflows early).

use core::net::SocketAddr;

use crate::url::HttpUrl;

/// Largest response we read (head + body). Real IGD descriptions are 2-6
/// KiB; 64 KiB bounds a hostile gateway's "huge body" at no cost.
pub const HTTP_MAX_RESPONSE: usize = 64 * 1024;

fn host_header(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(_) => addr.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// A GET request for `url`.
pub fn build_get(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: p2pbroker UPnP/1.1\r\n\r\n",
        url.path,
        host_header(url.addr)
    )
    .into_bytes()
}

/// A SOAP POST of `body` for `service_type#action`.
pub fn build_soap_post(url: &HttpUrl, service_type: &str, action: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
         SOAPAction: \"{service_type}#{action}\"\r\nContent-Length: {}\r\n\r\n{body}",
        url.path,
        host_header(url.addr),
        body.len()
    )
    .into_bytes()
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Decoded body.
    pub body: Vec<u8>,
}

/// How a response's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the peer closes (HTTP/1.0 style).
    UntilClose,
}

/// A parsed head: status, head length and framing.
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
}

/// Why a head did not parse.
enum HeadError {
    /// More bytes may complete it.
    Partial,
    /// No more bytes can fix it.
    Bad(String),
}

/// Longest chunk-size line (size and extensions) we wait for; IGDs send
/// none of the extensions that could make it long.
const CHUNK_LINE_MAX: usize = 1024;

/// Text from the peer, escaped and short, for an error message.
fn quote(b: &[u8]) -> String {
    p2pbroker_mode_sdk::escape(&String::from_utf8_lossy(b), 64)
}

fn parse_head(b: &[u8]) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(e) => return Err(HeadError::Bad(format!("malformed response head: {e}"))),
    };
    let status = resp
        .code
        .ok_or_else(|| HeadError::Bad("no status code".into()))?;
    let values = |name: &str| -> Vec<&[u8]> {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let framing = if matches!(status, 100..=199 | 204 | 304) {
        Framing::Empty
    } else if let Some(te) = transfer_encoding(&values("transfer-encoding")) {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3).
        te.map_err(HeadError::Bad)?
    } else {
        match content_length(&values("content-length")).map_err(HeadError::Bad)? {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(Head {
        status,
        len,
        framing,
    })
}

/// The framing `Transfer-Encoding` headers ask for, `None` without any:
/// only `chunked` alone is understood.
fn transfer_encoding(values: &[&[u8]]) -> Option<Result<Framing, String>> {
    if values.is_empty() {
        return None;
    }
    let codings: Vec<Vec<u8>> = values
        .iter()
        .flat_map(|v| v.split(|c| *c == b','))
        .map(|c| c.trim_ascii().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    Some(match codings.as_slice() {
        [c] if c == b"chunked" => Ok(Framing::Chunked),
        _ => Err(format!(
            "unsupported Transfer-Encoding `{}` (only chunked)",
            quote(&values.join(&b","[..]))
        )),
    })
}

/// The body length `Content-Length` headers give, `None` without any.
/// Digits only (Rust's integer parsing would take a leading `+`), equal
/// values when repeated, and at most [`HTTP_MAX_RESPONSE`]: the number is
/// checked as a `u64` before it becomes a `usize`, so a 32-bit guest sees
/// the same verdicts as a 64-bit host.
fn content_length(values: &[&[u8]]) -> Result<Option<usize>, String> {
    let Some(first) = values.first() else {
        return Ok(None);
    };
    let text = first.trim_ascii();
    if values.iter().any(|v| v.trim_ascii() != text) {
        return Err("conflicting Content-Length headers".into());
    }
    let bad = || format!("bad Content-Length `{}`", quote(text));
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n: u64 = std::str::from_utf8(text)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())?;
    within_limit(n, "Content-Length").map(Some)
}

/// `n` as a `usize` when it is at most [`HTTP_MAX_RESPONSE`].
fn within_limit(n: u64, what: &str) -> Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= HTTP_MAX_RESPONSE)
        .ok_or_else(|| format!("{what} {n} is larger than {HTTP_MAX_RESPONSE} bytes"))
}

/// The body of `rest` (what follows the head) under `framing`; `None`
/// while more bytes are needed. A close-delimited body is whatever came.
fn body(framing: Framing, rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    match framing {
        Framing::Empty => Ok(Some(Vec::new())),
        Framing::Length(n) => Ok(rest.get(..n).map(<[u8]>::to_vec)),
        Framing::Chunked => dechunk(rest),
        Framing::UntilClose => Ok(Some(rest.to_vec())),
    }
}

/// Parse a response that has ended: the peer closed the connection, or
/// [`is_complete`] said so. Errors name what is wrong.
pub fn parse_response(b: &[u8]) -> Result<HttpResponse, String> {
    if b.len() > HTTP_MAX_RESPONSE {
        return Err(format!("response larger than {HTTP_MAX_RESPONSE} bytes"));
    }
    let head = match parse_head(b) {
        Ok(h) => h,
        Err(HeadError::Partial) => return Err("truncated response head".into()),
        Err(HeadError::Bad(e)) => return Err(e),
    };
    let rest = &b[head.len..];
    match body(head.framing, rest)? {
        Some(body) => Ok(HttpResponse {
            status: head.status,
            body,
        }),
        None => Err(match head.framing {
            Framing::Length(n) => format!("truncated body: {} of {n} bytes", rest.len()),
            _ => "truncated chunked body".into(),
        }),
    }
}

/// Whether reading `b` may stop before the peer closes: its framing
/// (Content-Length, chunked, no body) says the response is whole, or it
/// is malformed beyond repair (then [`parse_response`] says why). A body
/// delimited by the close of the connection (no Content-Length, not
/// chunked) is never complete before that close.
pub fn is_complete(b: &[u8]) -> bool {
    match parse_head(b) {
        Err(HeadError::Partial) => false,
        Err(HeadError::Bad(_)) => true,
        Ok(Head {
            framing: Framing::UntilClose,
            ..
        }) => false,
        Ok(head) => !matches!(body(head.framing, &b[head.len..]), Ok(None)),
    }
}

/// The size on a chunk-size line (RFC 9112 §7.1): hex digits only, at
/// most [`HTTP_MAX_RESPONSE`], checked as a `u64` before it becomes a
/// `usize` (no chunk larger than the whole response can be whole, and no
/// arithmetic on it can overflow, on a 32-bit guest either).
fn chunk_size(line: &[u8]) -> Result<usize, String> {
    let size = line
        .split(|c| *c == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!("bad chunk size `{}`", quote(size)));
    }
    let text = std::str::from_utf8(size).map_err(|_| "bad chunk size".to_string())?;
    let n = u64::from_str_radix(text, 16).map_err(|_| format!("bad chunk size `{text}`"))?;
    within_limit(n, "chunk size")
}

/// Decode a chunked body; `None` while more bytes are needed.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") else {
            if b.len() > CHUNK_LINE_MAX {
                return Err(format!(
                    "chunk-size line longer than {CHUNK_LINE_MAX} bytes"
                ));
            }
            return Ok(None);
        };
        if line_end > CHUNK_LINE_MAX {
            return Err(format!(
                "chunk-size line longer than {CHUNK_LINE_MAX} bytes"
            ));
        }
        let size = chunk_size(&b[..line_end])?;
        b = &b[line_end + 2..];
        if size == 0 {
            // Trailer fields, if any, are of no use to us.
            return Ok(Some(out));
        }
        let Some(end) = size.checked_add(2) else {
            return Err(format!("chunk size {size} overflows"));
        };
        let Some(chunk) = b.get(..end) else {
            return Ok(None);
        };
        if !chunk.ends_with(b"\r\n") {
            return Err(format!("chunk of {size} bytes is not followed by CRLF"));
        }
        out.extend_from_slice(&chunk[..size]);
        b = &b[end..];
    }
}

#[cfg(test)]
mod tests;
