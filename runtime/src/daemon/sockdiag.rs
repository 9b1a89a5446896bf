//! The host's sockets (on one port, or all), asked of the kernel's
//! sock_diag netlink interface (what `ss` uses), for the proof of
//! ownership and for following the sockets of `until_closed` leases.
//!
//! Why not `/proc/net/{tcp,udp}` for this: the kernel hands that file out a
//! page at a time and finds where the next page starts by counting entries
//! from the beginning again, so a socket closed elsewhere between two reads
//! shifts the rest and one entry is never shown. Measured in a namespace
//! with 10,000 bound UDP sockets while another thread opened and closed
//! sockets: 51 of 100,000 listed entries missing. A missing entry means a
//! false `not-owner` or, worse, another uid's socket on the same endpoint
//! unseen. A dump filtered to one port is small enough for one batch, and
//! the kernel walks each hash slot under its lock: a socket open for the
//! whole query is always listed. A whole-table dump runs over many batches
//! and can miss a socket like `/proc/net` can, but costs one walk of the
//! table instead of one per page (`until_closed` confirms what it finds
//! missing with a port query).
//!
//! [`request`] and [`parse`] are pure (unit-tested and fuzzed); [`query`]
//! is the thin I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::ownership::SocketEntry;
use crate::gate::Transport;

/// `SOCK_DIAG_BY_FAMILY` (`linux/sock_diag.h`).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
/// Set on a dump's messages when the table changed during a multi-part
/// dump: the result may miss entries, so it is read again.
const NLM_F_DUMP_INTR: u16 = 0x10;
const HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
const MSG_LEN: usize = 72;
/// TCP_LISTEN as a state bit (`include/net/tcp_states.h`).
const LISTEN_BIT: u32 = 1 << 10;
/// Batches read per dump at most, and dumps tried when interrupted.
const BATCHES_MAX: usize = 4096;
const TRIES: usize = 3;

/// The dump request for `family`'s `transport` sockets on local `port`
/// (the kernel filters on it; [`parse`] checks again), or all for `None`.
pub fn request(
    seq: u32,
    family: u8,
    transport: Transport,
    port: Option<u16>,
) -> [u8; HEADER + REQ_LEN] {
    let mut b = [0u8; HEADER + REQ_LEN];
    b[0..4].copy_from_slice(&((HEADER + REQ_LEN) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    let (protocol, states) = match transport {
        Transport::Tcp => (libc::IPPROTO_TCP as u8, LISTEN_BIT),
        Transport::Udp => (libc::IPPROTO_UDP as u8, u32::MAX),
    };
    let r = &mut b[HEADER..];
    r[0] = family;
    r[1] = protocol;
    r[4..8].copy_from_slice(&states.to_ne_bytes());
    // Port 0: no filter.
    r[8..10].copy_from_slice(&port.unwrap_or(0).to_be_bytes());
    // No cookie (INET_DIAG_NOCOOKIE).
    r[48..56].fill(0xff);
    b
}

/// What one batch of a dump said.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// More batches follow.
    More,
    /// The dump is complete.
    Done,
}

/// Why a dump failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiagError {
    /// The kernel refused the request (errno).
    #[error("the kernel refused the socket query (errno {0})")]
    Refused(i32),
    /// The table changed during a multi-part dump.
    #[error("the socket table changed during the query")]
    Interrupted,
    /// A reply that is not sock_diag's format.
    #[error("malformed socket query reply: {0}")]
    Malformed(&'static str),
}

/// Parse one batch (one `recv`) of a dump answering request `seq`,
/// appending the sockets on `port` (all for `None`) to `out`.
pub fn parse(
    buf: &[u8],
    seq: u32,
    port: Option<u16>,
    out: &mut Vec<SocketEntry>,
) -> Result<Batch, DiagError> {
    let mut rest = buf;
    while rest.len() >= HEADER {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        if len < HEADER || len > rest.len() {
            return Err(DiagError::Malformed("message length"));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        let this_seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
        let body = &rest[HEADER..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        if this_seq != seq {
            continue; // a late answer to an earlier request
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            return Err(DiagError::Interrupted);
        }
        match kind {
            NLMSG_DONE => return Ok(Batch::Done),
            NLMSG_ERROR => {
                let errno = body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .ok_or(DiagError::Malformed("error message"))?;
                return Err(DiagError::Refused(errno.saturating_neg()));
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(e) = entry(body)?
                    && port.is_none_or(|p| e.local.port() == p)
                {
                    out.push(e);
                }
            }
            _ => {}
        }
    }
    Ok(Batch::More)
}

/// One `struct inet_diag_msg`; `None` for a family other than IP.
fn entry(body: &[u8]) -> Result<Option<SocketEntry>, DiagError> {
    let m = body
        .get(..MSG_LEN)
        .ok_or(DiagError::Malformed("short socket record"))?;
    let u32_at = |i: usize| u32::from_ne_bytes(m[i..i + 4].try_into().unwrap());
    let ip = match i32::from(m[0]) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(m[8], m[9], m[10], m[11])),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&m[8..24]).unwrap())),
        _ => return Ok(None),
    };
    Ok(Some(SocketEntry {
        local: SocketAddr::new(ip, u16::from_be_bytes([m[4], m[5]])),
        state: m[1],
        uid: u32_at(64),
        inode: u64::from(u32_at(68)),
    }))
}

