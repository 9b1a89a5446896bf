//! Shared test harness: builds guest components through the project's own
//! pipeline (once per test process), makes hosts, and runs loopback peers.
#![allow(dead_code)]

pub mod igd;
pub mod netns;
#[path = "../p2pb_bin.rs"]
mod p2pb_bin;
pub mod ssdp;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use p2pbroker::audit::MemorySink;
use p2pbroker::gate::Grant;
use p2pbroker::netinfo::NetInfo;
use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::load::AllowList;
use p2pbroker::sandbox::{EngineConfig, Mode, ModeHost, ModeSpec};

#[allow(unused_imports)]
pub use p2pb_bin::{p2pb, static_p2pb};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build the guest crate at `rel` (relative to the workspace root) with
/// `p2pb mode build`'s pipeline and return the component bytes.
pub fn component(rel: &str) -> Vec<u8> {
    std::fs::read(component_path(rel)).unwrap()
}

/// Build the guest crate at `rel` (once per test process) and return the
/// component file's path.
pub fn component_path(rel: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    // Builds are serialised: cargo would serialise them anyway, and one
    // lock keeps two tests from building the same crate twice.
    let mut map = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(rel) {
        return p.clone();
    }
    let target = root().join("target").join("guests");
    let opts = p2pbroker::build::BuildOptions {
        target_dir: Some(target.clone()),
        out_dir: Some(target.join("components")),
        verbose: false,
    };
    let b = p2pbroker::build::build_mode(&root().join(rel), &opts)
        .unwrap_or_else(|e| panic!("building {rel}: {e:#}"));
    map.insert(rel.to_string(), b.path.clone());
    b.path
}

/// A host whose audit decisions are also kept in the returned sink.
pub fn host() -> (ModeHost, Arc<MemorySink>) {
    host_with(EngineConfig {
        concurrent_calls: 8,
        ..Default::default()
    })
}

/// A host with a given engine config.
pub fn host_with(cfg: EngineConfig) -> (ModeHost, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    (ModeHost::new(cfg, sink.clone()).expect("host"), sink)
}

/// A spec from grant strings, config pairs and limits.
pub fn spec(grants: &[&str], config: &[(&str, &str)], limits: Limits) -> ModeSpec {
    ModeSpec {
        grants: grants.iter().map(|g| g.parse::<Grant>().unwrap()).collect(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        limits,
    }
}

/// Load the component built from `rel` with `spec`, on an empty network.
pub async fn load(host: &ModeHost, rel: &str, spec: ModeSpec) -> Mode {
    load_on(host, rel, spec, NetInfo::default()).await
}

/// Load the component built from `rel` with `spec`, on the network `net`
/// (what the gate resolves `gateway` and `lan` against, and what the MOD
/// sees through the broker interface).
pub async fn load_on(host: &ModeHost, rel: &str, spec: ModeSpec, net: NetInfo) -> Mode {
    let bytes = component(rel);
    host.load(&bytes, &AllowList::Any, spec, Arc::new(net))
        .await
        .unwrap_or_else(|e| panic!("loading {rel}: {e}"))
        .0
}

/// A network with these default gateways and no listed addresses.
pub fn gateways(ips: &[IpAddr]) -> NetInfo {
    NetInfo {
        gateways: ips.to_vec(),
        addresses: Vec::new(),
    }
}

/// The grants the MOD crate at `rel` asks for in its manifest
/// (`[package.metadata.p2pbroker] grants` of its Cargo.toml): what it
/// ships with, so tests grant no more and no less.
pub fn manifest_grants(rel: &str) -> Vec<String> {
    let path = root().join(rel).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let grants = doc["package"]["metadata"]["p2pbroker"]["grants"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no grants", path.display()));
    grants
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

/// Short limits for hostile tests: they must end quickly.
pub fn tight() -> Limits {
    Limits {
        timeout_ms: 1_000,
        memory_bytes: 16 << 20,
        ..Limits::default()
    }
}

/// A UDP peer on loopback that answers each datagram with `pong:<data>`,
/// from the same socket, or from a second socket when `from_other` is set
/// (a reply from a source nobody granted). Stops after 64 datagrams or
/// 30 s without one, whichever comes first.
pub async fn udp_peer(from_other: bool) -> (SocketAddr, SocketAddr) {
    udp_peer_bounded(from_other, 64).await
}

/// [`udp_peer`] answering up to `max` datagrams.
pub async fn udp_peer_bounded(from_other: bool, max: usize) -> (SocketAddr, SocketAddr) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (addr, other_addr) = (sock.local_addr().unwrap(), other.local_addr().unwrap());
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..max {
            let Ok(Ok((n, from))) =
                tokio::time::timeout(Duration::from_secs(30), sock.recv_from(&mut buf)).await
            else {
                return;
            };
            let mut reply = b"pong:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let out = if from_other { &other } else { &sock };
            let _ = out.send_to(&reply, from).await;
        }
    });
    (addr, other_addr)
}

/// A TCP listener on loopback that accepts (and drops) up to 8 connections
/// within 30 s; returns its address.
pub async fn tcp_peer() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..8 {
            if tokio::time::timeout(Duration::from_secs(30), l.accept())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    addr
}

/// The next datagram on `sock` in `buf`: its length and source; `None`
/// after `idle` without one.
pub async fn next_datagram(
    sock: &tokio::net::UdpSocket,
    buf: &mut [u8],
    idle: Duration,
) -> Option<(usize, SocketAddr)> {
    tokio::time::timeout(idle, sock.recv_from(buf))
        .await
        .ok()?
        .ok()
}

/// A scripted fake UDP server (a fake gateway): `script` turns each request into the datagrams
/// to send back (from the server's socket, or from a second socket when
/// the script says so). Stops after 32 requests or 10 s idle.
pub async fn fake_udp(
    script: impl Fn(&[u8]) -> (Vec<Vec<u8>>, bool) + Send + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..32 {
            let Some((n, from)) = next_datagram(&sock, &mut buf, Duration::from_secs(10)).await
            else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let (replies, from_other) = script(&buf[..n]);
            for r in replies {
                let s = if from_other { &other } else { &sock };
                let _ = s.send_to(&r, from).await;
            }
        }
    });
    (addr, count)
}

/// The MOD's own error from a call result; panics (failing the test) on
/// success or on any other kind of failure.
pub fn mode_error(
    r: &Result<p2pbroker::sandbox::Output, p2pbroker::sandbox::error::CallError>,
) -> &p2pbroker::sandbox::wit::ModeError {
    match r {
        Err(p2pbroker::sandbox::error::CallError::Mode(e)) => e,
        other => panic!("expected a mode error, got {other:?}"),
    }
}
