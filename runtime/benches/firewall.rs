//! Inbound through the corporate firewall's API (root; the corporate lab):
//! how long a `corp-firewall` map takes against what the API itself needs.
//!
//! Per round, in turn, each followed by its own clean-up (not timed):
//!
//! - `p2pb map tcp PORT --detach`, a whole process against a running
//!   daemon (what an operator types): the request, the signed MOD's pinned
//!   TLS connection, staging both rules, apply, polling, confirm.
//! - `Client::map` in the bench process (what an application pays).
//! - The peer: a script doing the same API sequence as a careful operator
//!   would (Python's http.client, one TLS connection to the pinned
//!   certificate, polling every 20 ms), a whole process too.
//!   It also reports the API's own apply latency (POST apply until a GET
//!   shows the revision applied, polled every 2 ms) and one request's round
//!   trip on the established connection.
//!
//! Goal (issue 10): map ≤ 1.1 × the API's apply latency + one round trip.
//! `cargo bench -p p2pbroker --bench firewall` prints a Markdown table.

#[path = "../../tests/daemon/mod.rs"]
mod daemon;
#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::corp::*;
use lab::fwapi::{API_PORT, API_TOKEN, FwApiOptions};

/// Rounds.
const N: usize = 12;
/// The host's service and edge port.
const PORT: u16 = 7020;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The operator's script: the same sequence as the MOD; prints
/// `apply_ms rtt_ms` after undoing its rules.
const SCRIPT: &str = r#"
import http.client, json, ssl, sys, time
host, port, cafile, token, target, ext, step = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]
ctx = ssl.create_default_context(cafile=cafile)
c = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
H = {"X-API-Token": token, "Content-Type": "application/json"}
def call(m, p, b=None):
    c.request(m, p, body=None if b is None else json.dumps(b), headers=H)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")
def commit(poll):
    t = time.perf_counter()
    _, v = call("POST", "/api/v1/apply", {"confirm_within_s": 60})
    n = v["revision"]
    while call("GET", "/api/v1/revisions/%d" % n)[1]["state"] == "pending":
        time.sleep(poll)
    applied = time.perf_counter() - t
    call("POST", "/api/v1/revisions/%d/confirm" % n)
    return applied
if step == "map":
    name = "ops-tcp-%d" % ext
    _, d = call("POST", "/api/v1/nat/dnat", {"name": name, "protocol": "tcp", "external_port": ext, "target": target, "target_port": ext})
    _, a = call("POST", "/api/v1/filter/allow", {"name": name, "protocol": "tcp", "destination": target, "port": ext})
    commit(0.02)
    print(d["id"], a["id"])
else:
    d, a = sys.argv[8], sys.argv[9]
    call("DELETE", "/api/v1/nat/dnat/" + d); call("DELETE", "/api/v1/filter/allow/" + a)
    commit(0.02)
    t = time.perf_counter(); call("GET", "/api/v1/nat/dnat"); rtt = time.perf_counter() - t
    # The API's own latency, polled tightly, on a configuration with no rule.
    print("%.3f %.3f" % (commit(0.002) * 1e3, rtt * 1e3))
"#;

fn main() {
    let mut lab = CorpLab::up();
    let api = lab.firewall_api(FwApiOptions::default());
    lab.serve_on_host(PORT, 3600);
    let modes = daemon::modes_folder(&lab.path("bench-modes"), &["modes/corp-firewall"]);
    let policy = format!(
        "version = 1\norder = [\"corp-firewall\"]\n\
         [modes.corp-firewall]\ngrants = [\"tcp:connect@api:1-65535\"]\n\
         config = {{ api = \"{EDGE_IP}:{API_PORT}\", token = \"{API_TOKEN}\", \
         tls_pin = \"{}\", external_address = \"{EDGE_WAN_IP}\" }}\n",
        api.cert_sha256
    );
    let d = daemon::Daemon::start_with(
        &lab.ns(CorpNs::Host),
        &lab.path(""),
        "bench",
        &policy,
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
    let script = lab.path("ops.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let port = PORT.to_string();
    let api_port = API_PORT.to_string();
    let (mut cli, mut inproc, mut ops, mut apply, mut rtt, mut ok) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        0,
    );
    for round in 0..=N {
        // p2pb map, a whole process.
        let t = Instant::now();
        let lease = d.json(&["map", "tcp", &port, "--detach", "--json"]);
        let took = ms(t.elapsed());
        let warm = round > 0;
        ok += usize::from(warm && lease["mode"] == "corp-firewall");
        d.cli(&["unmap", &lease["id"].to_string()]);
        // Client::map in this process.
        let t = Instant::now();
        let mapped = rt.block_on(client.map(p2pbroker_client::MapOptions::tcp(PORT)));
        let took_in = ms(t.elapsed());
        if let Ok(l) = mapped {
            ok += usize::from(warm && l.mode == "corp-firewall");
            let _ = rt.block_on(client.unmap(l.id));
        }
        // The operator's script: map (timed), then undo and measure.
        let run = |extra: &[&str]| {
            let mut args = vec![
                "python3",
                script.to_str().unwrap(),
                EDGE_IP,
                &api_port,
                api.cert.to_str().unwrap(),
                API_TOKEN,
                HOST_IP,
                &port,
            ];
            args.extend_from_slice(extra);
            String::from_utf8_lossy(&lab.exec(CorpNs::Host, &args).stdout).into_owned()
        };
        let t = Instant::now();
        let ids = run(&["map"]);
        let took_ops = ms(t.elapsed());
        let ids: Vec<&str> = ids.split_whitespace().collect();
        let nums: Vec<f64> = if ids.len() == 2 {
            run(&["undo", ids[0], ids[1]])
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        } else {
            Vec::new()
        };
        if round == 0 {
            continue; // warm-up: caches, the API's first TLS session
        }
        cli.push(took);
        inproc.push(took_in);
        if nums.len() == 2 {
            ok += usize::from(warm);
            ops.push(took_ops);
            apply.push(nums[0]);
            rtt.push(nums[1]);
        }
    }
    let (cli, inproc, ops, apply, rtt) = (
        median(cli),
        median(inproc),
        median(ops),
        median(apply),
        median(rtt),
    );
    let goal = 1.1 * apply + rtt;
    println!(
        "| `p2pb map` (daemon) | `Client::map` | operator's script | API apply latency | RTT | goal (1.1 × apply + RTT) | map / goal | Client::map / goal | maps |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {cli:.1} ms | {inproc:.1} ms | {ops:.1} ms | {apply:.1} ms | {rtt:.2} ms | {goal:.1} ms | {:.2}× | {:.2}× | {ok} of {} |",
        cli / goal,
        inproc / goal,
        3 * N
    );
}
