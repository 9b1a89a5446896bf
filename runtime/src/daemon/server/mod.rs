//! The client API server: newline-delimited JSON on a Unix socket, the
//! peer's uid from SO_PEERCRED, and optionally a LAN listener ([`lan`]).
//! Each connection has a reader (requests run as their own tasks, so a
//! slow `map` does not block `list`) and a writer fed by a channel
//! (responses and events never interleave mid-line).
//!
//! Bad input gets a JSON error and the connection lives on; a line over
//! [`MAX_LINE`] is answered `too-large` and skipped up to its newline.
//! What a client may hold is bounded: connections and requests in flight
//! per client ([`limits`]), time without a request, to finish a line and
//! to take an answer ([`lines`]).

pub mod lan;
pub mod limits;
pub mod lines;
pub mod map_rate;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use p2pbroker_client::{
    ApiError, ErrorCode, Event, MAX_LINE, NetworkView, Op, PROTOCOL_VERSION, PolicyStatus,
    Response, ResultBody, Status, encode_event, encode_response, parse_request,
};
use tokio::io::{AsyncBufRead, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use super::api;
use super::broker::Broker;
use super::fdpass::{FdQueue, FdReader};
use super::leases::Requester;
use super::views;
use limits::{Limits, Slot, Source};
use lines::{Next, Out, ReadLine, WriteEnd};

pub use lan::{lan_identity, serve_lan};
pub use socket::{bind, unbind};

/// Requests of one connection running at once; more wait (backpressure).
const PER_CONN_PARALLEL: usize = 16;
/// Lines queued for a slow reader before its events are dropped.
const WRITE_QUEUE: usize = 1024;
/// How long a closing connection's in-flight requests may finish, so a map
/// completing after the close is still released with the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Connection ids, shared by the Unix and LAN listeners.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn next_conn() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// The per-client caps in force: connections, requests in flight.
fn caps(b: &Broker) -> (usize, usize) {
    let s = b.shared.lock().unwrap();
    let p = &s.policy.broker;
    let n = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
    (
        n(p.max_connections_per_client),
        n(p.max_requests_per_client),
    )
}

/// Accept connections until the task is dropped. A uid over its
/// connection cap (or a daemon at its total) is answered `limit` at once
/// and closed, without a task.
pub async fn serve(broker: Arc<Broker>, listener: UnixListener, limits: Arc<Limits>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors (EMFILE) among others: wait for some.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(cred) = stream.peer_cred() else {
            continue;
        };
        let source = Source::Uid(cred.uid());
        let slot = match limits.connect(source, caps(&broker).0) {
            Ok(s) => s,
            Err(r) => {
                // A fresh socket's buffer is empty: a short line fits.
                let _ = stream.try_write(response(None, Err(r.error())).as_bytes());
                continue;
            }
        };
        let owner = Requester {
            uid: cred.uid(),
            conn: next_conn(),
            lan: None,
            pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
        };
        let (rd, wr) = stream.into_split();
        let (rd, fds) = FdReader::new(rd);
        let conn = Conn {
            broker: broker.clone(),
            owner,
            fds: Some(fds),
            source,
            limits: limits.clone(),
            _slot: slot,
        };
        tokio::spawn(connection(
            conn,
            BufReader::new(rd),
            wr,
            std::future::pending(),
        ));
    }
}

fn response(id: Option<u64>, body: Result<ResultBody, ApiError>) -> String {
    encode_response(&Response {
        v: PROTOCOL_VERSION,
        id,
        body,
    })
}

/// One accepted connection.
struct Conn {
    broker: Arc<Broker>,
    owner: Requester,
    /// Sockets handed over (local connections only).
    fds: Option<Arc<FdQueue>>,
    /// Whom its caps count against.
    source: Source,
    limits: Arc<Limits>,
    /// Its place under the connection caps, held until it ends.
    _slot: Slot,
}

