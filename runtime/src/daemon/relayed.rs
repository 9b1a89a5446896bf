//! Relayed leases (contract 0.1.4 `relay`): the channels a TURN MOD kept
//! for a lease, handed to each later call on that lease and closed when
//! the lease ends, and `permit`, which lets peers reach it.
//!
//! Channels die with the process, so they are never journaled: after a
//! restart a relayed lease's renewal finds none, the MOD reports the
//! mapping lost, and the lease is relayed anew (a new allocation; the old
//! one times out on the server).

use std::net::SocketAddr;
use std::sync::Arc;

use p2pbroker_client::{ApiError, ErrorCode, EventKind, Lease as LeaseView};

use super::api;
use super::broker::Broker;
use super::leases::{Relay, Requester};
use super::views;
use crate::json::MappingJson;
use crate::sandbox::wit::Mapping;
use crate::sandbox::wit::relay::LeaseRelay;
use crate::sandbox::{Op, Output};

use p2pbroker_client::proto::PERMIT_MAX;

/// What a call brings to the `relay` import for channels `kept` serving
/// `internal` (a lease not yet installed).
pub fn lease_of(kept: &[u32], internal: SocketAddr) -> LeaseRelay {
    LeaseRelay {
        kept: kept.to_vec(),
        internal: Some(internal),
    }
}

impl Broker {
    /// What a call on lease `id` brings to the `relay` import.
    pub fn lease_relay(&self, id: u64, internal: SocketAddr) -> LeaseRelay {
        let kept = self
            .shared
            .lock()
            .unwrap()
            .table
            .get(id)
            .map(|l| l.relay.channels.clone())
            .unwrap_or_default();
        LeaseRelay {
            kept,
            internal: Some(internal),
        }
    }

    /// The relay a lease holds through channels `kept` (what the first
    /// carries, if any).
    pub fn relay_of(&self, kept: Vec<u32>) -> Relay {
        let carrying = kept
            .first()
            .and_then(|c| self.host.relay_hub()?.carrying(*c));
        Relay {
            channels: kept,
            carrying,
        }
    }

    /// Record the channels lease `id` holds after a call; returns what
    /// was recorded.
    pub fn record_relay(&self, id: u64, kept: Vec<u32>) -> Relay {
        let relay = self.relay_of(kept);
        self.shared
            .lock()
            .unwrap()
            .table
            .set_relay(id, relay.clone());
        relay
    }

    /// Close whatever channels `channels` names (a lease that ended or is
    /// being relayed anew).
    pub fn close_relay(&self, channels: &[u32]) {
        if let Some(hub) = self.host.relay_hub() {
            for c in channels {
                hub.close(*c);
            }
        }
    }

    /// Let `peers` reach relayed lease `id` (the client's `permit`).
    pub async fn permit(
        self: &Arc<Self>,
        id: u64,
        peers: Vec<SocketAddr>,
        who: &Requester,
    ) -> Result<LeaseView, ApiError> {
        if peers.is_empty() || peers.len() > PERMIT_MAX {
            return Err(api(
                ErrorCode::BadRequest,
                format!("`permit` takes 1 to {PERMIT_MAX} peer addresses"),
            ));
        }
        if let Some(p) = peers
            .iter()
            .find(|p| p.port() == 0 || p.ip().is_unspecified() || p.ip().is_multicast())
        {
            return Err(api(
                ErrorCode::BadRequest,
                format!("{p} is not a peer address (a unicast IP and a port from 1)"),
            ));
        }
        let Some(l) = self.snapshot(id).filter(|l| l.visible_to(who)) else {
            return Err(api(ErrorCode::NotFound, format!("no lease {id}")));
        };
        let mode = self.mode_named(&l.rec.mode).filter(|m| m.relays());
        let Some(mode) = mode.filter(|_| !l.relay.channels.is_empty()) else {
            return Err(api(
                ErrorCode::BadRequest,
                format!(
                    "lease {id} is not relayed (MOD `{}`): only a relay admits peers one by one",
                    l.rec.mode
                ),
            ));
        };
        self.apply_permit(&l, &mode, peers, "peers permitted").await
    }

    /// After a relayed lease was relayed anew (a new allocation), admit
    /// the peers its old allocation admitted.
    pub async fn permit_again(self: &Arc<Self>, id: u64, peers: Vec<SocketAddr>) {
        let Some(l) = self.snapshot(id) else { return };
        let Some(mode) = self.mode_named(&l.rec.mode).filter(|m| m.relays()) else {
            return;
        };
        let why = "peers permitted again on the new allocation";
        if let Err(e) = self.apply_permit(&l, &mode, peers, why).await {
            tracing::warn!("lease {id}: {}", crate::text::escape(&e.message));
        }
    }

    async fn apply_permit(
        self: &Arc<Self>,
        l: &super::leases::Lease,
        mode: &Arc<crate::sandbox::Mode>,
        peers: Vec<SocketAddr>,
        why: &str,
    ) -> Result<LeaseView, ApiError> {
        let id = l.rec.id;
        let current = Mapping::try_from(l.rec.mapping.clone()).map_err(|e| {
            api(
                ErrorCode::Internal,
                format!("journaled state unusable: {e}"),
            )
        })?;
        let lease = self.lease_relay(id, l.rec.mapping.internal);
        let _one_at_a_time = self.relay_calls.lock().await;
        let r = mode.call_for(Op::Permit(current, peers), lease).await;
        self.record_relay(id, r.relay.kept);
        let m = match Output::mapping(r.result) {
            Ok(m) => m,
            Err(e) => {
                let f = super::selector::failure(&e);
                return Err(api(
                    ErrorCode::NoMode,
                    format!("{}: {} ({})", l.rec.mode, f.kind, f.reason),
                ));
            }
        };
        let mut rec = l.rec.clone();
        rec.mapping = MappingJson::from(&m);
        if !self.commit(&rec) {
            return Err(api(
                ErrorCode::Internal,
                "the journal failed; peers not recorded",
            ));
        }
        self.settled(rec, EventKind::Renewed, Some(why.into()));
        let l = self
            .snapshot(id)
            .ok_or_else(|| api(ErrorCode::NotFound, format!("no lease {id}")))?;
        Ok(views::lease(&l))
    }
}
