//! Lab benchmark (root): mapping latency of the nat-pmp and pcp MODs
//! against Debian's `natpmpc -a`, and of the upnp-igd MOD against
//! `upnpc -i -a` (cold) and `upnpc -u URL -a` (warm) and against igd-next
//! natively making the same calls, in the same NAT lab, same run. On the
//! lab's IPv6 side: the upnp-igd MOD's pinhole against `upnpc -6 -A`, and
//! the pcp MOD's MAP v6.
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

use p2pbroker::netinfo::NetInfo;
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::load::AllowList;
use p2pbroker::sandbox::wit::{MapRequest, Transport};
use p2pbroker::sandbox::{EngineConfig, Op, Output};

const N: usize = 30;
const GRANT: &str = "udp:send,receive@gateway:5351";

/// The grants a component ships with (its MOD's manifest).
fn grants_for(path: &str) -> Vec<String> {
    let rel = if path.contains("upnp") {
        "modes/upnp-igd"
    } else if path.contains("pcp") {
        "modes/pcp"
    } else {
        "modes/nat-pmp"
    };
    harness::manifest_grants(rel)
}

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
            let grants = grants_for(path);
            let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
            let spec = harness::spec(&grants, &[], Limits::default());
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
        for path in components.iter().filter(|p| !p.contains("nat-pmp")) {
            inner_v6(&host, path, &net).await;
        }
    });
    igd_native();
}

/// IPv6 maps in-process, printed as `NAME-v6 LABEL ms`: the upnp-igd MOD
/// cold (SSDP on [ff02::c], description, AddPinhole) and with `location`
/// (description, AddPinhole); the pcp MOD's MAP v6.
async fn inner_v6(host: &p2pbroker::sandbox::ModeHost, path: &str, net: &Arc<NetInfo>) {
    let bytes = std::fs::read(path).unwrap();
    let upnp = path.contains("upnp");
    let location = lab::v6::upnp_url6();
    let variants: Vec<(&str, Vec<(&str, &str)>)> = if upnp {
        vec![
            ("cold", vec![]),
            ("location", vec![("location", &location)]),
        ]
    } else {
        vec![("cold", vec![])]
    };
    for (label, config) in variants {
        let grants = grants_for(path);
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        let spec = harness::spec(&grants, &config, Limits::default());
        let (mode, _) = host
            .load(&bytes, &AllowList::Any, spec, net.clone())
            .await
            .unwrap();
        let mut times = Vec::new();
        for _ in 0..N {
            let req = MapRequest {
                transport: Transport::Tcp,
                internal: "[::]:4760".parse::<std::net::SocketAddr>().unwrap().into(),
                external_port: None,
                lifetime: 600,
                permanent_allowed: false,
                probe_state: vec![],
            };
            let r = mode.call(Op::Map(req)).await;
            assert!(r.result.is_ok(), "{:?}", r.result);
            times.push(r.elapsed);
        }
        println!("{}-v6 {label} {:.3}", mode.name(), ms(median(times)));
    }
}

