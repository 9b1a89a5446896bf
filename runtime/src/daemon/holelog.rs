//! The hole log: one JSON line per lease event (mapped, renewed, lost,
//! re-established, released, refused, and `punch`: a reach answered with
//! no hole) saying who opened which hole, through
//! which MOD, under which policy, and why — in the shape of OCSF's Network
//! Activity class (4001) so a SIEM ingests it; the fields are documented in
//! docs/operations.md. The record is built by a pure function
//! ([`record`]); [`HoleLog`] only appends and rotates by size.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The file in the state folder.
pub const FILE: &str = "holes.jsonl";
/// Default size at which the file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of rotated files kept (`holes.jsonl.1` is the newest).
pub const DEFAULT_KEEP: u32 = 5;

/// What happened to a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// A lease was created.
    Mapped,
    /// Renewed on its gateway.
    Renewed,
    /// Its mapping was lost.
    Lost,
    /// Mapped again after a loss.
    ReEstablished,
    /// Ended.
    Released,
    /// A map request was refused.
    Refused,
    /// A `reach` request was answered with no hole: the NAT lets the
    /// application punch its own.
    Punch,
}

impl Activity {
    /// The name in `activity_name`.
    pub fn name(self) -> &'static str {
        match self {
            Activity::Mapped => "mapped",
            Activity::Renewed => "renewed",
            Activity::Lost => "lost",
            Activity::ReEstablished => "re-established",
            Activity::Released => "released",
            Activity::Refused => "refused",
            Activity::Punch => "punch",
        }
    }

    /// OCSF Network Activity `activity_id`: Open 1, Close 2, Reset 3,
    /// Refuse 5, Other 99.
    fn ocsf_id(self) -> u32 {
        match self {
            Activity::Mapped | Activity::ReEstablished => 1,
            Activity::Released => 2,
            Activity::Lost => 3,
            Activity::Refused => 5,
            Activity::Renewed | Activity::Punch => 99,
        }
    }

    /// From a lease event's kind.
    pub fn of(kind: p2pbroker_client::EventKind) -> Activity {
        use p2pbroker_client::EventKind as K;
        match kind {
            K::Mapped => Activity::Mapped,
            K::Renewed => Activity::Renewed,
            K::Lost => Activity::Lost,
            K::ReEstablished => Activity::ReEstablished,
            K::Released => Activity::Released,
        }
    }
}

/// Who asked for the hole.
#[derive(Debug, Clone, Default)]
pub struct Who {
    /// The local uid (a LAN client's: the policy's uid for it).
    pub uid: u32,
    /// The requesting process, when local and known.
    pub pid: Option<u32>,
    /// Its name (`/proc/PID/comm`, escaped).
    pub process: Option<String>,
    /// A LAN client's identity.
    pub lan: Option<String>,
}

/// The MOD that holds (or was to hold) the hole.
#[derive(Debug, Clone, Default)]
pub struct ModeRef {
    /// Its name.
    pub name: String,
    /// Its component's sha256.
    pub sha256: String,
    /// The trusted keys that signed it.
    pub signers: Vec<String>,
}

/// One hole-log entry's facts.
#[derive(Debug, Clone)]
pub struct Hole {
    /// Unix ms.
    pub time_ms: u64,
    /// What happened.
    pub activity: Activity,
    /// Who.
    pub who: Who,
    /// `tcp` or `udp`.
    pub transport: String,
    /// The application's endpoint.
    pub internal: SocketAddr,
    /// Where peers reach it (none for a refusal).
    pub external: Option<SocketAddr>,
    /// Seconds the gateway granted (0 = permanent).
    pub lifetime: Option<u32>,
    /// The lease id.
    pub lease: Option<u64>,
    /// The MOD.
    pub mode: Option<ModeRef>,
    /// The policy's serial, when it is a signed one.
    pub policy_serial: Option<u64>,
    /// Why, when there is more to say.
    pub why: Option<String>,
}

fn endpoint(a: SocketAddr) -> Value {
    json!({"ip": a.ip().to_string(), "port": a.port()})
}

