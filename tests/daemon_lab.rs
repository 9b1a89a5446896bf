//! The broker daemon end to end in the NAT lab, against real miniupnpd:
//! selection and fallback, leases held and released, crash recovery from
//! the journal, loss and re-establishment after a gateway restart,
//! conflicts, and access rules. Every check reads the gateway's own rule
//! table or reaches the application from the public peer.

#[path = "daemon/browser.rs"]
mod browser;
#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;
#[path = "daemon_lab/metrics.rs"]
mod metrics;
#[path = "daemon_lab/page.rs"]
mod page;

use daemon::{Daemon, Reaped, eventually};
use lab::{GatewayOptions, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP};
use serde_json::Value;

/// The built-in MODs with the grants of the default policy.
const MODES: &str = r#"
[modes.direct]
grants = []
[modes.pcp]
grants = ["udp:send,receive@gateway:5351"]
[modes.nat-pmp]
grants = ["udp:send,receive@gateway:5351"]
[modes.upnp-igd]
grants = ["udp:send@ssdp", "udp:receive@gateway:1900", "udp:receive@fe80::/64:1900", "tcp:connect@gateway:1-65535"]
config = { probe_timeout_ms = "1500" }
[modes.static]
grants = []
"#;

/// Probe budgets for a loaded test machine: the order, not a slow probe,
/// must decide which MOD maps.
const PROBE: &str = "probe_budget_ms = 2000\nprobe_cap_ms = 4000";

fn policy(order: &[&str], broker: &str, access: &str) -> String {
    let order: Vec<String> = order.iter().map(|m| format!("{m:?}")).collect();
    format!(
        "version = 1\norder = [{}]\n[broker]\n{PROBE}\n{broker}\n{access}\n{MODES}",
        order.join(", ")
    )
}

fn all_modes() -> String {
    policy(&["direct", "upnp-igd", "pcp", "nat-pmp", "static"], "", "")
}

fn external(lease: &Value) -> String {
    lease["external"].as_str().unwrap().to_string()
}

/// The status code curl gets for `url` from the lab's host namespace.
fn http_status(lab: &Lab, url: &str, headers: &[&str]) -> String {
    let mut args = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(url);
    let out = lab.exec(lab::Ns::Host, &args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Number of forwards in the gateway's nftables NAT chain.
fn forwards(lab: &Lab) -> usize {
    lab.gateway_rules().matches("dnat").count()
}

#[test]
fn map_reach_list_unmap_through_the_daemon() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &all_modes());
    let _server = Reaped(lab.listen(true, 7001, 30));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lease = d.json(&["map", "tcp", "7001", "--detach", "--json"]);
    assert_eq!(lease["mode"], "upnp-igd", "first usable MOD of the order");
    assert_eq!(lease["internal"], format!("{}:7001", lab::HOST_IP));
    let ext = external(&lease);
    assert!(ext.starts_with(lab::WAN_IP), "{ext}");
    assert_eq!(lab.reach(true, &ext), "hello-from-host");
    let list = d.json(&["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let status = d.json(&["status", "--json"]);
    assert_eq!(status["leases"][0]["id"], lease["id"]);
    assert!(status["modes"].as_array().unwrap().len() == 5);
    let table = lab.igd_table();
    assert!(table.iter().any(|e| e.1 == 7001), "{table:?}");
    let id = lease["id"].to_string();
    d.json(&["unmap", &id, "--json"]);
    assert_eq!(lab.reach(true, &ext), "");
    assert_eq!(forwards(&lab), 0, "{}", lab.gateway_rules());
    // The hole log: opened and closed, by whom, through which MOD.
    let log = holes(&d, &["--port", "7001"]);
    let acts: Vec<&str> = log
        .iter()
        .map(|v| v["activity_name"].as_str().unwrap())
        .collect();
    assert_eq!(acts, ["mapped", "released"], "{log:?}");
    let h = &log[0]["unmapped"]["hole"];
    assert_eq!(
        h["external"]["port"].as_u64(),
        ext.rsplit(':').next().unwrap().parse().ok()
    );
    assert_eq!(h["mod"]["name"], "upnp-igd");
    assert_eq!(h["mod"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(log[0]["actor"]["user"]["uid"], "0");
    assert!(log[0]["actor"]["process"]["pid"].as_u64().is_some());
    let table = String::from_utf8(
        d.cli(&["audit", "--state-dir", d.state.to_str().unwrap()])
            .stdout,
    )
    .unwrap();
    assert!(
        table.contains("mapped") && table.contains("upnp-igd"),
        "{table}"
    );
    assert!(d.json(&["list", "--json"]).as_array().unwrap().is_empty());
    // Human output is readable too.
    let out = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MOD") && text.contains("upnp-igd") && text.contains("no leases"));
}

#[test]
fn out_of_the_box_the_built_in_policy_and_mods_serve() {
    // No --modes, no --policy: what `systemctl start p2pbroker` runs.
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start_out_of_the_box(&lab, "plain");
    let _server = Reaped(lab.listen(true, 7002, 30));
    let lease = d.json(&["map", "tcp", "7002", "--detach", "--json"]);
    let ext = external(&lease);
    assert!(ext.starts_with(lab::WAN_IP), "{ext}");
    assert_eq!(lab.reach(true, &ext), "hello-from-host");
    // Every MOD that serves is one of the binary's own, by hash.
    let builtin = d.json(&["mode", "builtin", "--json"]);
    let hashes: Vec<&str> = builtin
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["sha256"].as_str().unwrap())
        .collect();
    let status = d.json(&["status", "--json"]);
    let modes = status["modes"].as_array().unwrap();
    assert!(modes.len() >= 4, "{status}");
    for m in modes {
        let sha = m["sha256"].as_str().unwrap();
        assert!(hashes.contains(&sha), "{m} is not built in: {hashes:?}");
    }
    d.json(&["unmap", &lease["id"].to_string(), "--json"]);
    assert_eq!(forwards(&lab), 0, "{}", lab.gateway_rules());
}

#[test]
fn a_held_lease_ends_with_its_client() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &all_modes());
    let _app = Reaped(lab.listen(false, 7002, 60));
    let mut holder = d.hold("holder", &["udp", "7002"]);
    eventually("the holder's lease appears", 20, || {
        d.json(&["list", "--json"])
            .as_array()
            .is_some_and(|l| l.len() == 1)
    });
    assert_eq!(forwards(&lab), 1, "{}", lab.gateway_rules());
    let _ = holder.kill();
    let _ = holder.wait();
    eventually("the lease is released when its client goes", 20, || {
        d.json(&["list", "--json"])
            .as_array()
            .is_some_and(|l| l.is_empty())
    });
    // A releasing lease is hidden at once; its unmap may still be under way.
    eventually("the gateway forgets the mapping", 20, || {
        forwards(&lab) == 0
    });
}

#[test]
fn upnp_off_falls_back_and_says_why() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: true,
        ..GatewayOptions::default()
    });
    let d = Daemon::start(&lab, "broker", &all_modes());
    let probe = d.json(&["probe", "--json"]);
    let upnp = probe["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["mode"] == "upnp-igd")
        .unwrap();
    assert_eq!(upnp["ok"], false);
    assert_eq!(probe["chosen"], "pcp", "{probe}");
    assert!(
        probe["why"].as_str().unwrap().contains("upnp-igd"),
        "{probe}"
    );
    let _server = Reaped(lab.listen(true, 7003, 30));
    let lease = d.json(&["map", "tcp", "7003", "--detach", "--json"]);
    assert_eq!(lease["mode"], "pcp");
    assert_eq!(lab.reach(true, &external(&lease)), "hello-from-host");
}

