//! The fake gateways' replies from the test suite, as seeds: what real
//! gateways do not send on demand (error codes, hostile XML, broken
//! framing, replies that are not ours).
//!
//! UPnP replies are read out of the test sources themselves (the raw and
//! byte string literals of `tests/upnp_fake*` and `tests/harness/`), so
//! the seeds follow the tests. The NAT-PMP and PCP fakes build their
//! replies in code: those are written out here, each naming its test.

use std::path::Path;

use super::Collected;

/// Test sources whose string literals are fake UPnP replies.
const UPNP_SOURCES: &[&str] = &[
    "tests/upnp_fake.rs",
    "tests/upnp_fake/replies.rs",
    "tests/upnp_fake/pinholes.rs",
    "tests/upnp_fake/ssdp.rs",
    "tests/harness/igd.rs",
    "tests/harness/ssdp.rs",
];

/// Values for the format placeholders those literals use: a SOAP action
/// and its arguments, an error code the fakes send (725,
/// OnlyPermanentLeasesSupported), a LOCATION on the `upnp` target's
/// gateway, the chunk size of the security review's reproducer.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("{action}", "AddPortMapping"),
    ("{args}", ""),
    ("{code}", "725"),
    ("{location}", "http://10.0.0.1:5000/desc.xml"),
    ("{size}", "ffffffff"),
];

/// The nonce the `pcp` target checks answers against.
const PCP_NONCE: [u8; 12] = [0x5a; 12];

/// Collect every fake's replies.
pub(super) fn collect(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    for rel in UPNP_SOURCES {
        let text = std::fs::read_to_string(root.join(rel))?;
        let stem = Path::new(rel).file_stem().unwrap().to_string_lossy();
        for (i, (name, bytes)) in upnp_literals(&text).into_iter().enumerate() {
            let name = format!(
                "fake-{stem}-{}",
                name.unwrap_or_else(|| (i + 1).to_string())
            );
            if bytes.starts_with(b"<") {
                // As the fake IGD serves a body: a 500 for a UPnPError.
                let head = match bytes.windows(9).any(|w| w == b"UPnPError") {
                    true => "500 Internal Server Error",
                    false => "200 OK",
                };
                let mut http =
                    format!("HTTP/1.1 {head}\r\nContent-Length: {}\r\n\r\n", bytes.len())
                        .into_bytes();
                http.extend_from_slice(&bytes);
                seeds.keep("upnp", &format!("{name}-http"), &http)?;
            }
            seeds.keep("upnp", &name, &bytes)?;
        }
    }
    natpmp(seeds)?;
    pcp(seeds)
}

/// tests/natpmp_fake.rs: its good gateway (external address 203.0.113.9,
/// epoch 7), a late map answer, junk, bare result codes, a truncated
/// answer, a gateway without an external address.
fn natpmp(seeds: &Collected) -> anyhow::Result<()> {
    let replies: [(&str, &[u8]); 10] = [
        (
            "external-address",
            &[0, 128, 0, 0, 0, 0, 0, 7, 203, 0, 113, 9],
        ),
        (
            "late-map-udp",
            &[0, 129, 0, 0, 0, 0, 0, 5, 0, 1, 0, 1, 0, 0, 0, 1],
        ),
        (
            "map-tcp-4000",
            &[0, 130, 0, 0, 0, 0, 0, 7, 15, 160, 15, 160, 0, 0, 2, 88],
        ),
        ("junk", b"junk"),
        ("result-2-not-authorized", &[0, 128, 0, 2]),
        ("result-3-network-failure", &[0, 128, 0, 3]),
        ("result-4-out-of-resources", &[0, 128, 0, 4]),
        ("result-99", &[0, 128, 0, 99]),
        ("truncated", &[0, 128, 0, 0, 0, 0]),
        (
            "no-external-address",
            &[0, 128, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0],
        ),
    ];
    for (name, bytes) in replies {
        seeds.keep("natpmp", &format!("fake-{name}"), bytes)?;
    }
    Ok(())
}

/// tests/pcp_fake.rs: its MAP answers (echoing the request's nonce,
/// external 203.0.113.9, lifetime 600, epoch 50) with each result code it
/// tests, a foreign nonce, cut short; a NAT-PMP-only server; its IPv6
/// firewall (external = the client's own address).
fn pcp(seeds: &Collected) -> anyhow::Result<()> {
    let map = |result: u8, nonce: [u8; 12]| {
        let mut b = vec![2, 0x81, 0, result, 0, 0, 2, 88, 0, 0, 0, 50];
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&nonce);
        b.extend_from_slice(&[6, 0, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0]);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9]);
        b
    };
    for result in [0, 2, 3, 8, 9, 11, 12] {
        seeds.keep(
            "pcp",
            &format!("fake-map-result-{result}"),
            &map(result, PCP_NONCE),
        )?;
    }
    seeds.keep("pcp", "fake-map-foreign-nonce", &map(0, [0xee; 12]))?;
    seeds.keep("pcp", "fake-map-truncated", &map(0, PCP_NONCE)[..40])?;
    seeds.keep("pcp", "fake-nat-pmp-only", &[0, 128, 0, 1])?;
    let mut v6 = map(0, PCP_NONCE);
    v6[44..60].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    seeds.keep("pcp", "fake-map-v6-firewall", &v6)
}

/// One string literal of a Rust source.
struct Literal<'a> {
    /// Byte offset of its first character (prefix included).
    at: usize,
    /// `b"…"` or `br#"…"#`.
    byte: bool,
    /// `r#"…"#`: no escapes.
    raw: bool,
    /// What is between the quotes.
    body: &'a str,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The string literals of Rust source `text`, outside comments and char
