//! NAT behaviour discovery in the lab: for each of the gateway's NAT kinds,
//! the stun MOD (run through `p2pb mode run` in the host namespace) and
//! coturn's own classifier (`turnutils_natdiscovery`) must both give what
//! the kind is built to do. Also: without the optional grant hairpinning
//! is reported untested; a server that does not answer is a clear error.

#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use lab::nat::Behaviour;
use lab::{GatewayOptions, Lab, NatKind, PUB_ALT_IP, PUB_IP};
use serde_json::Value;

const STUN: &str = "modes/stun";
const HAIRPIN_GRANT: &str = "udp:send,receive@0.0.0.0/0:1-65535";

fn lab(nat: NatKind) -> Lab {
    Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat,
    })
}

/// `p2pb mode run stun CALL --json` in the host namespace.
fn stun(lab: &Lab, call: &str, servers: &str, extra_grants: &[&str]) -> Value {
    let component = harness::component_path(STUN);
    let config = format!("stun_servers={servers}");
    let mut args = vec![
        "mode",
        "run",
        "--json",
        "--grant",
        "udp:send,receive@stun:1-65535",
        "--config",
        &config,
    ];
    for g in extra_grants {
        args.extend_from_slice(&["--grant", g]);
    }
    args.push(component.to_str().unwrap());
    args.push(call);
    lab.p2pb_json(harness::p2pb(), &args)
}

fn both_servers() -> String {
    format!("{PUB_IP}:3478,{PUB_ALT_IP}:3478")
}

/// What the stun MOD says, in the reference classifier's shape.
fn ours(lab: &Lab) -> Behaviour {
    let v = stun(lab, "discover", &both_servers(), &[HAIRPIN_GRANT]);
    assert_eq!(v["ok"], true, "{v}");
    let r = &v["result"];
    assert_eq!(r["nat"], true, "{r}");
    assert_eq!(r["server"], format!("{PUB_IP}:3478"));
    assert!(
        r["reflexive"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", lab::WAN_IP)),
        "{r}"
    );
    Behaviour {
        mapping: r["mapping"].as_str().unwrap_or("unknown").into(),
        filtering: r["filtering"].as_str().unwrap_or("unknown").into(),
        hairpinning: r["hairpinning"] == true,
    }
}

fn expect(mapping: &str, filtering: &str, hairpinning: bool) -> Behaviour {
    Behaviour {
        mapping: mapping.into(),
        filtering: filtering.into(),
        hairpinning,
    }
}

fn check(nat: NatKind, want: Behaviour) {
    let lab = lab(nat);
    assert_eq!(lab.natdiscovery(), want, "turnutils_natdiscovery, {nat:?}");
    assert_eq!(ours(&lab), want, "the stun MOD, {nat:?}");
}

const EI: &str = "endpoint-independent";
const APD: &str = "address-and-port-dependent";

#[test]
fn full_cone_is_endpoint_independent_both_ways_and_hairpins() {
    check(NatKind::FullCone, expect(EI, EI, true));
}

#[test]
fn restricted_cone_filters_by_address() {
    check(NatKind::Restricted, expect(EI, "address-dependent", false));
}

#[test]
fn port_restricted_cone_filters_by_address_and_port() {
    check(NatKind::PortRestricted, expect(EI, APD, false));
}

#[test]
fn symmetric_maps_per_destination() {
    check(NatKind::Symmetric, expect(APD, APD, false));
}

#[test]
fn hairpinning_is_untested_without_the_optional_grant_and_probe_gives_the_reflexive_address() {
    let lab = lab(NatKind::FullCone);
    let v = stun(&lab, "discover", &both_servers(), &[]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["result"]["hairpinning"], Value::Null, "{v}");
    assert_eq!(v["result"]["mapping"], EI);
    let detail = v["result"]["detail"].as_str().unwrap();
    assert!(detail.contains("hairpinning untested"), "{detail}");

    // probe: one Binding request, the reflexive address and its class.
    let p = stun(&lab, "probe", &both_servers(), &[]);
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p["result"]["external_address"], lab::WAN_IP);
    assert_eq!(p["result"]["external_class"], "reserved");
    assert!(
        p["result"]["detail"]
            .as_str()
            .unwrap()
            .contains("RFC 5780 server"),
        "{p}"
    );
}

#[test]
fn a_silent_server_or_none_configured_is_a_clear_error() {
    let lab = lab(NatKind::PortRestricted);
    // Nothing listens on this port: no answer within the budget.
    let v = stun(&lab, "discover", &format!("{PUB_IP}:3999"), &[]);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], "mode", "{v}");
    let text = v.to_string();
    assert!(text.contains("did not answer"), "{v}");
    // No server in the policy.
    let v = stun(&lab, "probe", "", &[]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v.to_string().contains("no STUN server configured"), "{v}");
}

#[test]
fn the_parser_reads_natdiscoverys_verdicts() {
    let out = "NAT with Endpoint Independent Mapping!\n\
               NAT with Address and Port Dependent Filtering!\n";
    let b = lab::nat::parse(out);
    assert_eq!(b, expect(EI, APD, false));
    assert_eq!(lab::nat::parse("").mapping, "unknown");
}
