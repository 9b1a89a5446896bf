//! Responses and events: golden lines, round trips, lenient reading.

use super::*;

#[test]
fn responses_encode_to_the_golden_lines() {
    let ok = Response {
        v: 1,
        id: Some(1),
        body: Ok(ResultBody::Lease(lease())),
    };
    assert_eq!(
        encode_response(&ok),
        format!("{{\"v\":1,\"id\":1,\"ok\":true,\"result\":{LEASE_JSON}}}\n")
    );
    let list = Response {
        v: 1,
        id: Some(2),
        body: Ok(ResultBody::Leases(vec![])),
    };
    assert_eq!(
        encode_response(&list),
        "{\"v\":1,\"id\":2,\"ok\":true,\"result\":{\"leases\":[]}}\n"
    );
    let sub = Response {
        v: 1,
        id: Some(2),
        body: Ok(ResultBody::Subscribed),
    };
    assert_eq!(
        encode_response(&sub),
        "{\"v\":1,\"id\":2,\"ok\":true,\"result\":{}}\n"
    );
    let err = Response {
        v: 1,
        id: Some(1),
        body: Err(no_mode()),
    };
    assert_eq!(
        encode_response(&err),
        "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"no-mode\",\"message\":\"no MOD could map\",\"reasons\":[{\"mode\":\"upnp-igd\",\"kind\":\"unavailable\",\"reason\":\"no IGD\"}]}}\n"
    );
    // No reasons: the member is absent. No id: null.
    let bad = Response {
        v: 1,
        id: None,
        body: Err(ApiError {
            code: ErrorCode::BadRequest,
            message: "request is not JSON".into(),
            reasons: vec![],
        }),
    };
    assert_eq!(
        encode_response(&bad),
        "{\"v\":1,\"id\":null,\"ok\":false,\"error\":{\"code\":\"bad-request\",\"message\":\"request is not JSON\"}}\n"
    );
}

#[test]
fn every_response_round_trips_through_its_op() {
    let cases = [
        (map_request().op, ResultBody::Lease(lease())),
        (Op::Unmap { lease: 4 }, ResultBody::Lease(lease())),
        (Op::List, ResultBody::Leases(vec![lease(), lease()])),
        (Op::Status, ResultBody::Status(Box::new(status()))),
        (
            Op::Probe { fresh: true },
            ResultBody::Probe(Box::new(probe_summary())),
        ),
        (Op::Subscribe, ResultBody::Subscribed),
        (
            Op::Reach(MapParams::new(Transport::Udp, 7070)),
            ResultBody::Reached(Box::new(Reached::Lease(lease()))),
        ),
        (
            Op::Reach(MapParams::new(Transport::Udp, 7070)),
            ResultBody::Reached(Box::new(Reached::Punch(Punch {
                external_address: Some("198.51.100.2".parse().unwrap()),
                nat: probe_summary()
                    .nat
                    .expect("the sample probe has a NAT view"),
                reasons: no_mode().reasons,
            }))),
        ),
    ];
    for (op, body) in cases {
        let r = Response {
            v: 1,
            id: Some(11),
            body: Ok(body),
        };
        let line = encode_response(&r);
        let ServerLine::Response(raw) = parse_response_line(line.as_bytes()).unwrap() else {
            panic!("{line}")
        };
        assert_eq!(raw.into_response(&op).unwrap(), r, "{line}");
    }
    for code in ErrorCode::ALL {
        let e = ApiError {
            code,
            message: format!("{code}"),
            reasons: no_mode().reasons,
        };
        let r = Response {
            v: 1,
            id: None,
            body: Err(e),
        };
        let line = encode_response(&r);
        assert!(line.contains(&format!("\"code\":\"{code}\"")), "{line}");
        let ServerLine::Response(raw) = parse_response_line(line.as_bytes()).unwrap() else {
            panic!("{line}")
        };
        assert_eq!(raw.into_response(&Op::List).unwrap(), r);
    }
}

