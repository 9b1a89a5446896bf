//! The port-mapping MODs (nat-pmp, pcp) against a real miniupnpd in the
//! NAT lab: map → the public peer reaches a listener behind the NAT →
//! renew → unmap → the peer no longer gets through; and a gateway restart
//! is detected on the next renew. The MOD runs through `p2pb mode run` inside the host's
//! namespace, exactly as an operator would run it there.

#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use lab::{GatewayOptions, Lab, Ns};
use serde_json::Value;

const NAT_PMP: &str = "modes/nat-pmp";
const PCP: &str = "modes/pcp";
const UPNP: &str = "modes/upnp-igd";

/// What each MOD is granted: exactly what its manifest asks for (its
/// protocol's needs; upnp-igd reaches the gateway only).
fn grants(rel: &str) -> Vec<String> {
    harness::manifest_grants(rel)
}

/// Run one lifecycle call of the MOD built from `rel` in the host namespace.
fn call(lab: &Lab, rel: &str, call: &str, extra: &[&str]) -> Value {
    let component = harness::component_path(rel);
    let mut args = vec!["mode", "run", "--json"];
    let grants = grants(rel);
    for g in &grants {
        args.extend_from_slice(&["--grant", g]);
    }
    let path = component.to_str().unwrap().to_string();
    args.push(&path);
    args.push(call);
    args.extend_from_slice(extra);
    lab.p2pb_json(harness::p2pb(), &args)
}

