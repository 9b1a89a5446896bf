//! The crash-safe lease journal.
//!
//! An append-only file of JSON lines: `put` records a lease as it stands
//! (after map and after each renew), `del` records its removal. Each line is
//! flushed with `fdatasync` before the caller goes on, so a mapping is on
//! disk before its client hears of it; after a crash the next start reads
//! the journal and reconciles every lease still in it (re-adopt or delete).
//!
//! Before each MOD `map` call the broker writes an `intent` (which MOD,
//! which endpoint): a crash between the gateway mapping and the `put` leaves
//! the intent, and the next start reconciles it. A later `put` or `del` of
//! the same id resolves it. An intent may be written without its own sync
//! ([`Journal::intent_written`]): it then survives the daemon's crash or a
//! SIGKILL (the kernel holds the write), and the `put` or `del` that
//! follows syncs it with its own line; only a power loss during that one
//! MOD call can lose it, and with it the gateway mapping the call made,
//! which then lasts until its gateway lifetime ends.
//!
//! The `put` of a new map is written the same way ([`Journal::put_written`])
//! and synced 3 ms after its client is answered, off the answer's path,
//! one sync for every map that landed meanwhile (the broker's
//! `sync_journal_soon`): a power loss in those milliseconds loses the
//! record of a mapping that then lasts until its gateway lifetime ends,
//! as above. Where the policy allows permanent mappings, which would not
//! end, both lines are synced before the client hears of the mapping.
//!
//! The file grows in chunks of zeros written (and synced) ahead of the
//! lines: a line then overwrites bytes already on disk, so its `fdatasync`
//! flushes that data alone, with no file-system metadata commit. On ext4 a
//! commit would also write back every other file's pending appends (the
//! audit and hole logs'), on the path of every map. Replay ignores the
//! zeros after the last line.
//!
//! A torn last line (a crash mid-write: cut short, or with zeros where
//! sectors never landed) is ignored with a warning. When the file holds
//! many more lines than live leases it is compacted: the live set is written
//! to a temporary file, synced, renamed over the journal, and the folder
//! synced, so at every instant one complete journal exists.
//!
//! Replay is a pure function over bytes ([`replay`]), unit-tested and fuzzable.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::json::MappingJson;

/// File name inside the state folder.
pub const JOURNAL_FILE: &str = "leases.journal";
/// Compact once dead lines outnumber live leases by this factor (and at
/// least [`COMPACT_MIN_LINES`] lines exist): bounded file, rare rewrites.
const COMPACT_FACTOR: usize = 4;
/// Below this many lines the journal is never compacted.
const COMPACT_MIN_LINES: usize = 256;
/// The journal grows by at least this many bytes of zeros at a time
/// (about 800 lines of a lease).
const CHUNK: u64 = 256 * 1024;

/// One lease as journaled: enough to renew it or delete it after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Lease id, unique for the journal's life.
    pub id: u64,
    /// The MOD that holds the mapping.
    pub mode: String,
    /// That MOD's component sha256 when the mapping was made.
    pub mode_sha256: String,
    /// The mapping, with the MOD's opaque state blob.
    pub mapping: MappingJson,
    /// Unix seconds when the gateway last granted `mapping.lifetime`.
    pub granted_at: u64,
    /// The client's uid.
    pub owner_uid: u32,
    /// The LAN client's identity, when a LAN client holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_lan: Option<String>,
    /// Whether the lease outlives its client's connection.
    pub persist: bool,
    /// Unix seconds when the lease ends; `None` = until released.
    pub expires_at: Option<u64>,
    /// Unix seconds when the lease was created.
    pub created_at: u64,
    /// Inodes of the sockets whose closing ends the lease (`until_closed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<u64>,
    /// The local process that asked for it, for the hole log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_pid: Option<u32>,
    /// That process's name (escaped), as it was then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_process: Option<String>,
}

