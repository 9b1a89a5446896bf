//! The relay bench's baseline: coturn's relay legs without the broker. A
//! TURN client in the host namespace (the turn-relay MOD's own sans-I/O
//! exchanges, run natively over a plain UDP socket) allocates, binds a
//! channel to the peer and echoes every ChannelData frame straight back:
//! an application that speaks TURN itself. The peer measures it exactly
//! as it measures the broker's path, with a microsecond clock, so the two
//! medians divide.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use p2pbroker_mode_sdk::ModeError;
use p2pbroker_mode_turn_relay::client;
use p2pbroker_mode_turn_relay::creds::Credentials;
use p2pbroker_mode_turn_relay::exchange::{Link, Session};
use p2pbroker_mode_turn_relay::proto::Tid;
use p2pbroker_mode_turn_relay::state::PeerChannel;

/// A plain UDP socket connected to the relay.
struct UdpLink {
    socket: UdpSocket,
    origin: Instant,
    next: u64,
}

impl Link for UdpLink {
    fn send(&mut self, message: &[u8]) -> Result<(), ModeError> {
        self.socket
            .send(message)
            .map(|_| ())
            .map_err(|e| ModeError::Unavailable(e.to_string()))
    }

    fn receive(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, ModeError> {
        let wait = wait.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 2048];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(ModeError::Unavailable(e.to_string())),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn tid(&mut self) -> Tid {
        // Unique within the run is all a transaction id needs here.
        self.next += 1;
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&self.next.to_be_bytes());
        t[8..].copy_from_slice(&std::process::id().to_be_bytes());
        t
    }
}

/// A running baseline echo: its relayed address; stops when dropped.
pub struct Baseline {
    /// Where the peer sends.
    pub relayed: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Allocate on `server` from `socket` (bound in the host namespace) as
/// `user`, bind channel 0x4000 to `peer`, and echo until dropped.
pub fn start(
    socket: UdpSocket,
    server: SocketAddr,
    (user, password): (&str, &str),
    peer: SocketAddr,
) -> Baseline {
    socket.connect(server).unwrap();
    let mut link = UdpLink {
        socket,
        origin: Instant::now(),
        next: 0,
    };
    let creds = Credentials {
        username: user.to_string(),
        password: password.to_string(),
    };
    let relayed = {
        let mut s = Session::new(&mut link, server, Duration::from_secs(3), Some(creds), None);
        let a = client::allocate(&mut s, 600).expect("the baseline allocates");
        let pc = PeerChannel {
            peer,
            channel: 0x4000,
        };
        client::bind(&mut s, &[pc]).expect("the baseline binds its peer");
        a.relayed
    };
    let stop = Arc::new(AtomicBool::new(false));
    let halt = stop.clone();
    let socket = link.socket;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Bounded by the stop flag, checked at least every 100 ms.
        while !halt.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                // ChannelData (first two bits 01): back on the same
                // channel, hence to the same peer.
                if n >= 4 && buf[0] >> 6 == 1 {
                    let _ = socket.send(&buf[..n]);
                }
            }
        }
    });
    Baseline {
        relayed,
        stop,
        thread: Some(thread),
    }
}
