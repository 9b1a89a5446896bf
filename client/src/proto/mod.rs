//! The client API protocol, version 1: newline-delimited JSON over a Unix
//! stream socket. Pure types and codecs, shared by the broker and clients;
//! see `docs/client-api.md` for the wire format with examples.

mod request;
mod response;

pub use request::{MapParams, Op, Request, RequestError, encode_request, parse_request};
pub use response::{
    Event, EventKind, Lease, LeaseState, ModeStatus, NetworkView, PolicyStatus, ProbeSummary,
    ProbeView, RawResponse, RefusedMod, Response, ResultBody, ServerLine, Status, encode_event,
    encode_response, parse_server_line,
};

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks (`"v"` in every line).
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the broker reads, newline excluded. Requests are
/// small; the cap keeps one client from making the broker buffer without
/// bound.
pub const MAX_LINE: usize = 16 * 1024;

/// Transport protocol of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            _ => Err(format!("unknown transport `{s}` (tcp or udp)")),
        }
    }
}

/// Why a request failed (`error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or malformed field.
    BadRequest,
    /// A protocol version this broker does not speak.
    UnsupportedVersion,
    /// The line is longer than [`MAX_LINE`].
    TooLarge,
    /// No such op.
    UnknownOp,
    /// The policy does not allow this client to do this.
    Unauthorized,
    /// No such lease or mode.
    NotFound,
    /// The port is taken (by another lease or on the gateway).
    Conflict,
    /// No MOD could map; `reasons` says why for each.
    NoMode,
    /// A cap of the policy (leases, lifetime) was reached.
    Limit,
    /// The broker failed (e.g. its journal); the request had no effect.
    Internal,
    /// The broker is shutting down.
    ShuttingDown,
}

/// One MOD's reason for not mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeReason {
    /// The MOD.
    pub mode: String,
    /// Its error kind (`unavailable`, `timeout`, `conflict`, ...).
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for humans.
    pub message: String,
    /// Per-MOD reasons (only for `no-mode` and `conflict`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ModeReason>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = serde_json::to_value(self.code).unwrap_or_default();
        write!(f, "{}: {}", code.as_str().unwrap_or("error"), self.message)
    }
}

impl std::error::Error for ApiError {}