/// The sockets of `transport` on local `port` (all for `None`), IPv4 and
/// IPv6, in the calling thread's network namespace. Blocking (at most a
/// few milliseconds; two seconds if the kernel stops answering).
pub fn query(transport: Transport, port: Option<u16>) -> std::io::Result<Vec<SocketEntry>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let mut tries = 1;
        loop {
            match dump(family as u8, transport, port) {
                Ok(found) => break out.extend(found),
                Err(DiagError::Interrupted) if tries < TRIES => tries += 1,
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
    Ok(out)
}

fn open() -> Result<OwnedFd, DiagError> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(DiagError::Refused(errno()));
    }
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = Duration::from_secs(2);
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval we own, of its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(DiagError::Refused(errno()));
    }
    Ok(sock)
}

/// One dump on a socket of its own: a dump cut short (interrupted,
/// malformed) leaves the kernel's dump running on its socket, where a new
/// request would get EBUSY.
fn dump(
    family: u8,
    transport: Transport,
    port: Option<u16>,
) -> Result<Vec<SocketEntry>, DiagError> {
    let mut out = Vec::new();
    dump_batches(family, transport, port, |b| {
        parse(b, DUMP_SEQ, port, &mut out)
    })?;
    Ok(out)
}

/// The sequence number of every dump's request (each dump has its socket).
pub const DUMP_SEQ: u32 = 1;

/// Ask for a dump (see [`request`]) on a socket of its own and hand each
/// batch the kernel answers to `each`, until it says the dump is done or
/// fails (4096 batches at most; a recv waits two seconds at most).
/// [`query`] parses the batches; tests keep the kernel's bytes.
pub fn dump_batches(
    family: u8,
    transport: Transport,
    port: Option<u16>,
    mut each: impl FnMut(&[u8]) -> Result<Batch, DiagError>,
) -> Result<(), DiagError> {
    let sock = open()?;
    let req = request(DUMP_SEQ, family, transport, port);
    // SAFETY: sockaddr_nl zeroed is the kernel's address (pid 0).
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto with a buffer and an address we own, of their sizes.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&to as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(DiagError::Refused(errno()));
    }
    // The kernel's dump batches are at most 32 KiB.
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..BATCHES_MAX {
        // SAFETY: recv into a buffer we own, of its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(DiagError::Refused(errno()));
        }
        if each(&buf[..n as usize])? == Batch::Done {
            return Ok(());
        }
    }
    Err(DiagError::Malformed("a dump without end"))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
#[path = "sockdiag_tests.rs"]
mod tests;
