//! The socket-table parser behind proof of ownership
//! (`/proc/net/{tcp,udp}{,6}` lines) and the ownership verdict. On any
//! bytes: no panic; a parsed line re-parses identically from its own
//! fields; a verdict grants a uid only sockets of that uid (root: any) that
//! hold the endpoint's port, and never grants with no socket at all.

use std::net::SocketAddr;

use p2pbroker::daemon::ownership::{SocketEntry, parse_line, verdict};
use p2pbroker::gate::Transport;

/// One input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let entries: Vec<SocketEntry> = text.lines().filter_map(parse_line).collect();
    for e in &entries {
        assert_eq!(parse_line(&line(e)), Some(*e), "round trip");
    }
    // The endpoint and the requester come from the input's first bytes.
    let [a, b, c, d, p0, p1, u, t, ..] = data else {
        return;
    };
    let endpoint = SocketAddr::from(([*a, *b, *c, *d], u16::from_be_bytes([*p0, *p1])));
    let uid = u32::from(*u % 4) * 500;
    let transport = if t & 1 == 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    if let Ok(inodes) = verdict(&entries, transport, endpoint, uid) {
        assert!(!inodes.is_empty(), "granted with no socket");
        // (Real inodes are unique; here two lines may share one.)
        for i in &inodes {
            assert!(
                entries.iter().any(|e| e.inode == *i
                    && e.local.port() == endpoint.port()
                    && (uid == 0 || e.uid == uid)),
                "inode {i} is not a socket of uid {uid} on port {}",
                endpoint.port()
            );
        }
    }
}

/// `e` written as the kernel writes a table line.
fn line(e: &SocketEntry) -> String {
    let ip = match e.local {
        SocketAddr::V4(v4) => format!("{:08X}", u32::from(*v4.ip()).swap_bytes()),
        SocketAddr::V6(v6) => v6
            .ip()
            .octets()
            .chunks(4)
            .map(|w| {
                format!(
                    "{:08X}",
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]]).swap_bytes()
                )
            })
            .collect(),
    };
    format!(
        "0: {ip}:{:04X} 00000000:0000 {:02X} 00000000:00000000 00:00000000 00000000 {} 0 {} 1",
        e.local.port(),
        e.state,
        e.uid,
        e.inode
    )
}
