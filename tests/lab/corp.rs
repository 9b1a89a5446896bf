//! The corporate lab: a host behind a department NAT behind a corporate
//! edge that forwards nothing; the only ways out are the edge's HTTP proxy
//! (tinyproxy, open and with Basic auth) and its SOCKS5 proxy (Dante, with
//! user and password). On the "internet": coturn on two addresses and a
//! peer serving HTTP and a TCP greeting.
//!
//! ```text
//!  pub  (198.51.100.1, .3)  ── coturn; HTTP :8080; TCP hello :7000
//!   │ wanp ─ wan
//!  edge (198.51.100.2 | 172.16.0.1) ── forwards nothing; tinyproxy :3128
//!   │ corp ─ uplink                    (open), :3129 (Basic auth); danted
//!  dept (172.16.0.2 | 10.1.0.1)     ── :1080 (username); department NAT
//!   │ lan ─ eth0                       (masquerade)
//!  host (10.1.0.2)                  ── the broker and the application
//! ```
//!
//! Every command runs through [`CorpLab::exec`] (`ip netns exec`). Dante
//! checks SOCKS passwords against the system's accounts: the lab keeps one
//! locked-out account, [`SOCKS_USER`] (no home, no shell), whose password
//! it sets. Packaged services are never started; each daemon runs in the
//! foreground in its namespace and dies with the lab.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{
    PUB_ALT_IP, PUB_IP, TCP_SERVER, UDP_SERVER, in_netns, require_root_and, run, wait_for_ready,
};

/// The edge's outside address.
pub const EDGE_WAN_IP: &str = "198.51.100.2";
/// The edge's inside address: the proxies listen here.
pub const EDGE_IP: &str = "172.16.0.1";
/// The department router's outside (corporate) address.
pub const DEPT_IP: &str = "172.16.0.2";
/// The department router's LAN address.
pub const DEPT_LAN_IP: &str = "10.1.0.1";
/// The host.
pub const HOST_IP: &str = "10.1.0.2";
/// tinyproxy without authentication.
pub const HTTP_PROXY_PORT: u16 = 3128;
/// tinyproxy with Basic auth ([`PROXY_USER`] / [`PROXY_PASSWORD`]).
pub const HTTP_PROXY_AUTH_PORT: u16 = 3129;
/// Dante.
pub const SOCKS_PORT: u16 = 1080;
/// Ports for [`CorpLab::fake_proxy`] (3130-3139).
pub const FAKE_PROXY_PORTS: std::ops::RangeInclusive<u16> = 3130..=3139;
/// The peer's HTTP server.
pub const PEER_HTTP_PORT: u16 = 8080;
/// The peer's TCP greeting (`hello-from-peer`).
pub const PEER_TCP_PORT: u16 = 7000;
/// Basic auth user of the HTTP proxy.
pub const PROXY_USER: &str = "p2p";
/// Its password.
pub const PROXY_PASSWORD: &str = "proxy-s3cret";
/// The SOCKS account (a system account without login).
pub const SOCKS_USER: &str = "p2pb-socks";
/// Its password.
pub const SOCKS_PASSWORD: &str = "socks-s3cret";

/// The four hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpNs {
    /// The internet peer.
    Pub,
    /// The corporate edge.
    Edge,
    /// The department NAT.
    Dept,
    /// The host.
    Host,
}

/// A running corporate lab; dropping it kills its daemons and deletes its
/// namespaces.
pub struct CorpLab {
    prefix: String,
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    namespaces: Vec<String>,
    turn_cert: Option<super::turn::TurnCert>,
}

/// The edge: nothing forwarded but what the firewall API puts in its
/// `fwapi` chains (allow rules, and DNAT in `fwnat`); the proxies and the
/// API reachable from inside only.
const EDGE_RULES: &str = r#"
table inet edge {
  chain fwapi {
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "wan" jump fwapi
  }
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname "lo" accept
    meta l4proto icmp accept
    iifname "corp" tcp dport { 3128, 3129, 1080, 3130-3139, 8443 } accept
  }
}
table ip fwnat {
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
  }
}
"#;

