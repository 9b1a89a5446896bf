//! docs/client-api.md agrees with the code.

use super::*;

#[test]
fn the_documented_lines_parse() {
    // docs/client-api.md is what other languages implement: its complete
    // example lines (`→` requests, `←` broker lines) must be valid v1.
    let doc = include_str!("../../../../docs/client-api.md");
    let (mut requests, mut answers) = (0, 0);
    for line in doc.lines() {
        if line.contains("...") || line.contains('…') || !line.ends_with('}') {
            continue; // abridged or wrapped for reading
        }
        if let Some(r) = line.strip_prefix("→ ") {
            let req = parse_request(r.as_bytes()).unwrap_or_else(|e| panic!("{r}: {e:?}"));
            assert_eq!(
                encode_request(&req).trim_end(),
                r,
                "documented in canonical form"
            );
            requests += 1;
        } else if let Some(a) = line.strip_prefix("← ") {
            parse_response_line(a.as_bytes()).unwrap_or_else(|e| panic!("{a}: {e}"));
            answers += 1;
        }
    }
    assert!(
        requests >= 6 && answers >= 6,
        "{requests} requests, {answers} answers"
    );
    // The documented refusals are the parser's own words.
    for (request, answer) in [
        (
            r#"{"v":1,"id":9,"op":"map","transport":"tcp","port":80,"colour":"red"}"#,
            r#"{"v":1,"id":9,"ok":false,"error":{"code":"bad-request","message":"op `map`: unknown field `colour`, expected one of `transport`, `port`, `external_port`, `lifetime`, `mode`, `persist`, `address`, `socket`, `until_closed`"}}"#,
        ),
        (
            r#"{"v":2,"id":9,"op":"list"}"#,
            r#"{"v":1,"id":9,"ok":false,"error":{"code":"unsupported-version","message":"protocol version 2 is not supported; this broker speaks version 1"}}"#,
        ),
    ] {
        let e = parse_request(request.as_bytes()).unwrap_err();
        let body = Err(ApiError {
            code: e.code,
            message: e.message,
            reasons: vec![],
        });
        let line = encode_response(&Response {
            v: 1,
            id: e.id,
            body,
        });
        assert_eq!(line.trim_end(), answer);
        assert!(doc.contains(answer), "{answer} is in the doc");
    }
}
