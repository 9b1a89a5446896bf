//! What a real miniupnpd sends, byte for byte, and what the kernel lists:
//! raw exchanges with plain sockets from the host namespace of the
//! dual-stack NAT lab (SSDP, HTTP, SOAP for IGD and the IPv6 firewall,
//! NAT-PMP, PCP), coturn's STUN answers, the corporate lab's proxies
//! (tinyproxy, Dante), and the host's socket tables
//! (`/proc/net`, sock_diag).
//! Each capture must parse, with the project's own parsers, to what was
//! asked: an interoperability test of the codecs against the real thing.
//!
//! With `P2PB_FUZZ_SEEDS=DIR` each capture is also written to
//! `DIR/TARGET/NAME`, in the input shape of fuzz target TARGET
//! (`cargo xtask fuzz-seeds` collects them into `fuzz/corpus/`).
//!
//! Here: the UPnP IGD and IPv6 firewall exchanges. The socket exchanges
//! and seed writing are in [`exchange`], the SOAP client and SSDP checks
//! in [`igd`], NAT-PMP and PCP in [`natpmp_pcp`], the socket tables in
//! [`socktables`].

#[path = "lab/mod.rs"]
mod lab;

#[path = "fuzz_seeds/exchange.rs"]
mod exchange;
#[path = "fuzz_seeds/igd.rs"]
mod igd;
#[path = "fuzz_seeds/natpmp_pcp.rs"]
mod natpmp_pcp;
#[path = "fuzz_seeds/proxies.rs"]
mod proxies;
#[path = "fuzz_seeds/socktables.rs"]
mod socktables;
#[path = "fuzz_seeds/stun.rs"]
mod stun;
#[path = "fuzz_seeds/turn.rs"]
mod turn;

use std::net::{SocketAddr, SocketAddrV6};

use exchange::{Seeds, ssdp_search};
use igd::{Igd, arg, check_ssdp, get, lookup_args, map_args};
use lab::v6::{GW_LAN_IP6, HOST_IP6, upnp_url6};
use lab::{GW_LAN_IP, GatewayOptions, HOST_IP, Lab, Ns, WAN_IP};
use p2pbroker_mode_upnp_igd::url::parse_url;
use p2pbroker_mode_upnp_igd::xml;
use p2pbroker_mode_upnp_igd::{pinhole, ssdp};

#[test]
fn miniupnpd_igd_answers_parse_to_what_was_asked() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let seeds = Seeds::from_env();
    let root = lab.upnp_url();

    // SSDP: every answer is the gateway's, announcing its description.
    let searches = ssdp::SEARCH_TARGETS.map(ssdp::build_msearch).to_vec();
    let from: SocketAddr = format!("{HOST_IP}:0").parse().unwrap();
    let group: SocketAddr = ssdp::SSDP_ADDR.parse().unwrap();
    let answers = lab.in_ns(Ns::Host, move || ssdp_search(from, group, searches));
    check_ssdp(
        &answers,
        GW_LAN_IP,
        &root,
        &seeds,
        "ssdp",
        &ssdp::SEARCH_TARGETS,
    );

    // The description names a WAN service and the IPv6 firewall, both on
    // the gateway.
    let base = parse_url(&root).unwrap();
    let desc = get(&lab, &seeds, &base, "rootDesc.xml");
    let wan = xml::parse_description(&desc, &base)
        .unwrap()
        .expect("a WAN service");
    assert!(
        xml::WAN_SERVICES.contains(&wan.service_type.as_str()),
        "{}",
        wan.service_type
    );
    assert_eq!(wan.control.addr, base.addr);
    let fw = xml::parse_firewall6(&desc, &base)
        .unwrap()
        .expect("the IPv6 firewall");
    assert_eq!(fw.addr, base.addr);
    let igd = Igd {
        lab: &lab,
        seeds: &seeds,
        service_type: wan.service_type,
        control: wan.control,
    };

    let out = igd.ok("GetExternalIPAddress", &[], "GetExternalIPAddress");
    assert_eq!(arg(&out, "NewExternalIPAddress"), WAN_IP);
    igd.ok(
        "AddPortMapping",
        &map_args(7100, HOST_IP, 7100),
        "AddPortMapping",
    );
    let out = igd.ok(
        "GetSpecificPortMappingEntry",
        &lookup_args(7100),
        "GetSpecificPortMappingEntry",
    );
    assert_eq!(arg(&out, "NewInternalClient"), HOST_IP);
    assert_eq!(arg(&out, "NewInternalPort"), "7100");
    let index = |i: u32| vec![("NewPortMappingIndex", i.to_string())];
    let out = igd.ok(
        "GetGenericPortMappingEntry",
        &index(0),
        "GetGenericPortMappingEntry",
    );
    assert_eq!(arg(&out, "NewExternalPort"), "7100");
    // Past the last entry: SpecifiedArrayIndexInvalid.
    assert_eq!(
        igd.fault("GetGenericPortMappingEntry", &index(1), "713"),
        713
    );
    // Refusals. External port 0: WildCardNotPermittedInExtPort.
    let port_0 = map_args(0, HOST_IP, 7101);
    assert_eq!(igd.fault("AddPortMapping", &port_0, "716"), 716);
    // secure_mode: a mapping for another LAN host is not this host's to
    // make; miniupnpd 2.3.1 says ConflictInMappingEntry.
    let other = map_args(7102, "10.0.0.3", 7102);
    assert_eq!(igd.fault("AddPortMapping", &other, "718"), 718);
    // Outside the gateway's allow rules (external ports from 1024).
    let low = map_args(80, HOST_IP, 7104);
    assert_eq!(igd.fault("AddPortMapping", &low, "606"), 606);
    assert_eq!(igd.fault("NoSuchAction", &[], "401"), 401);
    // Nothing mapped there: NoSuchEntryInArray to a lookup, yet a delete
    // succeeds (miniupnpd 2.3.1 with nftables).
    let missing = lookup_args(7199);
    assert_eq!(
        igd.fault("GetSpecificPortMappingEntry", &missing, "714"),
        714
    );
    igd.ok("DeletePortMapping", &missing, "DeletePortMapping-missing");
    if igd.service_type.ends_with(":2") {
        let out = igd.ok(
            "AddAnyPortMapping",
            &map_args(7103, HOST_IP, 7103),
            "AddAnyPortMapping",
        );
        assert_eq!(
            arg(&out, "NewReservedPort"),
            "7103",
            "the asked port is free"
        );
        igd.ok(
            "DeletePortMapping",
            &lookup_args(7103),
            "DeletePortMapping-7103",
        );
    }
    igd.ok("DeletePortMapping", &lookup_args(7100), "DeletePortMapping");
    assert_eq!(
        lab.gateway_rules().matches("dnat").count(),
        0,
        "{}",
        lab.gateway_rules()
    );
}

