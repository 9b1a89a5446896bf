//! Outbound `connect` through the daemon, in the corporate lab: the edge
//! forwards nothing, so the public peer is reached only through tinyproxy
//! or Dante. The policy's `[[connect]]` rule names the routes, the
//! connector MODs perform the handshakes with credentials from
//! `[[services.proxies]]`, and the connected socket is handed to the
//! application, which reads the peer's first bytes itself. Failures name
//! each route's reason, within bounded time; every decision is audited.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use daemon::{Daemon, modes_folder};
use lab::PUB_IP;
use lab::corp::*;
use p2pbroker_client::{Client, ConnectParams, ErrorCode};

const CONNECTORS: &[&str] = &["modes/http-connect", "modes/socks5"];

/// A policy whose proxies are `http` (address, user, password) and
/// `socks`, and whose `[[connect]]` rules are `rules`.
fn policy(http: (&str, &str, &str), socks: (&str, &str, &str), rules: &str) -> String {
    let creds = |(addr, user, pw): (&str, &str, &str)| {
        let mut s = format!("address = \"{addr}\"\n");
        if !user.is_empty() {
            s.push_str(&format!("username = \"{user}\"\npassword = \"{pw}\"\n"));
        }
        s
    };
    format!(
        "version = 1\norder = []\n\
         [[services.proxies]]\nmode = \"http-connect\"\n{}\
         [[services.proxies]]\nmode = \"socks5\"\n{}\
         {rules}\n\
         [modes.http-connect]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n\
         [modes.socks5]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n",
        creds(http),
        creds(socks)
    )
}

fn http_ok() -> (&'static str, &'static str, &'static str) {
    ("172.16.0.1:3129", PROXY_USER, PROXY_PASSWORD)
}

fn socks_ok() -> (&'static str, &'static str, &'static str) {
    ("172.16.0.1:1080", SOCKS_USER, SOCKS_PASSWORD)
}

/// The public network through the proxies; anything else nowhere.
const TO_PUBLIC: &str = "[[connect]]\nto = [\"198.51.100.0/24\"]\n";

fn start(lab: &CorpLab, name: &str, policy: &str) -> Daemon {
    let modes = modes_folder(&lab.path(&format!("{name}-modes")), CONNECTORS);
    Daemon::start_with(
        &lab.ns(CorpNs::Host),
        &lab.path(""),
        name,
        policy,
        &modes,
        &[],
    )
}

