//! Running one lifecycle call and turning whatever happened into a typed
//! [`CallReport`].
//!
//! A guest spinning in wasm is stopped by its epoch deadline; one blocked in
//! a host poll (which epochs cannot interrupt) by an outer tokio timeout.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTableError;
use wasmtime::{Store, Trap};

use super::contract;
use super::error::{CallError, Limit, LimitHit, TrapKind};
use super::mode::Mode;
use super::wit::connector::{Destination, GuestIndices as ConnectorIndices};
use super::wit::discovery::{GuestIndices, NatReport};
use super::wit::relay::{LeaseRelay, RelayOutcome};
use super::wit::relay_bindings::GuestIndices as RelayControlIndices;
use super::wit::sockets::Exhausted;
use super::wit::tunnel::{TunnelIn, TunnelOut};
use super::wit::{
    CallState, LogLine, MapRequest, Mapping, ModeError, ModeInfo, ModePre, ProbeReport,
};
use crate::audit::{AuditEvent, CallSummary, Decision, MemorySink, now_rfc3339};

/// Extra time the outer timeout gives over the epoch deadline, so a guest
/// spinning in wasm is reported as `Timeout` (epoch) and only one stuck in a
/// host call as `Blocked`.
const BLOCKED_GRACE: Duration = Duration::from_millis(100);

/// One lifecycle call.
#[derive(Debug, Clone)]
pub enum Op {
    /// `info`.
    Info,
    /// `probe`.
    Probe,
    /// `map`.
    Map(MapRequest),
    /// `renew` with a new lifetime.
    Renew(Mapping, u32),
    /// `unmap`.
    Unmap(Mapping),
    /// `discovery.discover` (0.1.1; MODs that export it).
    Discover,
    /// `connector.handshake` (0.1.2): make the broker's connection to a
    /// proxy a tunnel to the destination.
    Handshake(Destination, Arc<tokio::net::TcpStream>),
    /// `relay-control.permit` (0.1.4): let peers reach a relayed lease.
    Permit(Mapping, Vec<std::net::SocketAddr>),
}

impl Op {
    /// The lifecycle function's name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Info => "info",
            Op::Probe => "probe",
            Op::Map(_) => "map",
            Op::Renew(..) => "renew",
            Op::Unmap(_) => "unmap",
            Op::Discover => "discover",
            Op::Handshake(..) => "handshake",
            Op::Permit(..) => "permit",
        }
    }
}

/// What a successful call returned.
#[derive(Debug, Clone)]
pub enum Output {
    /// From `info`.
    Info(ModeInfo),
    /// From `probe`.
    Probe(ProbeReport),
    /// From `map` or `renew`.
    Mapping(Mapping),
    /// From `unmap`.
    Unmapped,
    /// From `discover`.
    Nat(NatReport),
    /// From `handshake`: the tunnel is open.
    Tunnel,
}

impl Output {
    /// The mapping of a `map`, `renew` or `permit` call's result. Any other
    /// output is an invalid result (the call's checks refuse it before it
    /// gets here; this keeps such a refusal typed rather than lost).
    pub fn mapping(result: Result<Output, CallError>) -> Result<Mapping, CallError> {
        match result? {
            Output::Mapping(m) => Ok(m),
            other => Err(CallError::InvalidResult(format!(
                "expected a mapping, got {}",
                other.name()
            ))),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Output::Info(_) => "mode info",
            Output::Probe(_) => "a probe report",
            Output::Mapping(_) => "a mapping",
            Output::Unmapped => "an unmap",
            Output::Nat(_) => "a NAT report",
            Output::Tunnel => "a tunnel",
        }
    }
}

/// Everything one call produced.
#[derive(Debug)]
pub struct CallReport {
    /// The result, typed.
    pub result: Result<Output, CallError>,
    /// Capability decisions made during the call, in order.
    pub decisions: Vec<Decision>,
    /// Lines the MOD logged.
    pub logs: Vec<LogLine>,
    /// Lines dropped over the per-call cap.
    pub logs_dropped: u64,
    /// Audit lines not written: (repeats of a decision already written,
    /// distinct decisions over `limits.audit_lines`).
    pub audit_suppressed: (u64, u64),
    /// Wall time of the whole call (store creation to result).
    pub elapsed: Duration,
    /// The relay channels kept and closed (contract 0.1.4 `relay`).
    pub relay: RelayOutcome,
}

