//! The NAT lab: network namespaces the test builds and always tears down,
//! with real Debian software in them.
//!
//! ```text
//!  pub (198.51.100.1, .3)  ── public peer; coturn as STUN server for miniupnpd
//!   │ wanp ─ wan
//!  gw  (198.51.100.2 | 10.0.0.1) ── miniupnpd (UPnP IGD, NAT-PMP, PCP), nftables NAT
//!   │ lan ─ eth0
//!  host (10.0.0.2) ── the broker and the application behind NAT
//! ```
//!
//! [`Lab::up_dual_stack`] adds IPv6 on top ([`v6`]): the host's own IPv6
//! address behind the gateway's firewall, reachable only through pinholes.
//!
//! Every command runs through [`Lab::exec`] (`ip netns exec`), never in the
//! root namespace, so nothing reaches an address outside the lab. Each lab
//! has its own namespace prefix, so parallel tests do not collide. Needs
//! root and the packages `.ci/run` installs; without them it panics with
//! what is missing (tests never skip silently).
#![allow(dead_code)]

pub mod corp;
pub mod deployed;
pub mod fwapi;
pub mod nat;
pub mod registry;
pub mod site;
pub mod turn;
pub mod v6;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Lab addresses (RFC 5737 for the "public" side, RFC 1918 behind NAT).
pub const PUB_IP: &str = "198.51.100.1";
/// Second public address (coturn's RFC 5780 alternate address).
pub const PUB_ALT_IP: &str = "198.51.100.3";
/// The lab TURN relay's realm and long-term credentials (coturn on PUB_IP).
pub const TURN_REALM: &str = "lab.invalid";
/// The TURN user.
pub const TURN_USER: &str = "alice";
/// Its password.
pub const TURN_PASSWORD: &str = "wonderland";
/// A second TURN user (its own quota), for coturn's own client.
pub const TURN_USER2: &str = "bob";
/// Its password.
pub const TURN_PASSWORD2: &str = "builder";
/// The gateway's WAN address.
pub const WAN_IP: &str = "198.51.100.2";
/// The gateway's LAN address.
pub const GW_LAN_IP: &str = "10.0.0.1";
/// The host behind NAT.
pub const HOST_IP: &str = "10.0.0.2";
/// miniupnpd's HTTP port (fixed, for `upnpc -u`).
pub const UPNP_HTTP_PORT: u16 = 5000;

/// The three hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// The public peer.
    Pub,
    /// The NAT gateway.
    Gw,
    /// The host behind NAT.
    Host,
}

/// What the gateway offers.
#[derive(Debug, Clone, Copy)]
pub struct GatewayOptions {
    /// UPnP IGD on.
    pub upnp: bool,
    /// NAT-PMP and PCP on.
    pub natpmp: bool,
    /// How its NAT maps and filters UDP.
    pub nat: NatKind,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            upnp: true,
            natpmp: true,
            nat: NatKind::PortRestricted,
        }
    }
}

/// The gateway's UDP NAT behaviour, in the classic names and RFC 4787's
/// (mapping / filtering). The port is kept whenever it is free, as Linux
/// does, except for `Symmetric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering, with hairpinning: any
    /// host may send to a port the LAN host has used (a dynamic set of
    /// used ports, DNAT for them; hairpinned packets masqueraded).
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering: only
    /// addresses the LAN host has sent to, from any of their ports.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering:
    /// plain conntrack `masquerade` (the lab's default).
    PortRestricted,
    /// Address-and-port-dependent mapping and filtering: `masquerade
    /// fully-random`, a new port per destination.
    Symmetric,
}

/// A running lab; dropping it kills its daemons and deletes its namespaces.
pub struct Lab {
    prefix: String,
    dir: tempfile::TempDir,
    opts: GatewayOptions,
    miniupnpd: Option<Child>,
    coturn: Option<Child>,
    turn_cert: Option<turn::TurnCert>,
    namespaces: Vec<String>,
    dual_stack: bool,
    /// miniupnpd runs as deployed, in the background ([`deployed`]).
    deployed: bool,
}

