//! The nat-pmp MOD against scripted fake gateways on loopback: the quirks
//! and hostile answers miniupnpd does not produce. Each ends in its specific
//! typed error, bounded in time, with exact packet counts.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use p2pbroker::gate::Use;
use p2pbroker::sandbox::error::CallError;
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::wit::{MapRequest, ModeError, Transport};
use p2pbroker::sandbox::{Mode, ModeHost, Op, Output};

fn external_reply(epoch: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut v = vec![0, 128, 0, 0];
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&ip);
    v
}

fn map_reply(op: u8, epoch: u32, internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
    let mut v = vec![0, 128 + op, 0, 0];
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&internal.to_be_bytes());
    v.extend_from_slice(&external.to_be_bytes());
    v.extend_from_slice(&lifetime.to_be_bytes());
    v
}

/// A well-behaved gateway with external address 203.0.113.9 whose epoch
/// is `epoch()` at each answer.
fn good(
    epoch: impl Fn() -> u32 + Send + 'static,
) -> impl Fn(&[u8]) -> (Vec<Vec<u8>>, bool) + Send + 'static {
    move |req| match req {
        [0, 0] => (vec![external_reply(epoch(), [203, 0, 113, 9])], false),
        [0, op, _, _, i0, i1, e0, e1, l0, l1, l2, l3] => {
            let lifetime = u32::from_be_bytes([*l0, *l1, *l2, *l3]);
            let ext = if lifetime == 0 {
                0
            } else {
                u16::from_be_bytes([*e0, *e1])
            };
            (
                vec![map_reply(
                    *op,
                    epoch(),
                    u16::from_be_bytes([*i0, *i1]),
                    ext,
                    lifetime,
                )],
                false,
            )
        }
        _ => (vec![], false),
    }
}

async fn mode(host: &ModeHost, gw: SocketAddr) -> Mode {
    let grant = format!("udp:send,receive@{gw}");
    let port = gw.port().to_string();
    let limits = Limits {
        timeout_ms: 5_000,
        ..Limits::default()
    };
    harness::load(
        host,
        "modes/nat-pmp",
        harness::spec(
            &[&grant],
            &[
                ("gateway", "127.0.0.1"),
                ("port", &port),
                ("timeout_ms", "800"),
            ],
            limits,
        ),
    )
    .await
}