#[test]
fn every_protocol_off_gives_each_mods_reason() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        ..GatewayOptions::default()
    });
    let d = Daemon::start(&lab, "broker", &all_modes());
    let _app = Reaped(lab.listen(true, 7004, 60));
    let out = d.cli(&["map", "tcp", "7004", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for m in ["direct", "upnp-igd", "pcp", "nat-pmp", "static"] {
        assert!(err.contains(m), "{m} missing from: {err}");
    }
    assert!(err.contains("no-mode"), "{err}");
    assert_eq!(forwards(&lab), 0);
}

#[test]
fn after_sigkill_the_restart_leaves_no_stale_mapping() {
    let lab = Lab::up(GatewayOptions::default());
    let mut d = Daemon::start(&lab, "broker", &all_modes());
    let _apps = [7005, 7006].map(|p| Reaped(lab.listen(true, p, 120)));
    let kept = d.json(&["map", "tcp", "7005", "--detach", "--json"]);
    let mut holder = d.hold("holder", &["tcp", "7006"]);
    eventually("both leases exist", 20, || {
        d.json(&["list", "--json"])
            .as_array()
            .is_some_and(|l| l.len() == 2)
    });
    assert_eq!(forwards(&lab), 2);
    d.kill9();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(forwards(&lab), 2, "a crash removes nothing by itself");
    d.restart();
    eventually(
        "the held lease of the dead connection is deleted",
        30,
        || forwards(&lab) == 1,
    );
    let list = d.json(&["list", "--json"]);
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, vec![&kept["id"]], "the persistent lease is re-adopted");
    let table = lab.igd_table();
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0].1, 7005);
    d.stop();
    assert_eq!(
        forwards(&lab),
        0,
        "shutdown releases: {}",
        lab.gateway_rules()
    );
    assert!(lab.igd_table().is_empty());
}

#[test]
fn a_gateway_restart_is_detected_and_the_lease_re_established() {
    let mut lab = Lab::up(GatewayOptions::default());
    // A short gateway lifetime so the renewal that finds the loss comes soon.
    let p = policy(&["upnp-igd", "pcp"], "mapping_lifetime = 10", "");
    let d = Daemon::start(&lab, "broker", &p);
    // Re-establishing authorises again: the application must still listen.
    let _server = Reaped(lab.listen(true, 7007, 120));
    // UPnP honours the short lifetime (NAT-PMP/PCP on miniupnpd grant at
    // least 120 s); forced, so a slow probe on a loaded machine cannot
    // pick another MOD.
    let _holder = Reaped(d.hold("holder", &["tcp", "7007", "--mode", "upnp-igd"]));
    eventually("mapped", 20, || lab.log("holder").contains("\"mode\""));
    lab.restart_gateway();
    assert_eq!(forwards(&lab), 0, "the restart flushed the gateway");
    eventually("lost then re-established", 40, || {
        lab.log("holder").contains("\"event\":\"re-established\"")
    });
    let log = lab.log("holder");
    let lost = log.find("\"event\":\"lost\"").expect("a lost event");
    let back = log.find("\"event\":\"re-established\"").unwrap();
    assert!(lost < back, "{log}");
    assert_eq!(forwards(&lab), 1, "{}", lab.gateway_rules());
    let lease = &d.json(&["list", "--json"])[0];
    assert_eq!(lease["state"], "active");
    assert_eq!(lab.reach(true, &external(lease)), "hello-from-host");
}

