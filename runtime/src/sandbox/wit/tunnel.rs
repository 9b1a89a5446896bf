//! The connection to a proxy, lent to a MOD as `wasi:io` streams for its
//! handshake (contract 0.1.2, `connector`).
//!
//! Unlike wasmtime-wasi's own socket streams, these never read ahead: a
//! read takes at most what the guest asked for straight from the socket,
//! so a byte after the proxy's answer (a server that speaks first) stays in
//! the kernel for the application the socket is handed to. Writes go out
//! at once; what the kernel does not take waits (at most [`WRITE_MAX`]
//! bytes), and the stream reports no room until it is sent.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Largest read or pending write: a proxy handshake is a few hundred bytes.
pub const WRITE_MAX: usize = 16 * 1024;

/// The read side.
pub struct TunnelIn(pub Arc<TcpStream>);

/// The write side.
pub struct TunnelOut {
    stream: Arc<TcpStream>,
    pending: BytesMut,
}

impl TunnelOut {
    /// The write side of `stream`.
    pub fn new(stream: Arc<TcpStream>) -> TunnelOut {
        TunnelOut {
            stream,
            pending: BytesMut::new(),
        }
    }

    /// Send what the kernel takes now; keep the rest.
    fn push(&mut self) -> StreamResult<()> {
        while !self.pending.is_empty() {
            match self.stream.try_write(&self.pending) {
                Ok(0) => return Err(StreamError::Closed),
                Ok(n) => {
                    let _ = self.pending.split_to(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(StreamError::LastOperationFailed(e.into())),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for TunnelIn {
    async fn ready(&mut self) {
        // Readable, closed or failed: `read` then tells which.
        let _ = self.0.readable().await;
    }
}

impl InputStream for TunnelIn {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut buf = vec![0u8; size.min(WRITE_MAX)];
        match self.0.try_read(&mut buf) {
            Ok(0) if !buf.is_empty() => Err(StreamError::Closed),
            Ok(n) => {
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Bytes::new()),
            Err(e) => Err(StreamError::LastOperationFailed(e.into())),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for TunnelOut {
    async fn ready(&mut self) {
        while !self.pending.is_empty() {
            if self.stream.writable().await.is_err() || self.push().is_err() {
                return;
            }
        }
    }
}

impl OutputStream for TunnelOut {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if !self.pending.is_empty() || bytes.len() > WRITE_MAX {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "wrote more than check-write allowed"
            )));
        }
        self.pending.extend_from_slice(&bytes);
        self.push()
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.push()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Room only once everything written before is out (the contract's
        // flush semantics).
        self.push()?;
        Ok(if self.pending.is_empty() {
            WRITE_MAX
        } else {
            0
        })
    }
}
