//! A scripted broker on a Unix socket, for testing what the CLI makes of
//! the broker's answers. It runs in the test process (so as the same uid
//! as the CLI it serves) and answers each request line with `script(op)`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the broker answers to a request for `op`: the `result` object, or
/// `Err(error object)`.
pub type Script = fn(op: &str) -> Result<serde_json::Value, serde_json::Value>;

/// A running fake broker; its folder goes when it is dropped.
pub struct FakeBroker {
    _dir: tempfile::TempDir,
    /// Its socket.
    pub socket: PathBuf,
}

/// Start a fake broker that serves connections, one at a time, for at most
/// `secs` seconds.
pub fn start(script: Script, secs: u64) -> FakeBroker {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("broker.sock");
    let l = UnixListener::bind(&socket).unwrap();
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => serve(s, script, deadline),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    FakeBroker { _dir: dir, socket }
}

fn serve(s: std::os::unix::net::UnixStream, script: Script, deadline: Instant) {
    s.set_nonblocking(false).unwrap();
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut w = s.try_clone().unwrap();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return };
        let req: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = req["id"].clone();
        let op = req["op"].as_str().unwrap_or("");
        let answer = match script(op) {
            Ok(result) => serde_json::json!({"v": 1, "id": id, "ok": true, "result": result}),
            Err(error) => serde_json::json!({"v": 1, "id": id, "ok": false, "error": error}),
        };
        if writeln!(w, "{answer}").is_err() {
            return;
        }
    }
}

/// Text a hostile MOD (or broker) could send: a newline that would start a
/// forged line, a "clear screen" escape sequence, a bidi override and a C1
/// control.
pub const HOSTILE: &str = "evil\n2030-01-01 FORGED LINE\u{1b}[2J\u{202e}exe.txt\u{9b}31m";

/// A lease whose MOD name is [`HOSTILE`].
pub fn hostile_lease() -> serde_json::Value {
    serde_json::json!({"id": 1, "transport": "tcp", "internal": "10.0.0.2:6881",
        "external": "198.51.100.2:6881", "mode": HOSTILE, "state": "active",
        "gateway_lifetime": 3600, "renew_at": null, "expires_at": null, "owner_uid": 0,
        "persist": true, "created_at": 0})
}

/// A [`Script`] that puts [`HOSTILE`] in every text field of every answer
/// (and refuses `map` with it as message and reasons).
pub fn hostile(op: &str) -> Result<serde_json::Value, serde_json::Value> {
    use serde_json::json;
    let probe = json!({"mode": HOSTILE, "ok": false, "kind": HOSTILE, "detail": HOSTILE,
        "gateway": null, "external_address": "100.64.0.5", "external_class": HOSTILE,
        "elapsed_ms": 3, "age_s": 0});
    match op {
        "probe" => Ok(json!({"probes": [probe], "chosen": HOSTILE, "why": HOSTILE,
            "gateways": [], "external_address": "100.64.0.5", "double_nat": true})),
        "status" => Ok(
            json!({"broker_version": HOSTILE, "protocol": 1, "uptime_s": 5,
            "policy": {"source": HOSTILE, "version": null, "error": HOSTILE},
            "network": {"gateways": [], "addresses": [HOSTILE]},
            "modes": [{"name": HOSTILE, "sha256": "00", "version": HOSTILE, "probe": probe}],
            "leases": [hostile_lease()],
            "refused": [{"file": HOSTILE, "reason": HOSTILE}]}),
        ),
        "list" => Ok(json!({"leases": [hostile_lease()]})),
        "unmap" => Ok(hostile_lease()),
        _ => Err(json!({"code": "no-mode", "message": HOSTILE,
            "reasons": [{"mode": HOSTILE, "kind": HOSTILE, "reason": HOSTILE}]})),
    }
}
