//! Relay fallback behind the corporate edge, which forwards nothing: the
//! broker reaches coturn only through the edge's HTTP proxy (tinyproxy),
//! the way browsers reach TURN from such networks. The policy routes the
//! relay `via` the http-connect MOD (its CONNECT handshake in its own
//! sandbox), over TCP or over TLS on 443 with a pinned certificate; a UDP
//! application on the host then answers a permitted public peer through
//! the relay.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use daemon::{Daemon, modes_folder};
use lab::corp::*;
use lab::turn::TURN_TLS_PORT;
use lab::{PUB_ALT_IP, PUB_IP, TURN_PASSWORD, TURN_USER};

/// A policy whose only relay is `url` (with `extra` lines), routed `via`.
fn policy(url: &str, extra: &str, via: &str) -> String {
    format!(
        "version = 1\norder = [\"turn-relay\"]\n\
         [[services.proxies]]\nmode = \"http-connect\"\naddress = \"{EDGE_IP}:{HTTP_PROXY_AUTH_PORT}\"\n\
         username = \"{PROXY_USER}\"\npassword = \"{PROXY_PASSWORD}\"\n\
         [[services.turn]]\nurl = \"{url}\"\nusername = \"{TURN_USER}\"\n\
         credential = \"{TURN_PASSWORD}\"\nvia = [{via}]\n{extra}\n\
         [modes.turn-relay]\ngrants = [\"udp:send,receive@turn:1-65535\", \"tcp:connect@turn:1-65535\"]\n\
         [modes.http-connect]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n"
    )
}

fn start(lab: &CorpLab, name: &str, policy: &str) -> Daemon {
    let modes = modes_folder(
        &lab.path(&format!("{name}-modes")),
        &["modes/turn-relay", "modes/http-connect"],
    );
    Daemon::start_with(
        &lab.ns(CorpNs::Host),
        &lab.path(""),
        name,
        policy,
        &modes,
        &[],
    )
}

/// From the public peer at `from`, send to `to`; what comes back within
/// 3 s (`None`: nothing).
fn exchange(lab: &CorpLab, from: &str, to: SocketAddr) -> Option<(String, SocketAddr)> {
    let from: SocketAddr = from.parse().unwrap();
    lab.in_ns(CorpNs::Pub, move || {
        let s = UdpSocket::bind(from).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"hi", to).unwrap();
        let mut buf = [0u8; 256];
        let (n, src) = s.recv_from(&mut buf).ok()?;
        Some((String::from_utf8_lossy(&buf[..n]).into_owned(), src))
    })
}

/// Map UDP `port` through the relay, permit a peer, exchange with it,
/// unmap: coturn holds nothing after.
fn relayed_through_the_proxy(lab: &mut CorpLab, p: &str, port: u16, leg: &str) {
    let d = start(lab, &format!("relay-{port}"), p);
    lab.listen_udp(port, 120);
    let lease = d.map_relayed(port);
    assert_eq!(lease["relay"]["leg"], leg, "{lease}");
    let relayed: SocketAddr = lease["external"].as_str().unwrap().parse().unwrap();
    assert_eq!(relayed.ip().to_string(), PUB_IP, "{lease}");
    assert_eq!(lab.relay_allocations(), vec![relayed.port()]);
    // tinyproxy carried the relay's connection (its log names it).
    assert!(
        lab.log("tinyproxy-3129")
            .contains(&format!("CONNECT {PUB_IP}:")),
        "{}",
        lab.log("tinyproxy-3129")
    );

    let peer = format!("{PUB_ALT_IP}:6100");
    assert_eq!(exchange(lab, &peer, relayed), None, "not yet permitted");
    let id = lease["id"].to_string();
    d.json(&["permit", &id, &peer, "--json"]);
    let (answer, from) = exchange(lab, &peer, relayed).expect("the application answers");
    assert_eq!(answer, "hello-from-host");
    assert_eq!(from, relayed);

    d.json(&["unmap", &id, "--json"]);
    assert_eq!(exchange(lab, &peer, relayed), None, "released");
    assert_eq!(
        lab.relay_allocations(),
        Vec::<u16>::new(),
        "deleted on coturn"
    );
}

#[test]
fn over_tcp_through_the_http_proxy_when_the_edge_forwards_nothing() {
    let mut lab = CorpLab::up();
    let url = format!("turn:{PUB_IP}:3478?transport=tcp");
    let p = policy(&url, "", "\"http-connect\"");
    relayed_through_the_proxy(&mut lab, &p, 7060, "tcp via http-connect");
}

#[test]
fn over_tls_on_443_through_the_http_proxy_with_a_pinned_certificate() {
    let mut lab = CorpLab::up();
    let url = format!("turns:{PUB_IP}:{TURN_TLS_PORT}");
    let pin = format!("tls_pin = \"{}\"", lab.turn_cert().sha256);
    let p = policy(&url, &pin, "\"http-connect\"");
    relayed_through_the_proxy(&mut lab, &p, 7061, "tls via http-connect");
}

/// Direct is tried first and cannot pass the edge; the proxy then
/// carries the relay. With direct alone, the map fails naming the route,
/// within bounded time, and leaves nothing on coturn.
#[test]
fn routes_are_tried_in_order_and_direct_alone_is_a_named_failure() {
    let mut lab = CorpLab::up();
    let url = format!("turn:{PUB_IP}:3478?transport=tcp");
    let d = start(&lab, "direct", &policy(&url, "", "\"direct\""));
    lab.listen_udp(7062, 60);
    let began = std::time::Instant::now();
    let out = d.cli(&["map", "udp", "7062", "--mode", "turn-relay", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("direct"), "names the route: {err}");
    assert!(began.elapsed() < Duration::from_secs(30), "no hang");
    assert_eq!(d.json(&["list", "--json"]).as_array().unwrap().len(), 0);
    assert_eq!(lab.relay_allocations(), Vec::<u16>::new());
    drop(d);

    let both = policy(&url, "", "\"direct\", \"http-connect\"");
    // Direct costs its connect timeout (3 s) of the call's budget first.
    let both = both.replace(
        "[modes.turn-relay]\n",
        "[modes.turn-relay]\nlimits = { timeout_ms = 10000 }\n",
    );
    let d = start(&lab, "both", &both);
    let lease = d.map_relayed(7062);
    assert_eq!(lease["relay"]["leg"], "tcp via http-connect", "{lease}");
}
