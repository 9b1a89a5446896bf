//! Caps on what one client may hold: open connections and requests in
//! flight, per local uid and per LAN source, and connections in all.
//!
//! A local user opening ten thousand connections gets
//! `broker.max_connections_per_client` of them; the rest are refused at
//! once with a `limit` line and closed, so the daemon's descriptors and
//! memory stay available to everyone else. All connections together stay
//! within [`connection_budget`], a share of the descriptor limit that
//! leaves room for MOD sockets, the journal and the audit log.
//!
//! Each refusal is logged once per episode (the first time a source hits
//! a cap; again only after its count fell back to zero), never once per
//! attempt: a flood must not turn into a flood of log lines.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use p2pbroker_client::{ApiError, ErrorCode};

/// Who a cap counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A local user (SO_PEERCRED).
    Uid(u32),
    /// A LAN client's address: IPv4 as is, IPv6 by its /64, because one
    /// host may use any number of addresses of its prefix.
    Lan(IpAddr),
}

impl Source {
    /// The source a LAN peer at `ip` counts as.
    pub fn lan(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Source::Lan(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Source::Lan(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Uid(u) => write!(f, "uid {u}"),
            Source::Lan(ip @ IpAddr::V6(_)) => write!(f, "LAN source {ip}/64"),
            Source::Lan(ip) => write!(f, "LAN source {ip}"),
        }
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Open connections.
    Connection,
    /// Requests in flight.
    Request,
}

/// A refused connection or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Whose.
    pub source: Source,
    /// Which cap: a source's own, or (for connections) all together.
    pub kind: Kind,
    /// Whether it is the daemon-wide connection cap.
    pub total: bool,
    /// The cap's value.
    pub cap: usize,
}

impl Refusal {
    /// A message for the client and the log.
    pub fn message(&self) -> String {
        match (self.total, self.kind) {
            (true, _) => format!(
                "the broker holds its maximum of {} client connections; try again later",
                self.cap
            ),
            (false, Kind::Connection) => format!(
                "{} has {} connections open (broker.max_connections_per_client); close one first",
                self.source, self.cap
            ),
            (false, Kind::Request) => format!(
                "{} has {} requests in flight (broker.max_requests_per_client); wait for their answers",
                self.source, self.cap
            ),
        }
    }

    /// The `limit` error a client is told.
    pub fn error(&self) -> ApiError {
        super::api(ErrorCode::Limit, self.message())
    }
}

/// The counts, as a pure table: callers pass the caps in force.
#[derive(Debug, Default)]
pub struct Counts {
    held: HashMap<(Source, Kind), usize>,
    connections: usize,
    /// Sources told about in the log, until their count drops to zero.
    logged: HashSet<(Source, Kind)>,
    total_logged: bool,
    /// Connections accepted since the heap was last handed back.
    since_trim: usize,
}

/// A burst of at least this many connections, once all of them are gone,
/// hands the freed heap back to the system: glibc keeps it otherwise (the
/// daemon bench's 1,000 `status` clients left it at ~60 MiB, idle at ~29).
pub const TRIM_AFTER: usize = 64;

impl Counts {
    /// Take one `kind` for `source` if its cap (and, for a connection,
    /// `total_cap`) allows. A refusal says whether it should be logged
    /// (the first of its episode).
    pub fn acquire(
        &mut self,
        source: Source,
        kind: Kind,
        cap: usize,
        total_cap: usize,
    ) -> Result<(), (Refusal, bool)> {
        let refusal = |total: bool, cap: usize| Refusal {
            source,
            kind,
            total,
            cap,
        };
        if kind == Kind::Connection && self.connections >= total_cap {
            let first = !std::mem::replace(&mut self.total_logged, true);
            return Err((refusal(true, total_cap), first));
        }
        // A cap below one would refuse a source that holds nothing, whose
        // log mark would then never be cleared.
        let cap = cap.max(1);
        if self.held(source, kind) >= cap {
            let first = self.logged.insert((source, kind));
            return Err((refusal(false, cap), first));
        }
        *self.held.entry((source, kind)).or_insert(0) += 1;
        if kind == Kind::Connection {
            self.connections += 1;
            self.since_trim += 1;
        }
        Ok(())
    }

    /// Give one back. True when it was the last connection of a burst of
    /// [`TRIM_AFTER`] or more: the caller hands freed memory back.
    pub fn release(&mut self, source: Source, kind: Kind, total_cap: usize) -> bool {
        if let Some(held) = self.held.get_mut(&(source, kind)) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                // Forget the source entirely: the table holds only
                // sources with something open.
                self.held.remove(&(source, kind));
                self.logged.remove(&(source, kind));
            }
            if kind == Kind::Connection {
                self.connections = self.connections.saturating_sub(1);
                if self.connections < total_cap / 2 {
                    self.total_logged = false;
                }
                if self.connections == 0 && self.since_trim >= TRIM_AFTER {
                    self.since_trim = 0;
                    return true;
                }
            }
        }
        false
    }

    /// How many `kind` `source` holds.
    pub fn held(&self, source: Source, kind: Kind) -> usize {
        self.held.get(&(source, kind)).copied().unwrap_or(0)
    }

    /// Sources (and kinds) in the table.
    pub fn sources(&self) -> usize {
        self.held.len()
    }
}

