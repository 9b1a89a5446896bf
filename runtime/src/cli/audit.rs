//! `p2pb audit`: the hole log (who opened which hole, when, through which
//! MOD), filtered by uid, port, MOD, activity and time.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Args as ClapArgs;
use p2pbroker::daemon::holelog;
use serde_json::Value;

use p2pb::table::Table;

/// `p2pb audit` arguments.
#[derive(ClapArgs)]
pub struct Args {
    /// The daemon's state folder (default: as `p2pb daemon`'s).
    #[arg(long, env = "P2PB_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Only this uid's holes.
    #[arg(long)]
    uid: Option<u32>,
    /// Only holes with this internal or external port.
    #[arg(long)]
    port: Option<u16>,
    /// Only holes through this MOD.
    #[arg(long)]
    mode: Option<String>,
    /// Only this activity (mapped, renewed, lost, re-established,
    /// released, refused, punch).
    #[arg(long)]
    activity: Option<String>,
    /// Only entries since then: a duration ago (`2h`, `1day`) or an RFC
    /// 3339 time (`2026-11-30T08:00:00Z`).
    #[arg(long)]
    since: Option<String>,
    /// Print the matching entries as JSON lines, as written.
    #[arg(long)]
    json: bool,
}

/// The earliest time (unix ms) `since` admits.
fn since_ms(since: &str) -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now();
    let t = match humantime::parse_duration(since) {
        Ok(d) => now.checked_sub(d).unwrap_or(std::time::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(since).map_err(|_| {
            anyhow::anyhow!("--since `{since}`: neither a duration (2h) nor an RFC 3339 time")
        })?,
    };
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

fn matches(a: &Args, v: &Value, since: u64) -> bool {
    let hole = &v["unmapped"]["hole"];
    let uid_ok = a.uid.is_none_or(|u| {
        v["actor"]["user"]["uid"]
            .as_str()
            .and_then(|s| s.parse().ok())
            == Some(u)
    });
    let port_ok = a
        .port
        .is_none_or(|p| v["dst_endpoint"]["port"] == p || hole["external"]["port"] == p);
    let mode_ok = a
        .mode
        .as_ref()
        .is_none_or(|m| hole["mod"]["name"] == m.as_str());
    let act_ok = a
        .activity
        .as_ref()
        .is_none_or(|x| v["activity_name"] == x.as_str());
    uid_ok && port_ok && mode_ok && act_ok && v["time"].as_u64().unwrap_or(0) >= since
}

/// Print the matching entries, oldest first.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let dir = a
        .state_dir
        .clone()
        .unwrap_or_else(p2pbroker::daemon::default_state_dir);
    let since = match &a.since {
        Some(s) => since_ms(s)?,
        None => 0,
    };
    // Streamed: the log may hold tens of megabytes; only the table's
    // rows (or nothing, with --json) are kept.
    let mut t = Table::new(&[
        "TIME", "ACTIVITY", "UID", "PROCESS", "PROTO", "INTERNAL", "EXTERNAL", "MOD", "WHY",
    ]);
    let (mut matched, mut unreadable) = (0usize, 0usize);
    // Every file opened before any is read: a rotation while we read moves
    // names, not the files we hold.
    let mut opened = Vec::new();
    for path in holelog::files(&dir) {
        match open_log(&path) {
            Ok(f) => opened.push((path, f)),
            Err(e) if e.is_not_found() => continue,
            // The error names the file.
            Err(e) => anyhow::bail!("cannot read {e}"),
        }
    }
    if opened.is_empty() {
        let shown = p2pbroker::text::escaped(&dir.display().to_string());
        errln!(
            "p2pb audit: no hole log in {shown} (the system broker's is in /var/lib/p2pbroker: \
             run as root, or give --state-dir)"
        );
        return Ok(super::EXIT_FAILED);
    }
    for (path, f) in opened {
        let mut reader = std::io::BufReader::new(f);
        let mut buf = Vec::new();
        loop {
            let line = next_line(&mut reader, &mut buf)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let Some(line) = line else { break };
            // A line cut by a full disk, a crash's zeros, or one too long
            // is skipped and counted, never the end of the listing.
            let parsed = line.and_then(|l| serde_json::from_slice::<Value>(l).ok());
            match parsed {
                Some(v) if matches(&a, &v, since) => {
                    matched += 1;
                    if a.json {
                        println!("{}", p2pbroker::text::json_line(&v));
                    } else {
                        t.row(row(&v));
                    }
                }
                Some(_) => {}
                None => unreadable += 1,
            }
        }
    }
    if unreadable > 0 {
        errln!("p2pb audit: {unreadable} line(s) of the hole log are not JSON; skipped");
    }
    if a.json {
        return Ok(0);
    }
    if matched == 0 {
        outln!("no hole-log entries match (in {})", dir.display());
        return Ok(0);
    }
    print!("{t}");
    Ok(0)
}

