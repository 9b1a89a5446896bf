//! Running the real broker daemon inside a lab namespace, and its CLI
//! beside it, exactly as an operator would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness;
use crate::lab::{Lab, Ns};

/// The MODs shipped with the broker.
pub const BUILT_IN: &[&str] = &[
    "modes/direct",
    "modes/nat-pmp",
    "modes/pcp",
    "modes/static",
    "modes/upnp-igd",
    "modes/stun",
];

/// A folder holding every built-in MOD and its allow.list (built once per
/// test process).
pub fn modes_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = harness::root().join(format!("target/tmp/daemon-modes-{}", std::process::id()));
        modes_folder(&dir, BUILT_IN)
    })
}

/// A MODs folder at `dir` holding the MODs built from `rels` (crate
/// folders) and their allow-list.
pub fn modes_folder(dir: &Path, rels: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut allow = String::new();
    for rel in rels {
        let src = harness::component_path(rel);
        let bytes = std::fs::read(&src).unwrap();
        let name = src.file_name().unwrap();
        std::fs::write(dir.join(name), &bytes).unwrap();
        let sha = hex::encode(p2pbroker::sha256(&bytes));
        allow.push_str(&format!("{sha}  {}\n", name.to_string_lossy()));
    }
    std::fs::write(dir.join("allow.list"), allow).unwrap();
    dir.to_path_buf()
}

/// A MODs folder at `dir` holding the hostile test MOD and its allow-list.
pub fn hostile_modes(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let bytes = harness::component("tests/guests/hostile");
    std::fs::write(dir.join("hostile.wasm"), &bytes).unwrap();
    let sha = hex::encode(p2pbroker::sha256(&bytes));
    std::fs::write(dir.join("allow.list"), format!("{sha}  hostile.wasm\n")).unwrap();
    dir.to_path_buf()
}

/// A broker daemon running in a lab's host namespace. It keeps only the
/// namespace's name and the lab folder, so the test may still restart the
/// gateway (`&mut Lab`) while it runs.
pub struct Daemon {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
    name: String,
    /// Its API socket.
    pub socket: PathBuf,
    /// Its state folder (journal, cache, audit log).
    pub state: PathBuf,
    /// `None`: the built-in policy.
    policy: Option<PathBuf>,
    /// `None`: the built-in MODs only.
    modes: Option<PathBuf>,
    extra: Vec<String>,
}

impl Daemon {
    /// Start a daemon named `name` with `policy` (TOML text) and wait until
    /// it answers.
    pub fn start(lab: &Lab, name: &str, policy: &str) -> Daemon {
        Daemon::start_in(&lab.ns(Ns::Host), &lab.path(""), name, policy)
    }

    /// Start a daemon in namespace `ns`, its files in `dir`.
    pub fn start_in(ns: &str, dir: &Path, name: &str, policy: &str) -> Daemon {
        Daemon::start_with(ns, dir, name, policy, modes_dir(), &[])
    }

