//! Text that came from outside (a MOD, a gateway through a MOD, a client,
//! a fleet server) made safe for a terminal and a log line.
//!
//! [`escape`] turns every control character (C0, DEL, C1), and the Unicode
//! line and paragraph separators and bidirectional overrides, into a
//! visible `\u{…}` escape: no newline can forge a log record, no ANSI escape
//! sequence reaches a terminal, and no bidi override can make text read
//! other than it is. Printable text, other scripts included, passes
//! unchanged.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or a log line as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Line and paragraph separators: new lines to some readers.
            '\u{2028}' | '\u{2029}'
            // Bidirectional embeddings, overrides and isolates.
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Marks that are invisible but reorder text.
            | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// `s` with every unsafe character written as `\u{HEX}` (and `\` itself
/// as `\\`, so an escape in the input cannot pass for one of ours).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape`] into an owned string.
pub fn escaped(s: &str) -> String {
    escape(s).into_owned()
}

/// `s` with every unsafe character written as `\u{HEX}`, backslashes
/// left alone: for a whole log record, whose own text may hold escapes
/// made by [`escape`] already (a literal `\u{a}` forges no record).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `v` as one line of JSON that is safe on a terminal: besides what JSON
/// escapes anyway (C0 controls), every unsafe character (DEL, C1, line
/// separators, bidi controls) is written as a `\uXXXX` escape. The value
/// read back is the same.
pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SafeJson);
    // Serialising our own values to memory cannot fail.
    v.serialize(&mut ser).expect("serialises");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// serde_json's compact format, with unsafe characters escaped.
struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Addresses as `a, b, c`, or `none`: for a status line or a log record
/// (addresses need no escaping).
pub fn ip_list(ips: &[std::net::IpAddr]) -> String {
    if ips.is_empty() {
        return "none".into();
    }
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_are_made_visible() {
        assert_eq!(escape("plain text, é, 日本"), "plain text, é, 日本");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("ok\n2026-11-29 FAKE record"),
            "ok\\u{a}2026-11-29 FAKE record"
        );
        assert_eq!(escape("\u{1b}[31mred\u{7}"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(
            escape("a\u{202e}b\u{2028}c\u{9b}"),
            "a\\u{202e}b\\u{2028}c\\u{9b}"
        );
        // An escape already in the input cannot pass for one of ours.
        assert_eq!(escape("\\u{a}"), "\\\\u{a}");
        assert_eq!(escape("\r\t\0\u{7f}"), "\\u{d}\\u{9}\\u{0}\\u{7f}");
    }

    #[test]
    fn json_lines_escape_what_json_leaves_raw_and_read_back_the_same() {
        let hostile = "a\u{1b}[2J\u{7f}\u{9b}31m\u{202e}b\u{2028}\n\\ é 日本";
        let v = serde_json::json!({ "reason": hostile, hostile: [hostile] });
        let line = json_line(&v);
        assert!(!line.chars().any(is_unsafe), "{line}");
        assert!(
            line.contains("\\u202e") && line.contains("\\u001b"),
            "{line}"
        );
        assert!(line.contains("é 日本"), "printable text stays: {line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, v);
        assert_eq!(json_line(&7), "7");
    }

    #[test]
    fn record_escaping_keeps_backslashes() {
        assert_eq!(escape_controls("a\\u{a}\nb"), "a\\u{a}\\u{a}b");
        assert!(matches!(escape_controls("plain \\ text"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_text_is_one_printable_line() {
        let hostile: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let e = escape(&hostile);
        assert!(!e.chars().any(is_unsafe), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn address_lists_read_as_a_list_or_none() {
        assert_eq!(ip_list(&[]), "none");
        let ips = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        assert_eq!(ip_list(&ips), "192.0.2.1, 2001:db8::1");
    }
}
