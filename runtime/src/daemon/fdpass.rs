//! Sockets handed to the broker with a request (SCM_RIGHTS): the reader
//! lives in the client crate ([`p2pbroker_client::fdrecv`]), which reads
//! the broker's answers the same way.

pub use p2pbroker_client::fdrecv::{FdQueue, FdReader, PER_MESSAGE_MAX, QUEUED_MAX};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use tokio::io::AsyncReadExt;

    fn send(sock: &std::os::unix::net::UnixStream, data: &[u8], fds: &[RawFd]) {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let size = std::mem::size_of_val(fds) as u32;
        // SAFETY: test-only sendmsg with a control buffer sized for `fds`.
        unsafe {
            let space = libc::CMSG_SPACE(size) as usize;
            let mut control = vec![0u64; space.div_ceil(8)];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
            assert_eq!(
                libc::sendmsg(sock.as_raw_fd(), &msg, 0),
                data.len() as isize
            );
        }
    }

    /// Descriptors of this process that refer to socket `inode` (other
    /// tests running in parallel open and close their own).
    fn open_fds(inode: u64) -> usize {
        let want = format!("socket:[{inode}]");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_str() == Some(want.as_str()))
            .count()
    }

    #[tokio::test]
    async fn passed_descriptors_are_queued_and_bounded() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let (rd, _wr) = tokio::net::UnixStream::from_std(b).unwrap().into_split();
        let (mut reader, queue) = FdReader::new(rd);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let raw = l.as_fd().as_raw_fd();
        send(&a, b"line one\n", &[raw]);
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"line one\n");
        let got = queue.take().expect("the descriptor arrived with its line");
        let (t, local, inode) = super::super::ownership::described(got.as_fd()).unwrap();
        assert_eq!(
            (t, local),
            (crate::gate::Transport::Tcp, l.local_addr().unwrap())
        );
        assert!(queue.take().is_none());
        // A flood: 3 per message (one over), 5 messages; at most 4 are kept,
        // and every other descriptor is closed again.
        let before = open_fds(inode);
        for _ in 0..5 {
            send(&a, b"x", &[raw, raw, raw]);
        }
        let mut total = 0;
        while total < 5 {
            total += reader.read(&mut buf).await.unwrap();
        }
        assert_eq!(queue.len(), QUEUED_MAX);
        assert_eq!(open_fds(inode), before + QUEUED_MAX);
        while queue.take().is_some() {}
        assert_eq!(open_fds(inode), before);
    }
}
