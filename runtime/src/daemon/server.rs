//! The client API server: newline-delimited JSON on a Unix socket, the
//! peer's uid from SO_PEERCRED. Each connection has a reader (requests run
//! as their own tasks, so a slow `map` does not block `list`) and a writer
//! fed by a channel (responses and events never interleave mid-line).
//!
//! Bad input gets a JSON error and the connection lives on; a line over
//! [`MAX_LINE`] is answered `too-large` and skipped up to its newline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use p2pbroker_client::framing::{Frame, LineSplitter};
use p2pbroker_client::{
    ApiError, ErrorCode, Event, MAX_LINE, NetworkView, Op, PROTOCOL_VERSION, PolicyStatus,
    Response, ResultBody, Status, encode_event, encode_response, parse_request, read_frame,
};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, mpsc};

use crate::policy::LanSettings;

use super::api;
use super::broker::Broker;
use super::fdpass::{FdQueue, FdReader};
use super::leases::{LanPeer, Requester};
use super::views;

/// Requests of one connection running at once; more wait (backpressure).
const PER_CONN_PARALLEL: usize = 16;
/// Lines queued for a slow reader before its events are dropped.
const WRITE_QUEUE: usize = 1024;
/// How long a closing connection's in-flight requests may finish, so a map
/// completing after the close is still released with the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Bind the API socket: refuse if another broker answers on it, replace a
/// stale file, and open it to every local user (the policy's access rules
/// decide what each uid may do).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another broker is already listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// Connection ids, shared by the Unix and LAN listeners.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
/// A LAN client must authenticate within this time.
const LAN_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until the task is dropped.
pub async fn serve(broker: Arc<Broker>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(cred) = stream.peer_cred() else {
            continue;
        };
        let owner = Requester {
            uid: cred.uid(),
            conn: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            lan: None,
        };
        let (rd, wr) = stream.into_split();
        let (rd, fds) = FdReader::new(rd);
        tokio::spawn(connection(
            broker.clone(),
            BufReader::new(rd),
            wr,
            owner,
            Some(fds),
        ));
    }
}

/// Accept LAN clients until the task is dropped. Each must send
/// `{"v":1,"auth":"TOKEN"}` first; a token whose sha256 the policy lists
/// is answered `{"v":1,"id":null,"ok":true,"result":{}}`, anything else
/// `unauthorized` and the connection is closed.
pub async fn serve_lan(broker: Arc<Broker>, listener: TcpListener, lan: LanSettings) {
    let hashes: Arc<Vec<[u8; 32]>> = Arc::new(
        lan.token_sha256
            .iter()
            .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
            .collect(),
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("LAN accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (broker, hashes, lan) = (broker.clone(), hashes.clone(), lan.clone());
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let verdict =
                tokio::time::timeout(LAN_AUTH_TIMEOUT, read_line(&mut rd, MAX_LINE)).await;
            let token = match verdict {
                Ok(Ok(ReadLine::Line(l))) => auth_token(&l),
                _ => None,
            };
            let digest = token
                .map(|t| crate::sandbox::sha256(t.as_bytes()))
                .filter(|d| hashes.iter().any(|h| ct_eq(h, d)));
            let Some(digest) = digest else {
                tracing::warn!("LAN client {peer}: authentication failed");
                let e = api(
                    ErrorCode::Unauthorized,
                    "LAN clients must first send {\"v\":1,\"auth\":\"TOKEN\"} with a token the policy accepts",
                );
                let _ = wr.write_all(response(None, Err(e)).as_bytes()).await;
                return;
            };
            let ok = "{\"v\":1,\"id\":null,\"ok\":true,\"result\":{}}\n";
            if wr.write_all(ok.as_bytes()).await.is_err() {
                return;
            }
            let owner = Requester {
                uid: lan.uid,
                conn: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
                lan: Some(LanPeer {
                    ip: peer.ip().to_canonical(),
                    third_party: lan.third_party,
                    id: lan_identity(&digest),
                }),
            };
            connection(broker, rd, wr, owner, None).await;
        });
    }
}

/// A LAN client's identity: the first 12 hex digits of its token's
/// sha256 (the policy lists the digests, so an operator can tell which
/// token a lease belongs to; the token itself is never shown).
pub fn lan_identity(digest: &[u8; 32]) -> String {
    format!("lan-{}", hex::encode(&digest[..6]))
}

/// The token of an auth line `{"v":1,"auth":"..."}`.
fn auth_token(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Auth {
        v: u32,
        auth: String,
    }
    let a: Auth = serde_json::from_slice(line).ok()?;
    (a.v == PROTOCOL_VERSION).then_some(a.auth)
}

/// Compare digests in constant time (no early exit on the first
/// difference), so response timing says nothing about a token.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadLine {
    /// A complete line (without its newline).
    Line(Vec<u8>),
    /// A line longer than the limit, consumed up to its newline.
    TooLong,
    /// End of stream.
    Eof,
}

