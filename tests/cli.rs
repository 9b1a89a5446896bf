//! The `p2pb` command line as a MOD author uses it: build, inspect, run.

#[path = "harness/mod.rs"]
mod harness;

use std::process::Command;

fn p2pb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_p2pb"))
}

fn built_direct() -> std::path::PathBuf {
    let out = tempfile::tempdir().unwrap().keep();
    let o = p2pb()
        .args(["mode", "build", "--json", "--target-dir"])
        .arg(harness::root().join("target/guests"))
        .arg("--out")
        .arg(&out)
        .arg(harness::root().join("modes/direct"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = std::path::PathBuf::from(v["path"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(v["size"].as_u64().unwrap() as usize, bytes.len());
    assert_eq!(v["sha256"], hex::encode(p2pbroker::sha256(&bytes)));
    path
}

#[test]
fn build_then_inspect_shows_name_hash_and_capability_surface() {
    let path = built_direct();
    let o = p2pb()
        .args(["mode", "inspect", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "direct");
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    // The direct MOD opens no socket: it imports the broker interface and,
    // for the ip-address type only, wasi:sockets/network; nothing that can
    // create, bind or connect a socket.
    let socket_functions = [
        "udp",
        "tcp",
        "udp-create-socket",
        "tcp-create-socket",
        "instance-network",
        "ip-name-lookup",
    ];
    for i in &imports {
        let opens = socket_functions
            .iter()
            .any(|f| i.starts_with(&format!("wasi:sockets/{f}@")));
        assert!(!opens, "{imports:?}");
    }
    assert!(
        imports.contains(&"p2pbroker:mode/broker@0.1.0"),
        "{imports:?}"
    );
    assert_eq!(v["exports"][0], "p2pbroker:mode/lifecycle@0.1.0");

    let human = p2pb()
        .args(["mode", "inspect"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("name      direct"), "{text}");
    assert!(text.contains(v["sha256"].as_str().unwrap()), "{text}");
}

#[test]
fn run_prints_result_audit_and_time_and_sets_exit_codes() {
    let path = built_direct();
    let o = p2pb()
        .args(["mode", "run", "--json"])
        .arg(&path)
        .arg("info")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"]["name"], "direct");
    assert!(v["elapsed_us"].as_u64().is_some());

    // A map request for port 0 is refused by the broker before the MOD runs.
    let o = p2pb()
        .args(["mode", "run", "--json", "--internal", "0.0.0.0:0"])
        .arg(&path)
        .arg("map")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["mode_error"], "invalid-request");

    // Bad usage is exit code 2 with a message naming the problem.
    let o = p2pb()
        .args(["mode", "run", "--grant", "udp:send@mars:1"])
        .arg(&path)
        .arg("probe")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown target `mars`"));
    // Renew with lifetime 0 would delete on NAT-PMP/PCP: refused before the MOD.
    let mapping = r#"{"transport":"udp","internal":"10.0.0.2:4000","external":"198.51.100.7:4000","lifetime":60,"state":""}"#;
    let o = p2pb()
        .args([
            "mode",
            "run",
            "--json",
            "--lifetime",
            "0",
            "--mapping",
            mapping,
        ])
        .arg(&path)
        .arg("renew")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["mode_error"], "invalid-request", "{v}");
    assert!(v["audit"].as_array().unwrap().is_empty());

    // Absurd limits are refused with the field's name, not a panic.
    let o = p2pb()
        .args(["mode", "run", "--timeout-ms", "18446744073709551615"])
        .arg(&path)
        .arg("info")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("limits.timeout_ms"));
    let o = p2pb()
        .args(["mode", "inspect", "/nonexistent.wasm"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read /nonexistent.wasm"));
}

/// Run `p2pb ARGS`, bounded: a daemon that blocks on its input fails the
/// test instead of hanging it. Returns the exit status and stderr.
fn run_bounded(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String) {
    let mut child = p2pb()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (st, err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("p2pb {args:?} did not exit within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_daemon_refuses_a_policy_or_root_that_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("policy.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let sock = dir.path().join("p2pb.sock");
    let state = dir.path().join("state");
    let daemon = |extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--socket".as_ref(),
            sock.as_os_str(),
            "daemon".as_ref(),
            "--modes".as_ref(),
            dir.path().as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
        ];
        args.extend_from_slice(extra);
        run_bounded(&args)
    };
    let (st, err) = daemon(&["--policy".as_ref(), fifo.as_os_str()]);
    assert!(!st.success());
    assert!(
        err.contains("policy.toml: is a FIFO, not a regular file"),
        "{err}"
    );
    let (st, err) = daemon(&[
        "--policy-dir".as_ref(),
        dir.path().as_os_str(),
        "--root".as_ref(),
        "/dev/zero".as_ref(),
    ]);
    assert!(!st.success());
    assert!(
        err.contains("/dev/zero: is a character device, not a regular file"),
        "{err}"
    );
    assert!(!sock.exists(), "nothing was served");
}
