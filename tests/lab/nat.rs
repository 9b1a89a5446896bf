//! coturn's `turnutils_natdiscovery` run from the lab host: the reference
//! classifier our own NAT discovery is checked against.

use super::{Lab, Ns, PUB_IP};

/// A NAT's behaviour in RFC 4787's terms, as a classifier reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// `endpoint-independent`, `address-dependent`,
    /// `address-and-port-dependent` (or `unknown`).
    pub mapping: String,
    /// Same words.
    pub filtering: String,
    /// Whether a packet sent to our own reflexive address came back.
    pub hairpinning: bool,
}

/// RFC 4787's term for one of natdiscovery's verdict lines.
fn term(line: &str) -> Option<&'static str> {
    // Longest first: "Address and Port Dependent" contains "Dependent".
    for (needle, word) in [
        ("Endpoint Independent", "endpoint-independent"),
        ("Address and Port Dependent", "address-and-port-dependent"),
        ("Address Dependent", "address-dependent"),
    ] {
        if line.contains(needle) {
            return Some(word);
        }
    }
    None
}

/// Parse natdiscovery's output (`-m -f -H`).
pub fn parse(out: &str) -> Behaviour {
    let find = |what: &str| {
        out.lines()
            .filter(|l| l.contains(what))
            .find_map(term)
            .unwrap_or("unknown")
            .to_string()
    };
    Behaviour {
        mapping: find("Mapping!"),
        filtering: find("Filtering!"),
        hairpinning: out.contains("successful hairpinning"),
    }
}

impl Lab {
    /// Classify the lab gateway's NAT with `turnutils_natdiscovery` from the
    /// host, against the public peer's coturn (two addresses).
    pub fn natdiscovery(&self) -> Behaviour {
        let out = self.exec(
            Ns::Host,
            &[
                "timeout",
                "30",
                "turnutils_natdiscovery",
                "-m",
                "-f",
                "-H",
                PUB_IP,
            ],
        );
        parse(&String::from_utf8_lossy(&out.stdout))
    }
}
