//! The relay channels the broker keeps for TURN MODs (contract 0.1.4
//! `relay`), and the native data path of each.
//!
//! A channel is a UDP socket connected to one relay server, or a stream to
//! it: TCP or TLS, direct or through a proxy ([`super::stream`]; RFC 8656
//! framing: ChannelData padded to 4). Its reader
//! task sorts what the server sends: ChannelData goes straight to the
//! application through the peer's stand-in socket; a STUN message waits in
//! a small queue for the MOD's next `receive`. Each permitted peer gets a
//! stand-in: a UDP socket connected to the application's endpoint, so the
//! application sees one source address per peer and answers it, and the
//! kernel drops anything the application's endpoint did not send. Both
//! directions reuse one buffer per task: nothing is allocated per packet.
//!
//! Caps bound what MODs and peers can make the broker hold: channels (one
//! socket each) and stand-ins (one socket each) across all leases, and the
//! queue of STUN messages per channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::frame::{self, Frame};
use super::stream::{DialError, Dialer, Io};

/// Channels all leases together may hold.
pub const CHANNELS_MAX: usize = 64;
/// Stand-in sockets (permitted peers) all leases together may hold.
pub const STANDINS_MAX: usize = 512;
/// Peers one channel carries.
pub const PEERS_MAX: usize = 256;
/// STUN messages queued for a MOD per channel; older ones are dropped.
const QUEUE_MAX: usize = 32;
/// Bytes queued for a MOD per channel: a hostile relay's large messages
/// hold at most this much per channel (64 channels: 4 MiB in all).
const QUEUE_BYTES_MAX: usize = 64 * 1024;
/// The largest datagram read: a UDP payload.
const DATAGRAM_MAX: usize = 65_535;

/// One peer the data path carries, as a MOD keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerChannel {
    /// The peer's address (as the relay sees it).
    pub peer: SocketAddr,
    /// The channel number the server bound for it.
    pub number: u16,
}

/// Packets and bytes the data path moved, for status and benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    /// ChannelData frames from the server delivered to the application.
    pub to_app: AtomicU64,
    /// Datagrams from the application sent to the server.
    pub to_relay: AtomicU64,
    /// Frames dropped: unknown channel number, malformed, queue full.
    pub dropped: AtomicU64,
}

struct Peer {
    channel: PeerChannel,
    standin: Arc<UdpSocket>,
    task: AbortHandle,
}

#[derive(Default)]
struct Carried {
    internal: Option<SocketAddr>,
    relayed: Option<SocketAddr>,
    peers: BTreeMap<u16, Peer>,
}

/// The write side of a stream to a relay.
type StreamWrite = tokio::io::WriteHalf<Box<dyn Io>>;

/// How a channel reaches its relay.
enum Link {
    Udp(Arc<UdpSocket>),
    /// Writes of whole frames, one at a time (the MOD's and the data
    /// path's share the stream).
    Stream(tokio::sync::Mutex<StreamWrite>),
}

/// A channel to one relay server.
pub struct Channel {
    server: SocketAddr,
    /// How it reaches the server (`udp`, `tcp`, `tls via http-connect`).
    leg: String,
    link: Link,
    queue: Mutex<VecDeque<Vec<u8>>>,
    queued: Notify,
    carried: Mutex<Carried>,
    reader: Mutex<Option<AbortHandle>>,
    /// What the data path moved.
    pub counters: Counters,
}

/// What a kept channel carries, for views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrying {
    /// The relay server.
    pub server: SocketAddr,
    /// How the channel reaches it (`udp`, `tcp`, `tls via http-connect`).
    pub leg: String,
    /// The allocation's relayed address.
    pub relayed: Option<SocketAddr>,
    /// Each peer and the local address the application sees it as.
    pub peers: Vec<(SocketAddr, SocketAddr)>,
}

/// Every channel, by id.
pub struct RelayHub {
    channels: Mutex<HashMap<u32, Arc<Channel>>>,
    next: Mutex<u32>,
    standins: std::sync::atomic::AtomicUsize,
    runtime: tokio::runtime::Handle,
    dialer: Mutex<Option<Arc<dyn Dialer>>>,
}