/// Read one line of at most `max` bytes without buffering more than that.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<ReadLine> {
    let mut splitter = LineSplitter::new(max);
    Ok(match read_frame(r, &mut splitter).await? {
        Some(Frame::Line(line)) => ReadLine::Line(line),
        Some(Frame::TooLong) => ReadLine::TooLong,
        None => ReadLine::Eof,
    })
}

fn response(id: Option<u64>, body: Result<ResultBody, ApiError>) -> String {
    encode_response(&Response {
        v: PROTOCOL_VERSION,
        id,
        body,
    })
}

async fn connection<R, W>(
    broker: Arc<Broker>,
    mut reader: R,
    mut wr: W,
    owner: Requester,
    fds: Option<Arc<FdQueue>>,
) where
    R: AsyncBufRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<String>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(PER_CONN_PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    let mut subscribed = None;
    loop {
        let line = match read_line(&mut reader, MAX_LINE).await {
            Ok(ReadLine::Line(l)) => l,
            Ok(ReadLine::TooLong) => {
                let e = api(
                    ErrorCode::TooLarge,
                    format!("request line longer than {MAX_LINE} bytes"),
                );
                let _ = tx.send(response(None, Err(e))).await;
                continue;
            }
            Ok(ReadLine::Eof) | Err(_) => break,
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
                let _ = tx.send(response(e.id, Err(err))).await;
                continue;
            }
        };
        if let Op::Subscribe = req.op {
            if subscribed.is_none() {
                subscribed = Some(tokio::spawn(forward_events(
                    broker.events.subscribe(),
                    tx.clone(),
                    owner.clone(),
                )));
            }
            let _ = tx
                .send(response(Some(req.id), Ok(ResultBody::Subscribed)))
                .await;
            continue;
        }
        // Finished requests are reaped as we go: a JoinSet keeps each
        // finished task (and its future's memory) until it is joined.
        while tasks.try_join_next().is_some() {}
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (b, tx2, who) = (broker.clone(), tx.clone(), owner.clone());
        // A socket handed over with this request is claimed now, in line
        // order, not when the task gets to run.
        let passed = match &req.op {
            Op::Map(p) if p.socket => fds.as_ref().and_then(|q| q.take()),
            _ => None,
        };
        tasks.spawn(async move {
            let body = dispatch(&b, req.op, &who, passed).await;
            let _ = tx2.send(response(Some(req.id), body)).await;
            drop(permit);
        });
    }
    // Let in-flight requests finish so a lease they create is released
    // with the connection, not orphaned.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if let Some(s) = subscribed {
        s.abort();
    }
    drop(tx);
    writer.abort();
    broker.connection_closed(owner.conn).await;
}

async fn forward_events(
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    tx: mpsc::Sender<String>,
    who: Requester,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(e) if who.sees(e.lease.owner_uid, e.lease.lan_client.as_deref()) => {
                // A full queue means a reader that does not read: drop the
                // event rather than stall every other subscriber.
                if tx.try_send(encode_event(&e)).is_err() && tx.is_closed() {
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
        Op::Unmap { lease } => b.unmap(lease, owner).await.map(ResultBody::Lease),
        Op::List => Ok(ResultBody::Leases(b.list(owner))),
        Op::Status => Ok(ResultBody::Status(Box::new(status(b, owner)))),
        Op::Probe { fresh } => Ok(ResultBody::Probe(Box::new(probe(b, fresh).await))),
        Op::Subscribe => Ok(ResultBody::Subscribed),
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
    let probes = b.probes(fresh).await;
    let s = b.shared.lock().unwrap();
    let (profile, order) = s.policy.order_for(&s.net);
    let order: Vec<String> = order
        .into_iter()
        .filter(|m| s.modes.contains_key(m))
        .collect();
    views::summary(&probes, &order, &profile, s.net.gateways.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<ReadLine> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        for _ in 0..16 {
            let l = read_line(&mut r, max).await.unwrap();
            let eof = l == ReadLine::Eof;
            out.push(l);
            if eof {
                break;
            }
        }
        out
    }

    #[tokio::test]
    async fn long_lines_are_skipped_whole_and_the_stream_goes_on() {
        let got = lines(b"ab\n0123456789\ncd\nlast", 5).await;
        assert_eq!(
            got,
            vec![
                ReadLine::Line(b"ab".to_vec()),
                ReadLine::TooLong,
                ReadLine::Line(b"cd".to_vec()),
                ReadLine::Line(b"last".to_vec()),
                ReadLine::Eof
            ]
        );
        assert_eq!(lines(b"", 5).await, vec![ReadLine::Eof]);
        assert_eq!(
            lines(b"123456", 5).await,
            vec![ReadLine::TooLong, ReadLine::Eof]
        );
    }
}
