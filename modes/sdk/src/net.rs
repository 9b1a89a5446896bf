//! Blocking UDP and TCP over `wasi:sockets`, with deadlines.
//!
//! Every address used here passes the broker's capability gate. A refused
//! address is [`NetError::Denied`]; a datagram from a source the MOD may
//! not receive from is dropped by the host, so it shows up as a timeout.

use core::net::SocketAddr;
use core::time::Duration;

use crate::ModeError;
use crate::addr::{from_socket, to_socket};
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::io::poll::{Pollable, poll};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::bindings::wasi::sockets::network::{ErrorCode, IpAddressFamily};
use crate::bindings::wasi::sockets::udp::{
    IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream,
};
use crate::bindings::wasi::sockets::{
    instance_network, tcp, tcp_create_socket, udp, udp_create_socket,
};
use crate::clock::Deadline;

/// A socket operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The broker's capability gate refused the address.
    Denied,
    /// Nothing happened before the deadline.
    Timeout,
    /// The peer refused the connection.
    Refused,
    /// No route, host or network unreachable.
    Unreachable,
    /// Anything else, with the WASI error's name.
    Other(String),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::Denied => f.write_str("denied by the broker's capability gate"),
            NetError::Timeout => f.write_str("timed out"),
            NetError::Refused => f.write_str("connection refused"),
            NetError::Unreachable => f.write_str("unreachable"),
            NetError::Other(s) => write!(f, "socket error: {s}"),
        }
    }
}

impl From<ErrorCode> for NetError {
    fn from(e: ErrorCode) -> Self {
        match e {
            // The broker's gate refuses with access-denied. not-supported
            // (an address family or option the host lacks) is no refusal:
            // reporting it as Denied would blame the policy.
            ErrorCode::AccessDenied => NetError::Denied,
            ErrorCode::Timeout => NetError::Timeout,
            ErrorCode::ConnectionRefused | ErrorCode::ConnectionReset => NetError::Refused,
            ErrorCode::RemoteUnreachable => NetError::Unreachable,
            // The WIT name (`address-in-use`): the Debug form carries the
            // whole doc text and would crowd a ModeError's 1 KiB reason.
            other => NetError::Other(other.name().into()),
        }
    }
}

impl From<NetError> for ModeError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Denied => ModeError::Denied(e.to_string()),
            NetError::Timeout => ModeError::Timeout(e.to_string()),
            _ => ModeError::Unavailable(e.to_string()),
        }
    }
}

fn family(a: &SocketAddr) -> IpAddressFamily {
    match a {
        SocketAddr::V4(_) => IpAddressFamily::Ipv4,
        SocketAddr::V6(_) => IpAddressFamily::Ipv6,
    }
}

/// Wait until `ready` fires or the deadline passes.
fn wait(ready: &Pollable, deadline: Deadline) -> Result<(), NetError> {
    if deadline.remaining().is_none() {
        return Err(NetError::Timeout);
    }
    let timer = monotonic_clock::subscribe_instant(deadline.instant_ns());
    poll(&[ready, &timer]);
    Ok(())
}

/// Longest time a bind waits; binds complete at once on every host.
const BIND_WAIT: Duration = Duration::from_secs(1);

/// A bound UDP socket.
pub struct UdpSocket {
    // Field order is drop order: WASI requires the streams (children) to go
    // before the socket.
    incoming: IncomingDatagramStream,
    outgoing: OutgoingDatagramStream,
    socket: udp::UdpSocket,
}

impl UdpSocket {
    /// Bind to `addr` (port 0: an ephemeral port).
    pub fn bind(addr: SocketAddr) -> Result<UdpSocket, NetError> {
        let socket = udp_create_socket::create_udp_socket(family(&addr))?;
        let network = instance_network::instance_network();
        socket.start_bind(&network, from_socket(addr))?;
        let deadline = Deadline::after(BIND_WAIT);
        loop {
            match socket.finish_bind() {
                Ok(()) => break,
                Err(ErrorCode::WouldBlock) => wait(&socket.subscribe(), deadline)?,
                Err(e) => return Err(e.into()),
            }
        }
        let (incoming, outgoing) = socket.stream(None)?;
        Ok(UdpSocket {
            incoming,
            outgoing,
            socket,
        })
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        Ok(to_socket(&self.socket.local_address()?))
    }