fn lifecycle(lab: &Lab, rel: &str, tcp: bool, port: u16) {
    let transport = if tcp { "tcp" } else { "udp" };
    let internal = format!("{}:{port}", lab::HOST_IP);
    let mut server = lab.listen(tcp, port, 30);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let probe = call(lab, rel, "probe", &[]);
    assert_eq!(probe["ok"], true, "{probe}");
    assert_eq!(probe["result"]["gateway"], lab::GW_LAN_IP);
    if rel != PCP {
        assert_eq!(probe["result"]["external_address"], lab::WAN_IP);
    }

    let m = call(
        lab,
        rel,
        "map",
        &[
            "--transport",
            transport,
            "--internal",
            &internal,
            "--lifetime",
            "600",
        ],
    );
    assert_eq!(m["ok"], true, "{m}");
    let external = m["result"]["external"].as_str().unwrap().to_string();
    assert!(external.starts_with(lab::WAN_IP), "{external}");
    // The grant was used, and only it.
    assert!(
        m["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["verdict"] == "allow"),
        "{m}"
    );
    assert_eq!(
        lab.reach(tcp, &external),
        "hello-from-host",
        "{transport} not reachable via {external}"
    );
    // An independent client (igd-next) sees the entry in the gateway's
    // table, pointing at our listener.
    let ext_port: u16 = external.rsplit_once(':').unwrap().1.parse().unwrap();
    let entry = (
        transport.to_uppercase(),
        ext_port,
        lab::HOST_IP.to_string(),
        port,
    );
    assert!(
        lab.igd_table().contains(&entry),
        "{entry:?} not in the gateway's table"
    );

    let mapping = m["result"].to_string();
    let r = call(
        lab,
        rel,
        "renew",
        &["--mapping", &mapping, "--lifetime", "900"],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["external"], external.as_str());

    let u = call(lab, rel, "unmap", &["--mapping", &r["result"].to_string()]);
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(
        lab.reach(tcp, &external),
        "",
        "{transport} still reachable after unmap"
    );
    assert!(
        !lab.igd_table().iter().any(|e| e.1 == ext_port),
        "entry left in the gateway's table"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn nat_pmp_maps_tcp_and_udp_through_a_real_gateway() {
    let lab = Lab::up(GatewayOptions::default());
    lifecycle(&lab, NAT_PMP, true, 4100);
    lifecycle(&lab, NAT_PMP, false, 4200);
    let rules = lab.gateway_rules();
    assert!(
        !rules.contains("dport 4100") && !rules.contains("dport 4200"),
        "left behind: {rules}"
    );
}

/// The lab's gateway as a router runs it (tests/lab/deployed.rs: the
/// benches compare clients against it): it maps like the debug one, and
/// the lab stops it on a restart and at teardown, though it is not the
/// lab's child.
#[test]
fn nat_pmp_maps_through_a_gateway_run_as_deployed_which_the_lab_stops() {
    let mut lab = Lab::up_as_deployed(GatewayOptions::default());
    lifecycle(&lab, NAT_PMP, true, 4013);
    let first = lab
        .deployed_gateway_pid()
        .expect("miniupnpd runs in the background");
    lab.restart_gateway();
    let second = lab
        .deployed_gateway_pid()
        .expect("it runs again after a restart");
    assert_ne!(first, second, "a new process");
    assert!(lab::deployed::exited(first), "the old one was stopped");
    drop(lab);
    assert!(
        lab::deployed::exited(second),
        "tearing the lab down stopped its gateway"
    );
}

#[test]
fn pcp_maps_tcp_and_udp_through_a_real_gateway() {
    let lab = Lab::up(GatewayOptions::default());
    lifecycle(&lab, PCP, true, 4400);
    lifecycle(&lab, PCP, false, 4500);
    let rules = lab.gateway_rules();
    assert!(
        !rules.contains("dport 4400") && !rules.contains("dport 4500"),
        "left behind: {rules}"
    );
}

#[test]
fn upnp_maps_tcp_and_udp_through_a_real_gateway() {
    let lab = Lab::up(GatewayOptions::default());
    lifecycle(&lab, UPNP, true, 5100);
    lifecycle(&lab, UPNP, false, 5200);
    let rules = lab.gateway_rules();
    assert!(
        !rules.contains("dport 5100") && !rules.contains("dport 5200"),
        "left behind: {rules}"
    );
}

#[test]
fn upnp_detects_a_gateway_restart_on_renew() {
    restart_is_detected(UPNP, 5300);
}

#[test]
fn nat_pmp_detects_a_gateway_restart_on_renew() {
    restart_is_detected(NAT_PMP, 4300);
}

#[test]
fn pcp_detects_a_gateway_restart_on_renew() {
    restart_is_detected(PCP, 4600);
}

fn restart_is_detected(rel: &str, port: u16) {
    let mut lab = Lab::up(GatewayOptions::default());
    let internal = format!("{}:{port}", lab::HOST_IP);
    let m = call(
        &lab,
        rel,
        "map",
        &[
            "--transport",
            "tcp",
            "--internal",
            &internal,
            "--lifetime",
            "600",
        ],
    );
    assert_eq!(m["ok"], true, "{m}");
    // Epochs count seconds: wait until the gateway's is well past the
    // RFCs' 2 s allowance (and a slow restart's second or two) so a reset
    // is distinguishable from clock skew.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lab.gateway_epoch().is_none_or(|e| e < 6) {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway's epoch never reached 6 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    lab.restart_gateway();
    let r = call(&lab, rel, "renew", &["--mapping", &m["result"].to_string()]);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["mode_error"], "mapping-lost", "{r}");
    // PMP/PCP see the epoch go back; UPnP finds the entry gone (714).
    let why = if rel == UPNP { "714" } else { "reset" };
    assert!(r["error"]["message"].as_str().unwrap().contains(why), "{r}");
}

#[test]
fn nat_pmp_switched_off_is_a_clear_error() {
    let lab = Lab::up(GatewayOptions {
        upnp: true,
        natpmp: false,
        ..GatewayOptions::default()
    });
    let p = call(&lab, NAT_PMP, "probe", &[]);
    assert_eq!(p["ok"], false, "{p}");
    // miniupnpd without NAT-PMP sends ICMP port unreachable: no answer.
    let kind = p["error"]["mode_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(kind == "timeout" || kind == "unavailable", "{p}");
}

#[test]
fn a_static_forward_declared_by_the_administrator_is_reachable() {
    let lab = Lab::up(GatewayOptions::default());
    // The administrator's own forward on the edge, outside miniupnpd's chains.
    lab.must(
        Ns::Gw,
        &[
            "nft",
            "insert",
            "rule",
            "inet",
            "filter",
            "prerouting",
            "iifname",
            "wan",
            "tcp",
            "dport",
            "7000",
            "dnat",
            "ip",
            "to",
            "10.0.0.2:7000",
        ],
    );
    lab.must(
        Ns::Gw,
        &[
            "nft", "insert", "rule", "inet", "filter", "forward", "ip", "daddr", "10.0.0.2", "tcp",
            "dport", "7000", "accept",
        ],
    );
    let mut server = lab.listen(true, 7000, 30);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let component = harness::component_path("modes/static");
    let forwards = format!("tcp {}:7000 -> {}:7000", lab::WAN_IP, lab::HOST_IP);
    let config = format!("forwards={forwards}");
    let out = lab.exec(
        Ns::Host,
        &[
            harness::p2pb(),
            "mode",
            "run",
            "--json",
            "--config",
            &config,
            component.to_str().unwrap(),
            "map",
            "--transport",
            "tcp",
            "--internal",
            "0.0.0.0:7000",
        ],
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["ok"], true, "{m}");
    let external = m["result"]["external"].as_str().unwrap();
    assert_eq!(external, format!("{}:7000", lab::WAN_IP));
    assert_eq!(lab.reach(true, external), "hello-from-host");
    let _ = server.kill();
    let _ = server.wait();
}
