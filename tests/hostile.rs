//! Hostile MODs: each misbehaviour ends in its specific typed error (with
//! the audit line where a socket was involved), and well-behaved MODs keep
//! serving in the same process afterwards.

#[path = "harness/mod.rs"]
mod harness;

use p2pbroker::gate::{Transport, Use};
use p2pbroker::sandbox::error::{CallError, Limit, TrapKind};
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::{CallReport, EngineConfig, Mode, ModeHost, Op, Output};

const HOSTILE: &str = "tests/guests/hostile";
const ECHO: &str = "tests/guests/echo";

async fn attack(
    host: &ModeHost,
    scenario: &str,
    grants: &[&str],
    target: Option<String>,
) -> (Mode, CallReport) {
    attack_with(host, scenario, grants, target, harness::tight()).await
}

async fn attack_with(
    host: &ModeHost,
    scenario: &str,
    grants: &[&str],
    target: Option<String>,
    limits: Limits,
) -> (Mode, CallReport) {
    let mut config = vec![("scenario", scenario)];
    let t = target.unwrap_or_default();
    if !t.is_empty() {
        config.push(("target", t.as_str()));
    }
    let mode = harness::load(host, HOSTILE, harness::spec(grants, &config, limits)).await;
    let report = mode.call(Op::Probe).await;
    (mode, report)
}

