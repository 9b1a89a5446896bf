//! The host's socket tables (`/proc/net` and sock_diag) as the kernel
//! lists a few sockets of the lab host, and the test that the project's
//! parsers read them right: kernel tables, not a gateway's answers, so
//! apart from the exchanges with miniupnpd.

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};

use p2pbroker::daemon::ownership::{SocketEntry, parse_line, verdict};
use p2pbroker::daemon::sockdiag::{self, Batch};
use p2pbroker::gate::Transport;
use p2pbroker::text::escaped;

use crate::exchange::{EXCHANGE_TIMEOUT, Seeds};
use crate::lab::v6::HOST_IP6;
use crate::lab::{GatewayOptions, HOST_IP, Lab, Ns};

/// What the host namespace's socket tables said about a few sockets.
struct Tables {
    /// `/proc/net/NAME` text by NAME.
    proc_net: Vec<(&'static str, String)>,
    /// sock_diag dumps.
    diag: Vec<Dump>,
    /// The sockets' (local address, transport, inode).
    sockets: Vec<(SocketAddr, Transport, u64)>,
}

/// One sock_diag dump as the kernel answered it.
struct Dump {
    /// What was asked, for seed names and messages.
    name: &'static str,
    /// The port asked for (`None`: the whole table).
    port: Option<u16>,
    family: u8,
    transport: Transport,
    /// Each batch received.
    batches: Vec<Vec<u8>>,
}

/// One sock_diag dump, raw: every batch until NLMSG_DONE.
fn diag_dump(family: u8, transport: Transport, port: Option<u16>) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    sockdiag::dump_batches(family, transport, port, |b| {
        batches.push(b.to_vec());
        sockdiag::parse(b, sockdiag::DUMP_SEQ, port, &mut Vec::new())
    })
    .unwrap_or_else(|e| panic!("sock_diag dump: {e}"));
    batches
}

/// The socket's inode, as `/proc/net` and sock_diag list it.
fn inode(fd: &impl std::os::fd::AsRawFd) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .ino()
}

/// In the host namespace: a TCP listener and a UDP socket per family, and
/// one accepted connection; then the tables.
fn socket_tables() -> Tables {
    use std::net::TcpListener;
    let l4 = TcpListener::bind(format!("{HOST_IP}:7300")).unwrap();
    let l6 = TcpListener::bind("[::]:7301").unwrap();
    let u4 = UdpSocket::bind("0.0.0.0:7302").unwrap();
    let u6 = UdpSocket::bind(format!("[{HOST_IP6}]:7303")).unwrap();
    let client = TcpStream::connect_timeout(&l4.local_addr().unwrap(), EXCHANGE_TIMEOUT).unwrap();
    let (served, _) = l4.accept().unwrap();
    let sockets = vec![
        (l4.local_addr().unwrap(), Transport::Tcp, inode(&l4)),
        (l6.local_addr().unwrap(), Transport::Tcp, inode(&l6)),
        (u4.local_addr().unwrap(), Transport::Udp, inode(&u4)),
        (u6.local_addr().unwrap(), Transport::Udp, inode(&u6)),
    ];
    // thread-self: /proc/net is the process leader's namespace, not this
    // thread's.
    let proc_net = ["tcp", "tcp6", "udp", "udp6"]
        .map(|t| {
            (
                t,
                std::fs::read_to_string(format!("/proc/thread-self/net/{t}")).unwrap(),
            )
        })
        .to_vec();
    let (v4, v6) = (libc::AF_INET as u8, libc::AF_INET6 as u8);
    let diag = [
        ("tcp-7300", 7300, v4, Transport::Tcp),
        ("tcp6-7301", 7301, v6, Transport::Tcp),
        ("udp-7302", 7302, v4, Transport::Udp),
        ("udp6-all", 0, v6, Transport::Udp),
        ("tcp-all", 0, v4, Transport::Tcp),
    ]
    .into_iter()
    .map(|(name, port, family, transport)| {
        let port = Some(port).filter(|p| *p != 0);
        let batches = diag_dump(family, transport, port);
        Dump {
            name,
            port,
            family,
            transport,
            batches,
        }
    })
    .collect();
    drop((client, served));
    Tables {
        proc_net,
        diag,
        sockets,
    }
}