/// Open a log file to read: a regular file, not through a symlink (a
/// FIFO or a device planted under its name would hang or never end).
fn open_log(path: &std::path::Path) -> Result<std::fs::File, p2pbroker::files::ReadError> {
    p2pbroker::files::open_regular(path, p2pbroker::files::Links::Refuse)
}

/// The longest hole-log line read (a record is well under 4 KiB).
const MAX_LINE: u64 = 64 * 1024;

/// The next line of `r` into `buf`: `None` at the end, `Some(None)` for a
/// line longer than [`MAX_LINE`] (skipped whole), else its bytes.
fn next_line<'a>(
    r: &mut impl std::io::BufRead,
    buf: &'a mut Vec<u8>,
) -> std::io::Result<Option<Option<&'a [u8]>>> {
    use std::io::Read;
    buf.clear();
    let n = r.by_ref().take(MAX_LINE + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') || (buf.len() as u64) <= MAX_LINE {
        return Ok(Some(Some(buf.as_slice())));
    }
    // Too long: drop the rest of it, a bounded chunk at a time.
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                break;
            }
            None => {
                let len = chunk.len();
                r.consume(len);
            }
        }
    }
    Ok(Some(None))
}

/// One entry as a table row.
fn row(v: &Value) -> Vec<String> {
    let hole = &v["unmapped"]["hole"];
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(v["time"].as_u64().unwrap_or(0));
    let ep = |e: &Value| match (e["ip"].as_str(), e["port"].as_u64()) {
        (Some(ip), Some(p)) if ip.contains(':') => format!("[{ip}]:{p}"),
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        _ => "-".into(),
    };
    let text = |x: &Value| x.as_str().unwrap_or("-").to_string();
    vec![
        humantime::format_rfc3339_seconds(time).to_string(),
        text(&v["activity_name"]),
        text(&v["actor"]["user"]["uid"]),
        match v["actor"]["process"]["pid"].as_u64() {
            Some(pid) => format!("{} ({pid})", text(&v["actor"]["process"]["name"])),
            None => text(&v["actor"]["lan_client"]),
        },
        text(&v["connection_info"]["protocol_name"]),
        ep(&v["dst_endpoint"]),
        ep(&hole["external"]),
        text(&hole["mod"]["name"]),
        text(&v["status_detail"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_read_never_a_fifo_or_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("holes.jsonl");
        std::fs::write(&file, "{}\n").unwrap();
        assert!(open_log(&file).is_ok());
        let fifo = d.path().join("holes.jsonl.1");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_log(&fifo).unwrap_err();
        assert!(
            e.to_string().contains("FIFO") || e.to_string().contains("fifo"),
            "{e}"
        );
        let link = d.path().join("holes.jsonl.2");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_log(&link).is_err(), "a symlink is not followed");
    }

    #[test]
    fn lines_are_read_whole_and_a_too_long_one_is_skipped_alone() {
        let mut text = b"{\"a\":1}\n\xff\xfe\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE as usize * 3));
        text.extend_from_slice(b"\n{\"b\":2}");
        let mut r = std::io::BufReader::with_capacity(4096, text.as_slice());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(l) = next_line(&mut r, &mut buf).unwrap() {
            got.push(l.map(|l| l.to_vec()));
        }
        assert_eq!(
            got,
            vec![
                Some(b"{\"a\":1}\n".to_vec()),
                Some(b"\xff\xfe\n".to_vec()),
                None,
                Some(b"{\"b\":2}".to_vec()),
            ],
            "invalid UTF-8 is one line (counted unreadable by the caller), \
             the long one is dropped to its newline, the last needs none"
        );
        assert!(serde_json::from_slice::<Value>(b"\xff\xfe\n").is_err());
    }
}