/// The outer budget for a call whose wasm deadline is `timeout`.
pub(crate) fn outer_budget(timeout: Duration) -> Duration {
    timeout + BLOCKED_GRACE
}

/// What came back from the guest, before validation.
type Raw = Result<Result<Output, ModeError>, CallError>;

/// What a result must answer: the request it was given.
enum Asked {
    Map(MapRequest),
    Renew(Mapping, u32),
    Other,
}

pub(crate) async fn run(mode: &Mode, op: Op, lease: LeaseRelay) -> CallReport {
    let start = std::time::Instant::now();
    let checked = match &op {
        Op::Map(r) => contract::request(r),
        Op::Renew(_, lifetime) => contract::renew_lifetime(*lifetime),
        _ => Ok(()),
    };
    if let Err(why) = checked {
        // The broker enforces the contract before any guest sees the request.
        return CallReport {
            result: Err(CallError::Mode(ModeError::InvalidRequest(why))),
            decisions: Vec::new(),
            logs: Vec::new(),
            logs_dropped: 0,
            audit_suppressed: (0, 0),
            elapsed: start.elapsed(),
            relay: RelayOutcome::default(),
        };
    }
    let call = op.name();
    let asked = match &op {
        Op::Map(r) => Asked::Map(r.clone()),
        Op::Renew(m, l) => Asked::Renew(m.clone(), *l),
        // Permitting peers may not change what the lease forwards.
        Op::Permit(m, _) => Asked::Renew(m.clone(), m.lifetime.max(1)),
        _ => Asked::Other,
    };
    let timeout = mode.spec.limits.timeout();
    let collector = Arc::new(MemorySink::default());
    let mut store = mode.new_store(collector.clone(), lease);
    let raw: Raw = match tokio::time::timeout(
        outer_budget(timeout),
        invoke(&mode.pre, &mode.exports, &mut store, op),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r),
        Ok(Err((phase, e))) => Err(classify(
            phase,
            &e,
            timeout,
            &mode.spec.limits,
            last_error_line(store.data()),
        )),
        // The guest sat in a host future (e.g. poll): epochs cannot stop it.
        Err(_) => Err(CallError::Blocked(timeout)),
    };
    // The store (and any trapped instance in it) is dropped here, never
    // reused; its sockets are closed and given back to the host budget.
    let mut state = store.into_data();
    let memory_peak = state.limiter.memory_total();
    let exhausted = state.budget.exhausted();
    let audit_suppressed = state.audit.suppressed();
    drop(state.wasi);
    drop(state.table);
    state.broker.absorb_stdio();
    let decisions = collector.take();
    let mut result = raw.and_then(|r| validate(r, &asked));
    let relay = state.relay.settle(result.is_ok());
    let explains = matches!(
        result,
        Err(CallError::Mode(_) | CallError::Timeout(_) | CallError::Blocked(_))
    );
    if explains {
        let limits = &mode.spec.limits;
        // A cap or a denial explains what the MOD then reported.
        if let Some(e) = exhausted {
            result = Err(CallError::Limit(match e {
                Exhausted::Sockets => Limit::Sockets(limits.sockets),
                Exhausted::NameLookups => Limit::NameLookups(limits.name_lookups),
            }));
        } else if let Some(d) = decisions.iter().find(|d| d.denied()) {
            result = Err(CallError::Denied {
                address: d.address,
                transport: d.transport,
                use_: d.use_,
            });
        }
    }
    if let Err(CallError::ContractBreach { reason, .. }) = &result {
        mode.audit.event(&AuditEvent::ContractBreach {
            time: now_rfc3339(),
            mode: mode.name.clone(),
            sha256: mode.sha256.clone(),
            call,
            reason: reason.clone(),
        });
    }
    if audit_suppressed != (0, 0) {
        mode.audit.event(&AuditEvent::AuditSuppressed {
            time: now_rfc3339(),
            mode: mode.name.clone(),
            sha256: mode.sha256.clone(),
            repeated: audit_suppressed.0,
            dropped: audit_suppressed.1,
        });
    }
    mode.audit.call(&CallSummary {
        mode: mode.name.clone(),
        op: call,
        elapsed: start.elapsed(),
        memory_peak,
        denials: decisions.iter().filter(|d| d.denied()).count(),
        failed: result.as_ref().err().map(CallError::failure_kind),
    });
    CallReport {
        result,
        decisions,
        logs: state.broker.logs,
        logs_dropped: state.broker.logs_dropped,
        audit_suppressed,
        elapsed: start.elapsed(),
        relay,
    }
}