/// The daemon's counts, shared by the Unix and LAN listeners.
#[derive(Debug)]
pub struct Limits {
    counts: Mutex<Counts>,
    total: usize,
    maps: Mutex<super::map_rate::MapRate>,
}

/// One connection or request held; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    source: Source,
    kind: Kind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let trim = {
            let mut c = self.limits.counts.lock().unwrap();
            c.release(self.source, self.kind, self.limits.total)
        };
        if trim {
            hand_back_memory();
        }
    }
}

/// The least time between two hand-backs: a local user who connects in
/// bursts cannot make the broker walk its heap more often than this.
const TRIM_EVERY_MS: u64 = 10_000;

/// Monotonic milliseconds of the last hand-back (0: never).
static LAST_TRIM_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a hand-back may run at `now_ms` after one at `last_ms`.
fn trim_due(last_ms: u64, now_ms: u64) -> bool {
    last_ms == 0 || now_ms.saturating_sub(last_ms) >= TRIM_EVERY_MS
}

/// Milliseconds since the first call, from 1 (0 means never).
fn monotonic_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// Return the heap's free pages to the system, off the async threads (it
/// walks every arena: a few ms after a large burst), at most once every
/// [`TRIM_EVERY_MS`].
fn hand_back_memory() {
    use std::sync::atomic::Ordering;
    let now = monotonic_ms();
    let last = LAST_TRIM_MS.load(Ordering::Acquire);
    let claimed = trim_due(last, now)
        && LAST_TRIM_MS
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
    if !claimed {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn_blocking(|| {
            // SAFETY: malloc_trim only releases free memory of the
            // allocator's arenas; it has no preconditions.
            unsafe { libc::malloc_trim(0) };
        });
    }
}

impl Limits {
    /// Limits with at most `total` connections in all.
    pub fn new(total: usize) -> Arc<Limits> {
        Arc::new(Limits {
            counts: Mutex::new(Counts::default()),
            total,
            maps: Default::default(),
        })
    }

    /// Take one map for `source` at `per_minute` (see [`super::map_rate`]);
    /// `Err`: how long until one is free.
    pub fn take_map(&self, source: Source, per_minute: u32) -> Result<(), std::time::Duration> {
        let mut maps = self.maps.lock().unwrap();
        maps.take(source, per_minute, std::time::Instant::now())
    }

    /// Take a connection for `source` (at most `cap` for it).
    pub fn connect(self: &Arc<Self>, source: Source, cap: usize) -> Result<Slot, Refusal> {
        self.acquire(source, Kind::Connection, cap)
    }

    /// Take a request in flight for `source` (at most `cap` for it).
    pub fn request(self: &Arc<Self>, source: Source, cap: usize) -> Result<Slot, Refusal> {
        self.acquire(source, Kind::Request, cap)
    }

    fn acquire(self: &Arc<Self>, source: Source, kind: Kind, cap: usize) -> Result<Slot, Refusal> {
        let taken = self
            .counts
            .lock()
            .unwrap()
            .acquire(source, kind, cap, self.total);
        match taken {
            Ok(()) => Ok(Slot {
                limits: self.clone(),
                source,
                kind,
            }),
            Err((refusal, first)) => {
                if first {
                    tracing::warn!(
                        "refusing: {} (logged once until it clears)",
                        refusal.message()
                    );
                }
                Err(refusal)
            }
        }
    }

    /// How many `kind` `source` holds now.
    pub fn held(&self, source: Source, kind: Kind) -> usize {
        self.counts.lock().unwrap().held(source, kind)
    }
}

