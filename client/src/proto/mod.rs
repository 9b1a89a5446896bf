//! The client API protocol, version 1: newline-delimited JSON over a Unix
//! stream socket. Pure types and codecs, shared by the broker and clients:
//! no I/O, no clock. `docs/client-api.md` documents the wire format with
//! examples for implementers in other languages.
//!
//! - [`request`](parse_request): what a client sends; the broker parses it
//!   strictly (unknown fields are errors).
//! - [`response`](parse_response_line): what the broker answers; clients
//!   read it leniently (unknown fields are ignored, so a broker may add
//!   fields within version 1).
//! - [`Event`]: what a subscribed connection receives.
//! - [`framing`]: splitting the stream into lines under a length cap.

mod event;
pub mod framing;
mod records;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use event::{Event, EventKind, encode_event};
pub use records::{
    Connection, Lease, LeaseList, LeaseState, ModeStatus, NatView, NetworkView, PolicyStatus,
    ProbeSummary, ProbeView, Punch, Reached, RefusedMod, Relay, RelayPeer, Status,
};
pub use request::{
    ConnectParams, MAX_HOST, MapParams, Op, PERMIT_MAX, Request, RequestError, encode_request,
    parse_request,
};
/// Former name of [`parse_response_line`], kept so existing callers build.
#[doc(hidden)]
pub use response::parse_response_line as parse_server_line;
pub use response::{
    RawResponse, Response, ResultBody, ServerLine, encode_response, parse_response_line,
};

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks (`"v"` in every line).
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the broker reads, newline excluded. Requests are
/// small; the cap keeps one client from making the broker buffer without
/// bound.
pub const MAX_LINE: usize = 16 * 1024;

/// Transport protocol of a mapping (`"tcp"`, `"udp"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Why a request failed (`error.code`, kebab-case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The endpoint is not the requester's: no socket of its uid listens
    /// (TCP) or is bound (UDP) there, or another user's does too.
    NotOwner,
    /// The policy in force has expired; no new mapping until a valid one
    /// arrives.
    PolicyExpired,
    /// No route of the policy reached the destination (`connect`);
    /// `reasons` says why for each.
    Unreachable,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TooLarge,
        ErrorCode::UnknownOp,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::NoMode,
        ErrorCode::Limit,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::NotOwner,
        ErrorCode::PolicyExpired,
        ErrorCode::Unreachable,
    ];

    /// The wire name (`"no-mode"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::UnsupportedVersion => "unsupported-version",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::UnknownOp => "unknown-op",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NoMode => "no-mode",
            ErrorCode::Limit => "limit",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::NotOwner => "not-owner",
            ErrorCode::PolicyExpired => "policy-expired",
            ErrorCode::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One MOD's reason for not mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeReason {
    /// The MOD.
    pub mode: String,
    /// Its error kind (`unavailable`, `timeout`, `conflict`, ...).
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
}

/// An error answer (`"error"` of a response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for humans.
    pub message: String,
    /// Per-MOD reasons (for `no-mode`, and `conflict` when a MOD saw it);
    /// absent on the wire when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ModeReason>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