impl LeaseRecord {
    /// Unix seconds when the gateway forgets the mapping unless renewed;
    /// `None` for a permanent mapping.
    pub fn gateway_expiry(&self) -> Option<u64> {
        (self.mapping.lifetime != 0).then(|| self.granted_at + u64::from(self.mapping.lifetime))
    }
}

/// A MOD `map` about to run for lease `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The lease id the map is for.
    pub id: u64,
    /// The MOD asked.
    pub mode: String,
    /// TCP or UDP.
    pub transport: crate::gate::Transport,
    /// The internal endpoint.
    pub internal: std::net::SocketAddr,
    /// The external port asked for, if any.
    pub external_port: Option<u16>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Put {
        lease: LeaseRecord,
    },
    Del {
        id: u64,
    },
    Intent {
        intent: Intent,
    },
    /// Ids up to this one were used: compaction drops dead leases, not the
    /// fact that their ids are taken.
    Floor {
        id: u64,
    },
}

/// What replaying a journal found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Live leases by id.
    pub leases: BTreeMap<u64, LeaseRecord>,
    /// Maps cut short: intents no `put` or `del` resolved.
    pub intents: BTreeMap<u64, Intent>,
    /// Lines read (for the compaction rule).
    pub lines: usize,
    /// The highest lease id ever seen (ids are never reused).
    pub max_id: u64,
    /// Lines that could not be read, with their line number and why.
    pub warnings: Vec<String>,
    /// Whether the last line was torn by a crash mid-write (ignored; the
    /// journal is rewritten clean before a new line follows it).
    pub torn: bool,
}

/// Replay journal bytes: later lines win; unreadable lines are reported,
/// never fatal (a broker that refused to start would leak every mapping).
pub fn replay(bytes: &[u8]) -> Replay {
    let mut r = Replay::default();
    let text = String::from_utf8_lossy(written(bytes));
    let complete = text.ends_with('\n');
    let all: Vec<&str> = text.split_terminator('\n').collect();
    for (i, line) in all.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        r.lines += 1;
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Put { lease }) => {
                r.max_id = r.max_id.max(lease.id);
                r.intents.remove(&lease.id);
                r.leases.insert(lease.id, lease);
            }
            Ok(Line::Del { id }) => {
                r.max_id = r.max_id.max(id);
                r.intents.remove(&id);
                r.leases.remove(&id);
            }
            Ok(Line::Intent { intent }) => {
                r.max_id = r.max_id.max(intent.id);
                r.intents.insert(intent.id, intent);
            }
            Ok(Line::Floor { id }) => r.max_id = r.max_id.max(id),
            // The last line, cut short or with zeros where sectors of the
            // write never landed.
            Err(_) if i + 1 == all.len() && (!complete || line.contains('\0')) => {
                r.torn = true;
                r.warnings.push(format!(
                    "line {}: torn by a crash mid-write, ignored",
                    i + 1
                ));
            }
            Err(e) => r.warnings.push(format!("line {}: {e}", i + 1)),
        }
    }
    r
}

/// The bytes of `file` up to the zeros written ahead of the lines.
pub fn written(file: &[u8]) -> &[u8] {
    let end = file.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &file[..end]
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Where the next line goes.
    end: u64,
    /// The file's length: zeros from `end` on.
    allocated: u64,
    lines: usize,
    live: BTreeMap<u64, LeaseRecord>,
    intents: BTreeMap<u64, Intent>,
    max_id: u64,
}

/// Journal I/O failed: the caller must not report the change as done.
#[derive(Debug, thiserror::Error)]
#[error("lease journal {path}: {source}")]
pub struct JournalError {
    path: String,
    source: std::io::Error,
}

