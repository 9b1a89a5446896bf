//! The async client: one connection to the broker, requests matched to
//! responses by id, events delivered to a [`Subscription`].

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::fdrecv::{FdQueue, FdReader};
use crate::lines::read_frame;
use crate::options::MapOptions;
use crate::outbound::Outbound;
use crate::proto::framing::{Frame, LineSplitter};
use crate::proto::*;
use crate::socket::{SYSTEM_SOCKET, default_socket_path};

/// How long a request may wait for its answer by default: a `map` may walk
/// several MODs, each with its own timeouts, so this is generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered for a subscription that is not being read.
const EVENT_BUFFER: usize = 1024;
/// Longest line this client reads from the broker, newline excluded; a
/// longer one is skipped unread. The largest lines the broker writes are
/// `list` and `status` answers, about 400 bytes a lease: this holds some
/// 150,000 leases (the broker holds at most 100,000), while whatever sits
/// on the socket cannot make the client buffer without bound.
pub const MAX_BROKER_LINE: usize = 64 * 1024 * 1024;
/// How long a request whose line could not be written waits for the
/// broker's last words: a broker that refuses a connection (`limit`)
/// writes why and closes at once, and its reason beats "broken pipe".
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (no broker listening, permission, ...).
    #[error("broker socket: {0}")]
    Io(#[from] std::io::Error),
    /// The broker sent a line (or a result) this client cannot read, or
    /// the client was misused (a second [`Client::subscribe`]).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker refused or failed the request: its code, message and,
    /// when no MOD could map, each MOD's reason.
    #[error("{0}")]
    Api(ApiError),
    /// No answer within the timeout.
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    /// The connection is closed.
    #[error("the broker closed the connection")]
    Closed,
    /// The process on the socket is not a broker this client trusts: it
    /// runs as another user (someone may be squatting on the path).
    #[error(
        "the process on the broker socket runs as uid {0}, not root or this user (set P2PB_BROKER_UID if the broker runs as a dedicated user)"
    )]
    UntrustedBroker(u32),
    /// No socket path is known: no system broker, `P2PB_SOCKET` and
    /// `XDG_RUNTIME_DIR` unset (see [`crate::default_socket_path`]).
    #[error(
        "no broker socket: none at {SYSTEM_SOCKET} and XDG_RUNTIME_DIR is not set; set P2PB_SOCKET to the broker's socket (or XDG_RUNTIME_DIR for a per-user broker)"
    )]
    NoSocketPath,
}

/// Where requests are written: the local socket (which can carry a socket
/// handed to the broker) or a LAN connection.
enum Writer {
    Unix(tokio::net::unix::OwnedWriteHalf),
    Other(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Writer {
    async fn send(&mut self, line: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), ClientError> {
        match (self, fd) {
            (Writer::Unix(w), Some(fd)) => {
                crate::fdpass::send_with_fd(w.as_ref(), line, fd).await?;
            }
            (Writer::Unix(w), None) => w.write_all(line).await?,
            (Writer::Other(w), None) => w.write_all(line).await?,
            (Writer::Other(_), Some(_)) => {
                return Err(ClientError::Protocol(
                    "a socket can be handed over only on the local Unix socket".into(),
                ));
            }
        }
        Ok(())
    }
}

/// What the reader task hands a waiting request: the raw result and the
/// socket that came with it (a `connect` answer), or why the answer could
/// not be read.
type Answer = Result<(Result<Value, ApiError>, Option<OwnedFd>), ClientError>;
/// Requests waiting for their answer, by id, and whether the answer brings
/// a socket (`connect`); `None` once the connection is closed, so later
/// requests fail at once with [`ClientError::Closed`].
type Pending = Arc<Mutex<Option<HashMap<u64, (oneshot::Sender<Answer>, bool)>>>>;
/// The last error the broker sent without an id (one about the connection
/// itself, such as a `limit` on connections): what requests still waiting
/// when it closes are told.
type Farewell = Arc<Mutex<Option<ApiError>>>;

/// Where a request's line is: a line cut off mid-write (timeout, the
/// caller dropping the future, an I/O error) leaves the stream unframed.
const NOT_SENT: u8 = 0;
const WRITING: u8 = 1;
const SENT: u8 = 2;

/// Removes a request from [`Pending`] however its call ends (answer,
/// error, timeout, or the caller dropping the future), and closes the
/// connection for requests if its line was cut off.
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
    state: AtomicU8,
    /// The answer brings a socket (`connect`).
    wants_socket: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap();
        if self.state.load(Ordering::Relaxed) == WRITING {
            // Whatever is written next would continue the broken line: fail
            // every waiting request and refuse new ones.
            *pending = None;
        } else if self.wants_socket && self.state.load(Ordering::Relaxed) == SENT {
            // A `connect` given up on (timeout, dropped future) stays
            // pending: its late answer still claims the socket it brings,
            // which then closes, instead of passing for the next one's.
        } else if let Some(p) = pending.as_mut() {
            p.remove(&self.id);
        }
    }
}

