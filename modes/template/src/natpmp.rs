//! NAT-PMP (RFC 6886) messages as pure functions over bytes: built and
//! read here, sent elsewhere, so every case is a unit test on the host.

use core::net::Ipv4Addr;

/// The NAT-PMP version this speaks.
const VERSION: u8 = 0;
/// Opcode of the external-address request; map requests use 1 (UDP) and
/// 2 (TCP); an answer's opcode is the request's plus 128.
const OP_EXTERNAL: u8 = 0;
const ANSWER: u8 = 128;

/// The request for the gateway's external address.
pub fn external_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL]
}

/// A map request: `op` 1 for UDP, 2 for TCP; `lifetime` 0 removes it.
pub fn map_request(op: u8, internal: u16, external: u16, lifetime: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = op;
    b[4..6].copy_from_slice(&internal.to_be_bytes());
    b[6..8].copy_from_slice(&external.to_be_bytes());
    b[8..12].copy_from_slice(&lifetime.to_be_bytes());
    b
}

/// What a gateway granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The internal port the answer is for.
    pub internal: u16,
    /// The external port the gateway chose.
    pub external: u16,
    /// Seconds the mapping lasts.
    pub lifetime: u32,
}

/// Why an answer is not a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an answer to this request (too short, another opcode): ignore it.
    NotOurs,
    /// The gateway said no, with its result code.
    Result(u16),
}

/// The gateway's words for a result code (RFC 6886 §3.5).
pub fn result_text(code: u16) -> &'static str {
    match code {
        1 => "unsupported version",
        2 => "not authorized or refused",
        3 => "network failure (no external address yet)",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown result code",
    }
}

/// The result code of an answer with opcode `op`, if it is one.
fn result(b: &[u8], op: u8, len: usize) -> Result<(), Refusal> {
    if b.len() < len || b[0] != VERSION || b[1] != ANSWER + op {
        return Err(Refusal::NotOurs);
    }
    match u16::from_be_bytes([b[2], b[3]]) {
        0 => Ok(()),
        code => Err(Refusal::Result(code)),
    }
}

/// Read the answer to [`external_request`].
pub fn parse_external(b: &[u8]) -> Result<Ipv4Addr, Refusal> {
    result(b, OP_EXTERNAL, 12)?;
    Ok(Ipv4Addr::new(b[8], b[9], b[10], b[11]))
}

/// Read the answer to a [`map_request`] with opcode `op`.
pub fn parse_map(b: &[u8], op: u8) -> Result<Granted, Refusal> {
    result(b, op, 16)?;
    Ok(Granted {
        internal: u16::from_be_bytes([b[8], b[9]]),
        external: u16::from_be_bytes([b[10], b[11]]),
        lifetime: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
    })
}
