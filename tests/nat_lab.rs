//! The lab's NAT kinds behave as their names say, by coturn's own
//! classifier (`turnutils_natdiscovery`): the ground truth the stun MOD's
//! classification is compared with.

mod lab;

use lab::{GatewayOptions, Lab, NatKind};

fn classify(nat: NatKind) -> lab::nat::Behaviour {
    let lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat,
    });
    lab.natdiscovery()
}

fn expect(mapping: &str, filtering: &str, hairpinning: bool) -> lab::nat::Behaviour {
    lab::nat::Behaviour {
        mapping: mapping.into(),
        filtering: filtering.into(),
        hairpinning,
    }
}

#[test]
fn full_cone_is_endpoint_independent_both_ways_and_hairpins() {
    let ei = "endpoint-independent";
    assert_eq!(classify(NatKind::FullCone), expect(ei, ei, true));
}

#[test]
fn restricted_cone_filters_by_address() {
    let got = classify(NatKind::Restricted);
    assert_eq!(
        got,
        expect("endpoint-independent", "address-dependent", false)
    );
}

#[test]
fn port_restricted_cone_filters_by_address_and_port() {
    let got = classify(NatKind::PortRestricted);
    let apd = "address-and-port-dependent";
    assert_eq!(got, expect("endpoint-independent", apd, false));
}

#[test]
fn symmetric_maps_per_destination() {
    let apd = "address-and-port-dependent";
    assert_eq!(classify(NatKind::Symmetric), expect(apd, apd, false));
}

#[test]
fn the_parser_reads_natdiscoverys_verdicts() {
    let out = "NAT with Endpoint Independent Mapping!\n\
               NAT with Address and Port Dependent Filtering!\n";
    let b = lab::nat::parse(out);
    assert_eq!(
        b,
        expect("endpoint-independent", "address-and-port-dependent", false)
    );
    assert_eq!(lab::nat::parse("").mapping, "unknown");
}