impl Journal {
    /// Open (creating if needed) the journal in `dir`, owner-only, and
    /// replay it.
    pub fn open(dir: &Path) -> Result<(Journal, Replay), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let err = |source| JournalError {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let replay = replay(&bytes);
        let text = written(&bytes);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            // Its lines were read above and stay: new ones overwrite the
            // zeros after them.
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        let mut j = Journal {
            path: path.clone(),
            file,
            end: text.len() as u64,
            allocated: bytes.len() as u64,
            lines: replay.lines,
            live: replay.leases.clone(),
            intents: replay.intents.clone(),
            max_id: replay.max_id,
        };
        // A torn tail would glue itself to the next line: start clean.
        if (!text.is_empty() && !text.ends_with(b"\n")) || replay.torn {
            j.compact()?;
        }
        // Room ahead now, so no map pays for it soon.
        if j.allocated < j.end + CHUNK / 4 {
            j.grow(j.end + 1).map_err(|e| j.err(e))?;
        }
        Ok((j, replay))
    }

    /// Record `lease` as it now stands; durable when this returns.
    pub fn put(&mut self, lease: &LeaseRecord) -> Result<(), JournalError> {
        self.put_with(lease, true)
    }

    /// As [`Journal::put`], but written without a sync of its own (see
    /// the module docs): durable once [`Journal::sync_handle`] is synced
    /// or a later line is.
    pub fn put_written(&mut self, lease: &LeaseRecord) -> Result<(), JournalError> {
        self.put_with(lease, false)
    }

    /// The journal file, to sync outside the journal's lock (a line
    /// written before this call is durable once its `sync_data` returns).
    pub fn sync_handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    fn put_with(&mut self, lease: &LeaseRecord, sync: bool) -> Result<(), JournalError> {
        self.write_line(
            &Line::Put {
                lease: lease.clone(),
            },
            sync,
        )?;
        self.live.insert(lease.id, lease.clone());
        self.intents.remove(&lease.id);
        self.max_id = self.max_id.max(lease.id);
        self.maybe_compact()
    }

    /// Record that a MOD is about to map for lease `intent.id`; durable
    /// when this returns.
    pub fn intent(&mut self, intent: &Intent) -> Result<(), JournalError> {
        self.record_intent(intent, true)
    }

    /// As [`Journal::intent`], but written without a sync of its own (see
    /// the module docs): the next `put` or `del` makes it durable.
    pub fn intent_written(&mut self, intent: &Intent) -> Result<(), JournalError> {
        self.record_intent(intent, false)
    }

    fn record_intent(&mut self, intent: &Intent, sync: bool) -> Result<(), JournalError> {
        self.write_line(
            &Line::Intent {
                intent: intent.clone(),
            },
            sync,
        )?;
        self.intents.insert(intent.id, intent.clone());
        self.max_id = self.max_id.max(intent.id);
        self.maybe_compact()
    }

    /// Record that lease `id` is gone (or its map never happened); durable
    /// when this returns.
    pub fn del(&mut self, id: u64) -> Result<(), JournalError> {
        let lease = self.live.remove(&id);
        let intent = self.intents.remove(&id);
        if lease.is_none() && intent.is_none() {
            return Ok(());
        }
        self.append(&Line::Del { id })?;
        self.max_id = self.max_id.max(id);
        self.maybe_compact()
    }

    /// Live leases as journaled.
    pub fn live(&self) -> &BTreeMap<u64, LeaseRecord> {
        &self.live
    }