impl RelayHub {
    /// A hub whose data path runs on `runtime` (the daemon's).
    pub fn new(runtime: tokio::runtime::Handle) -> Arc<RelayHub> {
        Arc::new(RelayHub {
            channels: Mutex::new(HashMap::new()),
            next: Mutex::new(1),
            standins: Default::default(),
            runtime,
            dialer: Mutex::new(None),
        })
    }

    /// Reach stream channels' servers by the routes and trust `dialer`
    /// gives (the daemon's policy); without one, directly and never TLS.
    pub fn set_dialer(&self, dialer: Arc<dyn Dialer>) {
        *self.dialer.lock().unwrap() = Some(dialer);
    }

    /// Channels open now.
    pub fn len(&self) -> usize {
        self.channels.lock().unwrap().len()
    }

    /// Whether no channel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The channel `id`, if open.
    pub fn get(&self, id: u32) -> Option<Arc<Channel>> {
        self.channels.lock().unwrap().get(&id).cloned()
    }

    /// Open a channel to `server` and start reading it.
    pub fn open(&self, server: SocketAddr) -> Result<u32, String> {
        if self.len() >= CHANNELS_MAX {
            return Err(format!(
                "the broker holds {CHANNELS_MAX} relay channels already"
            ));
        }
        let socket = bound_to(server, &self.runtime)
            .map_err(|e| format!("cannot open a socket to {server}: {e}"))?;
        let socket = Arc::new(socket);
        let channel = Channel::new(server, "udp".into(), Link::Udp(socket.clone()));
        let task = self.runtime.spawn(read_server(channel.clone(), socket));
        Ok(self.insert(channel, task.abort_handle()))
    }

    /// Open a channel over a stream to `server` (TLS when `tls`), made on
    /// the data path's runtime as the dialer's routes say, and start
    /// reading it.
    pub async fn open_stream(&self, server: SocketAddr, tls: bool) -> Result<u32, DialError> {
        if self.len() >= CHANNELS_MAX {
            return Err(DialError::Unavailable(format!(
                "the broker holds {CHANNELS_MAX} relay channels already"
            )));
        }
        let dialer = self.dialer.lock().unwrap().clone();
        let dialed = self
            .runtime
            .spawn(super::stream::dial(dialer, server, tls))
            .await;
        let (stream, leg) = match dialed {
            Ok(r) => r?,
            Err(e) => {
                return Err(DialError::Unavailable(format!(
                    "connecting to {server}: {e}"
                )));
            }
        };
        let (read, write) = tokio::io::split(stream);
        let channel = Channel::new(server, leg, Link::Stream(tokio::sync::Mutex::new(write)));
        let task = self.runtime.spawn(read_stream(channel.clone(), read));
        Ok(self.insert(channel, task.abort_handle()))
    }

    fn insert(&self, channel: Arc<Channel>, reader: AbortHandle) -> u32 {
        *channel.reader.lock().unwrap() = Some(reader);
        let id = {
            let mut next = self.next.lock().unwrap();
            let id = *next;
            *next = next.wrapping_add(1).max(1);
            id
        };
        self.channels.lock().unwrap().insert(id, channel);
        id
    }

    /// Close channel `id`: its reader, its stand-ins and its socket.
    pub fn close(&self, id: u32) {
        let Some(c) = self.channels.lock().unwrap().remove(&id) else {
            return;
        };
        if let Some(r) = c.reader.lock().unwrap().take() {
            r.abort();
        }
        let peers = std::mem::take(&mut c.carried.lock().unwrap().peers);
        self.standins.fetch_sub(peers.len(), Ordering::AcqRel);
        for p in peers.values() {
            p.task.abort();
        }
    }

