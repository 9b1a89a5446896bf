//! Reading and writing `wasi:io` streams with a deadline: what a connector
//! MOD does on the connection the broker lends it for a proxy handshake.
//! Reads never take more than asked, so nothing after the handshake is
//! consumed.

use crate::ModeError;
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::io::poll::{Pollable, poll};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::clock::Deadline;

/// What a stream failure means for a handshake with `peer` (e.g. "the
/// proxy").
fn failed(peer: &str, e: StreamError) -> ModeError {
    match e {
        StreamError::Closed => ModeError::Unavailable(format!("{peer} closed the connection")),
        StreamError::LastOperationFailed(e) => {
            ModeError::Unavailable(format!("{peer}: {}", e.to_debug_string()))
        }
    }
}

fn wait(ready: &Pollable, deadline: Deadline, peer: &str) -> Result<(), ModeError> {
    if deadline.remaining().is_none() {
        return Err(ModeError::Timeout(format!("{peer} did not answer in time")));
    }
    let timer = monotonic_clock::subscribe_instant(deadline.instant_ns());
    poll(&[ready, &timer]);
    Ok(())
}

/// Write all of `bytes` to `peer` before the deadline, and flush.
pub fn write_all(
    out: &OutputStream,
    mut bytes: &[u8],
    deadline: Deadline,
    peer: &str,
) -> Result<(), ModeError> {
    while !bytes.is_empty() {
        let room = out.check_write().map_err(|e| failed(peer, e))? as usize;
        if room == 0 {
            wait(&out.subscribe(), deadline, peer)?;
            continue;
        }
        let n = room.min(bytes.len());
        out.write(&bytes[..n]).map_err(|e| failed(peer, e))?;
        bytes = &bytes[n..];
    }
    out.flush().map_err(|e| failed(peer, e))
}

/// Read one byte before the deadline; `None` when `peer` closed.
pub fn read_byte(
    input: &InputStream,
    deadline: Deadline,
    peer: &str,
) -> Result<Option<u8>, ModeError> {
    loop {
        match input.read(1) {
            Ok(b) if !b.is_empty() => return Ok(Some(b[0])),
            Ok(_) => {}
            Err(StreamError::Closed) => return Ok(None),
            Err(e) => return Err(failed(peer, e)),
        }
        wait(&input.subscribe(), deadline, peer)?;
    }
}

/// Read what has arrived (at least one byte, at most `max`) before the
/// deadline; `None` when `peer` closed.
pub fn read_some(
    input: &InputStream,
    max: usize,
    deadline: Deadline,
    peer: &str,
) -> Result<Option<Vec<u8>>, ModeError> {
    loop {
        match input.read(max as u64) {
            Ok(b) if !b.is_empty() => return Ok(Some(b)),
            Ok(_) => {}
            Err(StreamError::Closed) => return Ok(None),
            Err(e) => return Err(failed(peer, e)),
        }
        wait(&input.subscribe(), deadline, peer)?;
    }
}

/// Read exactly `n` bytes before the deadline (at most what was asked);
/// `peer` closing first is `unavailable`.
pub fn read_exact(
    input: &InputStream,
    n: usize,
    deadline: Deadline,
    peer: &str,
) -> Result<Vec<u8>, ModeError> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match input.read((n - out.len()) as u64) {
            Ok(b) if !b.is_empty() => out.extend_from_slice(&b),
            Ok(_) => wait(&input.subscribe(), deadline, peer)?,
            Err(StreamError::Closed) => {
                return Err(ModeError::Unavailable(format!(
                    "{peer} closed the connection after {} of {n} bytes",
                    out.len()
                )));
            }
            Err(e) => return Err(failed(peer, e)),
        }
    }
    Ok(out)
}
