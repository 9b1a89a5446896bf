//! The pcp MOD against scripted fake servers on loopback: wrong nonces,
//! a NAT-PMP-only server, result codes, truncation, THIRD_PARTY requests.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p2pbroker::bindings::{MapRequest, ModeError, Transport};
use p2pbroker::host::{Mode, ModeHost, Op, Output};
use p2pbroker::limits::Limits;
use p2pbroker::netinfo::{LocalAddress, NetInfo};

/// A PCP response; for MAP, echoing `req`'s nonce unless `nonce` is given.
fn response(req: &[u8], result: u8, nonce: Option<[u8; 12]>) -> Vec<u8> {
    let mut b = vec![2, req[1] | 0x80, 0, result, 0, 0, 2, 88, 0, 0, 0, 50];
    b.extend_from_slice(&[0; 12]);
    if req[1] == 1 && req.len() >= 60 {
        b.extend_from_slice(&nonce.unwrap_or_else(|| req[24..36].try_into().unwrap()));
        b.extend_from_slice(&req[36..42]);
        b.extend_from_slice(&req[42..44]);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9]);
    }
    b
}

async fn mode(host: &ModeHost, server: SocketAddr) -> Mode {
    let grant = format!("udp:send,receive@{server}");
    let port = server.port().to_string();
    let spec = harness::spec(
        &[&grant],
        &[
            ("server", "127.0.0.1"),
            ("port", &port),
            ("timeout_ms", "600"),
        ],
        Limits::default(),
    );
    let net = NetInfo {
        gateways: vec![],
        addresses: vec![LocalAddress {
            address: "127.0.0.1".parse().unwrap(),
            prefix_len: 8,
            interface: "lo".into(),
        }],
    };
    let bytes = harness::component("modes/pcp");
    host.load(
        &bytes,
        &p2pbroker::loader::AllowList::Any,
        spec,
        Arc::new(net),
    )
    .await
    .unwrap()
    .0
}

fn request(internal: &str) -> MapRequest {
    MapRequest {
        transport: Transport::Tcp,
        internal: internal.parse::<SocketAddr>().unwrap().into(),
        external_port: None,
        lifetime: 600,
        permanent_allowed: false,
        probe_state: vec![],
    }
}

/// A check on the error a result code must give.
type Expect = fn(&ModeError) -> bool;

#[tokio::test(flavor = "multi_thread")]
async fn map_with_own_address_and_third_party_for_another_host() {
    let (host, _) = harness::host();
    let seen = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let log = seen.clone();
    let (server, _) = harness::fake_udp(move |req| {
        log.lock().unwrap().push(req.to_vec());
        (vec![response(req, 0, None)], false)
    })
    .await;
    let m = mode(&host, server).await;
    let r = m.call(Op::Map(request("127.0.0.1:4000"))).await;
    let Ok(Output::Mapping(mapping)) = r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!(
        SocketAddr::from(mapping.external),
        "203.0.113.9:4000".parse().unwrap()
    );
    let r = m.call(Op::Map(request("127.0.0.7:4001"))).await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    let reqs = seen.lock().unwrap();
    assert_eq!(reqs[0].len(), 60, "own address: no option");
    // For another LAN host: THIRD_PARTY (code 1, length 16) with its address.
    assert_eq!(reqs[1].len(), 80);
    assert_eq!(&reqs[1][60..64], &[1, 0, 0, 16]);
    assert_eq!(&reqs[1][76..80], &[127, 0, 0, 7]);
    assert_ne!(
        &reqs[0][24..36],
        &reqs[1][24..36],
        "each mapping has its own nonce"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_with_a_wrong_nonce_are_discarded_and_reported() {
    let (host, _) = harness::host();
    let (server, count) =
        harness::fake_udp(|req| (vec![response(req, 0, Some([0xee; 12]))], false)).await;
    let r = mode(&host, server)
        .await
        .call(Op::Map(request("127.0.0.1:4000")))
        .await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Protocol(m) if m.contains("wrong nonce")),
        "{:?}",
        r.result
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nat_pmp_only_server_is_unsupported_so_the_selector_falls_back() {
    let (host, _) = harness::host();
    let (server, _) = harness::fake_udp(|_| (vec![vec![0, 128, 0, 1]], false)).await;
    let r = mode(&host, server).await.call(Op::Probe).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Unsupported(m) if m.contains("nat-pmp")),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn result_codes_are_typed() {
    let (host, _) = harness::host();
    let cases: [(u8, Expect); 6] = [
        (2, |e| matches!(e, ModeError::Denied(_))),
        (8, |e| matches!(e, ModeError::Unavailable(_))),
        (11, |e| matches!(e, ModeError::Conflict(_))),
        (9, |e| matches!(e, ModeError::Unsupported(_))),
        (3, |e| matches!(e, ModeError::Protocol(_))),
        (
            12,
            |e| matches!(e, ModeError::Unavailable(m) if m.contains("AddressMismatch")),
        ),
    ];
    for (code, check) in cases {
        let (server, _) =
            harness::fake_udp(move |req| (vec![response(req, code, None)], false)).await;
        let r = mode(&host, server)
            .await
            .call(Op::Map(request("127.0.0.1:4000")))
            .await;
        assert!(
            check(harness::mode_error(&r.result)),
            "code {code}: {:?}",
            r.result
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_silent_servers() {
    let (host, _) = harness::host();
    let (server, _) =
        harness::fake_udp(|req| (vec![response(req, 0, None)[..40].to_vec()], false)).await;
    let r = mode(&host, server)
        .await
        .call(Op::Map(request("127.0.0.1:4000")))
        .await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Protocol(m) if m.contains("Truncated")),
        "{:?}",
        r.result
    );
    let (server, _) = harness::fake_udp(|_| (vec![], false)).await;
    let r = mode(&host, server).await.call(Op::Probe).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Timeout(_)),
        "{:?}",
        r.result
    );
}