/// The optional exports a MOD has (their indices), beyond the lifecycle.
#[derive(Default)]
pub(crate) struct Exports {
    /// `discovery` (0.1.1).
    pub discovery: Option<GuestIndices>,
    /// `connector` (0.1.2).
    pub connector: Option<ConnectorIndices>,
    /// `relay-control` (0.1.4).
    pub relay_control: Option<RelayControlIndices>,
}

impl Exports {
    /// Look them up in a linked component.
    pub(crate) fn of(pre: &ModePre<CallState>) -> Exports {
        Exports {
            discovery: GuestIndices::new(pre.instance_pre()).ok(),
            connector: ConnectorIndices::new(pre.instance_pre()).ok(),
            relay_control: RelayControlIndices::new(pre.instance_pre()).ok(),
        }
    }
}

async fn invoke(
    pre: &ModePre<CallState>,
    exports: &Exports,
    store: &mut Store<CallState>,
    op: Op,
) -> Result<Result<Output, ModeError>, (Phase, wasmtime::Error)> {
    match op {
        Op::Handshake(to, stream) => {
            let Some(indices) = &exports.connector else {
                return Ok(Err(missing("connector (contract 0.1.2)")));
            };
            let instance = instantiate(pre, store).await?;
            let guest = indices
                .load(&mut *store, &instance)
                .map_err(|e| (Phase::Instantiate, e))?;
            let table = &mut store.data_mut().table;
            let streams = table
                .push(Box::new(TunnelIn(stream.clone())) as wasmtime_wasi::p2::DynInputStream)
                .and_then(|input| {
                    table
                            .push(Box::new(TunnelOut::new(stream))
                                as wasmtime_wasi::p2::DynOutputStream)
                            .map(|output| (input, output))
                })
                .map_err(|e| (Phase::Instantiate, e.into()))?;
            guest
                .call_handshake(&mut *store, &to, streams.0, streams.1)
                .await
                .map(|r| r.map(|()| Output::Tunnel))
                .map_err(|e| (Phase::Call, e))
        }
        Op::Permit(current, peers) => {
            let Some(indices) = &exports.relay_control else {
                return Ok(Err(missing("relay-control (contract 0.1.4)")));
            };
            let instance = instantiate(pre, store).await?;
            let guest = indices
                .load(&mut *store, &instance)
                .map_err(|e| (Phase::Instantiate, e))?;
            let peers: Vec<_> = peers.into_iter().map(Into::into).collect();
            guest
                .call_permit(&mut *store, &current, &peers)
                .await
                .map(|r| r.map(Output::Mapping))
                .map_err(|e| (Phase::Call, e))
        }
        Op::Discover => {
            let Some(indices) = &exports.discovery else {
                return Ok(Err(missing("discovery (contract 0.1.1)")));
            };
            let instance = instantiate(pre, store).await?;
            let guest = indices
                .load(&mut *store, &instance)
                .map_err(|e| (Phase::Instantiate, e))?;
            guest
                .call_discover(&mut *store)
                .await
                .map(|r| r.map(Output::Nat))
                .map_err(|e| (Phase::Call, e))
        }
        op => {
            let instance = pre
                .instantiate_async(&mut *store)
                .await
                .map_err(|e| (Phase::Instantiate, e))?;
            call(&instance, store, op)
                .await
                .map_err(|e| (Phase::Call, e))
        }
    }
}

