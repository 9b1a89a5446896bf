//! The status page (`p2pb daemon --http ADDR`): what `p2pb status` and
//! `p2pb probe` know, a picture of the detected topology, and live updates
//! from the event stream as server-sent events. The page is three static
//! files built into the binary; it renders with plain DOM calls and
//! `textContent` only, so nothing a lease carries (a process name, a LAN
//! client's id) is ever parsed as markup.
//!
//! It shows every lease, as root sees them: anyone who can reach ADDR
//! can read it, so it is off by default. A request whose `Host` is a name
//! other than `localhost` is refused, so a web page the operator visits
//! cannot read it through DNS rebinding.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, broadcast, mpsc};

use super::broker::Broker;
use super::http::{Body, Handler, Reply, Request};
use super::leases::Requester;

/// Event streams served at once (each holds a connection slot for as long
/// as the page is open).
pub const MAX_STREAMS: usize = 8;
/// A comment line this often keeps proxies from timing a quiet stream out
/// and finds clients that are gone.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// A stream ends after this long (the page's EventSource reconnects by
/// itself): a client that never reads cannot hold its slot for the hours
/// its socket buffers would take to fill with keepalives.
const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// How long one `/api/status` answer is served again while no lease event
/// came: with 10,000 leases it takes ~50 ms to build.
const STATUS_TTL: Duration = Duration::from_secs(1);
/// The least time between two builds even while lease events come: 10,000
/// leases renewing make hundreds of events a second, and any number of
/// open pages (or a loop of requests) must still cost a bounded number of
/// builds.
const STATUS_MIN_AGE: Duration = Duration::from_millis(200);

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// Only this origin's own files: no inline script, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; frame-ancestors 'none'";

/// Whether `host` (a `Host` header) names the server by address or as
/// localhost, which no DNS rebinding can produce.
pub fn host_allowed(host: Option<&str>) -> bool {
    let Some(h) = host else { return false };
    let name = match h.strip_prefix('[') {
        // [v6]:port
        Some(rest) => match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        },
        None => h.rsplit_once(':').map_or(h, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// The last `/api/status` body, reused within [`STATUS_TTL`] until a lease
/// event bumps the generation.
#[derive(Default)]
pub struct StatusCache {
    generation: AtomicU64,
    last: Mutex<Option<Built>>,
}

/// One built body: of which generation, when.
struct Built {
    generation: u64,
    at: Instant,
    body: Arc<Vec<u8>>,
}

impl StatusCache {
    /// Something the status shows changed: the next request builds afresh.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The body for a request at `now`: the cached one if it is younger
    /// than [`STATUS_MIN_AGE`], or of this generation and younger than
    /// [`STATUS_TTL`]; else `build()`'s (one build at a time; requests that
    /// wait for it take its result). At most one build per
    /// [`STATUS_MIN_AGE`], however many events or requests come.
    pub fn get(&self, now: Instant, build: impl FnOnce() -> Vec<u8>) -> Arc<Vec<u8>> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Relaxed);
        if let Some(b) = &*last {
            let age = now.saturating_duration_since(b.at);
            if age < STATUS_MIN_AGE || (b.generation == generation && age < STATUS_TTL) {
                return b.body.clone();
            }
        }
        let body = Arc::new(build());
        *last = Some(Built {
            generation,
            at: now,
            body: body.clone(),
        });
        body
    }
}

/// The page's handler.
pub fn handler(broker: Arc<Broker>) -> Handler {
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    let cache = Arc::new(StatusCache::default());
    let mut sub = broker.events.subscribe();
    let watched = cache.clone();
    tokio::spawn(async move {
        // Every lease event (and a lag, which hides some) invalidates.
        while !matches!(sub.recv().await, Err(broadcast::error::RecvError::Closed)) {
            watched.invalidate();
        }
    });
    Arc::new(move |req: Request| {
        let b = broker.clone();
        let streams = streams.clone();
        let cache = cache.clone();
        Box::pin(async move { answer(&b, &streams, &cache, req).await })
    })
}

