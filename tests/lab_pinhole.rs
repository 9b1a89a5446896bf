//! IPv6 pinholes (upnp-igd through WANIPv6FirewallControl:1, pcp through
//! MAP v6) against a real miniupnpd in the dual-stack lab: the public peer
//! cannot reach the host's IPv6 listener → map → it can → renew → unmap →
//! it cannot, and no pinhole is left in the gateway's nftables chain; a
//! restarted gateway is `mapping-lost` on the next renew. The MOD runs
//! through `p2pb mode run` inside the host's namespace.

#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::time::Duration;

use lab::v6::{GW_LAN_IP6, HOST_IP6};
use lab::{GatewayOptions, Lab, Ns};
use serde_json::Value;

const PCP: &str = "modes/pcp";
const UPNP: &str = "modes/upnp-igd";

/// What each MOD ships with (its manifest): the same grants as for IPv4;
/// `ssdp` and `gateway` cover IPv6 too, and upnp-igd's `fe80::/64`
/// receive grant admits the gateway's link-local SSDP answers.
fn grants(rel: &str) -> Vec<String> {
    harness::manifest_grants(rel)
}

/// Run one lifecycle call of the MOD built from `rel` in the host namespace.
fn call(lab: &Lab, rel: &str, call: &str, extra: &[&str]) -> Value {
    let component = harness::component_path(rel);
    let path = component.to_str().unwrap().to_string();
    let mut args = vec!["mode", "run", "--json"];
    let grants = grants(rel);
    for g in &grants {
        args.extend_from_slice(&["--grant", g]);
    }
    args.extend_from_slice(&[&path, call]);
    args.extend_from_slice(extra);
    lab.p2pb_json(harness::p2pb(), &args)
}

fn map(lab: &Lab, rel: &str, tcp: bool, internal: &str) -> Value {
    let transport = if tcp { "tcp" } else { "udp" };
    let m = call(
        lab,
        rel,
        "map",
        &[
            "--transport",
            transport,
            "--internal",
            internal,
            "--lifetime",
            "600",
        ],
    );
    assert_eq!(m["ok"], true, "{m}");
    m
}

/// Whether a pinhole to the host's `port` is in the gateway's chain.
fn has_pinhole(lab: &Lab, port: u16) -> bool {
    let dport = format!("dport {port} ");
    lab.pinholes().iter().any(|r| r.contains(&dport))
}

/// The whole lifecycle for one transport. `internal` is `[::]` (the MOD
/// finds the host's address) or the host's address itself.
fn lifecycle(lab: &Lab, rel: &str, tcp: bool, internal_ip: &str, port: u16) {
    let mut server = lab.listen6(tcp, port, 60);
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("[{HOST_IP6}]:{port}");
    assert_eq!(
        lab.reach(tcp, &target),
        "",
        "{target} reachable before any pinhole: the gateway's firewall lets it in"
    );

    let m = map(lab, rel, tcp, &format!("[{internal_ip}]:{port}"));
    // Not a translation: the peer reaches the host's own address and port.
    assert_eq!(m["result"]["external"], target.as_str(), "{m}");
    assert!(
        m["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["verdict"] == "allow"),
        "{m}"
    );
    assert!(has_pinhole(lab, port), "{}", lab.firewall_rules());
    assert_eq!(lab.reach(tcp, &target), "hello-from-host", "{target}");

    let r = call(
        lab,
        rel,
        "renew",
        &["--mapping", &m["result"].to_string(), "--lifetime", "900"],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["external"], target.as_str());
    assert_eq!(lab.reach(tcp, &target), "hello-from-host", "after renew");

    let u = call(lab, rel, "unmap", &["--mapping", &r["result"].to_string()]);
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(
        lab.reach(tcp, &target),
        "",
        "{target} reachable after unmap"
    );
    assert!(
        !has_pinhole(lab, port),
        "left behind: {}",
        lab.firewall_rules()
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// Sends an IPv6 M-SEARCH from the host's eth0; prints the answer's
/// source address and its LOCATION.
const SSDP_SEARCH_V6: &str = r#"
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(2)
m = b"M-SEARCH * HTTP/1.1\r\nHOST: [FF02::C]:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n" \
    b"ST: urn:schemas-upnp-org:service:WANIPv6FirewallControl:1\r\n\r\n"
s.sendto(m, ("ff02::c", 1900, 0, socket.if_nametoindex("eth0")))
d, a = s.recvfrom(2048)
loc = [l.split(b":", 1)[1].strip() for l in d.split(b"\r\n") if l.lower().startswith(b"location:")]
print(a[0].split("%")[0]); print(loc[0].decode())
"#;

/// The facts upnp-igd's IPv6 SSDP rule rests on (its `origin` module):
/// the IGD answers from its link-local address, with a LOCATION on its
/// global LAN address, which is the host's IPv6 default gateway.
#[test]
fn ipv6_ssdp_answers_come_from_the_gateways_link_local_address() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let out = lab.must(Ns::Host, &["python3", "-c", SSDP_SEARCH_V6]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let (source, location) = (lines.next().unwrap(), lines.next().unwrap());
    let gw_link = lab.must(
        Ns::Gw,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "lan", "scope", "link",
        ],
    );
    let gw_link = String::from_utf8_lossy(&gw_link.stdout).to_string();
    assert!(source.starts_with("fe80:"), "{text}");
    assert!(
        gw_link.contains(&format!(" {source}/64 ")),
        "{source} vs {gw_link}"
    );
    assert_eq!(location, lab::v6::upnp_url6());
    let route = lab.must(Ns::Host, &["ip", "-6", "route", "show", "default"]);
    assert!(
        String::from_utf8_lossy(&route.stdout).contains(&format!("via {GW_LAN_IP6} ")),
        "{}",
        String::from_utf8_lossy(&route.stdout)
    );
}

#[test]
fn upnp_pinholes_for_tcp_and_udp_through_a_real_gateway() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    lifecycle(&lab, UPNP, true, "::", 6100);
    lifecycle(&lab, UPNP, false, HOST_IP6, 6200);
    assert!(lab.pinholes().is_empty(), "{}", lab.firewall_rules());
}

#[test]
fn pcp_v6_pinholes_for_tcp_and_udp_through_a_real_gateway() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    lifecycle(&lab, PCP, true, "::", 6300);
    lifecycle(&lab, PCP, false, HOST_IP6, 6400);
    assert!(lab.pinholes().is_empty(), "{}", lab.firewall_rules());
}

