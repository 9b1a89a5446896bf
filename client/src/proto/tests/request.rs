//! Requests: golden lines, defaults, every refusal, the line cap.

use super::*;

#[test]
fn requests_encode_to_the_golden_lines() {
    let golden = [
        (
            map_request(),
            r#"{"v":1,"id":7,"op":"map","transport":"tcp","port":6881,"external_port":6881,"lifetime":3600,"mode":"pcp","persist":true,"address":"10.0.0.2"}"#,
        ),
        (
            Request {
                v: 1,
                id: 1,
                op: Op::Map(MapParams::new(Transport::Udp, 53)),
            },
            r#"{"v":1,"id":1,"op":"map","transport":"udp","port":53}"#,
        ),
        (
            Request {
                v: 1,
                id: 5,
                op: Op::Reach(MapParams::new(Transport::Udp, 7070)),
            },
            r#"{"v":1,"id":5,"op":"reach","transport":"udp","port":7070}"#,
        ),
        (
            Request {
                v: 1,
                id: 3,
                op: Op::Unmap { lease: 4 },
            },
            r#"{"v":1,"id":3,"op":"unmap","lease":4}"#,
        ),
        (
            Request {
                v: 1,
                id: 1,
                op: Op::List,
            },
            r#"{"v":1,"id":1,"op":"list"}"#,
        ),
        (
            Request {
                v: 1,
                id: 2,
                op: Op::Status,
            },
            r#"{"v":1,"id":2,"op":"status"}"#,
        ),
        (
            Request {
                v: 1,
                id: 5,
                op: Op::Probe { fresh: true },
            },
            r#"{"v":1,"id":5,"op":"probe","fresh":true}"#,
        ),
        (
            Request {
                v: 1,
                id: 6,
                op: Op::Subscribe,
            },
            r#"{"v":1,"id":6,"op":"subscribe"}"#,
        ),
    ];
    for (r, line) in golden {
        assert_eq!(encode_request(&r), format!("{line}\n"));
        assert_eq!(parse_request(line.as_bytes()).unwrap(), r, "{line}");
    }
}

