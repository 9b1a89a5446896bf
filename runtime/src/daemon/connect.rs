//! Outbound `connect`: the policy's `[[connect]]` rule for the destination
//! names the routes, tried in order — `direct` (the broker connects
//! itself) or a connector MOD, which performs its proxy's handshake in the
//! sandbox on a connection the broker opened. The first route that opens
//! hands its socket to the client (SCM_RIGHTS); the broker keeps no copy
//! and never sees the data. Every decision is audit-logged.
//!
//! What a local user can make the broker hold: one socket and one MOD call
//! per request in flight (the per-client request cap bounds those), each
//! for at most [`CONNECT_BUDGET`].

use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pbroker_client::{ApiError, ConnectParams, Connection, ErrorCode, ModeReason};

use super::api;
use super::broker::{Broker, now_ms};
use super::leases::Requester;
use super::selector::{self, Failure};
use crate::audit::{AuditEvent, now_rfc3339};

/// Denied `connect` requests written to the audit log per minute at most,
/// per uid (the rest are counted on that uid's next one written).
pub const DENIALS_PER_MINUTE: u32 = 60;
/// The same, all uids together.
pub const DENIALS_PER_MINUTE_ALL: u32 = 600;
use crate::policy::Policy;
use crate::policy::connect::{DIRECT, Host, rule_for};
use crate::sandbox::Mode;
use crate::sandbox::connect::TunnelError;
use crate::sandbox::wit::connector::Destination;

/// The longest a whole `connect` may take, every route included: within
/// the client's default request timeout (30 s).
pub const CONNECT_BUDGET: Duration = Duration::from_secs(25);
/// The longest one direct TCP handshake may take.
pub const DIRECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Addresses of a resolved name tried directly, at most.
const DIRECT_ADDRESSES: usize = 4;
/// Name lookups running at once, over every client: each holds a thread
/// (getaddrinfo blocks, and runs on after its caller gives up), so a flood
/// of `connect`s to names a slow resolver never answers cannot take more.
pub const LOOKUPS_MAX: usize = 8;

/// Resolve `host` on a blocking thread, at most [`LOOKUPS_MAX`] at once;
/// the permit is held until the lookup itself returns.
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    use std::net::ToSocketAddrs;
    static LOOKUPS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let sem = LOOKUPS
        .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(LOOKUPS_MAX)))
        .clone();
    let host = host.to_string();
    let resolve = async move {
        let permit = sem.acquire_owned().await.expect("never closed");
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.take(DIRECT_ADDRESSES).collect::<Vec<_>>())
        })
        .await
    };
    match tokio::time::timeout(DIRECT_TIMEOUT, resolve).await {
        Ok(Ok(Ok(a))) => Ok(a),
        Ok(Ok(Err(e))) => Err(Failure::new(
            "unreachable",
            format!("cannot resolve the name: {e}"),
        )),
        Ok(Err(_)) => Err(Failure::new("fault", "the name lookup failed")),
        Err(_) => Err(Failure::new("timeout", "resolving the name timed out")),
    }
}

/// What the policy says for one request: the rule and its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The `[[connect]]` rule, by index.
    pub rule: usize,
    /// Routes in the order to try.
    pub routes: Vec<String>,
}

/// The routes `policy` allows `uid` to reach `p`'s destination by (only
/// `p.via` when forced). Pure: the refusal names what is missing.
pub fn plan(policy: &Policy, p: &ConnectParams, uid: u32) -> Result<Plan, ApiError> {
    let host = Host::of(&p.host);
    let dest = format!("{}:{}", crate::text::escape(&p.host), p.port);
    if policy.connect.is_empty() {
        return Err(api(
            ErrorCode::Unauthorized,
            "the policy allows no outbound connect (it has no [[connect]] rule)",
        ));
    }
    let Some((rule, r)) = rule_for(&policy.connect, &host, p.port, uid) else {
        return Err(api(
            ErrorCode::Unauthorized,
            format!("no [[connect]] rule of the policy lets uid {uid} reach {dest}"),
        ));
    };
    let mut routes = r.routes(&policy.proxy_modes());
    if let Some(via) = &p.via {
        if !routes.contains(via) {
            return Err(api(
                ErrorCode::Unauthorized,
                format!(
                    "connect[{rule}], the rule for {dest}, does not route via `{}` (it allows {})",
                    crate::text::escape(via),
                    routes.join(", ")
                ),
            ));
        }
        routes = vec![via.clone()];
    }
    Ok(Plan { rule, routes })
}

