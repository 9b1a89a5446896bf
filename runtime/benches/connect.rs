//! Outbound tunnels in the corporate lab (root): time to the far end's
//! first byte through each proxy, as whole processes run pair by pair from
//! the lab host — `p2pb mode run http-connect|socks5 handshake --read-ms`
//! (process start, compiled-code cache load, the broker's connection to the
//! proxy, the MOD's handshake, then the greeting) against curl doing the
//! same through the same proxy (`curl --proxytunnel --proxy http://…` and
//! `curl --proxy socks5://…`, `telnet://` to the same peer).
//!
//! Through the daemon too: `p2pb connect --via MOD PEER` as a whole
//! process against a running broker (what an operator runs: the MOD is
//! loaded once, at the daemon's start), and `Client::connect` in this
//! process (what an application pays per connection), each to the
//! greeting.
//!
//! `cargo bench -p p2pbroker --bench connect` prints a Markdown table.

#[path = "../../tests/daemon/mod.rs"]
mod daemon;
#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::io::Read;

use std::time::{Duration, Instant};

use lab::PUB_IP;
use lab::corp::*;

/// Pairs per proxy.
const N: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Run `args` in the host namespace; its time, and whether the greeting
/// came back.
fn timed(lab: &CorpLab, args: &[&str]) -> (Duration, bool) {
    let t = Instant::now();
    let out = lab.exec(CorpNs::Host, args);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    (took, text.contains("hello-from-peer"))
}

/// The daemon's policy: both proxies, the public network through them.
fn policy() -> String {
    format!(
        "version = 1\norder = []\n\
         [[services.proxies]]\nmode = \"http-connect\"\naddress = \"{EDGE_IP}:{HTTP_PROXY_PORT}\"\n\
         [[services.proxies]]\nmode = \"socks5\"\naddress = \"{EDGE_IP}:{SOCKS_PORT}\"\n\
         username = \"{SOCKS_USER}\"\npassword = \"{SOCKS_PASSWORD}\"\n\
         [[connect]]\nto = [\"198.51.100.0/24\"]\n\
         [modes.http-connect]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n\
         [modes.socks5]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n"
    )
}

/// `Client::connect` in this process, to the greeting.
fn in_process(
    rt: &tokio::runtime::Runtime,
    client: &p2pbroker_client::Client,
    via: &str,
) -> (Duration, bool) {
    let t = Instant::now();
    let mut p = p2pbroker_client::ConnectParams::new(PUB_IP, PEER_TCP_PORT);
    p.via = Some(via.into());
    let Ok(mut o) = rt.block_on(client.connect_with(p)) else {
        return (t.elapsed(), false);
    };
    let mut got = [0u8; 64];
    let n = o.stream.read(&mut got).unwrap_or(0);
    (t.elapsed(), got[..n].starts_with(b"hello-from-peer"))
}

fn main() {
    let lab = CorpLab::up();
    let modes = daemon::modes_folder(
        &lab.path("bench-modes"),
        &["modes/http-connect", "modes/socks5"],
    );
    let d = daemon::Daemon::start_with(
        &lab.ns(CorpNs::Host),
        &lab.path(""),
        "bench",
        &policy(),
        &modes,
        &[],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(p2pbroker_client::Client::open(&d.socket))
        .unwrap();
    let socket = d.socket.to_str().unwrap().to_string();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap().to_string();
    let p2pb = harness::p2pb();
    let peer = format!("{PUB_IP}:{PEER_TCP_PORT}");
    let telnet = format!("telnet://{peer}");
    let http_proxy = format!("proxy={EDGE_IP}:{HTTP_PROXY_PORT}");
    let socks_proxy = format!("proxy={EDGE_IP}:{SOCKS_PORT}");
    let (user, password) = (
        format!("username={SOCKS_USER}"),
        format!("password={SOCKS_PASSWORD}"),
    );
    let curl_http = format!("http://{EDGE_IP}:{HTTP_PROXY_PORT}");
    let curl_socks = format!("socks5://{SOCKS_USER}:{SOCKS_PASSWORD}@{EDGE_IP}:{SOCKS_PORT}");
    let http = harness::component_path("modes/http-connect");
    let socks = harness::component_path("modes/socks5");
    let ours = |component: &std::path::Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            p2pb,
            "mode",
            "run",
            "--json",
            "--cache-dir",
            &cache,
            "--grant",
            "tcp:connect@proxy:1-65535",
            "--read-ms",
            "2000",
            "--to",
            &peer,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push(component.to_str().unwrap().to_string());
        v.push("handshake".into());
        v
    };
    let connect = |via: &str| -> Vec<String> {
        [
            p2pb, "--socket", &socket, "connect", "-q", "--via", via, &peer,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let rows = [
        (
            "HTTP CONNECT (tinyproxy)",
            "http-connect",
            ours(&http, &["--config", &http_proxy]),
            vec![
                "curl",
                "-s",
                "--max-time",
                "5",
                "--proxytunnel",
                "--proxy",
                &curl_http,
                &telnet,
            ],
        ),
        (
            "SOCKS5 (Dante, user/password)",
            "socks5",
            ours(
                &socks,
                &[
                    "--config",
                    &socks_proxy,
                    "--config",
                    &user,
                    "--config",
                    &password,
                ],
            ),
            vec![
                "curl",
                "-s",
                "--max-time",
                "5",
                "--proxy",
                &curl_socks,
                &telnet,
            ],
        ),
    ];
    println!(
        "| proxy | `p2pb mode run … handshake` | `p2pb connect` (daemon) | `Client::connect` | curl | run / curl | connect / curl | greetings |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, via, ours, curl) in rows {
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        let curl: Vec<&str> = curl.iter().map(|s| s.as_ref()).collect();
        let connect = connect(via);
        let connect: Vec<&str> = connect.iter().map(String::as_str).collect();
        timed(&lab, &ours); // fills the compiled-code cache
        let (mut a, mut c, mut inp, mut b, mut ok) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..N {
            for (runs, (t, got)) in [
                (&mut a, timed(&lab, &ours)),
                (&mut c, timed(&lab, &connect)),
                (&mut inp, in_process(&rt, &client, via)),
                (&mut b, timed(&lab, &curl)),
            ] {
                runs.push(t);
                ok += usize::from(got);
            }
        }
        let (a, c, inp, b) = (median(a), median(c), median(inp), median(b));
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× | {:.2}× | {ok} of {} |",
            ms(a),
            ms(c),
            ms(inp),
            ms(b),
            ms(a) / ms(b),
            ms(c) / ms(b),
            4 * N
        );
    }
}
