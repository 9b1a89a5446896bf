//! Receiving sockets on the API socket (SCM_RIGHTS), for both ends: the
//! broker receives the socket a `map` request proves ownership with, the
//! client the connected socket a `connect` answer hands over.
//!
//! The socket is read with `recvmsg`. A descriptor is sent with the first
//! bytes of its line, and the kernel ends a read with the message that
//! carries descriptors (it may begin with earlier messages' bytes): so a
//! descriptor has arrived by the time its line is complete, possibly with
//! lines before it. Descriptors wait in a small per-connection queue, and
//! each line that names one claims the oldest, in line order. A peer cannot make
//! the reader hold many: at most [`QUEUED_MAX`] wait at once, each message
//! carries at most [`PER_MESSAGE_MAX`], and the rest are closed on arrival.

pub use crate::fdpass::send_with_fd;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::unix::OwnedReadHalf;

/// Descriptors one message may carry; more are closed by the kernel
/// (the control buffer has no room for them).
pub const PER_MESSAGE_MAX: usize = 2;
/// Descriptors waiting for their request at once, per connection.
pub const QUEUED_MAX: usize = 4;

/// Descriptors received on one connection, oldest first.
#[derive(Debug, Default)]
pub struct FdQueue(Mutex<VecDeque<OwnedFd>>);

impl FdQueue {
    /// The oldest descriptor received and not yet claimed.
    pub fn take(&self) -> Option<OwnedFd> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    fn push(&self, fd: OwnedFd) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Over the cap the descriptor is dropped, which closes it.
        if q.len() < QUEUED_MAX {
            q.push_back(fd);
        }
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The read half of the API socket, read with `recvmsg` so that passed
/// descriptors land in its [`FdQueue`].
pub struct FdReader {
    half: OwnedReadHalf,
    queue: Arc<FdQueue>,
}

impl FdReader {
    /// Read `half`, queueing passed descriptors.
    pub fn new(half: OwnedReadHalf) -> (FdReader, Arc<FdQueue>) {
        let queue = Arc::new(FdQueue::default());
        (
            FdReader {
                half,
                queue: queue.clone(),
            },
            queue,
        )
    }
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stream = this.half.as_ref();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            let raw = stream.as_raw_fd();
            let dst = buf.initialize_unfilled();
            match stream.try_io(Interest::READABLE, || recvmsg_fds(raw, dst)) {
                Ok((n, fds)) => {
                    for fd in fds {
                        this.queue.push(fd);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// One `recvmsg`: the bytes read and the descriptors that came with them
/// (close-on-exec; owned, so dropping one closes it).
fn recvmsg_fds(sock: RawFd, dst: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space =
        unsafe { libc::CMSG_SPACE((PER_MESSAGE_MAX * std::mem::size_of::<RawFd>()) as u32) };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * 8) as _;
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote, within
    // msg_controllen; each SCM_RIGHTS payload is an array of descriptors
    // now owned by this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds))
}
