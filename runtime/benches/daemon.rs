//! Daemon benchmark (root): what an application waits for, and what the
//! broker costs at scale.
//!
//! 1. In the NAT lab (real miniupnpd): time from starting `p2pb daemon`
//!    (MODs from the compiled-code cache, parallel probe) to the first
//!    external endpoint (`p2pb map`), and the warm `map` round trip through
//!    the client API; `natpmpc -a` timed in the same lab as the peer.
//! 2. In a namespace of its own with a scripted NAT-PMP gateway that answers
//!    at once: 10,000 live leases — daemon RSS, CPU over two renewal cycles,
//!    CPU per renewal, extrapolated to the default 3600 s lifetime.
//! 3. Same daemon: 1,000 concurrent API clients asking `status`; with the
//!    10,000 leases held, the status page's JSON, the page itself in
//!    headless Chromium, and a metrics scrape.
//! 4. In the lab, with a hostile MOD spinning in two calls at once: how
//!    long `p2pb status` (a whole process) takes, against the same command
//!    with the MOD idle.
//!
//! A map needs a socket of the mapping user on the port (proof of
//! ownership): the bench binds them in the daemon's namespace first.
//!
//! `cargo bench -p p2pbroker --bench daemon` prints a Markdown table.

#[path = "../../tests/daemon/browser.rs"]
mod browser;
#[path = "../../tests/daemon/mod.rs"]
mod daemon;
#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use p2pbroker_client::{Client, EventKind, MapOptions};

const ROUNDS: usize = 10;
const LEASES: u16 = 10_000;
const CLIENTS: usize = 1_000;
/// The status page and metrics of the 10,000-lease daemon.
const PAGE: &str = "127.0.0.1:8088";
const METRICS: &str = "127.0.0.1:9464";
/// The leases' ports: clear of the fake gateway's 5351 and of the
/// ephemeral range the daemon's own sockets use.
const FIRST_PORT: u16 = 20_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--fake-gateway") {
        fake_natpmp_gateway();
        return;
    }
    // P2PB_BENCH_SKIP_LAB=1 measures only the scale part (quicker to iterate).
    let lab_rows = if std::env::var_os("P2PB_BENCH_SKIP_LAB").is_some() {
        Vec::new()
    } else {
        in_lab()
    };
    let scale_rows = at_scale();
    let spin_rows = while_spinning();
    println!("\n| what | median / value | target | peer (same run) | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    for r in lab_rows.iter().chain(&scale_rows).chain(&spin_rows) {
        println!("{r}");
    }
}

/// Run `f` on a thread moved into namespace `ns`: the sockets it makes
/// (an application's) live there, and stay open while they are held.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this short-lived thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
    .join()
    .unwrap()
}

fn listeners_in(ns: &str, ports: Vec<u16>) -> Vec<std::net::TcpListener> {
    in_ns(ns, move || {
        ports
            .into_iter()
            .map(|p| std::net::TcpListener::bind(("0.0.0.0", p)).unwrap())
            .collect()
    })
}

fn udp_sockets_in(ns: &str, ports: Vec<u16>) -> Vec<UdpSocket> {
    in_ns(ns, move || {
        ports
            .into_iter()
            .map(|p| UdpSocket::bind(("0.0.0.0", p)).unwrap())
            .collect()
    })
}