/// literals (`'"'`).
fn string_literals(text: &str) -> Vec<Literal<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        let word_start = i == 0 || !is_ident(b[i - 1]);
        let prefix = ["br", "r", "b"]
            .into_iter()
            .find(|p| word_start && rest.starts_with(p))
            .unwrap_or("");
        let after = &rest[prefix.len()..];
        let hashes = after.len() - after.trim_start_matches('#').len();
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if let Some(quoted) = rest.strip_prefix('\'') {
            // A char literal ('"', '\'', 'x') or a lifetime ('a).
            let c = quoted.chars().next().unwrap_or(' ');
            let escaped = quoted.get(2..).and_then(|r| r.find('\''));
            i += match (c, escaped) {
                // The escaped character may be a quote itself: look past it.
                ('\\', Some(end)) => 3 + end + 1,
                (_, _) if quoted[c.len_utf8()..].starts_with('\'') => 2 + c.len_utf8(),
                _ => 1,
            };
        } else if prefix.contains('r') && after[hashes..].starts_with('"') {
            let open = prefix.len() + hashes + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let Some(end) = rest[open..].find(&close) else {
                break;
            };
            let body = &rest[open..open + end];
            out.push(Literal {
                at: i,
                byte: prefix == "br",
                raw: true,
                body,
            });
            i += open + end + close.len();
        } else if (prefix == "b" && after.starts_with('"')) || rest.starts_with('"') {
            let open = if rest.starts_with('"') { 1 } else { 2 };
            let end = literal_end(&rest[open..]);
            let body = &rest[open..open + end];
            out.push(Literal {
                at: i,
                byte: open == 2,
                raw: false,
                body,
            });
            i += (open + end + 1).min(rest.len());
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The string literals of `text` that are replies (XML documents, HTTP,
/// another protocol's banner, binary), each with the name it is bound to (`const
/// DESC`, `let printer`) if any. Format placeholders are filled from
/// [`PLACEHOLDERS`]; a literal with another one is left out.
fn upnp_literals(text: &str) -> Vec<(Option<String>, Vec<u8>)> {
    let mut out = Vec::new();
    for l in string_literals(text) {
        let bytes = if l.raw {
            l.body.as_bytes().to_vec()
        } else {
            unescape(l.body)
        };
        // Whole documents (not the argument fragments the tests look for
        // in requests), HTTP, another protocol's banner, binary.
        let document = [&b"<?xml"[..], b"<root", b"<s:Envelope"];
        let reply = document.iter().any(|d| bytes.starts_with(d))
            || bytes.starts_with(b"HTTP/")
            || (l.byte && (bytes.starts_with(b"SSH-") || bytes.first().is_some_and(|b| *b < 0x20)));
        if let (true, Some(bytes)) = (reply, fill(&bytes)) {
            let line = text[..l.at].rsplit('\n').next().unwrap_or("");
            out.push((bound_name(line), bytes));
        }
    }
    out
}

/// Where an ordinary string literal ends (its closing quote), past escapes.
fn literal_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i.min(b.len())
}

/// A string literal's escapes resolved (`\r`, `\n`, `\t`, `\0`, `\\`,
/// `\"`, `\xNN`, and a line continuation).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 2;
        match b[i - 1] {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'x' => {
                let hex = s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok());
                out.extend(hex);
                i += 2;
            }
            b'\n' => {
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `bytes` with its placeholders filled, or `None` if one is unknown.
fn fill(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    for (k, v) in PLACEHOLDERS {
        text = text.replace(k, v);
    }
    let placeholder = text.match_indices('{').any(|(i, _)| {
        text[i + 1..]
            .split('}')
            .next()
            .is_some_and(|inner| inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    });
    match placeholder {
        true => None,
        // Lossy only where the literal held no UTF-8 to begin with.
        false if String::from_utf8_lossy(bytes).contains('{') => Some(text.into_bytes()),
        false => Some(bytes.to_vec()),
    }
}

/// The name a literal starting at the end of `line` is bound to.
fn bound_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let decl = line
        .strip_prefix("const ")
        .or_else(|| line.strip_prefix("let mut "))
        .or_else(|| line.strip_prefix("let "))?;
    let name: String = decl
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then(|| name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_out_of_string_literals() {
        let src = r####"
    let q = v.trim_matches('"').split('#'); // a "quote in a comment
    let e = ('\'', '\x22', 'x', &'static);
const DESC: &str = r#"<root>x</root>"#;
    let arg = "<UniqueID>7</UniqueID>";
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let odd = &b"\x00\x01 not http\r\n"[..];
    let s = "HTTP/1.1 200 OK\r\n\
             LOCATION: {location}\r\n\r\n";
    let skip = "not a reply";
    let unknown = r#"<a>{other}</a>"#;
    f(b"SSH-2.0-x\r\n\r\n");
"####;
        let got = upnp_literals(src);
        let want: Vec<(Option<String>, Vec<u8>)> = vec![
            (Some("desc".into()), b"<root>x</root>".to_vec()),
            (
                Some("r".into()),
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
            (Some("odd".into()), b"\x00\x01 not http\r\n".to_vec()),
            (
                Some("s".into()),
                b"HTTP/1.1 200 OK\r\nLOCATION: http://10.0.0.1:5000/desc.xml\r\n\r\n".to_vec(),
            ),
            (None, b"SSH-2.0-x\r\n\r\n".to_vec()),
        ];
        assert_eq!(got, want);
    }
}
