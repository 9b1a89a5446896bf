//! The socket-table parser and the ownership verdict, on tables written as
//! the kernel writes them.
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

/// A bound UDP socket (state 7) of `uid`.
fn udp(local: &str, uid: u32, inode: u64) -> SocketEntry {
    SocketEntry {
        local: sa(local),
        state: 7,
        uid,
        inode,
    }
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
    let t = vec![udp("[::]:5432", 1000, 1), udp("0.0.0.0:5432", 999, 2)];
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
    let shared = vec![udp("0.0.0.0:53", 0, 1), udp("10.0.0.2:53", 101, 2)];
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
