//! Requests: `{"v":1,"id":N,"op":"...", ...fields}`.
//!
//! [`parse_request`] never panics: every malformed input becomes a
//! [`RequestError`] naming what is wrong (fuzzed in `fuzz/`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ErrorCode, PROTOCOL_VERSION, Transport};

/// A request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Protocol version (1).
    pub v: u32,
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    /// What to do.
    pub op: Op,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Make a local port reachable from outside.
    Map(MapParams),
    /// Make a local port reachable, or say that the application can
    /// hole-punch instead: as `map`, but where no gateway maps and the
    /// NAT's mapping is endpoint-independent (or there is no NAT), the
    /// answer is `punch` and no relay is spent.
    Reach(MapParams),
    /// Release a lease.
    Unmap {
        /// The lease id.
        lease: u64,
    },
    /// Let peers reach a relayed lease (TURN admits only permitted peers).
    Permit {
        /// The lease id.
        lease: u64,
        /// Peer addresses (`IP:PORT`), 1 to [`PERMIT_MAX`].
        peers: Vec<std::net::SocketAddr>,
    },
    /// The caller's leases (root: all).
    List,
    /// MODs, probe results, leases, network, policy.
    Status,
    /// A diagnosis of the network and which MOD would be chosen.
    Probe {
        /// Probe now instead of using cached results.
        fresh: bool,
    },
    /// Receive events on this connection.
    Subscribe,
    /// Open an outbound TCP connection; the connected socket comes back
    /// with the answer (SCM_RIGHTS, local socket only).
    Connect(ConnectParams),
}

/// `connect` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectParams {
    /// The destination: an IP address or a DNS name (a proxy resolves the
    /// name itself).
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// Only TCP.
    #[serde(default = "tcp")]
    pub transport: Transport,
    /// Force one route (`direct` or a connector MOD) the policy allows for
    /// this destination (diagnosis, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl ConnectParams {
    /// A TCP connect to `host`:`port` by whichever route the policy picks.
    pub fn new(host: impl Into<String>, port: u16) -> ConnectParams {
        ConnectParams {
            host: host.into(),
            port,
            transport: Transport::Tcp,
            via: None,
        }
    }
}

fn tcp() -> Transport {
    Transport::Tcp
}

/// `map` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapParams {
    /// TCP or UDP.
    pub transport: Transport,
    /// The internal (local) port.
    pub port: u16,
    /// The external port wanted; the broker may grant another unless it is
    /// given here (then a taken port is a `conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_port: Option<u16>,
    /// Total lease duration in seconds; absent = until unmap/disconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<u32>,
    /// Force one MOD by name (diagnosis, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The lease outlives the connection (daemon-owned until unmap/expiry).
    #[serde(default, skip_serializing_if = "is_false")]
    pub persist: bool,
    /// The internal host (LAN clients); absent = this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// The socket to map comes with this request (SCM_RIGHTS on the local
    /// socket): its own address is the endpoint, and holding it is the
    /// proof of ownership. `transport` and `port` must match it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub socket: bool,
    /// End the lease when the socket(s) holding the endpoint close.
    #[serde(default, skip_serializing_if = "is_false")]
    pub until_closed: bool,
}