/// After an attack: the same MOD (fresh instance) and another MOD both work.
async fn still_serving(host: &ModeHost, hostile: &Mode) {
    let mut ok = hostile.spec().clone();
    ok.config.insert("scenario".into(), "ok".into());
    let again = harness::load(host, HOSTILE, ok).await;
    let r = again.call(Op::Probe).await;
    assert!(
        matches!(r.result, Ok(Output::Probe(ref p)) if p.detail == "ok"),
        "{:?}",
        r.result
    );
    // A trapped store is never reused: the original Mode also still answers.
    assert!(hostile.call(Op::Info).await.result.is_ok());

    let (peer, _) = harness::udp_peer(false).await;
    let grant = format!("udp:send,receive@{peer}");
    let echo = harness::load(
        host,
        ECHO,
        harness::spec(
            &[&grant],
            &[("target", &peer.to_string())],
            Limits::default(),
        ),
    )
    .await;
    let r = echo.call(Op::Probe).await;
    match r.result {
        Ok(Output::Probe(p)) => assert_eq!(p.detail, "pong:ping"),
        other => panic!("echo after attack: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_hits_the_deadline() {
    let (host, _) = harness::host();
    let (mode, r) = attack(&host, "loop", &[], None).await;
    assert!(
        matches!(r.result, Err(CallError::Timeout(_))),
        "{:?}",
        r.result
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_runs_out_of_fuel_when_metered() {
    let (host, _) = harness::host_with(EngineConfig {
        concurrent_calls: 4,
        fuel: true,
        ..Default::default()
    });
    let limits = Limits {
        fuel: Some(50_000_000),
        timeout_ms: 60_000,
        ..harness::tight()
    };
    let (mode, r) = attack_with(&host, "loop", &[], None, limits).await;
    assert!(
        matches!(r.result, Err(CallError::OutOfFuel)),
        "{:?}",
        r.result
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_hits_the_memory_cap() {
    let (host, _) = harness::host();
    let (mode, r) = attack(&host, "memory-bomb", &[], None).await;
    assert!(
        matches!(r.result, Err(CallError::Limit(Limit::Memory(m))) if m == 16 << 20),
        "{:?}",
        r.result
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let (host, _) = harness::host();
    let (mode, r) = attack(&host, "stack-overflow", &[], None).await;
    assert!(
        matches!(
            r.result,
            Err(CallError::Trap {
                kind: TrapKind::StackOverflow,
                ..
            })
        ),
        "{:?}",
        r.result
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_traps_and_carries_its_message() {
    let (host, _) = harness::host();
    let (mode, r) = attack(&host, "panic", &[], None).await;
    match &r.result {
        Err(CallError::Trap {
            kind: TrapKind::Unreachable,
            message,
        }) => {
            assert!(message.contains("hostile panic"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_trap_is_typed() {
    let (host, _) = harness::host();
    let (mode, r) = attack(&host, "trap", &[], None).await;
    assert!(
        matches!(
            r.result,
            Err(CallError::Trap {
                kind: TrapKind::Unreachable,
                ..
            })
        ),
        "{:?}",
        r.result
    );
    still_serving(&host, &mode).await;
}

fn assert_denied(
    r: &CallReport,
    transport: Transport,
    use_: Use,
    addr: std::net::SocketAddr,
    sha: &str,
) {
    match &r.result {
        Err(CallError::Denied {
            address,
            transport: t,
            use_: u,
        }) => {
            assert_eq!((*address, *t, *u), (addr, transport, use_));
        }
        other => panic!("expected a capability denial, got {other:?}"),
    }
    let line = r
        .decisions
        .iter()
        .find(|d| d.denied() && d.address == addr)
        .expect("the denial is audit-logged");
    assert_eq!(
        (&*line.mode, &*line.sha256, line.use_),
        ("hostile", sha, use_)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_send_to_a_non_granted_address_is_denied_and_audited() {
    let (host, sink) = harness::host();
    let (peer, _) = harness::udp_peer(false).await;
    let (other, _) = harness::udp_peer(false).await;
    let grant = format!("udp:send,receive@{peer}");
    let (mode, r) = attack(&host, "udp-send", &[&grant], Some(other.to_string())).await;
    assert_denied(&r, Transport::Udp, Use::Send, other, mode.sha256());
    // The same line reached the broker-wide audit sink.
    assert!(sink.take().iter().any(|d| d.denied() && d.address == other));
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn udp_with_no_grant_at_all_is_denied_at_bind() {
    let (host, _) = harness::host();
    let (peer, _) = harness::udp_peer(false).await;
    let (mode, r) = attack(&host, "udp-send", &[], Some(peer.to_string())).await;
    assert_denied(
        &r,
        Transport::Udp,
        Use::Bind,
        "0.0.0.0:0".parse().unwrap(),
        mode.sha256(),
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_connect_to_a_non_granted_address_is_denied_and_audited() {
    let (host, _) = harness::host();
    let listener = harness::tcp_peer().await;
    let granted = harness::tcp_peer().await;
    let grant = format!("tcp:connect@{granted}");
    let (mode, r) = attack(&host, "tcp-connect", &[&grant], Some(listener.to_string())).await;
    assert_denied(&r, Transport::Tcp, Use::Connect, listener, mode.sha256());
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_to_a_non_granted_port_is_denied_and_audited() {
    let (host, _) = harness::host();
    let want: std::net::SocketAddr = "127.0.0.1:47999".parse().unwrap();
    let (mode, r) = attack(
        &host,
        "bind",
        &["udp:bind@127.0.0.1:48000"],
        Some(want.to_string()),
    )
    .await;
    assert_denied(&r, Transport::Udp, Use::Bind, want, mode.sha256());
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_from_a_non_granted_source_is_dropped_and_audited() {
    let (host, _) = harness::host();
    let (peer, replier) = harness::udp_peer(true).await;
    let grant = format!("udp:send,receive@{peer}");
    let limits = Limits {
        timeout_ms: 4_000,
        ..harness::tight()
    };
    let (mode, r) = attack_with(&host, "recv", &[&grant], Some(peer.to_string()), limits).await;
    assert_denied(&r, Transport::Udp, Use::Receive, replier, mode.sha256());
    // The send itself was allowed and logged as such.
    assert!(r.decisions.iter().any(|d| !d.denied() && d.address == peer));
    still_serving(&host, &mode).await;
}

/// A result over the contract's size limit is refused, naming the field.
async fn oversized_result_is_rejected(scenario: &str, field: &str) {
    let (host, _) = harness::host();
    // Room for the giant value itself, so the contract check is what trips;
    // time enough to build it on a loaded machine.
    let limits = Limits {
        memory_bytes: 48 << 20,
        timeout_ms: 10_000,
        ..harness::tight()
    };
    let (mode, r) = attack_with(&host, scenario, &[], None, limits).await;
    match &r.result {
        Err(CallError::InvalidResult(m)) => assert!(m.contains(field), "{m}"),
        other => panic!("{other:?}"),
    }
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn giant_string_result_is_rejected() {
    oversized_result_is_rejected("giant-string", "`detail`").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn giant_list_result_is_rejected() {
    oversized_result_is_rejected("giant-list", "`state`").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_in_poll_forever_is_cut_by_the_outer_timeout() {
    let (host, _) = harness::host();
    let started = std::time::Instant::now();
    let (mode, r) = attack(&host, "poll-forever", &[], None).await;
    assert!(
        matches!(r.result, Err(CallError::Blocked(_))),
        "{:?}",
        r.result
    );
    // Bounded: it ended, rather than waiting forever (no threshold on speed).
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_resource_handle_is_a_bad_host_call() {
    let (host, _) = harness::host();
    let (mode, r) = attack(&host, "garbage-handle", &[], None).await;
    assert!(
        matches!(r.result, Err(CallError::BadHostCall(_))),
        "{:?}",
        r.result
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_config_and_log_calls_are_bounded() {
    let (host, _) = harness::host();
    let limits = Limits {
        memory_bytes: 48 << 20,
        timeout_ms: 20_000,
        ..harness::tight()
    };
    let (mode, r) = attack_with(&host, "garbage-config", &[], None, limits).await;
    match &r.result {
        Ok(Output::Probe(p)) => assert_eq!(p.detail, "survived"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.logs.len(), p2pbroker::LOG_LINES_MAX);
    assert!(r.logs_dropped > 0);
    assert!(
        r.logs
            .iter()
            .all(|l| l.message.len() <= p2pbroker::LOG_LINE_MAX + 3)
    );
    still_serving(&host, &mode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_instance_pool_is_an_instantiate_error_not_a_crash() {
    // One pool slot: a MOD parked in poll holds it; a second call at the
    // same time cannot get an instance and must say so.
    let (host, _) = harness::host_with(EngineConfig {
        concurrent_calls: 1,
        ..Default::default()
    });
    let (parked, _) = attack(&host, "ok", &[], None).await;
    let mut spec = parked.spec().clone();
    spec.config.insert("scenario".into(), "poll-forever".into());
    let mut blocker = harness::load(&host, HOSTILE, parked.spec().clone()).await;
    blocker.respec(&host, spec).unwrap();
    let (held, second) = tokio::join!(blocker.call(Op::Probe), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        parked.call(Op::Info).await
    });
    assert!(
        matches!(held.result, Err(CallError::Blocked(_))),
        "{:?}",
        held.result
    );
    assert!(
        matches!(second.result, Err(CallError::Instantiate(_))),
        "{:?}",
        second.result
    );
    // The slot is free again once the blocked call was cut off.
    assert!(parked.call(Op::Info).await.result.is_ok());
}