    /// Carry data between `internal` (the application) and exactly
    /// `peers` on channel `id`; `relayed` is the allocation's address.
    pub fn keep(
        &self,
        id: u32,
        internal: SocketAddr,
        relayed: SocketAddr,
        peers: &[PeerChannel],
    ) -> Result<(), String> {
        let c = self
            .get(id)
            .ok_or_else(|| format!("no relay channel {id}"))?;
        check_peers(peers)?;
        let mut carried = c.carried.lock().unwrap();
        if carried.internal.is_some_and(|i| i != internal) {
            return Err(format!("relay channel {id} carries another endpoint"));
        }
        carried.internal = Some(internal);
        carried.relayed = Some(relayed);
        // Drop peers no longer listed (or rebound to another number).
        let stale: Vec<u16> = carried
            .peers
            .iter()
            .filter(|(_, p)| !peers.contains(&p.channel))
            .map(|(n, _)| *n)
            .collect();
        for n in stale {
            if let Some(p) = carried.peers.remove(&n) {
                p.task.abort();
                self.standins.fetch_sub(1, Ordering::AcqRel);
            }
        }
        for pc in peers {
            if carried.peers.contains_key(&pc.number) {
                continue;
            }
            let taken = self
                .standins
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < STANDINS_MAX).then_some(n + 1)
                })
                .is_ok();
            if !taken {
                return Err(format!(
                    "the broker carries {STANDINS_MAX} relay peers already"
                ));
            }
            let standin = match bound_to(internal, &self.runtime) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    self.standins.fetch_sub(1, Ordering::AcqRel);
                    return Err(format!(
                        "cannot open a stand-in socket for {}: {e}",
                        pc.peer
                    ));
                }
            };
            let task = self
                .runtime
                .spawn(read_app(c.clone(), standin.clone(), pc.number))
                .abort_handle();
            carried.peers.insert(
                pc.number,
                Peer {
                    channel: *pc,
                    standin,
                    task,
                },
            );
        }
        Ok(())
    }

    /// What channel `id` carries.
    pub fn carrying(&self, id: u32) -> Option<Carrying> {
        let c = self.get(id)?;
        let carried = c.carried.lock().unwrap();
        Some(Carrying {
            server: c.server,
            leg: c.leg.clone(),
            relayed: carried.relayed,
            peers: carried
                .peers
                .values()
                .filter_map(|p| Some((p.channel.peer, p.standin.local_addr().ok()?)))
                .collect(),
        })
    }
}

impl Channel {
    fn new(server: SocketAddr, leg: String, link: Link) -> Arc<Channel> {
        Arc::new(Channel {
            server,
            leg,
            link,
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            carried: Mutex::new(Carried::default()),
            reader: Mutex::new(None),
            counters: Counters::default(),
        })
    }

    /// Send one STUN message to the server.
    pub async fn send(&self, message: &[u8]) -> std::io::Result<()> {
        match &self.link {
            Link::Udp(s) => s.send(message).await.map(|_| ()),
            Link::Stream(w) => {
                use tokio::io::AsyncWriteExt;
                let mut w = w.lock().await;
                w.write_all(message).await?;
                // TLS holds records until flushed.
                w.flush().await
            }
        }
    }

    /// Send the ChannelData frame at the front of `buf` (header and `len`
    /// bytes of data), padded to 4 on a stream; `buf` has room for it.
    async fn forward(&self, buf: &mut [u8], len: usize) -> std::io::Result<()> {
        match &self.link {
            // UDP needs no padding (RFC 8656 section 12.5).
            Link::Udp(s) => s.send(&buf[..frame::HEADER + len]).await.map(|_| ()),
            Link::Stream(w) => {
                use tokio::io::AsyncWriteExt;
                let padded = (frame::HEADER + len).next_multiple_of(4);
                buf[frame::HEADER + len..padded].fill(0);
                let mut w = w.lock().await;
                w.write_all(&buf[..padded]).await?;
                w.flush().await
            }
        }
    }

    /// The next STUN message the server sent, waiting up to `wait`.
    pub async fn receive(&self, wait: Duration) -> Option<Vec<u8>> {
        let _ = tokio::time::timeout(wait, async {
            loop {
                let ready = self.queued.notified();
                tokio::pin!(ready);
                ready.as_mut().enable();
                if !self.queue.lock().unwrap().is_empty() {
                    return;
                }
                ready.await;
            }
        })
        .await;
        self.queue.lock().unwrap().pop_front()
    }

    /// The relay server.
    pub fn server(&self) -> SocketAddr {
        self.server
    }
}

