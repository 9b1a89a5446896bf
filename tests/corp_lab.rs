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
