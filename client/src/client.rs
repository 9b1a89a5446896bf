//! The async client: one connection to the broker, requests matched to
//! responses by id, events delivered to a [`Subscription`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::proto::*;

/// How long a request may wait for its answer by default: a `map` may walk
/// several MODs, each with its own timeouts, so this is generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered for a subscription that is not being read.
const EVENT_BUFFER: usize = 1024;

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (no broker listening, permission, ...).
    #[error("broker socket: {0}")]
    Io(#[from] std::io::Error),
    /// The broker sent something this client does not understand.
    #[error("broker sent a malformed line: {0}")]
    Protocol(String),
    /// The broker refused or failed the request.
    #[error("{0}")]
    Api(ApiError),
    /// No answer within the timeout.
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    /// The connection is closed.
    #[error("the broker closed the connection")]
    Closed,
}

/// The socket path: `$P2PB_SOCKET`, else `/run/p2pbroker/broker.sock` for
/// root, else `$XDG_RUNTIME_DIR/p2pbroker/broker.sock` (or under /tmp if
/// that is unset).
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("P2PB_SOCKET") {
        return PathBuf::from(p);
    }
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/p2pbroker/broker.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("p2pbroker/broker.sock"),
        None => PathBuf::from(format!("/tmp/p2pbroker-{uid}/broker.sock")),
    }
}

/// Options of a `map` request.
#[derive(Debug, Clone)]
pub struct MapOptions(MapParams);

impl MapOptions {
    fn new(transport: Transport, port: u16) -> MapOptions {
        MapOptions(MapParams {
            transport,
            port,
            external_port: None,
            lifetime: None,
            mode: None,
            persist: false,
            address: None,
        })
    }
    /// Map local TCP `port`.
    pub fn tcp(port: u16) -> MapOptions {
        MapOptions::new(Transport::Tcp, port)
    }
    /// Map local UDP `port`.
    pub fn udp(port: u16) -> MapOptions {
        MapOptions::new(Transport::Udp, port)
    }
    /// End the lease after `secs` seconds.
    pub fn lifetime(mut self, secs: u32) -> Self {
        self.0.lifetime = Some(secs);
        self
    }
    /// Ask for this external port (a taken port is then a conflict).
    pub fn external_port(mut self, port: u16) -> Self {
        self.0.external_port = Some(port);
        self
    }
    /// Use only this MOD.
    pub fn mode(mut self, name: &str) -> Self {
        self.0.mode = Some(name.to_string());
        self
    }
    /// Keep the lease after this connection closes.
    pub fn persist(mut self, yes: bool) -> Self {
        self.0.persist = yes;
        self
    }
    /// Map another address (LAN-shared broker) instead of this host's.
    pub fn address(mut self, ip: IpAddr) -> Self {
        self.0.address = Some(ip);
        self
    }
}

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, ApiError>>>>>>;

/// A connection to the broker.
///
/// Leases made without [`MapOptions::persist`] belong to this connection:
/// **dropping the client releases them** (the broker unmaps them when the
/// connection closes). Keep the client alive as long as you need the port.
pub struct Client {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Pending,
    events: Mutex<Option<mpsc::Receiver<Event>>>,
    next_id: AtomicU64,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Events of a subscribed connection.
pub struct Subscription(mpsc::Receiver<Event>);

impl Subscription {
    /// The next event; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

impl Client {
    /// Connect to the broker at [`default_socket_path`].
    pub async fn connect_default() -> Result<Client, ClientError> {
        Client::connect(default_socket_path()).await
    }

    /// Connect to the broker listening on `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let (rd, wr) = UnixStream::connect(path).await?.into_split();
        Ok(Client::start(BufReader::new(rd), Box::new(wr)))
    }