/// Panic unless running as root with every tool of `tools` on PATH:
/// `lab` names the lab in the message (tests never skip silently).
fn require_root_and(lab: &str, tools: &[&str]) {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the {lab} needs root (network namespaces); run the suite as root, as CI does"
    );
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        assert!(
            found,
            "the {lab} needs `{tool}`: run .ci/run (it installs the lab's Debian packages)"
        );
    }
}

fn require_root_and_tools() {
    let tools = [
        "ip",
        "nft",
        "miniupnpd",
        "turnserver",
        "openssl",
        "natpmpc",
        "upnpc",
        "python3",
        "turnutils_natdiscovery",
    ];
    require_root_and("NAT lab", &tools);
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Lab {
    /// Build the IPv4 lab and start its daemons; waits until the gateway
    /// answers.
    pub fn up(opts: GatewayOptions) -> Lab {
        Lab::build(opts, false)
    }

    fn build(opts: GatewayOptions, dual_stack: bool) -> Lab {
        Lab::build_with(opts, dual_stack, false)
    }

    fn build_with(opts: GatewayOptions, dual_stack: bool, deployed: bool) -> Lab {
        require_root_and_tools();
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "p2pb{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix,
            dir: tempfile::tempdir().expect("lab folder"),
            opts,
            miniupnpd: None,
            coturn: None,
            turn_cert: None,
            namespaces: Vec::new(),
            dual_stack,
            deployed,
        };
        lab.build_network();
        lab.start_coturn();
        lab.start_miniupnpd();
        lab.wait_coturn();
        lab
    }

    /// Wait (bounded) until coturn listens on both addresses and both
    /// ports (RFC 5780 needs all four).
    fn wait_coturn(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = [
            format!("{PUB_IP}:3478"),
            format!("{PUB_IP}:3479"),
            format!("{PUB_ALT_IP}:3478"),
            format!("{PUB_ALT_IP}:3479"),
        ];
        let tls = format!("{PUB_IP}:{}", turn::TURN_TLS_PORT);
        loop {
            let out = self.must(Ns::Pub, &["ss", "-Hlunt"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if want.iter().all(|w| text.contains(w.as_str())) && text.contains(&tls) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "coturn not listening after 20 s:\n{text}\n{}",
                self.log("coturn")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The namespace's name.
    pub fn ns(&self, ns: Ns) -> String {
        let tag = match ns {
            Ns::Pub => "pub",
            Ns::Gw => "gw",
            Ns::Host => "host",
        };
        format!("{}-{tag}", self.prefix)
    }

    fn command(&self, ns: Ns, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec"]).arg(self.ns(ns)).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run a command in a lab namespace and return its output (any status).
    pub fn exec(&self, ns: Ns, args: &[&str]) -> Output {
        self.command(ns, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {ns:?}: {e}"))
    }

    /// Run a command in a lab namespace; panic unless it succeeds.
    pub fn must(&self, ns: Ns, args: &[&str]) -> Output {
        run(&mut self.command(ns, args))
    }

    /// Start a long-running command in a namespace, output to a log file.
    pub fn spawn(&self, ns: Ns, name: &str, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        self.command(ns, args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// A file in the lab's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn build_network(&mut self) {
        for ns in [Ns::Pub, Ns::Gw, Ns::Host] {
            run(Command::new("ip").args(["netns", "add"]).arg(self.ns(ns)));
            self.namespaces.push(self.ns(ns));
            self.must(ns, &["ip", "link", "set", "lo", "up"]);
            if self.dual_stack {
                self.disable_dad(ns);
            }
        }
        // Both ends are created inside lab namespaces: nothing is attached
        // to the root namespace.
        let (pubn, gw, host) = (self.ns(Ns::Pub), self.ns(Ns::Gw), self.ns(Ns::Host));
        self.must(
            Ns::Gw,
            &[
                "ip", "link", "add", "wan", "type", "veth", "peer", "name", "wanp", "netns", &pubn,
            ],
        );
        self.must(
            Ns::Gw,
            &[
                "ip", "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", &host,
            ],
        );
        let _ = gw;
        for (ns, dev, addrs) in [
            (
                Ns::Pub,
                "wanp",
                vec![format!("{PUB_IP}/24"), format!("{PUB_ALT_IP}/24")],
            ),
            (Ns::Gw, "wan", vec![format!("{WAN_IP}/24")]),
            (Ns::Gw, "lan", vec![format!("{GW_LAN_IP}/24")]),
            (Ns::Host, "eth0", vec![format!("{HOST_IP}/24")]),
        ] {
            for a in &addrs {
                self.must(ns, &["ip", "addr", "add", a, "dev", dev]);
            }
            self.must(ns, &["ip", "link", "set", dev, "up"]);
        }
        self.must(
            Ns::Host,
            &["ip", "route", "add", "default", "via", GW_LAN_IP],
        );
        self.must(Ns::Gw, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        if self.dual_stack {
            self.add_ipv6();
        }
        let rules = self.path("gw.nft");
        std::fs::write(&rules, gw_rules(self.opts.nat)).unwrap();
        self.must(Ns::Gw, &["nft", "-f", rules.to_str().unwrap()]);
    }

    fn start_coturn(&mut self) {
        // STUN for miniupnpd: it refuses to forward on a reserved WAN address
        // unless STUN (RFC 5780, hence two addresses) shows no NAT in front.
        // Also the "internet's" TURN relay (long-term credentials), relaying
        // on PUB_IP; a Binding request needs no credentials.
        if self.turn_cert.is_none() {
            self.turn_cert = Some(turn::certificate(&self.path("")));
        }
        let v = turn::coturn_args(&self.path(""), self.turn_cert.as_ref().unwrap());
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        self.coturn = Some(self.spawn(Ns::Pub, "coturn", &refs));
    }

    fn miniupnpd_conf(&self) -> String {
        let yn = |b: bool| if b { "yes" } else { "no" };
        format!(
            "ext_ifname=wan\nlistening_ip=lan\nhttp_port={UPNP_HTTP_PORT}\n\
             enable_natpmp={}\nenable_upnp={}\nsecure_mode=yes\nsystem_uptime=no\n\
             uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
             ext_perform_stun=yes\next_stun_host={PUB_IP}\next_stun_port=3478\n\
             lease_file={}\nlease_file6={}\nmin_lifetime=120\nmax_lifetime=86400\n\
             upnp_table_name=filter\nupnp_forward_chain=miniupnpd\n\
             allow 1024-65535 10.0.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            yn(self.opts.natpmp),
            yn(self.opts.upnp),
            self.path("leases").display(),
            self.path("leases6").display()
        )
    }

    fn start_miniupnpd(&mut self) {
        let conf = self.path("miniupnpd.conf");
        std::fs::write(&conf, self.miniupnpd_conf()).unwrap();
        let pid = self.path("miniupnpd.pid");
        let mut args = vec!["miniupnpd", "-f", conf.to_str().unwrap()];
        args.extend(["-P", pid.to_str().unwrap()]);
        if !self.deployed {
            args.push("-d");
        }
        let child = self.spawn(Ns::Gw, "miniupnpd", &args);
        self.miniupnpd = Some(child);
        self.wait_ready();
    }

    /// Stop miniupnpd: our child in debug mode; in the background when
    /// run as deployed (its `ip netns exec` parent exits at once).
    fn stop_miniupnpd(&mut self) {
        if let Some(mut c) = self.miniupnpd.take() {
            let _ = c.kill();
            let _ = c.wait();
            if self.deployed {
                deployed::stop_gateway(&self.path("miniupnpd.pid"));
            }
        }
    }

    /// The gateway's NAT-PMP epoch (seconds since its mappings were last
    /// reset), as `natpmpc` prints it; `None` if it does not answer.
    pub fn gateway_epoch(&self) -> Option<u32> {
        let out = self.exec(Ns::Host, &["natpmpc", "-g", GW_LAN_IP]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("epoch = ")?.trim().parse().ok())
    }

    /// Wait (bounded) until the gateway serves what it was configured for.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.upnp_url();
        loop {
            let ok = if self.opts.natpmp {
                self.exec(Ns::Host, &["natpmpc", "-g", GW_LAN_IP])
                    .status
                    .success()
            } else if self.opts.upnp {
                self.exec(Ns::Host, &["upnpc", "-u", &url, "-s"])
                    .status
                    .success()
            } else {
                true
            };
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready after 20 s; miniupnpd log:\n{}",
                self.log("miniupnpd")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// miniupnpd's root description URL.
    pub fn upnp_url(&self) -> String {
        format!("http://{GW_LAN_IP}:{UPNP_HTTP_PORT}/rootDesc.xml")
    }

    /// A daemon's log.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Kill miniupnpd, flush the rules it made and its leases, and start it
    /// again: a gateway reboot as far as mappings go.
    pub fn restart_gateway(&mut self) {
        self.stop_miniupnpd();
        for chain in ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"] {
            self.must(Ns::Gw, &["nft", "flush", "chain", "inet", "filter", chain]);
        }
        // Both lease files: miniupnpd re-creates what they list on start.
        let _ = std::fs::remove_file(self.path("leases"));
        let _ = std::fs::remove_file(self.path("leases6"));
        self.start_miniupnpd();
    }

    /// The relayed ports coturn holds now (one UDP socket per allocation
    /// on PUB_IP, from 49152): its own record of live allocations.
    pub fn relay_allocations(&self) -> Vec<u16> {
        let out = self.must(Ns::Pub, &["ss", "-Hlun"]);
        turn::allocations(&String::from_utf8_lossy(&out.stdout))
    }

    /// coturn's TLS certificate and the lab CA.
    pub fn turn_cert(&self) -> &turn::TurnCert {
        self.turn_cert.as_ref().expect("coturn started")
    }

    /// Restart coturn: every allocation on it is gone.
    pub fn restart_relay(&mut self) {
        if let Some(mut c) = self.coturn.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start_coturn();
        self.wait_coturn();
    }

    /// The gateway's port-forward rules as nftables prints them.
    pub fn gateway_rules(&self) -> String {
        let out = self.must(
            Ns::Gw,
            &[
                "nft",
                "list",
                "chain",
                "inet",
                "filter",
                "prerouting_miniupnpd",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Serve connections (TCP) or datagrams (UDP) on `port` in the host
    /// namespace, answering `hello-from-host`; gives up after `secs`.
    /// Returns once the socket is bound (the broker maps only a port
    /// something listens on).
    pub fn listen(&self, tcp: bool, port: u16, secs: u32) -> Child {
        self.listen_as(0, tcp, port, secs)
    }

    /// [`Lab::listen`] as user `uid` (its socket is that uid's).
    pub fn listen_as(&self, uid: u32, tcp: bool, port: u16, secs: u32) -> Child {
        let script = if tcp { TCP_SERVER } else { UDP_SERVER };
        let name = format!("listen-{port}");
        let (port, secs) = (port.to_string(), secs.to_string());
        let reuid = format!("--reuid={uid}");
        let regid = format!("--regid={uid}");
        let mut args = vec!["python3", "-c", script, &port, &secs];
        if uid != 0 {
            // Debian's interpreter: a root-only shim on PATH is out of reach.
            args[0] = "/usr/bin/python3";
            let drop = ["setpriv", &reuid, &regid, "--clear-groups"];
            args.splice(0..0, drop);
        }
        let child = self.spawn(Ns::Host, &name, &args);
        wait_for_ready(&self.path(&format!("{name}.log")));
        child
    }

    /// Run `p2pb ARGS` (a command that prints JSON; `p2pb` is the binary's
    /// path, `harness::p2pb()`) in the host namespace and parse what it
    /// printed; panics with its output otherwise.
    pub fn p2pb_json(&self, p2pb: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec![p2pb];
        all.extend_from_slice(args);
        let out = self.exec(Ns::Host, &all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "p2pb printed no JSON: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// From the public peer, try `addr` (`IP:PORT` or `[IPv6]:PORT`) and
    /// return what came back (empty on failure), waiting at most 2 s.
    pub fn reach(&self, tcp: bool, addr: &str) -> String {
        let (ip, port) = addr.rsplit_once(':').expect("IP:PORT");
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let script = if tcp { TCP_CLIENT } else { UDP_CLIENT };
        let out = self.exec(Ns::Pub, &["python3", "-c", script, ip, port]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Run `f` on a fresh thread moved into the lab namespace `name` (`setns`):
/// only that thread changes namespace, and it ends.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a namespace fd we hold.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {path} failed");
        f()
    })
    .join()
    .expect("lab thread panicked")
}

/// Wait (bounded) until a test server's log says `ready` (it has bound its
/// socket).
pub fn wait_for_ready(log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains("ready")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "test server not ready within 20 s: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_miniupnpd();
        if let Some(mut c) = self.coturn.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// The gateway's firewall and NAT: forward LAN→WAN, replies and ICMPv6,
/// nothing else inbound unless miniupnpd's chain (forwards, pinholes) or the
/// NAT kind's own DNAT accepts it; masquerade LAN sources only (so STUN from
/// the gateway itself is not NATed); the empty chains miniupnpd fills
/// (Debian's nft_init.sh is broken). The sets remember, for two minutes,
/// which UDP ports (and destination addresses) the LAN has used: the cone
/// kinds let inbound packets through by them.
pub(crate) fn gw_rules(nat: NatKind) -> String {
    // (prerouting DNAT, forward accept, masquerade)
    let (dnat, accept, masquerade) = match nat {
        NatKind::FullCone => (
            // From the WAN and, hairpinned, from the LAN itself.
            "ip daddr $WAN udp dport @cone dnat ip to $HOST",
            "ct status dnat udp dport @cone accept",
            "masquerade",
        ),
        NatKind::Restricted => (
            "iifname \"wan\" ip daddr $WAN ip saddr . udp dport @restricted dnat ip to $HOST",
            "ct status dnat ip saddr . udp dport @restricted accept",
            "masquerade",
        ),
        NatKind::PortRestricted => ("", "", "masquerade"),
        NatKind::Symmetric => ("", "", "masquerade fully-random"),
    };
    GW_RULES
        .replace("$DNAT", dnat)
        .replace("$ACCEPT", accept)
        .replace("$MASQUERADE", masquerade)
        .replace("$WAN", WAN_IP)
        .replace("$HOST", HOST_IP)
}

const GW_RULES: &str = r#"
table inet filter {
  set cone { type inet_service; flags dynamic,timeout; timeout 2m; }
  set restricted { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 2m; }
  chain miniupnpd { }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    meta l4proto ipv6-icmp accept
    iifname "lan" oifname "wan" meta l4proto udp update @cone { udp sport } update @restricted { ip daddr . udp sport } accept
    iifname "lan" oifname "wan" accept
    $ACCEPT
    jump miniupnpd
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
    $DNAT
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    ip saddr 10.0.0.0/24 oifname "wan" $MASQUERADE
    ip saddr 10.0.0.0/24 oifname "lan" ct status dnat masquerade
  }
}
"#;

const TCP_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
while True:
    try:
        c, _ = s.accept()
    except socket.timeout:
        break
    c.sendall(b"hello-from-host\n"); c.close()
"#;

const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
while True:
    try:
        d, a = s.recvfrom(1500)
    except socket.timeout:
        break
    s.sendto(b"hello-from-host", a)
"#;

pub const TCP_CLIENT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    print(c.recv(100).decode().strip())
except Exception:
    pass
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
try:
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    print(s.recvfrom(100)[0].decode().strip())
except Exception:
    pass
"#;

impl Lab {
    /// Run `f` on a fresh thread moved into a lab namespace (`setns`), so
    /// an in-process client (e.g. igd-next) talks to the lab, never to the
    /// root namespace. Only that thread changes namespace, and it ends.
    pub fn in_ns<T: Send + 'static>(&self, ns: Ns, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.ns(ns), f)
    }

    /// The gateway's port-mapping table as an independent UPnP client
    /// (igd-next, run natively inside the host namespace) reads it:
    /// (protocol, external port, internal client, internal port).
    pub fn igd_table(&self) -> Vec<(String, u16, String, u16)> {
        self.in_ns(Ns::Host, || {
            let mut opts = igd_next::SearchOptions::default();
            opts.timeout = Some(Duration::from_secs(3));
            let gw = igd_next::search_gateway(opts).expect("igd-next finds the lab gateway");
            let mut table = Vec::new();
            // Bounded: miniupnpd answers 713 past the last entry.
            for i in 0..256 {
                match gw.get_generic_port_mapping_entry(i) {
                    Ok(e) => table.push((
                        format!("{:?}", e.protocol),
                        e.external_port,
                        e.internal_client,
                        e.internal_port,
                    )),
                    Err(_) => break,
                }
            }
            table
        })
    }
}
