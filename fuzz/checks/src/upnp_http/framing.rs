//! HTTP/1.x responses built from a model: status line (1.0, 1.1, odd
//! versions, odd codes and reasons), noise headers in any case, and a body
//! framed by Content-Length (honest, lying, huge, malformed, repeated),
//! by chunks (see [`super::chunked`]) or by the close of the connection;
//! with what `parse_response` and `is_complete` must say about it.

use arbitrary::Arbitrary;
use p2pbroker_mode_upnp_igd::http::HTTP_MAX_RESPONSE;

use super::chunked::Chunked;

/// A response around a body.
#[derive(Arbitrary, Debug)]
pub struct Response {
    version: u8,
    status: Status,
    reason: Reason,
    /// Head lines end in a bare LF (httparse takes it).
    bare_lf: bool,
    noise: Vec<Noise>,
    framing: Framing,
    /// Where to cut the bytes for the prefix checks.
    pub cuts: [u16; 3],
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Status {
    Ok,
    ServerError,
    NoContent,
    NotModified,
    Continue,
    Odd(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Reason {
    Usual,
    Empty,
    Missing,
    ObsText,
}

/// A header name's spelling: names compare without case.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Case {
    Canonical,
    Lower,
    Upper,
    Alternating,
}

impl Case {
    /// `name` spelled this way.
    pub fn apply(self, name: &str) -> String {
        match self {
            Case::Canonical => name.into(),
            Case::Lower => name.to_ascii_lowercase(),
            Case::Upper => name.to_ascii_uppercase(),
            Case::Alternating => name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Noise {
    Server(Case),
    ContentType(Case),
    Connection(Case),
    Ext,
    Custom(u8),
    /// A space before the colon: httparse refuses the head.
    SpaceBeforeColon,
}

#[derive(Arbitrary, Debug)]
enum Framing {
    Length(Length),
    Chunked(Chunked),
    Close,
}

/// Content-Length headers.
#[derive(Arbitrary, Debug)]
struct Length {
    case: Case,
    /// More identical headers (allowed when they agree).
    copies: u8,
    padded: bool,
    value: LengthValue,
}

/// What a Content-Length says.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum LengthValue {
    Honest,
    LeadingZeros(u8),
    /// More bytes than the body holds: the response is truncated.
    Longer(u16),
    /// Fewer: the body is the first bytes, the rest is not ours.
    Shorter(u16),
    Huge(u8),
    Malformed(u8),
    /// A second header disagreeing with the first.
    Conflict(u16),
}

/// What the parsers must say about built bytes.
pub struct Expect {
    /// The body `parse_response` gives; `None`: it must refuse them.
    pub body: Option<Vec<u8>>,
    /// What `is_complete` says; `None`: either is right.
    pub complete: Option<bool>,
}

impl Expect {
    /// A refusal that the framing can tell from the bytes so far.
    pub fn refused() -> Expect {
        Expect {
            body: None,
            complete: Some(true),
        }
    }
}

/// Built bytes and what they must parse to; `expect: None` when they are
/// malformed in a way with no single right answer.
pub struct Built {
    /// The response.
    pub bytes: Vec<u8>,
    /// Its status code.
    pub status: u16,
    /// What it must parse to.
    pub expect: Option<Expect>,
    /// Ended by the close of the connection: a prefix parses too.
    pub close_delimited: bool,
}

/// More headers than httparse is given room for (the parser's 48).
const HEADERS_MAX: usize = 48;
/// Noise headers past this many are not built.
const NOISE_MAX: usize = 56;

impl Length {
    /// Writes the headers for `body` into `head`; what the parsers must
    /// say.
    fn write(&self, head: &mut Vec<String>, body: &[u8]) -> Expect {
        let len = body.len();
        let name = self.case.apply("Content-Length");
        let pad = |v: String| if self.padded { format!(" {v}  ") } else { v };
        let (value, expect) = match self.value {
            LengthValue::Honest => (len.to_string(), complete(body)),
            LengthValue::LeadingZeros(z) => (
                format!("{}{len}", "0".repeat(usize::from(z % 12))),
                complete(body),
            ),
            LengthValue::Longer(d) => {
                let n = len + usize::from(d) + 1;
                let e = if n > HTTP_MAX_RESPONSE {
                    Expect::refused()
                } else {
                    Expect {
                        body: None,
                        complete: Some(false),
                    }
                };
                (n.to_string(), e)
            }
            LengthValue::Shorter(d) => {
                let n = len.saturating_sub(usize::from(d) + 1);
                (n.to_string(), complete(&body[..n]))
            }
            LengthValue::Huge(k) => {
                let v = [
                    "65537",
                    "4294967295",
                    "4294967296",
                    "18446744073709551615",
                    "18446744073709551616",
                    "999999999999999999999",
                ];
                (v[usize::from(k) % v.len()].into(), Expect::refused())
            }
            LengthValue::Malformed(k) => {
                let v = ["-5", "+5", "1 2", "0x10", "", "5, 5", "5.0", "five"];
                (v[usize::from(k) % v.len()].into(), Expect::refused())
            }
            LengthValue::Conflict(d) => {
                head.push(format!("{name}: {}", len + usize::from(d) + 1));
                (len.to_string(), Expect::refused())
            }
        };
        for _ in 0..=self.copies % 3 {
            head.push(format!("{name}:{}", pad(value.clone())));
        }
        expect
    }
}

/// A body the framing says is whole.
pub fn complete(body: &[u8]) -> Expect {
    Expect {
        body: Some(body.to_vec()),
        complete: Some(true),
    }
}

impl Response {
    /// The response bytes around `body`, and what they must parse to.
    pub fn build(&self, body: &[u8]) -> Built {
        let code = match self.status {
            Status::Ok => 200,
            Status::ServerError => 500,
            Status::NoContent => 204,
            Status::NotModified => 304,
            Status::Continue => 100,
            Status::Odd(c) => c % 1000,
        };
        let (version, version_ok) = match self.version % 16 {
            0 => ("HTTP/2.0", false),
            1 => ("HTTP/1.2", false),
            2 => ("http/1.1", false),
            // Empty lines before the status line are skipped.
            3 => ("\r\n\r\nHTTP/1.1", true),
            v if v % 2 == 0 => ("HTTP/1.1", true),
            _ => ("HTTP/1.0", true),
        };
        let reason = match self.reason {
            Reason::Usual => " OK",
            Reason::Empty => " ",
            Reason::Missing => "",
            Reason::ObsText => " D\u{e9}j\u{e0} vu",
        };
        let mut head = vec![format!("{version} {code:03}{reason}")];
        let mut head_ok = version_ok;
        for n in self.noise.iter().take(NOISE_MAX) {
            head.push(match *n {
                Noise::Server(c) => {
                    format!("{}: Linux/5.4 UPnP/1.1 MiniUPnPd/2.3", c.apply("Server"))
                }
                Noise::ContentType(c) => {
                    format!("{}: text/xml; charset=\"utf-8\"", c.apply("Content-Type"))
                }
                Noise::Connection(c) => format!("{}: close", c.apply("Connection")),
                Noise::Ext => "EXT:".into(),
                Noise::Custom(k) => format!("X-Noise-{k}: {}", "v".repeat(usize::from(k % 16))),
                Noise::SpaceBeforeColon => {
                    head_ok = false;
                    "Server : x".into()
                }
            });
        }
        let mut tail = Vec::new();
        let (mut expect, close_delimited) = match &self.framing {
            Framing::Length(l) => {
                tail.extend_from_slice(body);
                (Some(l.write(&mut head, body)), false)
            }
            Framing::Chunked(c) => (c.write(&mut head, &mut tail, body), false),
            Framing::Close => {
                tail.extend_from_slice(body);
                let e = Expect {
                    body: Some(body.to_vec()),
                    complete: Some(false),
                };
                (Some(e), true)
            }
        };
        let eol = if self.bare_lf { "\n" } else { "\r\n" };
        let mut bytes = Vec::new();
        for line in &head {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(eol.as_bytes());
        }
        bytes.extend_from_slice(eol.as_bytes());
        bytes.extend_from_slice(&tail);
        // The status line is not a header.
        let refused = !head_ok || head.len() - 1 > HEADERS_MAX;
        let no_body = matches!(code, 100..=199 | 204 | 304);
        if refused {
            expect = Some(Expect::refused());
        } else if no_body {
            // No body, whatever the framing headers say (RFC 9112 §6.3).
            expect = Some(complete(b""));
        }
        if bytes.len() > HTTP_MAX_RESPONSE
            && let Some(e) = &mut expect
        {
            e.body = None;
        }
        Built {
            bytes,
            status: code,
            expect,
            close_delimited: close_delimited && !refused && !no_body,
        }
    }
}
