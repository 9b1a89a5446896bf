//! Proof of ownership: a local client maps only an endpoint its own uid
//! holds.
//!
//! The broker asks the kernel for the sockets on the endpoint's port in its
//! own network namespace (sock_diag, the facts `ss` shows) and finds the
//! sockets that would receive traffic for the endpoint: TCP sockets
//! listening on its port, UDP sockets bound to it, on its address or a
//! wildcard. The map is allowed when at least one exists and every one of
//! them belongs to the requester (root may map any user's socket, but a
//! socket must exist). A client can instead hand the broker the socket
//! itself (SCM_RIGHTS): possession is the proof ([`described`]).
//!
//! Parsing and the verdict are pure functions over text ([`parse_line`],
//! [`verdict`]), unit-tested and fuzzed; [`sockets_on`] (sock_diag, see
//! [`super::sockdiag`]) and [`read_table`] are the thin I/O.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::gate::Transport;

/// TCP state LISTEN in `/proc/net/tcp` (`include/net/tcp_states.h`).
const TCP_LISTEN: u8 = 0x0a;
/// Lines read per table at most: a table longer than this is a host with
/// a million sockets; reading stops rather than holding the broker.
const TABLE_LINES_MAX: usize = 1 << 20;

/// One socket of the host, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    /// Its local address.
    pub local: SocketAddr,
    /// The kernel's state number (TCP states; 7 for an unconnected UDP
    /// socket).
    pub state: u8,
    /// The uid that owns it.
    pub uid: u32,
    /// Its inode (what `fstat` of the socket reports).
    pub inode: u64,
}

fn parse_v4(hex: &str) -> Option<Ipv4Addr> {
    // Written as the kernel's u32 in host (little-endian) byte order.
    let n = u32::from_str_radix(hex, 16).ok()?;
    (hex.len() == 8).then(|| Ipv4Addr::from(n.swap_bytes()))
}

fn parse_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    // Four u32 words, each in host (little-endian) byte order.
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let w = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&w.swap_bytes().to_be_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(parse_v4(ip)?),
        32 => IpAddr::V6(parse_v6(ip)?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parse one line of `/proc/net/{tcp,tcp6,udp,udp6}`; `None` for the
/// header and anything malformed.
///
/// Columns: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn parse_line(line: &str) -> Option<SocketEntry> {
    let cols: Vec<&str> = line.split_whitespace().take(10).collect();
    let [_, local, _, st, _, _, _, uid, _, inode] = cols.as_slice() else {
        return None;
    };
    Some(SocketEntry {
        local: parse_endpoint(local)?,
        state: u8::from_str_radix(st, 16).ok()?,
        uid: uid.parse().ok()?,
        inode: inode.parse().ok()?,
    })
}

/// Whether a socket bound to `local` receives traffic for `endpoint`: the
/// same port, and the same address or a wildcard (a `[::]` socket may
/// receive IPv4 too).
fn receives_for(local: SocketAddr, endpoint: SocketAddr) -> bool {
    if local.port() != endpoint.port() {
        return false;
    }
    let (l, e) = (local.ip().to_canonical(), endpoint.ip().to_canonical());
    l == e
        || match l {
            IpAddr::V4(v4) => v4.is_unspecified() && e.is_ipv4(),
            IpAddr::V6(v6) => v6.is_unspecified(),
        }
}

/// Why the endpoint is not the requester's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOwner {
    /// Nothing listens (TCP) or is bound (UDP) there.
    #[error(
        "no {transport} socket {what} {endpoint}: start the application first, then map its port"
    )]
    Nothing {
        /// TCP or UDP.
        transport: Transport,
        /// `listens on` or `is bound to`.
        what: &'static str,
        /// The endpoint.
        endpoint: SocketAddr,
    },
    /// A socket handed over that is not in the broker's network namespace
    /// (it could name any port of this host).
    #[error("the passed socket is not in the broker's network namespace")]
    Foreign,
    /// The socket table could not be read.
    #[error("cannot read the host's socket table: {0}")]
    Unreadable(String),
    /// Another user's socket is there.
    #[error("{endpoint} ({transport}) is held by a socket of uid {owner}, not of uid {uid}")]
    Other {
        /// TCP or UDP.
        transport: Transport,
        /// The endpoint.
        endpoint: SocketAddr,
        /// That socket's uid.
        owner: u32,
        /// The requester's uid.
        uid: u32,
    },
}

/// Decide whether `uid` owns `endpoint` given the host's sockets of
/// `transport`. On success returns the inodes of the sockets that hold it
/// (to follow them: a lease may end when they close).
pub fn verdict(
    entries: &[SocketEntry],
    transport: Transport,
    endpoint: SocketAddr,
    uid: u32,
) -> Result<Vec<u64>, NotOwner> {
    holders(entries, transport, endpoint, uid, true)
}