/// The JSON record of `h` (OCSF Network Activity, version 1.1 shape).
pub fn record(h: &Hole) -> Value {
    let a = h.activity;
    let refused = a == Activity::Refused;
    let mut actor = json!({"user": {"uid": h.who.uid.to_string()}});
    if let Some(pid) = h.who.pid {
        actor["process"] = json!({"pid": pid, "name": h.who.process});
    }
    if let Some(lan) = &h.who.lan {
        actor["lan_client"] = json!(lan);
    }
    let mut v = json!({
        "time": h.time_ms,
        "class_uid": 4001,
        "class_name": "Network Activity",
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": a.ocsf_id(),
        "activity_name": a.name(),
        "type_uid": 400100 + a.ocsf_id(),
        "severity_id": if refused || a == Activity::Lost { 3 } else { 1 },
        "status": if refused { "Failure" } else { "Success" },
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "P2P Broker", "vendor_name": "P2P Broker", "version": env!("CARGO_PKG_VERSION")},
        },
        "actor": actor,
        "connection_info": {"protocol_name": h.transport, "direction": "Inbound", "direction_id": 1},
        "dst_endpoint": endpoint(h.internal),
    });
    if let Some(why) = &h.why {
        v["status_detail"] = json!(why);
    }
    let mut hole = json!({});
    if let Some(e) = h.external {
        hole["external"] = endpoint(e);
    }
    if let Some(l) = h.lifetime {
        hole["lifetime_s"] = json!(l);
    }
    if let Some(id) = h.lease {
        hole["lease_id"] = json!(id);
    }
    if let Some(m) = &h.mode {
        hole["mod"] = json!({"name": m.name, "sha256": m.sha256, "signers": m.signers});
    }
    hole["policy_serial"] = json!(h.policy_serial);
    v["unmapped"] = json!({ "hole": hole });
    v
}

/// The files of a hole log in `dir`, oldest first (what `p2pb audit`
/// reads): `holes.jsonl.N` down to `.1`, then `holes.jsonl`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    crate::rotate::files(dir, FILE)
}

/// Refusals written per minute at most for one requester (a uid, or a LAN
/// client's identity), see [`HoleLog::admit_refusal`].
pub const REFUSALS_PER_MINUTE: u32 = 60;
/// Refusals written per minute at most, all requesters together: what the
/// disk takes however many uids ask.
pub const REFUSALS_PER_MINUTE_ALL: u32 = 600;
/// Requesters whose refusal counts are kept; past it the least recent that
/// owe no count are forgotten (a bound on what LAN identities can grow).
pub const REFUSAL_SOURCES: usize = 1024;

/// The appender.
pub struct HoleLog {
    file: crate::rotate::Rotating,
    refusals: crate::rotate::SourceBudgets,
}

impl HoleLog {
    /// Open (or create, mode 0600) `dir/holes.jsonl` for appending.
    pub fn open(dir: &Path, max_bytes: u64, keep: u32) -> anyhow::Result<HoleLog> {
        Ok(HoleLog {
            file: crate::rotate::Rotating::open(dir, FILE, max_bytes, keep)?,
            refusals: crate::rotate::SourceBudgets::new(
                REFUSALS_PER_MINUTE,
                REFUSALS_PER_MINUTE_ALL,
                REFUSAL_SOURCES,
            ),
        })
    }

    /// Whether a refusal of `source` at `now_ms` may be written: `Some(n)`
    /// with the number of that source's refusals dropped since its last one
    /// written, or `None` (dropped and counted) past
    /// [`REFUSALS_PER_MINUTE`] for it or [`REFUSALS_PER_MINUTE_ALL`] in all.
    /// One requester's refusals cannot hide another's (up to the total).
    pub fn admit_refusal(&mut self, source: &str, now_ms: u64) -> Option<u64> {
        self.refusals.admit(source, now_ms)
    }

    /// Append `v` as one line, rotating first if it would pass the size.
    pub fn write(&mut self, v: &Value) -> anyhow::Result<()> {
        // Escaped past JSON's own rules (DEL, C1, bidi controls): the file
        // is read in terminals and SIEM consoles.
        self.file.append(&crate::text::json_line(v))
    }
}