/// A connection to the broker.
///
/// # Leases live as long as this connection
///
/// Leases made without [`MapOptions::persist`] belong to the connection:
/// **dropping the `Client` closes it, and the broker then releases them**
/// (and removes their mappings from the gateway). Keep the client alive
/// for as long as the port must stay reachable. A persistent lease is
/// owned by the broker until [`Client::unmap`] or its lifetime ends.
///
/// A connection that holds no lease, no subscription and no request is
/// closed by the broker after 5 minutes without a request; later calls then
/// fail with [`ClientError::Closed`]: connect again when needed.
///
/// One connection carries any number of concurrent requests: share the
/// client behind an `Arc` and call it from several tasks. A background
/// task reads the connection and routes each response to its request by
/// id, and events to the [`Subscription`].
pub struct Client {
    writer: tokio::sync::Mutex<Writer>,
    pending: Pending,
    /// The subscription's receiver until [`Client::subscribe`] takes it.
    events: Mutex<Option<mpsc::Receiver<Event>>>,
    next_id: AtomicU64,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
    farewell: Farewell,
    /// Becomes true when the reader has seen the connection close.
    closed: watch::Receiver<bool>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // The writer half closes with the struct; stopping the reader
        // drops the read half, so the socket is closed entirely.
        self.reader.abort();
    }
}

/// The events of a subscribed connection: `mapped`, `renewed`, `lost`,
/// `re-established`, `released` for the caller's leases (root: all).
///
/// Up to 1024 events wait here unread; beyond that, events are dropped
/// rather than stalling the responses on the same connection.
pub struct Subscription(mpsc::Receiver<Event>);

impl Subscription {
    /// The next event; `None` once the connection is closed (the broker
    /// went away, or the [`Client`] was dropped).
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

impl Client {
    /// Connect to the broker at [`default_socket_path`].
    pub async fn open_default() -> Result<Client, ClientError> {
        Client::open(default_socket_path()?).await
    }

    /// Connect to the broker listening on the Unix socket `path`. The
    /// broker identifies the caller by its uid (`SO_PEERCRED`), and the
    /// client checks the broker's the same way: it must run as root, as
    /// this user, or as the uid in `P2PB_BROKER_UID`, or the connection is
    /// refused ([`ClientError::UntrustedBroker`]) before anything is sent.
    pub async fn open(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        Client::open_trusting(path, &crate::fdpass::trusted_broker_uids()).await
    }

