//! Host benchmark: cold compile, cached load, instantiate, minimal call, and
//! a UDP round trip through the capability gate on loopback, side by side
//! with the same round trip done natively.
//!
//! `cargo bench -p p2pbroker --bench host` prints a Markdown table of
//! medians (and p90) for BENCHMARKS.md. Build with `--release` semantics
//! (cargo bench does).

#[path = "../../tests/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pbroker::bench;
use p2pbroker::netinfo::NetInfo;
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::load::AllowList;
use p2pbroker::sandbox::{EngineConfig, ModeSpec, Op, Output};

struct Row {
    what: &'static str,
    samples: Vec<Duration>,
    target: &'static str,
}

fn quantile(s: &mut [Duration], q: f64) -> Duration {
    s.sort();
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.2} µs")
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(run());
    println!("| measurement | median | p90 | samples | target |");
    println!("|---|---|---|---|---|");
    for mut r in rows {
        let n = r.samples.len();
        let med = quantile(&mut r.samples, 0.5);
        let p90 = quantile(&mut r.samples, 0.9);
        println!(
            "| {} | {} | {} | {n} | {} |",
            r.what,
            fmt(med),
            fmt(p90),
            r.target
        );
    }
}

async fn run() -> Vec<Row> {
    let direct = harness::component("modes/direct");
    let echo = harness::component("tests/guests/echo");
    let tmp = tempfile::tempdir().unwrap();
    let (host, _) = harness::host_with(EngineConfig {
        concurrent_calls: 16,
        cache_dir: Some(tmp.path().join("cache")),
        ..Default::default()
    });
    let (nocache, _) = harness::host();
    let mut rows = Vec::new();

    let cold = (0..15)
        .map(|_| timed(|| nocache.compile(&direct, &AllowList::Any).unwrap()))
        .collect();
    rows.push(Row {
        what: "cold compile (direct MOD, Cranelift)",
        samples: cold,
        target: "—",
    });

    host.compile(&direct, &AllowList::Any).unwrap();
    let cached = (0..300)
        .map(|_| timed(|| host.compile(&direct, &AllowList::Any).unwrap()))
        .collect();
    rows.push(Row {
        what: "cached load (sha256 + HMAC check + deserialize)",
        samples: cached,
        target: "≤ 1 ms",
    });

    let net = Arc::new(NetInfo::default());
    let (mode, _) = host
        .load(&direct, &AllowList::Any, ModeSpec::default(), net.clone())
        .await
        .unwrap();
    let mut inst = Vec::new();
    for _ in 0..2000 {
        inst.push(bench::instantiate(&mode).await);
    }
    rows.push(Row {
        what: "instantiate (pooling, from InstancePre)",
        samples: inst,
        target: "≤ 20 µs",
    });

    let mut calls = Vec::new();
    for _ in 0..200 {
        calls.push(bench::info_calls(&mode, 100).await);
    }
    rows.push(Row {
        what: "info() call on a live instance",
        samples: calls,
        target: "≤ 1 µs",
    });

    let mut whole = Vec::new();
    for _ in 0..1000 {
        whole.push(mode.call(Op::Info).await.elapsed);
    }
    rows.push(Row {
        what: "whole lifecycle call: store + WASI ctx + instantiate + info",
        samples: whole,
        target: "—",
    });

    let (peer, _) = harness::udp_peer_bounded(false, 4000).await;
    let grant = format!("udp:send,receive@{peer}");
    let spec = harness::spec(
        &[&grant],
        &[("target", &peer.to_string())],
        Limits::default(),
    );
    let (echo_mode, _) = host.load(&echo, &AllowList::Any, spec, net).await.unwrap();
    let mut sandboxed = Vec::new();
    for _ in 0..1000 {
        let r = echo_mode.call(Op::Probe).await;
        assert!(matches!(r.result, Ok(Output::Probe(_))), "{:?}", r.result);
        sandboxed.push(r.elapsed);
    }
    rows.push(Row {
        what: "UDP round trip via gate, whole probe call (sandboxed)",
        samples: sandboxed,
        target: "—",
    });
    let mut native = Vec::new();
    for _ in 0..1000 {
        let start = Instant::now();
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(b"ping", peer).await.unwrap();
        let mut buf = [0u8; 64];
        s.recv_from(&mut buf).await.unwrap();
        native.push(start.elapsed());
    }
    rows.push(Row {
        what: "UDP round trip, native tokio (bind + send + recv)",
        samples: native,
        target: "—",
    });
    rows
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}
