//! The static MOD: declared forwards are checked against the host's own
//! addresses, handed out on map, and bad declarations are named.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::Arc;

use p2pbroker::netinfo::{LocalAddress, NetInfo};
use p2pbroker::sandbox::error::CallError;
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::load::AllowList;
use p2pbroker::sandbox::wit::{MapRequest, ModeError, Transport};
use p2pbroker::sandbox::{Mode, ModeHost, Op, Output};

async fn mode(host: &ModeHost, forwards: &str) -> Mode {
    let spec = harness::spec(&[], &[("forwards", forwards)], Limits::default());
    let net = NetInfo {
        gateways: vec!["10.0.0.1".parse().unwrap()],
        addresses: vec![LocalAddress {
            address: "10.0.0.2".parse().unwrap(),
            prefix_len: 24,
            interface: "eth0".into(),
        }],
    };
    let bytes = harness::component("modes/static");
    host.load(&bytes, &AllowList::Any, spec, Arc::new(net))
        .await
        .unwrap()
        .0
}

fn request(transport: Transport, internal: &str) -> MapRequest {
    MapRequest {
        transport,
        internal: internal.parse::<SocketAddr>().unwrap().into(),
        external_port: None,
        lifetime: 600,
        permanent_allowed: false,
        probe_state: vec![],
    }
}

const DECL: &str =
    "tcp 198.51.100.11:7000 -> 10.0.0.2:7000; udp 198.51.100.11:7001 -> 10.0.0.9:7001";

#[tokio::test(flavor = "multi_thread")]
async fn declared_forwards_for_this_host_are_probed_and_mapped() {
    let (host, _) = harness::host();
    let m = mode(&host, DECL).await;
    let r = m.call(Op::Probe).await;
    let Ok(Output::Probe(p)) = r.result else {
        panic!("{:?}", r.result)
    };
    assert!(
        p.detail.contains("1 forward(s) for this host") && p.detail.contains("10.0.0.9:7001"),
        "{}",
        p.detail
    );
    let r = m
        .call(Op::Map(request(Transport::Tcp, "0.0.0.0:7000")))
        .await;
    let Ok(Output::Mapping(mapping)) = r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!(
        SocketAddr::from(mapping.external),
        "198.51.100.11:7000".parse().unwrap()
    );
    assert!(m.call(Op::Renew(mapping.clone(), 900)).await.result.is_ok());
    assert!(m.call(Op::Unmap(mapping)).await.result.is_ok());
    // Declared, but for another host: not ours to hand out.
    let r = m
        .call(Op::Map(request(Transport::Udp, "0.0.0.0:7001")))
        .await;
    assert!(
        matches!(r.result, Err(CallError::Mode(ModeError::Unavailable(_)))),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_or_foreign_declarations_are_clear_errors() {
    let (host, _) = harness::host();
    let r = mode(&host, "tcp 198.51.100.11:7000 -> 10.0.0.9:7000")
        .await
        .call(Op::Probe)
        .await;
    assert!(
        matches!(r.result, Err(CallError::Mode(ModeError::Unavailable(ref m))) if m.contains("none of the 1")),
        "{:?}",
        r.result
    );
    let r = mode(&host, "tcp 198.51.100.11:7000 => 10.0.0.2:7000")
        .await
        .call(Op::Probe)
        .await;
    assert!(
        matches!(r.result, Err(CallError::Mode(ModeError::InvalidRequest(ref m))) if m.contains("missing `->`")),
        "{:?}",
        r.result
    );
}