/// The sockets holding `endpoint`, if all are `uid`'s (any uid's for root
/// when `root_any`).
fn holders(
    entries: &[SocketEntry],
    transport: Transport,
    endpoint: SocketAddr,
    uid: u32,
    root_any: bool,
) -> Result<Vec<u64>, NotOwner> {
    let holders: Vec<&SocketEntry> = entries
        .iter()
        .filter(|e| transport == Transport::Udp || e.state == TCP_LISTEN)
        .filter(|e| receives_for(e.local, endpoint))
        .collect();
    if holders.is_empty() {
        return Err(NotOwner::Nothing {
            transport,
            what: match transport {
                Transport::Tcp => "listens on",
                Transport::Udp => "is bound to",
            },
            endpoint,
        });
    }
    if !(root_any && uid == 0)
        && let Some(other) = holders.iter().find(|e| e.uid != uid)
    {
        return Err(NotOwner::Other {
            transport,
            endpoint,
            owner: other.uid,
            uid,
        });
    }
    Ok(holders.iter().map(|e| e.inode).collect())
}

/// [`verdict`] for a socket handed over (inode `inode`): it must be one of
/// this namespace's sockets; possession stands for its owner's uid, and no
/// other uid's socket may hold the endpoint either.
pub fn verdict_passed(
    entries: &[SocketEntry],
    transport: Transport,
    endpoint: SocketAddr,
    inode: u64,
) -> Result<Vec<u64>, NotOwner> {
    let own = entries
        .iter()
        .find(|e| e.inode == inode)
        .ok_or(NotOwner::Foreign)?;
    holders(entries, transport, endpoint, own.uid, false)
}

impl NotOwner {
    /// Whether this may change by itself (the application is restarting),
    /// as opposed to the endpoint being someone else's.
    pub fn transient(&self) -> bool {
        !matches!(self, NotOwner::Other { .. })
    }
}

/// Whether every socket a lease follows has closed, given the inodes that
/// are open now.
pub fn all_closed(followed: &[u64], open: &HashSet<u64>) -> bool {
    !followed.is_empty() && followed.iter().all(|i| !open.contains(i))
}

/// The sockets of `transport` on `port` (IPv4 and IPv6 tables), read from
/// `/proc/net` of the calling thread's network namespace (`thread-self`:
/// `/proc/net` is the process leader's, which differs in a thread that
/// entered another namespace). Lines are read one at a time, so a huge
/// table costs time, not memory. May miss sockets on a busy host, and the
/// kernel re-walks the table for every page: only the fallback of
/// [`sockets_on`].
pub fn read_table(transport: Transport, port: Option<u16>) -> std::io::Result<Vec<SocketEntry>> {
    let names = match transport {
        Transport::Tcp => ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"],
        Transport::Udp => ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"],
    };
    let mut out = Vec::new();
    for name in names {
        let file = match std::fs::File::open(name) {
            Ok(f) => f,
            // A host without IPv6 has no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let reader = std::io::BufReader::new(file);
        for line in reader.lines().take(TABLE_LINES_MAX) {
            if let Some(e) = parse_line(&line?)
                && port.is_none_or(|p| e.local.port() == p)
            {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// The sockets of `transport` on local `port` (all for `None`), asked of
/// the kernel's sock_diag interface: a port's query lists every socket that
/// stays open during it ([`super::sockdiag`] says why `/proc/net` does
/// not); `/proc/net` only where sock_diag is missing (a kernel built
/// without `inet_diag`/`udp_diag`), named in the error if both fail.
pub fn sockets_on(transport: Transport, port: Option<u16>) -> std::io::Result<Vec<SocketEntry>> {
    match super::sockdiag::query(transport, port) {
        Ok(found) => Ok(found),
        Err(diag) => read_table(transport, port).map_err(|proc_net| {
            std::io::Error::other(format!("sock_diag: {diag}; /proc/net: {proc_net}"))
        }),
    }
}

/// What a socket handed over by a client is: transport, local endpoint and
/// inode. Refuses what cannot be mapped: not a socket, not IP, not bound,
/// a TCP socket that does not listen.
pub fn described(fd: std::os::fd::BorrowedFd<'_>) -> Result<(Transport, SocketAddr, u64), String> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: fstat on a descriptor we hold, into a struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(raw, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("the passed descriptor is not a socket".into());
    }
    let (transport, local) = p2pbroker_client::describe_socket(fd)
        .map_err(|e| format!("the passed socket cannot be used: {e}"))?;
    let transport = super::leases::gate_transport(transport);
    if local.port() == 0 {
        return Err("the passed socket is not bound to a port".into());
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `listening`.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len,
        )
    };
    if transport == Transport::Tcp && (rc != 0 || listening == 0) {
        return Err("the passed TCP socket does not listen".into());
    }
    Ok((transport, local, st.st_ino))
}

#[cfg(test)]
#[path = "ownership_tests.rs"]
mod tests;
