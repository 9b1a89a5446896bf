//! The async client against a scripted broker on a Unix socket in a temp
//! dir: responses matched by id (with an event in between, and out of
//! order), errors, malformed lines, timeouts, a closing broker, and a
//! dropped client closing its connection, lines over the client's cap.

use std::time::Duration;

use p2pbroker_client::{Client, ClientError, ErrorCode, EventKind, MAX_BROKER_LINE, MapOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

const LEASE: &str = r#"{"id":1,"transport":"tcp","internal":"10.0.0.2:6881","external":"198.51.100.2:6881","mode":"pcp","state":"active","gateway_lifetime":3600,"renew_at":1800,"expires_at":null,"owner_uid":0,"persist":false,"created_at":0}"#;

/// What the scripted broker writes for one request line; `CLOSE` closes
/// the connection.
type Script = Box<dyn FnMut(&str) -> Vec<String> + Send>;

/// A broker that answers each request line with `script(line)`. The
/// receiver fires when the client closes its end.
fn fake(mut script: Script) -> (tempfile::TempDir, std::path::PathBuf, oneshot::Receiver<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let l = UnixListener::bind(&path).unwrap();
    let (eof_tx, eof_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            for out in script(&line) {
                if out == "CLOSE" {
                    return;
                }
                w.write_all(out.as_bytes()).await.unwrap();
                w.write_all(b"\n").await.unwrap();
            }
        }
        let _ = eof_tx.send(());
    });
    (dir, path, eof_rx)
}

fn id_of(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["id"].as_u64().unwrap()
}

