//! NAT behaviour discovery in the daemon: the MODs that export `discover`
//! (contract 0.1.1; the `stun` MOD) are asked off the probe path, and the
//! answer is kept until the network changes or the probe TTL passes.
//! `p2pb probe` shows it; a map that no MOD could make says what it means
//! for the application ([`traversal`]).

use std::time::{Duration, Instant};

use p2pbroker_client::NatView;

use super::broker::Broker;
use crate::json::behaviour;
use crate::sandbox::wit::discovery::{Behaviour, NatReport};
use crate::sandbox::{Op, Output};

/// One discovery's outcome.
#[derive(Debug, Clone)]
pub struct NatSeen {
    /// The MOD asked.
    pub mode: String,
    /// Its report, or why there is none.
    pub result: Result<NatReport, String>,
    /// When.
    pub at: Instant,
}

/// What the NAT's behaviour means for a peer-to-peer application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traversal {
    /// No NAT.
    Direct,
    /// An endpoint-independent mapping: hole punching works through it.
    HolePunching,
    /// A mapping that depends on the peer (symmetric): only a relay.
    Relay,
    /// The mapping is undetermined.
    Unknown,
}

impl Traversal {
    /// The word clients see (`direct`, `hole-punching`, `relay`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Traversal::Direct => "direct",
            Traversal::HolePunching => "hole-punching",
            Traversal::Relay => "relay",
            Traversal::Unknown => "unknown",
        }
    }

    /// Whether an application can open its own way in by hole punching
    /// (no relay needed): an endpoint-independent mapping keeps the
    /// endpoint it announced, and with no NAT only a stateful firewall
    /// stands in the way, which its outbound packets open too.
    pub fn lets_punch(self) -> bool {
        matches!(self, Traversal::HolePunching | Traversal::Direct)
    }

    /// One sentence for a map no MOD could make.
    fn advice(self) -> Option<&'static str> {
        match self {
            Traversal::Direct => {
                Some("no NAT in front of this host (STUN): a firewall rule is what is missing")
            }
            Traversal::HolePunching => Some(
                "the NAT maps endpoint-independently (STUN): hole punching can reach this \
                 host without a port mapping",
            ),
            Traversal::Relay => Some(
                "the NAT maps per destination (symmetric, STUN): only a relay (TURN) reaches \
                 this host",
            ),
            Traversal::Unknown => None,
        }
    }
}

/// The traversal a NAT report means.
pub fn traversal(r: &NatReport) -> Traversal {
    match (r.nat, r.mapping) {
        (false, _) => Traversal::Direct,
        (true, Some(Behaviour::EndpointIndependent)) => Traversal::HolePunching,
        (true, Some(_)) => Traversal::Relay,
        (true, None) => Traversal::Unknown,
    }
}

/// One sentence for a failed map: what the NAT allows instead.
pub fn advice(seen: &NatSeen) -> Option<String> {
    traversal(seen.result.as_ref().ok()?)
        .advice()
        .map(String::from)
}

/// The view clients get.
pub fn view(seen: &NatSeen) -> NatView {
    let age_s = seen.at.elapsed().as_secs();
    match &seen.result {
        Ok(r) => NatView {
            mode: seen.mode.clone(),
            ok: true,
            server: Some(r.server.into()),
            reflexive: Some(r.reflexive.into()),
            nat: Some(r.nat),
            mapping: r.mapping.map(|b| behaviour(b).to_string()),
            filtering: r.filtering.map(|b| behaviour(b).to_string()),
            hairpinning: r.hairpinning,
            traversal: traversal(r).as_str().into(),
            detail: r.detail.clone(),
            age_s,
        },
        Err(why) => NatView {
            mode: seen.mode.clone(),
            ok: false,
            server: None,
            reflexive: None,
            nat: None,
            mapping: None,
            filtering: None,
            hairpinning: None,
            traversal: Traversal::Unknown.as_str().into(),
            detail: why.clone(),
            age_s,
        },
    }
}

impl Broker {
    /// The NAT's behaviour, discovering it now if the last answer is older
    /// than the probe TTL (or the network changed since), or, if `fresh`,
    /// older than [`super::timing::FRESH_PROBE_MIN_INTERVAL`].
    /// `None` when no loaded MOD exports `discover`.
    pub async fn nat(&self, fresh: bool) -> Option<NatSeen> {
        let asked = Instant::now();
        let _round = self.discovering.lock().await;
        let modes = {
            let s = self.shared.lock().unwrap();
            let ttl = Duration::from_secs(s.policy.broker.probe_ttl_s);
            // As for probes: a fresh request takes a discovery up to 10 s
            // old, so a local user cannot keep the MOD busy.
            if let Some(seen) = &s.nat {
                let age = Some(seen.at.elapsed());
                if super::timing::probes_serve(age, seen.at >= asked, fresh, ttl) {
                    return Some(seen.clone());
                }
            }
            s.modes
                .values()
                .filter(|m| m.discovers())
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut last = None;
        for mode in modes {
            let result = match mode.call(Op::Discover).await.result {
                Ok(Output::Nat(r)) => Ok(r),
                Ok(_) => Err("discover returned no NAT report".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let ok = result.is_ok();
            last = Some(NatSeen {
                mode: mode.name().to_string(),
                result,
                at: Instant::now(),
            });
            if ok {
                break;
            }
        }
        let mut s = self.shared.lock().unwrap();
        s.nat = last.clone();
        last
    }

    /// The last discovery, without waiting for a new one.
    pub fn nat_cached(&self) -> Option<NatSeen> {
        self.shared.lock().unwrap().nat.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::p2::bindings::sockets::network::{IpSocketAddress, Ipv4SocketAddress};

    fn report(nat: bool, mapping: Option<Behaviour>) -> NatReport {
        let a = IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port: 3478,
            address: (198, 51, 100, 1),
        });
        NatReport {
            server: a,
            reflexive: a,
            nat,
            mapping,
            filtering: None,
            hairpinning: None,
            detail: "d".into(),
        }
    }

    #[test]
    fn traversal_follows_the_mapping_behaviour() {
        use Behaviour::*;
        assert_eq!(traversal(&report(false, None)), Traversal::Direct);
        assert_eq!(
            traversal(&report(true, Some(EndpointIndependent))),
            Traversal::HolePunching
        );
        assert_eq!(
            traversal(&report(true, Some(AddressDependent))),
            Traversal::Relay
        );
        assert_eq!(
            traversal(&report(true, Some(AddressAndPortDependent))),
            Traversal::Relay
        );
        assert_eq!(traversal(&report(true, None)), Traversal::Unknown);
        assert_eq!(Traversal::HolePunching.as_str(), "hole-punching");
        assert!(Traversal::HolePunching.lets_punch() && Traversal::Direct.lets_punch());
        assert!(!Traversal::Relay.lets_punch() && !Traversal::Unknown.lets_punch());
        assert_eq!(Traversal::Unknown.advice(), None);
    }

    #[test]
    fn the_view_and_the_advice_say_the_same() {
        let seen = NatSeen {
            mode: "stun".into(),
            result: Ok(report(true, Some(Behaviour::AddressAndPortDependent))),
            at: Instant::now(),
        };
        let v = view(&seen);
        assert_eq!(v.mapping.as_deref(), Some("address-and-port-dependent"));
        assert_eq!(v.reflexive, Some("198.51.100.1:3478".parse().unwrap()));
        assert!(advice(&seen).unwrap().contains("only a relay"));
        let failed = NatSeen {
            result: Err("STUN server did not answer".into()),
            ..seen
        };
        assert!(!view(&failed).ok);
        assert_eq!(advice(&failed), None);
    }
}
