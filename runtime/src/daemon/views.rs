//! The broker's state as client API records.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use p2pbroker_client::{Lease as LeaseView, LeaseState, ProbeSummary, ProbeView};

use super::leases::{Lease, wire_transport};
use super::nat::NatSeen;
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
        relay: l.relay.carrying.as_ref().map(|c| {
            Box::new(p2pbroker_client::Relay {
                server: c.server,
                leg: c.leg.clone(),
                peers: c
                    .peers
                    .iter()
                    .map(|(peer, local)| p2pbroker_client::RelayPeer {
                        peer: *peer,
                        local: *local,
                    })
                    .collect(),
            })
        }),
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
    nat: Option<&NatSeen>,
    is_relay: impl Fn(&str) -> bool,
) -> ProbeSummary {
    let ranking = rank(order, probes, is_relay);
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
    let mut double_nat = seen
        .iter()
        .any(|s| s.external.is_some() && s.class.is_some_and(|c| c != "global"));
    let double_nat_why = nat.and_then(|n| disagreement(probes, n));
    double_nat |= double_nat_why.is_some();
    ProbeSummary {
        probes: probes.values().map(probe).collect(),
        chosen,
        why,
        gateways,
        external_address: external,
        double_nat,
        double_nat_why,
        nat: nat.map(super::nat::view),
    }
}

/// A gateway protocol's external address that is not the address the STUN
/// server sees: another NAT lies beyond that gateway.
fn disagreement(probes: &BTreeMap<String, Probe>, nat: &NatSeen) -> Option<String> {
    let reflexive = std::net::SocketAddr::from(nat.result.as_ref().ok()?.reflexive).ip();
    probes
        .values()
        .filter(|p| p.mode != nat.mode)
        .find_map(|p| {
            let external = p.result.as_ref().ok()?.external?;
            (external.to_canonical() != reflexive.to_canonical()).then(|| {
                format!(
                    "{} reports the external address {external}, but the STUN server sees \
                     {reflexive}: another NAT beyond that gateway (double NAT or CGNAT)",
                    p.mode
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasmtime_wasi::p2::bindings::sockets::network::{IpSocketAddress, Ipv4SocketAddress};

    use super::*;
    use crate::daemon::selector::Seen;
    use crate::sandbox::wit::discovery::{Behaviour, NatReport};

    fn seen(mode: &str, external: &str) -> (String, Probe) {
        let p = Probe {
            mode: mode.into(),
            result: Ok(Seen {
                external: Some(external.parse().unwrap()),
                class: Some("global"),
                ..Seen::default()
            }),
            elapsed: Duration::ZERO,
            at: Instant::now(),
        };
        (mode.into(), p)
    }

    fn stun(reflexive: (u8, u8, u8, u8)) -> NatSeen {
        let a = |address| {
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: 3478,
                address,
            })
        };
        NatSeen {
            mode: "stun".into(),
            result: Ok(NatReport {
                server: a((198, 51, 100, 1)),
                reflexive: a(reflexive),
                nat: true,
                mapping: Some(Behaviour::EndpointIndependent),
                filtering: None,
                hairpinning: None,
                detail: String::new(),
            }),
            at: Instant::now(),
        }
    }

    #[test]
    fn a_gateway_and_stun_that_disagree_are_a_double_nat() {
        // The gateway hands out a global-looking address that is not the
        // one the world sees: a second NAT beyond it.
        let probes: BTreeMap<_, _> = [seen("nat-pmp", "203.0.113.7")].into();
        let order = vec!["nat-pmp".to_string()];
        let s = summary(
            &probes,
            &order,
            "default",
            vec![],
            Some(&stun((198, 51, 100, 9))),
            |_| false,
        );
        assert!(s.double_nat);
        let why = s.double_nat_why.unwrap();
        assert!(
            why.starts_with("nat-pmp reports the external address 203.0.113.7"),
            "{why}"
        );
        assert!(why.contains("sees 198.51.100.9"), "{why}");
        assert_eq!(s.nat.unwrap().traversal, "hole-punching");

        let agree = summary(
            &probes,
            &order,
            "default",
            vec![],
            Some(&stun((203, 0, 113, 7))),
            |_| false,
        );
        assert!(!agree.double_nat && agree.double_nat_why.is_none());
        let none = summary(&probes, &order, "default", vec![], None, |_| false);
        assert!(!none.double_nat && none.nat.is_none());
    }
}