#[test]
fn the_same_external_port_is_never_handed_out_twice() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &all_modes());
    let _apps = [7008, 7009].map(|p| Reaped(lab.listen(true, p, 60)));
    let first = d.json(&[
        "map",
        "tcp",
        "7008",
        "--external-port",
        "7100",
        "--detach",
        "--json",
    ]);
    assert_eq!(external(&first), format!("{}:7100", lab::WAN_IP));
    let out = d.cli(&["map", "tcp", "7009", "--external-port", "7100", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));
    // Without a wish, the second client gets a port of its own.
    let second = d.json(&["map", "tcp", "7009", "--detach", "--json"]);
    assert_ne!(external(&second), external(&first));
    let table = lab.igd_table();
    let to_first = table.iter().find(|e| e.1 == 7100).unwrap();
    assert_eq!(
        to_first.3, 7008,
        "the first mapping is untouched: {table:?}"
    );
}

/// A user other than root gets `broker.max_maps_per_minute` map requests
/// at once, then `limit` with the wait (refused ones count: each still
/// costs a check); root is not limited.
#[test]
fn an_unprivileged_user_maps_at_most_its_rate() {
    let lab = Lab::up(GatewayOptions::default());
    let p = policy(&["upnp-igd"], "max_maps_per_minute = 3", "");
    let d = Daemon::start(&lab, "broker", &p);
    use std::os::unix::fs::PermissionsExt;
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for _ in 0..3 {
        // Nobody listens there as nobody: refused, but a map asked.
        let out = d.cli_as_nobody(&["map", "tcp", "7013", "--detach"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not-owner"), "{err}");
    }
    let out = d.cli_as_nobody(&["map", "tcp", "7013", "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("limit") && err.contains("max_maps_per_minute") && err.contains("try again"),
        "{err}"
    );
    // Root is not limited.
    let _app = Reaped(lab.listen(true, 7013, 60));
    for _ in 0..4 {
        let lease = d.json(&["map", "tcp", "7013", "--detach", "--json"]);
        d.json(&["unmap", &lease["id"].to_string(), "--json"]);
    }
}

#[test]
fn a_forbidden_uid_is_refused() {
    let lab = Lab::up(GatewayOptions::default());
    // Only root may map; everyone else is refused.
    let p = policy(&["upnp-igd"], "", "[[access]]\nuids = [0]\n");
    let d = Daemon::start(&lab, "broker", &p);
    let _app = Reaped(lab.listen(true, 7010, 60));
    // Let an unprivileged user reach the socket.
    use std::os::unix::fs::PermissionsExt;
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = d.cli_as_nobody(&["map", "tcp", "7010", "--detach"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unauthorized") && err.contains("uid 65534"),
        "{err}"
    );
    assert_eq!(forwards(&lab), 0);
    // Root is still served.
    d.json(&["map", "tcp", "7010", "--detach", "--json"]);
    assert_eq!(forwards(&lab), 1);
    // The hole log has the refusal, whose it was, and then root's hole.
    let refused = holes(&d, &["--activity", "refused"]);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let r = &refused[0];
    assert_eq!(
        (r["activity_id"].as_u64(), r["status"].as_str()),
        (Some(5), Some("Failure"))
    );
    assert_eq!(r["actor"]["user"]["uid"], "65534");
    assert_eq!(r["actor"]["process"]["name"], "p2pb");
    assert_eq!(r["dst_endpoint"]["port"], 7010);
    assert!(
        r["status_detail"]
            .as_str()
            .unwrap()
            .contains("unauthorized"),
        "{r}"
    );
    let mapped = holes(&d, &["--uid", "0", "--port", "7010"]);
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    assert_eq!(mapped[0]["activity_name"], "mapped");
    assert_eq!(
        holes(&d, &["--uid", "65534", "--activity", "mapped"]).len(),
        0
    );
}

/// `p2pb audit --json` with `filters`, over the daemon's hole log.
fn holes(d: &Daemon, filters: &[&str]) -> Vec<Value> {
    let state = d.state.to_str().unwrap();
    let mut args = vec!["audit", "--json", "--state-dir", state];
    args.extend_from_slice(filters);
    let out = d.cli(&args);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bad_requests_get_json_errors_and_the_connection_survives() {
    use std::io::{BufRead, BufReader, Write};
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &all_modes());
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    let huge = format!(
        "{{\"v\":1,\"id\":9,\"op\":\"list\",\"pad\":\"{}\"}}",
        "x".repeat(20_000)
    );
    let requests = [
        "garbage".to_string(),
        r#"{"v":2,"id":1,"op":"list"}"#.to_string(),
        huge,
        r#"{"v":1,"id":3,"op":"map","transport":"tcp","port":70000}"#.to_string(),
        r#"{"v":1,"id":4,"op":"unmap","lease":999}"#.to_string(),
        r#"{"v":1,"id":5,"op":"map","transport":"tcp","port":8000,"address":"203.0.113.5"}"#
            .to_string(),
        r#"{"v":1,"id":6,"op":"status"}"#.to_string(),
    ];
    for r in &requests {
        s.write_all(r.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
    }
    let mut by_id = std::collections::BTreeMap::new();
    let mut anonymous = Vec::new();
    for _ in 0..requests.len() {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(v["v"], 1);
        match v["id"].as_u64() {
            Some(id) => {
                by_id.insert(id, v);
            }
            None => anonymous.push(v["error"]["code"].as_str().unwrap().to_string()),
        }
    }
    anonymous.sort();
    assert_eq!(anonymous, vec!["bad-request", "too-large"]);
    let code = |id: u64| by_id[&id]["error"]["code"].as_str().unwrap().to_string();
    assert_eq!(code(1), "unsupported-version");
    assert_eq!(code(3), "bad-request");
    assert!(
        by_id[&3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("70000")
    );
    assert_eq!(code(4), "not-found");
    assert_eq!(code(5), "unauthorized");
    assert!(
        by_id[&5]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("203.0.113.5")
    );
    assert_eq!(by_id[&6]["ok"], true, "the connection still serves");
    assert_eq!(forwards(&lab), 0);
    // And the daemon serves others.
    d.json(&["status", "--json"]);
}

#[test]
fn a_lan_client_authenticates_and_maps_only_its_own_address() {
    let lab = Lab::up(GatewayOptions::default());
    // A long random token, and a short one whose digest is listed too.
    let token = "9f3c1e7a5b2d4f60a8c7e1b3d5f7092c4e6a8b0d2f4163a5";
    let digest = |t: &str| hex::encode(p2pbroker::sha256(t.as_bytes()));
    let lan = format!(
        "[lan]\nlisten = \"{}:7400\"\ntoken_sha256 = [\"{}\", \"{}\"]\n",
        lab::HOST_IP,
        digest(token),
        digest("s3cret")
    );
    let p = format!("{}\n{lan}", all_modes());
    let d = Daemon::start(&lab, "broker", &p);
    let addr = format!("{}:7400", lab::HOST_IP);
    let lan_cli = |token: &str, args: &[&str]| {
        let env = format!("P2PB_TOKEN={token}");
        let mut all = vec!["env", &env, harness::p2pb(), "--lan", &addr];
        all.extend_from_slice(args);
        lab.exec(lab::Ns::Host, &all)
    };
    let wrong = "0".repeat(48);
    let out = lan_cli(&wrong, &["map", "tcp", "7011", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    // Too short to be secret, listed or not.
    let out = lan_cli("s3cret", &["map", "tcp", "7011", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unauthorized") && err.contains("p2pb lan token"),
        "{err}"
    );
    let out = lan_cli(
        token,
        &["map", "tcp", "7011", "--detach", "--address", "10.0.0.9"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may only map its own address"), "{err}");
    let out = lan_cli(token, &["map", "tcp", "7011", "--detach", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lease: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lease["internal"], format!("{}:7011", lab::HOST_IP));
    assert_eq!(
        lease["owner_uid"], 65534,
        "LAN clients count as the policy's LAN uid"
    );
    let _server = Reaped(lab.listen(true, 7011, 30));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(lab.reach(true, &external(&lease)), "hello-from-host");
    assert_eq!(d.json(&["list", "--json"]).as_array().unwrap().len(), 1);

    // Revoked by a reload: a connection holding a lease with the token is
    // closed (its lease released), and the token no longer passes.
    let env = format!("P2PB_TOKEN={token}");
    let mut holder = Reaped(lab.spawn(
        lab::Ns::Host,
        "lan-holder",
        &[
            "env",
            &env,
            harness::p2pb(),
            "--lan",
            &addr,
            "map",
            "tcp",
            "7012",
        ],
    ));
    daemon::eventually("the held LAN lease is listed", 20, || {
        d.json(&["list", "--json"]).as_array().unwrap().len() == 2
    });
    let without = lan.replace(&format!("\"{}\", ", digest(token)), "");
    assert_ne!(without, lan);
    d.reload(&format!("{}\n{without}", all_modes()));
    daemon::eventually("the holder's connection is closed", 20, || {
        matches!(holder.0.try_wait(), Ok(Some(_)))
    });
    daemon::eventually("its lease is released", 20, || {
        d.json(&["list", "--json"]).as_array().unwrap().len() == 1
    });
    assert!(d.log().contains("no longer in the policy"), "{}", d.log());
    let out = lan_cli(token, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    // Listed again; tried once the reload is done (each refusal counts
    // toward the back-off below, and a success clears them).
    d.reload(&p);
    daemon::eventually("the second reload is done", 20, || {
        d.log().matches("SIGHUP: policy").count() >= 2
    });
    let out = lan_cli(token, &["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Guessing: after a few wrong tokens the source is refused at once,
    // even with the right token.
    for _ in 0..5 {
        let out = lan_cli(&wrong, &["list"]);
        assert_eq!(out.status.code(), Some(1));
    }
    let out = lan_cli(token, &["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("limit") && err.contains("too many failed authentications"),
        "{err}"
    );
    assert!(
        d.log().contains("failed LAN authentications"),
        "{}",
        d.log()
    );
}

#[test]
fn one_user_gets_its_share_of_connections_and_slow_lines_are_cut() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    let lab = Lab::up(GatewayOptions::default());
    let p = policy(&["upnp-igd"], "max_connections_per_client = 3", "");
    let d = Daemon::start(&lab, "broker", &p);
    // The answer to a `list` on `s` (empty if the daemon closed it).
    let served = |s: &UnixStream| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut line = String::new();
        if (&*s)
            .write_all(b"{\"v\":1,\"id\":1,\"op\":\"list\"}\n")
            .is_ok()
        {
            let _ = BufReader::new(s).read_line(&mut line);
        }
        line
    };
    // Root holds three connections: the cap. The connection of the
    // start-up check (`p2pb status`) may still count until the daemon has
    // seen it close: try again until three are served, within a bound.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let held: Vec<UnixStream> = loop {
        let held: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&d.socket).unwrap())
            .collect();
        let answers: Vec<String> = held.iter().map(served).collect();
        if answers.iter().all(|a| a.contains("\"ok\":true")) {
            break held;
        }
        assert!(
            std::time::Instant::now() < until,
            "three connections were never served: {answers:?}"
        );
        drop(held);
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // A fourth gets one `limit` line and is closed.
    let mut over = UnixStream::connect(&d.socket).unwrap();
    over.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut text = String::new();
    over.read_to_string(&mut text).unwrap();
    assert!(
        text.contains("\"code\":\"limit\"") && text.contains("max_connections_per_client"),
        "{text}"
    );
    // The CLI says why.
    let out = d.cli(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("limit"), "{err}");
    // Another user is still served.
    use std::os::unix::fs::PermissionsExt;
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = d.cli_as_nobody(&["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A held connection that starts a line and never ends it is cut (after
    // 10 s), which gives its slot back.
    (&held[0]).write_all(b"{\"v\":1,\"id\":2,").unwrap();
    let mut rest = Vec::new();
    held[0]
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let n = (&held[0]).read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "closed without an answer: {rest:?}");
    eventually("the slot is free again", 20, || {
        d.cli(&["list"]).status.success()
    });
    // Refusals were logged once, not per attempt.
    let log = d.log();
    assert_eq!(
        log.matches("max_connections_per_client").count(),
        1,
        "{log}"
    );
}

#[test]
fn two_applications_behind_two_gateways_reach_each_other() {
    let mut lab = Lab::up(GatewayOptions::default());
    let site = lab.add_site();
    let a = Daemon::start(&lab, "broker-a", &all_modes());
    let b = Daemon::start_in(&site.host, &lab.path(""), "broker-b", &all_modes());
    // Each application asks its own broker to make its port reachable.
    let _app_a = Reaped(lab.listen(true, 7020, 30));
    let _app_b = Reaped(site.listen(7021, 30));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lease_a = a.json(&["map", "tcp", "7020", "--detach", "--json"]);
    let lease_b = b.json(&["map", "tcp", "7021", "--detach", "--json"]);
    let (ext_a, ext_b) = (external(&lease_a), external(&lease_b));
    assert!(ext_a.starts_with(lab::WAN_IP), "{ext_a}");
    assert!(ext_b.starts_with(lab::site::WAN2_IP), "{ext_b}");
    // A reaches B's application and B reaches A's, each through both NATs.
    assert_eq!(
        lab::site::reach_from(&lab.ns(lab::Ns::Host), &ext_b),
        "hello-from-host"
    );
    assert_eq!(lab::site::reach_from(&site.host, &ext_a), "hello-from-host");
    drop(b);
    assert_eq!(
        lab::site::reach_from(&lab.ns(lab::Ns::Host), &ext_b),
        "",
        "released with broker B"
    );
}

/// The built-in policy's MODs plus the stun MOD and the lab's STUN server
/// (both addresses).
fn with_stun(order: &[&str]) -> String {
    format!(
        "{}\n[modes.stun]\ngrants = [\"udp:send,receive@stun:1-65535\"]\n\
         [services]\nstun = [\"{PUB_IP}:3478\", \"{PUB_ALT_IP}:3478\"]\n",
        policy(order, "", "")
    )
}

#[test]
fn probe_shows_a_symmetric_nat_and_a_failed_map_says_only_a_relay_helps() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat: NatKind::Symmetric,
    });
    let d = Daemon::start(&lab, "broker", &with_stun(&["pcp", "nat-pmp"]));
    let p = d.json(&["probe", "--json"]);
    let nat = &p["nat"];
    assert_eq!(nat["mode"], "stun", "{p}");
    assert_eq!(nat["ok"], true, "{p}");
    assert_eq!(nat["mapping"], "address-and-port-dependent", "{nat}");
    assert_eq!(nat["filtering"], "address-and-port-dependent", "{nat}");
    assert_eq!(nat["traversal"], "relay", "{nat}");
    assert_eq!(nat["server"], format!("{PUB_IP}:3478"));
    assert!(p.get("double_nat_why").is_none(), "{p}");
    // The stun MOD maps nothing, and is never chosen for it.
    assert_ne!(p["chosen"], "stun", "{p}");
    let text = String::from_utf8_lossy(&d.cli(&["probe"]).stdout).to_string();
    assert!(
        text.contains("NAT behaviour:     mapping address-and-port-dependent"),
        "{text}"
    );
    assert!(text.contains("only a relay gets through"), "{text}");

    let _app = Reaped(lab.listen(false, 7011, 30));
    let out = d.cli(&["map", "udp", "7011", "--detach", "--json"]);
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only a relay (TURN) reaches this host"),
        "{err}"
    );
}

#[test]
fn probe_agrees_with_the_gateway_behind_a_full_cone_nat() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: true,
        nat: NatKind::FullCone,
    });
    let d = Daemon::start(&lab, "broker", &with_stun(&["pcp", "nat-pmp"]));
    let p = d.json(&["probe", "--json"]);
    assert_eq!(p["nat"]["mapping"], "endpoint-independent", "{p}");
    assert_eq!(p["nat"]["traversal"], "hole-punching", "{p}");
    // NAT-PMP's external address is the one the STUN server sees: one NAT.
    let pmp = p["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["mode"] == "nat-pmp")
        .unwrap();
    assert_eq!(pmp["external_address"], lab::WAN_IP, "{p}");
    assert!(p.get("double_nat_why").is_none(), "{p}");
    assert_eq!(p["chosen"], "pcp", "{p}");
}

/// Another NAT beyond the home gateway, as a carrier's: the public side
/// rewrites the gateway's address before the STUN server sees it.
const UPSTREAM_NAT: &str = "198.51.100.9";

#[test]
fn probe_calls_out_a_nat_beyond_the_gateway_when_stun_sees_another_address() {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: true,
        nat: NatKind::PortRestricted,
    });
    // Everything the gateway sends to the public side arrives from the
    // carrier's address (source NAT on the way in).
    let rules = format!(
        "table ip carrier {{\n  chain input {{\n    type nat hook input priority 100; policy accept;\n    \
         ip saddr {} snat to {UPSTREAM_NAT}\n  }}\n}}\n",
        lab::WAN_IP
    );
    let file = lab.path("carrier.nft");
    std::fs::write(&file, rules).unwrap();
    lab.must(lab::Ns::Pub, &["nft", "-f", file.to_str().unwrap()]);

    let d = Daemon::start(&lab, "broker", &with_stun(&["pcp", "nat-pmp"]));
    let p = d.json(&["probe", "--json"]);
    assert_eq!(p["nat"]["ok"], true, "{p}");
    assert!(
        p["nat"]["reflexive"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("{UPSTREAM_NAT}:"))),
        "{p}"
    );
    // The gateway's protocol reports its own WAN address; the STUN server
    // sees the carrier's: the broker says there is another NAT.
    let why = p["double_nat_why"].as_str().unwrap_or_default();
    assert!(
        why.contains(lab::WAN_IP) && why.contains(UPSTREAM_NAT),
        "{p}"
    );
    assert_eq!(p["double_nat"], true, "{p}");
    let text = String::from_utf8_lossy(&d.cli(&["probe"]).stdout).to_string();
    assert!(text.contains(UPSTREAM_NAT), "{text}");
}

/// SIGHUP (`systemctl reload`) re-reads the policy file and applies it as
/// a fleet push is applied: a lease whose MOD is still permitted stays, a
/// policy that does not parse is refused with the last good one kept, and
/// a lease whose MOD the new policy drops is released on the gateway.
#[test]
fn sighup_reloads_the_policy_keeping_leases_and_the_last_good_policy() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &policy(&["pcp"], "", ""));
    let _app = Reaped(lab.listen(true, 7040, 120));
    let lease = d.json(&["map", "tcp", "7040", "--detach", "--json"]);
    assert_eq!(lease["mode"], "pcp", "{lease}");
    assert_eq!(forwards(&lab), 1);
    let source = |d: &Daemon| d.json(&["status", "--json"])["policy"]["source"].clone();
    let ids = |d: &Daemon| {
        d.json(&["list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].clone())
            .collect::<Vec<_>>()
    };

    d.reload(&policy(&["nat-pmp", "pcp"], "", ""));
    eventually("reloaded", 20, || {
        source(&d)
            .as_str()
            .is_some_and(|s| s.ends_with("(reloaded)"))
    });
    assert_eq!(ids(&d), vec![lease["id"].clone()], "the pcp lease stays");
    assert_eq!(forwards(&lab), 1);

    let before = source(&d);
    d.reload("version = 1\norder = [\"ghost\"]\n");
    eventually("the refusal is logged", 20, || {
        d.log().contains("refused, the last good one stays")
    });
    assert!(d.log().contains("ghost"), "{}", d.log());
    assert_eq!(source(&d), before);
    assert_eq!(ids(&d), vec![lease["id"].clone()]);

    let without_pcp = policy(&["nat-pmp"], "", "").replace(
        "[modes.pcp]\ngrants = [\"udp:send,receive@gateway:5351\"]\n",
        "",
    );
    assert!(!without_pcp.contains("[modes.pcp]"));
    d.reload(&without_pcp);
    eventually("the lease of the dropped MOD is released", 20, || {
        ids(&d).is_empty() && forwards(&lab) == 0
    });
}

/// A reload whose access rules no longer cover a lease releases it (and
/// says why in the hole log); a lease they still cover stays.
#[test]
fn a_reload_releases_the_leases_its_access_rules_no_longer_allow() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &policy(&["pcp"], "", ""));
    let _apps = [7046, 7047].map(|p| Reaped(lab.listen(true, p, 120)));
    let kept = d.json(&["map", "tcp", "7047", "--detach", "--json"]);
    let gone = d.json(&["map", "tcp", "7046", "--detach", "--json"]);
    assert_eq!(forwards(&lab), 2);
    d.reload(&policy(
        &["pcp"],
        "",
        "[[access]]\nports = \"7047\"\npersist = true",
    ));
    eventually("the uncovered lease is released", 20, || {
        forwards(&lab) == 1 && d.json(&["list", "--json"]).as_array().unwrap().len() == 1
    });
    let left = d.json(&["list", "--json"]);
    assert_eq!(left[0]["id"], kept["id"], "{left}");
    let released = holes(&d, &["--activity", "released"]);
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["unmapped"]["hole"]["lease_id"], gone["id"]);
    let why = released[0]["status_detail"].as_str().unwrap();
    assert!(why.contains("no longer allowed by the new policy"), "{why}");
}

/// A reload that retires a MOD while a map through it is under way: the
/// gateway has made the rule but its answer is held back until the new
/// policy is in force, so the map lands after the reload looked for the
/// retired MOD's leases. The map undoes itself and says why, rather than
/// leave a lease no policy permits (and nobody would unmap).
#[test]
fn a_map_under_way_when_a_reload_retires_its_mod_is_undone() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &patient_pcp(&["pcp", "nat-pmp"], ""));
    let _app = Reaped(lab.listen(true, 7044, 120));
    let probe = d.json(&["probe", "--json"]);
    assert_eq!(probe["chosen"], "pcp", "{probe}");
    hold_pcp_answers(&lab);
    let mut mapper = d.hold("mapper", &["tcp", "7044", "--detach", "--mode", "pcp"]);
    eventually("the gateway made the rule", 20, || forwards(&lab) == 1);
    let without_pcp = policy(&["nat-pmp"], "", "").replace(
        "[modes.pcp]\ngrants = [\"udp:send,receive@gateway:5351\"]\n",
        "",
    );
    assert!(!without_pcp.contains("[modes.pcp]"));
    d.reload(&without_pcp);
    eventually("the reload is done", 20, || {
        d.log().contains("SIGHUP: policy")
    });
    let out = answer_and_end(&lab, &d, &mut mapper);
    assert!(
        out.contains("the policy changed while it was mapped"),
        "{out}"
    );
    eventually("no lease and no forward left", 20, || {
        d.json(&["list", "--json"]).as_array().unwrap().is_empty() && forwards(&lab) == 0
    });
    // It was a hole for a moment: the hole log has it open, then closed.
    let mapped = holes(&d, &["--activity", "mapped"]);
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    let released = holes(&d, &["--activity", "released"]);
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(
        released[0]["unmapped"]["hole"]["lease_id"],
        mapped[0]["unmapped"]["hole"]["lease_id"]
    );
}