impl Broker {
    /// Open a connection to `p`'s destination for `who`: the connection's
    /// record and its socket.
    pub async fn connect(
        &self,
        p: ConnectParams,
        who: &Requester,
    ) -> Result<(Connection, OwnedFd), ApiError> {
        let started = Instant::now();
        let outcome = self.connect_inner(&p, who, started).await;
        let (verdict, rule, via, reason) = match &outcome {
            Ok((rule, c, _)) => {
                let skipped = summary(&c.skipped);
                (
                    "allow",
                    Some(*rule),
                    Some(c.via.clone()),
                    (!skipped.is_empty()).then_some(skipped),
                )
            }
            Err((rule, e)) => ("deny", *rule, None, Some(e.message.clone())),
        };
        // A refusal costs its asker nothing: only so many a minute are
        // written, so they cannot rotate the MODs' decisions away.
        let mut reason = reason;
        if verdict == "deny" {
            let admitted = self
                .connect_denials
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(&format!("uid:{}", who.uid), now_ms());
            match admitted {
                None => return outcome.map(|(_, c, fd)| (c, fd)).map_err(|(_, e)| e),
                Some(0) => {}
                Some(n) => {
                    let why = reason.take().unwrap_or_default();
                    reason = Some(format!("{why} ({n} earlier denied connects not logged)"));
                }
            }
        }
        self.host.audit().event(&AuditEvent::Connect {
            time: now_rfc3339(),
            uid: who.uid,
            host: crate::text::escaped(&p.host),
            port: p.port,
            verdict,
            rule,
            via,
            reason,
        });
        outcome.map(|(_, c, fd)| (c, fd)).map_err(|(_, e)| e)
    }

    async fn connect_inner(
        &self,
        p: &ConnectParams,
        who: &Requester,
        started: Instant,
    ) -> Result<(usize, Connection, OwnedFd), (Option<usize>, ApiError)> {
        if who.lan.is_some() {
            // The socket is handed over on the local socket only.
            let e = api(
                ErrorCode::Unauthorized,
                "connect hands over a socket: only local clients may ask",
            );
            return Err((None, e));
        }
        let policy = self.shared.lock().unwrap().policy.clone();
        if super::expiry::stage(policy.expires_ms(), now_ms()) == super::expiry::Stage::Expired {
            let e = api(
                ErrorCode::PolicyExpired,
                "the policy in force has expired: no outbound connect until a valid one arrives",
            );
            return Err((None, e));
        }
        let plan = plan(&policy, p, who.uid).map_err(|e| (None, e))?;
        // Only the MODs the routes name (a policy change after this point
        // applies to the next connect).
        let modes: Vec<Option<Arc<Mode>>> = {
            let s = self.shared.lock().unwrap();
            plan.routes
                .iter()
                .map(|r| s.modes.get(r).cloned())
                .collect()
        };
        let mut skipped = Vec::new();
        for (route, mode) in plan.routes.iter().zip(&modes) {
            let left = CONNECT_BUDGET.saturating_sub(started.elapsed());
            if left.is_zero() {
                skipped.push(reason(
                    route,
                    Failure::new("timeout", "not tried: the connect's time was spent"),
                ));
                continue;
            }
            let attempt = match tokio::time::timeout(left, open(route, p, mode.as_ref())).await {
                Ok(a) => a,
                Err(_) => Err(Failure::new("timeout", "the connect's time ran out")),
            };
            match attempt {
                Ok((stream, proxy)) => {
                    let local = stream
                        .local_addr()
                        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                    let c = Connection {
                        host: p.host.clone(),
                        port: p.port,
                        via: route.clone(),
                        proxy: proxy.map(|a| a.to_string()),
                        local,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        skipped,
                    };
                    return Ok((plan.rule, c, OwnedFd::from(stream)));
                }
                Err(f) => skipped.push(reason(route, f)),
            }
        }
        let e = ApiError {
            code: ErrorCode::Unreachable,
            message: format!(
                "no route reached {}:{}: {}",
                crate::text::escape(&p.host),
                p.port,
                summary(&skipped)
            ),
            reasons: skipped,
        };
        Err((Some(plan.rule), e))
    }
}

fn reason(route: &str, f: Failure) -> ModeReason {
    ModeReason {
        mode: route.to_string(),
        kind: f.kind.to_string(),
        reason: f.reason,
    }
}