#[test]
fn optional_fields_take_their_defaults() {
    let r = parse_request(br#"{"op":"probe","id":9,"v":1}"#).unwrap();
    assert_eq!(r.op, Op::Probe { fresh: false });
    let r =
        parse_request(br#"{"v":1,"id":9,"op":"map","transport":"udp","port":9,"lifetime":null}"#)
            .unwrap();
    let Op::Map(p) = r.op else { panic!() };
    assert_eq!((p.lifetime, p.persist, p.address), (None, false, None));
    let r = parse_request(
        br#"{"v":1,"id":1,"op":"map","transport":"tcp","port":1,"address":"fd00::2"}"#,
    )
    .unwrap();
    assert_eq!(parse_request(encode_request(&r).as_bytes()).unwrap(), r);
}

/// Refusal of `line`: (id, code, message).
fn refusal(line: &[u8]) -> (Option<u64>, ErrorCode, String) {
    let e = parse_request(line).unwrap_err();
    assert!(!e.message.is_empty());
    (e.id, e.code, e.message)
}

#[test]
fn every_refusal_has_its_code_and_names_the_problem() {
    use ErrorCode::*;
    let map =
        |extra: &str| format!(r#"{{"v":1,"id":4,"op":"map","transport":"tcp","port":80{extra}}}"#);
    let cases: Vec<(String, Option<u64>, ErrorCode, &str)> = vec![
        (
            map(r#","colour":1"#),
            Some(4),
            BadRequest,
            "unknown field `colour`",
        ),
        (
            r#"{"v":1,"id":4,"op":"map","transport":"sctp","port":1}"#.into(),
            Some(4),
            BadRequest,
            "`sctp`, expected `tcp` or `udp`",
        ),
        (
            r#"{"v":1,"id":4,"op":"map","transport":"tcp","port":0}"#.into(),
            Some(4),
            BadRequest,
            "`port` must be 1-65535",
        ),
        (
            r#"{"v":1,"id":4,"op":"map","transport":"tcp","port":65536}"#.into(),
            Some(4),
            BadRequest,
            "expected u16",
        ),
        (
            map(r#","external_port":0"#),
            Some(4),
            BadRequest,
            "`external_port` must be 1-65535",
        ),
        (
            map(r#","lifetime":0"#),
            Some(4),
            BadRequest,
            "`lifetime` must be at least 1",
        ),
        (
            map(r#","lifetime":-5"#),
            Some(4),
            BadRequest,
            "expected u32",
        ),
        (
            map(r#","address":"host.example""#),
            Some(4),
            BadRequest,
            "IP address",
        ),
        (map(r#","mode":"""#), Some(4), BadRequest, "`mode`"),
        (
            map(r#","mode":"nat-pmp\u202e\u001b[2J""#),
            Some(4),
            BadRequest,
            "`mode` must be a MOD name",
        ),
        (map(r#","mode":"-pcp""#), Some(4), BadRequest, "`mode`"),
        (
            map(r#","persist":"yes""#),
            Some(4),
            BadRequest,
            "expected a boolean",
        ),
        (
            r#"{"v":1,"id":4,"op":"map","port":9}"#.into(),
            Some(4),
            BadRequest,
            "missing field `transport`",
        ),
        (
            r#"{"v":1,"id":4,"op":"unmap"}"#.into(),
            Some(4),
            BadRequest,
            "missing field `lease`",
        ),
        (
            r#"{"v":1,"id":4,"op":"probe","fresh":1}"#.into(),
            Some(4),
            BadRequest,
            "expected a boolean",
        ),
        (
            r#"{"v":1,"id":1,"op":"list","x":1}"#.into(),
            Some(1),
            BadRequest,
            "unknown field `x`",
        ),
        (
            r#"{"v":2,"id":5,"op":"list"}"#.into(),
            Some(5),
            UnsupportedVersion,
            "speaks version 1",
        ),
        (
            r#"{"v":2,"op":"whatever-v2-says"}"#.into(),
            None,
            UnsupportedVersion,
            "version 2",
        ),
        (
            r#"{"v":"1","id":5,"op":"list"}"#.into(),
            Some(5),
            BadRequest,
            "`v`",
        ),
        (
            r#"{"id":5,"op":"list"}"#.into(),
            Some(5),
            BadRequest,
            "missing field `v`",
        ),
        (
            r#"{"v":1,"op":"list"}"#.into(),
            None,
            BadRequest,
            "missing field `id`",
        ),
        (
            r#"{"v":1,"id":-1,"op":"list"}"#.into(),
            None,
            BadRequest,
            "`id`",
        ),
        (
            r#"{"v":1,"id":1.5,"op":"list"}"#.into(),
            None,
            BadRequest,
            "`id`",
        ),
        (
            r#"{"v":1,"id":5}"#.into(),
            Some(5),
            BadRequest,
            "missing field `op`",
        ),
        (
            r#"{"v":1,"id":5,"op":3}"#.into(),
            Some(5),
            BadRequest,
            "`op` must be a string",
        ),
        (
            r#"{"v":1,"id":5,"op":"dance"}"#.into(),
            Some(5),
            UnknownOp,
            "unknown op `dance`",
        ),
        ("[1,2]".into(), None, BadRequest, "not a JSON object"),
        ("\"map\"".into(), None, BadRequest, "not a JSON object"),
        ("{\"v\":1,".into(), None, BadRequest, "not JSON"),
        ("".into(), None, BadRequest, "not JSON"),
        (
            "{\"v\":1,\"id\":1,\"op\":\"list\"} {}".into(),
            None,
            BadRequest,
            "not JSON",
        ),
    ];
    for (line, id, code, needle) in cases {
        let (got_id, got_code, message) = refusal(line.as_bytes());
        assert_eq!((got_id, got_code), (id, code), "{line}: {message}");
        assert!(
            message.contains(needle),
            "{line}: `{message}` lacks `{needle}`"
        );
    }
    let (_, code, message) = refusal(b"\xff\xfe{}");
    assert_eq!(code, BadRequest);
    assert!(message.contains("not UTF-8"), "{message}");
}

#[test]
fn the_line_cap_is_exact() {
    // A line of exactly MAX_LINE bytes is read (here: a valid request
    // padded with spaces); one byte more is `too-large`.
    let mut line = br#"{"v":1,"id":1,"op":"list"}"#.to_vec();
    line.resize(MAX_LINE, b' ');
    assert_eq!(parse_request(&line).unwrap().op, Op::List);
    line.push(b' ');
    assert_eq!(refusal(&line).1, ErrorCode::TooLarge);
    let long_op = format!(r#"{{"v":1,"id":1,"op":"{}"}}"#, "x".repeat(1000));
    let (_, code, message) = refusal(long_op.as_bytes());
    assert_eq!(code, ErrorCode::UnknownOp);
    assert!(message.len() < 200, "the echoed op name is truncated");
}
