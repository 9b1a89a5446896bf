//! Proof of ownership, the I/O around [`super::ownership`]'s pure verdict:
//! reading the host's socket table off the async workers, and taking a
//! socket a client handed over with its request.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use p2pbroker_client::{ApiError, ErrorCode, MapParams};

use super::api;
use super::leases::{Requester, gate_transport};
use super::ownership;
use crate::gate::Transport;

/// What proves a requester owns an endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Proof {
    /// Its uid: every socket holding the endpoint must be this uid's.
    Uid(u32),
    /// The socket it handed over (inode).
    Socket(u64),
}

impl Proof {
    /// A handed-over socket if there is one, else the uid.
    pub fn of(uid: u32, passed: Option<u64>) -> Proof {
        passed.map_or(Proof::Uid(uid), Proof::Socket)
    }
}

/// Whether the proof holds for `endpoint` (see [`ownership`]): the inodes
/// of the sockets holding it, or why not. Reads the host's socket table
/// without holding up the async workers' other tasks.
pub async fn owned(
    transport: Transport,
    endpoint: SocketAddr,
    proof: Proof,
) -> Result<Vec<u64>, ownership::NotOwner> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let unreadable = |e: String| ownership::NotOwner::Unreadable(e);
    let read = move || ownership::sockets_on(transport, Some(endpoint.port()));
    let multi =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    let table = if multi {
        // In place: the worker's other tasks move to another thread while
        // the kernel walks a socket table that may be large, and the map
        // goes on here without a round trip to the blocking pool (one
        // wake-up less on its path).
        tokio::task::block_in_place(read)
    } else {
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| unreadable(e.to_string()))?
    }
    .map_err(|e| unreadable(e.to_string()))?;
    match proof {
        Proof::Uid(uid) => ownership::verdict(&table, transport, endpoint, uid),
        Proof::Socket(inode) => ownership::verdict_passed(&table, transport, endpoint, inode),
    }
}

/// A socket handed over with `p`: check it matches the request, take its
/// address as the endpoint's, and return its inode. The descriptor is
/// closed when this returns: the broker keeps no copy.
pub fn handed_socket(
    p: &mut MapParams,
    who: &Requester,
    passed: Option<OwnedFd>,
) -> Result<Option<u64>, ApiError> {
    let bad = |m: String| api(ErrorCode::BadRequest, m);
    let fd = match (p.socket, passed) {
        (false, _) => return Ok(None),
        (true, _) if who.lan.is_some() => {
            return Err(bad("a LAN client cannot hand over a socket".into()));
        }
        (true, None) => {
            return Err(bad(
                "`socket` is set but no socket came with the request (pass it with SCM_RIGHTS on the local socket)"
                    .into(),
            ));
        }
        (true, Some(fd)) => fd,
    };
    let (transport, local, inode) = ownership::described(fd.as_fd()).map_err(bad)?;
    if gate_transport(p.transport) != transport || p.port != local.port() {
        return Err(bad(format!(
            "the request names {} port {}, the socket is {transport} {local}",
            p.transport, p.port
        )));
    }
    if !local.ip().is_unspecified() {
        if p.address.is_some_and(|a| a != local.ip()) {
            return Err(bad(format!(
                "the socket is bound to {local}, not the requested address"
            )));
        }
        p.address = Some(local.ip());
    }
    Ok(Some(inode))
}
