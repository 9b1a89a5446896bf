//! A connection the broker opened for the application (`connect`).

use std::os::fd::{AsFd, OwnedFd};

use crate::{ClientError, Connection, Transport};

/// An open TCP connection to the destination asked for, and how the broker
/// opened it. The stream is the application's alone: through a proxy, the
/// proxy's handshake is already done, and the first byte read is the
/// destination's.
#[derive(Debug)]
pub struct Outbound {
    /// The connected socket (blocking mode).
    pub stream: std::net::TcpStream,
    /// The route (`direct` or a connector MOD), its proxy, the time taken,
    /// routes that failed first.
    pub connection: Connection,
}

impl Outbound {
    /// Check the handed-over descriptor is a TCP socket and wrap it.
    pub(crate) fn new(socket: OwnedFd, connection: Connection) -> Result<Outbound, ClientError> {
        let (transport, _) = crate::fdpass::describe(socket.as_fd())?;
        if transport != Transport::Tcp {
            return Err(ClientError::Protocol(
                "the broker handed over a socket that is not TCP".into(),
            ));
        }
        let stream = std::net::TcpStream::from(socket);
        stream.set_nonblocking(false)?;
        Ok(Outbound { stream, connection })
    }

    /// The stream for tokio (switched to non-blocking mode).
    pub fn into_tokio(self) -> std::io::Result<tokio::net::TcpStream> {
        self.stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(self.stream)
    }
}
