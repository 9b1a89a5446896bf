//! The pcp MOD against scripted fake servers on loopback: wrong nonces,
//! a NAT-PMP-only server, result codes, truncation, THIRD_PARTY requests;
//! IPv6 mappings on an IPv6 server at `[::1]` (server choice by family, the
//! delete-then-MAP renewal, a refused delete).

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p2pbroker::netinfo::{LocalAddress, NetInfo};
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::wit::{MapRequest, ModeError, Transport};
use p2pbroker::sandbox::{Mode, ModeHost, Op, Output};

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
        &p2pbroker::sandbox::load::AllowList::Any,
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

/// A fake IPv6 PCP server on [::1] acting as an IPv6 firewall (external =
/// the client's own address); answers MAP with `map_result(request)` and
/// records every request. Stops after 16 requests or 10 s idle.
async fn fake_v6_firewall(
    map_result: impl Fn(&[u8]) -> u8 + Send + 'static,
) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1100];
        for _ in 0..16 {
            let Ok(Ok((n, from))) =
                tokio::time::timeout(std::time::Duration::from_secs(10), sock.recv_from(&mut buf))
                    .await
            else {
                return;
            };
            let req = buf[..n].to_vec();
            log.lock().unwrap().push(req.clone());
            let result = if req[1] == 1 { map_result(&req) } else { 0 };
            let mut b = vec![2, req[1] | 0x80, 0, result];
            b.extend_from_slice(&req[4..8]);
            b.extend_from_slice(&[0, 0, 1, 0]);
            b.extend_from_slice(&[0; 12]);
            if req[1] == 1 {
                b.extend_from_slice(&req[24..42]);
                b.extend_from_slice(&req[40..42]);
                b.extend_from_slice(&req[8..24]);
            }
            let _ = sock.send_to(&b, from).await;
        }
    });
    (addr, seen)
}

async fn v6_mode(host: &ModeHost, server: SocketAddr) -> Mode {
    let grant = format!("udp:send,receive@{server}");
    let port = server.port().to_string();
    // Both families configured: an IPv6 mapping must pick the IPv6 one.
    let spec = harness::spec(
        &[&grant],
        &[
            ("server", "127.0.0.1, ::1"),
            ("port", &port),
            ("timeout_ms", "600"),
        ],
        Limits::default(),
    );
    let net = NetInfo {
        gateways: vec![],
        addresses: vec![LocalAddress {
            address: "::1".parse().unwrap(),
            prefix_len: 128,
            interface: "lo".into(),
        }],
    };
    let bytes = harness::component("modes/pcp");
    host.load(
        &bytes,
        &p2pbroker::sandbox::load::AllowList::Any,
        spec,
        Arc::new(net),
    )
    .await
    .unwrap()
    .0
}

fn lifetime(req: &[u8]) -> u32 {
    u32::from_be_bytes(req[4..8].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_renew_deletes_then_maps_again_so_the_nonce_survives() {
    let (host, _) = harness::host();
    let (server, seen) = fake_v6_firewall(|_| 0).await;
    let m = v6_mode(&host, server).await;
    let r = m.call(Op::Map(request("[::]:4000"))).await;
    let Ok(Output::Mapping(mapping)) = r.result else {
        panic!("{:?}", r.result)
    };
    let me: SocketAddr = "[::1]:4000".parse().unwrap();
    assert_eq!(SocketAddr::from(mapping.external), me);
    let r = m.call(Op::Renew(mapping, 900)).await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    let reqs = seen.lock().unwrap();
    // MAP; then ANNOUNCE (epoch), delete (lifetime 0), MAP: never a plain
    // re-MAP, after which miniupnpd 2.3.1 refuses the final delete.
    let ops: Vec<(u8, u32)> = reqs.iter().map(|r| (r[1], lifetime(r))).collect();
    assert_eq!(ops, [(1, 600), (0, 0), (1, 0), (1, 900)]);
    assert!(
        reqs.iter()
            .all(|r| r[8..24] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    );
    assert!(
        reqs.iter()
            .filter(|r| r[1] == 1)
            .all(|r| r[24..36] == reqs[0][24..36])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_delete_refused_is_loss_on_renew_and_denied_on_unmap() {
    let (host, _) = harness::host();
    // Creating works, deleting is NOT_AUTHORIZED (another nonce holds it).
    let (server, _) = fake_v6_firewall(|req| if lifetime(req) == 0 { 2 } else { 0 }).await;
    let m = v6_mode(&host, server).await;
    let Ok(Output::Mapping(mapping)) = m.call(Op::Map(request("[::]:4000"))).await.result else {
        panic!("map")
    };
    let r = m.call(Op::Renew(mapping.clone(), 900)).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::MappingLost(s) if s.contains("nonce")),
        "{:?}",
        r.result
    );
    let r = m.call(Op::Unmap(mapping)).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Denied(s) if s.contains("NOT_AUTHORIZED")),
        "{:?}",
        r.result
    );
}
