//! The corporate lab itself (tests/lab/corp.rs): the edge lets nothing
//! through but its proxies, and the proxies behave as the corporate MODs
//! will meet them — tinyproxy open and with Basic auth (407 without
//! credentials), Dante with a user and password — checked with curl, the
//! reference client.

#[path = "lab/mod.rs"]
mod lab;

use lab::corp::*;
use lab::{PUB_IP, TCP_CLIENT};

fn peer_url() -> String {
    format!("http://{PUB_IP}:{PEER_HTTP_PORT}/hello.txt")
}

#[test]
fn the_edge_forwards_nothing_the_proxies_do_and_ask_for_credentials() {
    let lab = CorpLab::up();

    // Direct: TCP to the peer goes nowhere (dropped, so curl times out).
    let (code, _, rc) = lab.curl(&["--max-time", "2", &peer_url()]);
    assert_eq!((code, rc), (0, 28), "direct HTTP must not get out");
    let out = lab.exec(
        CorpNs::Host,
        &[
            "python3",
            "-c",
            TCP_CLIENT,
            PUB_IP,
            &PEER_TCP_PORT.to_string(),
        ],
    );
    assert!(out.stdout.is_empty(), "direct TCP must not get out");

    // The open HTTP proxy: plain HTTP and CONNECT.
    let open = format!("http://{EDGE_IP}:{HTTP_PROXY_PORT}");
    let (code, body, _) = lab.curl(&["--proxy", &open, &peer_url()]);
    assert_eq!((code, body.as_str()), (200, "hello-over-http\n"));
    let (code, body, _) = lab.curl(&["--proxytunnel", "--proxy", &open, &peer_url()]);
    assert_eq!((code, body.as_str()), (200, "hello-over-http\n"), "CONNECT");

    // Basic auth: 407 without credentials.
    let auth = format!("http://{EDGE_IP}:{HTTP_PROXY_AUTH_PORT}");
    let (code, _, _) = lab.curl(&["--proxytunnel", "--proxy", &auth, &peer_url()]);
    assert_eq!(code, 407, "CONNECT without credentials");
    let wrong = format!("{PROXY_USER}:nope");
    let (code, _, _) = lab.curl(&[
        "--proxytunnel",
        "--proxy",
        &auth,
        "--proxy-user",
        &wrong,
        &peer_url(),
    ]);
    // tinyproxy 1.11 answers wrong credentials with 401, not 407: the
    // http-connect MOD must read both as refused credentials.
    assert_eq!(code, 401, "wrong password");
    let right = format!("{PROXY_USER}:{PROXY_PASSWORD}");
    let (code, body, _) = lab.curl(&[
        "--proxytunnel",
        "--proxy",
        &auth,
        "--proxy-user",
        &right,
        &peer_url(),
    ]);
    assert_eq!((code, body.as_str()), (200, "hello-over-http\n"));

    // SOCKS5 with username/password (RFC 1929).
    let socks = format!("socks5://{SOCKS_USER}:{SOCKS_PASSWORD}@{EDGE_IP}:{SOCKS_PORT}");
    let (code, body, _) = lab.curl(&["--proxy", &socks, &peer_url()]);
    assert_eq!(
        (code, body.as_str()),
        (200, "hello-over-http\n"),
        "{}",
        lab.log("danted")
    );
    let bad = format!("socks5://{SOCKS_USER}:nope@{EDGE_IP}:{SOCKS_PORT}");
    let (code, _, rc) = lab.curl(&["--proxy", &bad, &peer_url()]);
    assert_eq!(code, 0);
    assert_eq!(rc, 97, "curl: proxy handshake failed (authentication)");
    let none = format!("socks5://{EDGE_IP}:{SOCKS_PORT}");
    let (code, _, rc) = lab.curl(&["--proxy", &none, &peer_url()]);
    assert_eq!((code, rc), (0, 97), "no credentials: no acceptable method");
}

#[test]
fn udp_does_not_leave_either_so_stun_gets_no_answer() {
    let lab = CorpLab::up();
    let out = lab.exec(
        CorpNs::Host,
        &["timeout", "20", "turnutils_natdiscovery", "-m", PUB_IP],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Mapping!"),
        "no STUN answer expected: {text}"
    );
}

/// Poll revision `n` until its state is not `from` (at most 10 s).
fn revision_leaves(lab: &CorpLab, api: &lab::fwapi::FwApi, n: u64, from: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, v) = lab.api(
            api,
            "GET",
            &format!("/api/v1/revisions/{n}"),
            None,
            API_TOKEN,
        );
        let state = v["state"].as_str().unwrap_or("?").to_string();
        if state != from || std::time::Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

