//! `p2pb map` as a whole process, what a user or a script runs, against
//! the peer tools a user would otherwise run, in the same lab (real
//! miniupnpd), pair by pair in alternating order:
//!
//! - `p2pb map tcp P --mode nat-pmp --detach` against `natpmpc -g GW -a P P
//!   tcp 600`;
//! - `p2pb map tcp P --mode upnp-igd --detach` against `upnpc -u URL -a
//!   HOST P P tcp`.
//!
//! `p2pb` is the static (musl) build the Debian package ships, built here
//! (`rustup target add x86_64-unknown-linux-musl` first); the dynamic
//! glibc build `cargo build` makes runs in the same rounds, a third arm.
//!
//! The daemon runs as installed (built-in MODs and policy) and is warm
//! (probed once); each process is started from a thread already in the
//! lab's namespace, so neither pays for `ip netns exec`, and without the
//! `LD_LIBRARY_PATH` cargo sets for benches (a user's shell has none).
//! Every mapping is removed after its round, untimed. Each timed command
//! starts [`SETTLE`] after the one before: what a command leaves running
//! (the gateway logging and listing its rules after it answered, the
//! daemon syncing its journal) would otherwise land in the next one's
//! time, whichever tool that is.
//!
//! Where the milliseconds go: process start (`p2pb list` with no broker
//! there, against `natpmpc -h`), a round trip to the daemon (`p2pb list`), and, from the
//! daemon's own metrics (it serves `--metrics`; the counters are fed
//! whether or not they are served), its map time against the MOD call
//! inside it.
//!
//! The gateway's own answers, on the wire: a raw NAT-PMP public-address
//! and map exchange from the host, timed the same way. `natpmpc -a` makes
//! both, our MOD only the map, so the ratio moves with them: the lab's
//! miniupnpd runs in debug mode, logging each step to the console, which
//! on these VMs makes its answers slow and uneven. So the whole bench runs
//! twice: against that gateway (the tests' lab) and against miniupnpd as a
//! router runs it (tests/lab/deployed.rs), each in a lab of its own.
//!
//! `cargo bench -p p2pbroker --bench cli` prints a Markdown table for each
//! gateway (`P2PB_BENCH_GATEWAY=debug` or `deployed`: that one only;
//! `P2PB_BENCH_ROUNDS=N`: N rounds instead of 60). With
//! `P2PB_BENCH_ATTRIBUTE=1` it also scrapes the daemon's metrics around
//! each static nat-pmp map (untimed) and prints, per map, how much of it
//! was outside the daemon's map, and the daemon's map outside its MOD
//! call.

#[path = "../../tests/daemon/mod.rs"]
mod daemon;
#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Rounds unless `P2PB_BENCH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: u16 = 60;
/// The pause before each timed command (see the module docs).
const SETTLE: Duration = Duration::from_millis(20);
const FIRST_PORT: u16 = 21_000;
const METRICS: &str = "127.0.0.1:9464";

