//! Proof of ownership: a local client maps only an endpoint its own uid
//! holds.
//!
//! The broker reads the host's socket tables (`/proc/net/{tcp,tcp6,udp,
//! udp6}` of its own network namespace, the facts `ss` shows) and finds the
//! sockets that would receive traffic for the endpoint: TCP sockets
//! listening on its port, UDP sockets bound to it, on its address or a
//! wildcard. The map is allowed when at least one exists and every one of
//! them belongs to the requester (root may map any user's socket, but a
//! socket must exist). A client can instead hand the broker the socket
//! itself (SCM_RIGHTS): possession is the proof ([`described`]).
//!
//! Parsing and the verdict are pure functions over text ([`parse_line`],
//! [`verdict`]), unit-tested and fuzzed; [`read_table`] is the thin I/O.

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
/// this network namespace's `/proc/net`. Lines are read one at a time, so
/// a huge table costs time, not memory.
pub fn read_table(transport: Transport, port: Option<u16>) -> std::io::Result<Vec<SocketEntry>> {
    let names = match transport {
        Transport::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Transport::Udp => ["/proc/net/udp", "/proc/net/udp6"],
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
    let transport = match transport {
        p2pbroker_client::Transport::Tcp => Transport::Tcp,
        p2pbroker_client::Transport::Udp => Transport::Udp,
    };
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
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 41001 1 0000000000000000 100 0 0 10 0
   1: 00000000:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41002 1 0000000000000000 100 0 0 10 0
   2: 0200000A:1B59 0100000A:C350 01 00000000:00000000 02:000A7E3A 00000000  1000        0 41003 2 0000000000000000 20 4 29 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1B5A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 42001 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000002000000:1B5B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 42002 1 0000000000000000 100 0 0 10 0
";

    fn table(texts: &[&str]) -> Vec<SocketEntry> {
        texts
            .iter()
            .flat_map(|t| t.lines())
            .filter_map(parse_line)
            .collect()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lines_are_decoded_as_the_kernel_writes_them() {
        let t = table(&[TCP, TCP6]);
        assert_eq!(t.len(), 5, "the headers are skipped");
        assert_eq!(
            t[0],
            SocketEntry {
                local: sa("127.0.0.1:5432"),
                state: TCP_LISTEN,
                uid: 999,
                inode: 41001
            }
        );
        assert_eq!(t[2].local, sa("10.0.0.2:7001"));
        assert_eq!(t[3].local, sa("[::]:7002"));
        assert_eq!(t[4].local, sa("[2001:db8::2]:7003"));
        for bad in [
            "",
            "x",
            "0: zz:1 0:0 0A 0 0 0 0 0 1",
            "0: 0100007F:1538 0 0A a b c notauid 0 1",
        ] {
            assert_eq!(parse_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_user_owns_its_listener_and_not_anothers() {
        let t = table(&[TCP, TCP6]);
        // uid 1000 listens on 0.0.0.0:7000.
        assert_eq!(
            verdict(&t, Transport::Tcp, sa("10.0.0.2:7000"), 1000),
            Ok(vec![41002])
        );
        // A database of uid 999 on loopback 5432: not uid 1000's.
        let e = verdict(&t, Transport::Tcp, sa("127.0.0.1:5432"), 1000).unwrap_err();
        assert!(
            matches!(
                e,
                NotOwner::Other {
                    owner: 999,
                    uid: 1000,
                    ..
                }
            ),
            "{e}"
        );
        // An established connection from port 7001 does not listen.
        let e = verdict(&t, Transport::Tcp, sa("10.0.0.2:7001"), 1000).unwrap_err();
        assert!(matches!(e, NotOwner::Nothing { .. }), "{e}");
        assert!(e.to_string().contains("start the application first"));
        // Root may map another user's socket, but one must exist.
        assert_eq!(
            verdict(&t, Transport::Tcp, sa("127.0.0.1:5432"), 0),
            Ok(vec![41001])
        );
        assert!(verdict(&t, Transport::Tcp, sa("10.0.0.2:1"), 0).is_err());
    }

    #[test]
    fn wildcards_cover_their_family_and_the_v6_wildcard_covers_both() {
        let t = table(&[TCP6]);
        // uid 1001 on [::]:7002 receives IPv4 too (unless IPV6_V6ONLY).
        assert_eq!(
            verdict(&t, Transport::Tcp, sa("10.0.0.2:7002"), 1001),
            Ok(vec![42001])
        );
        assert!(verdict(&t, Transport::Tcp, sa("10.0.0.2:7003"), 1000).is_err());
        assert!(verdict(&t, Transport::Tcp, sa("[2001:db8::2]:7003"), 1000).is_ok());
    }

    #[test]
    fn a_port_shared_with_another_user_is_not_the_requesters() {
        // uid 1000 bound [::]:5432 (IPV6_V6ONLY), uid 999 holds 0.0.0.0:5432:
        // mapping IPv4 5432 would expose uid 999's service.
        let t = vec![
            SocketEntry {
                local: sa("[::]:5432"),
                state: 7,
                uid: 1000,
                inode: 1,
            },
            SocketEntry {
                local: sa("0.0.0.0:5432"),
                state: 7,
                uid: 999,
                inode: 2,
            },
        ];
        let e = verdict(&t, Transport::Udp, sa("10.0.0.2:5432"), 1000).unwrap_err();
        assert!(matches!(e, NotOwner::Other { owner: 999, .. }));
        assert!(verdict(&t, Transport::Udp, sa("[2001:db8::2]:5432"), 1000).is_ok());
    }

    #[test]
    fn a_passed_socket_must_be_ours_and_alone_on_its_port() {
        let t = table(&[TCP, TCP6]);
        // uid 1000's wildcard listener, handed over: fine.
        assert_eq!(
            verdict_passed(&t, Transport::Tcp, sa("10.0.0.2:7000"), 41002),
            Ok(vec![41002])
        );
        // A socket from another namespace is not in our table.
        assert_eq!(
            verdict_passed(&t, Transport::Tcp, sa("10.0.0.2:7000"), 777),
            Err(NotOwner::Foreign)
        );
        // Even a root socket may not carry another user's listener with it.
        let shared = vec![
            SocketEntry {
                local: sa("0.0.0.0:53"),
                state: 7,
                uid: 0,
                inode: 1,
            },
            SocketEntry {
                local: sa("10.0.0.2:53"),
                state: 7,
                uid: 101,
                inode: 2,
            },
        ];
        assert!(matches!(
            verdict_passed(&shared, Transport::Udp, sa("10.0.0.2:53"), 1),
            Err(NotOwner::Other { owner: 101, .. })
        ));
    }

    #[test]
    fn a_followed_lease_ends_when_all_its_sockets_are_gone() {
        let open: HashSet<u64> = [1, 2].into();
        assert!(!all_closed(&[1], &open));
        assert!(!all_closed(&[1, 9], &open));
        assert!(all_closed(&[8, 9], &open));
        assert!(!all_closed(&[], &open), "nothing followed is never closed");
    }

    #[test]
    fn a_passed_socket_describes_itself() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (t, local, inode) = described(l.as_fd()).unwrap();
        assert_eq!((t, local), (Transport::Tcp, l.local_addr().unwrap()));
        let ours = read_table(Transport::Tcp, Some(local.port())).unwrap();
        assert!(
            ours.iter().any(|e| e.inode == inode),
            "the inode is the table's"
        );
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(described(u.as_fd()).unwrap().0, Transport::Udp);
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(
            described(c.as_fd())
                .unwrap_err()
                .contains("does not listen")
        );
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(described(f.as_fd()).unwrap_err().contains("not a socket"));
        let unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(described(unix.as_fd()).is_err());
    }
}
