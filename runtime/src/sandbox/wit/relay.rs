//! The `relay` import (contract 0.1.4; `open-tls` since 0.1.5): relay channels the broker keeps
//! for a lease across the fresh instances of its calls (see
//! [`crate::relay`]).
//!
//! A call may use the channels it opened and those its lease kept, nothing
//! else: the daemon hands each call exactly its lease's channels, so a MOD
//! cannot read or close another lease's relay. A channel opened but not
//! kept by the end of the call is closed; one kept by a call that then
//! failed is closed too (its lease never came to be).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::HasData;
use wasmtime_wasi::p2::bindings::sockets::network::IpSocketAddress;

use super::relay_bindings::p2pbroker::mode::relay::{Host, Leg, PeerChannel};
use super::{CallState, ModeError};
use crate::relay::stream::DialError;
use crate::relay::{RelayHub, hub};

/// Channels one call may open.
const OPENS_MAX: usize = 4;
/// The longest one `receive` waits (the call's own deadline still rules).
const RECEIVE_MAX: Duration = Duration::from_secs(10);
/// The largest STUN message a MOD may send.
const MESSAGE_MAX: usize = 65_535;

/// Decides whether the MOD may exchange UDP with an address, or connect
/// to it over TCP (its gate, audited).
pub type UdpCheck = Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>;

/// What the lease a call serves brings to it.
#[derive(Debug, Clone, Default)]
pub struct LeaseRelay {
    /// The channels the lease kept, oldest first.
    pub kept: Vec<u32>,
    /// The application's endpoint (`map`, `renew`, `permit`); `keep` is
    /// refused without one.
    pub internal: Option<SocketAddr>,
}

/// What a call did with channels: the daemon records `kept` against the
/// lease and forgets `closed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayOutcome {
    /// Channels kept for the lease after the call.
    pub kept: Vec<u32>,
    /// Channels the call closed.
    pub closed: Vec<u32>,
}

/// The `relay` import's state in a call's store.
pub struct RelayCtx {
    hub: Option<Arc<RelayHub>>,
    check: UdpCheck,
    tcp_check: UdpCheck,
    lease: LeaseRelay,
    opened: Vec<u32>,
    kept: Vec<u32>,
    closed: Vec<u32>,
}

impl RelayCtx {
    /// The context of a call serving `lease`, on `hub` (none: every
    /// operation is refused, e.g. `p2pb mode run`).
    pub fn new(
        hub: Option<Arc<RelayHub>>,
        checks: (UdpCheck, UdpCheck),
        lease: LeaseRelay,
    ) -> RelayCtx {
        let (check, tcp_check) = checks;
        RelayCtx {
            hub,
            check,
            tcp_check,
            kept: lease.kept.clone(),
            lease,
            opened: Vec::new(),
            closed: Vec::new(),
        }
    }

    fn hub(&self) -> Result<&Arc<RelayHub>, ModeError> {
        self.hub.as_ref().ok_or_else(|| {
            ModeError::Unsupported("this host keeps no relay channels (not the daemon)".into())
        })
    }

    fn usable(&self, c: u32) -> Result<Arc<hub::Channel>, ModeError> {
        if !self.opened.contains(&c) && !self.lease.kept.contains(&c) {
            return Err(ModeError::Denied(format!(
                "relay channel {c} is not this call's or its lease's"
            )));
        }
        self.hub()?
            .get(c)
            .ok_or_else(|| ModeError::MappingLost(format!("relay channel {c} is closed")))
    }

    /// End of the call: close what was opened and not kept, and, when the
    /// call failed, what it newly kept.
    pub fn settle(self, succeeded: bool) -> RelayOutcome {
        let Some(hub) = self.hub else {
            return RelayOutcome::default();
        };
        let mut closed = self.closed;
        let mut kept = Vec::new();
        for c in self.kept {
            if succeeded || self.lease.kept.contains(&c) {
                kept.push(c);
            } else {
                hub.close(c);
                closed.push(c);
            }
        }
        for c in self.opened {
            if !kept.contains(&c) && !closed.contains(&c) {
                hub.close(c);
            }
        }
        RelayOutcome { kept, closed }
    }
}

