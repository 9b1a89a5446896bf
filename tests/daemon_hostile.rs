//! A hostile MOD inside the real daemon: a forged mapping is refused,
//! audited and never journaled; MODs spinning in wasm do not stop the daemon
//! from answering; a map cut short by a crash is reconciled at the next
//! start (against real miniupnpd).

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::time::Instant;

use daemon::{Daemon, Reaped, eventually};
use lab::{GatewayOptions, Lab, Ns};

fn start(lab: &Lab, config: &str, limits: &str) -> Daemon {
    let policy = format!(
        "version = 1\norder = [\"hostile\"]\n[modes.hostile]\nconfig = {{ {config} }}\n[modes.hostile.limits]\n{limits}\n"
    );
    Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "broker",
        &policy,
        &daemon::hostile_modes(&lab.path("hostile-modes")),
        &[],
    )
}

#[test]
fn a_forged_mapping_is_refused_audited_and_never_journaled() {
    let lab = Lab::up(GatewayOptions::default());
    let d = start(&lab, "map = \"forge-internal\"", "");
    let _app = Reaped(lab.listen(true, 7020, 60));
    let out = d.cli(&["map", "tcp", "7020", "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("contract-breach") && err.contains("5432"),
        "{err}"
    );
    assert!(d.json(&["list", "--json"]).as_array().unwrap().is_empty());
    let journal = std::fs::read_to_string(d.state.join("leases.journal")).unwrap();
    assert!(!journal.contains("\"op\":\"put\""), "{journal}");
    let audit = std::fs::read_to_string(d.state.join("audit.jsonl")).unwrap();
    let breach = audit
        .lines()
        .find(|l| l.contains("\"event\":\"contract-breach\""))
        .unwrap_or_else(|| panic!("no breach line in {audit}"));
    assert!(breach.contains("\"mode\":\"hostile\"") && breach.contains("\"call\":\"map\""));
}

#[test]
fn the_daemon_answers_while_two_mod_calls_spin() {
    let lab = Lab::up(GatewayOptions::default());
    let d = start(&lab, "map = \"loop\"", "timeout_ms = 8000");
    let _apps = [7021, 7022].map(|p| Reaped(lab.listen(true, p, 60)));
    let spinners: Vec<Reaped> = [7021, 7022]
        .iter()
        .map(|p| Reaped(d.hold(&format!("spin-{p}"), &["tcp", &p.to_string(), "--detach"])))
        .collect();
    // Both maps are in the MOD once their intents are journaled (the
    // broker writes one just before each MOD call); they spin for 8 s.
    let journal = d.state.join("leases.journal");
    eventually("both maps reach the MOD", 20, || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.matches("\"op\":\"intent\"").count() == 2)
    });
    // The daemon still answers, every time.
    let started = Instant::now();
    for _ in 0..5 {
        let s = d.json(&["status", "--json"]);
        assert_eq!(s["modes"][0]["name"], "hostile");
    }
    let mut spinners = spinners;
    let mut still = 0;
    for s in spinners.iter_mut() {
        still += usize::from(s.0.try_wait().unwrap().is_none());
    }
    assert_eq!(
        still,
        2,
        "status answered while both calls spun (after {:?})",
        started.elapsed()
    );
    // They end at their deadline, as timeouts.
    eventually("both spinning maps end", 30, || {
        spinners
            .iter_mut()
            .all(|s| s.0.try_wait().unwrap().is_some())
    });
    assert!(
        lab.log("spin-7021").contains("timeout"),
        "{}",
        lab.log("spin-7021")
    );
}

#[test]
fn a_map_cut_short_by_a_crash_is_reconciled_at_the_next_start() {
    let lab = Lab::up(GatewayOptions::default());
    let policy = r#"version = 1
order = ["upnp-igd"]
[broker]
probe_budget_ms = 2000
probe_cap_ms = 4000
[modes.upnp-igd]
grants = ["udp:send@ssdp", "udp:receive@gateway:1900", "udp:receive@fe80::/64:1900", "tcp:connect@gateway:1-65535"]
config = { probe_timeout_ms = "1500" }
"#;
    let mut d = Daemon::start(&lab, "broker", policy);
    let _app = Reaped(lab.listen(true, 7030, 120));
    let lease = d.json(&["map", "tcp", "7030", "--detach", "--json"]);
    assert_eq!(lab.igd_table().len(), 1);
    d.kill9();
    // What a crash between the gateway mapping and the journal's `put`
    // leaves: the intent, and no lease.
    let path = d.state.join("leases.journal");
    let id = lease["id"].as_u64().unwrap();
    let intent = format!(
        "{{\"op\":\"intent\",\"intent\":{{\"id\":{id},\"mode\":\"upnp-igd\",\"transport\":\"tcp\",\"internal\":\"{}:7030\",\"external_port\":null}}}}\n",
        lab::HOST_IP
    );
    std::fs::write(&path, intent).unwrap();
    d.restart();
    assert!(d.json(&["list", "--json"]).as_array().unwrap().is_empty());
    eventually("the unjournaled mapping is removed", 30, || {
        lab.igd_table().is_empty()
    });
    let journal = std::fs::read_to_string(&path).unwrap();
    assert!(
        journal.contains(&format!("\"op\":\"del\",\"id\":{id}")),
        "{journal}"
    );
    assert!(d.log().contains("reconciled"), "{}", d.log());
    // The hole log says a hole may have been open, and that it is closed:
    // the broker's own act, under the lease id the intent had.
    let out = d.cli(&[
        "audit",
        "--json",
        "--state-dir",
        d.state.to_str().unwrap(),
        "--activity",
        "released",
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hole = lines
        .iter()
        .find(|v| v["unmapped"]["hole"]["lease_id"] == id)
        .unwrap_or_else(|| panic!("no released line for lease {id}: {lines:?}"));
    let why = hole["status_detail"].as_str().unwrap();
    assert!(why.contains("cut short by an unclean stop"), "{why}");
    assert_eq!(hole["actor"]["process"]["name"], "p2pbd");
    assert_eq!(hole["unmapped"]["hole"]["external"]["port"], 7030);
}
