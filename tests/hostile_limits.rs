//! Hostile MODs against what they could make the host hold outside their
//! linear memory (sockets, resource-table entries, audit lines, name
//! lookups, a tokio worker), and against the contract: a mapping that does
//! not answer its request is a typed, audited breach. Each ends in its
//! specific error, and the host keeps serving.

#[path = "harness/mod.rs"]
mod harness;

use std::sync::Arc;

use p2pbroker::audit::AuditEvent;
use p2pbroker::sandbox::wit::{MapRequest, Transport};
use p2pbroker::sandbox::{CallError, EngineConfig, Limit, Limits, Op, Output};

const HOSTILE: &str = "tests/guests/hostile";

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The descriptor count is the whole process's: the test that counts holds
/// this exclusively, every other test in this file shares it, so no other
/// test opens or closes a socket between its two counts. The tests whose
/// MODs spin hold it exclusively too: on a 2-core machine their spinning
/// calls share the guest threads with the other tests' calls, which then
/// ran past their 1 s budgets (a CI run: a socket flood timed out instead
/// of reaching its cap).
static FDS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn a_socket_flood_stops_at_the_per_call_cap_and_gives_every_socket_back() {
    let _alone = FDS.write().await;
    let (host, _) = harness::host();
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&[], &[("scenario", "socket-flood")], harness::tight()),
    )
    .await;
    let before = open_fds();
    let r = mode.call(Op::Probe).await;
    assert!(
        matches!(r.result, Err(CallError::Limit(Limit::Sockets(64)))),
        "{:?}",
        r.result
    );
    assert_eq!(open_fds(), before, "the call's sockets are closed with it");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_mods_together_stay_within_the_host_socket_budget() {
    let _shared = FDS.read().await;
    // A host budget smaller than one call's cap: the host budget binds.
    let (host, _) = harness::host_with(EngineConfig {
        concurrent_calls: 4,
        max_mod_sockets: 10,
        ..Default::default()
    });
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&[], &[("scenario", "socket-flood")], harness::tight()),
    )
    .await;
    let r = mode.call(Op::Probe).await;
    assert!(
        matches!(r.result, Err(CallError::Limit(Limit::Sockets(_)))),
        "{:?}",
        r.result
    );
    // Given back: the next call gets the same ten again.
    let r = mode.call(Op::Probe).await;
    match r.result {
        Err(CallError::Limit(Limit::Sockets(_))) => {}
        other => panic!("{other:?}"),
    }
    assert!(r.logs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_table_flood_hits_the_entry_cap() {
    let _shared = FDS.read().await;
    let (host, _) = harness::host();
    let limits = Limits {
        table_entries: 1_000,
        ..harness::tight()
    };
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&[], &[("scenario", "table-flood")], limits),
    )
    .await;
    let r = mode.call(Op::Probe).await;
    assert!(
        matches!(r.result, Err(CallError::Limit(Limit::TableEntries(1_000)))),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_send_loop_writes_each_decision_once_and_counts_the_rest() {
    let _shared = FDS.read().await;
    let (host, sink) = harness::host();
    let (peer, _) = harness::udp_peer(false).await;
    // Sends to `peer` are allowed; the flood goes to 1000 other ports.
    let grant = format!("udp:send,receive@{peer}");
    let denied = std::net::SocketAddr::new(peer.ip(), peer.port().wrapping_add(1));
    let limits = Limits {
        audit_lines: 100,
        timeout_ms: 20_000,
        ..harness::tight()
    };
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(
            &[&grant],
            &[("scenario", "audit-flood"), ("target", &denied.to_string())],
            limits,
        ),
    )
    .await;
    let r = mode.call(Op::Probe).await;
    // The MOD ignores its refusals and carries on: the flood is the attack.
    assert!(
        matches!(&r.result, Ok(Output::Probe(p)) if p.detail == "flooded"),
        "{:?}",
        r.result
    );
    let written = sink.take();
    assert_eq!(written.len(), 100, "at most the call's cap reaches the log");
    assert_eq!(r.decisions.len(), 100);
    // 50 x 1000 sends plus the bind: 100 lines written; every other
    // decision is counted, as a repeat of a written line or as dropped.
    let (repeated, dropped) = r.audit_suppressed;
    assert_eq!(repeated + dropped + 100, 50_001, "{repeated} {dropped}");
    assert_eq!(repeated, 49 * 99, "the 99 written sends, 49 times more");
    let events = sink.take_events();
    assert!(
        events.iter().any(|e| matches!(e,
            AuditEvent::AuditSuppressed { repeated: r, dropped: d, .. } if *r == repeated && *d == dropped)),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn name_lookups_are_capped_per_call() {
    let _shared = FDS.read().await;
    let (host, _) = harness::host();
    let limits = Limits {
        name_lookups: 3,
        ..harness::tight()
    };
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&["name-lookup"], &[("scenario", "lookup-flood")], limits),
    )
    .await;
    let r = mode.call(Op::Probe).await;
    assert!(
        matches!(r.result, Err(CallError::Limit(Limit::NameLookups(3)))),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn text_from_a_mod_cannot_forge_a_log_line_or_reach_a_terminal() {
    let _shared = FDS.read().await;
    let (host, _) = harness::host();
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&[], &[("scenario", "log-forgery")], harness::tight()),
    )
    .await;
    let r = mode.call(Op::Probe).await;
    let reason = match &r.result {
        Err(CallError::Mode(e)) => p2pbroker::sandbox::error::mode_error_message(e).to_string(),
        other => panic!("{other:?}"),
    };
    for text in std::iter::once(reason.as_str()).chain(r.logs.iter().map(|l| l.message.as_str())) {
        assert!(
            !text.contains('\n') && !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("\\u{a}"),
            "the newline is shown, escaped: {text:?}"
        );
    }
}

