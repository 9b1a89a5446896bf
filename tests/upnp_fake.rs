//! The upnp-igd MOD against scripted fake IGDs (HTTP servers on loopback):
//! 718 and 725, hostile XML, huge bodies and a slow drip. Each ends in its
//! specific typed error, bounded in time; no hang, no crash.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pbroker::bindings::{MapRequest, ModeError, Transport};
use p2pbroker::error::CallError;
use p2pbroker::host::{Mode, ModeHost, Op, Output};
use p2pbroker::limits::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DESC: &str = r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl</controlURL></service>
</serviceList></device></root>"#;

/// What the fake does with one request (path, SOAP action, body).
enum Answer {
    /// A 200 with this body.
    Ok(String),
    /// A 500 UPnPError with this code.
    Fault(u16),
    /// Raw bytes, sent one byte every 100 ms.
    Drip(Vec<u8>),
    /// Raw bytes at once.
    Raw(Vec<u8>),
}

type Script = Arc<dyn Fn(&str, &str, &str) -> Answer + Send + Sync>;

fn soap_ok(action: &str, args: &str) -> Answer {
    Answer::Ok(format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:{action}Response xmlns:u="x">{args}</u:{action}Response></s:Body></s:Envelope>"#
    ))
}

/// A fake IGD: answers up to 64 connections within 30 s.
async fn fake_igd(script: Script) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
            else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head and, for POSTs, the body (bounded).
            while buf.len() < 65536 {
                let Ok(n) = s.read(&mut chunk).await else {
                    break;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            let action = text
                .lines()
                .find_map(|l| l.strip_prefix("SOAPAction: "))
                .and_then(|v| v.trim_matches('"').split('#').nth(1).map(str::to_string))
                .unwrap_or_default();
            log.lock().unwrap().push(format!("{path} {action}"));
            let body = text
                .split_once("\r\n\r\n")
                .map(|x| x.1.to_string())
                .unwrap_or_default();
            let (bytes, drip) = match script(&path, &action, &body) {
                Answer::Ok(b) => (
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                        .into_bytes(),
                    false,
                ),
                Answer::Fault(code) => {
                    let b = format!(
                        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><detail><UPnPError><errorCode>{code}</errorCode><errorDescription>e</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>"#
                    );
                    (
                        format!(
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{b}",
                            b.len()
                        )
                        .into_bytes(),
                        false,
                    )
                }
                Answer::Drip(b) => (b, true),
                Answer::Raw(b) => (b, false),
            };
            tokio::spawn(async move {
                if drip {
                    for byte in bytes {
                        if s.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } else {
                    let _ = s.write_all(&bytes).await;
                }
            });
        }
    });
    (addr, seen)
}

/// A well-behaved IGD whose AddPortMapping answers come from `add`.
fn igd(add: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Script {
    Arc::new(move |path, action, body| match (path, action) {
        ("/desc.xml", _) => Answer::Ok(DESC.into()),
        (_, "GetExternalIPAddress") => soap_ok(
            action,
            "<NewExternalIPAddress>203.0.113.9</NewExternalIPAddress>",
        ),
        (_, "AddPortMapping") => add(body),
        (_, "DeletePortMapping") => soap_ok(action, ""),
        _ => Answer::Fault(401),
    })
}

async fn mode(host: &ModeHost, igd: SocketAddr) -> Mode {
    let grant = format!("tcp:connect@{igd}");
    let location = format!("http://{igd}/desc.xml");
    let spec = harness::spec(
        &[&grant],
        &[
            ("location", &location),
            ("timeout_ms", "1500"),
            ("probe_timeout_ms", "1500"),
        ],
        Limits::default(),
    );
    harness::load(host, "modes/upnp-igd", spec).await
}

fn request(permanent_allowed: bool) -> MapRequest {
    MapRequest {
        transport: Transport::Tcp,
        internal: "127.0.0.1:4000".parse::<SocketAddr>().unwrap().into(),
        external_port: None,
        lifetime: 600,
        permanent_allowed,
        probe_state: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conflict_718_moves_to_another_port_never_zero() {
    let (host, _) = harness::host();
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let (addr, seen) = fake_igd(igd(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n <= 2 {
            Answer::Fault(718)
        } else {
            soap_ok("AddPortMapping", "")
        }
    }))
    .await;
    let r = mode(&host, addr).await.call(Op::Map(request(false))).await;
    let Ok(Output::Mapping(m)) = r.result else {
        panic!("{:?}", r.result)
    };
    let ext = SocketAddr::from(m.external);
    assert!(ext.port() >= 1024 && ext.port() != 4000, "{ext}");
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("AddPortMapping"))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_only_725_needs_the_policy_and_then_gets_lease_zero() {
    let (host, _) = harness::host();
    let script = || {
        igd(|body| {
            if body.contains("<NewLeaseDuration>0<") {
                soap_ok("AddPortMapping", "")
            } else {
                Answer::Fault(725)
            }
        })
    };
    let (addr, _) = fake_igd(script()).await;
    let m = mode(&host, addr).await;
    let r = m.call(Op::Map(request(false))).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Unsupported(s) if s.contains("725")),
        "{:?}",
        r.result
    );
    let r = m.call(Op::Map(request(true))).await;
    let Ok(Output::Mapping(mapping)) = r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!(
        mapping.lifetime, 0,
        "a permanent lease is reported as such, for the journal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_upnp_errors() {
    let (host, _) = harness::host();
    for (code, want) in [
        (606u16, "denied"),
        (501, "unavailable"),
        (402, "invalid-request"),
    ] {
        let (addr, _) = fake_igd(igd(move |_| Answer::Fault(code))).await;
        let r = mode(&host, addr).await.call(Op::Map(request(false))).await;
        assert_eq!(
            p2pbroker::json::mode_error_kind(harness::mode_error(&r.result)),
            want,
            "{code}: {:?}",
            r.result
        );
    }
}

async fn probe_with_description(desc: Answer) -> Result<Output, CallError> {
    let (host, _) = harness::host();
    let desc = Arc::new(Mutex::new(Some(desc)));
    let script: Script =
        Arc::new(move |_, _, _| desc.lock().unwrap().take().unwrap_or(Answer::Fault(401)));
    let (addr, _) = fake_igd(script).await;
    mode(&host, addr).await.call(Op::Probe).await.result
}

#[tokio::test(flavor = "multi_thread")]
async fn entity_expansion_is_refused() {
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><root>&c;</root>"#;
    let r = probe_with_description(Answer::Ok(laughs.into())).await;
    assert!(
        matches!(harness::mode_error(&r), ModeError::Unavailable(m) if m.contains("malformed XML")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_body_is_cut_off() {
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 200_000));
    let r = probe_with_description(Answer::Raw(huge)).await;
    assert!(
        matches!(harness::mode_error(&r), ModeError::Unavailable(m) if m.contains("larger than")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_drip_ends_at_the_deadline() {
    let body = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{DESC}",
        DESC.len()
    )
    .into_bytes();
    let started = std::time::Instant::now();
    let r = probe_with_description(Answer::Drip(body)).await;
    assert!(
        matches!(harness::mode_error(&r), ModeError::Unavailable(m) if m.contains("timed out")),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_http_is_a_clear_error() {
    let r = probe_with_description(Answer::Raw(b"\x00\x01 not http at all\r\n\r\n".to_vec())).await;
    assert!(
        matches!(harness::mode_error(&r), ModeError::Unavailable(m) if m.contains("malformed response head")),
        "{r:?}"
    );
}