fn in_lab() -> Vec<String> {
    let lab = lab::Lab::up(lab::GatewayOptions::default());
    let policy = p2pbroker::policy::DEFAULT_POLICY;
    let host = lab.ns(lab::Ns::Host);
    let ports: Vec<u16> = (0..ROUNDS as u16)
        .map(|i| 6000 + i)
        .chain(7000..7030)
        .collect();
    let _apps = listeners_in(&host, ports);
    // First start compiles the MODs into the cache; later starts load them.
    let mut d = daemon::Daemon::start(&lab, "warmup", policy);
    d.stop();
    let mut cold = Vec::new();
    for i in 0..ROUNDS {
        let start = Instant::now();
        let mut d = daemon::Daemon::start(&lab, "warmup", policy);
        let out = d.cli(&["map", "tcp", &(6000 + i).to_string(), "--detach", "--json"]);
        cold.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d.stop();
    }
    let d = daemon::Daemon::start(&lab, "warmup", policy);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let warm = rt.block_on(async {
        let c = Client::open(&d.socket).await.unwrap();
        let mut v = Vec::new();
        for i in 0..30u16 {
            let t = Instant::now();
            let l = c.map(MapOptions::tcp(7000 + i)).await.unwrap();
            v.push(t.elapsed());
            c.unmap(l.id).await.unwrap();
        }
        v
    });
    let natpmpc: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let out = lab.exec(
                lab::Ns::Host,
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
            assert!(out.status.success());
            t.elapsed()
        })
        .collect();
    let (cold, warm, peer) = (median(cold), median(warm), median(natpmpc));
    vec![
        format!(
            "| cold start to first mapping (`p2pb daemon` start → `p2pb map` printed; pcp) | {:.1} ms | ≤ 300 ms | `natpmpc -a` {:.1} ms | {:.2}× |",
            ms(cold),
            ms(peer),
            ms(cold) / ms(peer)
        ),
        format!(
            "| warm `map` through the client API (pcp) | {:.2} ms | — | `natpmpc -a` {:.1} ms | {:.2}× |",
            ms(warm),
            ms(peer),
            ms(warm) / ms(peer)
        ),
    ]
}

/// A NAT-PMP gateway that grants every request at once (RFC 6886 §3.2/3.3
/// layouts), for load: the broker's cost, not a router's.
fn fake_natpmp_gateway() {
    let s = UdpSocket::bind("10.99.0.1:5351").unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    // Bounded: the bench kills it; it also ends on its own after 10 min.
    while start.elapsed() < Duration::from_secs(600) {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        if n < 2 || buf[0] != 0 {
            continue;
        }
        let epoch = (start.elapsed().as_secs() as u32 + 1000).to_be_bytes();
        let mut out = vec![0, 128 + buf[1], 0, 0];
        out.extend_from_slice(&epoch);
        match buf[1] {
            0 => out.extend_from_slice(&[198, 51, 100, 9]),
            1 | 2 if n >= 12 => {
                out.extend_from_slice(&buf[4..6]); // internal port
                out.extend_from_slice(&buf[6..8]); // external port as asked
                out.extend_from_slice(&buf[8..12]); // lifetime as asked
            }
            _ => continue,
        }
        let _ = s.send_to(&out, from);
    }
}

struct Netns(String);

impl Netns {
    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }
    fn spawn(&self, args: &[&str], log: &std::path::Path) -> Child {
        let f = std::fs::File::create(log).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn proc_stat(pid: u32) -> (Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), in clock ticks.
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    (Duration::from_millis(ticks * 1000 / tck), rss_kib)
}

