//! The proxy handshakes of the http-connect and socks5 MODs. Input: a
//! proxy's answer bytes.
//!
//! http-connect: the head collector stops at the first empty line, CRLF
//! or bare LF (never a byte later) or at its cap; `answer` never panics,
//! and a 2xx verdict comes only from a head that starts with "HTTP/". socks5: every answer
//! parser never panics; a success reply head says exactly how many bytes
//! follow; requests built from the input's text stay within their length
//! fields.

use p2pbroker_mode_http_connect::proto::{self as http, Head, Step};
use p2pbroker_mode_socks5::proto as socks;

/// One input.
pub fn run(data: &[u8]) {
    let mut head = Head::default();
    let mut consumed = 0;
    for b in data {
        consumed += 1;
        match head.push(*b) {
            Step::More => {}
            Step::Done => {
                // The first empty line, after CRLF or a bare LF.
                let end = head
                    .bytes()
                    .windows(2)
                    .enumerate()
                    .find(|(i, w)| {
                        *w == b"\n\n" || (*w == b"\r\n" && *i > 0 && head.bytes()[i - 1] == b'\n')
                    })
                    .map(|(i, _)| i + 2);
                assert_eq!(end, Some(consumed), "the head ends at the first empty line");
                if http::answer(head.bytes()).is_ok() {
                    assert!(head.bytes().starts_with(b"HTTP/"));
                }
                break;
            }
            Step::TooLong => {
                assert_eq!(consumed, http::HEAD_MAX);
                break;
            }
        }
    }
    if let [a, b, c, d, ..] = *data {
        let _ = socks::method([a, b], c & 1 == 1);
        let _ = socks::credentials_answer([a, b]);
        match socks::reply_head([a, b, c, d]) {
            Ok(0) => assert_eq!(d, 3),
            Ok(n) => assert!(n == 6 || n == 18),
            Err(_) => assert!(a != 5 || b != 0 || !matches!(d, 1 | 3 | 4)),
        }
    }
    let text = String::from_utf8_lossy(data);
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    if let Some(m) = socks::credentials(user, password) {
        assert_eq!(usize::from(m[1]), user.len());
        assert_eq!(m.len(), 3 + user.len() + password.len());
    }
    if let Some(m) = socks::connect(&text, 80) {
        assert_eq!(&m[..3], &[5, 1, 0]);
        assert_eq!(&m[m.len() - 2..], &[0, 80]);
    }
    if http::valid_host(&text) {
        let r = http::request(&text, 80, None);
        assert_eq!(
            r.iter().filter(|b| **b == b'\n').count(),
            3,
            "no injected lines"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_pseudo_random_inputs_pass() {
        crate::pseudo_random_inputs(20_000, 96, super::run);
    }
}