/// A `proc_net` seed: the endpoint and requester its checks read from the
/// first 8 bytes (address, port, uid 0, transport), then the table.
fn proc_net_seed(endpoint: SocketAddr, transport: Transport, table: &str) -> Vec<u8> {
    let ip = match endpoint.ip().to_canonical() {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(_) => HOST_IP.parse::<std::net::Ipv4Addr>().unwrap().octets(),
    };
    let mut seed = ip.to_vec();
    seed.extend_from_slice(&endpoint.port().to_be_bytes());
    seed.push(0);
    seed.push(u8::from(transport == Transport::Udp));
    seed.push(b'\n');
    seed.extend_from_slice(table.as_bytes());
    seed
}

#[test]
fn the_kernels_socket_tables_list_the_lab_hosts_sockets() {
    // Dual stack for the IPv6 sockets; the gateway's services go unused.
    let lab = Lab::up_dual_stack(GatewayOptions {
        upnp: false,
        natpmp: false,
        ..GatewayOptions::default()
    });
    let seeds = Seeds::from_env();
    let t = lab.in_ns(Ns::Host, socket_tables);

    // /proc/net: each socket once, with its inode, owned by root; the
    // verdict grants root exactly it.
    let all: Vec<SocketEntry> = t
        .proc_net
        .iter()
        .flat_map(|(_, text)| text.lines().filter_map(parse_line))
        .collect();
    for (name, text) in &t.proc_net {
        assert!(
            text.trim_start().starts_with("sl"),
            "{name}: {}",
            escaped(text)
        );
        let (addr, transport, ino) = t
            .sockets
            .iter()
            .find(|(a, tr, _)| {
                name.starts_with(if *tr == Transport::Tcp { "tcp" } else { "udp" })
                    && a.is_ipv6() == name.ends_with('6')
            })
            .unwrap();
        let e = all
            .iter()
            .find(|e| e.inode == *ino)
            .unwrap_or_else(|| panic!("{name}: no inode {ino}: {}", escaped(text)));
        assert_eq!((e.local, e.uid), (*addr, 0), "{name}");
        // A wildcard socket receives for the host's address too.
        let endpoint = match addr.ip().is_unspecified() {
            true => SocketAddr::new(HOST_IP.parse().unwrap(), addr.port()),
            false => *addr,
        };
        assert_eq!(
            verdict(&all, *transport, endpoint, 0),
            Ok(vec![*ino]),
            "{name}"
        );
        seeds.keep(
            "proc_net",
            &format!("lab-{name}"),
            &proc_net_seed(*addr, *transport, text),
        );
    }
    let established = all
        .iter()
        .filter(|e| e.state == 1 && e.local.port() == 7300)
        .count();
    assert_eq!(established, 1, "the accepted connection");

    // sock_diag: the port's sockets, and the same inodes as /proc/net.
    for d in &t.diag {
        let (name, port) = (d.name, d.port);
        let mut found = Vec::new();
        let mut last = Ok(Batch::More);
        for b in &d.batches {
            last = sockdiag::parse(b, 1, port, &mut found);
        }
        assert_eq!(last, Ok(Batch::Done), "{name}");
        let ours: Vec<&(SocketAddr, Transport, u64)> = t
            .sockets
            .iter()
            .filter(|(a, tr, _)| {
                *tr == d.transport
                    && a.is_ipv6() == (i32::from(d.family) == libc::AF_INET6)
                    && port.is_none_or(|p| a.port() == p)
            })
            .collect();
        assert!(!ours.is_empty(), "{name}");
        for (addr, _, ino) in ours {
            let e = found
                .iter()
                .find(|e| e.inode == *ino)
                .unwrap_or_else(|| panic!("{name}: no inode {ino} in {found:?}"));
            assert_eq!((e.local, e.uid), (*addr, 0), "{name}");
        }
        // The target's input: [seq hi, seq lo, port hi, port lo, reply].
        let prefix = |bytes: &[u8]| {
            let mut s = vec![0, 1];
            s.extend_from_slice(&port.unwrap_or(0).to_be_bytes());
            s.extend_from_slice(bytes);
            s
        };
        for (i, b) in d.batches.iter().enumerate() {
            seeds.keep("sock_diag", &format!("lab-{name}-batch{i}"), &prefix(b));
        }
        if d.batches.len() > 1 {
            seeds.keep(
                "sock_diag",
                &format!("lab-{name}-whole"),
                &prefix(&d.batches.concat()),
            );
        }
    }
}
