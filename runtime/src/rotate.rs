//! An append-only log of JSON lines, rotated by size with a retention
//! count: `NAME.keep` (oldest) ... `NAME.1`, then `NAME`. The hole log and
//! the daemon's audit log both write through it, so what anyone can make
//! the broker log holds at most `max_bytes × (keep + 1)` of disk.
//!
//! A failed rotation or reopen is an error for that line, never a panic:
//! the next line tries again, and a failure cannot make each later line
//! rotate again (which would drop one old file per line).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The least size a log is rotated at (smaller settings are raised to it).
pub const MIN_BYTES: u64 = 4096;

/// The appender.
#[derive(Debug)]
pub struct Rotating {
    dir: PathBuf,
    name: String,
    file: Option<std::fs::File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl Rotating {
    /// Open (or create, mode 0600, not through a symlink) `dir/name` for
    /// appending.
    pub fn open(dir: &Path, name: &str, max_bytes: u64, keep: u32) -> anyhow::Result<Self> {
        let mut log = Rotating {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            file: None,
            size: 0,
            max_bytes: max_bytes.max(MIN_BYTES),
            keep,
        };
        log.reopen()?;
        Ok(log)
    }

    /// The current file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn reopen(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(f);
        Ok(())
    }

    /// Append `line` (no newline of its own), rotating first if it would
    /// pass the size.
    pub fn append(&mut self, line: &str) -> anyhow::Result<()> {
        let len = line.len() as u64 + 1;
        if self.file.is_some() && self.size > 0 && self.size + len > self.max_bytes {
            self.file = None;
            // Whatever happens below, this file's bytes are rotated (or
            // gone): a failed reopen must not rotate again on the next line.
            self.size = 0;
            for (from, to) in rotation(&self.name, self.keep) {
                let _ = std::fs::rename(self.dir.join(from), self.dir.join(to));
            }
            if self.keep == 0 {
                let _ = std::fs::remove_file(self.path());
            }
            // Files past `keep` (left when it was lowered) go too.
            for (n, path) in numbered(&self.dir, &self.name) {
                if n > self.keep {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(f) = self.file.as_mut() else {
            anyhow::bail!("{} is not open", self.path().display());
        };
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // One write per line keeps lines whole under O_APPEND.
        f.write_all(&buf)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path().display()))?;
        self.size += len;
        Ok(())
    }
}

/// Lines of one kind written per minute at most, for lines anyone can
/// cause for free (a refused request): past the budget they are counted,
/// and the next line written says how many were not.
#[derive(Debug)]
pub struct MinuteBudget {
    per_minute: u32,
    /// The current minute (unix ms / 60000), lines written in it, and
    /// those dropped since the last one written.
    state: (u64, u32, u64),
}

impl MinuteBudget {
    /// A budget of `per_minute` lines.
    pub fn new(per_minute: u32) -> MinuteBudget {
        MinuteBudget {
            per_minute,
            state: (0, 0, 0),
        }
    }

    /// Whether a line at `now_ms` would be admitted (nothing counted).
    pub fn has_room(&mut self, now_ms: u64) -> bool {
        self.roll(now_ms);
        self.state.1 < self.per_minute
    }

    /// Count a line dropped for another reason (a wider budget).
    pub fn drop_one(&mut self) {
        self.state.2 += 1;
    }

    /// Lines dropped since the last one written.
    pub fn owed(&self) -> u64 {
        self.state.2
    }

    fn roll(&mut self, now_ms: u64) {
        let minute = now_ms / 60_000;
        if minute != self.state.0 {
            self.state.0 = minute;
            self.state.1 = 0;
        }
    }

    /// Whether a line at `now_ms` may be written: `Some(n)` with the
    /// number dropped since the last one written, or `None` (dropped and
    /// counted).
    pub fn admit(&mut self, now_ms: u64) -> Option<u64> {
        self.roll(now_ms);
        if self.state.1 >= self.per_minute {
            self.state.2 += 1;
            return None;
        }
        self.state.1 += 1;
        Some(std::mem::take(&mut self.state.2))
    }
}

/// [`MinuteBudget`]s per source (a uid, a LAN identity) under a total, for
/// lines anyone can cause: one source cannot use up another's share, and
/// all together write at most the total. The table is bounded: sources
/// that owe no count are forgotten first, and newcomers past the bound
/// share one budget.
#[derive(Debug)]
pub struct SourceBudgets {
    per_source: u32,
    max_sources: usize,
    table: std::collections::HashMap<String, MinuteBudget>,
    all: MinuteBudget,
}

impl SourceBudgets {
    /// `per_source` lines a minute each, `total` in all, at most
    /// `max_sources` sources remembered.
    pub fn new(per_source: u32, total: u32, max_sources: usize) -> SourceBudgets {
        SourceBudgets {
            per_source,
            max_sources,
            table: Default::default(),
            all: MinuteBudget::new(total),
        }
    }

