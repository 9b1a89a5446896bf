//! The raw exchanges of the lab tests (TCP until the peer closes, one UDP
//! answer, every SSDP answer) and [`Seeds`], where captures are written:
//! plain-socket plumbing every test here shares, kept apart from the
//! checks of what the captures say.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use p2pbroker::text::escaped;
use p2pbroker_mode_upnp_igd::http::HTTP_MAX_RESPONSE;

/// One exchange (connect, send, every read) gives up after this: the
/// gateway is two veths away and answers in milliseconds.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SSDP answers are collected: miniupnpd waits up to MX (1 s)
/// before answering a search.
const SSDP_WAIT: Duration = Duration::from_millis(2500);

/// Where captures go, when `P2PB_FUZZ_SEEDS` names a folder.
pub struct Seeds(Option<PathBuf>);

impl Seeds {
    pub fn from_env() -> Seeds {
        Seeds(std::env::var_os("P2PB_FUZZ_SEEDS").map(PathBuf::from))
    }

    /// Keep `bytes` as seed `name` of fuzz target `target`.
    pub fn keep(&self, target: &str, name: &str, bytes: &[u8]) {
        if let Some(dir) = &self.0 {
            let dir = dir.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), without_kernel_release(bytes)).unwrap();
        }
    }
}

/// `bytes` with this machine's kernel release, which miniupnpd writes
/// into its SERVER headers (`Debian/RELEASE UPnP/1.1 …`), replaced by
/// Debian's version: the committed seeds say nothing about the machine
/// that made them. (A header, so no Content-Length changes.)
fn without_kernel_release(bytes: &[u8]) -> Vec<u8> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = format!("/{} ", release.trim());
    if release.len() < 4 {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest
        .windows(release.len())
        .position(|w| w == release.as_bytes())
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"/12 ");
        rest = &rest[at + release.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Untrusted bytes as text safe to print.
pub fn shown(b: &[u8]) -> String {
    escaped(&String::from_utf8_lossy(b))
}

/// Send `request` over TCP to `to` and read until the peer closes or
/// [`HTTP_MAX_RESPONSE`] is passed; bounded by [`EXCHANGE_TIMEOUT`]. Runs
/// in the caller's network namespace.
pub fn tcp_exchange(to: SocketAddr, request: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let mut s = TcpStream::connect_timeout(&to, EXCHANGE_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s.set_write_timeout(Some(EXCHANGE_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // miniupnpd answers `Connection: close` requests and closes: read the
    // whole response as it sent it.
    while out.len() <= HTTP_MAX_RESPONSE {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{to}: no end of response within 5 s");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{to}: {e} after {} bytes", out.len()),
        }
    }
    out
}

/// Send `request` over UDP from `from` to `to` and return the first
/// datagram that comes back from `to`; retried 3 times, a second each.
pub fn udp_exchange(from: SocketAddr, to: SocketAddr, request: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind(from).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 1100];
    for _ in 0..3 {
        s.send_to(request, to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match s.recv_from(&mut buf) {
                Ok((n, peer)) if peer == to => return buf[..n].to_vec(),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    panic!("no answer from {to} within 3 s");
}

/// Every SSDP answer to `searches` (M-SEARCH requests), sent from `from`
/// to `group`: (responder, bytes).
pub fn ssdp_search(
    from: SocketAddr,
    group: SocketAddr,
    searches: Vec<Vec<u8>>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let s = UdpSocket::bind(from).unwrap();
    for m in &searches {
        s.send_to(m, group).unwrap();
    }
    let deadline = Instant::now() + SSDP_WAIT;
    let mut answers = Vec::new();
    let mut buf = [0u8; 1500];
    // Bounded by the deadline and by a count no gateway reaches honestly.
    while answers.len() < 64 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, peer)) => answers.push((peer, buf[..n].to_vec())),
            Err(_) => break,
        }
    }
    answers
}