fn rounds() -> u16 {
    std::env::var("P2PB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ROUNDS)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Run `args` to completion from the namespace `ns`; its wall time. It
/// must succeed.
fn timed(ns: &str, args: Vec<String>) -> Duration {
    run(ns, args, true)
}

/// [`timed`] for a command whose exit status says nothing (a usage text).
fn timed_any(ns: &str, args: Vec<String>) -> Duration {
    run(ns, args, false)
}

fn run(ns: &str, args: Vec<String>, check: bool) -> Duration {
    std::thread::sleep(SETTLE);
    lab::in_netns(ns, move || {
        let t = Instant::now();
        let out = Command::new(&args[0])
            .args(&args[1..])
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let took = t.elapsed();
        assert!(
            !check || out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The lab's gateways to compare against, in turn: the tests' debug one
/// and one as deployed (tests/lab/deployed.rs says why both), or only the
/// one `P2PB_BENCH_GATEWAY` names (`debug` or `deployed`).
fn gateways() -> Vec<bool> {
    match std::env::var("P2PB_BENCH_GATEWAY").as_deref() {
        Err(_) => vec![false, true],
        Ok("debug") => vec![false],
        Ok("deployed") => vec![true],
        Ok(other) => panic!("P2PB_BENCH_GATEWAY={other:?}: say `debug` or `deployed`"),
    }
}

fn main() {
    for deployed in gateways() {
        let opts = lab::GatewayOptions::default();
        let (lab, kind) = if deployed {
            (
                lab::Lab::up_as_deployed(opts),
                "miniupnpd as deployed (notices only)",
            )
        } else {
            (
                lab::Lab::up(opts),
                "miniupnpd in debug mode, logging each step to the console (the tests' lab)",
            )
        };
        bench(lab, kind);
    }
}

/// The whole comparison against `lab`'s gateway, printed as one table.
fn bench(lab: lab::Lab, gateway_kind: &str) {
    let ns = lab.ns(lab::Ns::Host);
    let extra: &[&str] = &["--metrics", METRICS];
    let dir = lab.path("");
    let d = daemon::Daemon::start_with(
        &ns,
        &dir,
        "bench",
        p2pbroker::policy::DEFAULT_POLICY,
        daemon::modes_dir(),
        extra,
    );
    // The applications whose ports are mapped (proof of ownership).
    let rounds = rounds();
    let ports: Vec<u16> = (0..rounds * 3 + 1).map(|i| FIRST_PORT + i).collect();
    let held = {
        let ports = ports.clone();
        lab::in_netns(&ns, move || {
            ports
                .iter()
                .map(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).unwrap())
                .collect::<Vec<_>>()
        })
    };
    let p2pb = harness::static_p2pb().to_string();
    let dynamic = harness::p2pb();
    let sock = d.socket.to_str().unwrap().to_string();
    let map = |bin: &str, mode: &str, port: u16| {
        let p = port.to_string();
        strings(&[
            bin, "--socket", &sock, "map", "tcp", &p, "--mode", mode, "--detach",
        ])
    };
    let unmap = |port: u16| {
        let p = port.to_string();
        strings(&[&p2pb, "--socket", &sock, "unmap", "tcp", &p])
    };
    // Warm: probed, compiled, the gateway's description fetched.
    timed(&ns, map(&p2pb, "nat-pmp", ports[ports.len() - 1]));
    timed(&ns, unmap(ports[ports.len() - 1]));
    // The daemon's figures below count the timed maps only: the warm-up's
    // probe and compile would dominate a mean of 30.
    let warm = scrape(&lab);
    let url = lab.upnp_url();
    let mut rows = Vec::new();
    let mut pmp = (0.0, 0.0);
    let attribute = std::env::var("P2PB_BENCH_ATTRIBUTE").is_ok();
    let mut attributed: Vec<(f64, f64)> = Vec::new();
    for (mode, peer_name) in [("nat-pmp", "natpmpc -a"), ("upnp-igd", "upnpc -u URL -a")] {
        let (mut ours, mut dyn_ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds {
            let at = |k: u16| ports[(i * 3 + k) as usize];
            let peer_port = at(2).to_string();
            let (peer, peer_undo) = match mode {
                "nat-pmp" => {
                    // Lifetime 0 removes the mapping (RFC 6886 §3.4).
                    let natpmpc = |lifetime: &str| {
                        let p = peer_port.as_str();
                        strings(&["natpmpc", "-g", lab::GW_LAN_IP, "-a", p, p, "tcp", lifetime])
                    };
                    (natpmpc("600"), natpmpc("0"))
                }
                _ => (
                    strings(&[
                        "upnpc",
                        "-u",
                        &url,
                        "-a",
                        lab::HOST_IP,
                        &peer_port,
                        &peer_port,
                        "tcp",
                    ]),
                    strings(&["upnpc", "-u", &url, "-d", &peer_port, "tcp"]),
                ),
            };
            // Each arm goes first, second and third in turn: the gateway
            // answers more slowly with more mappings in place.
            for k in 0..3 {
                match (i + k) % 3 {
                    0 if attribute && mode == "nat-pmp" => {
                        let before = scrape(&lab);
                        let t = timed(&ns, map(&p2pb, mode, at(0)));
                        attributed.push(attribution(&before, &scrape(&lab), ms(t)));
                        ours.push(t);
                    }
                    0 => ours.push(timed(&ns, map(&p2pb, mode, at(0)))),
                    1 => dyn_ours.push(timed(&ns, map(dynamic, mode, at(1)))),
                    _ => theirs.push(timed(&ns, peer.clone())),
                }
            }
            timed(&ns, unmap(at(0)));
            timed(&ns, unmap(at(1)));
            timed(&ns, peer_undo);
        }
        let mean = |v: &[Duration]| v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
        let means = (mean(&ours), mean(&theirs));
        let (a, b, c) = (median(ours), median(theirs), median(dyn_ours));
        if mode == "nat-pmp" {
            pmp = (ms(a), ms(b));
        }
        rows.push(format!(
            "| `p2pb map tcp P --mode {mode} --detach` (process; static p2pb as packaged) | {:.2} ms | `{peer_name}` {:.2} ms | {:.2}× |",
            ms(a),
            ms(b),
            ms(a) / ms(b)
        ));
        rows.push(format!(
            "| the same, means | {:.2} ms | {:.2} ms | {:.2}× |",
            means.0,
            means.1,
            means.0 / means.1
        ));
        rows.push(format!(
            "| the same with the dynamic (glibc) p2pb | {:.2} ms | {:.2} ms | {:.2}× |",
            ms(c),
            ms(b),
            ms(c) / ms(b)
        ));
    }
    drop(held);
    if attribute {
        let pick = |f: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = attributed.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[v.len() * 9 / 10])
        };
        let (out, out90) = pick(|a| a.0);
        let (inside, inside90) = pick(|a| a.1);
        rows.push(format!(
            "| per static nat-pmp map: outside the daemon's map / the daemon's map outside its MOD call (median; p90) | {out:.2} ms; {out90:.2} ms | {inside:.2} ms; {inside90:.2} ms | — |"
        ));
    }
    rows.push(gateway_answers(&ns, rounds));
    rows.extend(breakdown(
        &lab,
        &ns,
        [&p2pb, dynamic],
        &sock,
        &warm,
        pmp,
        rounds,
    ));
    println!("\nGateway: {gateway_kind}.\n");
    println!("| what (median of {rounds}, pairs alternated) | p2pb | peer (process) | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// The daemon's metrics text.
fn scrape(lab: &lab::Lab) -> String {
    let out = lab.exec(
        lab::Ns::Host,
        &["curl", "-s", &format!("http://{METRICS}/metrics")],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A series' value in a metrics text (0 before its first observation).
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|l| l.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// One map's (whole process: `took` ms) attribution from the daemon's
/// metrics before and after it: the time outside the daemon's map, and
/// the daemon's map outside its MOD call.
fn attribution(before: &str, after: &str, took: f64) -> (f64, f64) {
    let grew = |name: &str| (series(after, name) - series(before, name)) * 1e3;
    let map = grew("p2pb_map_duration_seconds_sum{mode=\"nat-pmp\"}");
    let call = grew("p2pb_mod_call_duration_seconds_sum{mode=\"nat-pmp\",op=\"map\"}");
    (took - map, map - call)
}

/// Where a whole `p2pb map`'s time goes. `bins` are the static and the
/// dynamic p2pb; `warm` is the daemon's metrics before the timed rounds;
/// `pmp` the nat-pmp medians (static p2pb, natpmpc).
fn breakdown(
    lab: &lab::Lab,
    ns: &str,
    bins: [&str; 2],
    sock: &str,
    warm: &str,
    pmp: (f64, f64),
    rounds: u16,
) -> Vec<String> {
    let [p2pb, dynamic] = bins;
    // A client command with no broker to talk to: start, parse, fail to
    // connect, exit (`--version` would be handed over to p2pbd).
    let nobody = |bin: &str| strings(&[bin, "--socket", "/nonexistent/p2pb.sock", "list"]);
    let (mut start, mut dyn_start, mut peer_start, mut list) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        start.push(timed_any(ns, nobody(p2pb)));
        dyn_start.push(timed_any(ns, nobody(dynamic)));
        peer_start.push(timed_any(ns, strings(&["natpmpc", "-h"])));
        list.push(timed(ns, strings(&[p2pb, "--socket", sock, "list"])));
    }
    let (start, dyn_start, peer_start) = (median(start), median(dyn_start), median(peer_start));
    let now = scrape(lab);
    // The mean over the timed rounds of a histogram: the growth of its
    // _sum over the growth of its _count.
    let mean = |name: &str, labels: &str| {
        let grew = |suffix: &str| {
            let s = format!("{name}_{suffix}{labels}");
            series(&now, &s) - series(warm, &s)
        };
        grew("sum") / grew("count") * 1e3
    };
    let mut rows = vec![
        format!(
            "| process start (`p2pb list`, no broker there / `natpmpc -h`), static p2pb | {:.2} ms | {:.2} ms | {:.2}× |",
            ms(start),
            ms(peer_start),
            ms(start) / ms(peer_start)
        ),
        format!(
            "| the same, dynamic p2pb | {:.2} ms | {:.2} ms | {:.2}× |",
            ms(dyn_start),
            ms(peer_start),
            ms(dyn_start) / ms(peer_start)
        ),
        format!(
            "| `p2pb list` (start, connect, one request, exit) | {:.2} ms | — | — |",
            ms(median(list))
        ),
    ];
    let mut pmp_call = f64::NAN;
    for mode in ["nat-pmp", "upnp-igd"] {
        let whole = mean("p2pb_map_duration_seconds", &format!("{{mode=\"{mode}\"}}"));
        let call = mean(
            "p2pb_mod_call_duration_seconds",
            &format!("{{mode=\"{mode}\",op=\"map\"}}"),
        );
        if mode == "nat-pmp" {
            pmp_call = call;
        }
        rows.push(format!(
            "| {mode}: the daemon's map (mean of the timed maps) / the MOD call in it | {whole:.2} ms | {call:.2} ms | {:.2} ms outside the MOD |",
            whole - call
        ));
    }
    // The daemon's own timings of each stage (both MODs' maps together).
    let stages: Vec<String> = p2pbroker::daemon::metrics::MAP_STAGES
        .iter()
        .map(|st| {
            let m = mean(
                "p2pb_map_stage_duration_seconds",
                &format!("{{stage=\"{st}\"}}"),
            );
            format!("{st} {m:.3}")
        })
        .collect();
    rows.push(format!(
        "| the daemon's map by stage (means, ms) | {} | — | — |",
        stages.join(" · ")
    ));
    // What p2pb could reach with a daemon and a connection that cost
    // nothing: its start and the MOD's one exchange with the gateway.
    let floor = ms(start) + pmp_call;
    rows.push(format!(
        "| nat-pmp floor: p2pb start + the MOD call, nothing else | {floor:.2} ms | 0.9 × natpmpc = {:.2} ms | {:.2}× (measured {:.2}×) |",
        0.9 * pmp.1,
        floor / pmp.1,
        pmp.0 / pmp.1
    ));
    rows
}

/// How long the gateway itself takes to answer NAT-PMP's two requests, on
/// the wire from the host (one raw exchange each, [`SETTLE`] apart): what
/// `natpmpc -a` asks (the public address, then the map) and our MOD's one
/// exchange (the map). The ratio above depends on them.
fn gateway_answers(ns: &str, rounds: u16) -> String {
    let (public, map) = lab::in_netns(ns, move || {
        let map = |port: u16, lifetime: u32| {
            let port = port.to_be_bytes();
            let mut m = vec![0, 2, 0, 0, port[0], port[1], port[0], port[1]];
            m.extend(lifetime.to_be_bytes());
            m
        };
        // A socket of its own for each request, as each client run has.
        let ask = |req: &[u8], answer_len: usize| {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.connect((lab::GW_LAN_IP, 5351)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            std::thread::sleep(SETTLE);
            let began = Instant::now();
            sock.send(req).unwrap();
            let mut buf = [0u8; 64];
            let n = sock.recv(&mut buf).expect("the gateway answers NAT-PMP");
            assert_eq!(n, answer_len, "a NAT-PMP answer: {:?}", &buf[..n]);
            // Result code 0 (RFC 6886 §3.5).
            assert_eq!(&buf[2..4], [0, 0], "the gateway refused: {:?}", &buf[..n]);
            began.elapsed()
        };
        let (mut public, mut mapped) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            // A port of its own each round (of the last 1000), below the
            // timed rounds' ones.
            let port = FIRST_PORT - 1 - i % 1000;
            public.push(ask(&[0, 0], 12));
            mapped.push(ask(&map(port, 600), 16));
            // Lifetime 0 removes it (untimed).
            ask(&map(port, 0), 16);
        }
        (median(public), median(mapped))
    });
    format!(
        "| the gateway's own answer on the wire (raw NAT-PMP from the host): public address / map | — | {:.2} ms / {:.2} ms | — |",
        ms(public),
        ms(map)
    )
}