    /// [`Client::open`], trusting a broker that runs as one of `uids`.
    pub async fn open_trusting(
        path: impl AsRef<Path>,
        uids: &[u32],
    ) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).await?;
        let uid = stream.peer_cred()?.uid();
        if !uids.contains(&uid) {
            return Err(ClientError::UntrustedBroker(uid));
        }
        let (rd, wr) = stream.into_split();
        // Read with recvmsg: a `connect` answer carries its socket.
        let (rd, fds) = FdReader::new(rd);
        Ok(Client::start(
            BufReader::new(rd),
            Some(fds),
            Writer::Unix(wr),
        ))
    }

    /// Connect to a LAN-shared broker's TCP listener and authenticate with
    /// `token`. A LAN client may map only its own address (unless the
    /// broker's policy says otherwise).
    pub async fn open_lan(addr: impl ToSocketAddrs, token: &str) -> Result<Client, ClientError> {
        let (rd, mut wr) = TcpStream::connect(addr).await?.into_split();
        let mut rd = BufReader::new(rd);
        let mut hello = serde_json::json!({ "v": PROTOCOL_VERSION, "auth": token }).to_string();
        hello.push('\n');
        wr.write_all(hello.as_bytes()).await?;
        let mut splitter = LineSplitter::new(MAX_BROKER_LINE);
        let frame = tokio::time::timeout(DEFAULT_TIMEOUT, read_frame(&mut rd, &mut splitter))
            .await
            .map_err(|_| ClientError::Timeout(DEFAULT_TIMEOUT))??;
        let line = match frame {
            Some(Frame::Line(line)) => line,
            Some(Frame::TooLong) => {
                return Err(ClientError::Protocol(format!(
                    "the broker's answer to authentication is over {MAX_BROKER_LINE} bytes"
                )));
            }
            None => return Err(ClientError::Closed),
        };
        let hello = parse_response_line(&line).map_err(|why| {
            ClientError::Protocol(format!("malformed line from the broker: {why}"))
        })?;
        match hello {
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
        Ok(Client::start(rd, None, Writer::Other(Box::new(wr))))
    }

    fn start<R>(rd: R, fds: Option<Arc<FdQueue>>, wr: Writer) -> Client
    where
        R: AsyncBufRead + Unpin + Send + 'static,
    {
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (etx, erx) = mpsc::channel(EVENT_BUFFER);
        let farewell = Farewell::default();
        let (closed_tx, closed) = watch::channel(false);
        let reader = tokio::spawn(read_loop(
            rd,
            fds,
            pending.clone(),
            etx,
            farewell.clone(),
            closed_tx,
        ));
        Client {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            events: Mutex::new(Some(erx)),
            next_id: AtomicU64::new(1),
            timeout: DEFAULT_TIMEOUT,
            reader,
            farewell,
            closed,
        }
    }

    /// Change the per-request timeout (default [`DEFAULT_TIMEOUT`]). It
    /// covers sending the request and waiting for its answer. A request
    /// that times out before its line is fully sent (the broker stopped
    /// reading) leaves the connection unusable: later requests fail with
    /// [`ClientError::Closed`]; drop the client and connect again.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Send `op` and decode its result as `T`.
    async fn call<T: DeserializeOwned>(&self, op: Op) -> Result<T, ClientError> {
        self.call_with(op, None).await
    }

    /// Send `op` (with `fd` attached, on the local socket) and decode its
    /// result as `T`.
    async fn call_with<T: DeserializeOwned>(
        &self,
        op: Op,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<T, ClientError> {
        // A socket nobody asked for closes here.
        let (value, _) = self.call_raw(op, fd).await?;
        serde_json::from_value(value)
            .map_err(|e| ClientError::Protocol(format!("malformed result: {e}")))
    }

    /// Send `op` (with `fd` attached): its raw result and the socket that
    /// came with the answer, if any.
    async fn call_raw(
        &self,
        op: Op,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(Value, Option<OwnedFd>), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wants_socket = matches!(op, Op::Connect(_));
        let line = encode_request(&Request {
            v: PROTOCOL_VERSION,
            id,
            op,
        });
        if line.len() > MAX_LINE + 1 {
            // The broker would answer `too-large` without an id, which
            // could not be matched to this call: refuse it here.
            return Err(ClientError::Api(ApiError {
                code: ErrorCode::TooLarge,
                message: format!("request line over {MAX_LINE} bytes"),
                reasons: Vec::new(),
            }));
        }
        let (tx, rx) = oneshot::channel();
        let open = match self.pending.lock().unwrap().as_mut() {
            Some(p) => p.insert(id, (tx, wants_socket)).is_none(),
            None => false,
        };
        if !open {
            return Err(self.farewell().unwrap_or(ClientError::Closed));
        }
        let guard = PendingGuard {
            pending: &self.pending,
            id,
            state: AtomicU8::new(NOT_SENT),
            wants_socket,
        };
        let exchange = async {
            let mut writer = self.writer.lock().await;
            if self.pending.lock().unwrap().is_none() {
                // Closed while we waited.
                return Err(self.farewell().unwrap_or(ClientError::Closed));
            }
            guard.state.store(WRITING, Ordering::Relaxed);
            if let Err(e) = writer.send(line.as_bytes(), fd).await {
                drop(writer);
                return Err(self.farewell_or(e).await);
            }
            guard.state.store(SENT, Ordering::Relaxed);
            drop(writer);
            rx.await.map_err(|_| ClientError::Closed)?
        };
        let (answer, socket) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        Ok((answer.map_err(ClientError::Api)?, socket))
    }

    /// `e`, or the broker's reason for closing the connection if it gave
    /// one (waiting [`FAREWELL_WAIT`] at most for the reader to see it).
    async fn farewell_or(&self, e: ClientError) -> ClientError {
        let mut closed = self.closed.clone();
        let _ = tokio::time::timeout(FAREWELL_WAIT, closed.wait_for(|c| *c)).await;
        self.farewell().unwrap_or(e)
    }

    /// The broker's reason for closing the connection, if it gave one.
    fn farewell(&self) -> Option<ClientError> {
        self.farewell.lock().unwrap().clone().map(ClientError::Api)
    }

    /// Make a local port reachable; returns the lease with its external
    /// endpoint. May take several seconds while the broker tries MODs.
    pub async fn map(&self, opts: MapOptions) -> Result<Lease, ClientError> {
        self.call(Op::Map(opts.0)).await
    }

    /// Make a local port reachable, or learn that the application can
    /// hole-punch instead: where no gateway MOD maps it and the NAT's
    /// mapping is endpoint-independent (or there is no NAT), the broker
    /// spends no relay and answers [`Reached::Punch`]; behind a NAT that
    /// maps per destination it relays as `map` does. `opts` as for
    /// [`Client::map`].
    pub async fn reach(&self, opts: MapOptions) -> Result<Reached, ClientError> {
        self.call(Op::Reach(opts.0)).await
    }

    /// Make the endpoint of `socket` (a listening TCP socket or a bound UDP
    /// socket of this process) reachable. The socket goes to the broker with
    /// the request: holding it is the proof that the endpoint is this
    /// application's, whoever else listens on the port. The broker reads the
    /// address itself and keeps no copy. Only on the local socket.
    pub async fn map_socket(
        &self,
        socket: &impl AsFd,
        opts: MapOptions,
    ) -> Result<Lease, ClientError> {
        let fd = socket.as_fd();
        let (transport, local) = crate::fdpass::describe(fd)?;
        let mut p = opts.0;
        p.transport = transport;
        p.port = local.port();
        p.socket = true;
        if !local.ip().is_unspecified() {
            p.address = Some(local.ip());
        }
        self.call_with(Op::Map(p), Some(fd)).await
    }

    /// Release a lease; returns it as released.
    pub async fn unmap(&self, lease: u64) -> Result<Lease, ClientError> {
        self.call(Op::Unmap { lease }).await
    }

    /// Let `peers` reach relayed lease `lease` (a TURN relay admits only
    /// permitted peers); returns the lease with its peers.
    pub async fn permit(
        &self,
        lease: u64,
        peers: Vec<std::net::SocketAddr>,
    ) -> Result<Lease, ClientError> {
        self.call(Op::Permit { lease, peers }).await
    }

    /// This user's leases (root: all).
    pub async fn list(&self) -> Result<Vec<Lease>, ClientError> {
        self.call::<LeaseList>(Op::List).await.map(|l| l.leases)
    }

    /// The broker's status: version, policy, network, MODs, leases.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Op::Status).await
    }

    /// A diagnosis of the network and the MOD a `map` would choose;
    /// `fresh` probes now instead of reporting cached probes.
    pub async fn probe(&self, fresh: bool) -> Result<ProbeSummary, ClientError> {
        self.call(Op::Probe { fresh }).await
    }

    /// Open a TCP connection to `host`:`port` (an IP address or a DNS
    /// name) by the route the broker's policy picks for it: directly, or
    /// through a corporate proxy whose handshake a connector MOD performs.
    /// The connected socket is handed over; the broker keeps no copy and
    /// never sees the data. Only on the local socket.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Outbound, ClientError> {
        self.connect_with(ConnectParams::new(host, port)).await
    }

    /// [`Client::connect`] with every field of the request (`via` forces
    /// one of the routes the policy allows).
    pub async fn connect_with(&self, p: ConnectParams) -> Result<Outbound, ClientError> {
        let (value, socket) = self.call_raw(Op::Connect(p), None).await?;
        let connection: Connection = serde_json::from_value(value)
            .map_err(|e| ClientError::Protocol(format!("malformed result: {e}")))?;
        let socket = socket.ok_or_else(|| {
            ClientError::Protocol("the broker's connect answer came without its socket".into())
        })?;
        Outbound::new(socket, connection)
    }

    /// Receive events (mapped, renewed, lost, re-established, released)
    /// for this user's leases. Once per connection; a second call is a
    /// [`ClientError::Protocol`] error.
    pub async fn subscribe(&self) -> Result<Subscription, ClientError> {
        let rx = self
            .events
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| ClientError::Protocol("already subscribed".into()))?;
        match self.call::<Value>(Op::Subscribe).await {
            Ok(_) => Ok(Subscription(rx)),
            Err(e) => {
                // Not subscribed after all: a later call may try again.
                *self.events.lock().unwrap() = Some(rx);
                Err(e)
            }
        }
    }
}