    fn err(&self, source: std::io::Error) -> JournalError {
        JournalError {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn append(&mut self, line: &Line) -> Result<(), JournalError> {
        self.write_line(line, true)
    }

    /// Write `line` after the last one; with `sync`, durable on return.
    fn write_line(&mut self, line: &Line, sync: bool) -> Result<(), JournalError> {
        let mut text = serde_json::to_string(line).expect("records serialise");
        text.push('\n');
        let len = text.len() as u64;
        if self.end + len > self.allocated {
            self.grow(self.end + len).map_err(|e| self.err(e))?;
        }
        self.file
            .write_all_at(text.as_bytes(), self.end)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) })
            .map_err(|e| self.err(e))?;
        self.end += len;
        self.lines += 1;
        Ok(())
    }

    /// Write (and sync, size included) zeros so that at least `need` bytes
    /// are on disk ahead of the lines.
    fn grow(&mut self, need: u64) -> std::io::Result<()> {
        let to = need.next_multiple_of(CHUNK).max(self.allocated + CHUNK);
        let zeros = vec![0u8; (to - self.allocated) as usize];
        self.file.write_all_at(&zeros, self.allocated)?;
        self.file.sync_all()?;
        self.allocated = to;
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), JournalError> {
        let kept = self.live.len() + self.intents.len();
        if self.lines >= COMPACT_MIN_LINES && self.lines > COMPACT_FACTOR * kept.max(1) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the journal as the live set and open intents only (atomic
    /// rename).
    pub fn compact(&mut self) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("compact");
        let text = compacted(&self.live, &self.intents, self.max_id);
        let write = || -> std::io::Result<(File, u64)> {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            // Room for the next lines, written ahead like `grow`'s.
            let allocated = (text.len() as u64 + 1).next_multiple_of(CHUNK);
            f.write_all(&vec![0u8; allocated as usize - text.len()])?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            let f = OpenOptions::new().read(true).write(true).open(&self.path)?;
            Ok((f, allocated))
        };
        let (file, allocated) = write().map_err(|e| self.err(e))?;
        self.file = file;
        self.end = text.len() as u64;
        self.allocated = allocated;
        self.lines = 1 + self.live.len() + self.intents.len();
        Ok(())
    }
}

