//! Mode selection: probe every permitted MOD in parallel, rank them by the
//! policy's order and by what each probe saw, and try `map` in rank order.
//!
//! [`rank`] is pure (unit-tested); [`probe_all`] is the thin async glue.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::json::{class_name, ip};
use crate::sandbox::error::{CallError, mode_error_message};
use crate::sandbox::{Mode, Op, Output};

/// What one MOD's probe saw.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The MOD's name.
    pub mode: String,
    /// Success with what was seen, or the failure's kind and reason.
    pub result: Result<Seen, Failure>,
    /// How long the probe took.
    pub elapsed: Duration,
    /// When it finished.
    pub at: Instant,
}

/// A successful probe.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The gateway or server that answered.
    pub gateway: Option<IpAddr>,
    /// External address learned.
    pub external: Option<IpAddr>,
    /// Its class (`global`, `private`, `shared`, ...).
    pub class: Option<&'static str>,
    /// The MOD's one-line account.
    pub detail: String,
    /// Opaque state for the next `map`.
    pub state: Vec<u8>,
}

/// Why a MOD could not be used: the contract's error kind (or the
/// sandbox's: `timeout`, `fault`, `denied`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `unavailable`, `unsupported`, `denied`, `timeout`, `fault`, ...
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
}

impl Failure {
    /// A failure of the given kind.
    pub fn new(kind: &str, reason: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            reason: reason.into(),
        }
    }

    /// Whether this MOD is of no use on this network at all (as opposed to
    /// a transient failure worth another try).
    pub fn excludes(&self) -> bool {
        matches!(self.kind.as_str(), "unavailable" | "unsupported" | "denied")
    }
}

/// A call error as a [`Failure`].
pub fn failure(e: &CallError) -> Failure {
    match e {
        CallError::Mode(m) => Failure::new(e.failure_kind(), mode_error_message(m)),
        _ => Failure::new(e.failure_kind(), e.to_string()),
    }
}

/// The ranked candidates and the MODs left out, each with its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranking {
    /// MOD names to try, best first.
    pub candidates: Vec<String>,
    /// MODs not worth trying here, with why.
    pub excluded: Vec<(String, Failure)>,
}

/// Rank the MODs of `order`: those whose probe succeeded first, then those
/// that failed transiently (or were not probed), each group in policy
/// order, and the relays (`is_relay`) after all of them, ranked the same
/// way: a relay carries every packet through a server, the last resort
/// even when its probe answered and a gateway's did not. MODs whose probe
/// says they cannot work here are excluded.
pub fn rank(
    order: &[String],
    probes: &BTreeMap<String, Probe>,
    is_relay: impl Fn(&str) -> bool,
) -> Ranking {
    let mut ok = Vec::new();
    let mut maybe = Vec::new();
    let mut excluded = Vec::new();
    for name in order {
        match probes.get(name).map(|p| &p.result) {
            Some(Ok(_)) => ok.push(name.clone()),
            Some(Err(f)) if f.excludes() => excluded.push((name.clone(), f.clone())),
            _ => maybe.push(name.clone()),
        }
    }
    ok.extend(maybe);
    // Stable: each group keeps its order.
    ok.sort_by_key(|m| is_relay(m));
    Ranking {
        candidates: ok,
        excluded,
    }
}

/// Probe one MOD within `budget`.
pub async fn probe_one(mode: Arc<Mode>, budget: Duration) -> Probe {
    let start = Instant::now();
    let name = mode.name().to_string();
    let result = match tokio::time::timeout(budget, mode.call(Op::Probe)).await {
        Err(_) => Err(Failure::new(
            "timeout",
            format!("no probe result within {} ms", budget.as_millis()),
        )),
        Ok(r) => match r.result {
            Ok(Output::Probe(p)) => Ok(Seen {
                gateway: p.gateway.as_ref().map(ip),
                external: p.external_address.as_ref().map(ip),
                class: p.external_class.map(class_name),
                detail: p.detail,
                state: p.state,
            }),
            Ok(_) => Err(Failure::new("fault", "probe returned no probe report")),
            Err(e) => Err(failure(&e)),
        },
    };
    Probe {
        mode: name,
        result,
        elapsed: start.elapsed(),
        at: Instant::now(),
    }
}