/// The hole as a `tracing` record of target [`crate::logging::HOLE_TARGET`]:
/// under systemd, journald gets each fact as a field (`P2PB_HOLE_UID`, ...).
/// A routine renewal (same external endpoint) is recorded at debug level:
/// the hole log keeps every one, and 10,000 leases would otherwise fill
/// journald with them (and cost each renewal a formatted record).
pub fn trace(h: &Hole) {
    let external = h.external.map(|e| e.to_string());
    let mode = h.mode.as_ref();
    macro_rules! hole_event {
        ($level:ident) => {
            tracing::$level!(
                target: crate::logging::HOLE_TARGET,
                hole_activity = h.activity.name(),
                hole_uid = h.who.uid,
                hole_pid = h.who.pid,
                hole_process = h.who.process.as_deref(),
                hole_lan_client = h.who.lan.as_deref(),
                hole_transport = h.transport.as_str(),
                hole_internal = %h.internal,
                hole_external = external.as_deref(),
                hole_lifetime = h.lifetime,
                hole_lease = h.lease,
                hole_mod = mode.map(|m| m.name.as_str()),
                hole_mod_sha256 = mode.map(|m| m.sha256.as_str()),
                hole_policy_serial = h.policy_serial,
                hole_why = h.why.as_deref(),
                "hole {} {} {} -> {} (uid {})",
                h.activity.name(),
                h.transport,
                h.internal,
                external.as_deref().unwrap_or("-"),
                h.who.uid,
            )
        };
    }
    if routine(h) {
        hole_event!(debug);
    } else {
        hole_event!(info);
    }
}

/// A renewal that changed nothing a peer would notice.
fn routine(h: &Hole) -> bool {
    h.activity == Activity::Renewed && h.why.is_none()
}