/// The journal text holding exactly `live`, `intents` and the highest id
/// used, `max_id` (what compaction writes; replaying it gives them back, so
/// an id is never handed out twice).
pub fn compacted(
    live: &BTreeMap<u64, LeaseRecord>,
    intents: &BTreeMap<u64, Intent>,
    max_id: u64,
) -> String {
    let mut text = String::new();
    let floor = std::iter::once(Line::Floor { id: max_id });
    let puts = live.values().map(|l| Line::Put { lease: l.clone() });
    let open = intents.values().map(|i| Line::Intent { intent: i.clone() });
    for line in floor.chain(puts).chain(open) {
        text.push_str(&serde_json::to_string(&line).expect("records serialise"));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Transport;

    fn rec(id: u64) -> LeaseRecord {
        LeaseRecord {
            id,
            mode: "pcp".into(),
            mode_sha256: "ab".repeat(32),
            mapping: MappingJson {
                transport: Transport::Tcp,
                internal: "10.0.0.2:6881".parse().unwrap(),
                external: "198.51.100.2:6881".parse().unwrap(),
                lifetime: 3600,
                state: "0102".into(),
            },
            granted_at: 1_000,
            owner_uid: 1000,
            owner_lan: None,
            persist: false,
            expires_at: None,
            created_at: 1_000,
            follows: Vec::new(),
            owner_pid: None,
            owner_process: None,
        }
    }

    #[test]
    fn put_del_and_reopen_keep_the_live_set() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, r) = Journal::open(dir.path()).unwrap();
        assert!(r.leases.is_empty());
        j.put(&rec(1)).unwrap();
        j.put(&rec(2)).unwrap();
        let mut renewed = rec(1);
        renewed.granted_at = 2_800;
        j.put(&renewed).unwrap();
        j.del(2).unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(r.leases.len(), 1);
        assert_eq!(r.leases[&1].granted_at, 2_800);
        assert_eq!(r.max_id, 2, "a deleted id is never reused");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    /// An intent written without its own sync is read back after the
    /// process goes (the kernel holds the write) and resolved as a synced
    /// one is.
    #[test]
    fn an_unsynced_intent_is_replayed_and_resolved_like_a_synced_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let intent = |id| Intent {
            id,
            mode: "pcp".into(),
            transport: Transport::Tcp,
            internal: "10.0.0.2:6881".parse().unwrap(),
            external_port: None,
        };
        j.intent_written(&intent(1)).unwrap();
        j.intent(&intent(2)).unwrap();
        j.put(&rec(2)).unwrap();
        drop(j);
        let (mut j, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(r.intents.keys().collect::<Vec<_>>(), [&1], "left open");
        assert_eq!(r.leases.keys().collect::<Vec<_>>(), [&2]);
        j.del(1).unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert!(r.intents.is_empty() && r.max_id == 2);
    }

    /// A new map's lease written without its own sync is replayed after
    /// the process goes, and resolves its intent; the handle syncs it.
    #[test]
    fn an_unsynced_put_is_replayed_and_its_handle_syncs_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.intent_written(&Intent {
            id: 3,
            mode: "pcp".into(),
            transport: Transport::Tcp,
            internal: "10.0.0.2:6881".parse().unwrap(),
            external_port: None,
        })
        .unwrap();
        j.put_written(&rec(3)).unwrap();
        j.sync_handle().unwrap().sync_data().unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(r.leases.keys().collect::<Vec<_>>(), [&3]);
        assert!(r.intents.is_empty(), "the put resolved its intent");
    }

    #[test]
    fn a_torn_tail_is_ignored_and_cleaned() {
        // A crash mid-write: the line cut short, or with zeros where some
        // of its sectors never landed.
        let tails: [&[u8]; 2] = [
            br#"{"op":"put","lease":{"id":8,"mo"#,
            b"{\"op\":\"put\",\0\0\0\0\"id\":8}\n",
        ];
        for tail in tails {
            let dir = tempfile::tempdir().unwrap();
            let (mut j, _) = Journal::open(dir.path()).unwrap();
            j.put(&rec(7)).unwrap();
            drop(j);
            let path = dir.path().join(JOURNAL_FILE);
            let mut bytes = std::fs::read(&path).unwrap();
            let end = written(&bytes).len();
            bytes[end..end + tail.len()].copy_from_slice(tail);
            std::fs::write(&path, &bytes).unwrap();
            let (mut j, r) = Journal::open(dir.path()).unwrap();
            assert_eq!(r.leases.keys().copied().collect::<Vec<_>>(), vec![7]);
            assert!(r.torn && r.warnings[0].contains("torn"), "{:?}", r.warnings);
            j.put(&rec(9)).unwrap();
            drop(j);
            let (_, r) = Journal::open(dir.path()).unwrap();
            assert_eq!(r.leases.keys().copied().collect::<Vec<_>>(), vec![7, 9]);
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        }
    }

    #[test]
    fn lines_overwrite_zeros_written_ahead_and_growth_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let ahead = std::fs::metadata(&path).unwrap().len();
        assert!(ahead >= CHUNK, "zeros ahead from the start: {ahead}");
        j.put(&rec(1)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ahead, "no growth");
        // Past the first chunk: the file grows, every line stays.
        let mut n = 1;
        while std::fs::metadata(&path).unwrap().len() == ahead {
            n += 1;
            j.put(&rec(n)).unwrap();
            assert!(n < 10_000, "bounded");
        }
        drop(j);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64 % CHUNK, 0);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(r.leases.len() as u64, n);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn garbage_lines_are_reported_not_fatal() {
        let r = replay(b"not json\n{\"op\":\"del\",\"id\":3}\n{\"op\":\"put\"}\n");
        assert_eq!(r.warnings.len(), 2);
        assert!(r.warnings[0].starts_with("line 1"));
        assert_eq!(r.max_id, 3);
        assert!(r.leases.is_empty());
    }

    #[test]
    fn compaction_keeps_exactly_the_live_leases() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        for round in 0..100 {
            j.put(&rec(1)).unwrap();
            j.put(&rec(round + 2)).unwrap();
            j.del(round + 2).unwrap();
        }
        let size = written(&std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap()).len();
        drop(j);
        let (_, r) = Journal::open(dir.path()).unwrap();
        assert_eq!(r.leases.len(), 1);
        assert!(r.lines < COMPACT_MIN_LINES, "compacted: {} lines", r.lines);
        assert_eq!(r.max_id, 101, "a deleted id above the live ones stays used");
        assert!(size < 300 * 400, "bounded file: {size} bytes");
    }
}