/// Probe `modes` in parallel: each within `budget`, the round within `cap`
/// (a MOD still running at the cap is reported as timed out).
pub async fn probe_all(modes: Vec<Arc<Mode>>, budget: Duration, cap: Duration) -> Vec<Probe> {
    let names: Vec<String> = modes.iter().map(|m| m.name().to_string()).collect();
    let mut set = tokio::task::JoinSet::new();
    for m in modes {
        set.spawn(probe_one(m, budget));
    }
    let mut done: BTreeMap<String, Probe> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + cap;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        if let Ok(p) = joined {
            done.insert(p.mode.clone(), p);
        }
    }
    set.abort_all();
    names
        .into_iter()
        .map(|n| {
            done.remove(&n).unwrap_or_else(|| Probe {
                mode: n,
                result: Err(Failure::new(
                    "timeout",
                    format!("probe round capped at {} ms", cap.as_millis()),
                )),
                elapsed: cap,
                at: Instant::now(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(mode: &str, result: Result<Seen, Failure>) -> (String, Probe) {
        let p = Probe {
            mode: mode.into(),
            result,
            elapsed: Duration::ZERO,
            at: Instant::now(),
        };
        (mode.into(), p)
    }

    fn order(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn working_modes_first_then_transient_failures_in_policy_order() {
        let probes: BTreeMap<_, _> = [
            probe("direct", Err(Failure::new("unavailable", "behind NAT"))),
            probe("pcp", Err(Failure::new("timeout", "no answer"))),
            probe("nat-pmp", Ok(Seen::default())),
            probe("upnp-igd", Ok(Seen::default())),
        ]
        .into_iter()
        .collect();
        let r = rank(
            &order(&["direct", "pcp", "nat-pmp", "upnp-igd", "static"]),
            &probes,
            |_| false,
        );
        assert_eq!(
            r.candidates,
            order(&["nat-pmp", "upnp-igd", "pcp", "static"])
        );
        assert_eq!(r.excluded.len(), 1);
        assert_eq!(r.excluded[0].0, "direct");
        assert_eq!(r.excluded[0].1.reason, "behind NAT");
    }

    #[test]
    fn everything_excluded_leaves_no_candidate_but_every_reason() {
        let probes: BTreeMap<_, _> = [
            probe("pcp", Err(Failure::new("unsupported", "NAT-PMP only"))),
            probe("nat-pmp", Err(Failure::new("denied", "gate"))),
        ]
        .into_iter()
        .collect();
        let r = rank(&order(&["pcp", "nat-pmp"]), &probes, |_| false);
        assert!(r.candidates.is_empty());
        assert_eq!(r.excluded.len(), 2);
    }

    #[test]
    fn relays_come_after_every_gateway_mod_even_when_only_their_probe_answered() {
        let probes: BTreeMap<_, _> = [
            probe("turn-relay", Ok(Seen::default())),
            probe("corp-relay", Err(Failure::new("timeout", "no answer"))),
            probe("pcp", Err(Failure::new("timeout", "no answer"))),
            probe("upnp-igd", Ok(Seen::default())),
        ]
        .into_iter()
        .collect();
        let relay = |m: &str| m.ends_with("-relay");
        let r = rank(
            &order(&["turn-relay", "corp-relay", "pcp", "upnp-igd", "nat-pmp"]),
            &probes,
            relay,
        );
        assert_eq!(
            r.candidates,
            order(&["upnp-igd", "pcp", "nat-pmp", "turn-relay", "corp-relay"])
        );
    }
}