/// As above, with the access rules: a map under way when a reload stops
/// covering its port is retracted when it lands.
#[test]
fn a_map_under_way_when_a_reload_stops_allowing_it_is_retracted() {
    let lab = Lab::up(GatewayOptions::default());
    let with = |access: &str| patient_pcp(&["pcp"], access);
    let d = Daemon::start(&lab, "broker", &with(""));
    let _app = Reaped(lab.listen(true, 7048, 120));
    hold_pcp_answers(&lab);
    let mut mapper = d.hold("mapper", &["tcp", "7048", "--detach"]);
    eventually("the gateway made the rule", 20, || forwards(&lab) == 1);
    d.reload(&with("[[access]]\nports = \"9000\""));
    eventually("the reload is done", 20, || {
        d.log().contains("SIGHUP: policy")
    });
    let out = answer_and_end(&lab, &d, &mut mapper);
    assert!(out.contains("policy does not allow"), "{out}");
    eventually("no lease and no forward left", 20, || {
        d.json(&["list", "--json"]).as_array().unwrap().is_empty() && forwards(&lab) == 0
    });
}

/// A reload retires the MOD of a lease whose gateway does not answer the
/// unmap: the release is retried through the retired MOD until the gateway
/// answers, and the hole log says the hole stayed open, then when it closed.
#[test]
fn a_retired_mods_failed_release_is_retried_and_logged_until_it_closes() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", &policy(&["pcp", "nat-pmp"], "", ""));
    let _app = Reaped(lab.listen(true, 7045, 120));
    let lease = d.json(&["map", "tcp", "7045", "--detach", "--json", "--mode", "pcp"]);
    assert_eq!(lease["mode"], "pcp", "{lease}");
    assert_eq!(forwards(&lab), 1);
    hold_pcp_requests(&lab);
    let without_pcp = policy(&["nat-pmp"], "", "").replace(
        "[modes.pcp]\ngrants = [\"udp:send,receive@gateway:5351\"]\n",
        "",
    );
    d.reload(&without_pcp);
    eventually("the unmap failed", 60, || d.log().contains("unmap failed"));
    assert_eq!(forwards(&lab), 1, "the hole is still open");
    let released = holes(&d, &["--activity", "released"]);
    assert_eq!(released.len(), 1, "{released:?}");
    let why = released[0]["status_detail"].as_str().unwrap();
    assert!(why.contains("the hole stays open"), "{why}");
    // The gateway answers again: a retry, through the retired MOD, ends it.
    lab.must(Ns::Gw, &["nft", "delete", "table", "inet", "hold"]);
    eventually("the retry removed the forward", 60, || forwards(&lab) == 0);
    eventually("the hole log says when it closed", 20, || {
        holes(&d, &["--activity", "released"]).len() == 2
    });
    let released = holes(&d, &["--activity", "released"]);
    let why = released[1]["status_detail"].as_str().unwrap();
    assert!(why.contains("unmapped on the gateway on a retry"), "{why}");
    assert!(d.json(&["list", "--json"]).as_array().unwrap().is_empty());
}

