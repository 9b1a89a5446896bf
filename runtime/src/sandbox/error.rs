//! Typed errors at the runtime's two boundaries: loading a component and
//! calling it.

use std::net::SocketAddr;
use std::time::Duration;

use super::wit::ModeError;
use crate::gate::{Transport, Use};

/// A component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its sha256 is not on the allow-list.
    #[error("component sha256 {sha256} is not on the allow-list")]
    NotAllowed {
        /// Hex sha256 of the bytes.
        sha256: String,
    },
    /// The bytes are a core module or something else, not a component.
    #[error("not a WebAssembly component ({0})")]
    NotAComponent(String),
    /// The bytes are a component but invalid (truncated, corrupt).
    #[error("malformed component: {0}")]
    Malformed(String),
    /// It imports an interface the broker does not provide.
    #[error(
        "component imports `{0}`, which the broker does not provide (MODs get wasi:sockets, wasi:io, wasi:clocks, wasi:random, an empty wasi:cli and wasi:filesystem, and p2pbroker:mode)"
    )]
    UnsupportedImport(String),
    /// The grants, limits or config given with it cannot be honoured.
    #[error("invalid mode spec: {0}")]
    Spec(String),
    /// It does not export the lifecycle this broker speaks.
    #[error("component does not implement the p2pbroker:mode@0.1 lifecycle: {0}")]
    WrongContract(String),
}

/// Which limit a call hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Sum of linear memories, in bytes.
    Memory(usize),
    /// Elements of one table.
    TableElements(usize),
    /// Core instances.
    Instances(usize),
    /// Tables.
    Tables(usize),
    /// Linear memories.
    Memories(usize),
    /// Sockets created (or accepted) in one call, or the host-wide budget.
    Sockets(u32),
    /// Resource-table entries held at once.
    TableEntries(u32),
    /// Name lookups started in one call.
    NameLookups(u32),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Memory(n) => write!(f, "memory (at most {n} bytes)"),
            Limit::TableElements(n) => write!(f, "table elements (at most {n})"),
            Limit::Instances(n) => write!(f, "instances (at most {n})"),
            Limit::Tables(n) => write!(f, "tables (at most {n})"),
            Limit::Memories(n) => write!(f, "memories (at most {n})"),
            Limit::Sockets(n) => write!(f, "sockets (at most {n} per call, or the host's budget)"),
            Limit::TableEntries(n) => write!(f, "resource-table entries (at most {n})"),
            Limit::NameLookups(n) => write!(f, "name lookups (at most {n})"),
        }
    }
}

/// A limit refusal, raised from the store's resource limiter.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("limit exceeded: {0}")]
pub struct LimitHit(pub Limit);

/// How a guest trapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// `unreachable` executed (explicit trap, or a Rust panic/abort).
    Unreachable,
    /// The wasm stack was exhausted.
    StackOverflow,
    /// Out-of-bounds memory or table access.
    OutOfBounds,
    /// Integer overflow or division by zero.
    Arithmetic,
    /// Indirect call to a null or mistyped function.
    BadCall,
    /// Any other trap code.
    Other,
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrapKind::Unreachable => "unreachable",
            TrapKind::StackOverflow => "stack overflow",
            TrapKind::OutOfBounds => "out-of-bounds access",
            TrapKind::Arithmetic => "arithmetic",
            TrapKind::BadCall => "bad indirect call",
            TrapKind::Other => "other",
        })
    }
}