impl Conn {
    /// Whether a lease made on this connection lives (it must stay open).
    fn holds_leases(&self) -> bool {
        let s = self.broker.shared.lock().unwrap();
        !s.table.of_connection(self.owner.conn).is_empty()
    }
}

/// What a connection is running.
#[derive(Default)]
struct Running {
    tasks: JoinSet<()>,
    subscribed: Option<JoinHandle<()>>,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    Closed,
    Idle,
    Slow,
    Writer(WriteEnd),
    /// What let the client in no longer does (a revoked LAN token).
    Revoked,
}

/// Serve one client until it leaves, stops reading, idles, or `revoked`
/// resolves; then the usual end: requests in flight get their grace, the
/// subscription and writer stop, and what the client held is released.
async fn connection<R, W>(
    c: Conn,
    mut reader: R,
    wr: W,
    revoked: impl std::future::Future<Output = ()>,
) where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: lines::LineSink + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Out>(WRITE_QUEUE);
    let mut writer = tokio::spawn(lines::write_lines(wr, rx));
    let mut running = Running::default();
    // A writer that stops (its client does not read) ends the connection.
    let end = tokio::select! {
        end = read_requests(&c, &mut reader, &tx, &mut running) => end,
        w = &mut writer => End::Writer(w.unwrap_or(WriteEnd::Failed)),
        _ = revoked => End::Revoked,
    };
    match end {
        End::Closed | End::Writer(WriteEnd::Done) => {}
        other => tracing::info!("closing {}'s connection: {other:?}", c.owner.describe()),
    }
    // Let in-flight requests finish so a lease they create is released
    // with the connection, not orphaned.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while running.tasks.join_next().await.is_some() {}
    })
    .await;
    // Past the grace, requests still running finish on their own rather
    // than be aborted: an unmap cut off after its release began would
    // leave its lease marked busy, never retried. Each still holds its
    // request slot, and each is bounded by its MOD's call timeout.
    running.tasks.detach_all();
    if let Some(s) = running.subscribed {
        s.abort();
    }
    drop(tx);
    writer.abort();
    c.broker.connection_closed(c.owner.conn).await;
}

