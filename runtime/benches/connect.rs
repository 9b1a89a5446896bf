//! Outbound tunnels in the corporate lab (root): time to the far end's
//! first byte through each proxy, as whole processes run pair by pair from
//! the lab host — `p2pb mode run http-connect|socks5 handshake --read-ms`
//! (process start, compiled-code cache load, the broker's connection to the
//! proxy, the MOD's handshake, then the greeting) against curl doing the
//! same through the same proxy (`curl --proxytunnel --proxy http://…` and
//! `curl --proxy socks5://…`, `telnet://` to the same peer).
//!
//! `cargo bench -p p2pbroker --bench connect` prints a Markdown table.

#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

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

fn main() {
    let lab = CorpLab::up();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap().to_string();
    let p2pb = env!("CARGO_BIN_EXE_p2pb");
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
    let rows = [
        (
            "HTTP CONNECT (tinyproxy)",
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
    println!("| proxy | `p2pb mode run … handshake` | curl | ours / curl | greetings |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, ours, curl) in rows {
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        let curl: Vec<&str> = curl.iter().map(|s| s.as_ref()).collect();
        timed(&lab, &ours); // fills the compiled-code cache
        let (mut a, mut b, mut ok) = (Vec::new(), Vec::new(), 0);
        for _ in 0..N {
            let (t, got) = timed(&lab, &ours);
            a.push(t);
            ok += usize::from(got);
            let (t, got) = timed(&lab, &curl);
            b.push(t);
            ok += usize::from(got);
        }
        let (a, b) = (median(a), median(b));
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.2}× | {ok} of {} |",
            ms(a),
            ms(b),
            ms(a) / ms(b),
            2 * N
        );
    }
}