#[test]
fn upnp_pinhole_loss_is_detected_after_a_gateway_restart() {
    restart_is_detected(UPNP, 6500);
}

#[test]
fn pcp_v6_loss_is_detected_after_a_gateway_restart() {
    restart_is_detected(PCP, 6600);
}

fn restart_is_detected(rel: &str, port: u16) {
    let mut lab = Lab::up_dual_stack(GatewayOptions::default());
    let m = map(&lab, rel, true, &format!("[::]:{port}"));
    assert!(has_pinhole(&lab, port));
    // PCP epochs count seconds: let the gateway's grow past the RFC's 2 s
    // allowance so a reset is distinguishable from clock skew.
    std::thread::sleep(Duration::from_secs(4));
    lab.restart_gateway();
    let r = call(&lab, rel, "renew", &["--mapping", &m["result"].to_string()]);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["mode_error"], "mapping-lost", "{r}");
    // PCP sees the epoch go back; miniupnpd answers UpdatePinhole for an
    // unknown UniqueID with 402 (not the spec's 704).
    let why = if rel == UPNP { "402" } else { "reset" };
    assert!(r["error"]["message"].as_str().unwrap().contains(why), "{r}");
    assert!(
        !has_pinhole(&lab, port),
        "renew re-created the pinhole: {}",
        lab.firewall_rules()
    );
}

/// A raw PCP MAP v6 from the host (argv: server, client, port, nonce
/// byte, lifetime); prints the result code.
const PCP_MAP_V6: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(2)
cli = socket.inet_pton(socket.AF_INET6, sys.argv[2])
port = int(sys.argv[3]); nonce = bytes([int(sys.argv[4])]) * 12
req = struct.pack("!BBHI", 2, 1, 0, int(sys.argv[5])) + cli + nonce
req += struct.pack("!B3xHH", 6, port, port) + bytes(16)
s.sendto(req, (sys.argv[1], 5351))
print(s.recv(1100)[3])
"#;

#[test]
fn miniupnpd_loses_a_remapped_pcp_v6_nonce_and_the_mod_still_cleans_up() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let raw = |port: u16, lifetime: &str| -> String {
        let out = lab.must(
            Ns::Host,
            &[
                "python3",
                "-c",
                PCP_MAP_V6,
                GW_LAN_IP6,
                HOST_IP6,
                &port.to_string(),
                "65",
                lifetime,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The quirk, as the lab shows it: MAP, MAP again with the same nonce
    // (a renewal), then a delete with that nonce is NOT_AUTHORIZED (2) and
    // the pinhole stays.
    assert_eq!(raw(6700, "600"), "0");
    assert_eq!(raw(6700, "900"), "0");
    assert_eq!(
        raw(6700, "0"),
        "2",
        "miniupnpd kept the nonce after a re-MAP"
    );
    assert!(has_pinhole(&lab, 6700), "{}", lab.firewall_rules());

    // The MOD renews v6 mappings by delete-then-MAP: unmap still works.
    let mut current = map(&lab, PCP, true, "[::]:6800")["result"].clone();
    for lifetime in ["900", "1200"] {
        let r = call(
            &lab,
            PCP,
            "renew",
            &["--mapping", &current.to_string(), "--lifetime", lifetime],
        );
        assert_eq!(r["ok"], true, "{r}");
        current = r["result"].clone();
    }
    let u = call(&lab, PCP, "unmap", &["--mapping", &current.to_string()]);
    assert_eq!(u["ok"], true, "{u}");
    assert!(!has_pinhole(&lab, 6800), "{}", lab.firewall_rules());
}

#[test]
fn ipv6_without_a_v6_lan_is_a_clear_error() {
    // The IPv4-only lab: the host has link-local IPv6 only, no IPv6 route.
    let lab = Lab::up(GatewayOptions::default());
    let u = call(
        &lab,
        UPNP,
        "map",
        &["--transport", "tcp", "--internal", "[::]:6900"],
    );
    assert_eq!(u["ok"], false, "{u}");
    assert_eq!(u["error"]["mode_error"], "unsupported", "{u}");
    assert!(
        u["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[ff02::c]"),
        "{u}"
    );
    let p = call(
        &lab,
        PCP,
        "map",
        &["--transport", "tcp", "--internal", "[::]:6900"],
    );
    assert_eq!(p["ok"], false, "{p}");
    assert_eq!(p["error"]["mode_error"], "unavailable", "{p}");
    assert!(
        p["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no IPv6 default gateway"),
        "{p}"
    );
}
