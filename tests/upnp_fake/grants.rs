//! The grants upnp-igd ships with — its manifest, and what each policy of
//! the project makes of it (manifest ∩ policy) — compiled by the capability
//! gate for a dual-stack LAN like the lab's: they reach the default gateway
//! and nothing else, not the host's own services, a container or another
//! LAN host.

use std::net::SocketAddr;

use p2pbroker::gate::{Gate, Grant, Transport, Use, Verdict};
use p2pbroker::netinfo::{LocalAddress, NetInfo};
use p2pbroker::policy::Policy;
use p2pbroker::trust::manifest::{Manifest, effective_grants};

use crate::{UPNP, harness};

/// The lab's host: gateway 10.0.0.1 and 2001:db8:1::1, a Docker bridge.
fn lan() -> NetInfo {
    let addr = |a: &str, prefix_len, interface: &str| LocalAddress {
        address: a.parse().unwrap(),
        prefix_len,
        interface: interface.into(),
    };
    NetInfo {
        gateways: vec![
            "10.0.0.1".parse().unwrap(),
            "2001:db8:1::1".parse().unwrap(),
        ],
        addresses: vec![
            addr("10.0.0.2", 24, "eth0"),
            addr("2001:db8:1::2", 64, "eth0"),
            addr("172.17.0.1", 16, "docker0"),
        ],
    }
}

/// (where from, effective grants): the manifest alone, and each policy
/// file that names upnp-igd, as the daemon would load the MOD under it.
fn shipped() -> Vec<(String, Vec<Grant>)> {
    let manifest = Manifest {
        optional_grants: Vec::new(),
        name: Some("upnp-igd".into()),
        grants: harness::manifest_grants(UPNP),
        limits: None,
    };
    let mut out = vec![("manifest".to_string(), manifest.parsed_grants().unwrap())];
    let dir = harness::root().join("policies");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let policy = Policy::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Ok(spec) = policy.spec("upnp-igd") else {
            continue;
        };
        let grants = effective_grants(&manifest, &spec.grants)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((path.display().to_string(), grants));
    }
    out
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn the_shipped_grants_reach_the_gateway_and_nothing_else() {
    let all = shipped();
    assert!(
        all.len() >= 4,
        "manifest, default, home, corporate: {all:?}"
    );
    for (from, grants) in all {
        let gate = Gate::compile(&grants, &lan());
        for (t, u, a) in [
            (Transport::Udp, Use::Send, "239.255.255.250:1900"),
            (Transport::Udp, Use::Send, "[ff02::c]:1900"),
            (Transport::Udp, Use::Receive, "10.0.0.1:1900"),
            // IPv6 SSDP answers come from the router's link-local address.
            (Transport::Udp, Use::Receive, "[fe80::1%2]:1900"),
            (Transport::Tcp, Use::Connect, "10.0.0.1:5000"),
            (Transport::Tcp, Use::Connect, "[2001:db8:1::1]:5000"),
        ] {
            assert!(
                matches!(gate.check(t, u, sa(a)), Verdict::Allow(_)),
                "{from}: {t} {u:?} {a} must be allowed"
            );
        }
        for (t, u, a) in [
            // Another LAN host, the host itself, its loopback services, a
            // container, over IPv4 and IPv6.
            (Transport::Tcp, Use::Connect, "10.0.0.7:80"),
            (Transport::Tcp, Use::Connect, "10.0.0.2:22"),
            (Transport::Tcp, Use::Connect, "127.0.0.1:8080"),
            (Transport::Tcp, Use::Connect, "172.17.0.2:80"),
            (Transport::Tcp, Use::Connect, "[2001:db8:1::7]:80"),
            (Transport::Tcp, Use::Connect, "[2001:db8:1::2]:22"),
            (Transport::Tcp, Use::Connect, "[fe80::7%2]:80"),
            (Transport::Udp, Use::Receive, "10.0.0.7:1900"),
            (Transport::Udp, Use::Receive, "[2001:db8:1::7]:1900"),
            (Transport::Udp, Use::Receive, "[fe80::1%2]:1901"),
            (Transport::Udp, Use::Send, "10.0.0.1:1900"),
            (Transport::Udp, Use::Send, "[fe80::1%2]:1900"),
        ] {
            assert_eq!(
                gate.check(t, u, sa(a)),
                Verdict::Deny,
                "{from}: {t} {u:?} {a} must be denied"
            );
        }
    }
}