    /// Connect to a LAN-shared broker's TCP listener and authenticate with
    /// `token`. A LAN client may map only its own address (unless the
    /// broker's policy says otherwise).
    pub async fn connect_lan(addr: impl ToSocketAddrs, token: &str) -> Result<Client, ClientError> {
        let (rd, mut wr) = TcpStream::connect(addr).await?.into_split();
        let mut rd = BufReader::new(rd);
        let mut hello = serde_json::json!({ "v": PROTOCOL_VERSION, "auth": token }).to_string();
        hello.push('\n');
        wr.write_all(hello.as_bytes()).await?;
        let mut line = Vec::new();
        let n = tokio::time::timeout(DEFAULT_TIMEOUT, rd.read_until(b'\n', &mut line))
            .await
            .map_err(|_| ClientError::Timeout(DEFAULT_TIMEOUT))??;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        match parse_server_line(line.trim_ascii_end()).map_err(ClientError::Protocol)? {
            ServerLine::Response(RawResponse { result: Ok(_), .. }) => {}
            ServerLine::Response(RawResponse { result: Err(e), .. }) => {
                return Err(ClientError::Api(e));
            }
            ServerLine::Event(_) => {
                return Err(ClientError::Protocol(
                    "an event before authentication".into(),
                ));
            }
        }
        Ok(Client::start(rd, Box::new(wr)))
    }

    fn start<R>(rd: R, wr: Box<dyn AsyncWrite + Send + Unpin>) -> Client
    where
        R: AsyncBufRead + Unpin + Send + 'static,
    {
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (etx, erx) = mpsc::channel(EVENT_BUFFER);
        let reader = tokio::spawn(read_loop(rd, pending.clone(), etx));
        Client {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            events: Mutex::new(Some(erx)),
            next_id: AtomicU64::new(1),
            timeout: DEFAULT_TIMEOUT,
            reader,
        }
    }

    /// Change the per-request timeout.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    async fn call<T: DeserializeOwned>(&self, op: Op) -> Result<T, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.pending.lock().unwrap().as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(ClientError::Closed),
        };
        let line = encode_request(&Request {
            v: PROTOCOL_VERSION,
            id,
            op,
        });
        self.writer.lock().await.write_all(line.as_bytes()).await?;
        let answer = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                if let Some(p) = self.pending.lock().unwrap().as_mut() {
                    p.remove(&id);
                }
                return Err(ClientError::Timeout(self.timeout));
            }
        };
        let value = answer.map_err(ClientError::Api)?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Make a local port reachable; returns the lease with its external
    /// endpoint.
    pub async fn map(&self, opts: MapOptions) -> Result<Lease, ClientError> {
        self.call(Op::Map(opts.0)).await
    }

    /// Release a lease.
    pub async fn unmap(&self, lease: u64) -> Result<Lease, ClientError> {
        self.call(Op::Unmap { lease }).await
    }

    /// This user's leases (root: all).
    pub async fn list(&self) -> Result<Vec<Lease>, ClientError> {
        #[derive(serde::Deserialize)]
        struct L {
            leases: Vec<Lease>,
        }
        self.call::<L>(Op::List).await.map(|l| l.leases)
    }

    /// The broker's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Op::Status).await
    }

    /// A diagnosis of the network; `fresh` probes now.
    pub async fn probe(&self, fresh: bool) -> Result<ProbeSummary, ClientError> {
        self.call(Op::Probe { fresh }).await
    }

    /// Receive events (mapped, renewed, lost, re-established, released)
    /// for this user's leases. Once per connection.
    pub async fn subscribe(&self) -> Result<Subscription, ClientError> {
        let rx = self
            .events
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| ClientError::Protocol("already subscribed".into()))?;
        let _: Value = self.call(Op::Subscribe).await?;
        Ok(Subscription(rx))
    }
}

async fn read_loop<R: AsyncBufRead + Unpin>(
    mut rd: R,
    pending: Pending,
    events: mpsc::Sender<Event>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match rd.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match parse_server_line(line.trim_ascii_end()) {
            Ok(ServerLine::Response(r)) => {
                let tx =
                    r.id.and_then(|id| pending.lock().unwrap().as_mut()?.remove(&id));
                if let Some(tx) = tx {
                    let _ = tx.send(r.result);
                }
            }
            Ok(ServerLine::Event(e)) => {
                let _ = events.try_send(e);
            }
            Err(_) => {} // a line we cannot read is skipped, not fatal
        }
    }
    // Closed: fail every waiting request.
    pending.lock().unwrap().take();
}