/// Read the connection until it closes: responses to their callers by id,
/// events to the subscription.
async fn read_loop<R: AsyncBufRead + Unpin>(
    mut rd: R,
    fds: Option<Arc<FdQueue>>,
    pending: Pending,
    events: mpsc::Sender<Event>,
    farewell: Farewell,
    closed: watch::Sender<bool>,
) {
    let take = |id: Option<u64>| id.and_then(|id| pending.lock().unwrap().as_mut()?.remove(&id));
    let mut splitter = LineSplitter::new(MAX_BROKER_LINE);
    loop {
        let line = match read_frame(&mut rd, &mut splitter).await {
            Ok(Some(Frame::Line(line))) => line,
            // Its id is unknown: the request it answered, if any, times
            // out, as for any line without a readable id (below).
            Ok(Some(Frame::TooLong)) => continue,
            Ok(None) | Err(_) => break,
        };
        match parse_response_line(&line) {
            Ok(ServerLine::Response(RawResponse {
                id: None,
                result: Err(e),
            })) => *farewell.lock().unwrap() = Some(e),
            Ok(ServerLine::Response(r)) => {
                if let Some((tx, wants)) = take(r.id) {
                    // The broker sends a socket only with a successful
                    // `connect` answer, and it arrives no later than the
                    // line's first bytes (a read may carry earlier lines
                    // too): such an answer claims the oldest waiting.
                    let socket = (wants && r.result.is_ok())
                        .then(|| fds.as_ref().and_then(|q| q.take()))
                        .flatten();
                    let _ = tx.send(Ok((r.result, socket)));
                }
            }
            Ok(ServerLine::Event(e)) => {
                // Full: the application is not reading; drop, never block
                // the responses behind it.
                let _ = events.try_send(e);
            }
            Err(why) => {
                // A malformed answer fails its request now instead of at its
                // timeout; a line without a readable id is skipped.
                let id = serde_json::from_slice::<Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id")?.as_u64());
                if let Some((tx, _)) = take(id) {
                    let why = format!("malformed line from the broker: {why}");
                    let _ = tx.send(Err(ClientError::Protocol(why)));
                }
            }
        }
    }
    // Closed: fail every waiting request (with the broker's last words, if
    // any), and every later one.
    let waiting = pending.lock().unwrap().take();
    if let Some(e) = farewell.lock().unwrap().clone() {
        for (_, (tx, _)) in waiting.into_iter().flatten() {
            let _ = tx.send(Ok((Err(e.clone()), None)));
        }
    }
    let _ = closed.send(true);
}