fn missing(export: &str) -> ModeError {
    ModeError::Unsupported(format!("this MOD does not export {export}"))
}

/// A fresh instance, for the optional exports (their indices are looked up
/// in it).
async fn instantiate(
    pre: &ModePre<CallState>,
    store: &mut Store<CallState>,
) -> Result<wasmtime::component::Instance, (Phase, wasmtime::Error)> {
    pre.instance_pre()
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| (Phase::Instantiate, e))
}

/// Where a wasmtime error came from: the pool or start-up code, or the
/// lifecycle call itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
}

async fn call(
    instance: &super::wit::Mode,
    store: &mut Store<CallState>,
    op: Op,
) -> wasmtime::Result<Result<Output, ModeError>> {
    let lc = instance.p2pbroker_mode_lifecycle();
    Ok(match op {
        Op::Info => Ok(Output::Info(lc.call_info(&mut *store).await?)),
        Op::Probe => lc.call_probe(&mut *store).await?.map(Output::Probe),
        Op::Map(r) => lc.call_map(&mut *store, &r).await?.map(Output::Mapping),
        Op::Renew(m, lifetime) => lc
            .call_renew(&mut *store, &m, lifetime)
            .await?
            .map(Output::Mapping),
        Op::Unmap(m) => lc
            .call_unmap(&mut *store, &m)
            .await?
            .map(|()| Output::Unmapped),
        Op::Discover | Op::Handshake(..) | Op::Permit(..) => unreachable!("handled by invoke"),
    })
}

fn validate(r: Result<Output, ModeError>, asked: &Asked) -> Result<Output, CallError> {
    let checked = match (&r, asked) {
        (Ok(Output::Info(i)), _) => contract::info(i),
        (Ok(Output::Probe(p)), _) => contract::probe(p),
        (Ok(Output::Mapping(m)), Asked::Map(req)) => {
            contract::map_result(m, req).map_err(|reason| breach(reason, m))?;
            Ok(())
        }
        (Ok(Output::Mapping(m)), Asked::Renew(current, lifetime)) => {
            contract::renew_result(m, current, *lifetime).map_err(|reason| breach(reason, m))?;
            Ok(())
        }
        (Ok(Output::Mapping(_)), Asked::Other) => Err("a mapping where none was asked".into()),
        (Ok(_), Asked::Map(_) | Asked::Renew(..)) => Err("no mapping where one was asked".into()),
        (Ok(Output::Unmapped), _) => Ok(()),
        (Ok(Output::Nat(n)), _) => contract::nat(n),
        (Ok(Output::Tunnel), _) => Ok(()),
        (Err(e), _) => contract::error(e),
    };
    checked.map_err(CallError::InvalidResult)?;
    match r {
        Ok(Output::Probe(mut p)) => {
            p.detail = contract::clean_text(p.detail);
            Ok(Output::Probe(p))
        }
        Ok(Output::Nat(mut n)) => {
            n.detail = contract::clean_text(n.detail);
            Ok(Output::Nat(n))
        }
        Ok(Output::Info(mut i)) => {
            i.version = contract::clean_text(i.version);
            i.summary = contract::clean_text(i.summary);
            Ok(Output::Info(i))
        }
        Ok(o) => Ok(o),
        Err(e) => Err(CallError::Mode(contract::clean_error(e))),
    }
}

/// A mapping that does not answer its request: refused, but kept so the
/// caller can ask the MOD to remove whatever it made.
fn breach(reason: String, m: &Mapping) -> CallError {
    CallError::ContractBreach {
        reason,
        mapping: Some(Box::new(m.clone())),
    }
}

fn last_error_line(state: &CallState) -> Option<String> {
    state
        .broker
        .logs
        .iter()
        .rev()
        .find(|l: &&LogLine| l.level == "error")
        .map(|l| l.message.clone())
}

