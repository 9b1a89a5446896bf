//! The `turn-relay` MOD: a relayed UDP address on the policy's TURN server
//! (RFC 8656), for a host no other MOD can make reachable.
//!
//! The broker owns the socket to the server (contract 0.1.4 `relay`
//! import: an allocation belongs to the 5-tuple that made it, and each
//! call runs in a fresh instance) and carries the data; this MOD speaks
//! the TURN control protocol over the channel. `map` allocates and keeps
//! the channel for the lease; `renew` refreshes the allocation and
//! rebinds every peer's channel (which refreshes its permission);
//! `unmap` deletes the allocation and closes the channel; `permit` (the
//! `relay-control` export) binds channels to new peers. `probe` asks a
//! Binding request: the address the server sees.
//!
//! Pure parts: [`proto`] (messages), [`exchange`] (retransmission and
//! credentials over any [`exchange::Link`]), [`client`] (operations and
//! their errors), [`creds`], [`state`], [`config`] (the config keys are
//! listed there). This file only pumps bytes through the relay import.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod creds;
pub mod exchange;
pub mod proto;
pub mod state;
#[cfg(test)]
mod testkit;
mod wit;

use core::net::SocketAddr;
use core::time::Duration;

use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::classify::{class_name, classify};
use p2pbroker_mode_sdk::clock::{now_ns, unix_seconds};
use p2pbroker_mode_sdk::{
    IpSocketAddress, MapRequest, Mapping, ModeError, ModeInfo, ProbeReport, Transport, clip,
    clip_error, host,
};

use client::PERMISSION_LIFETIME;
use config::Leg;
use exchange::{Link, Session};
use proto::Tid;
use state::{PERMIT_MAX, PeerChannel, State};
use wit::bindings::exports::p2pbroker::mode::{lifecycle, relay_control};
use wit::bindings::p2pbroker::mode::relay;

/// The relay channel `c` as a [`Link`].
struct Channel(u32);

impl Link for Channel {
    fn send(&mut self, message: &[u8]) -> Result<(), ModeError> {
        relay::send(self.0, message)
    }

    fn receive(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, ModeError> {
        // Whole milliseconds, rounded up, so a short wait never spins.
        let ms = u32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u32::MAX);
        relay::receive(self.0, ms.max(1))
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(now_ns())
    }

    fn tid(&mut self) -> Tid {
        let bytes = host::random_bytes(12);
        let mut out = [0u8; 12];
        out.copy_from_slice(&bytes[..12]);
        out
    }

    fn debug(&mut self, line: &str) {
        host::debug(line);
    }
}

fn get(key: &str) -> Option<String> {
    host::config(key)
}

/// The lease's channel: the first kept one.
fn kept() -> Option<u32> {
    relay::kept().first().copied()
}

fn lost_channel() -> ModeError {
    ModeError::MappingLost("the relay channel is gone (the broker restarted)".into())
}

fn read_state(current: &Mapping) -> Result<State, ModeError> {
    State::from_bytes(&current.state).map_err(|why| {
        ModeError::InvalidRequest(clip(
            format!("the mapping's state is not this MOD's: {why}"),
            p2pbroker_mode_sdk::TEXT_MAX,
        ))
    })
}

/// A session on `link` for the allocation `st` describes: signed as it
/// was made, with the challenge it kept. `mapping-lost` when it can no
/// longer be signed for (credentials expired or changed).
fn resume<'l>(link: &'l mut Channel, st: &State) -> Result<Session<'l, Channel>, ModeError> {
    let creds = config::credentials(&get)?
        .for_allocation(&st.username, unix_seconds())
        .map_err(ModeError::MappingLost)?;
    let budget = config::timeout(&get)?;
    Ok(Session::new(link, st.server, budget, creds, st.challenge()))
}

fn wit_peers(peers: &[PeerChannel]) -> Vec<relay::PeerChannel> {
    peers
        .iter()
        .map(|p| relay::PeerChannel {
            peer: from_socket(p.peer),
            number: p.channel,
        })
        .collect()
}

/// A UDP mapping of `internal` on `relayed`.
fn mapping(internal: IpSocketAddress, relayed: SocketAddr, lifetime: u32, st: &State) -> Mapping {
    Mapping {
        transport: Transport::Udp,
        internal,
        external: from_socket(relayed),
        lifetime,
        state: st.to_bytes(),
    }
}

/// Open the relay channel on its leg. Over TCP or TLS a request is
/// answered before the first retransmission would go, in practice; a
/// retransmitted request carries the same transaction id, which a server
/// answers as the same request. Which proxy carries a stream and whose
/// certificate TLS accepts are the broker's to decide (the policy's).
fn open(server: SocketAddr, leg: Leg) -> Result<u32, ModeError> {
    match leg {
        Leg::Udp => relay::open(from_socket(server), relay::Leg::Udp),
        Leg::Tcp => relay::open(from_socket(server), relay::Leg::Tcp),
        Leg::Tls => relay::open_tls(from_socket(server)),
    }
}

fn probe() -> Result<ProbeReport, ModeError> {
    let (server, leg) = config::server_leg(&get)?;
    let budget = config::probe_timeout(&get)?;
    let c = open(server, leg)?;
    let mut link = Channel(c);
    let mapped = client::binding(&mut Session::new(&mut link, server, budget, None, None));
    relay::close(c);
    let mapped = mapped?;
    let class = classify(mapped.ip());
    Ok(ProbeReport {
        gateway: Some(from_ip(server.ip())),
        external_address: Some(from_ip(mapped.ip())),
        external_class: Some(class),
        detail: format!(
            "TURN server {server} over {}: reflexive {mapped} ({}); relays UDP",
            leg.name(),
            class_name(class)
        ),
        state: Vec::new(),
    })
}

