//! The async client against a scripted broker on a Unix socket: responses
//! matched by id with an event in between, errors, timeouts, a closing
//! broker.

use std::time::Duration;

use p2pbroker_client::{Client, ClientError, ErrorCode, EventKind, MapOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

const LEASE: &str = r#"{"id":1,"transport":"tcp","internal":"10.0.0.2:6881","external":"198.51.100.2:6881","mode":"pcp","state":"active","gateway_lifetime":3600,"renew_at":1800,"expires_at":null,"owner_uid":0,"persist":false,"created_at":0}"#;

/// A broker that answers each request line with `script(line)` lines.
fn fake(script: fn(&str) -> Vec<String>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let l = UnixListener::bind(&path).unwrap();
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
    });
    (dir, path)
}

fn id_of(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["id"].as_u64().unwrap()
}

#[tokio::test]
async fn an_event_between_request_and_response_is_routed_to_the_subscription() {
    let (_d, path) = fake(|line| {
        let id = id_of(line);
        if line.contains("\"subscribe\"") {
            return vec![format!(r#"{{"v":1,"id":{id},"ok":true,"result":{{}}}}"#)];
        }
        vec![
            format!(r#"{{"v":1,"event":"mapped","lease":{LEASE}}}"#),
            format!(r#"{{"v":1,"id":{id},"ok":true,"result":{LEASE}}}"#),
        ]
    });
    let c = Client::connect(&path).await.unwrap();
    let mut events = c.subscribe().await.unwrap();
    let lease = c.map(MapOptions::tcp(6881)).await.unwrap();
    assert_eq!(lease.external.to_string(), "198.51.100.2:6881");
    let e = events.next().await.unwrap();
    assert_eq!(e.kind, EventKind::Mapped);
    assert!(matches!(c.subscribe().await, Err(ClientError::Protocol(_))));
}

#[tokio::test]
async fn api_errors_carry_code_and_reasons() {
    let (_d, path) = fake(|line| {
        let id = id_of(line);
        vec![format!(
            r#"{{"v":1,"id":{id},"ok":false,"error":{{"code":"no-mode","message":"none","reasons":[{{"mode":"pcp","kind":"timeout","reason":"silence"}}]}}}}"#
        )]
    });
    let c = Client::connect(&path).await.unwrap();
    match c.map(MapOptions::udp(9)).await {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.code, ErrorCode::NoMode);
            assert_eq!(e.reasons[0].mode, "pcp");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn silence_times_out_and_a_closing_broker_fails_the_request() {
    let (_d, path) = fake(|_| vec![]);
    let mut c = Client::connect(&path).await.unwrap();
    c.set_timeout(Duration::from_millis(200));
    assert!(matches!(c.list().await, Err(ClientError::Timeout(_))));
    let (_d2, path2) = fake(|_| vec!["CLOSE".to_string()]);
    let c = Client::connect(&path2).await.unwrap();
    assert!(matches!(c.status().await, Err(ClientError::Closed)));
}