/// The name of process `pid` (`/proc/PID/comm`), escaped for logs.
pub fn process_name(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    // Lossy: a process cannot hide behind a name that is not UTF-8.
    let raw = String::from_utf8_lossy(&raw);
    Some(crate::text::escaped(raw.trim_end_matches('\n')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_even_when_its_name_is_not_utf8() {
        // Our own thread, renamed to bytes that are not UTF-8 (comm is
        // per thread: /proc/PID/task/TID/comm, and PID's is the leader's).
        let name = std::thread::spawn(|| {
            let raw = b"p2pb\xff\x1bx\0";
            // SAFETY: a NUL-terminated name of at most 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, raw.as_ptr()) };
            // SAFETY: gettid cannot fail.
            let tid = unsafe { libc::gettid() } as u32;
            process_name(tid)
        })
        .join()
        .unwrap();
        let name = name.expect("named");
        assert!(name.starts_with("p2pb"), "{name}");
        assert!(!name.contains('\u{1b}'), "escaped: {name}");
    }

    #[test]
    fn only_a_renewal_that_moved_nothing_is_routine() {
        let mut h = hole(Activity::Renewed);
        h.why = None;
        assert!(routine(&h));
        h.why = Some("the external endpoint changed".into());
        assert!(!routine(&h), "a moved endpoint is news");
        for a in [
            Activity::Mapped,
            Activity::Lost,
            Activity::Released,
            Activity::Refused,
        ] {
            assert!(!routine(&hole(a)), "{a:?}");
        }
    }

    fn hole(activity: Activity) -> Hole {
        Hole {
            time_ms: 1_700_000_000_123,
            activity,
            who: Who {
                uid: 1000,
                pid: Some(42),
                process: Some("qbittorrent".into()),
                lan: None,
            },
            transport: "tcp".into(),
            internal: "10.0.0.2:6881".parse().unwrap(),
            external: Some("198.51.100.2:6881".parse().unwrap()),
            lifetime: Some(3600),
            lease: Some(7),
            mode: Some(ModeRef {
                name: "upnp-igd".into(),
                sha256: "ab".repeat(32),
                signers: vec!["security".into()],
            }),
            policy_serial: Some(12),
            why: Some("via upnp-igd".into()),
        }
    }

    #[test]
    fn a_record_says_who_what_which_mod_which_policy_and_why() {
        let v = record(&hole(Activity::Mapped));
        assert_eq!(
            (v["class_uid"].as_u64(), v["activity_id"].as_u64()),
            (Some(4001), Some(1))
        );
        assert_eq!(v["type_uid"], 400101);
        assert_eq!(v["activity_name"], "mapped");
        assert_eq!(v["actor"]["user"]["uid"], "1000");
        assert_eq!(v["actor"]["process"]["name"], "qbittorrent");
        assert_eq!(v["dst_endpoint"]["port"], 6881);
        assert_eq!(v["connection_info"]["protocol_name"], "tcp");
        let h = &v["unmapped"]["hole"];
        assert_eq!(h["external"]["ip"], "198.51.100.2");
        assert_eq!(
            (h["lifetime_s"].as_u64(), h["lease_id"].as_u64()),
            (Some(3600), Some(7))
        );
        assert_eq!(h["mod"]["signers"][0], "security");
        assert_eq!(h["policy_serial"], 12);
        assert_eq!(v["status_detail"], "via upnp-igd");
        let r = record(&Hole {
            external: None,
            ..hole(Activity::Refused)
        });
        assert_eq!(
            (r["activity_id"].as_u64(), r["status"].as_str()),
            (Some(5), Some("Failure"))
        );
        assert!(r["unmapped"]["hole"].get("external").is_none());
    }

    #[test]
    fn refusals_are_capped_per_minute_and_the_dropped_ones_counted() {
        let d = tempfile::tempdir().unwrap();
        let mut log = HoleLog::open(d.path(), DEFAULT_MAX_BYTES, 1).unwrap();
        let t = 120_000;
        for _ in 0..REFUSALS_PER_MINUTE {
            assert_eq!(log.admit_refusal("uid:1000", t), Some(0));
        }
        assert_eq!(log.admit_refusal("uid:1000", t + 1), None);
        assert_eq!(log.admit_refusal("uid:1000", t + 2), None);
        // Another requester is not silenced by the first.
        assert_eq!(log.admit_refusal("uid:1001", t + 3), Some(0));
        // The next minute writes again and says how many were dropped.
        assert_eq!(log.admit_refusal("uid:1000", t + 60_000), Some(2));
        assert_eq!(log.admit_refusal("uid:1000", t + 60_001), Some(0));
    }

    #[test]
    fn refusals_of_many_requesters_are_capped_in_all_and_their_table_bounded() {
        let d = tempfile::tempdir().unwrap();
        let mut log = HoleLog::open(d.path(), DEFAULT_MAX_BYTES, 1).unwrap();
        let t = 120_000;
        let mut written = 0;
        for i in 0..REFUSAL_SOURCES * 2 {
            for _ in 0..3 {
                if log.admit_refusal(&format!("lan-{i}"), t).is_some() {
                    written += 1;
                }
            }
        }
        assert_eq!(written, REFUSALS_PER_MINUTE_ALL as usize);
        assert!(log.refusals.len() <= REFUSAL_SOURCES + 1);
        // A requester dropped by the total is told of it on its next line.
        let owed = (0..REFUSAL_SOURCES)
            .filter_map(|i| log.admit_refusal(&format!("lan-{i}"), t + 60_000))
            .max();
        assert!(owed.is_some_and(|n| n > 0), "{owed:?}");
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_only_so_many_files() {
        let d = tempfile::tempdir().unwrap();
        let mut log = HoleLog::open(d.path(), 4096, 2).unwrap();
        let v = record(&hole(Activity::Renewed));
        let one = v.to_string().len() as u64 + 1;
        let n = 4096 * 4 / one + 1;
        for _ in 0..n {
            log.write(&v).unwrap();
        }
        let names: Vec<String> = files(d.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["holes.jsonl.2", "holes.jsonl.1", "holes.jsonl"]);
        assert!(!d.path().join("holes.jsonl.3").exists());
        for p in files(d.path()) {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= 4096, "{} is {len} bytes", p.display());
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.lines()
                    .all(|l| serde_json::from_str::<Value>(l).is_ok())
            );
        }
    }
}