/// Read and start requests until the connection ends.
async fn read_requests<R>(
    c: &Conn,
    reader: &mut R,
    tx: &mpsc::Sender<Out>,
    running: &mut Running,
) -> End
where
    R: AsyncBufRead + Unpin,
{
    let permits = Arc::new(Semaphore::new(PER_CONN_PARALLEL));
    loop {
        let busy = || {
            // Finished requests are reaped as we go: a JoinSet keeps each
            // finished task (and its future's memory) until it is joined.
            while running.tasks.try_join_next().is_some() {}
            !running.tasks.is_empty() || running.subscribed.is_some() || c.holds_leases()
        };
        let line = match lines::next_line(reader, MAX_LINE, busy).await {
            Ok(Next::Read(ReadLine::Line(l))) => l,
            Ok(Next::Read(ReadLine::TooLong)) => {
                let e = api(
                    ErrorCode::TooLarge,
                    format!("request line longer than {MAX_LINE} bytes"),
                );
                let _ = tx.send(response(None, Err(e)).into()).await;
                continue;
            }
            Ok(Next::Read(ReadLine::Eof)) | Err(_) => return End::Closed,
            Ok(Next::Idle) => return End::Idle,
            Ok(Next::Slow) => return End::Slow,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req = match parse_request(&line) {
            Ok(r) => r,
            Err(e) => {
                let err = ApiError {
                    code: e.code,
                    message: e.message,
                    reasons: Vec::new(),
                };
                let _ = tx.send(response(e.id, Err(err)).into()).await;
                continue;
            }
        };
        if let Op::Subscribe = req.op {
            if running.subscribed.is_none() {
                running.subscribed = Some(tokio::spawn(forward_events(
                    c.broker.events.subscribe(),
                    tx.clone(),
                    c.owner.clone(),
                )));
            }
            let _ = tx
                .send(response(Some(req.id), Ok(ResultBody::Subscribed)).into())
                .await;
            continue;
        }
        while running.tasks.try_join_next().is_some() {}
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        // A socket arrives no later than the first bytes of its line (a
        // read may also carry the lines before it), so when a line that
        // names one is complete its socket waits in the queue: each such
        // line claims the oldest, in line order, now rather than when its
        // task runs (and it is closed if the request is refused). Sockets
        // no line claims wait, at most QUEUED_MAX, until the connection
        // ends: they are this client's own, so a mismatch harms only it.
        let passed = match &req.op {
            Op::Map(p) | Op::Reach(p) if p.socket => c.fds.as_ref().and_then(|q| q.take()),
            _ => None,
        };
        if matches!(req.op, Op::Map(_) | Op::Reach(_)) {
            let per_minute = c
                .broker
                .shared
                .lock()
                .unwrap()
                .policy
                .broker
                .max_maps_per_minute;
            if let Err(wait) = c.limits.take_map(c.source, per_minute) {
                let e = api(
                    ErrorCode::Limit,
                    format!(
                        "{} asked for more than {per_minute} maps a minute \
                         (broker.max_maps_per_minute); try again in {} s",
                        c.source,
                        wait.as_secs() + 1
                    ),
                );
                let _ = tx.send(response(Some(req.id), Err(e)).into()).await;
                continue;
            }
        }
        let slot = match c.limits.request(c.source, caps(&c.broker).1) {
            Ok(s) => s,
            Err(r) => {
                let _ = tx.send(response(Some(req.id), Err(r.error())).into()).await;
                continue;
            }
        };
        let (b, tx2, who) = (c.broker.clone(), tx.clone(), c.owner.clone());
        let c_local = c.fds.is_some();
        running.tasks.spawn(async move {
            let out = match req.op {
                // The connected socket rides with its answer.
                Op::Connect(p) if c_local => match b.connect(p, &who).await {
                    Ok((conn, fd)) => Out {
                        line: response(Some(req.id), Ok(ResultBody::Connected(Box::new(conn)))),
                        fd: Some(fd),
                    },
                    Err(e) => response(Some(req.id), Err(e)).into(),
                },
                op => response(Some(req.id), dispatch(&b, op, &who, passed).await).into(),
            };
            let _ = tx2.send(out).await;
            drop((permit, slot));
        });
    }
}

async fn forward_events(
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    tx: mpsc::Sender<Out>,
    who: Requester,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(e) if who.sees(e.lease.owner_uid, e.lease.lan_client.as_deref()) => {
                // A full queue means a reader that does not read: drop the
                // event rather than stall every other subscriber.
                if tx.try_send(encode_event(&e).into()).is_err() && tx.is_closed() {
                    return;
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => tracing::warn!("a subscriber missed {n} events"),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Run one request (`passed`: the socket handed over with it, if any).
pub async fn dispatch(
    b: &Arc<Broker>,
    op: Op,
    owner: &Requester,
    passed: Option<std::os::fd::OwnedFd>,
) -> Result<ResultBody, ApiError> {
    match op {
        Op::Map(p) => b.map(p, owner.clone(), passed).await.map(ResultBody::Lease),
        Op::Reach(p) => b
            .reach(p, owner.clone(), passed)
            .await
            .map(|r| ResultBody::Reached(Box::new(r))),
        Op::Unmap { lease } => b.unmap(lease, owner).await.map(ResultBody::Lease),
        Op::Permit { lease, peers } => b.permit(lease, peers, owner).await.map(ResultBody::Lease),
        Op::List => Ok(ResultBody::Leases(b.list(owner))),
        Op::Status => {
            // Off the async workers: 10,000 leases take a while under the
            // broker's lock.
            let (b, owner) = (b.clone(), owner.clone());
            tokio::task::spawn_blocking(move || status(&b, &owner))
                .await
                .map(|s| ResultBody::Status(Box::new(s)))
                .map_err(|e| api(ErrorCode::Internal, format!("status failed: {e}")))
        }
        Op::Probe { fresh } => Ok(ResultBody::Probe(Box::new(probe(b, fresh).await))),
        Op::Subscribe => Ok(ResultBody::Subscribed),
        // Answered in `read_requests` on a local connection, which can
        // carry the socket; a LAN connection cannot.
        Op::Connect(_) => Err(api(
            ErrorCode::Unauthorized,
            "connect hands over a socket: only local clients may ask",
        )),
    }
}

/// `status`: MODs with their latest probe, leases, network, policy.
pub fn status(b: &Broker, owner: &Requester) -> Status {
    let now = super::broker::now_ms();
    let (version, error, root_warning) = match b.trust.lock().unwrap().as_ref() {
        Some(t) => (
            (t.seen.policy_serial > 0).then_some(t.seen.policy_serial),
            t.error.clone(),
            super::expiry::root_warning(&t.root, now),
        ),
        None => (None, None, None),
    };
    let source = b.policy_source.lock().unwrap().clone();
    let s = b.shared.lock().unwrap();
    let expires_ms = s.policy.expires_ms();
    Status {
        broker_version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
        uptime_s: b.started.elapsed().as_secs(),
        policy: PolicyStatus {
            source,
            version,
            error,
            expires_at: expires_ms.map(|e| e / 1000),
            expired: super::expiry::stage(expires_ms, now) == super::expiry::Stage::Expired,
            // The policy's own expiry first: it is what refuses maps.
            warnings: super::expiry::policy_warning(expires_ms, now)
                .into_iter()
                .chain(root_warning)
                .chain(
                    s.mode_notes
                        .iter()
                        .map(|n| crate::text::escape_controls(n).into_owned()),
                )
                .collect(),
        },
        network: NetworkView {
            gateways: s.net.gateways.clone(),
            addresses: s
                .net
                .addresses
                .iter()
                .map(|a| format!("{}/{} ({})", a.address, a.prefix_len, a.interface))
                .collect(),
        },
        modes: s
            .modes
            .values()
            .map(|m| p2pbroker_client::ModeStatus {
                name: m.name().to_string(),
                sha256: m.sha256().to_string(),
                version: m.info().version.clone(),
                probe: s.probes.get(m.name()).map(views::probe),
            })
            .collect(),
        leases: s.table.visible(owner).map(views::lease).collect(),
        refused: s
            .load_errors
            .iter()
            .map(|(file, reason)| p2pbroker_client::RefusedMod {
                file: file.clone(),
                reason: reason.clone(),
            })
            .collect(),
    }
}

/// `probe`: every MOD's probe and which one would be chosen, and why.
pub async fn probe(b: &Broker, fresh: bool) -> p2pbroker_client::ProbeSummary {
    let (probes, nat) = tokio::join!(b.probes(fresh), b.nat(fresh));
    summary(b, &probes, nat.as_ref())
}

/// `probe` from what the broker last saw, however old, without probing:
/// for readers (the status page) that must not make it reach the gateway.
pub fn probe_cached(b: &Broker) -> p2pbroker_client::ProbeSummary {
    let probes = b.shared.lock().unwrap().probes.clone();
    summary(b, &probes, b.nat_cached().as_ref())
}

fn summary(
    b: &Broker,
    probes: &std::collections::BTreeMap<String, super::selector::Probe>,
    nat: Option<&super::nat::NatSeen>,
) -> p2pbroker_client::ProbeSummary {
    let s = b.shared.lock().unwrap();
    let (profile, order) = s.policy.order_for(&s.net);
    let order: Vec<String> = order
        .into_iter()
        .filter(|m| s.modes.contains_key(m))
        .collect();
    views::summary(probes, &order, &profile, s.net.gateways.clone(), nat, |m| {
        s.modes.get(m).is_some_and(|x| x.relays())
    })
}
