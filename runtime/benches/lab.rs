//! Lab benchmark (root): mapping latency of the nat-pmp and pcp MODs
//! against Debian's `natpmpc -a`, in the same NAT lab, same run.
//!
//! Two views of our side: in-process (the broker's own cost of one `map`
//! call: fresh sandbox, exchanges with the gateway), cold (no probe state:
//! discovery plus mapping) and warm (probe state given); and per process
//! (`p2pb mode run … map`, like `natpmpc`, including process start and
//! loading the compiled MOD from the cache). The binary re-runs itself
//! inside the host namespace (`--inner`) for the in-process figures.
//!
//! `cargo bench -p p2pbroker --bench lab` prints a Markdown table.

#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pbroker::bindings::{MapRequest, Transport};
use p2pbroker::host::{EngineConfig, Op, Output};
use p2pbroker::limits::Limits;
use p2pbroker::loader::AllowList;
use p2pbroker::netinfo::NetInfo;

const N: usize = 30;
const GRANT: &str = "udp:send,receive@gateway:5351";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inner") {
        inner(&args[i + 1..]);
        return;
    }
    outer();
}

/// In the host namespace: time `map` calls in-process, print `name ms`.
fn inner(components: &[String]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (host, _) = harness::host_with(EngineConfig {
            concurrent_calls: 4,
            ..Default::default()
        });
        let net = Arc::new(NetInfo::read());
        for path in components {
            let bytes = std::fs::read(path).unwrap();
            let spec = harness::spec(&[GRANT], &[], Limits::default());
            let (mode, _) = host
                .load(&bytes, &AllowList::Any, spec, net.clone())
                .await
                .unwrap();
            let Ok(Output::Probe(probe)) = mode.call(Op::Probe).await.result else {
                panic!("probe failed")
            };
            for (label, state) in [("cold", vec![]), ("warm", probe.state.clone())] {
                let mut times = Vec::new();
                for _ in 0..N {
                    let req = MapRequest {
                        transport: Transport::Tcp,
                        internal: "10.0.0.2:4700"
                            .parse::<std::net::SocketAddr>()
                            .unwrap()
                            .into(),
                        external_port: None,
                        lifetime: 600,
                        permanent_allowed: false,
                        probe_state: state.clone(),
                    };
                    let r = mode.call(Op::Map(req)).await;
                    assert!(r.result.is_ok(), "{:?}", r.result);
                    times.push(r.elapsed);
                }
                println!("{} {label} {:.3}", mode.name(), ms(median(times)));
            }
        }
    });
}

fn time_process(lab: &lab::Lab, args: &[&str]) -> Duration {
    let mut times = Vec::new();
    for _ in 0..N {
        let start = Instant::now();
        let out = lab.exec(lab::Ns::Host, args);
        times.push(start.elapsed());
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    median(times)
}

fn outer() {
    let pmp = harness::component_path("modes/nat-pmp");
    let pcp = harness::component_path("modes/pcp");
    let lab = lab::Lab::up(lab::GatewayOptions::default());
    let natpmpc = time_process(
        &lab,
        &[
            "natpmpc",
            "-g",
            lab::GW_LAN_IP,
            "-a",
            "4800",
            "4800",
            "tcp",
            "600",
        ],
    );
    let netns_floor = time_process(&lab, &["true"]);

    let exe = std::env::current_exe().unwrap();
    let (p, c) = (pmp.to_str().unwrap(), pcp.to_str().unwrap());
    let out = lab.exec(lab::Ns::Host, &[exe.to_str().unwrap(), "--inner", p, c]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inner = String::from_utf8_lossy(&out.stdout).to_string();

    let p2pb = env!("CARGO_BIN_EXE_p2pb");
    let cache = lab.path("cache");
    let cache = cache.to_str().unwrap();
    let mut per_process = Vec::new();
    for (name, path) in [("nat-pmp", p), ("pcp", c)] {
        let args = [
            "mode",
            "run",
            "--cache-dir",
            cache,
            "--grant",
            GRANT,
            path,
            "map",
            "--transport",
            "tcp",
            "--internal",
            "10.0.0.2:4900",
        ];
        let mut full = vec![p2pb];
        full.extend_from_slice(&args);
        lab.exec(lab::Ns::Host, &full); // fill the compiled-code cache
        per_process.push((name, time_process(&lab, &full)));
    }

    let base = ms(natpmpc);
    println!(
        "Machine: {} cores; {} samples each; medians. `ip netns exec true` costs {:.2} ms in every process figure.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        N,
        ms(netns_floor)
    );
    println!("| what | median | ratio to `natpmpc -a` |");
    println!("|---|---|---|");
    println!("| `natpmpc -g GW -a 4800 4800 tcp 600` (process) | {base:.2} ms | 1.00× |");
    for line in inner.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let v: f64 = f[2].parse().unwrap();
        println!(
            "| {} MOD `map`, in-process, {} | {v:.2} ms | {:.2}× |",
            f[0],
            f[1],
            v / base
        );
    }
    for (name, d) in per_process {
        println!(
            "| `p2pb mode run {name}.wasm map` (process, cached code, cold map) | {:.2} ms | {:.2}× |",
            ms(d),
            ms(d) / base
        );
    }
}