    /// Send one datagram to `to`.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), NetError> {
        let deadline = Deadline::after(BIND_WAIT);
        while self.outgoing.check_send()? == 0 {
            wait(&self.outgoing.subscribe(), deadline)?;
        }
        let datagram = OutgoingDatagram {
            data: data.to_vec(),
            remote_address: Some(from_socket(to)),
        };
        self.outgoing.send(&[datagram])?;
        Ok(())
    }

    /// Receive one datagram into `buf` (truncated to its length), waiting
    /// at most `timeout`. Returns its length and source.
    pub fn recv_from(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, SocketAddr), NetError> {
        self.recv_until(buf, Deadline::after(timeout))
    }

    /// [`UdpSocket::recv_from`] with an absolute deadline, for exchanges
    /// that retransmit on a schedule.
    pub fn recv_until(
        &self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<(usize, SocketAddr), NetError> {
        loop {
            if let Some(d) = self.incoming.receive(1)?.into_iter().next() {
                let n = d.data.len().min(buf.len());
                buf[..n].copy_from_slice(&d.data[..n]);
                return Ok((n, to_socket(&d.remote_address)));
            }
            wait(&self.incoming.subscribe(), deadline)?;
        }
    }
}

/// A connected TCP stream.
pub struct TcpStream {
    // Streams before the socket: drop order.
    input: InputStream,
    output: OutputStream,
    socket: tcp::TcpSocket,
}

fn stream_err(e: StreamError) -> NetError {
    match e {
        StreamError::Closed => NetError::Other("stream closed".into()),
        StreamError::LastOperationFailed(err) => NetError::Other(err.to_debug_string()),
    }
}