fn ok(id: u64, result: &str) -> String {
    format!(r#"{{"v":1,"id":{id},"ok":true,"result":{result}}}"#)
}

#[tokio::test]
async fn an_event_between_request_and_response_is_routed_to_the_subscription() {
    let (_d, path, _) = fake(Box::new(|line| {
        let id = id_of(line);
        if line.contains("\"subscribe\"") {
            return vec![ok(id, "{}")];
        }
        vec![
            format!(r#"{{"v":1,"event":"mapped","lease":{LEASE}}}"#),
            ok(id, LEASE),
        ]
    }));
    let c = Client::open(&path).await.unwrap();
    let mut events = c.subscribe().await.unwrap();
    let lease = c.map(MapOptions::tcp(6881)).await.unwrap();
    assert_eq!(lease.external.to_string(), "198.51.100.2:6881");
    let e = events.next().await.unwrap();
    assert_eq!((e.kind, e.lease), (EventKind::Mapped, lease));
    assert!(matches!(c.subscribe().await, Err(ClientError::Protocol(_))));
}

#[tokio::test]
async fn concurrent_requests_get_their_own_answers_out_of_order() {
    // Holds the first request and answers both, second first, once the
    // second arrives: each caller must still get its own result.
    let mut held = None;
    let (_d, path, _) = fake(Box::new(move |line| {
        let id = id_of(line);
        let Some(first) = held.take() else {
            held = Some(id);
            return vec![];
        };
        vec![ok(id, r#"{"leases":[]}"#), ok(first, LEASE)]
    }));
    let c = Client::open(&path).await.unwrap();
    let (mapped, listed) = tokio::join!(c.map(MapOptions::udp(6881).persist(true)), async {
        // Sent second, so the broker sees the map first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.list().await
    });
    assert_eq!(mapped.unwrap().id, 1);
    assert!(listed.unwrap().is_empty());
}

#[tokio::test]
async fn each_op_sends_its_request_and_decodes_its_result() {
    let status = format!(
        r#"{{"broker_version":"0.1.0","protocol":1,"uptime_s":5,"policy":{{"source":"built-in","version":null,"error":null}},"network":{{"gateways":["10.0.0.1"],"addresses":[]}},"modes":[{{"name":"pcp","sha256":"00","version":"0.1.0","probe":null}}],"leases":[{LEASE}]}}"#
    );
    let probe = r#"{"probes":[{"mode":"pcp","ok":true,"kind":null,"detail":"epoch 3","gateway":"10.0.0.1","external_address":"198.51.100.2","external_class":"global","elapsed_ms":3,"age_s":0}],"chosen":"pcp","why":"first that probed ok","gateways":["10.0.0.1"],"external_address":"198.51.100.2","double_nat":false}"#;
    let (_d, path, _) = fake(Box::new(move |line| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = id_of(line);
        let result = match (v["op"].as_str().unwrap(), line) {
            ("map", _) if v["lifetime"] == 60 && v["external_port"] == 7000 => LEASE.to_string(),
            ("unmap", _) if v["lease"] == 1 => LEASE.to_string(),
            ("status", r#"{"v":1,"id":3,"op":"status"}"#) => status.clone(),
            ("probe", _) if v["fresh"] == true => probe.to_string(),
            _ => {
                return vec![format!(
                    r#"{{"v":1,"id":{id},"ok":false,"error":{{"code":"bad-request","message":"unexpected {line}"}}}}"#
                )];
            }
        };
        vec![ok(id, &result)]
    }));
    let c = Client::open(&path).await.unwrap();
    let opts = MapOptions::tcp(6881)
        .lifetime(60)
        .external_port(7000)
        .mode("pcp");
    assert_eq!(c.map(opts).await.unwrap().mode, "pcp");
    assert_eq!(c.unmap(1).await.unwrap().id, 1);
    let s = c.status().await.unwrap();
    assert_eq!((s.protocol, s.leases.len(), s.refused.len()), (1, 1, 0));
    let p = c.probe(true).await.unwrap();
    assert_eq!(p.chosen.as_deref(), Some("pcp"));
}

#[tokio::test]
async fn api_errors_carry_code_and_reasons() {
    let (_d, path, _) = fake(Box::new(|line| {
        let id = id_of(line);
        vec![format!(
            r#"{{"v":1,"id":{id},"ok":false,"error":{{"code":"no-mode","message":"none","reasons":[{{"mode":"pcp","kind":"timeout","reason":"silence"}}]}}}}"#
        )]
    }));
    let c = Client::open(&path).await.unwrap();
    match c.map(MapOptions::udp(9)).await {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.code, ErrorCode::NoMode);
            assert_eq!(e.reasons[0].mode, "pcp");
            assert_eq!(e.to_string(), "no-mode: none");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_answer_fails_its_request_at_once() {
    let (_d, path, _) = fake(Box::new(|line| {
        let id = id_of(line);
        vec![
            "garbage without an id".to_string(),
            format!(r#"{{"v":1,"id":{id},"ok":"maybe"}}"#),
        ]
    }));
    let c = Client::open(&path).await.unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(c.list().await, Err(ClientError::Protocol(_))));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the timeout"
    );
    // A well-formed response whose result does not fit the op.
    let (_d, path, _) = fake(Box::new(|line| vec![ok(id_of(line), r#"{"leases":7}"#)]));
    let c = Client::open(&path).await.unwrap();
    assert!(matches!(c.list().await, Err(ClientError::Protocol(_))));
}

#[tokio::test]
async fn silence_times_out_and_a_closing_broker_fails_the_request() {
    let (_d, path, _) = fake(Box::new(|_| vec![]));
    let mut c = Client::open(&path).await.unwrap();
    c.set_timeout(Duration::from_millis(200));
    assert!(matches!(c.list().await, Err(ClientError::Timeout(_))));

    let (_d2, path2, _) = fake(Box::new(|line| {
        if line.contains("subscribe") {
            vec![ok(id_of(line), "{}")]
        } else {
            vec!["CLOSE".to_string()]
        }
    }));
    let c = Client::open(&path2).await.unwrap();
    let mut events = c.subscribe().await.unwrap();
    assert!(matches!(c.status().await, Err(ClientError::Closed)));
    assert!(events.next().await.is_none(), "the subscription ends");
    assert!(matches!(c.list().await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn a_failed_subscribe_can_be_retried() {
    let mut first = true;
    let (_d, path, _) = fake(Box::new(move |line| {
        let id = id_of(line);
        if std::mem::take(&mut first) {
            return vec![format!(
                r#"{{"v":1,"id":{id},"ok":false,"error":{{"code":"internal","message":"busy"}}}}"#
            )];
        }
        vec![ok(id, "{}")]
    }));
    let c = Client::open(&path).await.unwrap();
    assert!(matches!(c.subscribe().await, Err(ClientError::Api(_))));
    assert!(c.subscribe().await.is_ok());
}

#[tokio::test]
async fn dropping_the_client_closes_the_connection() {
    // The broker releases a connection's leases when it sees the close;
    // this is the close it sees.
    let (_d, path, eof) = fake(Box::new(|line| vec![ok(id_of(line), LEASE)]));
    let c = Client::open(&path).await.unwrap();
    c.map(MapOptions::tcp(6881)).await.unwrap();
    drop(c);
    tokio::time::timeout(Duration::from_secs(5), eof)
        .await
        .expect("the broker sees the connection close")
        .unwrap();
}

#[tokio::test]
async fn a_request_cut_off_mid_write_closes_the_connection_for_requests() {
    // A broker that accepts and never reads: the socket buffer fills, a
    // write blocks and times out before its line is complete. Nothing can
    // be framed after a cut-off line, so the client refuses further
    // requests instead of sending them glued to it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let l = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move { l.accept().await.unwrap() });
    let mut c = Client::open(&path).await.unwrap();
    c.set_timeout(Duration::from_millis(300));
    let _conn = server.await.unwrap();
    let c = std::sync::Arc::new(c);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20_000 {
        let c = c.clone();
        calls.spawn(async move { c.map(MapOptions::tcp(1).mode(&"m".repeat(32))).await });
    }
    let (mut timeouts, mut closed) = (0, 0);
    while let Some(r) = calls.join_next().await {
        match r.unwrap() {
            Err(ClientError::Timeout(_)) => timeouts += 1,
            Err(ClientError::Closed) => closed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        timeouts > 0 && closed > 0,
        "{timeouts} timeouts, {closed} closed"
    );
    assert!(matches!(c.list().await, Err(ClientError::Closed)));
}

/// A line of `MAX_BROKER_LINE + 1` bytes: one over the client's cap.
fn too_long_line() -> String {
    "x".repeat(MAX_BROKER_LINE + 1)
}

#[tokio::test]
async fn a_broker_line_over_the_cap_is_skipped_and_the_connection_goes_on() {
    let (_d, path, _) = fake(Box::new(|line| {
        vec![too_long_line(), ok(id_of(line), r#"{"leases":[]}"#)]
    }));
    let c = Client::open(&path).await.unwrap();
    assert!(c.list().await.unwrap().is_empty());
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lan_hello_answer_over_the_cap_is_refused_by_name() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let _hello = BufReader::new(r).lines().next_line().await;
        // The client stops reading at the cap: ignore the broken pipe.
        let _ = w.write_all(too_long_line().as_bytes()).await;
    });
    match Client::open_lan(addr, "token").await {
        Err(ClientError::Protocol(why)) => assert!(
            why.contains(&format!("over {MAX_BROKER_LINE} bytes")),
            "{why}"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[tokio::test]
async fn a_broker_running_as_an_untrusted_uid_is_refused_before_anything_is_sent() {
    // The fake runs as this process's uid; trusting only another uid makes
    // it the squatter. The refusal must come before a single byte is sent.
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = sent.clone();
    let (_d, path, eof) = fake(Box::new(move |line| {
        seen.lock().unwrap().push(line.to_string());
        vec![ok(id_of(line), "{}")]
    }));
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let stranger = me.wrapping_add(1);
    match Client::open_trusting(&path, &[stranger]).await {
        Err(ClientError::UntrustedBroker(uid)) => assert_eq!(uid, me),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an untrusted broker was accepted"),
    }
    tokio::time::timeout(Duration::from_secs(5), eof)
        .await
        .expect("the connection is closed")
        .unwrap();
    assert!(
        sent.lock().unwrap().is_empty(),
        "{:?}",
        sent.lock().unwrap()
    );
}

#[test]
fn the_default_trust_is_root_and_this_user() {
    // Every way of opening a connection (`open`, `open_default`, the CLI) trusts
    // exactly these, plus P2PB_BROKER_UID when set.
    let uids = p2pbroker_client::trusted_broker_uids();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert!(uids.contains(&0) && uids.contains(&me), "{uids:?}");
    let extra = std::env::var("P2PB_BROKER_UID").ok();
    assert!(uids.len() <= 2 + usize::from(extra.is_some()), "{uids:?}");
}

#[tokio::test]
async fn a_connection_the_broker_refuses_at_once_reports_its_reason() {
    // A broker over its connection cap writes one `limit` line without an
    // id and closes. The request fails with that reason, whether its line
    // was written before the close or not.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let l = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        for _ in 0..3 {
            let (mut s, _) = l.accept().await.unwrap();
            let refusal = r#"{"v":1,"id":null,"ok":false,"error":{"code":"limit","message":"uid 1000 has 64 connections open (broker.max_connections_per_client); close one first"}}"#;
            s.write_all(refusal.as_bytes()).await.unwrap();
            s.write_all(b"\n").await.unwrap();
        }
    });
    for pause in [0, 50, 200] {
        let c = Client::open(&path).await.unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        match c.list().await {
            Err(ClientError::Api(e)) => {
                assert_eq!(e.code, ErrorCode::Limit, "{e}");
                assert!(e.message.contains("max_connections_per_client"), "{e}");
            }
            other => panic!("after {pause} ms: {other:?}"),
        }
    }
}

/// A successful `connect` answer line for request `id` to 127.0.0.1:`port`
/// (the socket travels beside it).
fn connected(id: u64, port: u16) -> String {
    let result = format!(
        r#"{{"host":"127.0.0.1","port":{port},"via":"direct","local":"127.0.0.1:1","elapsed_ms":1}}"#
    );
    ok(id, &result) + "\n"
}

/// A broker that answers `connect` with the client end of a loopback
/// connection attached to the answer line (as the
/// daemon does), an event line before it, and a second answer with no
/// socket at all.
#[tokio::test]
async fn a_connect_answer_brings_its_socket_and_one_without_is_an_error() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let l = UnixListener::bind(&path).unwrap();
    let far = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let far_addr = far.local_addr().unwrap();
    let answer = move |id: u64| connected(id, far_addr.port());
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        let line = lines.next_line().await.unwrap().unwrap();
        let sock = tokio::net::TcpStream::connect(far_addr)
            .await
            .unwrap()
            .into_std()
            .unwrap();
        let mut w = w;
        w.write_all(format!(r#"{{"v":1,"event":"mapped","lease":{LEASE}}}"#).as_bytes())
            .await
            .unwrap();
        w.write_all(b"\n").await.unwrap();
        p2pbroker_client::fdrecv::send_with_fd(
            w.as_ref(),
            answer(id_of(&line)).as_bytes(),
            std::os::fd::AsFd::as_fd(&sock),
        )
        .await
        .unwrap();
        drop(sock); // the broker keeps no copy
        let line = lines.next_line().await.unwrap().unwrap();
        w.write_all(answer(id_of(&line)).as_bytes()).await.unwrap();
        let _ = lines.next_line().await;
    });
    let c = Client::open(&path).await.unwrap();
    let mut o = c.connect("127.0.0.1", far_addr.port()).await.unwrap();
    assert_eq!(o.connection.via, "direct");
    // The socket is the connection to the far end: what it sends arrives.
    let (mut peer, _) = far.accept().unwrap();
    peer.write_all(b"hello").unwrap();
    drop(peer);
    let mut got = String::new();
    o.stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello");
    match c.connect("127.0.0.1", far_addr.port()).await {
        Err(ClientError::Protocol(m)) => assert!(m.contains("without its socket"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A `connect` the client gave up on is answered late, with its socket:
/// that socket is closed, and the next `connect` gets its own.
#[tokio::test]
async fn a_late_connect_answer_does_not_hand_its_socket_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let l = UnixListener::bind(&path).unwrap();
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = [first.local_addr().unwrap(), second.local_addr().unwrap()];
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        for (i, far) in addrs.into_iter().enumerate() {
            let line = lines.next_line().await.unwrap().unwrap();
            if i == 0 {
                // Answer only after the client has given up.
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            let sock = tokio::net::TcpStream::connect(far)
                .await
                .unwrap()
                .into_std()
                .unwrap();
            let answer = connected(id_of(&line), far.port());
            p2pbroker_client::fdrecv::send_with_fd(
                w.as_ref(),
                answer.as_bytes(),
                std::os::fd::AsFd::as_fd(&sock),
            )
            .await
            .unwrap();
        }
        let _ = lines.next_line().await;
    });
    let mut c = Client::open(&path).await.unwrap();
    c.set_timeout(Duration::from_millis(100));
    assert!(matches!(
        c.connect("127.0.0.1", addrs[0].port()).await,
        Err(ClientError::Timeout(_))
    ));
    c.set_timeout(Duration::from_secs(5));
    let o = c.connect("127.0.0.1", addrs[1].port()).await.unwrap();
    assert_eq!(o.stream.peer_addr().unwrap(), addrs[1], "its own socket");
}