impl MapParams {
    /// A map of local `transport` `port` with every option at its default.
    pub fn new(transport: Transport, port: u16) -> MapParams {
        MapParams {
            transport,
            port,
            external_port: None,
            lifetime: None,
            mode: None,
            persist: false,
            address: None,
            socket: false,
            until_closed: false,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnmapFields {
    lease: u64,
}

/// Peers one `permit` request may name.
pub const PERMIT_MAX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermitFields {
    lease: u64,
    peers: Vec<std::net::SocketAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFields {
    #[serde(default)]
    fresh: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The request's id, when it could be read.
    pub id: Option<u64>,
    /// The error code for the response.
    pub code: ErrorCode,
    /// What is wrong, naming the field.
    pub message: String,
}

fn err(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> RequestError {
    RequestError {
        id,
        code,
        message: message.into(),
    }
}

/// Parse one request line (without its newline). Never panics; every
/// refusal names what is wrong and carries the request's id when it could
/// be read, so the broker can answer it.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    use ErrorCode::*;
    if line.len() > super::MAX_LINE {
        return Err(err(
            None,
            TooLarge,
            format!("request line over {} bytes", super::MAX_LINE),
        ));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| err(None, BadRequest, "request is not UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(None, BadRequest, format!("request is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(err(None, BadRequest, "request is not a JSON object"));
    };
    // Read the id before anything else can fail, so even a refusal of the
    // version is answered under the client's id.
    let id = obj.remove("id");
    let known_id = id.as_ref().and_then(Value::as_u64);
    // The version comes next: a later client may use a shape this parser
    // does not know, and should hear `unsupported-version`, not a field error.
    match obj.remove("v") {
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(Value::Number(n)) => {
            return Err(err(
                known_id,
                UnsupportedVersion,
                format!(
                    "protocol version {n} is not supported; this broker speaks version {PROTOCOL_VERSION}"
                ),
            ));
        }
        Some(_) => {
            return Err(err(
                known_id,
                BadRequest,
                format!("`v` must be the protocol version, a number ({PROTOCOL_VERSION})"),
            ));
        }
        None => {
            return Err(err(
                known_id,
                BadRequest,
                format!("missing field `v` (the protocol version, {PROTOCOL_VERSION})"),
            ));
        }
    }
    let id = match (id, known_id) {
        (_, Some(id)) => id,
        (Some(_), None) => {
            return Err(err(None, BadRequest, "`id` must be an unsigned integer"));
        }
        (None, _) => {
            return Err(err(
                None,
                BadRequest,
                "missing field `id` (an unsigned integer)",
            ));
        }
    };
    let op = match obj.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(err(Some(id), BadRequest, "`op` must be a string")),
        None => return Err(err(Some(id), BadRequest, "missing field `op`")),
    };
    // The remaining members are the op's fields; each op's struct refuses
    // unknown ones by name.
    let fields = Value::Object(obj);
    let bad = |e: serde_json::Error| err(Some(id), BadRequest, format!("op `{op}`: {e}"));
    let op = match op.as_str() {
        "map" | "reach" => {
            let p: MapParams = serde_json::from_value(fields).map_err(bad)?;
            check_map(&p).map_err(|m| err(Some(id), BadRequest, format!("op `{op}`: {m}")))?;
            if op == "map" {
                Op::Map(p)
            } else {
                Op::Reach(p)
            }
        }
        "unmap" => {
            let f: UnmapFields = serde_json::from_value(fields).map_err(bad)?;
            Op::Unmap { lease: f.lease }
        }
        "permit" => {
            let f: PermitFields = serde_json::from_value(fields).map_err(bad)?;
            if f.peers.is_empty() || f.peers.len() > PERMIT_MAX {
                return Err(err(
                    Some(id),
                    BadRequest,
                    format!("op `permit`: `peers` holds 1 to {PERMIT_MAX} addresses"),
                ));
            }
            Op::Permit {
                lease: f.lease,
                peers: f.peers,
            }
        }
        "probe" => {
            let f: ProbeFields = serde_json::from_value(fields).map_err(bad)?;
            Op::Probe { fresh: f.fresh }
        }
        "connect" => {
            let p: ConnectParams = serde_json::from_value(fields).map_err(bad)?;
            check_connect(&p).map_err(|m| err(Some(id), BadRequest, m))?;
            Op::Connect(p)
        }
        "list" | "status" | "subscribe" => {
            let _: NoFields = serde_json::from_value(fields).map_err(bad)?;
            match op.as_str() {
                "list" => Op::List,
                "status" => Op::Status,
                _ => Op::Subscribe,
            }
        }
        other => {
            // Truncated: the name is echoed back and may be up to MAX_LINE long.
            let name: String = other.chars().take(64).collect();
            return Err(err(
                Some(id),
                UnknownOp,
                format!(
                    "unknown op `{name}` (map, reach, unmap, permit, list, status, probe, subscribe, connect)"
                ),
            ));
        }
    };
    Ok(Request {
        v: PROTOCOL_VERSION,
        id,
        op,
    })
}

fn check_map(p: &MapParams) -> Result<(), String> {
    if p.port == 0 {
        return Err("`port` must be 1-65535".into());
    }
    if p.external_port == Some(0) {
        return Err("`external_port` must be 1-65535 (omit it for any port)".into());
    }
    if p.lifetime == Some(0) {
        return Err("`lifetime` must be at least 1 second (omit it: until unmap)".into());
    }
    // A MOD name as the runtime admits them: the name reaches the hole
    // log and the terminal on a refusal, so nothing else is let through.
    let name_ok = |m: &str| {
        (1..=32).contains(&m.len())
            && !m.starts_with('-')
            && m.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if p.mode.as_deref().is_some_and(|m| !name_ok(m)) {
        return Err("`mode` must be a MOD name: 1-32 of a-z, 0-9 and `-`, not first".into());
    }
    Ok(())
}

/// Longest destination host: a DNS name is at most 253 bytes.
pub const MAX_HOST: usize = 253;

fn check_connect(p: &ConnectParams) -> Result<(), String> {
    if p.host.is_empty() || p.host.len() > MAX_HOST {
        return Err(format!(
            "op `connect`: `host` must be an IP address or a DNS name of 1-{MAX_HOST} bytes"
        ));
    }
    // Names go into a proxy's request line or a SOCKS name field: no byte
    // that could end or bend either.
    if !p
        .host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err(
            "op `connect`: `host` may hold only letters, digits, `-`, `.`, `_` and `:` (an IP address or a DNS name)"
                .into(),
        );
    }
    if p.port == 0 {
        return Err("op `connect`: `port` must be 1-65535".into());
    }
    if p.transport != Transport::Tcp {
        return Err("op `connect`: only `transport` tcp is supported".into());
    }
    if p.via.as_ref().is_some_and(|m| m.is_empty() || m.len() > 32) {
        return Err("op `connect`: `via` must be `direct` or a MOD name of 1-32 bytes".into());
    }
    Ok(())
}

fn map_fields(p: &MapParams) -> String {
    serde_json::to_string(p).expect("map fields serialise: plain values")
}

/// Encode a request as one line, newline included: `v`, `id`, `op` first,
/// then the op's fields in declaration order, as the documentation shows
/// them.
pub fn encode_request(r: &Request) -> String {
    let (name, fields) = match &r.op {
        Op::Map(p) => ("map", map_fields(p)),
        Op::Reach(p) => ("reach", map_fields(p)),
        Op::Unmap { lease } => ("unmap", format!(r#"{{"lease":{lease}}}"#)),
        Op::Permit { lease, peers } => (
            "permit",
            serde_json::json!({ "lease": lease, "peers": peers }).to_string(),
        ),
        Op::List => ("list", String::new()),
        Op::Status => ("status", String::new()),
        Op::Probe { fresh } => ("probe", format!(r#"{{"fresh":{fresh}}}"#)),
        Op::Subscribe => ("subscribe", String::new()),
        Op::Connect(p) => (
            "connect",
            serde_json::to_string(p).expect("connect fields serialise: plain values"),
        ),
    };
    // `fields` is an object or empty: splice its members after `op`.
    let members = fields
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .filter(|m| !m.is_empty());
    let mut s = format!(r#"{{"v":{},"id":{},"op":"{name}""#, r.v, r.id);
    if let Some(m) = members {
        s.push(',');
        s.push_str(m);
    }
    s.push_str("}\n");
    s
}
