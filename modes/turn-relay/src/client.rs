//! The TURN operations the lifecycle needs (RFC 8656 §7, §8, §12), over a
//! [`Session`], with each answer turned into the contract's error kinds.
//! Reason phrases from the server are escaped and clipped here, before
//! they enter any error.

use core::net::SocketAddr;

use p2pbroker_mode_sdk::{ModeError, escape};

use crate::exchange::{Link, Session};
use crate::proto::{Outcome, PERMISSION_PEERS_MAX, PeerSet, Request, Success};
use crate::state::PeerChannel;

/// The shortest allocation lifetime asked for: less would have the broker
/// renew more often than every 30 s.
pub const LIFETIME_MIN: u32 = 60;
/// RFC 8656 §7.2: servers cap lifetimes at 3600 s.
pub const LIFETIME_MAX: u32 = 3600;
/// RFC 8656 §9: a permission (and so a peer's reachability) lasts 300 s
/// unless refreshed, and only a renewal refreshes it, so a mapping never
/// claims more: the broker renews before then.
pub const PERMISSION_LIFETIME: u32 = 300;
/// Longest reason phrase quoted from a server.
const REASON_MAX: usize = 200;

/// `requested` within what a TURN server grants.
pub fn clamp_lifetime(requested: u32) -> u32 {
    requested.clamp(LIFETIME_MIN, LIFETIME_MAX)
}

/// A granted allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// XOR-RELAYED-ADDRESS.
    pub relayed: SocketAddr,
    /// XOR-MAPPED-ADDRESS, if the server said.
    pub mapped: Option<SocketAddr>,
    /// Granted lifetime, seconds.
    pub lifetime: u32,
}

/// A refreshed allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Granted lifetime, seconds.
    pub lifetime: u32,
    /// A relayed address, in the rare server that repeats it.
    pub relayed: Option<SocketAddr>,
}

fn quoted(reason: &str) -> String {
    escape(reason, REASON_MAX)
}

/// The error for a non-success `outcome` of `req` in session `s`.
fn refusal<L: Link>(s: &Session<'_, L>, req: &Request, outcome: &Outcome) -> ModeError {
    let server = s.server();
    let what = req.name();
    match outcome {
        Outcome::Success(_) => ModeError::Protocol(format!(
            "the TURN server {server} answered {what} with success where it should not"
        )),
        Outcome::Unauthorized(_) => match s.username() {
            Some(user) => ModeError::Denied(format!(
                "the TURN server refused the credentials of user {}",
                escape(user, 200)
            )),
            None => ModeError::Denied(format!(
                "the TURN server {server} asks for credentials and config has none \
                 (turn_username with turn_credential or turn_secret)"
            )),
        },
        Outcome::StaleNonce { .. } => ModeError::Protocol(format!(
            "the TURN server {server} called the nonce stale again after a fresh one (438)"
        )),
        Outcome::AllocationMismatch => ModeError::MappingLost(format!(
            "the TURN server {server} no longer has the allocation (437 on {what})"
        )),
        Outcome::QuotaReached => ModeError::Unavailable("allocation quota reached (486)".into()),
        Outcome::InsufficientCapacity => ModeError::Unavailable(format!(
            "the TURN server {server} has no capacity for another allocation (508)"
        )),
        Outcome::Forbidden(reason) => ModeError::Denied(match req {
            Request::ChannelBind { peer, .. } => format!(
                "the TURN server refused to relay to peer {peer} (403: {})",
                quoted(reason)
            ),
            Request::CreatePermission { peers } => format!(
                "the TURN server refused a permission for one of {} (403: {})",
                peers
                    .as_slice()
                    .iter()
                    .map(|p| p.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                quoted(reason)
            ),
            _ => format!(
                "the TURN server {server} forbade the {what} request (403: {})",
                quoted(reason)
            ),
        }),
        Outcome::Error { code, reason } => {
            let text = format!(
                "the TURN server {server} refused {what} ({code}: {})",
                quoted(reason)
            );
            match code {
                // 440 address family, 442 transport: a server that cannot do it.
                440 | 442 => ModeError::Unsupported(text),
                500..=599 => ModeError::Unavailable(text),
                _ => ModeError::Protocol(text),
            }
        }
    }
}

fn success<L: Link>(
    s: &Session<'_, L>,
    req: &Request,
    outcome: Outcome,
) -> Result<Success, ModeError> {
    match outcome {
        Outcome::Success(ok) => Ok(ok),
        other => Err(refusal(s, req, &other)),
    }
}

/// Binding: the address the server sees us at.
pub fn binding<L: Link>(s: &mut Session<'_, L>) -> Result<SocketAddr, ModeError> {
    let req = Request::Binding;
    let outcome = s.one(req)?;
    let ok = success(s, &req, outcome)?;
    ok.mapped.ok_or_else(|| {
        ModeError::Protocol(format!(
            "the TURN server {} answered Binding without XOR-MAPPED-ADDRESS",
            s.server()
        ))
    })
}

/// Allocate a UDP relay for `lifetime` seconds (clamped).
pub fn allocate<L: Link>(s: &mut Session<'_, L>, lifetime: u32) -> Result<Allocation, ModeError> {
    let req = Request::Allocate {
        lifetime: clamp_lifetime(lifetime),
    };
    let outcome = s.one(req)?;
    if outcome == Outcome::AllocationMismatch {
        // On Allocate, 437 means this 5-tuple already has one: a fresh
        // channel should never see it.
        return Err(ModeError::Unavailable(format!(
            "the TURN server {} already has an allocation for this channel (437)",
            s.server()
        )));
    }
    let ok = success(s, &req, outcome)?;
    let relayed = ok
        .relayed
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified());
    let Some(relayed) = relayed else {
        return Err(ModeError::Protocol(format!(
            "the TURN server {} granted an allocation without a usable XOR-RELAYED-ADDRESS",
            s.server()
        )));
    };
    // RFC 8656 §7.3 requires LIFETIME; without it, what was asked.
    let lifetime = ok.lifetime.unwrap_or(clamp_lifetime(lifetime));
    if lifetime == 0 {
        // A mapping's 0 means permanent: never claim it for this.
        return Err(ModeError::Protocol(format!(
            "the TURN server {} granted an allocation with LIFETIME 0",
            s.server()
        )));
    }
    Ok(Allocation {
        relayed,
        mapped: ok.mapped,
        lifetime,
    })
}