/// A lifecycle call did not produce a valid result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The MOD returned its own typed error.
    #[error("{}: {}", crate::json::mode_error_kind(.0), mode_error_message(.0))]
    Mode(ModeError),
    /// The MOD used a socket address it was not granted. Takes precedence
    /// over what the MOD itself reported, since it explains it.
    #[error("capability denied: {transport} {use_} {address}")]
    Denied {
        /// The address refused.
        address: SocketAddr,
        /// Transport of the socket.
        transport: Transport,
        /// What it was to be used for.
        use_: Use,
    },
    /// The guest trapped.
    #[error("guest trapped ({kind}): {message}")]
    Trap {
        /// Kind of trap.
        kind: TrapKind,
        /// The trap message plus the guest's last error log line (its panic
        /// message, when the SDK's hook caught one).
        message: String,
    },
    /// The guest ran past its deadline while executing wasm (epoch).
    #[error("guest ran past its deadline of {0:?}")]
    Timeout(Duration),
    /// The guest sat in a host call (e.g. poll) past its deadline.
    #[error("guest blocked in a host call past its deadline of {0:?}")]
    Blocked(Duration),
    /// A resource limit was hit.
    #[error("guest hit a limit: {0}")]
    Limit(Limit),
    /// The fuel budget ran out.
    #[error("guest ran out of fuel")]
    OutOfFuel,
    /// The guest called a host function with invalid arguments (e.g. a
    /// resource handle it does not own).
    #[error("guest made an invalid host call: {0}")]
    BadHostCall(String),
    /// The guest returned a value that breaks the contract (too large,
    /// port 0, ...).
    #[error("guest returned an invalid result: {0}")]
    InvalidResult(String),
    /// The guest returned a mapping that does not answer its request:
    /// another internal endpoint or transport, or an absurd lifetime. It is
    /// audited, never journaled nor handed to a client; the mapping is kept
    /// here so the broker can ask the MOD to remove it.
    #[error("guest broke the contract: {reason}")]
    ContractBreach {
        /// What was wrong.
        reason: String,
        /// The refused mapping.
        mapping: Option<Box<crate::sandbox::wit::Mapping>>,
    },
    /// Instantiation failed (pool exhausted, ...).
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
}

impl CallError {
    /// A short stable name for the error kind (logs, JSON, tests).
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Mode(_) => "mode",
            CallError::Denied { .. } => "denied",
            CallError::Trap { .. } => "trap",
            CallError::Timeout(_) => "timeout",
            CallError::Blocked(_) => "blocked",
            CallError::Limit(_) => "limit",
            CallError::OutOfFuel => "out-of-fuel",
            CallError::BadHostCall(_) => "bad-host-call",
            CallError::InvalidResult(_) => "invalid-result",
            CallError::ContractBreach { .. } => "contract-breach",
            CallError::Instantiate(_) => "instantiate",
        }
    }

    /// The failure kind the selector, the lease events and the
    /// `mod_failures` metric use: the MOD's own error kind, `denied`,
    /// `timeout`, `contract-breach`, or `fault` for everything the sandbox
    /// stopped.
    pub fn failure_kind(&self) -> &'static str {
        match self {
            CallError::Mode(m) => crate::json::mode_error_kind(m),
            CallError::Denied { .. } => "denied",
            CallError::Timeout(_) | CallError::Blocked(_) => "timeout",
            CallError::ContractBreach { .. } => "contract-breach",
            _ => "fault",
        }
    }
}

/// The message carried by any [`ModeError`] case.
pub fn mode_error_message(e: &ModeError) -> &str {
    match e {
        ModeError::Unavailable(m)
        | ModeError::Denied(m)
        | ModeError::Conflict(m)
        | ModeError::Timeout(m)
        | ModeError::Protocol(m)
        | ModeError::MappingLost(m)
        | ModeError::Unsupported(m)
        | ModeError::InvalidRequest(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::CacheStatus;

    /// What a user reads carries the contract's words, never Rust's Debug
    /// forms (`Unavailable("…")`, `Memory(33554432)`, `Connect`).
    #[test]
    fn errors_read_in_the_contracts_words() {
        let e = CallError::Mode(ModeError::MappingLost("gone".into()));
        assert_eq!(e.to_string(), "mapping-lost: gone");
        let e = LimitHit(Limit::Memory(33_554_432));
        assert_eq!(
            e.to_string(),
            "limit exceeded: memory (at most 33554432 bytes)"
        );
        let e = CallError::Denied {
            address: "192.0.2.1:5351".parse().unwrap(),
            transport: Transport::Udp,
            use_: Use::Send,
        };
        assert_eq!(e.to_string(), "capability denied: udp send 192.0.2.1:5351");
        let e = CallError::Limit(Limit::Memory(33_554_432));
        assert_eq!(
            e.to_string(),
            "guest hit a limit: memory (at most 33554432 bytes)"
        );
        for text in [
            e.to_string(),
            TrapKind::StackOverflow.to_string(),
            Limit::Sockets(64).to_string(),
            CacheStatus::Recompiled("bad tag".into()).to_string(),
        ] {
            assert!(
                !text.contains('(') || text.contains("(at most") || text.contains("(bad"),
                "{text}"
            );
            assert!(!text.chars().any(|c| c.is_ascii_uppercase()), "{text}");
        }
    }
}