/// A policy whose pcp MOD waits up to 30 s for an answer: a test holds
/// the answer back until a reload is done, however long that takes on a
/// loaded machine.
fn patient_pcp(order: &[&str], access: &str) -> String {
    let grants = "[modes.pcp]\ngrants = [\"udp:send,receive@gateway:5351\"]\n";
    let p = policy(order, "", access).replace(
        grants,
        &format!("{grants}config = {{ timeout_ms = \"30000\" }}\n"),
    );
    assert!(p.contains("30000"));
    p
}

/// Let the gateway's held answers through, wait (bounded) for the held
/// map to end, and return what it printed; it must have failed (exit 1).
fn answer_and_end(lab: &Lab, d: &Daemon, mapper: &mut std::process::Child) -> String {
    // The MOD's retransmission now gets its answer.
    lab.must(Ns::Gw, &["nft", "delete", "table", "inet", "hold"]);
    let mut status = None;
    eventually("the map ends", 40, || {
        status = mapper.try_wait().unwrap();
        status.is_some()
    });
    let out = d.held_output("mapper");
    assert_eq!(status.unwrap().code(), Some(1), "{out}");
    out
}

/// Drop what the gateway's PCP/NAT-PMP port sends (table `inet hold`) until
/// the test deletes the table: it acts on requests but its answers are lost.
fn hold_pcp_answers(lab: &Lab) {
    hold_pcp(lab, "output", "sport");
}

