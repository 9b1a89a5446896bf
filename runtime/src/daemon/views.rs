//! The broker's state as client API records.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use p2pbroker_client::{Lease as LeaseView, LeaseState, ProbeSummary, ProbeView};

use super::leases::{Lease, wire_transport};
use super::selector::{Probe, rank};

/// A lease as clients see it.
pub fn lease(l: &Lease) -> LeaseView {
    let m = &l.rec.mapping;
    LeaseView {
        id: l.rec.id,
        transport: wire_transport(m.transport),
        internal: m.internal,
        external: m.external,
        mode: l.rec.mode.clone(),
        state: l.state,
        gateway_lifetime: m.lifetime,
        renew_at: match l.state {
            LeaseState::Active => l.due_ms.map(|d| d / 1000),
            _ => None,
        },
        expires_at: l.rec.expires_at,
        owner_uid: l.rec.owner_uid,
        lan_client: l.rec.owner_lan.clone(),
        persist: l.rec.persist,
        created_at: l.rec.created_at,
    }
}

/// One probe as clients see it.
pub fn probe(p: &Probe) -> ProbeView {
    let (ok, kind, detail, seen) = match &p.result {
        Ok(s) => (true, None, s.detail.clone(), Some(s)),
        Err(f) => (false, Some(f.kind.clone()), f.reason.clone(), None),
    };
    ProbeView {
        mode: p.mode.clone(),
        ok,
        kind,
        detail,
        gateway: seen.and_then(|s| s.gateway),
        external_address: seen.and_then(|s| s.external),
        external_class: seen.and_then(|s| s.class.map(String::from)),
        elapsed_ms: p.elapsed.as_millis() as u64,
        age_s: Instant::now().saturating_duration_since(p.at).as_secs(),
    }
}

/// The one-shot diagnosis: every probe, which MOD would be chosen and why,
/// and whether the edge is a double NAT / CGNAT.
pub fn summary(
    probes: &BTreeMap<String, Probe>,
    order: &[String],
    profile: &str,
    gateways: Vec<IpAddr>,
) -> ProbeSummary {
    let ranking = rank(order, probes);
    let ok = |m: &String| probes.get(m).is_some_and(|p| p.result.is_ok());
    let chosen = ranking.candidates.first().cloned();
    let why = match &chosen {
        Some(m) if ok(m) => {
            let before: Vec<String> = order
                .iter()
                .take_while(|x| *x != m)
                .map(|x| match probes.get(x).map(|p| &p.result) {
                    Some(Err(f)) => format!("{x} ({}: {})", f.kind, f.reason),
                    _ => x.clone(),
                })
                .collect();
            if before.is_empty() {
                format!("`{m}` is first in the `{profile}` profile's order and its probe succeeded")
            } else {
                format!(
                    "`{m}` is the first MOD of the `{profile}` profile's order whose probe succeeded; \
                     skipped: {}",
                    before.join(", ")
                )
            }
        }
        Some(m) => {
            format!("no probe succeeded; `{m}` would be tried first (its probe failed transiently)")
        }
        None => "no MOD can work on this network (every probe says unavailable, unsupported \
                 or denied)"
            .to_string(),
    };
    let seen: Vec<_> = probes
        .values()
        .filter_map(|p| p.result.as_ref().ok())
        .collect();
    let external = seen
        .iter()
        .find(|s| s.class == Some("global"))
        .or_else(|| seen.iter().find(|s| s.external.is_some()))
        .and_then(|s| s.external);
    let double_nat = seen
        .iter()
        .any(|s| s.external.is_some() && s.class.is_some_and(|c| c != "global"));
    ProbeSummary {
        probes: probes.values().map(probe).collect(),
        chosen,
        why,
        gateways,
        external_address: external,
        double_nat,
    }
}