use lab::fwapi::{API_TOKEN, FwApiOptions};
use serde_json::json;

#[test]
fn the_firewall_api_validates_applies_reverts_unless_confirmed_and_programs_the_edge() {
    let mut lab = CorpLab::up();
    let api = lab.firewall_api(FwApiOptions::default());
    lab.serve_on_host(7001, 120);
    let outside = format!("{EDGE_WAN_IP}:40000");
    assert_eq!(
        lab.read_from_outside(&outside),
        "",
        "nothing is forwarded yet"
    );

    // The token is checked before anything else.
    let (code, v) = lab.api(&api, "GET", "/api/v1/nat/dnat", None, "wrong");
    assert_eq!(code, 401, "{v}");
    // Validation names each bad field.
    let bad = json!({"name": "p2p", "protocol": "sctp", "external_port": 0, "target": "10.1.0.300", "colour": "red"});
    let (code, v) = lab.api(&api, "POST", "/api/v1/nat/dnat", Some(&bad), API_TOKEN);
    assert_eq!(code, 422, "{v}");
    for field in [
        "protocol",
        "external_port",
        "target",
        "target_port",
        "colour",
    ] {
        assert!(v["fields"][field].is_string(), "{field}: {v}");
    }
    assert!(v["fields"]["name"].is_null(), "{v}");

    // Stage a DNAT and an allow, apply with a 2 s confirmation window.
    let dnat = json!({"name": "p2p-7001", "protocol": "tcp", "external_port": 40000, "target": HOST_IP, "target_port": 7001});
    let allow =
        json!({"name": "p2p-7001", "protocol": "tcp", "destination": HOST_IP, "port": 7001});
    let (code, _) = lab.api(&api, "POST", "/api/v1/nat/dnat", Some(&dnat), API_TOKEN);
    assert_eq!(code, 201);
    let (code, _) = lab.api(
        &api,
        "POST",
        "/api/v1/filter/allow",
        Some(&allow),
        API_TOKEN,
    );
    assert_eq!(code, 201);
    let (code, v) = lab.api(
        &api,
        "POST",
        "/api/v1/apply",
        Some(&json!({"confirm_within_s": 2})),
        API_TOKEN,
    );
    assert_eq!((code, v["state"].as_str()), (202, Some("pending")), "{v}");
    let n = v["revision"].as_u64().unwrap();
    assert_eq!(revision_leaves(&lab, &api, n, "pending"), "applied");
    assert!(
        lab.api_rules().contains("dnat to 10.1.0.2:7001"),
        "{}",
        lab.api_rules()
    );
    assert_eq!(lab.read_from_outside(&outside), "hello-from-host\n");
    // Not confirmed: it reverts by itself, and the edge holds nothing again.
    assert_eq!(revision_leaves(&lab, &api, n, "applied"), "reverted");
    assert!(!lab.api_rules().contains("dnat"), "{}", lab.api_rules());
    assert_eq!(lab.read_from_outside(&outside), "");

    // Applied and confirmed: it stays.
    let (_, v) = lab.api(
        &api,
        "POST",
        "/api/v1/apply",
        Some(&json!({"confirm_within_s": 2})),
        API_TOKEN,
    );
    let n = v["revision"].as_u64().unwrap();
    assert_eq!(revision_leaves(&lab, &api, n, "pending"), "applied");
    let (code, v) = lab.api(
        &api,
        "POST",
        &format!("/api/v1/revisions/{n}/confirm"),
        None,
        API_TOKEN,
    );
    assert_eq!((code, v["state"].as_str()), (200, Some("confirmed")), "{v}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(lab.read_from_outside(&outside), "hello-from-host\n");

    // An API whose applies never finish, and one that is down.
    lab.stop_firewall_api();
    let (code, _) = lab.api(&api, "GET", "/api/v1/nat/dnat", None, API_TOKEN);
    assert_eq!(code, 0, "down: no answer");
    let api = lab.firewall_api(FwApiOptions {
        stuck_apply: true,
        ..Default::default()
    });
    let (_, v) = lab.api(&api, "POST", "/api/v1/apply", None, API_TOKEN);
    let n = v["revision"].as_u64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (_, v) = lab.api(
        &api,
        "GET",
        &format!("/api/v1/revisions/{n}"),
        None,
        API_TOKEN,
    );
    assert_eq!(v["state"], "pending", "{v}");
    // The pin a policy would carry is the certificate's own.
    assert_eq!(api.cert_sha256.len(), 64);
}