/// Drop what reaches the gateway's PCP/NAT-PMP port (table `inet hold`)
/// until the test deletes the table: requests never arrive.
fn hold_pcp_requests(lab: &Lab) {
    hold_pcp(lab, "input", "dport");
}

fn hold_pcp(lab: &Lab, hook: &str, port: &str) {
    lab.must(Ns::Gw, &["nft", "add", "table", "inet", "hold"]);
    let chain = format!("{{ type filter hook {hook} priority 0 ; }}");
    lab.must(
        Ns::Gw,
        &["nft", "add", "chain", "inet", "hold", "c", &chain],
    );
    lab.must(
        Ns::Gw,
        &[
            "nft", "add", "rule", "inet", "hold", "c", "udp", port, "5351", "drop",
        ],
    );
}

/// A stop that arrives while a map is under way waits for it and then
/// releases what it mapped: the gateway has made the rule but its answer
/// is held back (dropped at the gateway) until the stop has begun, so the
/// map lands in the table only after SIGTERM.
#[test]
fn a_stop_during_a_map_releases_the_mapping_it_made() {
    let lab = Lab::up(GatewayOptions::default());
    let mut d = Daemon::start(&lab, "broker", &policy(&["pcp"], "", ""));
    let _app = Reaped(lab.listen(true, 7043, 120));
    // Probed before the answers are held back.
    let probe = d.json(&["probe", "--json"]);
    assert_eq!(probe["chosen"], "pcp", "{probe}");
    hold_pcp_answers(&lab);
    let mut holder = d.hold("holder", &["tcp", "7043"]);
    eventually("the gateway made the rule", 20, || forwards(&lab) == 1);
    d.terminate();
    eventually("the stop has begun", 20, || d.log().contains("SIGTERM"));
    // The MOD's retransmission now gets its answer.
    lab.must(Ns::Gw, &["nft", "delete", "table", "inet", "hold"]);
    d.stop();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(forwards(&lab), 0, "{}\n{}", lab.gateway_rules(), d.log());
    assert!(!d.log().contains("could not be unmapped"), "{}", d.log());
}