fn check_peers(peers: &[PeerChannel]) -> Result<(), String> {
    if peers.len() > PEERS_MAX {
        return Err(format!("more than {PEERS_MAX} peers on one channel"));
    }
    let mut numbers = std::collections::BTreeSet::new();
    for p in peers {
        if !(frame::CHANNEL_MIN..=frame::CHANNEL_MAX).contains(&p.number) {
            return Err(format!(
                "channel number {:#06x} for {} is outside 0x4000-0x4fff",
                p.number, p.peer
            ));
        }
        if !numbers.insert(p.number) {
            return Err(format!("channel number {:#06x} is given twice", p.number));
        }
    }
    Ok(())
}

/// A non-blocking UDP socket on an ephemeral port, connected to `to`.
fn bound_to(to: SocketAddr, runtime: &tokio::runtime::Handle) -> std::io::Result<UdpSocket> {
    let any: IpAddr = match to {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    s.connect(to)?;
    s.set_nonblocking(true)?;
    // Registered with the data path's runtime, whichever thread asks.
    let _in = runtime.enter();
    UdpSocket::from_std(s)
}

/// Server → application (ChannelData) or → the MOD's queue (STUN), over
/// UDP.
async fn read_server(c: Arc<Channel>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    // Bounded: ends with the socket (an error) or when the task is aborted.
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return,
        };
        deliver(&c, &buf[..n]);
    }
}

/// The same over TCP: whole frames cut from the stream by their length.
/// A frame that is neither kind means the stream is lost: the reader
/// stops, and the MOD's next call finds nothing answering.
async fn read_stream(c: Arc<Channel>, mut read: tokio::io::ReadHalf<Box<dyn Io>>) {
    use tokio::io::AsyncReadExt;
    // The largest frame: a STUN message of 20 + 65,535 bytes.
    let mut buf = vec![0u8; 2 * (DATAGRAM_MAX + 20)];
    let mut filled = 0;
    loop {
        match read.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let mut start = 0;
        // Neither STUN (00) nor ChannelData (01): the stream is lost, even
        // before the bytes a bogus length names arrive.
        if buf[..filled].first().is_some_and(|b| b >> 6 > 1) {
            c.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while let Some(len) = frame::stream_frame_len(&buf[start..filled]) {
            if start + len > filled {
                break;
            }
            if frame::parse(&buf[start..start + len]) == Frame::Invalid {
                c.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            deliver(&c, &buf[start..start + len]);
            start += len;
            if buf[start..filled].first().is_some_and(|b| b >> 6 > 1) {
                c.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// One frame from the server: to the application or to the MOD's queue.
fn deliver(c: &Channel, bytes: &[u8]) {
    match frame::parse(bytes) {
        Frame::Channel { number, data } => {
            let standin = c
                .carried
                .lock()
                .unwrap()
                .peers
                .get(&number)
                .map(|p| p.standin.clone());
            match standin {
                Some(s) if s.try_send(data).is_ok() => {
                    c.counters.to_app.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    c.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Frame::Stun if bytes.len() > QUEUE_BYTES_MAX => {
            c.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Frame::Stun => {
            let mut q = c.queue.lock().unwrap();
            let mut held: usize = q.iter().map(Vec::len).sum();
            while q.len() >= QUEUE_MAX || held + bytes.len() > QUEUE_BYTES_MAX {
                held -= q.pop_front().map_or(0, |m| m.len());
                c.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(bytes.to_vec());
            drop(q);
            c.queued.notify_waiters();
        }
        Frame::Invalid => {
            c.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Application → server, framed as ChannelData on `number`.
async fn read_app(c: Arc<Channel>, standin: Arc<UdpSocket>, number: u16) {
    // Room for the header and a stream leg's padding around a datagram.
    let mut buf = vec![0u8; frame::HEADER + DATAGRAM_MAX + 4];
    loop {
        let n = match standin
            .recv(&mut buf[frame::HEADER..frame::HEADER + DATAGRAM_MAX])
            .await
        {
            Ok(n) => n,
            // The application's port is closed for now: wait for it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return,
        };
        let Some(h) = frame::header(number, n) else {
            continue;
        };
        buf[..frame::HEADER].copy_from_slice(&h);
        if c.forward(&mut buf, n).await.is_ok() {
            c.counters.to_relay.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