/// igd-next natively, the same calls as the upnp-igd MOD's map: cold
/// (search, external address, add) and warm (add, with the gateway and
/// external address already known from discovery).
fn igd_native() {
    use igd_next::{PortMappingProtocol, SearchOptions, search_gateway};
    let local: std::net::SocketAddr = "10.0.0.2:4750".parse().unwrap();
    let opts = || {
        let mut o = SearchOptions::default();
        o.timeout = Some(Duration::from_secs(2));
        o
    };
    let mut cold = Vec::new();
    for _ in 0..N {
        let start = Instant::now();
        let gw = search_gateway(opts()).expect("igd-next search");
        gw.get_external_ip().expect("igd-next external ip");
        gw.add_port(PortMappingProtocol::TCP, 4750, local, 600, "bench")
            .expect("igd-next add");
        cold.push(start.elapsed());
    }
    let gw = search_gateway(opts()).unwrap();
    let mut warm = Vec::new();
    for _ in 0..N {
        let start = Instant::now();
        gw.add_port(PortMappingProtocol::TCP, 4750, local, 600, "bench")
            .unwrap();
        warm.push(start.elapsed());
    }
    println!("igd-next-native cold {:.3}", ms(median(cold)));
    println!("igd-next-native warm {:.3}", ms(median(warm)));
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
    let upnp = harness::component_path("modes/upnp-igd");
    let lab = lab::Lab::up_dual_stack(lab::GatewayOptions::default());
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
    let url = lab.upnp_url();
    let upnpc_cold = time_process(
        &lab,
        &[
            "upnpc",
            "-i",
            "-a",
            lab::HOST_IP,
            "5500",
            "5500",
            "TCP",
            "600",
        ],
    );
    let upnpc_warm = time_process(
        &lab,
        &[
            "upnpc",
            "-u",
            &url,
            "-a",
            lab::HOST_IP,
            "5500",
            "5500",
            "TCP",
            "600",
        ],
    );

    // The same pinhole each time (AddPinhole refreshes an identical one),
    // as the MOD's rows below do.
    let host6 = lab::v6::HOST_IP6;
    let pinhole = ["-A", "empty", "0", host6, "4760", "TCP", "600"];
    let upnpc6_cold = time_process(&lab, &[&["upnpc", "-6", "-i"][..], &pinhole].concat());
    let url6 = lab::v6::upnp_url6();
    let upnpc6_warm = time_process(
        &lab,
        &[&["upnpc", "-6", "-u", &url6][..], &pinhole].concat(),
    );

    let exe = std::env::current_exe().unwrap();
    let (p, c, u) = (
        pmp.to_str().unwrap(),
        pcp.to_str().unwrap(),
        upnp.to_str().unwrap(),
    );
    let out = lab.exec(lab::Ns::Host, &[exe.to_str().unwrap(), "--inner", p, c, u]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inner = String::from_utf8_lossy(&out.stdout).to_string();

    let p2pb = harness::p2pb();
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
    let figure = |name: &str, label: &str| -> f64 {
        inner
            .lines()
            .find(|l| l.starts_with(&format!("{name} {label} ")))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    for name in ["nat-pmp", "pcp"] {
        for label in ["cold", "warm"] {
            let v = figure(name, label);
            println!(
                "| {name} MOD `map`, in-process, {label} | {v:.2} ms | {:.2}× |",
                v / base
            );
        }
    }
    for (name, d) in per_process {
        println!(
            "| `p2pb mode run {name}.wasm map` (process, cached code, cold map) | {:.2} ms | {:.2}× |",
            ms(d),
            ms(d) / base
        );
    }
    let (uc, uw) = (ms(upnpc_cold), ms(upnpc_warm));
    let (mc, mw) = (figure("upnp-igd", "cold"), figure("upnp-igd", "warm"));
    let (nc, nw) = (
        figure("igd-next-native", "cold"),
        figure("igd-next-native", "warm"),
    );
    println!("\n| UPnP | median | ratio |");
    println!("|---|---|---|");
    println!("| `upnpc -i -a` (process; discovery + add) | {uc:.2} ms | 1.00× |");
    println!(
        "| upnp-igd MOD `map`, in-process, cold (SSDP + description + external IP + add) | {mc:.2} ms | {:.3}× `upnpc -i -a` |",
        mc / uc
    );
    println!("| `upnpc -u URL -a` (process; description + add) | {uw:.2} ms | 1.00× |");
    println!(
        "| upnp-igd MOD `map`, in-process, warm (add; gateway and address from the probe) | {mw:.2} ms | {:.2}× `upnpc -u` |",
        mw / uw
    );
    println!(
        "| igd-next native, cold (search + external IP + add) | {nc:.2} ms | MOD/native {:.2}× |",
        mc / nc
    );
    println!(
        "| igd-next native, warm (add on a known gateway) | {nw:.2} ms | MOD/native {:.2}× |",
        mw / nw
    );
    let (u6c, u6w) = (ms(upnpc6_cold), ms(upnpc6_warm));
    let (m6c, m6w) = (
        figure("upnp-igd-v6", "cold"),
        figure("upnp-igd-v6", "location"),
    );
    let pcp6 = figure("pcp-v6", "cold");
    println!("\n| IPv6 pinholes | median | ratio |");
    println!("|---|---|---|");
    println!("| `upnpc -6 -i -A` (process; discovery + AddPinhole) | {u6c:.2} ms | 1.00× |");
    println!(
        "| upnp-igd MOD `map` v6, in-process (SSDP on [ff02::c] + description + AddPinhole) | {m6c:.2} ms | {:.3}× `upnpc -6 -i -A` |",
        m6c / u6c
    );
    println!("| `upnpc -6 -u URL -A` (process; description + AddPinhole) | {u6w:.2} ms | 1.00× |");
    println!(
        "| upnp-igd MOD `map` v6, in-process, `location` set (description + AddPinhole) | {m6w:.2} ms | {:.2}× `upnpc -6 -u` |",
        m6w / u6w
    );
    println!(
        "| pcp MOD `map` v6, in-process (MAP v6) | {pcp6:.2} ms | {:.2}× pcp MOD `map` v4 cold |",
        pcp6 / figure("pcp", "cold")
    );
}
