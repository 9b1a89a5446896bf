use super::*;
use crate::url::parse_url;

#[test]
fn requests() {
    let u = parse_url("http://10.0.0.1:5000/ctl/IPConn").unwrap();
    let p = String::from_utf8(build_soap_post(
        &u,
        "urn:x:service:WANIPConnection:1",
        "GetExternalIPAddress",
        "<b/>",
    ))
    .unwrap();
    assert!(p.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.0.1:5000\r\n"));
    assert!(p.contains("SOAPAction: \"urn:x:service:WANIPConnection:1#GetExternalIPAddress\"\r\n"));
    assert!(p.ends_with("Content-Length: 4\r\n\r\n<b/>"));
}

#[test]
fn bodies() {
    let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    let r = parse_response(b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (500, &b"abcde"[..]));
    let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
    assert_eq!(r.body, b"until close");
    let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert!(r.body.is_empty());
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello")
            .unwrap_err()
            .contains("truncated body")
    );
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap_err()
            .contains("truncated response head")
    );
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
            .unwrap_err()
            .contains("truncated chunked body")
    );
    let huge = vec![b'a'; HTTP_MAX_RESPONSE + 1];
    assert!(parse_response(&huge).unwrap_err().contains("larger than"));
}

#[test]
fn completeness_follows_the_framing() {
    // Complete by Content-Length, by the last chunk, or having no body.
    assert!(is_complete(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    ));
    assert!(!is_complete(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello"
    ));
    assert!(is_complete(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
    ));
    assert!(!is_complete(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
    ));
    assert!(is_complete(b"HTTP/1.1 304 Not Modified\r\n\r\n"));
    assert!(!is_complete(b"HTTP/1.1 200 OK\r\nContent-Le"));
    // Close-delimited (HTTP/1.0, or no length and not chunked): never
    // complete before the peer closes, however much has come.
    for head in [
        &b"HTTP/1.0 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<root>",
    ] {
        assert!(!is_complete(head), "{}", String::from_utf8_lossy(head));
        assert!(parse_response(head).is_ok(), "parses once closed");
    }
    // Malformed beyond repair: stop reading, parse_response says why.
    for bad in [
        &b"\x00\x01 not http at all\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        assert!(is_complete(bad), "{}", String::from_utf8_lossy(bad));
        assert!(parse_response(bad).is_err());
    }
}

/// The security review's reproducer: 80 bytes whose chunk size made
/// `size + 2` overflow (a trap in the 32-bit guest, a wrap on 64 bits).
#[test]
fn chunk_size_overflow_regressions() {
    let mut r =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n".to_vec();
    r.resize(80, b'x');
    assert_eq!(r.len(), 80);
    assert!(is_complete(&r), "an error, no need to read on");
    assert!(
        parse_response(&r)
            .unwrap_err()
            .contains("chunk size 18446744073709551615 is larger than 65536 bytes")
    );
    // The same against a 32-bit `usize`: u32::MAX and its neighbours.
    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n".to_vec();
    r.resize(80, b'x');
    assert!(
        parse_response(&r)
            .unwrap_err()
            .contains("chunk size 4294967295 is larger")
    );
    let max32 = u64::from(u32::MAX);
    let max = u64::try_from(usize::MAX).unwrap();
    for n in [
        max32 - 2,
        max32 - 1,
        max32,
        max32 + 1,
        max - 2,
        max - 1,
        max,
        u64::MAX,
        HTTP_MAX_RESPONSE as u64 + 1,
    ] {
        let line = format!("{n:x}");
        assert!(
            chunk_size(line.as_bytes())
                .unwrap_err()
                .contains("is larger than"),
            "{line}"
        );
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nab\r\n0\r\n\r\n"
        )
        .into_bytes();
        r.resize(r.len() + 16, b'x');
        assert!(parse_response(&r).is_err(), "{line}");
        assert!(is_complete(&r), "{line}");
    }
    assert_eq!(chunk_size(b"10000").unwrap(), HTTP_MAX_RESPONSE);
    for bad in [
        &b"10000000000000000"[..], // 17 digits: past u64
        b"+f",
        b"-1",
        b"",
        b"0x10",
        b"f f",
    ] {
        assert!(
            chunk_size(bad).unwrap_err().contains("bad chunk size"),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // A chunk must end in CRLF where its size says.
    assert!(
        parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n"
        )
        .unwrap_err()
        .contains("not followed by CRLF")
    );
    // A chunk-size line without an end is not waited for forever.
    let mut endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    endless.resize(endless.len() + CHUNK_LINE_MAX + 1, b'0');
    assert!(is_complete(&endless));
    assert!(
        parse_response(&endless)
            .unwrap_err()
            .contains("longer than")
    );
}

#[test]
fn content_length_regressions() {
    let resp =
        |cl: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\nhello").into_bytes();
    for (cl, want) in [
        (
            "4294967295",
            "Content-Length 4294967295 is larger than 65536 bytes",
        ),
        ("4294967296", "is larger than"),
        ("18446744073709551615", "is larger than"),
        ("18446744073709551616", "bad Content-Length"),
        ("99999999999999999999999", "bad Content-Length"),
        ("65537", "is larger than"),
        ("+5", "bad Content-Length"),
        ("-1", "bad Content-Length"),
        ("5 5", "bad Content-Length"),
        ("0x5", "bad Content-Length"),
    ] {
        let r = resp(cl);
        assert!(is_complete(&r), "{cl}: stop reading at once");
        let e = parse_response(&r).unwrap_err();
        assert!(e.contains(want), "{cl}: {e}");
    }
    let usize_max = usize::MAX.to_string();
    assert!(parse_response(&resp(&usize_max)).is_err());
    let dup = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    assert!(parse_response(dup).unwrap_err().contains("conflicting"));
    let same = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello";
    assert_eq!(parse_response(same).unwrap().body, b"hello");
    // Transfer-Encoding wins over Content-Length; other codings are refused.
    let both = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    assert_eq!(parse_response(both).unwrap().body, b"ab");
    let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert!(
        parse_response(gzip)
            .unwrap_err()
            .contains("unsupported Transfer-Encoding")
    );
}

#[test]
fn peer_text_in_errors_is_escaped() {
    // httparse lets bytes from 0x80 through: a right-to-left override here.
    let e = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 1\u{202e}9\r\n\r\nx".as_bytes())
        .unwrap_err();
    assert!(!e.contains('\u{202e}'), "{e:?}");
    assert!(e.contains("bad Content-Length `1\\u{202e}9`"), "{e:?}");
}
