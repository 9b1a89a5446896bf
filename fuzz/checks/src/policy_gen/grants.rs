//! Grant strings (the grammar in `p2pbroker::gate::grant`): a transport,
//! uses valid for it (or a stray one), a target (named, an address, a
//! CIDR with an odd prefix, a bracketed IPv6 address) and ports (one, a
//! range, port 0, a reversed range, none); or a malformed string.

use arbitrary::Arbitrary;

use super::values::{Faults, Ports, fault};

/// One grant string.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct GrantPick {
    /// At times one fault: a malformed string, a stray use, no ports
    /// (only `ssdp` has a default), an unknown target.
    fault: u8,
    /// One in sixteen: `name-lookup`, else a socket grant.
    shape: u8,
    udp: bool,
    /// Which of the transport's uses (none chosen: its first).
    uses: u8,
    target: u8,
    ports: Ports,
}

const TARGETS: [&str; 10] = [
    "gateway",
    "ssdp",
    "lan",
    "local",
    "10.0.0.0/8",
    "10.0.0.1",
    "198.51.100.7/24",
    "[2001:db8::1]",
    "2001:db8::/32",
    "fe80::/64",
];
const BAD_TARGETS: [&str; 4] = ["everywhere", "10.0.0.0/33", "Gateway", "[2001:db8::1"];

const MALFORMED: [&str; 12] = [
    "",
    "udp",
    "udp:send",
    "udp:send@",
    "udp:send@gateway",
    "sctp:send@gateway:1",
    "UDP:send@gateway:1",
    "udp:send@gateway:99999",
    "udp:send@gateway:9-1",
    "udp:send@gateway:1 ",
    "name-lookup ",
    "tcp:connect@gateway:-1",
];

/// What a grant error's message holds.
pub const MARKER: &str = "invalid grant";

impl GrantPick {
    /// The grant string, recording a refusal the parser must make.
    pub fn text(self, faults: &mut Faults) -> String {
        let fault = fault(self.fault, 4);
        let k = usize::from(self.target);
        if fault.is_none() && self.shape % 16 == 1 {
            return "name-lookup".into();
        }
        if fault.is_some() {
            faults.must(MARKER);
        }
        if fault == Some(0) {
            return MALFORMED[k % MALFORMED.len()].into();
        }
        let (transport, valid): (&str, &[&str]) = if self.udp {
            ("udp", &["bind", "send", "receive"])
        } else {
            ("tcp", &["bind", "connect", "listen", "accept"])
        };
        let mut uses: Vec<&str> = (0..valid.len())
            .filter(|i| self.uses & (1 << i) != 0)
            .map(|i| valid[i])
            .collect();
        if uses.is_empty() {
            uses.push(valid[0]);
        }
        let bind_only = uses.iter().all(|u| *u == "bind");
        if fault == Some(1) {
            let other = if self.udp { "connect" } else { "send" };
            uses.push(["shout", other, ""][k % 3]);
        }
        let target = match (fault, TARGETS[k % TARGETS.len()]) {
            (Some(3), _) => BAD_TARGETS[k % BAD_TARGETS.len()],
            // `ssdp` needs no ports.
            (Some(2), "ssdp") => "lan",
            (_, t) => t,
        };
        let ports = if fault == Some(2) {
            String::new()
        } else {
            let (text, range) = self.ports.text();
            // Port 0 means "any" to `bind` alone.
            if range.is_none() || (range == Some((0, 0)) && !bind_only) {
                faults.must(MARKER);
            }
            format!(":{text}")
        };
        format!("{transport}:{}@{target}{ports}", uses.join(","))
    }
}
