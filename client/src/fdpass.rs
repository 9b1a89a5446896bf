//! The client's side of handing a socket to the broker (SCM_RIGHTS) and of
//! checking who the broker is (SO_PEERCRED).
//!
//! A socket passed with a `map` request is the proof of ownership: the
//! broker reads its address itself and maps exactly that endpoint, without
//! looking at who else listens on the port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::Transport;

/// What a local socket is: its transport (TCP or UDP; anything else is an
/// error) and the IP address it is bound to (`getsockname`).
pub fn describe(fd: BorrowedFd<'_>) -> io::Result<(Transport, SocketAddr)> {
    let raw = fd.as_raw_fd();
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut ty).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let transport = match ty {
        libc::SOCK_STREAM => Transport::Tcp,
        libc::SOCK_DGRAM => Transport::Udp,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket is neither TCP nor UDP",
            ));
        }
    };
    Ok((transport, local_address(raw)?))
}

fn local_address(raw: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: getsockname writes at most `len` bytes into storage we own.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe { libc::getsockname(raw, (&raw mut ss).cast(), &mut len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: libc::sockaddr_in = unsafe { std::ptr::read((&raw const ss).cast()) };
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const ss).cast()) };
            Ok(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket is not an IP socket",
        )),
    }
}

/// Write `line` on `stream` with `fd` attached to its first byte, then the
/// rest of the line normally.
pub async fn send_with_fd(stream: &UnixStream, line: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = stream.as_raw_fd();
    let sent = loop {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, || sendmsg_fd(raw, line, fd.as_raw_fd())) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    let mut rest = &line[sent..];
    while !rest.is_empty() {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sendmsg_fd(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header with one fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: msg points at live buffers; MSG_NOSIGNAL turns a closed peer
    // into an error instead of SIGPIPE.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The uids a client trusts as its broker: root, itself, and the uid in
/// `P2PB_BROKER_UID` if set (a broker run as a dedicated system user).
pub fn trusted_broker_uids() -> Vec<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let mut uids = vec![0, unsafe { libc::geteuid() }];
    if let Some(u) = std::env::var("P2PB_BROKER_UID")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        uids.push(u);
    }
    uids
}