/// Refresh the allocation for `lifetime` seconds (clamped). 437, or a
/// granted lifetime of 0, is `mapping-lost`.
pub fn refresh<L: Link>(s: &mut Session<'_, L>, lifetime: u32) -> Result<Refreshed, ModeError> {
    let lifetime = clamp_lifetime(lifetime);
    let req = Request::Refresh { lifetime };
    let outcome = s.one(req)?;
    let ok = success(s, &req, outcome)?;
    let granted = ok.lifetime.unwrap_or(lifetime);
    if granted == 0 {
        return Err(ModeError::MappingLost(format!(
            "the TURN server {} ended the allocation (LIFETIME 0 on Refresh)",
            s.server()
        )));
    }
    Ok(Refreshed {
        lifetime: granted,
        relayed: ok.relayed,
    })
}

/// Delete the allocation (Refresh with LIFETIME 0); one already gone is
/// success.
pub fn delete<L: Link>(s: &mut Session<'_, L>) -> Result<(), ModeError> {
    let req = Request::Refresh { lifetime: 0 };
    match s.one(req)? {
        Outcome::Success(_) | Outcome::AllocationMismatch => Ok(()),
        other => Err(refusal(s, &req, &other)),
    }
}

/// The ChannelBind requests for `peers`.
pub fn channel_binds(peers: &[PeerChannel]) -> Vec<Request> {
    peers
        .iter()
        .map(|p| Request::ChannelBind {
            peer: p.peer,
            channel: p.channel,
        })
        .collect()
}

/// The CreatePermission requests that refresh the permissions of `peers`:
/// one address per peer IP (a permission is per IP), as few requests as
/// they fit in.
pub fn create_permissions(peers: &[PeerChannel]) -> Vec<Request> {
    let mut ips: Vec<SocketAddr> = Vec::new();
    for p in peers {
        if !ips.iter().any(|a| a.ip() == p.peer.ip()) {
            ips.push(p.peer);
        }
    }
    ips.chunks(PERMISSION_PEERS_MAX)
        .filter_map(PeerSet::new)
        .map(|peers| Request::CreatePermission { peers })
        .collect()
}

/// Refresh every peer's permission with CreatePermission, all in one
/// exchange, leaving the channels as they are; the first refusal is the
/// error.
pub fn refresh_permissions<L: Link>(
    s: &mut Session<'_, L>,
    peers: &[PeerChannel],
) -> Result<(), ModeError> {
    let reqs = create_permissions(peers);
    if reqs.is_empty() {
        return Ok(());
    }
    let outcomes = s.run(&reqs)?;
    for (req, outcome) in reqs.iter().zip(outcomes) {
        success(s, req, outcome)?;
    }
    Ok(())
}

/// Bind (or rebind, which refreshes) each peer's channel, all in one
/// exchange; the first refusal is the error.
pub fn bind<L: Link>(s: &mut Session<'_, L>, peers: &[PeerChannel]) -> Result<(), ModeError> {
    let reqs = channel_binds(peers);
    let outcomes = s.run(&reqs)?;
    for (req, outcome) in reqs.iter().zip(outcomes) {
        success(s, req, outcome)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