/// A request for this host (unspecified address: NAT-PMP maps the sender).
fn request(port: u16) -> MapRequest {
    MapRequest {
        transport: Transport::Udp,
        internal: SocketAddr::from(([0, 0, 0, 0], port)).into(),
        external_port: None,
        lifetime: 600,
        permanent_allowed: false,
        probe_state: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn map_renew_unmap_against_a_scripted_gateway_with_exact_packet_counts() {
    let (host, _) = harness::host();
    let (gw, count) = harness::fake_udp(good(|| 100)).await;
    let m = mode(&host, gw).await;
    let Ok(Output::Mapping(mapping)) = m.call(Op::Map(request(4000))).await.result else {
        panic!()
    };
    let ext: SocketAddr = mapping.external.into();
    assert_eq!(ext, "203.0.113.9:4000".parse().unwrap());
    // Cold map: external-address request + map request.
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let r = m.call(Op::Renew(mapping.clone(), 900)).await;
    assert!(r.result.is_ok(), "{:?}", r.result);
    // Renew: epoch check + map request.
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(m.call(Op::Unmap(mapping)).await.result.is_ok());
    assert_eq!(count.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_lan_host_is_refused_before_any_packet() {
    // NAT-PMP maps the sender: for another host it would silently forward
    // to us, so the MOD refuses and the broker falls back to PCP or UPnP.
    let (host, _) = harness::host();
    let (gw, count) = harness::fake_udp(good(|| 100)).await;
    let m = mode(&host, gw).await;
    let mut req = request(4000);
    req.internal = SocketAddr::from(([192, 0, 2, 77], 4000)).into();
    let r = m.call(Op::Map(req)).await;
    match harness::mode_error(&r.result) {
        ModeError::Unsupported(why) => assert!(why.contains("192.0.2.77"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_epoch_that_goes_back_is_a_lost_mapping() {
    let (host, _) = harness::host();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // Epoch 100000 at map time, then 3: the gateway rebooted.
    let (gw, _) = harness::fake_udp(good(move || {
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            100_000
        } else {
            3
        }
    }))
    .await;
    let m = mode(&host, gw).await;
    let Ok(Output::Mapping(mapping)) = m.call(Op::Map(request(4000))).await.result else {
        panic!()
    };
    let r = m.call(Op::Renew(mapping, 600)).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::MappingLost(m) if m.contains("reset")),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn result_codes_are_typed() {
    let (host, _) = harness::host();
    for (code, check) in [
        (
            2u8,
            (|e: &ModeError| matches!(e, ModeError::Denied(_))) as fn(&ModeError) -> bool,
        ),
        (3, |e| matches!(e, ModeError::Unavailable(_))),
        (4, |e| matches!(e, ModeError::Conflict(_))),
        (1, |e| matches!(e, ModeError::Unsupported(_))),
        (99, |e| matches!(e, ModeError::Protocol(_))),
    ] {
        let (gw, _) = harness::fake_udp(move |_| (vec![vec![0, 128, 0, code]], false)).await;
        let r = mode(&host, gw).await.call(Op::Probe).await;
        assert!(
            check(harness::mode_error(&r.result)),
            "code {code}: {:?}",
            r.result
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_answer_is_a_protocol_error() {
    let (host, _) = harness::host();
    let (gw, _) = harness::fake_udp(|_| (vec![vec![0, 128, 0, 0, 0, 0]], false)).await;
    let r = mode(&host, gw).await.call(Op::Probe).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Protocol(m) if m.contains("Truncated")),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stray_answers_are_ignored_until_the_real_one() {
    let (host, _) = harness::host();
    // A late map response and a non-NAT-PMP datagram arrive first.
    let (gw, count) = harness::fake_udp(|_| {
        (
            vec![
                map_reply(1, 5, 1, 1, 1),
                b"junk".to_vec(),
                external_reply(7, [203, 0, 113, 9]),
            ],
            false,
        )
    })
    .await;
    let r = mode(&host, gw).await.call(Op::Probe).await;
    assert!(
        matches!(r.result, Ok(Output::Probe(ref p)) if p.detail.contains("203.0.113.9")),
        "{:?}",
        r.result
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_from_another_address_is_dropped_and_audited() {
    let (host, _) = harness::host();
    let (gw, count) =
        harness::fake_udp(|_| (vec![external_reply(7, [203, 0, 113, 9])], true)).await;
    let r = mode(&host, gw).await.call(Op::Probe).await;
    match r.result {
        Err(CallError::Denied {
            use_: Use::Receive,
            address,
            ..
        }) => assert_ne!(address, gw),
        other => panic!("{other:?}"),
    }
    // Probe budget 250 ms: one attempt, no retransmission storm.
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_is_a_timeout_after_the_rfc_retransmissions() {
    let (host, _) = harness::host();
    let (gw, count) = harness::fake_udp(|_| (vec![], false)).await;
    let r = mode(&host, gw).await.call(Op::Map(request(4000))).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Timeout(_)),
        "{:?}",
        r.result
    );
    // 800 ms budget: attempts at 0, 250 and 750 ms (RFC 6886 §3.1).
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_without_an_external_address_cannot_map() {
    let (host, _) = harness::host();
    let (gw, _) = harness::fake_udp(|_| (vec![external_reply(7, [0, 0, 0, 0])], false)).await;
    let r = mode(&host, gw).await.call(Op::Map(request(4000))).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Unavailable(_)),
        "{:?}",
        r.result
    );
}
