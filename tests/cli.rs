//! The `p2pb` command line as a MOD author uses it: build, inspect, run.

#[path = "fake_broker/mod.rs"]
mod fake_broker;
#[path = "harness/mod.rs"]
mod harness;

use std::process::Command;

fn p2pb() -> Command {
    Command::new(harness::p2pb())
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
        imports.contains(&"p2pbroker:mode/broker@0.1.5"),
        "{imports:?}"
    );
    assert_eq!(v["exports"][0], "p2pbroker:mode/lifecycle@0.1.5");

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

/// Whether `out` shows [`fake_broker::HOSTILE`] only escaped: no raw
/// control or bidi character, no forged line, but the escaped text is there.
fn shown_escaped(what: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for raw in ['\u{1b}', '\u{202e}', '\u{9b}', '\r'] {
        assert!(!text.contains(raw), "{what}: raw {raw:?} in {text:?}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("2030-01-01")),
        "{what}: a forged line in {text:?}"
    );
    assert!(text.contains("\\u{1b}[2J"), "{what}: {text:?}");
}

#[test]
fn text_from_the_broker_reaches_the_terminal_escaped() {
    let broker = fake_broker::start(fake_broker::hostile, 60);
    let run = |args: &[&str]| {
        p2pb()
            .arg("--socket")
            .arg(&broker.socket)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["probe"][..],
        &["probe", "--cached"],
        &["status"],
        &["list"],
    ] {
        let o = run(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        shown_escaped(&format!("{args:?}"), &o.stdout);
        // The CLI's own line breaks stay line breaks.
        let text = String::from_utf8_lossy(&o.stdout);
        let own = match args[0] {
            "probe" => "why: ",
            "status" => "gateways: ",
            _ => "LEASE",
        };
        assert!(text.lines().any(|l| l.starts_with(own)), "{args:?}: {text}");
        assert!(
            !text.contains("\\u{a}why") && !text.ends_with("\\u{a}"),
            "{text}"
        );
    }
    // A refusal: its message and every MOD's reason, on stderr.
    let o = run(&["map", "tcp", "6881", "--detach"]);
    assert_eq!(o.status.code(), Some(1));
    shown_escaped("map", &o.stderr);
    // JSON output escapes them too, and still reads back the same.
    for args in [
        &["probe", "--json"][..],
        &["status", "--json"],
        &["list", "--json"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}");
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && p2pbroker::text::is_unsafe(c)),
            "{args:?}: {text:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v.to_string().contains("2030-01-01 FORGED"), "{v}");
        let found = match args[0] {
            "probe" => v["why"].as_str(),
            "status" => v["policy"]["error"].as_str(),
            _ => v[0]["mode"].as_str(),
        };
        assert_eq!(found, Some(fake_broker::HOSTILE), "{args:?}");
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

#[test]
fn lan_token_makes_a_long_token_and_its_policy_line() {
    let o = p2pb().args(["lan", "token", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(token.len() >= p2pbroker::daemon::server::lan::MIN_TOKEN_CHARS);
    assert_eq!(
        v["token_sha256"],
        hex::encode(p2pbroker::sha256(token.as_bytes()))
    );
    let o = p2pb().args(["lan", "token"]).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("policy  token_sha256 = [\""))
        .and_then(|l| l.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("{text}"));
    // The printed line is valid policy text.
    let policy =
        format!("version = 1\n[lan]\nlisten = \"127.0.0.1:7400\"\ntoken_sha256 = [\"{digest}\"]\n");
    p2pbroker::policy::Policy::parse(&policy).unwrap();
}

/// Words a command cannot mean are a usage error (exit 2) before any
/// broker is asked: the socket named here does not exist, which would be
/// exit 3.
#[test]
fn bad_words_are_usage_errors_before_the_broker_is_asked() {
    let none = "/nonexistent/broker.sock";
    for (args, says) in [
        (&["unmap", "tcp"][..], "not a lease id"),
        (&["unmap", "sctp", "80"][..], "not tcp or udp"),
        (&["unmap", "tcp", "http"][..], "not a port"),
        (&["map", "tcp", "0"][..], "0 is not in 1..=65535"),
        (
            &["map", "tcp", "80", "--external-port", "0"][..],
            "1..=65535",
        ),
    ] {
        let o = p2pb().args(["--socket", none]).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A well-formed TRANSPORT PORT goes on to the broker (none here).
    let o = p2pb()
        .args(["--socket", none, "unmap", "tcp", "80"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn without_a_socket_path_the_cli_says_what_to_set() {
    // No P2PB_SOCKET, no runtime folder: a user's CLI has no /tmp fallback
    // (another user could squat it) but says what to set. As root, run it
    // as nobody, since root's default is the system socket.
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(harness::p2pb());
        c
    } else {
        p2pb()
    };
    let o = cmd
        .arg("list")
        .env_remove("P2PB_SOCKET")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let system = std::path::Path::new(p2pbroker_client::SYSTEM_SOCKET).exists();
    if system {
        // A system broker on this host serves every user.
        assert!(
            o.status.success() || err.contains(p2pbroker_client::SYSTEM_SOCKET),
            "{err}"
        );
    } else {
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(
            err.contains("P2PB_SOCKET") && err.contains("XDG_RUNTIME_DIR"),
            "{err}"
        );
        assert!(!err.contains("/tmp"), "{err}");
    }
}

#[test]
fn the_daemon_refuses_a_socket_folder_others_can_write() {
    // Directly in /tmp: anyone could have put a socket or link there, or
    // replace ours. Refused before anything else is started.
    let state = tempfile::tempdir().unwrap();
    let o = p2pb()
        .args(["--socket", "/tmp/p2pb-test-refused.sock", "daemon"])
        .args(["--modes", "/nonexistent", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("refusing to put the socket in /tmp"), "{err}");
    assert!(!std::path::Path::new("/tmp/p2pb-test-refused.sock").exists());
}

/// Set in the child that plays a broker run by another user.
const UNTRUSTED_CHILD: &str = "P2PB_TEST_UNTRUSTED_BROKER_AT";

#[test]
fn the_cli_refuses_a_broker_running_as_another_user() {
    use std::time::{Duration, Instant};
    if let Some(sock) = std::env::var_os(UNTRUSTED_CHILD) {
        // The child: listen as nobody, note whether the client sent a byte.
        let sock = std::path::PathBuf::from(sock);
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok((mut s, _)) = l.accept() {
                use std::io::Read;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut b = [0u8; 64];
                if matches!(s.read(&mut b), Ok(n) if n > 0) {
                    std::fs::write(sock.with_extension("got-bytes"), b).unwrap();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no client came");
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root: it runs the fake broker as another user with setpriv"
    );
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let sock = theirs.join("broker.sock");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_cli_refuses_a_broker_running_as_another_user",
            "--nocapture",
        ])
        .env(UNTRUSTED_CHILD, &sock)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the fake broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = p2pb()
        .arg("--socket")
        .arg(&sock)
        .arg("list")
        .env_remove("P2PB_BROKER_UID")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("runs as uid 65534"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the fake broker did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        !sock.with_extension("got-bytes").exists(),
        "the CLI sent a request to an untrusted broker"
    );
}

/// The `tls` import (contract 0.1.3) refuses before any handshake: an
/// endpoint the grant does not cover, a MOD without a pinned certificate;
/// a server that is not there is `unavailable` with the address named.
/// Loopback only.
#[test]
fn pinned_tls_refuses_what_the_policy_does_not_grant_or_pin() {
    let path = harness::component_path("modes/corp-firewall");
    let pin = "ab".repeat(32);
    let run = |grants: &[&str], config: &[String]| {
        let mut c = p2pb();
        c.args(["mode", "run", "--json"]);
        for g in grants {
            c.args(["--grant", g]);
        }
        for kv in config {
            c.args(["--config", kv]);
        }
        let o = c.arg(&path).arg("probe").output().unwrap();
        assert!(!o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
        v["error"].clone()
    };
    let base = |pin: Option<&str>| {
        let mut c = vec![
            "api=127.0.0.1:1".to_string(),
            "token=t".to_string(),
            "external_address=198.51.100.2".to_string(),
        ];
        if let Some(p) = pin {
            c.push(format!("tls_pin={p}"));
        }
        c
    };
    // The gate's refusal, reported (and audited) as the call's denial.
    let e = run(&[], &base(Some(&pin)));
    assert_eq!(
        (&e["kind"], &e["address"]),
        (&"denied".into(), &"127.0.0.1:1".into()),
        "{e}"
    );
    let e = run(&["tcp:connect@api:1-65535"], &base(None));
    assert_eq!(e["mode_error"], "denied", "{e}");
    assert!(e.to_string().contains("`tls_pin` is not set"), "{e}");
    let e = run(&["tcp:connect@api:1-65535"], &base(Some("not-hex")));
    assert!(e.to_string().contains("not a SHA-256"), "{e}");
    let e = run(&["tcp:connect@api:1-65535"], &base(Some(&pin)));
    assert_eq!(e["mode_error"], "unavailable", "{e}");
    assert!(
        e.to_string().contains("cannot connect to 127.0.0.1:1"),
        "{e}"
    );
}

/// `p2pb policy check`: every problem on its line (exit 1), or what a
/// valid policy grants without its secrets; with `--modes`, which
/// components it admits — an unsigned MOD the policy wants signed is
/// refused until the security team signs it.
#[test]
fn policy_check_reports_every_problem_and_what_a_policy_grants() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\norder = [\"ghost\"]\n[broker]\nmapping_lifetime = 0\n\
         [modes.pcp]\ngrants = [\"udp:send@mars:1\"]\n",
    )
    .unwrap();
    let o = p2pb().args(["policy", "check"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    for (line, what) in [(2, "ghost"), (3, "mapping_lifetime"), (5, "mars")] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("bad.toml:{line}:")) && l.contains(what)),
            "{what} on line {line}: {out}"
        );
    }
    assert!(out.contains("3 problem(s)"), "{out}");

    // A valid policy: grants, signatures, who may map; no secret.
    let key = dir.path().join("security");
    let o = p2pb()
        .args(["key", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success());
    let shown = p2pb()
        .args(["key", "show"])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    let public = shown
        .lines()
        .find_map(|l| l.strip_prefix("public"))
        .unwrap()
        .trim();
    let policy = dir.path().join("corp.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\norder = [\"corp-firewall\"]\n[trust]\nthreshold = 0\n\
             [trust.keys]\nsecurity = \"{public}\"\n\
             [modes.corp-firewall]\nsigners = [\"security\"]\nthreshold = 1\n\
             grants = [\"tcp:connect@api:1-65535\"]\n\
             config = {{ api = \"172.16.0.1:8443\", token = \"s3cret-token\" }}\n\
             [[access]]\nuids = [990]\nports = \"40000-40100\"\n"
        ),
    )
    .unwrap();
    let o = p2pb()
        .args(["policy", "check", "--json"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["modes"][0]["grants"][0], "tcp:connect@api:1-65535");
    assert_eq!(v["modes"][0]["config"]["token"], "(set)");
    // The built-in corp-firewall is unsigned: shown refused, the only
    // built-in listed (the policy names no other).
    let c = v["components"].as_array().unwrap();
    assert_eq!(c.len(), 1, "{v}");
    assert_eq!(c[0]["file"], "built-in:p2pbroker-mode-corp-firewall.wasm");
    assert_eq!(
        (&c[0]["builtin"], &c[0]["admitted"]),
        (&true.into(), &false.into())
    );
    assert_eq!(v["access"][0]["ports"], "40000-40100");
    assert!(!v.to_string().contains("s3cret-token"));

    // The folder the daemon would load: unsigned, refused; signed, admitted.
    let modes = dir.path().join("modes");
    std::fs::create_dir(&modes).unwrap();
    let component = modes.join("corp-firewall.wasm");
    std::fs::copy(harness::component_path("modes/corp-firewall"), &component).unwrap();
    let check = || {
        let o = p2pb()
            .args(["policy", "check", "--json", "--modes"])
            .arg(&modes)
            .arg(&policy)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), v["components"][0].clone())
    };
    let (code, c) = check();
    assert_eq!((code, &c["admitted"]), (Some(1), &false.into()), "{c}");
    assert!(c["why"].as_str().unwrap().contains("signed by 0"), "{c}");
    let o = p2pb()
        .args(["mode", "sign", "--key"])
        .arg(key.with_extension("key"))
        .arg(&component)
        .output()
        .unwrap();
    assert!(o.status.success());
    let (code, c) = check();
    assert_eq!((code, &c["admitted"]), (Some(0), &true.into()), "{c}");
    assert_eq!(c["signers"][0], "security");
    assert_eq!(c["grants"][0], "tcp:connect@api:1-65535");
}

#[test]
fn the_signing_commands_speak_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> serde_json::Value {
        let o = p2pb().args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {o:?}"))
    };
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let base = dir.path().join("team");
    let k = run(&["key", "generate", "--json", "--out", &s(&base)]);
    let id = k["key_id"].as_str().unwrap().to_string();
    let show = run(&["key", "show", "--json", &s(&base.with_extension("pub"))]);
    assert_eq!(
        (&show["key_id"], &show["public"]),
        (&k["key_id"], &k["public"])
    );
    // A built-in MOD, exported, signed and verified.
    let modes = dir.path().join("modes");
    let listed = run(&["mode", "builtin", "--json", "--export", &s(&modes)]);
    let file = modes.join(listed[0]["file"].as_str().unwrap());
    let key = s(&base.with_extension("key"));
    let signed = run(&["mode", "sign", "--json", "--key", &key, &s(&file)]);
    assert_eq!(
        (signed["key_id"].as_str(), signed["signatures"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    let v = run(&[
        "mode",
        "verify",
        "--json",
        &s(&file),
        "--key",
        &s(&base.with_extension("pub")),
    ]);
    assert_eq!(
        (v["valid"].as_bool(), v["keys"][0]["signed"].as_bool()),
        (Some(true), Some(true))
    );
    // A policy, signed and published.
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, p2pbroker::policy::DEFAULT_POLICY).unwrap();
    let ps = run(&["policy", "sign", "--json", "--key", &key, &s(&policy)]);
    assert!(
        ps["signature_file"]
            .as_str()
            .unwrap()
            .ends_with("policy.toml.sig"),
        "{ps}"
    );
    let site = dir.path().join("site");
    let pub_ = run(&[
        "policy",
        "publish",
        "--json",
        &s(&policy),
        "--to",
        &s(&site),
    ]);
    assert!(
        pub_[0]["published"]
            .as_str()
            .unwrap()
            .ends_with("policy.toml"),
        "{pub_}"
    );
    assert!(site.join("policy.toml.sig").exists());
    // The allow.list the export wrote lists every component by hash.
    let allow = std::fs::read_to_string(modes.join("allow.list")).unwrap();
    assert_eq!(allow.lines().count(), listed.as_array().unwrap().len());
}

/// `p2pb` runs the client commands and hands every other one to `p2pbd`
/// from its own folder; without `p2pbd` beside it, it says so.
#[test]
fn p2pb_hands_the_other_commands_to_p2pbd_beside_it() {
    let p2pb = std::path::Path::new(harness::p2pb());
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("p2pb");
    std::fs::copy(p2pb, &alone).unwrap();
    let o = Command::new(&alone)
        .args(["mode", "builtin", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "bad usage/input exit code");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("p2pbd") && err.contains("cannot be started"),
        "{err}"
    );
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_p2pbd"), dir.path().join("p2pbd")).unwrap();
    let o = Command::new(&alone)
        .args(["mode", "builtin", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().any(|m| m["mode"] == "nat-pmp"),
        "{v}"
    );
    // A client command runs in p2pb itself: with no broker it exits 3.
    let o = Command::new(&alone)
        .args(["--socket"])
        .arg(dir.path().join("none.sock"))
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The client carries no WebAssembly engine: what makes `p2pbd` big and
/// slow to start is not linked into the command every script runs.
#[test]
fn p2pb_does_not_carry_the_engine() {
    let has = |path: &str, what: &[u8]| {
        let bytes = std::fs::read(path).unwrap();
        bytes.windows(what.len()).any(|w| w == what)
    };
    let (client, full) = (harness::p2pb(), env!("CARGO_BIN_EXE_p2pbd"));
    // The code generator (its panic locations name its crate) and the
    // built-in MODs (their file names): in p2pbd, so the test looks for
    // the right things; not in p2pb.
    for what in [&b"cranelift-codegen"[..], b"p2pbroker-mode-nat-pmp"] {
        let name = String::from_utf8_lossy(what);
        assert!(has(full, what), "p2pbd has {name}");
        assert!(!has(client, what), "p2pb has {name}");
    }
}