#[test]
fn miniupnpd_ipv6_firewall_answers_parse_to_what_was_asked() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let seeds = Seeds::from_env();
    let root = upnp_url6();

    // SSDP on [ff02::c] over the host's LAN link.
    let searches = ssdp::SEARCH_TARGETS_V6.map(ssdp::build_msearch_v6).to_vec();
    let answers = lab.in_ns(Ns::Host, move || {
        // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
        let link = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert_ne!(link, 0, "no eth0 in the host namespace");
        let group = SocketAddrV6::new("ff02::c".parse().unwrap(), 1900, 0, link);
        let from: SocketAddr = format!("[{HOST_IP6}]:0").parse().unwrap();
        ssdp_search(from, group.into(), searches)
    });
    let searched = ssdp::SEARCH_TARGETS_V6;
    check_ssdp(&answers, GW_LAN_IP6, &root, &seeds, "ssdp6", &searched);

    let base = parse_url(&root).unwrap();
    let desc = get(&lab, &seeds, &base, "rootDesc6.xml");
    let control = xml::parse_firewall6(&desc, &base)
        .unwrap()
        .expect("the IPv6 firewall");
    assert_eq!(control.addr, base.addr, "on the address the host asked");
    let fw = Igd {
        lab: &lab,
        seeds: &seeds,
        service_type: xml::FIREWALL6_SERVICE.to_string(),
        control,
    };

    let out = fw.ok("GetFirewallStatus", &[], "GetFirewallStatus");
    assert_eq!(arg(&out, "FirewallEnabled"), "1");
    assert_eq!(arg(&out, "InboundPinholeAllowed"), "1");
    let args = |port: u16, lease: u32| {
        pinhole::PinholeArgs {
            protocol: 6,
            internal_client: HOST_IP6.parse().unwrap(),
            internal_port: port,
            lease,
        }
        .add_args()
    };
    let out = fw.ok("AddPinhole", &args(7400, 600), "AddPinhole");
    let uid = pinhole::parse_unique_id(&out).unwrap();
    assert_eq!(lab.pinholes().len(), 1, "{}", lab.firewall_rules());
    // A port below 1024: not authorized.
    assert_eq!(
        fw.fault("AddPinhole", &args(80, 600), "AddPinhole-606"),
        606
    );
    // A lease over a day: invalid arguments.
    assert_eq!(
        fw.fault("AddPinhole", &args(7401, 86_401), "AddPinhole-402"),
        402
    );
    let out = fw.ok(
        "UpdatePinhole",
        &pinhole::update_args(uid, 900),
        "UpdatePinhole",
    );
    assert!(out.is_empty(), "{out:?}");
    fw.ok("DeletePinhole", &pinhole::delete_args(uid), "DeletePinhole");
    assert!(lab.pinholes().is_empty(), "{}", lab.firewall_rules());
    // Gone now: miniupnpd 2.3.1 answers 402 (not 704, NoSuchEntry).
    let gone = pinhole::delete_args(uid);
    assert_eq!(
        fw.fault("DeletePinhole", &gone, "DeletePinhole-unknown"),
        402
    );
}