fn peer() -> String {
    format!("{PUB_IP}:{PEER_TCP_PORT}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn connect_reaches_the_peer_through_each_proxy_and_hands_the_socket_over() {
    let lab = CorpLab::up();
    let d = start(&lab, "both", &policy(http_ok(), socks_ok(), TO_PUBLIC));

    // `p2pb connect` as an operator would: the peer's greeting on stdout,
    // the route on stderr.
    for via in ["http-connect", "socks5"] {
        let out = d.cli(&["connect", "--via", via, &peer()]);
        assert!(out.status.success(), "{via}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hello-from-peer\n", "{via}");
        let said = text(&out.stderr);
        assert!(
            said.contains(&format!("via {via} through 172.16.0.1:")),
            "{said}"
        );
    }
    // Both directions: an HTTP request piped in, the peer's answer out, by
    // the rule's first route (http-connect).
    let script = format!(
        "printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | {} --socket {} connect {PUB_IP}:{PEER_HTTP_PORT}",
        harness::p2pb(),
        d.socket.display()
    );
    let out = lab.exec(CorpNs::Host, &["sh", "-c", &script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer = text(&out.stdout);
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with("hello-over-http\n"), "{answer}");
    assert!(
        text(&out.stderr).contains("via http-connect"),
        "{}",
        text(&out.stderr)
    );

    // The client library, from this process: the socket arrives over the
    // Unix socket and belongs to the application alone.
    runtime().block_on(async {
        let c = Client::open(&d.socket).await.unwrap();
        let mut o = c.connect(PUB_IP, PEER_TCP_PORT).await.unwrap();
        assert_eq!(o.connection.via, "http-connect");
        assert_eq!(o.connection.proxy.as_deref(), Some("172.16.0.1:3129"));
        assert_eq!(o.stream.peer_addr().unwrap().to_string(), "172.16.0.1:3129");
        let mut got = String::new();
        o.stream.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello-from-peer\n");

        let mut p = ConnectParams::new(PUB_IP, PEER_HTTP_PORT);
        p.via = Some("socks5".into());
        let s = c.connect_with(p).await.unwrap().into_tokio().unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = s.into_split();
        wr.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        assert!(text(&got).ends_with("hello-over-http\n"), "{}", text(&got));
    });

    // Every decision is in the audit log: the MOD's gate decision on its
    // proxy and the broker's connect decision with its rule and route.
    let audit = std::fs::read_to_string(d.state.join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains(r#""event":"connect""#)
            && l.contains(r#""verdict":"allow""#)
            && l.contains(r#""via":"socks5""#)
            && l.contains(r#""rule":0"#)),
        "{audit}"
    );
    assert!(audit.contains(r#""address":"172.16.0.1:1080""#), "{audit}");
}

#[test]
fn a_refusing_proxy_falls_back_and_when_every_route_fails_each_says_why() {
    let lab = CorpLab::up();
    // Wrong proxy password: http-connect is refused, socks5 opens it.
    let d = start(
        &lab,
        "fallback",
        &policy(
            ("172.16.0.1:3129", PROXY_USER, "wrong"),
            socks_ok(),
            TO_PUBLIC,
        ),
    );
    let out = d.cli(&["connect", &peer()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello-from-peer\n");
    let said = text(&out.stderr);
    assert!(said.contains("via socks5"), "{said}");
    assert!(said.contains("http-connect failed first"), "{said}");
    drop(d);

    // Both routes blocked, each its own way: a 407 (credentials missing),
    // and a SOCKS5 server that refuses the password.
    let mut lab = lab;
    let d = start(
        &lab,
        "blocked",
        &policy(
            ("172.16.0.1:3129", "", ""),
            ("172.16.0.1:1080", SOCKS_USER, "wrong"),
            TO_PUBLIC,
        ),
    );
    let started = Instant::now();
    let err = runtime().block_on(async {
        let c = Client::open(&d.socket).await.unwrap();
        c.connect(PUB_IP, PEER_TCP_PORT).await.unwrap_err()
    });
    let p2pbroker_client::ClientError::Api(e) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(e.code, ErrorCode::Unreachable, "{e:?}");
    assert_eq!(e.reasons.len(), 2, "{e:?}");
    assert_eq!(e.reasons[0].mode, "http-connect");
    assert!(e.reasons[0].reason.contains("407"), "{e:?}");
    assert_eq!(e.reasons[1].mode, "socks5");
    assert!(
        e.reasons[1].reason.to_lowercase().contains("credentials"),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "bounded by the budget"
    );
    // The CLI says the same and fails.
    let out = d.cli(&["connect", &peer()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no route reached"),
        "{}",
        text(&out.stderr)
    );
    drop(d);

    // Proxies that answer garbage or close at once: specific reasons, no
    // hang.
    lab.fake_proxy(3130, "garbage");
    lab.fake_proxy(3131, "close");
    let d = start(
        &lab,
        "broken",
        &policy(
            ("172.16.0.1:3130", "", ""),
            ("172.16.0.1:3131", "", ""),
            TO_PUBLIC,
        ),
    );
    let out = d.cli(&["connect", &peer()]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("http-connect"), "{said}");
    assert!(said.contains("socks5"), "{said}");
    assert!(!said.contains("hello-from-peer"), "{said}");
}

#[test]
fn connect_goes_only_where_a_rule_allows_by_the_routes_it_names() {
    let lab = CorpLab::up();
    let rules =
        "[[connect]]\nto = [\"198.51.100.1\"]\nports = \"7000\"\nvia = [\"direct\", \"socks5\"]\n";
    let d = start(&lab, "rules", &policy(http_ok(), socks_ok(), rules));

    // Another port, another host: no rule, refused before anything is sent.
    for to in [
        format!("{PUB_IP}:{PEER_HTTP_PORT}"),
        "198.51.100.3:7000".to_string(),
    ] {
        let out = d.cli(&["connect", &to]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("no [[connect]] rule"),
            "{}",
            text(&out.stderr)
        );
    }
    // A route the rule does not name, even forced.
    let out = d.cli(&["connect", "--via", "http-connect", &peer()]);
    assert!(
        text(&out.stderr).contains("does not route via `http-connect`"),
        "{}",
        text(&out.stderr)
    );

    // Direct first: the edge drops it, so after the direct attempt's
    // timeout the SOCKS route opens it, and says what failed first.
    let out = d.cli(&["connect", &peer()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello-from-peer\n");
    let said = text(&out.stderr);
    assert!(said.contains("via socks5"), "{said}");
    assert!(said.contains("direct failed first"), "{said}");

    // The refusals are audited too.
    let audit = std::fs::read_to_string(d.state.join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains(r#""event":"connect""#)
            && l.contains(r#""verdict":"deny""#)
            && l.contains(r#""port":8080"#)),
        "{audit}"
    );
    // A socket handed over is the application's: writing to it reaches
    // the peer (the greeter closes after its hello, so a write after the
    // read may fail; the read is what proves the data path).
    runtime().block_on(async {
        let c = Client::open(&d.socket).await.unwrap();
        let mut p = ConnectParams::new(PUB_IP, PEER_TCP_PORT);
        p.via = Some("socks5".into());
        let mut o = c.connect_with(p).await.unwrap();
        let _ = o.stream.write_all(b"hi\n");
        let mut got = String::new();
        o.stream.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello-from-peer\n");
    });
}
