//! Choosing and running the MOD that maps a target: gateway MODs in rank
//! order, then relays, the last resort (a relay carries every packet of
//! the application through a server). `reach` puts the NAT's behaviour
//! between the two: where no gateway maps and the NAT's mapping is
//! endpoint-independent, the application can punch its own hole and no
//! relay is spent; behind a NAT that maps per destination only a relay
//! gets through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use p2pbroker_client::{ApiError, ErrorCode, ModeReason, Punch};

use super::api;
use super::broker::{Broker, Target, now_ms};
use super::journal::Intent;
use super::nat::{traversal, view};
use super::selector::{self, Failure, Probe};
use super::timing;
use crate::json::wit_transport;
use crate::policy::Policy;
use crate::sandbox::wit::MapRequest;
use crate::sandbox::wit::Mapping;
use crate::sandbox::wit::relay::LeaseRelay;
use crate::sandbox::{CallError, Mode, Op, Output};

/// A mapping made: the MOD, its mapping and the relay channels it keeps.
pub type Established = (Arc<Mode>, Mapping, Vec<u32>);

/// What `reach` found: a mapping, or that the application can hole-punch.
pub enum Reach {
    /// A MOD mapped it.
    Mapped(Established),
    /// No gateway did, and the NAT lets the application punch its hole.
    Punch(Punch),
}

/// The MODs to try for one target and what has been learned so far.
struct Attempt {
    /// Best first: the ranked gateway MODs, then the relays.
    modes: Vec<Arc<Mode>>,
    /// Each MOD left out or tried without success, with why.
    reasons: Vec<(String, Failure)>,
    /// The policy in force when the attempt began.
    policy: Arc<Policy>,
    /// The probes the ranking saw (each MOD's map starts from its state).
    probes: BTreeMap<String, Probe>,
}

impl Attempt {
    /// Whether a MOD said the wanted external port is taken: another MOD
    /// on the same gateway would only say so again.
    fn conflict(&self, t: &Target) -> bool {
        t.external_port.is_some() && self.reasons.iter().any(|(_, f)| f.kind == "conflict")
    }
}

impl Broker {
    /// Find a MOD that maps `t`: the forced one, or the ranked candidates
    /// in turn (`prefer` first if it is one). Each attempt is journaled as
    /// an intent before the MOD runs. The error lists every MOD's reason.
    pub async fn establish(
        &self,
        t: &Target,
        forced: Option<&str>,
        prefer: Option<&str>,
    ) -> Result<Established, ApiError> {
        let began = Instant::now();
        let mut a = self.candidates(forced, prefer).await?;
        self.metrics.map_stage("select", began.elapsed());
        let modes = std::mem::take(&mut a.modes);
        match self.try_modes(t, modes, &mut a).await? {
            Some(done) => Ok(done),
            None => Err(self.no_map(t, a.reasons)),
        }
    }

    /// As [`Broker::establish`] with the broker's own choice, but where no
    /// gateway MOD maps `t` the NAT's behaviour decides before any relay is
    /// tried (discovering it now if no fresh answer is kept): an
    /// endpoint-independent mapping, or no NAT, is answered with
    /// [`Reach::Punch`]; otherwise the relays are tried.
    pub async fn reach_establish(&self, t: &Target) -> Result<Reach, ApiError> {
        let began = Instant::now();
        let mut a = self.candidates(None, None).await?;
        self.metrics.map_stage("select", began.elapsed());
        let (relays, gateways): (Vec<_>, Vec<_>) = std::mem::take(&mut a.modes)
            .into_iter()
            .partition(|m| m.relays());
        if let Some(done) = self.try_modes(t, gateways, &mut a).await? {
            return Ok(Reach::Mapped(done));
        }
        if !a.conflict(t) {
            if let Some(p) = self.punch_instead(&a.reasons).await {
                return Ok(Reach::Punch(p));
            }
            if let Some(done) = self.try_modes(t, relays, &mut a).await? {
                return Ok(Reach::Mapped(done));
            }
        }
        Err(self.no_map(t, a.reasons))
    }

    /// The MODs to try, best first: the forced one alone, or the policy's
    /// order for this network ranked by the probes (relays after every
    /// gateway MOD), `prefer` first of all if it is one.
    async fn candidates(
        &self,
        forced: Option<&str>,
        prefer: Option<&str>,
    ) -> Result<Attempt, ApiError> {
        let probes = self.probes(false).await;
        let s = self.shared.lock().unwrap();
        let (_, order) = s.policy.order_for(&s.net);
        let ranking = match forced {
            Some(name) if !s.modes.contains_key(name) => {
                return Err(api(
                    ErrorCode::NotFound,
                    format!(
                        "mode `{}` is not loaded or not permitted by the policy",
                        crate::text::escape(name)
                    ),
                ));
            }
            Some(name) => selector::Ranking {
                candidates: vec![name.to_string()],
                excluded: vec![],
            },
            None => {
                let order: Vec<String> = order
                    .into_iter()
                    .filter(|m| s.modes.contains_key(m))
                    .collect();
                selector::rank(&order, &probes, |m| {
                    s.modes.get(m).is_some_and(|x| x.relays())
                })
            }
        };
        let mut modes: Vec<Arc<Mode>> = ranking
            .candidates
            .iter()
            .filter_map(|n| s.modes.get(n).cloned())
            .collect();
        if let Some(pos) = prefer.and_then(|p| modes.iter().position(|m| m.name() == p)) {
            let m = modes.remove(pos);
            modes.insert(0, m);
        }
        Ok(Attempt {
            modes,
            reasons: ranking.excluded,
            policy: s.policy.clone(),
            probes,
        })
    }