fn map(req: MapRequest) -> Result<Mapping, ModeError> {
    if req.transport == Transport::Tcp {
        return Err(ModeError::Unsupported(
            "TCP relays (RFC 6062) are not carried; the turn-relay MOD maps UDP only".into(),
        ));
    }
    let (server, leg) = config::server_leg(&get)?;
    let creds = config::credentials(&get)?.fresh(unix_seconds());
    let budget = config::timeout(&get)?;
    let c = open(server, leg)?;
    let mut link = Channel(c);
    let mut s = Session::new(&mut link, server, budget, creds, None);
    let a = client::allocate(&mut s, req.lifetime)?;
    let username = s.username().unwrap_or_default().to_string();
    let st = State::new(server, s.challenge(), &username, a.lifetime);
    if let Err(e) = relay::keep(c, from_socket(a.relayed), &[]) {
        // Nobody could ever reach it: give the allocation back.
        if client::delete(&mut s).is_err() {
            host::warn("could not delete an allocation the broker would not keep");
        }
        return Err(e);
    }
    host::debug(&format!(
        "allocated {} on {server} for {} s (reflexive {:?})",
        a.relayed, a.lifetime, a.mapped
    ));
    // The mapping claims no more than a permission lasts (see
    // PERMISSION_LIFETIME), nor than the broker asked for (a server never
    // grants under 600 s): the broker's renewal refreshes both in time.
    let lifetime = a.lifetime.min(PERMISSION_LIFETIME).min(req.lifetime);
    Ok(mapping(req.internal, a.relayed, lifetime, &st))
}

/// Channels last 600 s (RFC 8656 §12), permissions 300 s (§9). A renewal
/// binds every channel again once the last binding is this old, and
/// otherwise refreshes only the permissions: one CreatePermission per
/// eight peer IPs instead of one ChannelBind per peer. Renewals come at
/// most 300 s apart (no mapping claims more), so a channel bound at T is
/// bound again before T + 240 + 300 < T + 600.
const REBIND_AFTER_S: u64 = 240;

fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
    let mut st = read_state(&current)?;
    let c = kept().ok_or_else(lost_channel)?;
    let mut link = Channel(c);
    let mut s = resume(&mut link, &st)?;
    let r = client::refresh(&mut s, lifetime)?;
    let now = unix_seconds();
    if now.saturating_sub(st.channels_at) >= REBIND_AFTER_S {
        client::bind(&mut s, &st.peers)?;
        st.channels_at = now;
    } else {
        client::refresh_permissions(&mut s, &st.peers)?;
    }
    st.set_challenge(s.challenge());
    st.lifetime = r.lifetime;
    let relayed = r.relayed.unwrap_or_else(|| to_socket(&current.external));
    relay::keep(c, from_socket(relayed), &wit_peers(&st.peers))?;
    let lifetime = r.lifetime.min(PERMISSION_LIFETIME).min(lifetime);
    Ok(mapping(current.internal, relayed, lifetime, &st))
}

fn unmap(current: Mapping) -> Result<(), ModeError> {
    let Some(c) = kept() else {
        return Ok(()); // nothing kept: nothing of ours left to remove
    };
    let result = delete(c, &current);
    // Closed whatever the answer: a failed delete leaves an allocation
    // that expires on the server by itself within its lifetime.
    relay::close(c);
    result
}

fn delete(c: u32, current: &Mapping) -> Result<(), ModeError> {
    let st = read_state(current)?;
    let mut link = Channel(c);
    match resume(&mut link, &st) {
        Ok(mut s) => client::delete(&mut s),
        Err(ModeError::MappingLost(why)) => {
            // It cannot be signed for any more, so it cannot be refreshed
            // either: it expires on the server by itself.
            host::info(&format!("not deleting the allocation: {why}"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn permit(current: Mapping, peers: Vec<IpSocketAddress>) -> Result<Mapping, ModeError> {
    if peers.len() > PERMIT_MAX {
        return Err(ModeError::InvalidRequest(format!(
            "{} peers in one permit; at most {PERMIT_MAX}",
            peers.len()
        )));
    }
    let mut st = read_state(&current)?;
    let c = kept().ok_or_else(lost_channel)?;
    let relayed = to_socket(&current.external);
    let peers: Vec<SocketAddr> = peers.iter().map(to_socket).collect();
    let added = st
        .admit(relayed, &peers)
        .map_err(ModeError::InvalidRequest)?;
    if added.is_empty() {
        return Ok(current);
    }
    let mut link = Channel(c);
    let mut s = resume(&mut link, &st)?;
    client::bind(&mut s, &added)?;
    st.set_challenge(s.challenge());
    relay::keep(c, from_socket(relayed), &wit_peers(&st.peers))?;
    Ok(Mapping {
        state: st.to_bytes(),
        ..current
    })
}

struct TurnRelay;

impl lifecycle::Guest for TurnRelay {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "turn-relay".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "a relayed UDP address on the policy's TURN server (RFC 8656)".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        probe().map_err(clip_error)
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        map(request).map_err(clip_error)
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        renew(current, lifetime).map_err(clip_error)
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        unmap(current).map_err(clip_error)
    }
}

impl relay_control::Guest for TurnRelay {
    fn permit(current: Mapping, peers: Vec<IpSocketAddress>) -> Result<Mapping, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        permit(current, peers).map_err(clip_error)
    }
}

// stun-types links getrandom even though this MOD makes its own
// transaction ids.
p2pbroker_mode_sdk::getrandom_from_wasi!();

// Only a component exports (host builds link no exports).
#[cfg(target_arch = "wasm32")]
wit::bindings::export_world!(TurnRelay with_types_in wit::bindings);
