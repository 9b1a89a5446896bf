//! The IPv6 side of the dual-stack lab.
//!
//! ```text
//!  pub  (2001:db8:ff::1)             ── public peer
//!   │ wanp ─ wan
//!  gw   (2001:db8:ff::2 | 2001:db8:1::1) ── routes, no NAT; miniupnpd opens
//!   │ lan ─ eth0                            pinholes (UPnP IGD 2, PCP)
//!  host (2001:db8:1::2)              ── default route via 2001:db8:1::1
//! ```
//!
//! Documentation prefix 2001:db8::/32 only. Duplicate address detection is
//! off in every namespace (`accept_dad=0`, `nodad`), else addresses are
//! unusable for 1–2 s. The gateway forwards IPv6 but its forward chain
//! (shared with IPv4, `table inet filter`) drops new inbound traffic unless
//! a pinhole in chain `miniupnpd` accepts it; ICMPv6 passes. SSDP and HTTP
//! run over IPv6 too: miniupnpd gives pinholes only to the address that
//! asks, over IPv6.

use std::process::Child;

use super::{GatewayOptions, Lab, Ns};

/// The public peer's IPv6 address.
pub const PUB_IP6: &str = "2001:db8:ff::1";
/// The gateway's WAN IPv6 address.
pub const WAN_IP6: &str = "2001:db8:ff::2";
/// The gateway's LAN IPv6 address (the host's default route).
pub const GW_LAN_IP6: &str = "2001:db8:1::1";
/// The host's IPv6 address.
pub const HOST_IP6: &str = "2001:db8:1::2";
/// [`HOST_IP6`] as nftables prints it in a pinhole rule (a raw payload
/// match on the destination address).
pub const HOST_IP6_NFT: &str = "0x20010db8000100000000000000000002";

/// miniupnpd's root description URL on its LAN IPv6 address (what it
/// announces on `[ff02::c]`).
pub fn upnp_url6() -> String {
    format!(
        "http://[{GW_LAN_IP6}]:{}/rootDesc.xml",
        super::UPNP_HTTP_PORT
    )
}

impl Lab {
    /// Build the lab with IPv6 on top of IPv4 and start its daemons.
    pub fn up_dual_stack(opts: GatewayOptions) -> Lab {
        Lab::build(opts, true)
    }

    /// Before any link exists in `ns`: no duplicate address detection, for
    /// link-local addresses too.
    pub(super) fn disable_dad(&self, ns: Ns) {
        self.must(
            ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        );
    }

    /// Addresses, routes and forwarding once the links are up.
    pub(super) fn add_ipv6(&self) {
        for (ns, dev, addr) in [
            (Ns::Pub, "wanp", PUB_IP6),
            (Ns::Gw, "wan", WAN_IP6),
            (Ns::Gw, "lan", GW_LAN_IP6),
            (Ns::Host, "eth0", HOST_IP6),
        ] {
            let cidr = format!("{addr}/64");
            self.must(ns, &["ip", "addr", "add", &cidr, "dev", dev, "nodad"]);
        }
        self.must(
            Ns::Host,
            &["ip", "-6", "route", "add", "default", "via", GW_LAN_IP6],
        );
        self.must(
            Ns::Pub,
            &[
                "ip",
                "-6",
                "route",
                "add",
                "2001:db8:1::/64",
                "via",
                WAN_IP6,
            ],
        );
        self.must(Ns::Gw, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    }

    /// Like [`Lab::listen`], on the host's IPv6 addresses only.
    pub fn listen6(&self, tcp: bool, port: u16, secs: u32) -> Child {
        let script = if tcp { TCP_SERVER6 } else { UDP_SERVER6 };
        let name = format!("listen6-{port}");
        let child = self.spawn(
            Ns::Host,
            &name,
            &[
                "python3",
                "-c",
                script,
                &port.to_string(),
                &secs.to_string(),
            ],
        );
        super::wait_for_ready(&self.path(&format!("{name}.log")));
        child
    }

    /// The gateway's filter rules that miniupnpd made (port forwards and
    /// pinholes), as nftables prints them.
    pub fn firewall_rules(&self) -> String {
        let out = self.must(
            Ns::Gw,
            &["nft", "list", "chain", "inet", "filter", "miniupnpd"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pinholes among [`Lab::firewall_rules`]: rules matching the
    /// host's IPv6 address.
    pub fn pinholes(&self) -> Vec<String> {
        self.firewall_rules()
            .lines()
            .filter(|l| l.contains(HOST_IP6_NFT))
            .map(|l| l.trim().to_string())
            .collect()
    }
}

const TCP_SERVER6: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(("::", int(sys.argv[1]))); s.listen(4); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
while True:
    try:
        c, _ = s.accept()
    except socket.timeout:
        break
    c.sendall(b"hello-from-host\n"); c.close()
"#;

const UDP_SERVER6: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(("::", int(sys.argv[1]))); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
while True:
    try:
        d, a = s.recvfrom(1500)
    except socket.timeout:
        break
    s.sendto(b"hello-from-host", a)
"#;
