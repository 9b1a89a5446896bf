//! What the broker sends: responses (`{"v":1,"id":N,"ok":...}`) and events
//! (`{"v":1,"event":"..."}`), and the records inside them.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, PROTOCOL_VERSION, Transport};

/// A lease's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseState {
    /// Mapped and kept alive.
    Active,
    /// The mapping was lost; the broker is trying to re-establish it.
    Lost,
    /// A re-establishment is in progress.
    ReEstablishing,
}

/// A lease: a mapping the broker holds for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Lease id (for `unmap`).
    pub id: u64,
    /// TCP or UDP.
    pub transport: Transport,
    /// The local endpoint.
    pub internal: SocketAddr,
    /// Where peers reach it.
    pub external: SocketAddr,
    /// The MOD that holds it.
    pub mode: String,
    /// Active, lost or re-establishing.
    pub state: LeaseState,
    /// Seconds the gateway granted per renewal; 0 = permanent.
    pub gateway_lifetime: u32,
    /// Unix seconds of the next renewal.
    pub renew_at: Option<u64>,
    /// Unix seconds when the lease ends; `None` = until released.
    pub expires_at: Option<u64>,
    /// The client's uid.
    pub owner_uid: u32,
    /// Outlives the client's connection.
    pub persist: bool,
    /// Unix seconds of creation.
    pub created_at: u64,
}

/// One MOD's latest probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeView {
    /// The MOD.
    pub mode: String,
    /// Whether the probe succeeded.
    pub ok: bool,
    /// The error kind when it did not.
    pub kind: Option<String>,
    /// What it saw, or why it failed.
    pub detail: String,
    /// The gateway or server that answered.
    pub gateway: Option<IpAddr>,
    /// The external address it learned.
    pub external_address: Option<IpAddr>,
    /// That address's class (`global`, `private`, `shared`, ...).
    pub external_class: Option<String>,
    /// Probe duration.
    pub elapsed_ms: u64,
    /// Seconds since the probe.
    pub age_s: u64,
}

/// A MOD the broker loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeStatus {
    /// Its name.
    pub name: String,
    /// Its component's sha256.
    pub sha256: String,
    /// Its version.
    pub version: String,
    /// Its latest probe.
    pub probe: Option<ProbeView>,
}

/// The policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Where it came from.
    pub source: String,
    /// Its version, when signed.
    pub version: Option<u64>,
    /// The last refused policy update, if any.
    pub error: Option<String>,
}

/// The host's network as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    /// Default gateways.
    pub gateways: Vec<IpAddr>,
    /// Local addresses (`addr/prefix (iface)`).
    pub addresses: Vec<String>,
}

/// `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The broker's version.
    pub broker_version: String,
    /// Its protocol version.
    pub protocol: u32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The policy.
    pub policy: PolicyStatus,
    /// The network.
    pub network: NetworkView,
    /// Loaded MODs.
    pub modes: Vec<ModeStatus>,
    /// The caller's leases (root: all).
    pub leases: Vec<Lease>,
    /// Components the broker refused to load, with why (unsigned, revoked,
    /// asking for more than the policy grants, ...).
    #[serde(default)]
    pub refused: Vec<RefusedMod>,
}

/// A component the broker did not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMod {
    /// Its file name.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// `probe` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// Every MOD's probe.
    pub probes: Vec<ProbeView>,
    /// The MOD a `map` would try first.
    pub chosen: Option<String>,
    /// Why.
    pub why: String,
    /// Default gateways.
    pub gateways: Vec<IpAddr>,
    /// The external address, if any probe learned one.
    pub external_address: Option<IpAddr>,
    /// An external address is not global: double NAT or CGNAT.
    pub double_nat: bool,
}

/// A successful result, by op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultBody {
    /// `map`, `unmap`.
    Lease(Lease),
    /// `list`: `{"leases":[...]}`.
    Leases(Vec<Lease>),
    /// `status`.
    Status(Box<Status>),
    /// `probe`.
    Probe(Box<ProbeSummary>),
    /// `subscribe`: `{}`.
    Subscribed,
}

impl ResultBody {
    fn to_value(&self) -> Value {
        let v = match self {
            ResultBody::Lease(l) => serde_json::to_value(l),
            ResultBody::Leases(l) => Ok(serde_json::json!({ "leases": l })),
            ResultBody::Status(s) => serde_json::to_value(s),
            ResultBody::Probe(p) => serde_json::to_value(p),
            ResultBody::Subscribed => Ok(serde_json::json!({})),
        };
        v.expect("results serialise")
    }
}

/// A response, as the broker writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Protocol version.
    pub v: u32,
    /// The request's id (`None` if it could not be read).
    pub id: Option<u64>,
    /// The result or the error.
    pub body: Result<ResultBody, ApiError>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    id: Option<u64>,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
}

/// Encode a response as one line, newline included.
pub fn encode_response(r: &Response) -> String {
    let (ok, result, error) = match &r.body {
        Ok(b) => (true, Some(b.to_value()), None),
        Err(e) => (false, None, Some(e.clone())),
    };
    let mut s = serde_json::to_string(&Wire {
        v: r.v,
        id: r.id,
        ok,
        result,
        error,
    })
    .expect("responses serialise");
    s.push('\n');
    s
}