/// Marker for the linker: the data of the `relay` import.
pub struct HasRelay;

impl HasData for HasRelay {
    type Data<'a> = &'a mut RelayCtx;
}

/// The `relay` view of a call's store.
pub fn relay_view(s: &mut CallState) -> &mut RelayCtx {
    &mut s.relay
}

impl RelayCtx {
    /// Open a channel to `server` on `leg`, or over TLS when `tls`.
    async fn open_leg(
        &mut self,
        server: IpSocketAddress,
        leg: Leg,
        tls: bool,
    ) -> Result<u32, ModeError> {
        let server: SocketAddr = server.into();
        let (allowed, grant) = match leg {
            Leg::Udp => ((self.check)(server), "udp:send,receive"),
            Leg::Tcp => ((self.tcp_check)(server), "tcp:connect"),
        };
        if !allowed {
            return Err(ModeError::Denied(format!(
                "the policy does not grant this MOD {grant} to {server}"
            )));
        }
        if self.opened.len() >= OPENS_MAX {
            return Err(ModeError::Unavailable(format!(
                "a call opens at most {OPENS_MAX} relay channels"
            )));
        }
        let hub = self.hub()?.clone();
        let id = match leg {
            Leg::Udp => hub.open(server).map_err(ModeError::Unavailable)?,
            Leg::Tcp => hub.open_stream(server, tls).await.map_err(|e| match e {
                DialError::Denied(why) => ModeError::Denied(why),
                DialError::Unavailable(why) => ModeError::Unavailable(why),
                DialError::Timeout(why) => ModeError::Timeout(why),
            })?,
        };
        self.opened.push(id);
        Ok(id)
    }
}

impl Host for &mut RelayCtx {
    async fn open(&mut self, server: IpSocketAddress, leg: Leg) -> Result<u32, ModeError> {
        self.open_leg(server, leg, false).await
    }

    async fn open_tls(&mut self, server: IpSocketAddress) -> Result<u32, ModeError> {
        self.open_leg(server, Leg::Tcp, true).await
    }

    async fn send(&mut self, c: u32, message: Vec<u8>) -> Result<(), ModeError> {
        if message.len() > MESSAGE_MAX {
            return Err(ModeError::InvalidRequest(format!(
                "a relay message is at most {MESSAGE_MAX} bytes"
            )));
        }
        let channel = self.usable(c)?;
        channel.send(&message).await.map_err(|e| {
            ModeError::Unavailable(format!("cannot send to {}: {e}", channel.server()))
        })
    }

    async fn receive(&mut self, c: u32, timeout_ms: u32) -> Result<Option<Vec<u8>>, ModeError> {
        let channel = self.usable(c)?;
        let wait = Duration::from_millis(timeout_ms.into()).min(RECEIVE_MAX);
        Ok(channel.receive(wait).await)
    }

    fn keep(
        &mut self,
        c: u32,
        relayed: IpSocketAddress,
        peers: Vec<PeerChannel>,
    ) -> Result<(), ModeError> {
        self.usable(c)?;
        let internal = self.lease.internal.ok_or_else(|| {
            ModeError::InvalidRequest("`keep` serves a lease: only in map, renew and permit".into())
        })?;
        let peers: Vec<hub::PeerChannel> = peers
            .into_iter()
            .map(|p| hub::PeerChannel {
                peer: p.peer.into(),
                number: p.number,
            })
            .collect();
        self.hub()?
            .keep(c, internal, relayed.into(), &peers)
            .map_err(ModeError::InvalidRequest)?;
        if !self.kept.contains(&c) {
            self.kept.push(c);
        }
        Ok(())
    }

    fn kept(&mut self) -> Vec<u32> {
        self.lease.kept.clone()
    }

    fn close(&mut self, c: u32) {
        if self.usable(c).is_err() {
            return;
        }
        if let Ok(hub) = self.hub() {
            hub.close(c);
        }
        self.kept.retain(|k| *k != c);
        self.opened.retain(|k| *k != c);
        self.closed.push(c);
    }
}
