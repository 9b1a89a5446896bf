//! Running one lifecycle call and turning whatever happened into a typed
//! [`CallReport`].

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTableError;
use wasmtime::{Store, Trap};

use crate::audit::MemorySink;
use crate::bindings::{ModeError, ModePre, Transport};
use crate::contract;
use crate::error::{CallError, LimitHit, TrapKind};
use crate::host::{CallReport, Mode, Op, Output, outer_budget};
use crate::state::{CallState, LogLine};

/// What came back from the guest, before validation.
type Raw = Result<Result<Output, ModeError>, CallError>;

pub(crate) async fn run(mode: &Mode, op: Op) -> CallReport {
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
            elapsed: start.elapsed(),
        };
    }
    let asked = match &op {
        Op::Map(r) => Some(r.transport),
        Op::Renew(m, _) => Some(m.transport),
        _ => None,
    };
    let timeout = mode.spec.limits.timeout();
    let collector = Arc::new(MemorySink::default());
    let mut store = mode.new_store(collector.clone());
    let raw: Raw = match tokio::time::timeout(
        outer_budget(timeout),
        invoke(&mode.pre, &mut store, op),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r),
        Ok(Err((phase, e))) => Err(classify(phase, &e, timeout, last_error_line(store.data()))),
        // The guest sat in a host future (e.g. poll): epochs cannot stop it.
        Err(_) => Err(CallError::Blocked(timeout)),
    };
    // The store (and any trapped instance in it) is dropped here, never reused.
    let state = store.into_data();
    let decisions = collector.take();
    let mut result = raw.and_then(|r| validate(r, asked));
    let explains = matches!(
        result,
        Err(CallError::Mode(_) | CallError::Timeout(_) | CallError::Blocked(_))
    );
    if explains && let Some(d) = decisions.iter().find(|d| d.denied()) {
        result = Err(CallError::Denied {
            address: d.address,
            transport: d.transport,
            use_: d.use_,
        });
    }
    CallReport {
        result,
        decisions,
        logs: state.broker.logs,
        logs_dropped: state.broker.logs_dropped,
        elapsed: start.elapsed(),
    }
}

async fn invoke(
    pre: &ModePre<CallState>,
    store: &mut Store<CallState>,
    op: Op,
) -> Result<Result<Output, ModeError>, (Phase, wasmtime::Error)> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| (Phase::Instantiate, e))?;
    call(&instance, store, op)
        .await
        .map_err(|e| (Phase::Call, e))
}

/// Where a wasmtime error came from: the pool or start-up code, or the
/// lifecycle call itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
}

async fn call(
    instance: &crate::bindings::Mode,
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
    })
}

fn validate(r: Result<Output, ModeError>, asked: Option<Transport>) -> Result<Output, CallError> {
    let checked = match &r {
        Ok(Output::Info(i)) => contract::info(i),
        Ok(Output::Probe(p)) => contract::probe(p),
        Ok(Output::Mapping(m)) => contract::mapping(m, asked.unwrap_or(m.transport)),
        Ok(Output::Unmapped) => Ok(()),
        Err(e) => contract::error(e),
    };
    checked.map_err(CallError::InvalidResult)?;
    r.map_err(CallError::Mode)
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
    guest_said: Option<String>,
) -> CallError {
    for cause in e.chain() {
        if let Some(LimitHit(limit)) = cause.downcast_ref::<LimitHit>() {
            return CallError::Limit(*limit);
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
