//! `reach` (`p2pb map --punch`) in the lab: with no gateway that maps, the
//! NAT's behaviour decides. Behind the lab's endpoint-independent NAT the
//! answer is to hole-punch and no relay is allocated on coturn; behind a
//! symmetric NAT the same request is relayed. A plain `map` relays in both
//! (the application said nothing about punching).

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use daemon::{Daemon, Reaped, eventually};
use lab::{GatewayOptions, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP, TURN_PASSWORD, TURN_USER, WAN_IP};
use serde_json::Value;

/// NAT-PMP first (the lab's gateway does not speak it), the relay last,
/// and the stun MOD with the lab's RFC 5780 server on its two addresses.
fn policy() -> String {
    format!(
        "version = 1\norder = [\"nat-pmp\", \"turn-relay\"]\n\
         [services]\nstun = [\"{PUB_IP}:3478\", \"{PUB_ALT_IP}:3478\"]\n\
         [[services.turn]]\nurl = \"turn:{PUB_IP}:3478\"\nusername = \"{TURN_USER}\"\n\
         credential = \"{TURN_PASSWORD}\"\n\
         [modes.turn-relay]\ngrants = [\"udp:send,receive@turn:1-65535\"]\n\
         [modes.stun]\ngrants = [\"udp:send,receive@stun:1-65535\"]\n\
         [modes.nat-pmp]\ngrants = [\"udp:send,receive@gateway:5351\"]\n"
    )
}

fn lab(nat: NatKind) -> Lab {
    Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat,
    })
}

fn start(lab: &Lab) -> Daemon {
    let modes = daemon::modes_folder(
        &lab.path("reach-modes"),
        &["modes/nat-pmp", "modes/turn-relay", "modes/stun"],
    );
    Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "reach",
        &policy(),
        &modes,
        &[],
    )
}

fn punch_lines(d: &Daemon) -> Vec<Value> {
    let log = std::fs::read_to_string(d.state.join("holes.jsonl")).unwrap_or_default();
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["activity_name"] == "punch")
        .collect()
}

#[test]
fn behind_an_endpoint_independent_nat_reach_says_punch_and_spends_no_relay() {
    // The lab's default: conntrack masquerade, endpoint-independent
    // mapping, address-and-port-dependent filtering (a common home NAT).
    let lab = lab(NatKind::PortRestricted);
    let d = start(&lab);
    let _app = Reaped(lab.listen(false, 7070, 120));

    let r = d.json(&["map", "udp", "7070", "--punch", "--detach", "--json"]);
    let p = &r["punch"];
    assert_eq!(p["nat"]["traversal"], "hole-punching", "{r}");
    assert_eq!(p["external_address"], WAN_IP, "the NAT's address: {r}");
    assert_eq!(p["nat"]["mapping"], "endpoint-independent", "{r}");
    let tried: Vec<&str> = p["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["mode"].as_str().unwrap())
        .collect();
    assert_eq!(tried, ["nat-pmp"], "only the gateway MOD was tried: {r}");
    assert_eq!(d.json(&["list", "--json"]).as_array().unwrap().len(), 0);
    assert_eq!(lab.relay_allocations(), Vec::<u16>::new(), "no relay spent");
    let logged = punch_lines(&d);
    assert_eq!(logged.len(), 1, "the decision is in the hole log");
    assert!(
        logged[0]["status_detail"]
            .as_str()
            .unwrap()
            .contains("hole-punching"),
        "{}",
        logged[0]
    );

    // A plain map does not know the application can punch: it relays.
    let lease = d.json(&["map", "udp", "7070", "--detach", "--json"]);
    assert_eq!(lease["mode"], "turn-relay", "{lease}");
    assert_eq!(lab.relay_allocations().len(), 1);
    d.json(&["unmap", &lease["id"].to_string(), "--json"]);
    // coturn closes a deleted allocation's socket a moment later.
    eventually("coturn frees the allocation", 10, || {
        lab.relay_allocations().is_empty()
    });
}

#[test]
fn behind_a_symmetric_nat_reach_relays() {
    let lab = lab(NatKind::Symmetric);
    let d = start(&lab);
    let _app = Reaped(lab.listen(false, 7071, 120));

    let r = d.json(&["map", "udp", "7071", "--punch", "--detach", "--json"]);
    let lease = &r["lease"];
    assert_eq!(lease["mode"], "turn-relay", "{r}");
    assert_eq!(lease["relay"]["server"], format!("{PUB_IP}:3478"), "{r}");
    assert_eq!(lab.relay_allocations().len(), 1, "coturn's own view");
    assert!(punch_lines(&d).is_empty());
    let probe = d.json(&["probe", "--json"]);
    assert_eq!(probe["nat"]["traversal"], "relay", "{probe}");
    d.json(&["unmap", &lease["id"].to_string(), "--json"]);
    // coturn closes a deleted allocation's socket a moment later.
    eventually("coturn frees the allocation", 10, || {
        lab.relay_allocations().is_empty()
    });
}