    /// Start a daemon with its own MODs folder and extra `daemon` options.
    pub fn start_with(
        ns: &str,
        dir: &Path,
        name: &str,
        policy: &str,
        modes: &Path,
        extra: &[&str],
    ) -> Daemon {
        let policy_path = dir.join(format!("{name}.toml"));
        std::fs::write(&policy_path, policy).unwrap();
        let mut d = Daemon {
            ns: ns.to_string(),
            dir: dir.to_path_buf(),
            child: None,
            name: name.to_string(),
            socket: dir.join(format!("{name}.sock")),
            state: dir.join(format!("{name}-state")),
            policy: Some(policy_path),
            modes: Some(modes.to_path_buf()),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.launch();
        d
    }

    /// Start a daemon as an operator would with no flags but its socket
    /// and state folder: the built-in policy and MODs.
    pub fn start_out_of_the_box(lab: &Lab, name: &str) -> Daemon {
        let dir = lab.path("");
        let mut d = Daemon {
            ns: lab.ns(Ns::Host),
            dir: dir.clone(),
            child: None,
            name: name.to_string(),
            socket: dir.join(format!("{name}.sock")),
            state: dir.join(format!("{name}-state")),
            policy: None,
            modes: None,
            extra: Vec::new(),
        };
        d.launch();
        d
    }

    fn launch(&mut self) {
        let mut args = vec![
            crate::harness::p2pb(),
            "--log",
            "info",
            "--socket",
            self.socket.to_str().unwrap(),
            "daemon",
            "--state-dir",
            self.state.to_str().unwrap(),
        ];
        if let Some(m) = &self.modes {
            args.extend(["--modes", m.to_str().unwrap()]);
        }
        if let Some(p) = &self.policy {
            args.extend(["--policy", p.to_str().unwrap()]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        self.child = Some(self.spawn(&self.name, &args));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.socket.exists() && self.cli(&["status", "--json"]).status.success() {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("daemon exited ({st}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer within 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Start a command in the daemon's namespace, output to `DIR/log.log`.
    /// What a command started by [`Daemon::hold`] printed so far.
    pub fn held_output(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{log}.log"))).unwrap_or_default()
    }

    fn spawn(&self, log: &str, args: &[&str]) -> Child {
        let f = std::fs::File::create(self.dir.join(format!("{log}.log"))).unwrap();
        self.command(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"))
    }

    /// Run `p2pb --socket S ARGS` in the host namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.p2pb_after(&[], args)
    }

    /// Run `p2pb --socket S ARGS` as user 65534 (nobody) in the daemon's
    /// namespace (the socket's folder must let that user reach it).
    pub fn cli_as_nobody(&self, args: &[&str]) -> Output {
        let setpriv = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        self.p2pb_after(&setpriv, args)
    }

    /// Run `PREFIX... p2pb --socket S ARGS` in the daemon's namespace.
    fn p2pb_after(&self, prefix: &[&str], args: &[&str]) -> Output {
        let mut all = prefix.to_vec();
        all.extend([
            crate::harness::p2pb(),
            "--socket",
            self.socket.to_str().unwrap(),
        ]);
        all.extend_from_slice(args);
        self.command(&all)
            .output()
            .unwrap_or_else(|e| panic!("cannot run p2pb: {e}"))
    }

    /// Run a CLI command that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "p2pb {args:?} failed: {}{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "p2pb {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `p2pb map udp PORT --mode turn-relay --detach --json`: the relayed
    /// lease.
    pub fn map_relayed(&self, port: u16) -> Value {
        let port = port.to_string();
        self.json(&[
            "map",
            "udp",
            &port,
            "--mode",
            "turn-relay",
            "--detach",
            "--json",
        ])
    }

    /// Start `p2pb map ... --json` holding its lease; its output goes to the
    /// lab log `log`.
    pub fn hold(&self, log: &str, args: &[&str]) -> Child {
        let mut all = vec![
            crate::harness::p2pb(),
            "--socket",
            self.socket.to_str().unwrap(),
            "map",
            "--json",
        ];
        all.extend_from_slice(args);
        self.spawn(log, &all)
    }

    /// Kill the daemon with SIGKILL (a crash: no cleanup at all).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `ip netns exec` execs the daemon, so this pid is the daemon.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send SIGTERM and return at once (the stop goes on; `stop` waits).
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(st.success(), "daemon exit status {st}: {}", self.log());
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            panic!("daemon did not exit within 20 s of SIGTERM: {}", self.log());
        }
    }

    /// Replace its policy file with `policy` and send SIGHUP (what
    /// `systemctl reload` does).
    pub fn reload(&self, policy: &str) {
        let path = self.policy.as_ref().expect("started with a policy file");
        std::fs::write(path, policy).unwrap();
        let c = self.child.as_ref().expect("the daemon runs");
        // SAFETY: signalling our own child (`ip netns exec` execs it).
        unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
    }

    /// Start it again after `kill9` or `stop`.
    pub fn restart(&mut self) {
        self.launch();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child; SIGTERM releases its leases.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait (bounded) until `f` holds; panics with `what` otherwise.
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not within {secs} s: {what}");
}

/// Kills and reaps a helper process (listener, holding client) when the
/// test ends, however it ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
