//! What the hole log and the metrics add to each lease event, in process:
//! building the OCSF record, appending it to `holes.jsonl` (rotation on, at
//! its default size), the structured trace line (to a formatting subscriber
//! writing to a sink, as the daemon's goes to stderr or journald), and the
//! metrics a renewal feeds (its latency, the MOD call's time and memory).
//! The same event with none of it is the baseline (zero).
//!
//! Compare with what an event costs anyway: 787 µs of CPU per renewal and
//! ~20 ms per map (`--bench daemon`, `--bench cli`).
//!
//! `cargo bench -p p2pbroker --bench holes` prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pbroker::audit::{AuditSink, CallSummary, NullSink};
use p2pbroker::daemon::holelog::{self, Activity, Hole, HoleLog, ModeRef, Who};
use p2pbroker::daemon::metrics::{MeteredSink, Metrics};

const EVENTS: usize = 20_000;

fn hole(i: usize) -> Hole {
    Hole {
        time_ms: 1_764_000_000_000 + i as u64,
        activity: Activity::Renewed,
        who: Who {
            uid: 1000,
            pid: Some(4242),
            process: Some("transmission-da".into()),
            lan: None,
        },
        transport: "udp".into(),
        internal: "192.168.1.20:51413".parse().unwrap(),
        external: Some("203.0.113.7:51413".parse().unwrap()),
        lifetime: Some(3600),
        lease: Some(i as u64),
        mode: Some(ModeRef {
            name: "upnp-igd".into(),
            sha256: "ab".repeat(32),
            signers: vec!["security-team".into()],
        }),
        policy_serial: Some(17),
        why: None,
    }
}

/// Median time per event of `f`, in batches of 100.
fn per_event(mut f: impl FnMut(usize)) -> Duration {
    let mut batches = Vec::new();
    for b in 0..EVENTS / 100 {
        let t = Instant::now();
        for i in 0..100 {
            f(b * 100 + i);
        }
        batches.push(t.elapsed() / 100);
    }
    batches.sort();
    batches[batches.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = HoleLog::open(
        dir.path(),
        holelog::DEFAULT_MAX_BYTES,
        holelog::DEFAULT_KEEP,
    )
    .unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let metrics = Arc::new(Metrics::new());
    let sink = MeteredSink {
        inner: Arc::new(NullSink),
        metrics: metrics.clone(),
    };
    let holes: Vec<Hole> = (0..EVENTS).map(hole).collect();

    let record = per_event(|i| {
        std::hint::black_box(holelog::record(&holes[i]));
    });
    let write = per_event(|i| log.write(&holelog::record(&holes[i])).unwrap());
    let trace = per_event(|i| holelog::trace(&holes[i]));
    let metered = per_event(|i| {
        metrics.renewed("upnp-igd", Duration::from_micros(900 + i as u64 % 100));
        sink.call(&CallSummary {
            mode: "upnp-igd".into(),
            op: "renew",
            elapsed: Duration::from_micros(800),
            memory_peak: 1 << 20,
            denials: 0,
            failed: None,
        });
    });
    let all = us(write) + us(trace) + us(metered);
    println!(
        "| per lease event (median of {} batches of 100) | time | share of a renewal's 787 µs CPU | share of a ~20 ms map |",
        EVENTS / 100
    );
    println!("|---|---|---|---|");
    for (what, t) in [
        ("building the OCSF record", us(record)),
        ("record + append to holes.jsonl", us(write)),
        ("the structured trace line (journald fields)", us(trace)),
        (
            "metrics fed by a renewal (latency, call time, memory peak)",
            us(metered),
        ),
        ("all of it", all),
    ] {
        println!(
            "| {what} | {t:.2} µs | {:.2} % | {:.3} % |",
            t / 787.0 * 100.0,
            t / 20_000.0 * 100.0
        );
    }
}
