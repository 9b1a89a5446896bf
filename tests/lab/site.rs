//! A second site on the lab's public network: another gateway with its own
//! miniupnpd and a host behind it, addressed like the first (two home
//! networks both use 10.0.0.0/24) but with its own WAN address, so two
//! applications behind two NATs can reach each other.
//!
//! ```text
//!  pub (198.51.100.1) ── wanp ── gw (198.51.100.2) ── host (10.0.0.2)
//!                    └── wanp2 ── gw2 (198.51.100.4) ── host2 (10.0.0.2)
//! ```
//!
//! The public peer answers ARP for each side on the other (proxy ARP) and
//! forwards between them, as the internet would.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{GW_LAN_IP, HOST_IP, Lab, NatKind, Ns, PUB_IP, TCP_SERVER, gw_rules, run};

/// The second gateway's WAN address.
pub const WAN2_IP: &str = "198.51.100.4";

/// The second site; dropping it stops its miniupnpd (the lab deletes its
/// namespaces).
pub struct Site {
    /// Its gateway's namespace.
    pub gw: String,
    /// Its host's namespace.
    pub host: String,
    dir: std::path::PathBuf,
    miniupnpd: Option<Child>,
}

impl Lab {
    /// Add a second site (gateway + host) on the public network.
    pub fn add_site(&mut self) -> Site {
        let gw = format!("{}-gw2", self.prefix);
        let host = format!("{}-host2", self.prefix);
        for ns in [&gw, &host] {
            run(Command::new("ip").args(["netns", "add", ns]));
            self.namespaces.push(ns.clone());
        }
        let site = Site {
            gw: gw.clone(),
            host: host.clone(),
            dir: self.path("site2"),
            miniupnpd: None,
        };
        std::fs::create_dir_all(&site.dir).unwrap();
        let pubn = self.ns(Ns::Pub);
        for ns in [&gw, &host] {
            site.must(ns, &["ip", "link", "set", "lo", "up"]);
        }
        site.must(
            &gw,
            &[
                "ip", "link", "add", "wan", "type", "veth", "peer", "name", "wanp2", "netns", &pubn,
            ],
        );
        site.must(
            &gw,
            &[
                "ip", "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", &host,
            ],
        );
        site.must(
            &gw,
            &["ip", "addr", "add", &format!("{WAN2_IP}/24"), "dev", "wan"],
        );
        site.must(
            &gw,
            &[
                "ip",
                "addr",
                "add",
                &format!("{GW_LAN_IP}/24"),
                "dev",
                "lan",
            ],
        );
        site.must(
            &host,
            &["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", "eth0"],
        );
        for (ns, dev) in [(&gw, "wan"), (&gw, "lan"), (&host, "eth0")] {
            site.must(ns, &["ip", "link", "set", dev, "up"]);
        }
        site.must(&host, &["ip", "route", "add", "default", "via", GW_LAN_IP]);
        site.must(&gw, &["ip", "route", "add", "default", "via", PUB_IP]);
        site.must(&gw, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // The public side: a host route to the new gateway, proxy ARP so each
        // gateway finds the other "on link", and forwarding between them.
        self.must(Ns::Pub, &["ip", "link", "set", "wanp2", "up"]);
        self.must(Ns::Pub, &["ip", "route", "add", WAN2_IP, "dev", "wanp2"]);
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.wanp.proxy_arp=1",
            "net.ipv4.conf.wanp2.proxy_arp=1",
        ] {
            self.must(Ns::Pub, &["sysctl", "-qw", key]);
        }
        let rules = site.dir.join("gw.nft");
        std::fs::write(&rules, gw_rules(NatKind::PortRestricted)).unwrap();
        site.must(&gw, &["nft", "-f", rules.to_str().unwrap()]);
        let conf = self
            .miniupnpd_conf()
            .replace(
                self.path("leases").to_str().unwrap(),
                site.dir.join("leases").to_str().unwrap(),
            )
            .replace(
                "3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b",
                "3d3cec3a-8cf0-11e0-98ee-001a6bd2d07c",
            );
        let conf_path = site.dir.join("miniupnpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut site = site;
        site.miniupnpd = Some(site.spawn(
            &gw,
            "miniupnpd",
            &[
                "miniupnpd",
                "-d",
                "-f",
                conf_path.to_str().unwrap(),
                "-P",
                site.dir.join("pid").to_str().unwrap(),
            ],
        ));
        site.wait_ready();
        site
    }
}

impl Site {
    fn command(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Run a command in one of the site's namespaces (any status).
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        self.command(ns, args).output().unwrap()
    }

    fn must(&self, ns: &str, args: &[&str]) -> Output {
        run(&mut self.command(ns, args))
    }

    fn spawn(&self, ns: &str, name: &str, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        self.command(ns, args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Wait (bounded) until the second gateway answers NAT-PMP.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .exec(&self.host, &["natpmpc", "-g", GW_LAN_IP])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the second gateway's miniupnpd did not answer within 20 s");
    }

    /// Serve `hello-from-host` on TCP `port` in the site's host for `secs`;
    /// returns once it listens.
    pub fn listen(&self, port: u16, secs: u32) -> Child {
        let name = format!("listen-{port}");
        let child = self.spawn(
            &self.host,
            &name,
            &[
                "python3",
                "-c",
                TCP_SERVER,
                &port.to_string(),
                &secs.to_string(),
            ],
        );
        super::wait_for_ready(&self.dir.join(format!("{name}.log")));
        child
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(mut c) = self.miniupnpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connect to `addr` over TCP from namespace `ns` and return the first line
/// (empty on failure), waiting at most 2 s.
pub fn reach_from(ns: &str, addr: &str) -> String {
    let (ip, port) = addr.rsplit_once(':').expect("IP:PORT");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "python3",
            "-c",
            super::TCP_CLIENT,
            ip,
            port,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
