//! HTTP CONNECT (RFC 9110 §9.3.6) for a tunnel: the request, and the
//! proxy's answer read up to the end of its head and no further. Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Longest answer head read: a proxy's CONNECT answer is a few lines.
pub const HEAD_MAX: usize = 8 * 1024;

/// The CONNECT request for `host:port`, with Basic credentials if given.
/// `host` must pass [`valid_host`] (no CR, LF or spaces).
pub fn request(host: &str, port: u16, creds: Option<(&str, &str)>) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, password)) = creds {
        let token = STANDARD.encode(format!("{user}:{password}"));
        r.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

pub use p2pbroker_mode_sdk::addr::valid_host;

/// Collects the answer one byte at a time until its head ends.
#[derive(Debug, Default)]
pub struct Head {
    bytes: Vec<u8>,
}

/// What one more byte did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Need more.
    More,
    /// The head is complete: its bytes.
    Done,
    /// Longer than [`HEAD_MAX`] without ending.
    TooLong,
}

impl Head {
    /// Add one byte. The head ends at its first empty line, whether lines
    /// end in CRLF or in a bare LF (RFC 9112 §2.2 lets a recipient accept
    /// either, and the parser does): a bare-LF proxy's head must not run
    /// on into the tunnel's first bytes.
    pub fn push(&mut self, b: u8) -> Step {
        self.bytes.push(b);
        if self.bytes.ends_with(b"\n\n") || self.bytes.ends_with(b"\n\r\n") {
            Step::Done
        } else if self.bytes.len() >= HEAD_MAX {
            Step::TooLong
        } else {
            Step::More
        }
    }

    /// The bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why the proxy did not open the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 407 (or 401, which tinyproxy sends for wrong credentials): the
    /// credentials are missing or wrong.
    Credentials(u16, String),
    /// 403 and the like: the proxy refuses this destination.
    Forbidden(u16, String),
    /// 502, 503, 504: the proxy cannot reach the destination.
    Unreachable(u16, String),
    /// Any other status.
    Status(u16, String),
    /// Not an HTTP answer.
    Garbage(String),
}

/// Read a complete answer head: `Ok` on a 2xx status. The parser must
/// read exactly the head [`Head`] collected, from its first byte: it would
/// skip leading empty lines, which a proxy's answer never has.
pub fn answer(head: &[u8]) -> Result<(), Refusal> {
    if !head.starts_with(b"HTTP/") {
        return Err(Refusal::Garbage(
            "the answer does not start with `HTTP/`".into(),
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err(Refusal::Garbage(
                "the head ends before its empty line".into(),
            ));
        }
        Ok(httparse::Status::Partial) => return Err(Refusal::Garbage("incomplete head".into())),
        Err(e) => return Err(Refusal::Garbage(format!("{e}"))),
    }
    let code = r.code.unwrap_or(0);
    let reason = r.reason.unwrap_or("").chars().take(100).collect::<String>();
    match code {
        200..=299 => Ok(()),
        401 | 407 => Err(Refusal::Credentials(code, reason)),
        403 | 405 => Err(Refusal::Forbidden(code, reason)),
        502..=504 => Err(Refusal::Unreachable(code, reason)),
        _ => Err(Refusal::Status(code, reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_authority_and_carries_basic_credentials() {
        let r = String::from_utf8(request("198.51.100.1", 7000, None)).unwrap();
        assert_eq!(
            r,
            "CONNECT 198.51.100.1:7000 HTTP/1.1\r\nHost: 198.51.100.1:7000\r\n\r\n"
        );
        let r = String::from_utf8(request("2001:db8::1", 443, Some(("p2p", "s3cret")))).unwrap();
        assert!(
            r.starts_with("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n"),
            "{r}"
        );
        // base64("p2p:s3cret")
        assert!(
            r.contains("Proxy-Authorization: Basic cDJwOnMzY3JldA==\r\n"),
            "{r}"
        );
    }

    #[test]
    fn hosts_that_could_break_the_request_line_are_refused() {
        assert!(valid_host("peer.example") && valid_host("2001:db8::1"));
        for bad in ["", "a b", "a\r\nX-Injected: 1", "a/b", &"a".repeat(256)] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_head_ends_at_the_blank_line_and_not_a_byte_later() {
        let mut h = Head::default();
        let answer_then_data = b"HTTP/1.1 200 Connection established\r\n\r\nhello";
        let mut done_at = None;
        for (i, b) in answer_then_data.iter().enumerate() {
            if h.push(*b) == Step::Done {
                done_at = Some(i);
                break;
            }
        }
        assert_eq!(done_at, Some(answer_then_data.len() - 6));
        assert_eq!(answer(h.bytes()), Ok(()));
        let mut h = Head::default();
        let steps: Vec<Step> = (0..HEAD_MAX).map(|_| h.push(b'x')).collect();
        assert_eq!(steps.last(), Some(&Step::TooLong));
    }

    #[test]
    fn a_bare_lf_head_ends_at_its_empty_line_and_leading_empty_lines_are_refused() {
        let mut h = Head::default();
        let answer_then_data = b"HTTP/1.0 200 OK\nVia: x\n\nhello";
        let done = answer_then_data
            .iter()
            .position(|b| h.push(*b) == Step::Done);
        assert_eq!(done, Some(answer_then_data.len() - 6));
        assert_eq!(answer(h.bytes()), Ok(()));
        // Found by the `proxy` fuzz target: the parser skipped the leading
        // empty line and took the head as a 200, ending where the
        // collector had not.
        let crash = b"\r\n\nHTTP/1.0 200 OK\r\n\n\n\r\r\0\r\n\r\ni\0\0\0\0\0\0\0\0";
        let mut h = Head::default();
        let done = crash.iter().position(|b| h.push(*b) == Step::Done);
        assert_eq!(done, Some(2), "the head ends at the first empty line");
        assert!(matches!(answer(h.bytes()), Err(Refusal::Garbage(_))));
        assert!(matches!(
            answer(b"\r\nHTTP/1.0 200 OK\r\n\r\n"),
            Err(Refusal::Garbage(_))
        ));
    }

    #[test]
    fn statuses_map_to_refusals() {
        let a = |s: &str| answer(s.as_bytes());
        assert!(matches!(
            a("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Err(Refusal::Credentials(407, _))
        ));
        assert!(matches!(
            a("HTTP/1.0 401 Unauthorized\r\n\r\n"),
            Err(Refusal::Credentials(401, _))
        ));
        assert!(matches!(
            a("HTTP/1.1 403 Forbidden\r\n\r\n"),
            Err(Refusal::Forbidden(403, _))
        ));
        assert!(matches!(
            a("HTTP/1.1 502 Bad Gateway\r\n\r\n"),
            Err(Refusal::Unreachable(502, _))
        ));
        assert!(matches!(
            a("HTTP/1.1 418 Teapot\r\n\r\n"),
            Err(Refusal::Status(418, _))
        ));
        assert!(matches!(
            a("SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Refusal::Garbage(_))
        ));
        assert_eq!(a("HTTP/1.0 200 OK\r\nVia: tinyproxy\r\n\r\n"), Ok(()));
    }
}
