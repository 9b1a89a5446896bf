//! The `corp-firewall` MOD in the corporate lab, deployed as a security
//! team would: signed with the team's key, required by the policy to carry
//! that signature, its grant exactly the firewall API's endpoint, the API's
//! certificate pinned. Through the real daemon it makes the host reachable
//! from the public network (DNAT + allow on the edge's nftables, applied
//! and confirmed through the API), and every way out — unmap, a crash and
//! restart, shutdown — leaves no rule behind. Failures (API down, wrong
//! token, wrong certificate, an apply that never completes) are typed,
//! bounded, and leave nothing staged.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use daemon::{Daemon, eventually, modes_folder};
use lab::corp::*;
use lab::fwapi::{API_PORT, API_TOKEN, FwApi, FwApiOptions};

/// The host's service the peer should reach, and the edge port.
const APP_PORT: u16 = 7010;

fn p2pb(args: &[&str]) -> std::process::Output {
    let out = Command::new(harness::p2pb()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "p2pb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The security team's key pair under `dir`: (secret key file, public hex).
fn team_key(dir: &Path) -> (PathBuf, String) {
    let base = dir.join("security-team");
    if !base.with_extension("key").exists() {
        p2pb(&["key", "generate", "--out", base.to_str().unwrap()]);
    }
    let pub_file = base.with_extension("pub");
    let shown = p2pb(&["key", "show", pub_file.to_str().unwrap()]);
    let shown = String::from_utf8(shown.stdout).unwrap();
    let public = shown
        .lines()
        .find_map(|l| l.strip_prefix("public"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no public key in: {shown}"));
    (base.with_extension("key"), public)
}

/// A MODs folder with `corp-firewall` (signed by `key` if given) and the
/// `static` MOD (unsigned, allow-listed) as the fallback.
fn modes(lab: &CorpLab, name: &str, key: Option<&Path>) -> PathBuf {
    let dir = modes_folder(
        &lab.path(&format!("{name}-modes")),
        &["modes/corp-firewall", "modes/static"],
    );
    if let Some(key) = key {
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("corp-firewall"))
            .unwrap();
        p2pb(&[
            "mode",
            "sign",
            "--key",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
    }
    dir
}

/// The policy: corp-firewall first (it must carry the security team's
/// signature), a declared static forward after it.
fn policy(team: &str, api: &FwApi, token: &str, pin: &str) -> String {
    format!(
        "version = 1\norder = [\"corp-firewall\", \"static\"]\n\
         [trust]\nthreshold = 0\n[trust.keys]\nsecurity = \"{team}\"\n\
         [modes.corp-firewall]\nsigners = [\"security\"]\nthreshold = 1\n\
         grants = [\"tcp:connect@api:1-65535\"]\n\
         config = {{ api = \"{EDGE_IP}:{API_PORT}\", token = \"{token}\", tls_pin = \"{pin}\", \
         external_address = \"{EDGE_WAN_IP}\" }}\n\
         [modes.static]\ngrants = []\n\
         config = {{ forwards = \"tcp 203.0.113.10:{APP_PORT} -> {HOST_IP}:{APP_PORT}\" }}\n",
        pin = if pin.is_empty() {
            &api.cert_sha256
        } else {
            pin
        }
    )
}

fn start(lab: &CorpLab, name: &str, policy: &str, modes: &Path) -> Daemon {
    Daemon::start_with(
        &lab.ns(CorpNs::Host),
        &lab.path(""),
        name,
        policy,
        modes,
        &[],
    )
}

fn outside() -> String {
    format!("{EDGE_WAN_IP}:{APP_PORT}")
}

/// The DNAT and allow rules the API has programmed on the edge.
fn edge_rules(lab: &CorpLab) -> usize {
    lab.api_rules().matches("comment \"fwapi:").count()
}

/// The API's staged objects (DNAT + allow).
fn staged(lab: &CorpLab, api: &FwApi) -> usize {
    ["/api/v1/nat/dnat", "/api/v1/filter/allow"]
        .iter()
        .map(|p| {
            let (code, v) = lab.api(api, "GET", p, None, API_TOKEN);
            assert_eq!(code, 200, "{v}");
            v["staged"].as_object().unwrap().len()
        })
        .sum()
}

fn map_error(d: &Daemon) -> String {
    let out = d.cli(&["map", "tcp", &APP_PORT.to_string(), "--detach"]);
    assert!(!out.status.success(), "the map should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_signed_corp_firewall_mod_makes_the_host_reachable_and_leaves_no_rule() {
    let mut lab = CorpLab::up();
    let api = lab.firewall_api(FwApiOptions::default());
    lab.serve_on_host(APP_PORT, 300);
    let (key, team) = team_key(&lab.path(""));
    let p = policy(&team, &api, API_TOKEN, "");
    assert_eq!(lab.read_from_outside(&outside()), "", "closed at first");

    // Unsigned, the policy refuses it; only the fallback loads.
    let mut d = start(&lab, "unsigned", &p, &modes(&lab, "unsigned", None));
    let status = d.json(&["status", "--json"]);
    let refused = status["refused"].to_string();
    assert!(
        refused.contains("corp-firewall") && refused.contains("signed by 0 trusted key(s)"),
        "{status}"
    );
    d.stop();

    // Signed by the security team: it probes the API through pinned TLS.
    let mut d = start(&lab, "broker", &p, &modes(&lab, "signed", Some(&key)));
    let probe = d.json(&["probe", "--json"]);
    let fw = probe["probes"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["mode"] == "corp-firewall"))
        .unwrap_or_else(|| {
            let status = d.json(&["status", "--json"]);
            panic!("no corp-firewall probe: {probe}; status {status}")
        });
    assert_eq!(fw["ok"], true, "{probe}");
    assert_eq!(fw["external_address"], EDGE_WAN_IP, "{probe}");

    // Map: the public peer reaches the host's service through the edge.
    let lease = d.json(&["map", "tcp", &APP_PORT.to_string(), "--detach", "--json"]);
    assert_eq!(lease["mode"], "corp-firewall", "{lease}");
    assert_eq!(lease["external"], outside(), "{lease}");
    assert_eq!(lab.read_from_outside(&outside()), "hello-from-host\n");
    assert_eq!(edge_rules(&lab), 2, "{}", lab.api_rules());
    // Confirmed: still there after the revision's revert window would
    // have passed had it not been (the API's default is 60 s; the MOD asks
    // for it, so check the revision itself).
    let (_, rev) = lab.api(&api, "GET", "/api/v1/revisions/1", None, API_TOKEN);
    assert_eq!(rev["state"], "confirmed", "{rev}");

    // Unmap: both rules leave the edge, and the peer is shut out again.
    let out = d.cli(&["unmap", &lease["id"].to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(edge_rules(&lab), 0, "{}", lab.api_rules());
    assert_eq!(staged(&lab, &api), 0);
    assert_eq!(lab.read_from_outside(&outside()), "");

    // A lease held by a client that dies with the daemon (SIGKILL): the
    // restart finds it orphaned and removes its rules.
    let mut holder = d.hold("holder", &["tcp", &APP_PORT.to_string()]);
    eventually("held lease mapped", 30, || edge_rules(&lab) == 2);
    d.kill9();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(edge_rules(&lab), 2, "a crash removes nothing by itself");
    d.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while edge_rules(&lab) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned lease's rules are still there after 30 s: {}\n{}",
            lab.api_rules(),
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(staged(&lab, &api), 0);

    // A detached lease is released at shutdown.
    let lease = d.json(&["map", "tcp", &APP_PORT.to_string(), "--detach", "--json"]);
    assert_eq!(lease["mode"], "corp-firewall", "{lease}");
    d.stop();
    assert_eq!(edge_rules(&lab), 0, "{}", lab.api_rules());
    assert_eq!(staged(&lab, &api), 0);

    // Every connection the MOD asked for went to the API endpoint only,
    // each an audited decision.
    let audit = std::fs::read_to_string(d.state.join("audit.jsonl")).unwrap_or_default();
    assert!(
        audit.contains(&format!("{EDGE_IP}:{API_PORT}")) && audit.contains("corp-firewall"),
        "{audit}"
    );
}

#[test]
fn firewall_api_failures_are_typed_bounded_and_leave_nothing() {
    let mut lab = CorpLab::up();
    let api = lab.firewall_api(FwApiOptions::default());
    lab.serve_on_host(APP_PORT, 300);
    let (key, team) = team_key(&lab.path(""));
    let modes = modes(&lab, "signed", Some(&key));

    // A wrong token: the API's 401, named.
    let mut d = start(
        &lab,
        "token",
        &policy(&team, &api, "wrong-token", ""),
        &modes,
    );
    let probe = d.json(&["probe", "--json"]).to_string();
    assert!(probe.contains("refused the token"), "{probe}");
    d.stop();

    // A certificate that does not match the pin: refused before a byte
    // of HTTP, the certificate's real fingerprint named.
    let other = "ab".repeat(32);
    let mut d = start(&lab, "pin", &policy(&team, &api, API_TOKEN, &other), &modes);
    let probe = d.json(&["probe", "--json"]).to_string();
    assert!(
        probe.contains("matches no pin") && probe.contains(&api.cert_sha256),
        "{probe}"
    );
    d.stop();
    assert_eq!(staged(&lab, &api), 0);

    // The API down: map fails over to the static forward, and the probe
    // says why corp-firewall was passed over.
    lab.stop_firewall_api();
    let p = policy(&team, &api, API_TOKEN, "");
    let mut d = start(&lab, "down", &p, &modes);
    let lease = d.json(&["map", "tcp", &APP_PORT.to_string(), "--detach", "--json"]);
    assert_eq!(lease["mode"], "static", "{lease}");
    let probe = d.json(&["probe", "--json"]).to_string();
    assert!(
        probe.contains(&format!("cannot connect to {EDGE_IP}:{API_PORT}")),
        "{probe}"
    );
    d.stop();

    // An apply that never completes: a timeout within the call's budget,
    // the staged objects withdrawn, nothing programmed.
    let api = lab.firewall_api(FwApiOptions {
        stuck_apply: true,
        ..Default::default()
    });
    let p = p.replace(
        "order = [\"corp-firewall\", \"static\"]",
        "order = [\"corp-firewall\"]",
    );
    let mut d = start(&lab, "stuck", &p, &modes);
    let started = std::time::Instant::now();
    let err = map_error(&d);
    assert!(err.contains("still pending"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(staged(&lab, &api), 0, "the staged rules are withdrawn");
    assert_eq!(edge_rules(&lab), 0, "{}", lab.api_rules());
    assert!(d.json(&["list", "--json"]).as_array().unwrap().is_empty());
    d.stop();
}