fn at_scale() -> Vec<String> {
    let ns = Netns(format!("p2pbbench{}", std::process::id()));
    let ok = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap();
    assert!(ok.success());
    for cmd in [
        "ip link set lo up",
        "ip link add d0 type veth peer name d1",
        "ip addr add 10.99.0.2/24 dev d0 nodad",
        "ip addr add 10.99.0.1/24 dev d1 nodad",
        "ip link set d0 up",
        "ip link set d1 up",
        "ip route add default via 10.99.0.1",
    ] {
        let a: Vec<&str> = cmd.split(' ').collect();
        assert!(ns.exec(&a).status.success(), "{cmd}");
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // Reaped: killed and waited for even if the bench panics halfway.
    let gw = daemon::Reaped(ns.spawn(
        &[exe.to_str().unwrap(), "--fake-gateway"],
        &dir.path().join("gw.log"),
    ));
    let policy = r#"version = 1
order = ["nat-pmp"]
[broker]
mapping_lifetime = 20
max_leases = 20000
# 1,000 connections of one uid (the status load) and 32 mapping in parallel.
max_connections_per_client = 2000
max_requests_per_client = 2000
[[access]]
ports = "1-65535"
[modes.nat-pmp]
grants = ["udp:send,receive@gateway:5351"]
config = { gateway = "10.99.0.1" }
"#;
    let policy_path = dir.path().join("p.toml");
    std::fs::write(&policy_path, policy).unwrap();
    // Fleet push for the hot-reload figure: a root of trust and an empty
    // publication folder the daemon polls.
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet).unwrap();
    let key = dir.path().join("fleet-key");
    let root = dir.path().join("root.toml");
    p2pb(&["key", "generate", "--out", key.to_str().unwrap()]);
    let pk = String::from_utf8(
        p2pb(&["key", "show", key.with_extension("pub").to_str().unwrap()]).stdout,
    )
    .unwrap();
    let pk = pk
        .lines()
        .find_map(|l| l.strip_prefix("public   "))
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(&root, format!("version = 1\nexpires = \"2099-01-01T00:00:00Z\"\nthreshold = 1\n[keys]\nfleet = \"{pk}\"\n")).unwrap();
    let socket = dir.path().join("b.sock");
    let modes = daemon::modes_dir();
    let mut broker = daemon::Reaped(ns.spawn(
        &[
            harness::p2pb(),
            "--socket",
            socket.to_str().unwrap(),
            "daemon",
            "--modes",
            modes.to_str().unwrap(),
            "--policy",
            policy_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "--policy-dir",
            fleet.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--policy-interval-ms",
            "100",
            "--http",
            PAGE,
            "--metrics",
            METRICS,
        ],
        &dir.path().join("broker.log"),
    ));
    let pid = broker.0.id();
    // One UDP socket per lease, as the applications would hold them.
    p2pbroker::daemon::process::raise_nofile();
    let _apps = udp_sockets_in(&ns.0, (FIRST_PORT..FIRST_PORT + LEASES).collect());
    let query_rows = ownership_queries(&ns.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rows = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Ok(c) = Client::open(&socket).await {
                break c;
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        drop(first);
        let rss_idle = proc_stat(pid).1;
        let rps = status_load(&socket).await;
        let rss_after_status = proc_stat(pid).1;
        eprintln!("RSS idle {rss_idle} KiB, after status load {rss_after_status} KiB");
        // The daemon hands a burst's freed heap back once its last
        // connection is gone (server/limits.rs): give it a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_settled = proc_stat(pid).1;
        eprintln!("RSS 2 s after the status load {rss_settled} KiB");
        let made = Instant::now();
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..32u16 {
            let (socket, count) = (socket.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                let c = Client::open(&socket).await.unwrap();
                let mut port = FIRST_PORT + w;
                while port < FIRST_PORT + LEASES {
                    c.map(MapOptions::udp(port).persist(true)).await.unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    port += 32;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let map_rate = f64::from(LEASES) / made.elapsed().as_secs_f64();
        eprintln!("RSS with 10k leases {} KiB", proc_stat(pid).1);
        // Count renewals over two cycles (lifetime 20 s → renew every ~10 s).
        let watcher = Client::open(&socket).await.unwrap();
        let mut events = watcher.subscribe().await.unwrap();
        let renewed = Arc::new(AtomicU64::new(0));
        let r2 = renewed.clone();
        let counter = tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if e.kind == EventKind::Renewed {
                    r2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let (cpu0, _) = proc_stat(pid);
        let window = Duration::from_secs(20);
        tokio::time::sleep(window).await;
        let (cpu1, rss) = proc_stat(pid);
        counter.abort();
        let n = renewed.load(Ordering::Relaxed).max(1);
        let cpu = cpu1 - cpu0;
        let per_renewal = cpu / n as u32;
        let default_rate = f64::from(LEASES) / 1800.0;
        let default_pct = per_renewal.as_secs_f64() * default_rate * 100.0;
        // Hot reload: publish a signed policy (same MOD, new serial) and time
        // until the daemon reports it applied; no lease may be dropped.
        let signed = dir.path().join("policy.toml");
        std::fs::write(&signed, format!("serial = 1\nexpires = \"2099-01-01T00:00:00Z\"\n{policy}")).unwrap();
        p2pb(&["policy", "sign", "--key", key.with_extension("key").to_str().unwrap(), signed.to_str().unwrap()]);
        let published = Instant::now();
        p2pb(&["policy", "publish", signed.to_str().unwrap(), "--to", fleet.to_str().unwrap()]);
        let reload = loop {
            let st = watcher.status().await.unwrap();
            if st.policy.version == Some(1) {
                assert_eq!(st.leases.len(), usize::from(LEASES), "no lease dropped by the reload");
                break published.elapsed();
            }
            assert!(published.elapsed() < Duration::from_secs(60), "policy not applied: {:?}", st.policy);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        vec![
            format!(
                "| hot reload of a signed policy with 10,000 live leases (publish → applied, 100 ms polling) | {:.0} ms, 0 leases dropped | — | — | — |",
                ms(reload)
            ),
            format!(
                "| 10,000 live leases: daemon RSS | {:.1} MiB | ≤ 64 MiB | — | — |",
                rss as f64 / 1024.0
            ),
            format!(
                "| 10,000 leases renewing every ~10 s (lifetime 20 s): CPU | {:.1} % of a core ({n} renewals in {} s, {:.0} µs each) | — | — | — |",
                cpu.as_secs_f64() / window.as_secs_f64() * 100.0,
                window.as_secs(),
                per_renewal.as_secs_f64() * 1e6
            ),
            format!(
                "| 10,000 leases at the default 3600 s lifetime (5.6 renewals/s): CPU | {default_pct:.2} % of a core | ≤ 5 % | — | — |"
            ),
            format!("| creating 10,000 leases (32 clients) | {map_rate:.0} maps/s | — | — | — |"),
            format!("| `status` with 1,000 concurrent API clients | {rps:.0} requests/s | ≥ 20,000/s | — | — |"),
        ]
    });
    rows.extend(query_rows);
    rows.extend(page_at_scale(&ns.0, dir.path()));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && matches!(broker.0.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((broker, gw));
    rows
}

/// The status page and the metrics with the 10,000 leases held: the JSON
/// the page fetches, a scrape, and the page itself in headless Chromium
/// (navigation start to the first full picture, as the page records it).
fn page_at_scale(ns: &str, dir: &std::path::Path) -> Vec<String> {
    let fetch = |url: String| {
        let t = Instant::now();
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                &url,
            ])
            .output()
            .unwrap();
        let took = t.elapsed();
        let bytes: u64 = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
        assert!(bytes > 0, "{url} answered nothing");
        (took, bytes)
    };
    let status: Vec<_> = (0..5)
        .map(|_| fetch(format!("http://{PAGE}/api/status")))
        .collect();
    let scrape: Vec<_> = (0..5)
        .map(|_| fetch(format!("http://{METRICS}/metrics")))
        .collect();
    let status_bytes = status[0].1;
    let b = browser::Browser::start(ns, dir);
    let mut loads = Vec::new();
    for _ in 0..3 {
        b.session(
            "POST",
            "/url",
            Some(serde_json::json!({"url": format!("http://{PAGE}/")})),
        );
        b.wait(
            "the page draws 10,000 leases",
            "return Number(document.body.dataset.renders) >= 1",
        );
        let drawn = b.script("return document.querySelectorAll('#leases tbody tr').length");
        assert_eq!(drawn, 501, "500 rows and the count of the rest");
        let t = b.script("return Number(document.body.dataset.firstRenderMs)");
        loads.push(Duration::from_millis(t.as_u64().unwrap()));
    }
    vec![
        format!(
            "| status page with 10,000 leases: `/api/status` ({:.1} MiB of JSON) | {:.1} ms | — | — | — |",
            status_bytes as f64 / (1 << 20) as f64,
            ms(median(status.into_iter().map(|s| s.0).collect()))
        ),
        format!(
            "| status page with 10,000 leases: headless Chromium, navigation to the first full picture | {:.0} ms | — | — | — |",
            ms(median(loads))
        ),
        format!(
            "| `/metrics` scrape with 10,000 leases | {:.1} ms | — | — | — |",
            ms(median(scrape.into_iter().map(|s| s.0).collect()))
        ),
    ]
}

/// What proving ownership costs with 10,000 UDP sockets in the namespace:
/// one sock_diag query of a port, against one read of `/proc/net/udp`.
fn ownership_queries(ns: &str) -> Vec<String> {
    use p2pbroker::daemon::ownership::{read_table, sockets_on};
    use p2pbroker::gate::Transport;
    in_ns(ns, || {
        let port = FIRST_PORT + LEASES / 2;
        let time = |n: usize, f: &dyn Fn()| {
            median(
                (0..n)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed()
                    })
                    .collect(),
            )
        };
        let udp = time(100, &|| {
            assert!(!sockets_on(Transport::Udp, Some(port)).unwrap().is_empty());
        });
        let tcp = time(100, &|| {
            sockets_on(Transport::Tcp, Some(port)).unwrap();
        });
        // /proc/net may miss the socket while others open and close (the
        // daemon's own probes do at start): counted, not asserted.
        let missed = AtomicU64::new(0);
        let proc_net = time(10, &|| {
            if read_table(Transport::Udp, Some(port)).unwrap().is_empty() {
                missed.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The whole table, as `until_closed` leases are followed.
        let whole = time(10, &|| {
            assert!(sockets_on(Transport::Udp, None).unwrap().len() >= usize::from(LEASES));
        });
        let whole_proc = time(3, &|| {
            read_table(Transport::Udp, None).unwrap();
        });
        vec![
            format!(
                "| following `until_closed` leases, 10,000 UDP sockets: one sock_diag dump of the whole table | {:.2} ms | — | one read of `/proc/net/udp` {:.1} ms | {:.3}× |",
                ms(whole),
                ms(whole_proc),
                ms(whole) / ms(whole_proc)
            ),
            format!(
                "| proof of ownership with 10,000 UDP sockets in the namespace: one sock_diag query, UDP (TCP listeners) | {:.2} ms ({:.3} ms) | — | one read of `/proc/net/udp` {:.1} ms (missed the socket in {} of 10) | {:.3}× |",
                ms(udp),
                ms(tcp),
                ms(proc_net),
                missed.load(Ordering::Relaxed),
                ms(udp) / ms(proc_net)
            ),
        ]
    })
}

fn p2pb(args: &[&str]) -> std::process::Output {
    let o = Command::new(harness::p2pb()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "p2pb {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// 1,000 connections, each asking `status` in a loop for 5 s.
async fn status_load(socket: &std::path::Path) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::open(socket).await.unwrap());
    }
    let window = Duration::from_secs(5);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < window {
                c.status().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// `p2pb status` (whole processes) while a hostile MOD spins in two map
/// calls at once, against the same with no call running.
fn while_spinning() -> Vec<String> {
    let lab = lab::Lab::up(lab::GatewayOptions::default());
    let dir = daemon::hostile_modes(&lab.path("hostile-modes"));
    let policy = "version = 1\norder = [\"hostile\"]\n[modes.hostile]\nconfig = { map = \"loop\" }\n[modes.hostile.limits]\ntimeout_ms = 30000\n";
    let d = daemon::Daemon::start_with(
        &lab.ns(lab::Ns::Host),
        &lab.path(""),
        "spin",
        policy,
        &dir,
        &[],
    );
    let status = |n: usize| -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                assert!(d.cli(&["status", "--json"]).status.success());
                t.elapsed()
            })
            .collect()
    };
    let idle = median(status(20));
    let _apps = listeners_in(&lab.ns(lab::Ns::Host), vec![7100, 7101]);
    let spinners: Vec<daemon::Reaped> = [7100, 7101]
        .iter()
        .map(|p| daemon::Reaped(d.hold(&format!("spin-{p}"), &["tcp", &p.to_string(), "--detach"])))
        .collect();
    let journal = d.state.join("leases.journal");
    daemon::eventually("both maps reach the MOD", 20, || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.matches("\"op\":\"intent\"").count() == 2)
    });
    let busy = median(status(20));
    drop(spinners);
    vec![format!(
        "| `p2pb status` (process) while two MOD calls spin in wasm | {:.1} ms | < 50 ms | same, MOD idle {:.1} ms | {:.2}× |",
        ms(busy),
        ms(idle),
        ms(busy) / ms(idle)
    )]
}
