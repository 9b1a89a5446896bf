//! The same MOD in each language `p2pb mode new` writes (the NAT-PMP
//! template), side by side: component size, cold compile, cached load,
//! instantiate, an info() call on a live instance, a whole lifecycle call,
//! and the linear memory a call holds. The Python and JavaScript
//! components carry their interpreters, which is what these figures price.
//!
//! `cargo bench -p p2pbroker --bench langs` prints a Markdown table
//! (Python needs componentize-py, JavaScript componentize-qjs: on PATH, or
//! named by `P2PB_COMPONENTIZE_PY` / `P2PB_COMPONENTIZE_QJS`, as `cargo
//! xtask test` installs them).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pbroker::audit::{AuditEvent, AuditSink, CallSummary, Decision};
use p2pbroker::bench;
use p2pbroker::netinfo::NetInfo;
use p2pbroker::sandbox::load::AllowList;
use p2pbroker::sandbox::{EngineConfig, ModeHost, ModeSpec, Op};

/// Keeps the memory peak of the latest call.
#[derive(Default)]
struct Peak(Mutex<usize>);

impl AuditSink for Peak {
    fn record(&self, _: &Decision) {}
    fn event(&self, _: &AuditEvent) {}
    fn call(&self, s: &CallSummary) {
        *self.0.lock().unwrap() = s.memory_peak;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.2} µs")
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

/// `p2pb mode new` + `p2pb mode build` for `lang`; the component's bytes.
fn build(work: &Path, lang: &str) -> Vec<u8> {
    let p2pbd = env!("CARGO_BIN_EXE_p2pbd");
    let dir = work.join(lang);
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mode-new");
    let run = |args: &[&str]| {
        let out = Command::new(p2pbd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let d = dir.to_str().unwrap();
    run(&[
        "mode",
        "new",
        &format!("bench-{lang}"),
        "--lang",
        lang,
        "--dir",
        d,
    ]);
    let out = run(&[
        "mode",
        "build",
        d,
        "--json",
        "--target-dir",
        target.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    std::fs::read(v["path"].as_str().unwrap()).unwrap()
}

/// One column: (label, figures in row order).
async fn measure(bytes: &[u8], rounds: usize) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let peak = Arc::new(Peak::default());
    let nocache = ModeHost::new(EngineConfig::default(), peak.clone()).unwrap();
    let host = ModeHost::new(
        EngineConfig {
            cache_dir: Some(tmp.path().join("cache")),
            ..Default::default()
        },
        peak.clone(),
    )
    .unwrap();
    let cold = median(
        (0..rounds.clamp(3, 15))
            .map(|_| timed(|| nocache.compile(bytes, &AllowList::Any).unwrap()))
            .collect(),
    );
    host.compile(bytes, &AllowList::Any).unwrap();
    let cached = median(
        (0..rounds * 10)
            .map(|_| timed(|| host.compile(bytes, &AllowList::Any).unwrap()))
            .collect(),
    );
    let (mode, _) = host
        .load(
            bytes,
            &AllowList::Any,
            ModeSpec::default(),
            Arc::new(NetInfo::default()),
        )
        .await
        .unwrap();
    let mut inst = Vec::new();
    for _ in 0..rounds * 20 {
        inst.push(bench::instantiate(&mode).await);
    }
    let mut calls = Vec::new();
    for _ in 0..rounds {
        calls.push(bench::info_calls(&mode, 100).await);
    }
    let mut whole = Vec::new();
    for _ in 0..rounds * 10 {
        let r = mode.call(Op::Info).await;
        assert!(r.result.is_ok(), "{:?}", r.result);
        whole.push(r.elapsed);
    }
    let memory = *peak.0.lock().unwrap();
    vec![
        format!("{:.1} KiB", bytes.len() as f64 / 1024.0),
        fmt(cold),
        fmt(cached),
        fmt(median(inst)),
        fmt(median(calls)),
        fmt(median(whole)),
        format!("{:.1} MiB", memory as f64 / (1024.0 * 1024.0)),
    ]
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let rust = build(work.path(), "rust");
    let python = build(work.path(), "python");
    let js = build(work.path(), "js");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(measure(&rust, 200));
    let p = rt.block_on(measure(&python, 20));
    let j = rt.block_on(measure(&js, 50));
    let rows = [
        "component size",
        "cold compile (Cranelift)",
        "cached load (sha256 + HMAC + deserialize)",
        "instantiate (pooling, from InstancePre)",
        "info() call on a live instance",
        "whole lifecycle call (store, WASI, instantiate, info)",
        "linear memory held by a call (peak)",
    ];
    println!(
        "| the NAT-PMP template (median) | Rust | Python | JavaScript | Python / Rust | JavaScript / Rust |"
    );
    println!("|---|---|---|---|---|---|");
    let ratio = |a: &str, b: &str| {
        let v = |s: &str| {
            let (n, unit) = s.split_once(' ').unwrap();
            let n: f64 = n.parse().unwrap();
            n * match unit {
                "s" => 1e6,
                "ms" => 1e3,
                "MiB" => 1024.0,
                _ => 1.0,
            }
        };
        format!("{:.1}×", v(b) / v(a))
    };
    for (i, what) in rows.iter().enumerate() {
        println!(
            "| {what} | {} | {} | {} | {} | {} |",
            r[i],
            p[i],
            j[i],
            ratio(&r[i], &p[i]),
            ratio(&r[i], &j[i])
        );
    }
}