async fn answer(
    b: &Arc<Broker>,
    streams: &Arc<Semaphore>,
    cache: &Arc<StatusCache>,
    req: Request,
) -> Reply {
    if !host_allowed(req.host.as_deref()) {
        return Reply::text(403, "use the address the broker listens on, or localhost\n");
    }
    let file = |ctype: &'static str, body: &'static str| {
        let mut r = Reply::bytes(200, ctype, body);
        r.headers.push(("Content-Security-Policy", CSP));
        r
    };
    match req.path.as_str() {
        "/" | "/index.html" => file("text/html; charset=utf-8", INDEX),
        "/app.js" => file("text/javascript; charset=utf-8", APP),
        "/style.css" => file("text/css; charset=utf-8", STYLE),
        "/api/status" => {
            // Built (and waited for) on a blocking thread: with 10,000
            // leases it takes tens of ms under the broker's lock and the
            // cache's, which must not stall an async worker.
            let (b, cache) = (b.clone(), cache.clone());
            let body = tokio::task::spawn_blocking(move || {
                cache.get(Instant::now(), || {
                    serde_json::to_vec(&super::server::status(&b, &root())).unwrap_or_else(|e| {
                        serde_json::json!({ "error": format!("cannot encode: {e}") })
                            .to_string()
                            .into_bytes()
                    })
                })
            })
            .await;
            match body {
                // The cached body itself: slow readers share one copy.
                Ok(body) => Reply::shared(200, "application/json", body),
                Err(_) => Reply::text(500, "the status could not be built\n"),
            }
        }
        // What the broker last saw, however old: whoever reaches the page
        // (or a web site's `<img src>`) must not make it probe the gateway.
        "/api/probe" => json(&super::server::probe_cached(b)),
        "/api/events" => match streams.clone().try_acquire_owned() {
            Ok(slot) => events(b, slot),
            Err(_) => Reply::text(503, "too many event streams open\n"),
        },
        _ => Reply::text(404, "not found\n"),
    }
}

/// What the page sees: every lease, as local root would.
fn root() -> Requester {
    Requester {
        uid: 0,
        conn: 0,
        lan: None,
        pid: None,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Reply {
    match serde_json::to_vec(v) {
        Ok(body) => Reply::bytes(200, "application/json", body),
        Err(e) => Reply::text(500, format!("cannot encode: {e}\n")),
    }
}

/// One server-sent event in its wire form.
pub fn sse(event: &str, data: &str) -> Vec<u8> {
    // `data` is one line of JSON (its own trailing newline dropped): no
    // newline inside can split the event.
    let data = data.trim_end_matches('\n');
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}

fn events(b: &Arc<Broker>, slot: tokio::sync::OwnedSemaphorePermit) -> Reply {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let mut sub = b.events.subscribe();
    tokio::spawn(async move {
        let _slot = slot;
        if tx.send(sse("hello", "{}")).await.is_err() {
            return;
        }
        let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
        while tokio::time::Instant::now() < ends {
            let chunk = tokio::select! {
                e = sub.recv() => match e {
                    Ok(e) => sse("lease", &p2pbroker_client::encode_event(&e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        sse("lagged", &format!("{{\"missed\":{n}}}"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(KEEPALIVE) => b": keepalive\n\n".to_vec(),
                _ = tokio::time::sleep_until(ends) => return,
            };
            // The connection is gone (its writer dropped the receiver).
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut r = Reply::bytes(200, "text/event-stream", Vec::new());
    r.body = Body::Stream(rx);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_localhost_are_accepted_as_host() {
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:1",
            "LOCALHOST",
            "[::1]:8080",
            "10.1.2.3:9",
        ] {
            assert!(host_allowed(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "[::1",
            "[evil]:1",
            "",
        ] {
            assert!(!host_allowed(Some(bad)), "{bad}");
        }
        assert!(!host_allowed(None), "HTTP/1.1 requires Host");
    }

    #[test]
    fn the_status_is_rebuilt_after_a_lease_event_or_a_second_but_not_faster() {
        let cache = StatusCache::default();
        let t0 = Instant::now();
        let mut builds = 0;
        let mut get = |at: Instant| {
            cache
                .get(at, || {
                    builds += 1;
                    builds.to_string().into_bytes()
                })
                .to_vec()
        };
        assert_eq!(get(t0), b"1");
        assert_eq!(get(t0 + Duration::from_millis(900)), b"1", "cached");
        assert_eq!(get(t0 + STATUS_TTL), b"2", "aged out");
        let t2 = t0 + STATUS_TTL;
        cache.invalidate();
        assert_eq!(
            get(t2 + STATUS_MIN_AGE - Duration::from_millis(1)),
            b"2",
            "events in a stream cost at most one build per STATUS_MIN_AGE"
        );
        assert_eq!(
            get(t2 + STATUS_MIN_AGE),
            b"3",
            "a lease event shows once the body is STATUS_MIN_AGE old"
        );
    }

    #[test]
    fn an_event_is_one_frame() {
        assert_eq!(
            sse("lease", "{\"a\":1}"),
            b"event: lease\ndata: {\"a\":1}\n\n"
        );
        // The client API's event lines end with a newline of their own.
        assert_eq!(
            sse("lease", "{\"a\":1}\n"),
            b"event: lease\ndata: {\"a\":1}\n\n"
        );
    }

    #[test]
    fn the_page_loads_no_script_or_style_from_anywhere_else() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(INDEX.contains("src=\"/app.js\"") && INDEX.contains("href=\"/style.css\""));
        assert!(
            !APP.contains("innerHTML"),
            "text only: lease fields come from outside"
        );
    }
}
