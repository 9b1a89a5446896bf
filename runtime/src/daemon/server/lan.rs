//! The LAN listener: token authentication, with failures rate-limited per
//! source.
//!
//! A LAN client's first line is `{"v":1,"auth":"TOKEN"}`. The token must be
//! at least [`MIN_TOKEN_CHARS`] characters (a shorter one is refused even
//! if the policy lists its digest: a guessable token is no lock), and its
//! sha256 must be listed in `[lan] token_sha256`. After
//! [`MAX_FAILURES`] failures a source is refused at once, without reading
//! or hashing anything, for a back-off that doubles with each further
//! failure up to [`BACKOFF_MAX`]. The table of sources is bounded
//! ([`MAX_SOURCES`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2pbroker_client::{ApiError, ErrorCode, MAX_LINE, PROTOCOL_VERSION};
use tokio::io::{AsyncBufRead, AsyncWrite, BufReader};
use tokio::net::TcpListener;

use super::limits::{Limits, Source};
use super::lines::{self, ReadLine};
use crate::daemon::api;
use crate::daemon::broker::Broker;
use crate::daemon::leases::{LanPeer, Requester};
use crate::policy::LanSettings;

/// A LAN client must authenticate within this time.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest token accepted: 32 characters hold 128 bits even in hex, the
/// sparsest alphabet in common use (`p2pb lan token` makes 64).
pub const MIN_TOKEN_CHARS: usize = 32;
/// Failed authentications from one source before it is refused at once:
/// enough for a mistyped token or two, far too few to guess one.
pub const MAX_FAILURES: u32 = 5;
/// First back-off once a source reached [`MAX_FAILURES`]; it doubles with
/// each later failure.
pub const BACKOFF: Duration = Duration::from_secs(60);
/// Longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// A source's failures are forgotten this long after its last one (and
/// after its back-off ended).
pub const FAILURE_MEMORY: Duration = Duration::from_secs(900);
/// Sources remembered at once. When full, forgotten sources are dropped
/// first, then the one whose last failure is oldest: memory stays bounded
/// whatever the number of addresses an attacker uses.
pub const MAX_SOURCES: usize = 4096;

/// Why an authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The source failed too often; refused for this much longer.
    Blocked(Duration),
    /// No line, or not `{"v":1,"auth":"..."}`.
    Malformed,
    /// A token of this many characters: too short to be secret.
    TooShort(usize),
    /// A token whose digest the policy does not list.
    Unknown,
}

