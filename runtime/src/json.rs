//! JSON forms of the WIT records, for `--json` output and for handing a
//! mapping back to `p2pb mode run … renew|unmap`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmtime_wasi::p2::bindings::sockets::network::IpAddress;

use crate::sandbox::Output;
use crate::sandbox::error::{CallError, mode_error_message};
use crate::sandbox::wit::discovery::{Behaviour, NatReport};
use crate::sandbox::wit::{AddressClass, Mapping, ModeError, ModeInfo, ProbeReport, Transport};

/// A WIT `ip-address` as a std address.
pub fn ip(a: &IpAddress) -> IpAddr {
    match *a {
        IpAddress::Ipv4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    }
}

/// The WIT name of an address class.
pub fn class_name(c: AddressClass) -> &'static str {
    match c {
        AddressClass::Global => "global",
        AddressClass::Private => "private",
        AddressClass::Shared => "shared",
        AddressClass::Loopback => "loopback",
        AddressClass::LinkLocal => "link-local",
        AddressClass::Reserved => "reserved",
    }
}

/// The WIT name of a mode-error case.
pub fn mode_error_kind(e: &ModeError) -> &'static str {
    match e {
        ModeError::Unavailable(_) => "unavailable",
        ModeError::Denied(_) => "denied",
        ModeError::Conflict(_) => "conflict",
        ModeError::Timeout(_) => "timeout",
        ModeError::Protocol(_) => "protocol",
        ModeError::MappingLost(_) => "mapping-lost",
        ModeError::Unsupported(_) => "unsupported",
        ModeError::InvalidRequest(_) => "invalid-request",
    }
}

/// A mapping in the form the broker prints and reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingJson {
    /// `tcp` or `udp`.
    pub transport: crate::gate::Transport,
    /// Internal endpoint.
    pub internal: SocketAddr,
    /// External endpoint.
    pub external: SocketAddr,
    /// Lifetime in seconds (0 = permanent).
    pub lifetime: u32,
    /// The opaque state blob, hex.
    pub state: String,
}

impl From<&Mapping> for MappingJson {
    fn from(m: &Mapping) -> Self {
        MappingJson {
            transport: match m.transport {
                Transport::Tcp => crate::gate::Transport::Tcp,
                Transport::Udp => crate::gate::Transport::Udp,
            },
            internal: m.internal.into(),
            external: m.external.into(),
            lifetime: m.lifetime,
            state: hex::encode(&m.state),
        }
    }
}

impl TryFrom<MappingJson> for Mapping {
    type Error = String;
    fn try_from(j: MappingJson) -> Result<Self, String> {
        Ok(Mapping {
            transport: wit_transport(j.transport),
            internal: j.internal.into(),
            external: j.external.into(),
            lifetime: j.lifetime,
            state: hex::decode(&j.state).map_err(|e| format!("state is not hex: {e}"))?,
        })
    }
}

/// The WIT transport for a gate transport.
pub fn wit_transport(t: crate::gate::Transport) -> Transport {
    match t {
        crate::gate::Transport::Tcp => Transport::Tcp,
        crate::gate::Transport::Udp => Transport::Udp,
    }
}

fn info(i: &ModeInfo) -> Value {
    json!({ "name": i.name, "version": i.version, "summary": i.summary })
}

fn probe(p: &ProbeReport) -> Value {
    json!({
        "gateway": p.gateway.as_ref().map(|g| ip(g).to_string()),
        "external_address": p.external_address.as_ref().map(|a| ip(a).to_string()),
        "external_class": p.external_class.map(class_name),
        "detail": p.detail,
        "state": hex::encode(&p.state),
    })
}

/// RFC 4787's term.
pub fn behaviour(b: Behaviour) -> &'static str {
    match b {
        Behaviour::EndpointIndependent => "endpoint-independent",
        Behaviour::AddressDependent => "address-dependent",
        Behaviour::AddressAndPortDependent => "address-and-port-dependent",
    }
}

/// A NAT report as JSON (`p2pb probe --json` carries it as `nat`).
pub fn nat(n: &NatReport) -> Value {
    json!({
        "server": SocketAddr::from(n.server).to_string(),
        "reflexive": SocketAddr::from(n.reflexive).to_string(),
        "nat": n.nat,
        "mapping": n.mapping.map(behaviour),
        "filtering": n.filtering.map(behaviour),
        "hairpinning": n.hairpinning,
        "detail": n.detail,
    })
}

/// A call's output as JSON.
pub fn output(o: &Output) -> Value {
    match o {
        Output::Info(i) => info(i),
        Output::Probe(p) => probe(p),
        Output::Mapping(m) => serde_json::to_value(MappingJson::from(m)).expect("serialises"),
        Output::Unmapped => json!({ "unmapped": true }),
        Output::Nat(n) => nat(n),
        Output::Tunnel => json!({ "tunnel": true }),
    }
}

/// A call error as JSON: `{kind, message}` plus details.
pub fn call_error(e: &CallError) -> Value {
    match e {
        CallError::Mode(m) => json!({
            "kind": "mode",
            "mode_error": mode_error_kind(m),
            "message": mode_error_message(m),
        }),
        CallError::Denied {
            address,
            transport,
            use_,
        } => json!({
            "kind": "denied",
            "address": address.to_string(),
            "transport": transport,
            "use": use_,
            "message": e.to_string(),
        }),
        other => json!({ "kind": other.kind(), "message": other.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips_through_json() {
        let j = MappingJson {
            transport: crate::gate::Transport::Udp,
            internal: "10.0.0.2:4000".parse().unwrap(),
            external: "[2001:db8::1]:4000".parse().unwrap(),
            lifetime: 7200,
            state: "00ff".into(),
        };
        let m: Mapping = j.clone().try_into().unwrap();
        assert_eq!(m.state, vec![0, 255]);
        assert_eq!(MappingJson::from(&m), j);
        let bad = MappingJson {
            state: "zz".into(),
            ..j
        };
        assert!(Mapping::try_from(bad).unwrap_err().contains("not hex"));
    }

    #[test]
    fn ip_conversion_is_exact() {
        for s in ["198.51.100.7", "2001:db8::7", "::ffff:1.2.3.4"] {
            let a: IpAddr = s.parse().unwrap();
            assert_eq!(ip(&IpAddress::from(a)), a);
        }
    }
}
