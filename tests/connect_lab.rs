//! Outbound tunnels in the corporate lab: the http-connect MOD performs
//! the CONNECT handshake with the real tinyproxy on a connection the broker
//! opened (`p2pb mode run … handshake`), and the far end's first bytes —
//! sent the moment the tunnel opens, possibly in the same segment as the
//! proxy's answer — are still in the socket afterwards: the MOD read
//! nothing past the answer. Refusals (407, 401, an unreachable
//! destination, a proxy that is not there or not granted) are specific.
//! The same for the socks5 MOD against the real Dante.

#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use lab::PUB_IP;
use lab::corp::*;
use serde_json::Value;

const HTTP_CONNECT: &str = "modes/http-connect";
const SOCKS5: &str = "modes/socks5";

/// `p2pb mode run http-connect handshake --to TO` from the host.
fn handshake(lab: &CorpLab, proxy_port: u16, to: &str, extra: &[&str]) -> Value {
    handshake_with(HTTP_CONNECT, lab, proxy_port, to, extra)
}

/// `p2pb mode run MOD handshake --to TO` from the host.
fn handshake_with(rel: &str, lab: &CorpLab, proxy_port: u16, to: &str, extra: &[&str]) -> Value {
    let component = harness::component_path(rel);
    let proxy = format!("proxy={EDGE_IP}:{proxy_port}");
    let mut args = vec![
        harness::p2pb(),
        "mode",
        "run",
        "--json",
        "--grant",
        "tcp:connect@proxy:1-65535",
        "--config",
        &proxy,
        "--read-ms",
        "2000",
        "--to",
        to,
    ];
    args.extend_from_slice(extra);
    args.push(component.to_str().unwrap());
    args.push("handshake");
    let out = lab.exec(CorpNs::Host, &args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "p2pb printed no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn peer() -> String {
    format!("{PUB_IP}:{PEER_TCP_PORT}")
}

#[test]
fn a_tunnel_through_tinyproxy_reaches_the_peer_and_keeps_its_first_bytes() {
    let lab = CorpLab::up();
    let v = handshake(&lab, HTTP_PROXY_PORT, &peer(), &[]);
    assert_eq!(v["ok"], true, "{v}");
    // The peer greets as soon as it accepts: those bytes were not eaten
    // (shown escaped, as any text from outside).
    assert_eq!(v["result"]["received"], "hello-from-peer\\u{a}", "{v}");

    // With Basic auth: credentials open it, none or wrong ones are refused.
    let creds = [
        "--config",
        &format!("username={PROXY_USER}"),
        "--config",
        &format!("password={PROXY_PASSWORD}"),
    ]
    .map(String::from);
    let creds: Vec<&str> = creds.iter().map(String::as_str).collect();
    let v = handshake(&lab, HTTP_PROXY_AUTH_PORT, &peer(), &creds);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["result"]["received"], "hello-from-peer\\u{a}", "{v}");
    let v = handshake(&lab, HTTP_PROXY_AUTH_PORT, &peer(), &[]);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["mode_error"], "denied", "{v}");
    assert!(v.to_string().contains("407"), "{v}");
    let wrong = [
        "--config",
        &format!("username={PROXY_USER}"),
        "--config",
        "password=nope",
    ]
    .map(String::from);
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let v = handshake(&lab, HTTP_PROXY_AUTH_PORT, &peer(), &wrong);
    assert_eq!(v["error"]["mode_error"], "denied", "{v}");
    assert!(v.to_string().contains("401"), "tinyproxy's answer: {v}");
}

#[test]
fn unreachable_destinations_absent_and_ungranted_proxies_are_specific() {
    let lab = CorpLab::up();
    // Nothing listens there: tinyproxy cannot connect.
    let v = handshake(&lab, HTTP_PROXY_PORT, &format!("{PUB_IP}:1"), &[]);
    assert_eq!(v["ok"], false, "{v}");
    let text = v.to_string();
    assert!(text.contains("the proxy"), "{v}");
    // No proxy on that port: the broker's own connection is refused.
    let v = handshake(&lab, 3999, &peer(), &[]);
    assert_eq!(v["error"]["kind"], "tunnel", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect to the proxy")
    );
    // A destination that would break the request line never leaves.
    let v = handshake(&lab, HTTP_PROXY_PORT, "evil\r\nX-Injected: 1:80", &[]);
    assert_eq!(v["ok"], false, "{v}");
}

#[test]
fn a_proxy_that_answers_garbage_closes_or_stays_silent_is_a_specific_error() {
    let mut lab = CorpLab::up();
    for (port, behaviour) in [(3130, "garbage"), (3131, "close"), (3132, "silent")] {
        lab.fake_proxy(port, behaviour);
    }
    let v = handshake(&lab, 3130, &peer(), &[]);
    assert_eq!(v["error"]["mode_error"], "protocol", "{v}");
    assert!(v.to_string().contains("not HTTP"), "{v}");
    let v = handshake(&lab, 3131, &peer(), &[]);
    assert_eq!(v["error"]["mode_error"], "unavailable", "{v}");
    assert!(v.to_string().contains("closed the connection"), "{v}");
    let started = std::time::Instant::now();
    let v = handshake(&lab, 3132, &peer(), &["--config", "timeout_ms=1000"]);
    assert_eq!(v["error"]["mode_error"], "timeout", "{v}");
    // Bounded by the handshake's own budget, not the call's.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_tunnel_through_dante_needs_the_right_credentials_and_keeps_the_first_bytes() {
    let lab = CorpLab::up();
    let creds = |password: &str| {
        vec![
            "--config".to_string(),
            format!("username={SOCKS_USER}"),
            "--config".to_string(),
            format!("password={password}"),
        ]
    };
    let good = creds(SOCKS_PASSWORD);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let v = handshake_with(SOCKS5, &lab, SOCKS_PORT, &peer(), &good);
    assert_eq!(v["ok"], true, "{v}\n{}", lab.log("danted"));
    assert_eq!(v["result"]["received"], "hello-from-peer\\u{a}", "{v}");

    // Dante offers username/password only: without credentials no method fits.
    let v = handshake_with(SOCKS5, &lab, SOCKS_PORT, &peer(), &[]);
    assert_eq!(v["error"]["mode_error"], "denied", "{v}");
    assert!(v.to_string().contains("requires authentication"), "{v}");
    let bad = creds("nope");
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let v = handshake_with(SOCKS5, &lab, SOCKS_PORT, &peer(), &bad);
    assert_eq!(v["error"]["mode_error"], "denied", "{v}");
    assert!(v.to_string().contains("refused the credentials"), "{v}");

    // A closed port behind the proxy: Dante's reply code, in RFC 1928's words.
    let v = handshake_with(SOCKS5, &lab, SOCKS_PORT, &format!("{PUB_IP}:1"), &good);
    assert_eq!(v["error"]["mode_error"], "unavailable", "{v}");
    assert!(v.to_string().contains("cannot reach"), "{v}");
}

#[test]
fn a_socks_proxy_that_answers_http_or_closes_is_a_specific_error() {
    let mut lab = CorpLab::up();
    lab.fake_proxy(3133, "garbage");
    lab.fake_proxy(3134, "close");
    let v = handshake_with(SOCKS5, &lab, 3133, &peer(), &[]);
    assert_eq!(v["error"]["mode_error"], "protocol", "{v}");
    assert!(v.to_string().contains("not SOCKS5"), "{v}");
    let v = handshake_with(SOCKS5, &lab, 3134, &peer(), &[]);
    assert_eq!(v["error"]["mode_error"], "unavailable", "{v}");
    assert!(v.to_string().contains("closed the connection"), "{v}");
}