impl AuthError {
    /// The error line the client gets.
    pub fn error(&self) -> ApiError {
        match self {
            AuthError::Blocked(left) => api(
                ErrorCode::Limit,
                format!(
                    "too many failed authentications from this address; refused for {} s more",
                    left.as_secs().max(1)
                ),
            ),
            AuthError::TooShort(n) => api(
                ErrorCode::Unauthorized,
                format!(
                    "the token has {n} characters; tokens need at least {MIN_TOKEN_CHARS} (generate one with `p2pb lan token`)"
                ),
            ),
            AuthError::Malformed | AuthError::Unknown => api(
                ErrorCode::Unauthorized,
                "LAN clients must first send {\"v\":1,\"auth\":\"TOKEN\"} with a token the policy accepts",
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Failures {
    /// Whether this entry still matters at `now`.
    fn alive(&self, now: Instant) -> bool {
        let until = self.blocked_until.map_or(self.last, |b| b.max(self.last));
        now.saturating_duration_since(until) < FAILURE_MEMORY
    }
}

/// The LAN gate: accepted digests and the failure table. The digests
/// follow the policy in force ([`LanGate::set_tokens`] at each reload or
/// fleet push), and a connection whose token is no longer listed is closed
/// ([`LanGate::revoked`]).
#[derive(Debug)]
pub struct LanGate {
    hashes: std::sync::RwLock<Vec<[u8; 32]>>,
    /// The `[lan]` uid and third_party in force.
    terms: std::sync::RwLock<(u32, bool)>,
    failures: Mutex<HashMap<Source, Failures>>,
    hashed: AtomicU64,
    /// Bumped whenever the digests change.
    changed: tokio::sync::watch::Sender<u64>,
}

fn digests(token_sha256: &[String]) -> Vec<[u8; 32]> {
    token_sha256
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect()
}

impl LanGate {
    /// A gate accepting the tokens whose hex sha256 digests are listed
    /// (validated with the policy).
    pub fn new(token_sha256: &[String]) -> LanGate {
        LanGate {
            hashes: std::sync::RwLock::new(digests(token_sha256)),
            terms: std::sync::RwLock::new((65534, false)),
            failures: Mutex::new(HashMap::new()),
            hashed: AtomicU64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Accept these digests from now on (none: no LAN client at all).
    pub fn set_tokens(&self, token_sha256: &[String]) {
        *self.hashes.write().unwrap_or_else(|e| e.into_inner()) = digests(token_sha256);
        self.changed.send_modify(|g| *g += 1);
    }

    /// Take the tokens, uid and third_party of a policy's `[lan]` (none:
    /// no LAN client at all). A connection let in under other terms ends.
    pub fn set_lan(&self, lan: Option<&LanSettings>) {
        *self.terms.write().unwrap_or_else(|e| e.into_inner()) =
            lan.map_or((65534, false), |l| (l.uid, l.third_party));
        self.set_tokens(lan.map_or(&[][..], |l| &l.token_sha256));
    }

    /// The uid and third_party in force.
    pub fn terms(&self) -> (u32, bool) {
        *self.terms.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the token of digest `d` is still accepted.
    pub fn accepts(&self, d: &[u8; 32]) -> bool {
        let hashes = self.hashes.read().unwrap_or_else(|e| e.into_inner());
        hashes.iter().any(|h| h == d)
    }

    /// Resolves once the token of digest `d` is no longer accepted, or
    /// the uid and third_party a connection was let in with (`terms`)
    /// are no longer those in force.
    pub async fn revoked(&self, d: [u8; 32], terms: (u32, bool)) {
        // Subscribed before the check: a change between the two is seen.
        let mut rx = self.changed.subscribe();
        while self.accepts(&d) && self.terms() == terms {
            if rx.changed().await.is_err() {
                // The gate is gone with the daemon: never revoked.
                std::future::pending::<()>().await;
            }
        }
    }

    /// How long `source` is still refused, if it is.
    pub fn blocked(&self, source: Source, now: Instant) -> Option<Duration> {
        let f = self.failures.lock().unwrap();
        let until = f.get(&source)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Check an auth line (`None`: none came in time) from `source`.
    /// Returns the token's digest, or why not; a refusal counts as a
    /// failure, except for a source already blocked, which is refused
    /// without looking at the line.
    pub fn verify(
        &self,
        source: Source,
        line: Option<&[u8]>,
        now: Instant,
    ) -> Result<[u8; 32], AuthError> {
        if let Some(left) = self.blocked(source, now) {
            return Err(AuthError::Blocked(left));
        }
        let checked = match line.and_then(auth_token) {
            None => Err(AuthError::Malformed),
            Some(t) if t.chars().count() < MIN_TOKEN_CHARS => {
                Err(AuthError::TooShort(t.chars().count()))
            }
            Some(t) => {
                self.hashed.fetch_add(1, Ordering::Relaxed);
                let d = crate::sandbox::sha256(t.as_bytes());
                // Compare with every digest, so timing says nothing of which.
                let known = self
                    .hashes
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .fold(false, |k, h| k | ct_eq(h, &d));
                if known {
                    Ok(d)
                } else {
                    Err(AuthError::Unknown)
                }
            }
        };
        let mut f = self.failures.lock().unwrap();
        match checked {
            Ok(d) => {
                f.remove(&source);
                Ok(d)
            }
            Err(e) => {
                if let Some(blocked) = fail(&mut f, source, now) {
                    tracing::warn!(
                        "{source}: {MAX_FAILURES} or more failed LAN authentications; refused for {} s",
                        blocked.as_secs()
                    );
                }
                Err(e)
            }
        }
    }

    /// Tokens hashed so far (a blocked source costs none).
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Sources remembered.
    pub fn sources(&self) -> usize {
        self.failures.lock().unwrap().len()
    }
}

/// Count a failure of `source`; returns the back-off when it is (again)
/// blocked.
fn fail(table: &mut HashMap<Source, Failures>, source: Source, now: Instant) -> Option<Duration> {
    if !table.contains_key(&source) && table.len() >= MAX_SOURCES {
        table.retain(|_, f| f.alive(now));
        if table.len() >= MAX_SOURCES {
            let oldest = table.iter().min_by_key(|(_, f)| f.last).map(|(s, _)| *s);
            if let Some(s) = oldest {
                table.remove(&s);
            }
        }
    }
    let e = table.entry(source).or_insert(Failures {
        count: 0,
        last: now,
        blocked_until: None,
    });
    if !e.alive(now) {
        *e = Failures {
            count: 0,
            last: now,
            blocked_until: None,
        };
    }
    e.count += 1;
    e.last = now;
    let over = e.count.checked_sub(MAX_FAILURES)?;
    let backoff = BACKOFF.saturating_mul(1 << over.min(16)).min(BACKOFF_MAX);
    e.blocked_until = Some(now + backoff);
    Some(backoff)
}

/// Authenticate a LAN client: read its auth line (within [`AUTH_TIMEOUT`])
/// and answer it. Returns its token's digest, or `None` when it was
/// refused (and told why, if it can still be told).
pub async fn handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    source: Source,
    gate: &LanGate,
) -> Option<[u8; 32]>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let read = tokio::time::timeout(AUTH_TIMEOUT, lines::read_line(rd, MAX_LINE)).await;
    let line = match read {
        Ok(Ok(ReadLine::Line(l))) => Some(l),
        _ => None,
    };
    match gate.verify(source, line.as_deref(), Instant::now()) {
        Ok(d) => {
            let ok = "{\"v\":1,\"id\":null,\"ok\":true,\"result\":{}}\n";
            lines::write_one(wr, ok).await.then_some(d)
        }
        Err(e) => {
            lines::write_one(wr, &super::response(None, Err(e.error()))).await;
            None
        }
    }
}

/// Accept LAN clients until the task is dropped. A source that failed too
/// often, or holds its share of connections, is answered at once and
/// closed, before any task is spawned for it; every other connection must
/// pass [`handshake`] first.
pub async fn serve_lan(
    broker: Arc<Broker>,
    listener: TcpListener,
    lan: LanSettings,
    limits: Arc<Limits>,
) {
    let gate = Arc::new(LanGate::new(&lan.token_sha256));
    gate.set_lan(Some(&lan));
    // A reload or fleet push changes the tokens, uid and third_party live
    // (the address is bound here: it needs a restart).
    let _ = broker.lan_gate.set(gate.clone());
    // One applied between reading `lan` and the line above set no gate:
    // take what is in force now.
    gate.set_lan(broker.shared.lock().unwrap().policy.lan.as_ref());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("LAN accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let source = Source::lan(peer.ip());
        if let Some(left) = gate.blocked(source, Instant::now()) {
            let e = AuthError::Blocked(left).error();
            let _ = stream.try_write(super::response(None, Err(e)).as_bytes());
            continue;
        }
        let cap = super::caps(&broker).0;
        let slot = match limits.connect(source, cap) {
            Ok(s) => s,
            Err(r) => {
                let _ = stream.try_write(super::response(None, Err(r.error())).as_bytes());
                continue;
            }
        };
        let (broker, gate, limits) = (broker.clone(), gate.clone(), limits.clone());
        // As the policy in force says now.
        let terms = gate.terms();
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let Some(digest) = handshake(&mut rd, &mut wr, source, &gate).await else {
                return;
            };
            let owner = Requester {
                uid: terms.0,
                conn: super::next_conn(),
                lan: Some(LanPeer {
                    ip: peer.ip().to_canonical(),
                    third_party: terms.1,
                    id: lan_identity(&digest),
                }),
                pid: None,
            };
            let conn = super::Conn {
                broker,
                owner,
                fds: None,
                source,
                limits,
                _slot: slot,
            };
            // A token the policy drops ends the connection as a client that
            // leaves ends it: what it held is released.
            let revoked = async {
                gate.revoked(digest, terms).await;
                tracing::info!(
                    "{source}: its LAN token, or the [lan] uid or third_party it was let in \
                     under, is no longer in the policy; connection closed"
                );
            };
            super::connection(conn, rd, wr, revoked).await;
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

#[cfg(test)]
#[path = "lan_tests.rs"]
mod tests;