fn request(port: u16) -> MapRequest {
    MapRequest {
        transport: Transport::Tcp,
        internal: std::net::SocketAddr::from(([10, 0, 0, 2], port)).into(),
        external_port: None,
        lifetime: 600,
        permanent_allowed: false,
        probe_state: vec![],
    }
}

async fn breach(forgery: &str, want: &str) {
    let (host, sink) = harness::host();
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&[], &[("map", forgery)], harness::tight()),
    )
    .await;
    let r = mode.call(Op::Map(request(7000))).await;
    match &r.result {
        Err(CallError::ContractBreach { reason, mapping }) => {
            assert!(reason.contains(want), "{reason}");
            assert!(mapping.is_some(), "kept so the broker can undo it");
        }
        other => panic!("{forgery}: {other:?}"),
    }
    let events = sink.take_events();
    assert!(
        events.iter().any(|e| matches!(e,
            AuditEvent::ContractBreach { call: "map", mode, .. } if &**mode == "hostile")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_to_another_internal_endpoint_is_a_breach() {
    let _shared = FDS.read().await;
    breach("forge-internal", "10.0.0.2:5432").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_of_another_transport_is_a_breach() {
    let _shared = FDS.read().await;
    breach("forge-transport", "transport").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_lifetime_is_a_breach() {
    let _shared = FDS.read().await;
    breach("forge-lifetime", "lifetime").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_honest_mapping_passes() {
    let _shared = FDS.read().await;
    let (host, sink) = harness::host();
    let mode = harness::load(&host, HOSTILE, harness::spec(&[], &[], harness::tight())).await;
    let r = mode.call(Op::Map(request(7000))).await;
    assert!(matches!(r.result, Ok(Output::Mapping(_))), "{:?}", r.result);
    assert!(sink.take_events().is_empty());
}

/// Two MODs spinning in wasm yield at every epoch tick: on a runtime with
/// two workers, other work still runs while they spin (without yielding
/// both workers would be held until the MODs' deadline).
#[test]
fn spinning_mods_do_not_hold_the_async_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _alone = FDS.write().await;
        let (_host, mode) = spinner(4_000).await;
        let spins: Vec<_> = (0..2)
            .map(|_| {
                let m = mode.clone();
                tokio::spawn(async move { m.call(Op::Probe).await })
            })
            .collect();
        // Plain async work on the workers, like the daemon answering
        // `status`, for the first second of the MODs' four: were the
        // workers held, the first task after the MODs start would wait for
        // their deadline, and the loop would end after the spins.
        let window = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut served = 0;
        while std::time::Instant::now() < window {
            tokio::spawn(async {}).await.unwrap();
            served += 1;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(served > 0);
        assert!(
            spins.iter().all(|s| !s.is_finished()),
            "other work ran while both MODs spun ({served} tasks)"
        );
        for s in spins {
            let r = s.await.unwrap();
            assert!(
                matches!(r.result, Err(CallError::Timeout(_))),
                "{:?}",
                r.result
            );
        }
    });
}

/// Niceness of each of this process's guest threads (`p2pb-guest`), from
/// /proc (field 19 of a task's stat, after its parenthesised name).
fn guest_nices() -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.ends_with("(p2pb-guest") {
            continue;
        }
        // After the name: state is field 3, nice field 19.
        if let Some(n) = rest.split(' ').nth(16).and_then(|n| n.parse().ok()) {
            nices.push(n);
        }
    }
    nices
}

/// A call that spins makes its guest thread nicer while it runs (so only
/// CPU nobody else wants goes to it), and the thread has the broker's
/// priority back once the call has ended; a call that only waits never
/// changes it. Conditions are polled, each within a bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_call_runs_nicer_and_its_thread_gets_its_priority_back() {
    let _alone = FDS.write().await;
    let (_host, mode) = spinner(3_000).await;
    let base = process_nice();
    let demoted_nice = (base + i64::from(p2pbroker::sandbox::priority::GUEST_NICE)).min(19);
    let spin = {
        let m = mode.clone();
        tokio::spawn(async move { m.call(Op::Probe).await })
    };
    let bound = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut demoted = false;
    while !demoted && std::time::Instant::now() < bound && !spin.is_finished() {
        demoted = guest_nices().iter().any(|&n| n >= demoted_nice);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        demoted,
        "a guest thread was nicer while the MOD spun: {:?}",
        guest_nices()
    );
    let r = spin.await.unwrap();
    assert!(
        matches!(r.result, Err(CallError::Timeout(_))),
        "{:?}",
        r.result
    );
    // The call's end gave the priority back before its result came (no
    // other test runs meanwhile: this one holds FDS alone).
    assert!(
        guest_nices().iter().all(|&n| n == base),
        "every guest thread is back at nice {base}: {:?}",
        guest_nices()
    );
}

/// The test process's own niceness (the guest threads start at it).
fn process_nice() -> i64 {
    // SAFETY: getpriority reads this process's priority; no memory.
    i64::from(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
}

/// The hostile MOD in its `loop` scenario (it spins until its deadline,
/// `timeout_ms`), and the host it runs on.
async fn spinner(timeout_ms: u64) -> (p2pbroker::sandbox::ModeHost, Arc<p2pbroker::sandbox::Mode>) {
    let (host, _) = harness::host();
    let limits = Limits {
        timeout_ms,
        ..harness::tight()
    };
    let mode = harness::load(
        &host,
        HOSTILE,
        harness::spec(&[], &[("scenario", "loop")], limits),
    )
    .await;
    (host, Arc::new(mode))
}