/// Map a wasmtime error to the typed call error.
fn classify(
    phase: Phase,
    e: &wasmtime::Error,
    timeout: Duration,
    limits: &super::limits::Limits,
    guest_said: Option<String>,
) -> CallError {
    for cause in e.chain() {
        if let Some(LimitHit(limit)) = cause.downcast_ref::<LimitHit>() {
            return CallError::Limit(*limit);
        }
        if let Some(ResourceTableError::Full) = cause.downcast_ref::<ResourceTableError>() {
            return CallError::Limit(Limit::TableEntries(limits.table_entries));
        }
        if let Some(t) = cause.downcast_ref::<ResourceTableError>() {
            return CallError::BadHostCall(format!("invalid resource handle: {t}"));
        }
    }
    let Some(trap) = e.downcast_ref::<Trap>() else {
        // Not a trap, limit or bad handle: during instantiation that is the
        // pool or linking; during the call, a host function refusing the
        // guest's arguments.
        let text = format!("{e:#}");
        return match phase {
            Phase::Instantiate => CallError::Instantiate(text),
            Phase::Call => CallError::BadHostCall(text),
        };
    };
    let kind = match trap {
        Trap::Interrupt => return CallError::Timeout(timeout),
        Trap::OutOfFuel => return CallError::OutOfFuel,
        Trap::UnreachableCodeReached => TrapKind::Unreachable,
        Trap::StackOverflow => TrapKind::StackOverflow,
        Trap::MemoryOutOfBounds | Trap::TableOutOfBounds | Trap::HeapMisaligned => {
            TrapKind::OutOfBounds
        }
        Trap::IntegerOverflow | Trap::IntegerDivisionByZero | Trap::BadConversionToInteger => {
            TrapKind::Arithmetic
        }
        Trap::IndirectCallToNull | Trap::BadSignature => TrapKind::BadCall,
        _ => TrapKind::Other,
    };
    let mut message = trap.to_string();
    if let Some(said) = guest_said {
        message.push_str(": ");
        message.push_str(&said);
    }
    CallError::Trap { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::wit::Transport;

    #[test]
    fn only_a_mapping_is_a_mapping_and_anything_else_a_typed_error() {
        let m = mapping();
        let got = Output::mapping(Ok(Output::Mapping(m.clone()))).unwrap();
        assert_eq!(got.state, m.state);
        assert_eq!(got.lifetime, m.lifetime);
        let Err(CallError::InvalidResult(why)) = Output::mapping(Ok(Output::Unmapped)) else {
            panic!("an invalid result")
        };
        assert_eq!(why, "expected a mapping, got an unmap");
        let timeout = Err(CallError::Timeout(Duration::from_secs(5)));
        assert!(matches!(
            Output::mapping(timeout),
            Err(CallError::Timeout(_))
        ));
    }

    fn mapping() -> Mapping {
        crate::sandbox::contract::tests::mapping_to("198.51.100.2:4000")
    }

    /// A map or renew must answer with a mapping, and only they may: a
    /// host that took "no mapping" for success would report a hole that
    /// does not exist.
    #[test]
    fn a_mapping_answers_exactly_map_and_renew() {
        let asked_map = Asked::Map(MapRequest {
            transport: Transport::Udp,
            internal: mapping().internal,
            external_port: None,
            lifetime: 600,
            permanent_allowed: false,
            probe_state: vec![],
        });
        for (asked, what) in [(asked_map, "map"), (Asked::Renew(mapping(), 600), "renew")] {
            let e = validate(Ok(Output::Unmapped), &asked).unwrap_err();
            assert!(
                matches!(&e, CallError::InvalidResult(r) if r.contains("no mapping")),
                "{what}: {e}"
            );
            assert_eq!(e.failure_kind(), "fault");
        }
        let e = validate(Ok(Output::Mapping(mapping())), &Asked::Other).unwrap_err();
        assert!(matches!(e, CallError::InvalidResult(_)), "{e}");
        assert!(validate(Ok(Output::Unmapped), &Asked::Other).is_ok());
    }
}