fn summary(reasons: &[ModeReason]) -> String {
    reasons
        .iter()
        .map(|r| format!("{}: {} ({})", r.mode, r.kind, r.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Open one route: the connected socket (blocking mode) and, for a MOD's
/// route, its proxy.
pub(crate) async fn open(
    route: &str,
    p: &ConnectParams,
    mode: Option<&Arc<Mode>>,
) -> Result<(std::net::TcpStream, Option<SocketAddr>), Failure> {
    if route == DIRECT {
        return direct(&p.host, p.port).await.map(|s| (s, None));
    }
    let Some(mode) = mode else {
        return Err(Failure::new(
            "unavailable",
            "the MOD is not loaded (`p2pb status` lists refused MODs and why)",
        ));
    };
    if !mode.connects() {
        return Err(Failure::new(
            "unavailable",
            "the MOD exports no connector (contract 0.1.2)",
        ));
    }
    let proxy = mode.proxy().ok();
    let to = Destination {
        host: p
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: p.port,
    };
    match mode.tunnel(to).await {
        Ok((stream, _report)) => Ok((stream, proxy)),
        Err(e) => Err(tunnel_failure(&e)),
    }
}

/// A tunnel error as a route's reason.
pub fn tunnel_failure(e: &TunnelError) -> Failure {
    match e {
        TunnelError::NoProxy(_) => Failure::new("config", e.to_string()),
        TunnelError::Denied(_) => Failure::new("denied", e.to_string()),
        TunnelError::Connect(..) => Failure::new("unreachable", e.to_string()),
        TunnelError::Handshake(c) => selector::failure(c),
    }
}

/// The broker's own connection: an IP literal, or each of a name's first
/// addresses in turn, each within [`DIRECT_TIMEOUT`].
async fn direct(host: &str, port: u16) -> Result<std::net::TcpStream, Failure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => lookup(bare, port).await?,
    };
    let mut last = String::from("the name has no address");
    for a in addrs {
        match tokio::time::timeout(DIRECT_TIMEOUT, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                return s
                    .into_std()
                    .and_then(|s| s.set_nonblocking(false).map(|()| s))
                    .map_err(|e| Failure::new("fault", e.to_string()));
            }
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: no answer within {}s", DIRECT_TIMEOUT.as_secs()),
        }
    }
    Err(Failure::new("unreachable", last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        Policy::parse(&format!(
            "version = 1\n\
             [[services.proxies]]\nmode = \"http-connect\"\naddress = \"172.16.0.1:3128\"\n\
             [[services.proxies]]\nmode = \"socks5\"\naddress = \"172.16.0.1:1080\"\n\
             [modes.http-connect]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n\
             [modes.socks5]\ngrants = [\"tcp:connect@proxy:1-65535\"]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_rule_names_the_routes_and_a_forced_one_must_be_among_them() {
        let p = policy(
            "[[connect]]\nto = [\"10.0.0.0/8\"]\nvia = [\"direct\"]\n\
             [[connect]]\nto = [\"*\"]\nports = \"1-1023\"\n",
        );
        let req = |host: &str, port, via: Option<&str>| ConnectParams {
            via: via.map(String::from),
            ..ConnectParams::new(host, port)
        };
        assert_eq!(
            plan(&p, &req("10.1.1.1", 8080, None), 1000).unwrap(),
            Plan {
                rule: 0,
                routes: vec!["direct".into()]
            }
        );
        let pl = plan(&p, &req("peer.example", 443, None), 1000).unwrap();
        assert_eq!(
            (pl.rule, pl.routes),
            (1, vec!["http-connect".into(), "socks5".into()])
        );
        let pl = plan(&p, &req("peer.example", 443, Some("socks5")), 1000).unwrap();
        assert_eq!(pl.routes, vec!["socks5".to_string()]);

        let e = plan(&p, &req("peer.example", 443, Some("direct")), 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(
            e.message.contains("does not route via `direct`"),
            "{}",
            e.message
        );
        let e = plan(&p, &req("peer.example", 8080, None), 1000).unwrap_err();
        assert!(
            e.message.contains("lets uid 1000 reach peer.example:8080"),
            "{}",
            e.message
        );
        let e = plan(&policy(""), &req("10.1.1.1", 80, None), 0).unwrap_err();
        assert!(e.message.contains("no [[connect]] rule"), "{}", e.message);
    }

    #[test]
    fn a_refusal_escapes_what_the_client_sent() {
        let p = policy("[[connect]]\nto = [\"*\"]\n");
        let mut r = ConnectParams::new("peer.example", 443);
        r.via = Some("x\u{1b}[2J".into());
        let e = plan(&p, &r, 0).unwrap_err();
        assert!(!e.message.contains('\u{1b}'), "{}", e.message);
    }

    #[tokio::test]
    async fn a_closed_port_and_an_unloaded_mod_are_reasons_not_hangs() {
        // A port nobody listens on, on loopback: refused at once.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let f = direct("127.0.0.1", port).await.unwrap_err();
        assert_eq!(f.kind, "unreachable");
        assert!(
            f.reason.contains(&format!("127.0.0.1:{port}")),
            "{}",
            f.reason
        );
        // And one that listens is reached, in blocking mode for the client.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = direct("127.0.0.1", l.local_addr().unwrap().port())
            .await
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
        // A name is resolved (here from the hosts file) and its addresses
        // tried in turn.
        let s = direct("localhost", l.local_addr().unwrap().port())
            .await
            .unwrap();
        assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
        let p = ConnectParams::new("127.0.0.1", 1);
        let f = open("socks5", &p, None).await.unwrap_err();
        assert!(f.reason.contains("not loaded"), "{}", f.reason);
    }
}
