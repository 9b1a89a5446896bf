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
    for path in holelog::files(&dir) {
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if matches(&a, &v, since) => {
                    matched += 1;
                    if a.json {
                        println!("{v}");
                    } else {
                        t.row(row(&v));
                    }
                }
                Ok(_) => {}
                Err(_) => unreadable += 1,
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
