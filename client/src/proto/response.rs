//! Responses: `{"v":1,"id":N,"ok":true,"result":{...}}` or
//! `{"v":1,"id":N|null,"ok":false,"error":{...}}`, and reading any line
//! the broker sends ([`parse_response_line`]).
//!
//! A result's shape depends on the op, which the line does not repeat: a
//! client keeps the result as JSON ([`RawResponse`]) until it looks up
//! which op it sent under that id, then decodes it
//! ([`RawResponse::into_response`], [`ResultBody::decode`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    ApiError, Connection, Event, Lease, LeaseList, Op, PROTOCOL_VERSION, ProbeSummary, Reached,
    Status,
};

/// A successful result, by op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultBody {
    /// `map` (the new lease), `unmap` (the lease as released).
    Lease(Lease),
    /// `list`: `{"leases":[...]}`.
    Leases(Vec<Lease>),
    /// `status`.
    Status(Box<Status>),
    /// `probe`.
    Probe(Box<ProbeSummary>),
    /// `subscribe`: `{}`.
    Subscribed,
    /// `connect` (the socket travels beside the line).
    Connected(Box<Connection>),
    /// `reach`: a lease, or the advice to hole-punch.
    Reached(Box<Reached>),
}

impl ResultBody {
    /// Decode the `"result"` of a response to `op`, the op sent under the
    /// response's id.
    pub fn decode(op: &Op, result: Value) -> Result<ResultBody, serde_json::Error> {
        Ok(match op {
            Op::Map(_) | Op::Unmap { .. } | Op::Permit { .. } => {
                ResultBody::Lease(serde_json::from_value(result)?)
            }
            Op::List => ResultBody::Leases(serde_json::from_value::<LeaseList>(result)?.leases),
            Op::Status => ResultBody::Status(Box::new(serde_json::from_value(result)?)),
            Op::Probe { .. } => ResultBody::Probe(Box::new(serde_json::from_value(result)?)),
            Op::Subscribe => {
                // `{}` today; any object, so a later broker may say more.
                let _: Map<String, Value> = serde_json::from_value(result)?;
                ResultBody::Subscribed
            }
            Op::Connect(_) => ResultBody::Connected(Box::new(serde_json::from_value(result)?)),
            Op::Reach(_) => ResultBody::Reached(Box::new(serde_json::from_value(result)?)),
        })
    }
}

/// A result borrowed for encoding: written straight from the typed value,
/// so members keep their declared order (a `Value` would sort them).
#[derive(Serialize)]
#[serde(untagged)]
enum ResultRef<'a> {
    Lease(&'a Lease),
    Leases { leases: &'a [Lease] },
    Status(&'a Status),
    Probe(&'a ProbeSummary),
    Subscribed {},
    Connected(&'a Connection),
    Reached(&'a Reached),
}

impl<'a> From<&'a ResultBody> for ResultRef<'a> {
    fn from(b: &'a ResultBody) -> Self {
        match b {
            ResultBody::Lease(l) => ResultRef::Lease(l),
            ResultBody::Leases(l) => ResultRef::Leases { leases: l },
            ResultBody::Status(s) => ResultRef::Status(s),
            ResultBody::Probe(p) => ResultRef::Probe(p),
            ResultBody::Subscribed => ResultRef::Subscribed {},
            ResultBody::Connected(c) => ResultRef::Connected(c),
            ResultBody::Reached(r) => ResultRef::Reached(r),
        }
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

/// The wire form of a response as written; `result` and `error` exclude
/// each other.
#[derive(Serialize)]
struct WireOut<'a> {
    v: u32,
    id: Option<u64>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ResultRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ApiError>,
}

/// The wire form as read (`v` checked beforehand): the result stays JSON
/// until its op is known.
#[derive(Deserialize)]
struct WireIn {
    id: Option<u64>,
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<ApiError>,
}

/// Encode a response as one line, newline included.
pub fn encode_response(r: &Response) -> String {
    let (ok, result, error) = match &r.body {
        Ok(b) => (true, Some(b.into()), None),
        Err(e) => (false, None, Some(e)),
    };
    let mut s = serde_json::to_string(&WireOut {
        v: r.v,
        id: r.id,
        ok,
        result,
        error,
    })
    .expect("responses serialise: every field is a plain value");
    s.push('\n');
    s
}

/// A response as a client reads it: the result stays JSON until the
/// caller, who knows which op it sent, decodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    /// The request's id (`None` when the broker could not read it).
    pub id: Option<u64>,
    /// The result or the error.
    pub result: Result<Value, ApiError>,
}

impl RawResponse {
    /// Type the response, given the op sent under its id.
    pub fn into_response(self, op: &Op) -> Result<Response, String> {
        let body = match self.result {
            Ok(v) => Ok(ResultBody::decode(op, v).map_err(|e| format!("malformed result: {e}"))?),
            Err(e) => Err(e),
        };
        Ok(Response {
            v: PROTOCOL_VERSION,
            id: self.id,
            body,
        })
    }
}

/// One line from the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerLine {
    /// An answer to a request.
    Response(RawResponse),
    /// An event (only on a subscribed connection).
    Event(Event),
}

/// Parse one line from the broker (with or without its newline): a line
/// with `"event"` is an event, any other a response. The error says what
/// is malformed. Unknown fields are ignored.
pub fn parse_response_line(line: &[u8]) -> Result<ServerLine, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let version = v.get("v").and_then(Value::as_u64);
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(format!(
            "protocol version {}, expected {PROTOCOL_VERSION}",
            v.get("v").map_or("missing".into(), Value::to_string)
        ));
    }
    if v.get("event").is_some() {
        return serde_json::from_value(v)
            .map(ServerLine::Event)
            .map_err(|e| format!("malformed event: {e}"));
    }
    let w: WireIn = serde_json::from_value(v).map_err(|e| format!("malformed response: {e}"))?;
    let result = match (w.ok, w.result, w.error) {
        (true, Some(r), None) => Ok(r),
        (false, None, Some(e)) => Err(e),
        _ => return Err("a response needs `result` when ok, `error` when not".into()),
    };
    Ok(ServerLine::Response(RawResponse { id: w.id, result }))
}