/// With `broker.keep_leases_on_stop`, a clean stop keeps persistent leases
/// mapped and journaled and the next start adopts them; a lease a client
/// connection held is released as always. Without it (reloaded), a stop
/// releases everything.
#[test]
fn a_clean_stop_keeps_persistent_leases_when_the_policy_says_so() {
    let lab = Lab::up(GatewayOptions::default());
    let keep = policy(&["pcp"], "keep_leases_on_stop = true", "");
    let mut d = Daemon::start(&lab, "broker", &keep);
    let _apps = [7041, 7042].map(|p| Reaped(lab.listen(true, p, 120)));
    let kept = d.json(&["map", "tcp", "7041", "--detach", "--json"]);
    let mut holder = d.hold("holder", &["tcp", "7042"]);
    eventually("both leases mapped", 20, || forwards(&lab) == 2);
    d.stop();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(forwards(&lab), 1, "{}", lab.gateway_rules());
    assert!(
        d.log().contains("1 persistent lease(s) kept"),
        "{}",
        d.log()
    );
    d.restart();
    let list = d.json(&["list", "--json"]);
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, vec![&kept["id"]], "adopted at the next start");
    assert_eq!(forwards(&lab), 1);
    d.reload(&policy(&["pcp"], "", ""));
    eventually("reloaded", 20, || d.log().contains("reloaded"));
    d.stop();
    assert_eq!(forwards(&lab), 0, "{}", lab.gateway_rules());
}
