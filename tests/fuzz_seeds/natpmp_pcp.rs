//! NAT-PMP and PCP (over IPv4 and IPv6) against miniupnpd: a test of its
//! own, as these are single UDP datagrams each way and need none of the
//! UPnP helpers ([`igd`](crate::igd)).

use std::net::{IpAddr, SocketAddr};

use p2pbroker_mode_nat_pmp::proto as pmp;
use p2pbroker_mode_pcp::proto as pcp;

use crate::exchange::{Seeds, udp_exchange};
use crate::lab::v6::{GW_LAN_IP6, HOST_IP6};
use crate::lab::{GW_LAN_IP, GatewayOptions, HOST_IP, Lab, Ns, WAN_IP};

/// The nonce of our PCP requests: the `pcp` fuzz target's, so the seeds
/// get past its nonce check.
const PCP_NONCE: [u8; 12] = [0x5a; 12];

#[test]
fn miniupnpd_natpmp_and_pcp_answers_parse_to_what_was_asked() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let seeds = Seeds::from_env();
    let gw: SocketAddr = format!("{GW_LAN_IP}:{}", pmp::PMP_PORT).parse().unwrap();
    let from: SocketAddr = format!("{HOST_IP}:0").parse().unwrap();
    let ask = |req: Vec<u8>| lab.in_ns(Ns::Host, move || udp_exchange(from, gw, &req));
    let wan: std::net::Ipv4Addr = WAN_IP.parse().unwrap();

    // NAT-PMP.
    let raw = ask(pmp::build_external_address_request().to_vec());
    let e = pmp::parse_external_address_response(&raw).unwrap();
    assert_eq!(e.address, wan.octets());
    seeds.keep("natpmp", "miniupnpd-external-address", &raw);
    for (proto, name, port) in [
        (pmp::PmpProto::Tcp, "tcp", 7500),
        (pmp::PmpProto::Udp, "udp", 7501),
    ] {
        let raw = ask(pmp::build_map_request(proto, port, port, 600).to_vec());
        let m = pmp::parse_map_response(&raw, proto).unwrap();
        assert_eq!(
            (m.internal_port, m.external_port),
            (port, port),
            "the asked port is free"
        );
        assert!((1..=600).contains(&m.lifetime), "{m:?}");
        seeds.keep("natpmp", &format!("miniupnpd-map-{name}"), &raw);
        // Delete: lifetime 0 and external port 0 in the answer's echo.
        let raw = ask(pmp::build_map_request(proto, port, 0, 0).to_vec());
        let m = pmp::parse_map_response(&raw, proto).unwrap();
        assert_eq!((m.internal_port, m.lifetime), (port, 0), "{m:?}");
        seeds.keep("natpmp", &format!("miniupnpd-unmap-{name}"), &raw);
    }
    // An external port the gateway's rules deny (below 1024): it grants
    // the first allowed one instead. (Not sent: an *internal* port the
    // rules deny. miniupnpd 2.3.1 then tries one external port after
    // another, each refused by the same rule, and answered nothing else,
    // not even HTTP, for as long as the lab watched: over 10 s.)
    let raw = ask(pmp::build_map_request(pmp::PmpProto::Tcp, 7502, 80, 600).to_vec());
    let m = pmp::parse_map_response(&raw, pmp::PmpProto::Tcp).unwrap();
    assert_eq!((m.internal_port, m.external_port), (7502, 1024), "{m:?}");
    seeds.keep("natpmp", "miniupnpd-map-other-port", &raw);
    let raw = ask(pmp::build_map_request(pmp::PmpProto::Tcp, 7502, 0, 0).to_vec());
    assert_eq!(
        pmp::parse_map_response(&raw, pmp::PmpProto::Tcp)
            .unwrap()
            .lifetime,
        0
    );
    // An opcode NAT-PMP does not have: UnsupportedOpcode, in 8 bytes.
    let raw = ask(vec![pmp::PMP_VERSION, 3]);
    assert_eq!(&raw[..4], &[0, 128 + 3, 0, 5], "{raw:?}");
    let e = pmp::parse_external_address_response(&raw).unwrap_err();
    assert!(matches!(e, pmp::PmpError::Opcode { got: 131, .. }), "{e:?}");
    seeds.keep("natpmp", "miniupnpd-unsupported-opcode", &raw);
    // A PCP request cut short is answered in NAT-PMP's format (version 0,
    // result 3), which the PCP parser reads as a NAT-PMP-only server.
    let raw = ask(vec![pcp::PCP_VERSION, pcp::PCP_OP_MAP, 0, 0]);
    assert_eq!(&raw[..4], &[0, 128, 0, 3], "{raw:?}");
    let e = pcp::parse_header(&raw, pcp::PCP_OP_MAP);
    assert_eq!(e, Err(pcp::PcpError::NatPmpOnly));
    seeds.keep("natpmp", "miniupnpd-short-pcp-request", &raw);
    seeds.keep("pcp", "miniupnpd-short-request", &raw);

    // PCP over IPv4.
    let host: IpAddr = HOST_IP.parse().unwrap();
    // Any external address of the client's family.
    let map = |client: IpAddr, port: u16, lifetime: u32| {
        let external_ip = match client {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        pcp::build_map(&pcp::MapParams {
            nonce: PCP_NONCE,
            protocol: pcp::PCP_PROTO_TCP,
            internal_port: port,
            external_port: port,
            external_ip,
            lifetime,
            client,
            third_party: None,
        })
    };
    let raw = ask(pcp::build_announce(host));
    let h = pcp::parse_header(&raw, pcp::PCP_OP_ANNOUNCE).unwrap();
    assert_eq!(h.lifetime, 0, "{h:?}");
    seeds.keep("pcp", "miniupnpd-announce", &raw);
    let raw = ask(map(host, 7600, 600));
    let m = pcp::parse_map(&raw, &PCP_NONCE).unwrap();
    assert_eq!((m.internal_port, m.external_port), (7600, 7600));
    assert_eq!(m.external_ip, IpAddr::V4(wan));
    assert_eq!(m.protocol, pcp::PCP_PROTO_TCP);
    seeds.keep("pcp", "miniupnpd-map", &raw);
    let raw = ask(map(host, 7600, 0));
    let m = pcp::parse_map(&raw, &PCP_NONCE).unwrap();
    assert_eq!(m.header.lifetime, 0, "{m:?}");
    seeds.keep("pcp", "miniupnpd-map-delete", &raw);
    // The client field is not the packet's source: ADDRESS_MISMATCH.
    let raw = ask(map("10.0.0.9".parse().unwrap(), 7601, 600));
    let e = pcp::parse_map(&raw, &PCP_NONCE).unwrap_err();
    assert!(
        matches!(e, pcp::PcpError::Result(pcp::PcpResult::AddressMismatch, _)),
        "{e:?}"
    );
    seeds.keep("pcp", "miniupnpd-map-address-mismatch", &raw);

    // PCP over IPv6: a pinhole to the host's own address and port.
    let host6: IpAddr = HOST_IP6.parse().unwrap();
    let gw6: SocketAddr = format!("[{GW_LAN_IP6}]:{}", pcp::PCP_PORT).parse().unwrap();
    let from6: SocketAddr = format!("[{HOST_IP6}]:0").parse().unwrap();
    let ask6 = |req: Vec<u8>| lab.in_ns(Ns::Host, move || udp_exchange(from6, gw6, &req));
    let raw = ask6(map(host6, 7602, 600));
    let m = pcp::parse_map(&raw, &PCP_NONCE).unwrap();
    assert_eq!((m.external_ip, m.external_port), (host6, 7602));
    seeds.keep("pcp", "miniupnpd-map-v6", &raw);
    let raw = ask6(map(host6, 7602, 0));
    assert_eq!(pcp::parse_map(&raw, &PCP_NONCE).unwrap().header.lifetime, 0);
    assert!(lab.pinholes().is_empty(), "{}", lab.firewall_rules());
}