/// An event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A lease was created.
    Mapped,
    /// A lease was renewed on its gateway.
    Renewed,
    /// A lease's mapping was lost (gateway reboot, address change, ...).
    Lost,
    /// A lost lease was mapped again (maybe via another MOD or port).
    ReEstablished,
    /// A lease ended (unmap, disconnect, expiry, shutdown).
    Released,
}

/// An event sent to subscribed connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The lease as it now stands.
    pub lease: Lease,
    /// Why, when there is more to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize)]
struct EventWire<'a> {
    v: u32,
    #[serde(flatten)]
    event: &'a Event,
}

/// Encode an event as one line, newline included.
pub fn encode_event(e: &Event) -> String {
    let mut s = serde_json::to_string(&EventWire {
        v: PROTOCOL_VERSION,
        event: e,
    })
    .expect("events serialise");
    s.push('\n');
    s
}

/// A response as a client reads it: the result stays JSON until the caller,
/// who knows which op it sent, decodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    /// The request's id.
    pub id: Option<u64>,
    /// The result or the error.
    pub result: Result<Value, ApiError>,
}

/// One line from the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerLine {
    /// An answer to a request.
    Response(RawResponse),
    /// An event.
    Event(Event),
}

/// Parse one line from the broker.
pub fn parse_server_line(line: &[u8]) -> Result<ServerLine, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let version = v.get("v").and_then(Value::as_u64);
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(format!("protocol version {version:?}, expected 1"));
    }
    if v.get("event").is_some() {
        let mut obj = v;
        if let Some(o) = obj.as_object_mut() {
            o.remove("v");
        }
        return serde_json::from_value(obj)
            .map(ServerLine::Event)
            .map_err(|e| format!("malformed event: {e}"));
    }
    let w: Wire = serde_json::from_value(v).map_err(|e| format!("malformed response: {e}"))?;
    let result = match (w.ok, w.result, w.error) {
        (true, Some(r), None) => Ok(r),
        (false, None, Some(e)) => Err(e),
        _ => return Err("a response needs `result` when ok, `error` when not".into()),
    };
    Ok(ServerLine::Response(RawResponse { id: w.id, result }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, ModeReason};

    fn lease() -> Lease {
        Lease {
            id: 3,
            transport: Transport::Udp,
            internal: "10.0.0.2:6881".parse().unwrap(),
            external: "198.51.100.2:6881".parse().unwrap(),
            mode: "pcp".into(),
            state: LeaseState::ReEstablishing,
            gateway_lifetime: 3600,
            renew_at: Some(1800),
            expires_at: None,
            owner_uid: 1000,
            persist: false,
            created_at: 0,
        }
    }

    #[test]
    fn responses_have_the_documented_shape_and_parse_back() {
        let ok = encode_response(&Response {
            v: 1,
            id: Some(2),
            body: Ok(ResultBody::Subscribed),
        });
        assert_eq!(ok, "{\"v\":1,\"id\":2,\"ok\":true,\"result\":{}}\n");
        let e = ApiError {
            code: ErrorCode::NoMode,
            message: "none".into(),
            reasons: vec![ModeReason {
                mode: "pcp".into(),
                kind: "timeout".into(),
                reason: "silence".into(),
            }],
        };
        let line = encode_response(&Response {
            v: 1,
            id: None,
            body: Err(e.clone()),
        });
        assert!(line.starts_with(r#"{"v":1,"id":null,"ok":false,"error":{"code":"no-mode""#));
        match parse_server_line(line.trim_end().as_bytes()).unwrap() {
            ServerLine::Response(r) => assert_eq!(r.result, Err(e)),
            other => panic!("{other:?}"),
        }
        let list = encode_response(&Response {
            v: 1,
            id: Some(1),
            body: Ok(ResultBody::Leases(vec![lease()])),
        });
        let ServerLine::Response(r) = parse_server_line(list.as_bytes()).unwrap() else {
            panic!()
        };
        let leases: Vec<Lease> =
            serde_json::from_value(r.result.unwrap()["leases"].clone()).unwrap();
        assert_eq!(leases, vec![lease()]);
    }

    #[test]
    fn events_are_told_from_responses() {
        let e = Event {
            kind: EventKind::ReEstablished,
            lease: lease(),
            reason: Some("via nat-pmp".into()),
        };
        let line = encode_event(&e);
        assert!(
            line.starts_with(r#"{"v":1,"event":"re-established","lease":{"id":3"#),
            "{line}"
        );
        assert!(line.contains(r#""state":"re-establishing""#));
        assert_eq!(
            parse_server_line(line.as_bytes()).unwrap(),
            ServerLine::Event(e)
        );
        assert!(parse_server_line(br#"{"v":2,"id":1,"ok":true,"result":{}}"#).is_err());
        assert!(parse_server_line(br#"{"v":1,"id":1,"ok":true}"#).is_err());
    }
}