impl TcpStream {
    /// Connect to `to` within `timeout`.
    pub fn connect(to: SocketAddr, timeout: Duration) -> Result<TcpStream, NetError> {
        let socket = tcp_create_socket::create_tcp_socket(family(&to))?;
        let network = instance_network::instance_network();
        socket.start_connect(&network, from_socket(to))?;
        let deadline = Deadline::after(timeout);
        loop {
            match socket.finish_connect() {
                Ok((input, output)) => {
                    return Ok(TcpStream {
                        input,
                        output,
                        socket,
                    });
                }
                Err(ErrorCode::WouldBlock) => wait(&socket.subscribe(), deadline)?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddr, NetError> {
        Ok(to_socket(&self.socket.remote_address()?))
    }

    /// Our end's address: the source address the peer sees (gateways that
    /// check "the client is the sender" compare against it).
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        Ok(to_socket(&self.socket.local_address()?))
    }

    /// Write all of `data` and flush it, within `timeout`.
    pub fn write_all(&self, mut data: &[u8], timeout: Duration) -> Result<(), NetError> {
        let deadline = Deadline::after(timeout);
        while !data.is_empty() {
            let room = self.output.check_write().map_err(stream_err)?;
            if room == 0 {
                wait(&self.output.subscribe(), deadline)?;
                continue;
            }
            let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.output.write(&data[..n]).map_err(stream_err)?;
            data = &data[n..];
        }
        self.output.flush().map_err(stream_err)?;
        // Flushing completes when the stream is writable again.
        while self.output.check_write().map_err(stream_err)? == 0 {
            wait(&self.output.subscribe(), deadline)?;
        }
        Ok(())
    }

    /// Read what is available (at least one byte) into `buf`, waiting at
    /// most `timeout`; `Ok(0)` means the peer closed.
    pub fn read(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, NetError> {
        let deadline = Deadline::after(timeout);
        loop {
            match self.input.read(buf.len() as u64) {
                Ok(bytes) if bytes.is_empty() => wait(&self.input.subscribe(), deadline)?,
                Ok(bytes) => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    return Ok(bytes.len());
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(e) => return Err(stream_err(e)),
            }
        }
    }

    /// Read until the peer closes, at most `max` bytes, within `timeout`.
    /// More than `max` bytes is an error: a hostile peer cannot make a MOD
    /// buffer without bound.
    pub fn read_to_end_limited(&self, max: usize, timeout: Duration) -> Result<Vec<u8>, NetError> {
        let deadline = Deadline::after(timeout);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let left = deadline.remaining().ok_or(NetError::Timeout)?;
            let n = self.read(&mut buf, left)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > max {
                return Err(NetError::Other(format!("peer sent more than {max} bytes")));
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// What a request/response exchange makes of one datagram.
#[derive(Debug)]
pub enum Reply<T, E> {
    /// The awaited answer.
    Accept(T),
    /// Not ours (stray, late or foreign): keep waiting.
    Ignore,
    /// A definite failure: stop.
    Fail(E),
}

/// A datagram socket as [`exchange_on`] drives it: [`UdpSocket`] in a MOD,
/// [`crate::testing::FakeGateway`] in a unit test on the host (which has
/// neither sockets nor the broker's clock).
pub trait Datagrams {
    /// Send one datagram to `to`.
    fn send_to(&mut self, data: &[u8], to: SocketAddr) -> Result<(), NetError>;
    /// Receive one datagram into `buf` before `deadline`: its length and
    /// source, or [`NetError::Timeout`].
    fn recv_until(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<(usize, SocketAddr), NetError>;
    /// The monotonic clock the deadlines are on, in nanoseconds.
    fn now_ns(&self) -> u64;
}

impl Datagrams for UdpSocket {
    fn send_to(&mut self, data: &[u8], to: SocketAddr) -> Result<(), NetError> {
        UdpSocket::send_to(self, data, to)
    }
    fn recv_until(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<(usize, SocketAddr), NetError> {
        UdpSocket::recv_until(self, buf, deadline)
    }
    fn now_ns(&self) -> u64 {
        crate::clock::now_ns()
    }
}

/// Send `request` to `to` from an ephemeral port and wait for an answer
/// `judge` accepts, retransmitting after `schedule(n)` for attempt `n`
/// (`None`: no more attempts) until `budget` is spent. Only datagrams from
/// `to` are judged. Gives `Err(Timeout)` when nothing was accepted.
pub fn exchange<T, E: From<NetError>>(
    to: SocketAddr,
    request: &[u8],
    schedule: impl Fn(u32) -> Option<Duration>,
    budget: Duration,
    judge: impl FnMut(&[u8]) -> Reply<T, E>,
) -> Result<T, E> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let mut sock = UdpSocket::bind(any)?;
    exchange_on(&mut sock, to, request, schedule, budget, judge)
}

/// [`exchange`] on a socket the caller holds (a [`UdpSocket`], or a
/// [`crate::testing::FakeGateway`] in a unit test).
pub fn exchange_on<T, E: From<NetError>>(
    io: &mut impl Datagrams,
    to: SocketAddr,
    request: &[u8],
    schedule: impl Fn(u32) -> Option<Duration>,
    budget: Duration,
    mut judge: impl FnMut(&[u8]) -> Reply<T, E>,
) -> Result<T, E> {
    let overall = Deadline::from_ns(io.now_ns(), budget);
    let mut buf = [0u8; 1500];
    let mut attempt = 0;
    while let (Some(wait), Some(left)) = (schedule(attempt), overall.remaining_at(io.now_ns())) {
        attempt += 1;
        io.send_to(request, to)?;
        let this_try = Deadline::from_ns(io.now_ns(), wait.min(left));
        loop {
            match io.recv_until(&mut buf, this_try) {
                Ok((n, from)) if from == to => match judge(&buf[..n]) {
                    Reply::Accept(v) => return Ok(v),
                    Reply::Ignore => continue,
                    Reply::Fail(e) => return Err(e),
                },
                Ok(_) => continue,
                Err(NetError::Timeout) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(NetError::Timeout.into())
}
