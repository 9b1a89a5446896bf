//! Broken, hostile and slow IGD replies (config `location`), and the error
//! kind each gives: only "there is no IGD" is `unavailable` (the broker
//! then leaves the MOD out for the probe TTL); an IGD that answered but is
//! slow is `timeout`, one that answers garbage is `protocol`. URLs off the
//! default gateway are never contacted.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pbroker::sandbox::error::CallError;
use p2pbroker::sandbox::{Op, Output};

use crate::harness::igd::{Answer, Script, fake_igd, fake_igd_counting, soap_ok};
use crate::{DESC, config, harness, igd, load, mode, request};

/// A probe against an IGD whose description is `desc`, then answering
/// like [`igd`].
async fn probe_with_description(desc: Answer) -> Result<Output, CallError> {
    let (host, _) = harness::host();
    let desc = Arc::new(Mutex::new(Some(desc)));
    let normal = igd(|_| soap_ok("AddPortMapping", ""));
    let script: Script = Arc::new(
        move |path, action, body| match desc.lock().unwrap().take() {
            Some(d) => d,
            None => normal(path, action, body),
        },
    );
    let (addr, _) = fake_igd(script).await;
    mode(&host, addr).await.call(Op::Probe).await.result
}

/// The kind (`protocol`, ...) of a failed call and its reason.
fn kind(r: &Result<Output, CallError>) -> (&'static str, String) {
    let e = harness::mode_error(r);
    (p2pbroker::json::mode_error_kind(e), format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn entity_expansion_is_refused() {
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><root>&c;</root>"#;
    let r = probe_with_description(Answer::Ok(laughs.into())).await;
    let (k, why) = kind(&r);
    assert_eq!(k, "protocol", "{why}");
    assert!(why.contains("malformed XML"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_body_is_cut_off() {
    // Announced: refused before any of it is read.
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 200_000));
    let (k, why) = kind(&probe_with_description(Answer::Raw(huge)).await);
    assert_eq!(k, "protocol", "{why}");
    assert!(
        why.contains("Content-Length 10000000 is larger than 65536"),
        "{why}"
    );
    // Unannounced (close-delimited): cut at 64 KiB.
    let mut huge = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 200_000));
    let (k, why) = kind(&probe_with_description(Answer::Raw(huge)).await);
    assert_eq!(k, "protocol", "{why}");
    assert!(why.contains("larger than 65536"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_or_silent_igd_is_a_timeout_not_unavailable() {
    let body = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{DESC}",
        DESC.len()
    )
    .into_bytes();
    let started = std::time::Instant::now();
    for answer in [Answer::Drip(body), Answer::Hang] {
        let (k, why) = kind(&probe_with_description(answer).await);
        assert_eq!(k, "timeout", "{why}");
        assert!(why.contains("timed out"), "{why}");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbled_replies_are_protocol_errors() {
    for (raw, want) in [
        (
            &b"\x00\x01 not http at all\r\n\r\n"[..],
            "malformed response head",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: +9\r\n\r\n",
            "bad Content-Length",
        ),
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "HTTP 404",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<root",
            "malformed XML",
        ),
    ] {
        let (k, why) = kind(&probe_with_description(Answer::Raw(raw.to_vec())).await);
        assert_eq!(k, "protocol", "{why}");
        assert!(why.contains(want), "{want}: {why}");
    }
}

/// The security review's reproducer, 80 bytes: a chunk size whose `+ 2`
/// overflowed the 32-bit guest's `usize` and trapped it.
#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_size_near_usize_max_is_an_error_not_a_trap() {
    for size in ["ffffffff", "fffffffe", "ffffffffffffffff"] {
        let mut raw =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n").into_bytes();
        raw.resize(80, b'x');
        let r = probe_with_description(Answer::Raw(raw)).await;
        let (k, why) = kind(&r);
        assert_eq!(k, "protocol", "{size}: {why}");
        assert!(
            why.contains("chunk size") && why.contains("is larger than"),
            "{why}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_igd_without_a_wan_service_is_unavailable() {
    let printer = r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:PrintBasic:1</serviceType><controlURL>/p</controlURL></service>
</serviceList></device></root>"#;
    let (k, why) = kind(&probe_with_description(Answer::Ok(printer.into())).await);
    assert_eq!(k, "unavailable", "{why}");
    assert!(
        why.contains("no WANIPConnection or WANPPPConnection"),
        "{why}"
    );
}

/// Head and body in separate writes, 300 ms apart, the body ending when
/// the IGD closes (HTTP/1.0, or HTTP/1.1 without a length): read whole.
#[tokio::test(flavor = "multi_thread")]
async fn close_delimited_replies_are_read_until_close() {
    for version in ["HTTP/1.0 200 OK", "HTTP/1.1 200 OK\r\nConnection: close"] {
        let split = move |body: String| {
            Answer::Split(
                format!("{version}\r\nContent-Type: text/xml\r\n\r\n").into_bytes(),
                body.into_bytes(),
            )
        };
        let (host, _) = harness::host();
        let script: Script = Arc::new(move |path, action, _| match (path, action) {
            ("/desc.xml", _) => split(DESC.to_string()),
            (_, "GetExternalIPAddress") => split(ok_envelope(
                action,
                "<NewExternalIPAddress>203.0.113.9</NewExternalIPAddress>",
            )),
            (_, "AddPortMapping") => split(ok_envelope(action, "")),
            _ => Answer::Fault(401),
        });
        let (addr, seen) = fake_igd(script).await;
        let m = mode(&host, addr).await;
        let r = m.call(Op::Probe).await;
        let Ok(Output::Probe(p)) = &r.result else {
            panic!("{version}: {:?}", r.result)
        };
        assert!(p.detail.contains("203.0.113.9"), "{}", p.detail);
        let r = m.call(Op::Map(request(false))).await;
        assert!(matches!(r.result, Ok(Output::Mapping(_))), "{:?}", r.result);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "/desc.xml ",
                "/ctl GetExternalIPAddress",
                "/desc.xml ",
                "/ctl GetExternalIPAddress",
                "/ctl AddPortMapping"
            ]
        );
    }
}

fn ok_envelope(action: &str, args: &str) -> String {
    match soap_ok(action, args) {
        Answer::Ok(body) => body,
        _ => unreachable!("soap_ok gives Answer::Ok"),
    }
}

/// Grants wide enough to reach every loopback address: only the MOD's
/// own checks keep it from the hosts below.
fn wide_grants() -> Vec<String> {
    vec!["tcp:connect@127.0.0.0/8:1-65535".into()]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_location_off_the_default_gateway_is_never_fetched() {
    let (host, _) = harness::host();
    let (other, _, accepted) = fake_igd_counting("127.0.0.2:0", igd(|_| Answer::Fault(501))).await;
    let location = format!("http://{other}/desc.xml");
    let gateway = "127.0.0.1".parse().unwrap();
    let m = load(
        &host,
        &wide_grants(),
        &config(&[("location", &location)]),
        gateway,
    )
    .await;
    let r = m.call(Op::Probe).await;
    let (k, why) = kind(&r.result);
    assert_eq!(k, "denied", "{why}");
    assert!(why.contains("not on a default gateway"), "{why}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "never contacted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_url_on_another_host_is_never_contacted() {
    let (host, _) = harness::host();
    let (other, _, accepted) = fake_igd_counting("127.0.0.2:0", igd(|_| Answer::Fault(501))).await;
    let desc = DESC.replace(
        "<controlURL>/ctl<",
        &format!("<controlURL>http://{other}/ctl<"),
    );
    let script: Script = Arc::new(move |_, _, _| Answer::Ok(desc.clone()));
    let (addr, _) = fake_igd(script).await;
    let location = format!("http://{addr}/desc.xml");
    let m = load(
        &host,
        &wide_grants(),
        &config(&[("location", &location)]),
        addr.ip(),
    )
    .await;
    let (k, why) = kind(&m.call(Op::Probe).await.result);
    assert_eq!(k, "protocol", "{why}");
    assert!(why.contains("is not on the device that served"), "{why}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "never contacted");
}

/// A mapping made through the gateway at 127.0.0.1, renewed and removed
/// after the host moved to a network whose gateway is 127.0.0.5: the old
/// gateway is not contacted (renew: `mapping-lost`, unmap: `denied`), and a
/// probe state naming it is ignored for the new gateway's.
#[tokio::test(flavor = "multi_thread")]
async fn states_naming_a_former_gateway_are_not_contacted() {
    let (host, _) = harness::host();
    let (addr, seen) = fake_igd(igd(|_| soap_ok("AddPortMapping", ""))).await;
    let first = mode(&host, addr).await;
    let Ok(Output::Probe(probe)) = first.call(Op::Probe).await.result else {
        panic!("probe")
    };
    let Ok(Output::Mapping(mapping)) = first.call(Op::Map(request(false))).await.result else {
        panic!("map")
    };
    let before = seen.lock().unwrap().len();
    let (new_gw, new_seen, _) =
        fake_igd_counting("127.0.0.5:0", igd(|_| soap_ok("AddPortMapping", ""))).await;
    let moved = mode(&host, new_gw).await;
    let r = moved.call(Op::Renew(mapping.clone(), 600)).await;
    let (k, why) = kind(&r.result);
    assert_eq!(k, "mapping-lost", "{why}");
    assert!(why.contains("not on a default gateway"), "{why}");
    let (k, why) = kind(&moved.call(Op::Unmap(mapping)).await.result);
    assert_eq!(k, "denied", "{why}");
    let warm = p2pbroker::sandbox::wit::MapRequest {
        probe_state: probe.state,
        ..request(false)
    };
    let r = moved.call(Op::Map(warm)).await;
    let Ok(Output::Mapping(m)) = &r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!(std::net::SocketAddr::from(m.external).port(), 4000);
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "the old gateway heard nothing"
    );
    assert_eq!(
        *new_seen.lock().unwrap(),
        [
            "/desc.xml ",
            "/ctl GetExternalIPAddress",
            "/ctl AddPortMapping"
        ]
    );
}

/// Reasons quote what the gateway sent: a 5000-byte control URL elsewhere
/// gives a `protocol` error that quotes it cut short, well within the
/// contract's 1 KiB (the MOD also clips every reason to it), not a
/// contract breach.
#[tokio::test(flavor = "multi_thread")]
async fn reasons_quoting_huge_gateway_text_stay_within_the_contract() {
    let (host, _) = harness::host();
    let far = format!("http://127.0.0.2:1/{}", "a".repeat(5000));
    let desc = DESC.replace("<controlURL>/ctl<", &format!("<controlURL>{far}<"));
    let script: Script = Arc::new(move |_, _, _| Answer::Ok(desc.clone()));
    let (addr, _) = fake_igd(script).await;
    let r = mode(&host, addr).await.call(Op::Probe).await.result;
    let (k, why) = kind(&r);
    assert_eq!(k, "protocol", "{why}");
    let reason = p2pbroker::sandbox::error::mode_error_message(harness::mode_error(&r));
    assert!(reason.len() <= 400, "{} bytes: {reason}", reason.len());
    assert!(reason.contains("aaa… is not on the device"), "{reason}");
}