    /// Try `modes` in turn until one maps `t`; each failure joins the
    /// attempt's reasons. `Ok(None)`: none did (or the port is taken).
    async fn try_modes(
        &self,
        t: &Target,
        modes: Vec<Arc<Mode>>,
        a: &mut Attempt,
    ) -> Result<Option<Established>, ApiError> {
        for mode in modes {
            let until = min_some(t.expires_ms, a.policy.expires_ms());
            let lifetime =
                timing::gateway_lifetime(a.policy.broker.mapping_lifetime, now_ms(), until);
            let intent = Intent {
                id: t.id,
                mode: mode.name().to_string(),
                transport: t.transport,
                internal: t.internal,
                external_port: t.external_port,
            };
            // Without the intent a crash mid-call could leak a mapping. Its
            // own sync guards only against a power loss during this call,
            // whose mapping then ends with its gateway lifetime: worth the
            // sync (about 0.35 ms of every map, BENCHMARKS.md) only where the
            // policy allows permanent mappings, which would not end.
            let began = Instant::now();
            let written = {
                let mut journal = self.journal.lock().unwrap();
                if a.policy.broker.permanent_allowed {
                    journal.intent(&intent)
                } else {
                    journal.intent_written(&intent)
                }
            };
            self.metrics.map_stage("intent", began.elapsed());
            if let Err(e) = written {
                return Err(api(ErrorCode::Internal, e.to_string()));
            }
            let probe_state = a
                .probes
                .get(mode.name())
                .and_then(|p| p.result.as_ref().ok())
                .map(|s| s.state.clone())
                .unwrap_or_default();
            let req = MapRequest {
                transport: wit_transport(t.transport),
                internal: t.internal.into(),
                external_port: t.external_port,
                lifetime,
                permanent_allowed: a.policy.broker.permanent_allowed,
                probe_state,
            };
            let lease = LeaseRelay {
                kept: Vec::new(),
                internal: Some(t.internal),
            };
            let began = Instant::now();
            let r = mode.call_for(Op::Map(req), lease).await;
            self.metrics.map_stage("mod", began.elapsed());
            if let Err(CallError::ContractBreach {
                mapping: Some(forged),
                ..
            }) = &r.result
            {
                // Whatever the MOD made, it is asked to remove (best effort:
                // a hostile MOD may not; the breach is audited either way).
                let _ = mode.call(Op::Unmap((**forged).clone())).await;
            }
            match Output::mapping(r.result) {
                Ok(m) => return Ok(Some((mode, m, r.relay.kept))),
                Err(e) => {
                    a.reasons
                        .push((mode.name().to_string(), selector::failure(&e)));
                    if a.conflict(t) {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Where the NAT lets the application punch its own hole (an
    /// endpoint-independent mapping, or no NAT at all), the answer that
    /// says so; `None` when it does not, or nobody knows.
    async fn punch_instead(&self, tried: &[(String, Failure)]) -> Option<Punch> {
        let seen = self.nat(false).await?;
        if !traversal(seen.result.as_ref().ok()?).lets_punch() {
            return None;
        }
        let nat = view(&seen);
        Some(Punch {
            external_address: nat.reflexive.map(|r| r.ip()),
            nat,
            reasons: mode_reasons(tried),
        })
    }

    /// The `no-mode` (or `conflict`) answer naming every MOD's reason and,
    /// if a discovery already said, what the NAT allows instead.
    fn no_map(&self, t: &Target, reasons: Vec<(String, Failure)>) -> ApiError {
        let code = if reasons.iter().any(|(_, f)| f.kind == "conflict") {
            ErrorCode::Conflict
        } else {
            ErrorCode::NoMode
        };
        let summary = if reasons.is_empty() {
            "no MOD is permitted by the policy".to_string()
        } else {
            reasons
                .iter()
                .map(|(m, f)| format!("{m}: {} ({})", f.kind, f.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        // Never waited for here.
        let advice = self
            .nat_cached()
            .and_then(|n| super::nat::advice(&n))
            .map(|a| format!("; {a}"))
            .unwrap_or_default();
        // A MOD that failed may see the network differently next time.
        self.invalidate_probes();
        ApiError {
            code,
            message: format!(
                "no MOD could map {} ({}): {summary}{advice}",
                t.internal, t.transport
            ),
            reasons: mode_reasons(&reasons),
        }
    }
}

fn mode_reasons(reasons: &[(String, Failure)]) -> Vec<ModeReason> {
    reasons
        .iter()
        .map(|(mode, f)| ModeReason {
            mode: mode.clone(),
            kind: f.kind.clone(),
            reason: f.reason.clone(),
        })
        .collect()
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}