const FAKE_PROXY: &str = r#"
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); s.settimeout(60)
print("ready", flush=True)
held = []
while True:
    try:
        c, _ = s.accept()
    except socket.timeout:
        break
    c.settimeout(5)
    try:
        c.recv(4096)
    except Exception:
        pass
    if sys.argv[3] == "garbage":
        c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"); c.close()
    elif sys.argv[3] == "close":
        c.close()
    else:
        held.append(c)
"#;

/// The department router: its LAN out, masqueraded; in, only what the
/// corporate network routes to it (the edge decides what that is).
const DEPT_RULES: &str = r#"
table inet dept {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "uplink" accept
    iifname "uplink" oifname "lan" ip daddr 10.1.0.0/24 accept
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr 10.1.0.0/24 oifname "uplink" masquerade
  }
}
"#;

impl CorpLab {
    /// Build the lab and start its daemons; waits until each listens.
    pub fn up() -> CorpLab {
        let tools = [
            "ip",
            "nft",
            "turnserver",
            "tinyproxy",
            "danted",
            "curl",
            "python3",
            "openssl",
        ];
        require_root_and("corporate lab", &tools);
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "p2pb{}c{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = CorpLab {
            prefix,
            dir: tempfile::tempdir().expect("lab folder"),
            children: Vec::new(),
            namespaces: Vec::new(),
            turn_cert: None,
        };
        lab.build_network();
        lab.start_daemons();
        lab
    }

    /// The namespace's name.
    pub fn ns(&self, ns: CorpNs) -> String {
        let tag = match ns {
            CorpNs::Pub => "pub",
            CorpNs::Edge => "edge",
            CorpNs::Dept => "dept",
            CorpNs::Host => "host",
        };
        format!("{}-{tag}", self.prefix)
    }

    fn command(&self, ns: CorpNs, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec"]).arg(self.ns(ns)).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run a command in a lab namespace (any status).
    pub fn exec(&self, ns: CorpNs, args: &[&str]) -> Output {
        self.command(ns, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {ns:?}: {e}"))
    }

    /// Run a command in a lab namespace; panic unless it succeeds.
    pub fn must(&self, ns: CorpNs, args: &[&str]) -> Output {
        run(&mut self.command(ns, args))
    }

    /// Start a long-running command, output to `NAME.log` in the lab folder.
    pub fn spawn(&mut self, ns: CorpNs, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let child = self
            .command(ns, args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    /// Stop what [`CorpLab::spawn`] started as `name` (SIGKILL), and wait
    /// for it.
    pub fn stop(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A file in the lab's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `f` on a thread inside `ns`.
    pub fn in_ns<T: Send + 'static>(
        &self,
        ns: CorpNs,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        in_netns(&self.ns(ns), f)
    }

    /// A UDP application on the host answering `hello-from-host` on
    /// `port` for `secs`; returns once it is bound.
    pub fn listen_udp(&mut self, port: u16, secs: u32) {
        let name = format!("listen-{port}");
        let (port, secs) = (port.to_string(), secs.to_string());
        self.spawn(
            CorpNs::Host,
            &name,
            &["python3", "-c", UDP_SERVER, &port, &secs],
        );
        wait_for_ready(&self.path(&format!("{name}.log")));
    }

    /// The relayed ports coturn holds.
    pub fn relay_allocations(&self) -> Vec<u16> {
        let out = self.must(CorpNs::Pub, &["ss", "-Hlun"]);
        super::turn::allocations(&String::from_utf8_lossy(&out.stdout))
    }

    /// coturn's TLS certificate and the lab CA.
    pub fn turn_cert(&self) -> &super::turn::TurnCert {
        self.turn_cert.as_ref().expect("coturn started")
    }

    /// A daemon's log.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    fn link(&self, a: CorpNs, a_dev: &str, b: CorpNs, b_dev: &str) {
        let peer_ns = self.ns(b);
        self.must(
            a,
            &[
                "ip", "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns",
                &peer_ns,
            ],
        );
    }

    fn build_network(&mut self) {
        use CorpNs::*;
        for ns in [Pub, Edge, Dept, Host] {
            run(Command::new("ip").args(["netns", "add"]).arg(self.ns(ns)));
            self.namespaces.push(self.ns(ns));
            self.must(ns, &["ip", "link", "set", "lo", "up"]);
        }
        // Both ends of every link are created inside lab namespaces.
        self.link(Edge, "wan", Pub, "wanp");
        self.link(Edge, "corp", Dept, "uplink");
        self.link(Dept, "lan", Host, "eth0");
        for (ns, dev, addrs) in [
            (
                Pub,
                "wanp",
                vec![format!("{PUB_IP}/24"), format!("{PUB_ALT_IP}/24")],
            ),
            (Edge, "wan", vec![format!("{EDGE_WAN_IP}/24")]),
            (Edge, "corp", vec![format!("{EDGE_IP}/24")]),
            (Dept, "uplink", vec![format!("{DEPT_IP}/24")]),
            (Dept, "lan", vec![format!("{DEPT_LAN_IP}/24")]),
            (Host, "eth0", vec![format!("{HOST_IP}/24")]),
        ] {
            for a in &addrs {
                self.must(ns, &["ip", "addr", "add", a, "dev", dev]);
            }
            self.must(ns, &["ip", "link", "set", dev, "up"]);
        }
        self.must(Host, &["ip", "route", "add", "default", "via", DEPT_LAN_IP]);
        self.must(Dept, &["ip", "route", "add", "default", "via", EDGE_IP]);
        // The edge routes the department's subnet (DNAT targets) to it.
        self.must(Edge, &["ip", "route", "add", "10.1.0.0/24", "via", DEPT_IP]);
        for ns in [Edge, Dept] {
            self.must(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        }
        for (ns, name, rules) in [
            (Edge, "edge.nft", EDGE_RULES),
            (Dept, "dept.nft", DEPT_RULES),
        ] {
            let file = self.path(name);
            std::fs::write(&file, rules).unwrap();
            self.must(ns, &["nft", "-f", file.to_str().unwrap()]);
        }
    }

    fn start_daemons(&mut self) {
        // The peer: coturn (two addresses, RFC 5780), HTTP, a TCP greeting.
        // Also the TURN relay of the relay tests, reached only through the
        // edge's proxies.
        let cert = super::turn::certificate(&self.path(""));
        let args = super::turn::coturn_args(&self.path(""), &cert);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(CorpNs::Pub, "coturn", &args);
        self.turn_cert = Some(cert);
        let www = self.path("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("hello.txt"), "hello-over-http\n").unwrap();
        let port = PEER_HTTP_PORT.to_string();
        let www = www.to_str().unwrap().to_string();
        self.spawn(
            CorpNs::Pub,
            "http",
            &[
                "python3",
                "-m",
                "http.server",
                &port,
                "--bind",
                PUB_IP,
                "--directory",
                &www,
            ],
        );
        let tcp_port = PEER_TCP_PORT.to_string();
        let script = TCP_SERVER.replace("hello-from-host", "hello-from-peer");
        self.spawn(
            CorpNs::Pub,
            "tcp-peer",
            &["python3", "-c", &script, &tcp_port, "600"],
        );
        wait_for_ready(&self.path("tcp-peer.log"));

        // The edge's proxies.
        for (port, auth) in [(HTTP_PROXY_PORT, false), (HTTP_PROXY_AUTH_PORT, true)] {
            let name = format!("tinyproxy-{port}");
            let conf = self.path(&format!("{name}.conf"));
            let mut text = format!(
                "User nobody\nGroup nogroup\nPort {port}\nListen {EDGE_IP}\nBind {EDGE_WAN_IP}\n\
                 Timeout 30\nMaxClients 64\nAllow 172.16.0.0/24\nLogLevel Info\n"
            );
            if auth {
                text.push_str(&format!("BasicAuth {PROXY_USER} {PROXY_PASSWORD}\n"));
            }
            std::fs::write(&conf, text).unwrap();
            let conf = conf.to_str().unwrap().to_string();
            self.spawn(CorpNs::Edge, &name, &["tinyproxy", "-d", "-c", &conf]);
        }
        ensure_socks_account();
        let conf = self.path("danted.conf");
        std::fs::write(
            &conf,
            format!(
                "logoutput: stderr\ninternal: {EDGE_IP} port = {SOCKS_PORT}\nexternal: {EDGE_WAN_IP}\n\
                 clientmethod: none\nsocksmethod: username\nuser.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{ from: 172.16.0.0/24 to: 0.0.0.0/0 }}\n\
                 socks pass {{ from: 172.16.0.0/24 to: 0.0.0.0/0 command: connect }}\n"
            ),
        )
        .unwrap();
        let pidfile = self.path("danted.pid");
        let (conf, pidfile) = (
            conf.to_str().unwrap().to_string(),
            pidfile.to_str().unwrap().to_string(),
        );
        self.spawn(
            CorpNs::Edge,
            "danted",
            &["danted", "-f", &conf, "-p", &pidfile],
        );
        self.wait_listening(
            CorpNs::Pub,
            &[
                format!("{PUB_IP}:3478"),
                format!("{PUB_ALT_IP}:3479"),
                format!("{PUB_IP}:{}", super::turn::TURN_TLS_PORT),
                format!("{PUB_IP}:{PEER_HTTP_PORT}"),
            ],
        );
        self.wait_listening(
            CorpNs::Edge,
            &[
                format!("{EDGE_IP}:{HTTP_PROXY_PORT}"),
                format!("{EDGE_IP}:{HTTP_PROXY_AUTH_PORT}"),
                format!("{EDGE_IP}:{SOCKS_PORT}"),
            ],
        );
    }

    /// Wait (bounded) until `ns` has a socket listening on each address.
    fn wait_listening(&self, ns: CorpNs, want: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.must(ns, &["ss", "-Hlnut"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if want.iter().all(|w| text.contains(w.as_str())) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not listening after 20 s in {ns:?}: {want:?}\n{text}\n{}{}{}",
                self.log("tinyproxy-3128"),
                self.log("danted"),
                self.log("http")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A fake proxy on the edge at `port` (one of [`FAKE_PROXY_PORTS`]) for
    /// what real proxies do not do: `garbage` (answers a non-HTTP line),
    /// `close` (accepts, reads, closes), `silent` (accepts and never
    /// answers). Returns once it listens.
    pub fn fake_proxy(&mut self, port: u16, behaviour: &str) {
        assert!(FAKE_PROXY_PORTS.contains(&port));
        let name = format!("fake-proxy-{port}");
        let port = port.to_string();
        self.spawn(
            CorpNs::Edge,
            &name,
            &["python3", "-c", FAKE_PROXY, EDGE_IP, &port, behaviour],
        );
        wait_for_ready(&self.path(&format!("{name}.log")));
    }

    /// `curl` from the host with `args` (bounded to 5 s): (HTTP status —
    /// the CONNECT answer's when the tunnel was refused — or 0, body,
    /// curl's exit code).
    pub fn curl(&self, args: &[&str]) -> (u16, String, i32) {
        let mut all = vec![
            "curl",
            "-s",
            "--max-time",
            "5",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_connect}",
        ];
        all.extend_from_slice(args);
        let out = self.exec(CorpNs::Host, &all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, codes) = text.rsplit_once('\n').unwrap_or(("", &text));
        let codes: Vec<u16> = codes
            .split_whitespace()
            .map(|c| c.parse().unwrap_or(0))
            .collect();
        let code = match codes.as_slice() {
            [0, connect] => *connect,
            [code, ..] => *code,
            [] => 0,
        };
        (code, body.to_string(), out.status.code().unwrap_or(-1))
    }
}

/// The SOCKS account Dante checks passwords against: created once per
/// machine (no home, no login shell, no other use), its password set each
/// time. Serialised: two labs set it at once otherwise.
fn ensure_socks_account() {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let exists = Command::new("id")
        .arg(SOCKS_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SOCKS_USER,
        ]));
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd");
    use std::io::Write;
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SOCKS_USER}:{SOCKS_PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
    *done = true;
}

impl Drop for CorpLab {
    fn drop(&mut self) {
        // SIGTERM first: Dante's parent then ends and reaps its workers.
        for (_, c) in &self.children {
            // SAFETY: signalling a child we started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for (_, mut c) in self.children.drain(..) {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            // Whatever still runs in the lab's namespaces is the lab's (Dante's
            // worker processes outlive a killed parent for a moment).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: signalling a process of our own namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}
