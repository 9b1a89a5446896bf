//! Requests: `{"v":1,"id":N,"op":"...", ...fields}`.
//!
//! [`parse_request`] never panics: every malformed input becomes a
//! [`RequestError`] naming what is wrong (fuzzed in `fuzz/`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Release a lease.
    Unmap {
        /// The lease id.
        lease: u64,
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
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnmapFields {
    lease: u64,
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

/// Parse one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    use ErrorCode::*;
    if line.len() > super::MAX_LINE {
        return Err(err(None, TooLarge, "request line too long"));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| err(None, BadRequest, "request is not UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(None, BadRequest, format!("request is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(err(None, BadRequest, "request is not a JSON object"));
    };
    let id = match obj.remove("id") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => return Err(err(None, BadRequest, "`id` must be an unsigned integer")),
        None => return Err(err(None, BadRequest, "missing field `id`")),
    };
    let v = match obj.remove("v") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
        None => return Err(err(id, BadRequest, "missing field `v` (protocol version)")),
    };
    if v != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(err(
            id,
            UnsupportedVersion,
            format!("protocol version {v:?} is not supported (this broker speaks version 1)"),
        ));
    }
    let op = match obj.remove("op") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(err(id, BadRequest, "`op` must be a string")),
        None => return Err(err(id, BadRequest, "missing field `op`")),
    };
    let fields = |obj: Map<String, Value>| Value::Object(obj);
    let bad = |e: serde_json::Error| err(id, BadRequest, format!("op `{op}`: {e}"));
    let op_val = match op.as_str() {
        "map" => {
            let p: MapParams = serde_json::from_value(fields(obj)).map_err(bad)?;
            check_map(&p).map_err(|m| err(id, BadRequest, m))?;
            Op::Map(p)
        }
        "unmap" => {
            let f: UnmapFields = serde_json::from_value(fields(obj)).map_err(bad)?;
            Op::Unmap { lease: f.lease }
        }
        "probe" => {
            let f: ProbeFields = serde_json::from_value(fields(obj)).map_err(bad)?;
            Op::Probe { fresh: f.fresh }
        }
        "list" | "status" | "subscribe" => {
            let _: NoFields = serde_json::from_value(fields(obj)).map_err(bad)?;
            match op.as_str() {
                "list" => Op::List,
                "status" => Op::Status,
                _ => Op::Subscribe,
            }
        }
        other => {
            return Err(err(
                id,
                UnknownOp,
                format!(
                    "unknown op `{}` (map, unmap, list, status, probe, subscribe)",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
    };
    Ok(Request {
        v: PROTOCOL_VERSION,
        id: id.unwrap_or_default(),
        op: op_val,
    })
}

fn check_map(p: &MapParams) -> Result<(), String> {
    if p.port == 0 {
        return Err("op `map`: `port` must be 1-65535".into());
    }
    if p.external_port == Some(0) {
        return Err("op `map`: `external_port` must be 1-65535 (omit it for any port)".into());
    }
    if p.lifetime == Some(0) {
        return Err("op `map`: `lifetime` must be at least 1 second (omit it: until unmap)".into());
    }
    if p.mode
        .as_ref()
        .is_some_and(|m| m.is_empty() || m.len() > 32)
    {
        return Err("op `map`: `mode` must be a MOD name of 1-32 bytes".into());
    }
    Ok(())
}

/// Encode a request as one line, newline included (`v`, `id`, `op` first,
/// as the documentation shows them).
pub fn encode_request(r: &Request) -> String {
    let (name, fields) = match &r.op {
        Op::Map(p) => ("map", serde_json::to_value(p).expect("serialises")),
        Op::Unmap { lease } => ("unmap", serde_json::json!({ "lease": lease })),
        Op::List => ("list", Value::Null),
        Op::Status => ("status", Value::Null),
        Op::Probe { fresh } => ("probe", serde_json::json!({ "fresh": fresh })),
        Op::Subscribe => ("subscribe", Value::Null),
    };
    let mut s = format!(r#"{{"v":{},"id":{},"op":"{name}""#, r.v, r.id);
    if let Value::Object(f) = fields {
        for (k, v) in f {
            s.push_str(&format!(",{}:{v}", Value::String(k)));
        }
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> (Option<u64>, ErrorCode, String) {
        let e = parse_request(line.as_bytes()).unwrap_err();
        (e.id, e.code, e.message)
    }

    #[test]
    fn a_full_map_request_parses_and_round_trips() {
        let line = r#"{"v":1,"id":7,"op":"map","transport":"tcp","port":6881,"external_port":6881,"lifetime":3600,"mode":"pcp","persist":true,"address":"10.0.0.2"}"#;
        let r = parse_request(line.as_bytes()).unwrap();
        assert_eq!(r.id, 7);
        let Op::Map(p) = &r.op else { panic!("{r:?}") };
        assert_eq!(
            (p.transport, p.port, p.lifetime),
            (Transport::Tcp, 6881, Some(3600))
        );
        assert!(p.persist);
        let again = parse_request(encode_request(&r).trim_end().as_bytes()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn every_simple_op_round_trips() {
        for op in [
            Op::Unmap { lease: 3 },
            Op::List,
            Op::Status,
            Op::Probe { fresh: true },
            Op::Subscribe,
        ] {
            let r = Request { v: 1, id: 9, op };
            let line = encode_request(&r);
            assert!(line.ends_with('\n'));
            assert_eq!(parse_request(line.trim_end().as_bytes()).unwrap(), r);
        }
        assert_eq!(
            encode_request(&Request {
                v: 1,
                id: 1,
                op: Op::List
            }),
            "{\"v\":1,\"id\":1,\"op\":\"list\"}\n"
        );
    }

    #[test]
    fn errors_name_the_problem_and_keep_the_id() {
        use ErrorCode::*;
        let (id, c, m) = code(r#"{"v":1,"id":4,"op":"map","transport":"tcp","port":1,"colour":1}"#);
        assert_eq!((id, c), (Some(4), BadRequest));
        assert!(m.contains("unknown field `colour`"), "{m}");
        let (_, c, m) = code(r#"{"v":1,"id":4,"op":"map","transport":"sctp","port":1}"#);
        assert_eq!(c, BadRequest);
        assert!(m.contains("sctp"), "{m}");
        let (_, c, m) = code(r#"{"v":1,"id":4,"op":"map","transport":"udp","port":0}"#);
        assert_eq!(c, BadRequest);
        assert!(m.contains("`port`"), "{m}");
        let (_, _, m) =
            code(r#"{"v":1,"id":4,"op":"map","transport":"udp","port":9,"lifetime":0}"#);
        assert!(m.contains("`lifetime`"), "{m}");
        let (_, _, m) = code(r#"{"v":1,"id":4,"op":"map","port":9}"#);
        assert!(m.contains("missing field `transport`"), "{m}");
        assert_eq!(code(r#"{"v":2,"id":5,"op":"list"}"#).1, UnsupportedVersion);
        assert_eq!(code(r#"{"v":1,"id":5,"op":"dance"}"#).1, UnknownOp);
        assert_eq!(code(r#"[1,2]"#).1, BadRequest);
        assert_eq!(code("{\"v\":1,").1, BadRequest);
        assert_eq!(code(r#"{"v":1,"op":"list"}"#).1, BadRequest);
        assert_eq!(code(r#"{"v":1,"id":-1,"op":"list"}"#).1, BadRequest);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"list","x":1}"#).1, BadRequest);
        let e = parse_request(b"\xff\xfe").unwrap_err();
        assert_eq!(e.code, BadRequest);
        let long = vec![b' '; crate::MAX_LINE + 1];
        assert_eq!(parse_request(&long).unwrap_err().code, TooLarge);
    }
}