/// Client connections the daemon accepts in all, given its descriptor
/// limit: MOD sockets may take half ([`crate::daemon::process::mod_socket_budget`]);
/// clients get half of the rest, so the journal, the audit log, the
/// compiled-code cache and socket-table reads always find a descriptor.
pub fn connection_budget(nofile: u64) -> usize {
    usize::try_from(nofile / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 65_536)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Source = Source::Uid(1000);
    const BOB: Source = Source::Uid(1001);

    #[test]
    fn hand_backs_are_at_least_ten_seconds_apart() {
        assert!(trim_due(0, 1), "the first one");
        assert!(!trim_due(5_000, 5_001));
        assert!(!trim_due(5_000, 14_999));
        assert!(trim_due(5_000, 15_000));
    }

    #[test]
    fn the_heap_is_handed_back_once_when_a_burst_has_gone() {
        let mut c = Counts::default();
        // A lone client coming and going never triggers it.
        for _ in 0..TRIM_AFTER - 1 {
            c.acquire(ALICE, Kind::Connection, 10, 1000).unwrap();
            assert!(!c.release(ALICE, Kind::Connection, 1000));
        }
        // A burst: nothing while any of it is open, once when the last goes.
        for _ in 0..TRIM_AFTER {
            c.acquire(BOB, Kind::Connection, 1000, 1000).unwrap();
        }
        let ends: Vec<bool> = (0..TRIM_AFTER)
            .map(|_| c.release(BOB, Kind::Connection, 1000))
            .collect();
        assert_eq!(ends.iter().filter(|t| **t).count(), 1);
        assert!(ends[TRIM_AFTER - 1], "the last one");
        c.acquire(ALICE, Kind::Connection, 10, 1000).unwrap();
        assert!(!c.release(ALICE, Kind::Connection, 1000), "counted afresh");
    }

    #[test]
    fn ten_thousand_connections_from_one_user_get_the_cap_and_one_log_line() {
        let mut c = Counts::default();
        let (mut ok, mut logged) = (0, 0);
        for _ in 0..10_000 {
            match c.acquire(ALICE, Kind::Connection, 64, 16_384) {
                Ok(()) => ok += 1,
                Err((r, first)) => {
                    assert_eq!((r.cap, r.total, r.kind), (64, false, Kind::Connection));
                    logged += usize::from(first);
                }
            }
        }
        assert_eq!((ok, logged), (64, 1));
        // Another user is not affected.
        assert!(c.acquire(BOB, Kind::Connection, 64, 16_384).is_ok());
        // Requests are counted apart from connections.
        assert!(c.acquire(ALICE, Kind::Request, 2, 16_384).is_ok());
        assert!(c.acquire(ALICE, Kind::Request, 2, 16_384).is_ok());
        let (r, first) = c.acquire(ALICE, Kind::Request, 2, 16_384).unwrap_err();
        assert!(first && r.message().contains("uid 1000 has 2 requests in flight"));
        assert_eq!(r.error().code, ErrorCode::Limit);
    }

    #[test]
    fn released_slots_can_be_taken_again_and_the_table_forgets_idle_sources() {
        let mut c = Counts::default();
        c.acquire(ALICE, Kind::Connection, 1, 10).unwrap();
        assert!(c.acquire(ALICE, Kind::Connection, 1, 10).is_err());
        c.release(ALICE, Kind::Connection, 10);
        assert_eq!(c.sources(), 0);
        c.acquire(ALICE, Kind::Connection, 1, 10).unwrap();
        // A new episode is logged again.
        let (_, first) = c.acquire(ALICE, Kind::Connection, 1, 10).unwrap_err();
        assert!(first);
        // A lower cap from a reloaded policy applies to new connections.
        c.release(ALICE, Kind::Connection, 10);
        c.acquire(ALICE, Kind::Connection, 5, 10).unwrap();
        c.acquire(ALICE, Kind::Connection, 5, 10).unwrap();
        assert!(c.acquire(ALICE, Kind::Connection, 1, 10).is_err());
    }

    #[test]
    fn every_connection_counts_toward_the_daemon_wide_budget() {
        let mut c = Counts::default();
        for uid in 0..4 {
            c.acquire(Source::Uid(uid), Kind::Connection, 64, 4)
                .unwrap();
        }
        let (r, first) = c
            .acquire(
                Source::Lan("10.0.0.9".parse().unwrap()),
                Kind::Connection,
                64,
                4,
            )
            .unwrap_err();
        assert!(r.total && first, "{r:?}");
        assert!(r.message().contains("maximum of 4 client connections"));
        let (_, again) = c
            .acquire(Source::Uid(9), Kind::Connection, 64, 4)
            .unwrap_err();
        assert!(!again, "logged once");
        // Requests are not connections.
        assert!(c.acquire(Source::Uid(9), Kind::Request, 64, 4).is_ok());
    }

    #[test]
    fn an_ipv6_peer_counts_by_its_prefix() {
        let a = Source::lan("2001:db8:1:2::5".parse().unwrap());
        let b = Source::lan("2001:db8:1:2:ffff::9".parse().unwrap());
        let other = Source::lan("2001:db8:1:3::5".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "LAN source 2001:db8:1:2::/64");
        let mapped = Source::lan("::ffff:192.168.1.7".parse().unwrap());
        assert_eq!(mapped.to_string(), "LAN source 192.168.1.7");
    }

    #[test]
    fn slots_give_back_on_drop() {
        let l = Limits::new(100);
        let s1 = l.connect(ALICE, 2).unwrap();
        let _s2 = l.connect(ALICE, 2).unwrap();
        assert!(l.connect(ALICE, 2).is_err());
        drop(s1);
        assert_eq!(l.held(ALICE, Kind::Connection), 1);
        assert!(l.connect(ALICE, 2).is_ok());
    }

    #[test]
    fn the_connection_budget_is_a_quarter_of_the_descriptors() {
        assert_eq!(connection_budget(65_536), 16_384);
        assert_eq!(connection_budget(1024), 256);
        assert_eq!(connection_budget(10), 16);
        assert_eq!(connection_budget(u64::MAX), 65_536);
    }
}