#[test]
fn events_encode_to_the_golden_line_and_round_trip() {
    let e = Event {
        kind: EventKind::Lost,
        lease: lease(),
        reason: Some("gateway rebooted".into()),
    };
    assert_eq!(
        encode_event(&e),
        format!(
            "{{\"v\":1,\"event\":\"lost\",\"lease\":{LEASE_JSON},\"reason\":\"gateway rebooted\"}}\n"
        )
    );
    let kinds = [
        (EventKind::Mapped, "mapped"),
        (EventKind::Renewed, "renewed"),
        (EventKind::Lost, "lost"),
        (EventKind::ReEstablished, "re-established"),
        (EventKind::Released, "released"),
    ];
    for (kind, name) in kinds {
        for reason in [None, Some("why".to_string())] {
            let mut lease = lease();
            lease.state = LeaseState::ReEstablishing;
            lease.transport = Transport::Udp;
            lease.external = "[2001:db8::1]:6881".parse().unwrap();
            let e = Event {
                kind,
                lease,
                reason,
            };
            let line = encode_event(&e);
            assert!(
                line.starts_with(&format!("{{\"v\":1,\"event\":\"{name}\",")),
                "{line}"
            );
            assert_eq!(line.contains("\"reason\""), e.reason.is_some());
            assert_eq!(
                parse_response_line(line.as_bytes()).unwrap(),
                ServerLine::Event(e)
            );
        }
    }
}

#[test]
fn clients_ignore_unknown_fields_but_refuse_malformed_lines() {
    let later = br#"{"v":1,"id":1,"ok":false,"error":{"code":"limit","message":"m","hint":"new"},"trace":"x"}"#;
    let ServerLine::Response(r) = parse_response_line(later).unwrap() else {
        panic!()
    };
    assert_eq!(r.result.unwrap_err().code, ErrorCode::Limit);
    let bad: &[&[u8]] = &[
        br#"{"v":2,"id":1,"ok":true,"result":{}}"#,
        br#"{"id":1,"ok":true,"result":{}}"#,
        br#"{"v":1,"id":1,"ok":true}"#,
        br#"{"v":1,"id":1,"ok":false,"result":{}}"#,
        br#"{"v":1,"id":1,"ok":true,"result":{},"error":{"code":"limit","message":""}}"#,
        br#"{"v":1,"id":1,"ok":false,"error":{"code":"teapot","message":""}}"#,
        br#"{"v":1,"event":"exploded","lease":{}}"#,
        b"[]",
        b"not json",
    ];
    for line in bad {
        assert!(
            parse_response_line(line).is_err(),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // A result of the wrong shape for its op is an error, not a panic.
    let raw = RawResponse {
        id: Some(1),
        result: Ok(serde_json::json!({"leases": 3})),
    };
    assert!(raw.into_response(&Op::List).is_err());
}

#[test]
fn names_match_the_wire() {
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
    for t in [Transport::Tcp, Transport::Udp] {
        assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
    assert!("TCP".parse::<Transport>().is_err());
    for k in [
        EventKind::Mapped,
        EventKind::Renewed,
        EventKind::Lost,
        EventKind::ReEstablished,
        EventKind::Released,
    ] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.to_string());
    }
    for s in [
        LeaseState::Active,
        LeaseState::Lost,
        LeaseState::ReEstablishing,
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), s.to_string());
    }
}

#[test]
fn a_status_from_an_older_broker_reads_with_the_expiry_fields_defaulted() {
    let old = r#"{"source":"built-in","version":3,"error":null}"#;
    let p: PolicyStatus = serde_json::from_str(old).unwrap();
    assert_eq!(p.expires_at, None);
    assert!(!p.expired);
    assert!(p.warnings.is_empty());
    // And a valid policy without warnings sends no `warnings` member.
    let line = serde_json::to_string(&PolicyStatus {
        warnings: vec![],
        expired: false,
        ..status().policy
    })
    .unwrap();
    assert!(!line.contains("warnings"), "{line}");
    assert!(
        line.contains("\"expires_at\":1795600000,\"expired\":false"),
        "{line}"
    );
}