    /// Sources remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Whether a line of `source` at `now_ms` may be written: `Some(n)`
    /// with that source's lines dropped since its last written, or `None`
    /// (dropped and counted as the source's).
    pub fn admit(&mut self, source: &str, now_ms: u64) -> Option<u64> {
        if !self.table.contains_key(source) && self.table.len() >= self.max_sources {
            self.table.retain(|_, b| b.owed() > 0);
        }
        let key = if self.table.len() < self.max_sources || self.table.contains_key(source) {
            source
        } else {
            "(others)"
        };
        let per_source = self.per_source;
        let mine = self
            .table
            .entry(key.to_string())
            .or_insert_with(|| MinuteBudget::new(per_source));
        if !mine.has_room(now_ms) {
            mine.admit(now_ms);
            return None;
        }
        match self.all.admit(now_ms) {
            Some(_) => mine.admit(now_ms),
            None => {
                mine.drop_one();
                None
            }
        }
    }
}

/// The renames a rotation makes, oldest first: `NAME.keep-1 -> NAME.keep`
/// ... `NAME -> NAME.1` (what was `NAME.keep` is overwritten, i.e. dropped).
/// With `keep` 0 the file is just started afresh.
pub fn rotation(name: &str, keep: u32) -> Vec<(String, String)> {
    let file = |n: u32| {
        if n == 0 {
            name.to_string()
        } else {
            format!("{name}.{n}")
        }
    };
    (0..keep).rev().map(|n| (file(n), file(n + 1))).collect()
}

/// The files of log `name` in `dir`, oldest first: `NAME.N` down to `.1`,
/// then `NAME` (listed whether or not it exists).
pub fn files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut rotated = numbered(dir, name);
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(dir.join(name));
    out
}

/// The rotated files of log `name` in `dir`, with their numbers.
fn numbered(dir: &Path, name: &str) -> Vec<(u32, PathBuf)> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| {
                let e = e.ok()?;
                let file = e.file_name();
                let n = file.to_str()?.strip_prefix(name)?.strip_prefix('.')?;
                Some((n.parse().ok()?, e.path()))
            })
            .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "x.jsonl";

    fn names(dir: &Path) -> Vec<String> {
        files(dir, NAME)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn rotation_shifts_oldest_first_and_drops_beyond_keep() {
        assert_eq!(
            rotation(NAME, 2),
            vec![
                ("x.jsonl.1".to_string(), "x.jsonl.2".to_string()),
                ("x.jsonl".to_string(), "x.jsonl.1".to_string()),
            ]
        );
        assert!(rotation(NAME, 0).is_empty());
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_only_so_many_files() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Rotating::open(d.path(), NAME, MIN_BYTES, 2).unwrap();
        let line = "{\"a\":1}";
        for _ in 0..(MIN_BYTES * 4 / 8 + 1) {
            log.append(line).unwrap();
        }
        assert_eq!(names(d.path()), ["x.jsonl.2", "x.jsonl.1", "x.jsonl"]);
        assert!(!d.path().join("x.jsonl.3").exists());
        // Lowered to one: the next rotation drops what is past it.
        let mut log = Rotating::open(d.path(), NAME, MIN_BYTES, 1).unwrap();
        for _ in 0..(MIN_BYTES / 8 + 1) {
            log.append(line).unwrap();
        }
        assert_eq!(names(d.path()), ["x.jsonl.1", "x.jsonl"]);
        for p in files(d.path(), NAME) {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() as u64 <= MIN_BYTES, "{}", p.display());
            assert!(text.lines().all(|l| l == line), "{}", p.display());
        }
    }

    #[test]
    fn a_failed_reopen_is_an_error_and_the_log_writes_again_once_it_can() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Rotating::open(d.path(), NAME, MIN_BYTES, 1).unwrap();
        let line = "y".repeat(1000);
        for _ in 0..4 {
            log.append(&line).unwrap();
        }
        // Something else took the file's name (a directory): the rotation
        // cannot move it onto `.1`, nor can a new file be created there.
        std::fs::write(d.path().join("x.jsonl.1"), "older\n").unwrap();
        std::fs::remove_file(d.path().join(NAME)).unwrap();
        std::fs::create_dir(d.path().join(NAME)).unwrap();
        let e = log.append(&line).unwrap_err();
        assert!(e.to_string().contains("x.jsonl"), "{e}");
        // A short line after it is an error too, not a panic, and nothing
        // more is rotated.
        assert!(log.append("{}").is_err());
        assert_eq!(
            std::fs::read_to_string(d.path().join("x.jsonl.1")).unwrap(),
            "older\n"
        );
        std::fs::remove_dir(d.path().join(NAME)).unwrap();
        log.append("{\"back\":true}").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join(NAME)).unwrap(),
            "{\"back\":true}\n"
        );
    }
}
