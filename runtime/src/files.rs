//! Reading a small document (policy, root of trust, signature file,
//! persisted trust state) from a path someone else may control.
//!
//! `std::fs::read` would block forever on a FIFO and fill memory from
//! `/dev/zero` or an ever-growing file. [`read_document`] opens without
//! blocking (`O_NONBLOCK`, and `O_NOFOLLOW` unless the operator named the
//! path), checks with `fstat` on the opened file — not the path, so nothing
//! can be swapped in between — that it is a regular file within the cap,
//! then reads at most the cap (a file growing meanwhile is refused too).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Whether a symbolic link as the last path component is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it: the operator named this path (a config file may well be
    /// a link), and the target is still checked to be a regular file.
    Follow,
    /// Refuse it: the path is inside a folder others write (a fleet share)
    /// or one only the broker writes (its state), where a link is a trick
    /// or damage.
    Refuse,
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing at that path.
    #[error("{0}: no such file")]
    NotFound(String),
    /// A symbolic link where [`Links::Refuse`] applies.
    #[error("{0}: is a symbolic link, refused here (name the file itself)")]
    Symlink(String),
    /// A FIFO, device, socket or folder.
    #[error("{0}: is a {1}, not a regular file")]
    NotRegular(String, &'static str),
    /// Larger than the cap.
    #[error("{0}: more than {1} bytes, refused")]
    TooLarge(String, usize),
    /// Any other failure.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl ReadError {
    /// Whether the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound(_))
    }
}

fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "folder"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

fn open(path: &Path, links: Links) -> Result<File, ReadError> {
    let name = path.display().to_string();
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound(name),
            // O_NOFOLLOW on a link fails with ELOOP.
            _ if e.raw_os_error() == Some(libc::ELOOP) && links == Links::Refuse => {
                ReadError::Symlink(name)
            }
            _ => ReadError::Io(name, e),
        })
}

/// Read the regular file at `path`, at most `max` bytes; anything else (a
/// FIFO, a device, a folder, a larger file, a link where `links` refuses
/// one) is an error naming the path. Opening never blocks.
pub fn read_document(path: &Path, max: usize, links: Links) -> Result<Vec<u8>, ReadError> {
    let name = || path.display().to_string();
    let (f, meta) = open_regular_with(path, links)?;
    if meta.len() > max as u64 {
        return Err(ReadError::TooLarge(name(), max));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells a file that grew past the cap.
    f.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ReadError::Io(name(), e))?;
    if out.len() > max {
        return Err(ReadError::TooLarge(name(), max));
    }
    Ok(out)
}

/// Open the regular file at `path` to read it as a stream (a log that may
/// be larger than any document cap); anything else is an error naming the
/// path, as for [`read_document`]. Opening never blocks.
pub fn open_regular(path: &Path, links: Links) -> Result<File, ReadError> {
    open_regular_with(path, links).map(|(f, _)| f)
}

fn open_regular_with(path: &Path, links: Links) -> Result<(File, std::fs::Metadata), ReadError> {
    let name = || path.display().to_string();
    let f = open(path, links)?;
    let meta = f.metadata().map_err(|e| ReadError::Io(name(), e))?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(name(), kind(meta.file_type())));
    }
    Ok((f, meta))
}

/// [`read_document`] as UTF-8 text.
pub fn read_text(path: &Path, max: usize, links: Links) -> Result<String, ReadError> {
    let bytes = read_document(path, max, links)?;
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(
            path.display().to_string(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Make a FIFO at `p` (for the daemon's tests too).
    pub(crate) fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// Run `read_document` on another thread: a regression that blocks
    /// fails the test instead of hanging it.
    fn read_bounded_time(path: &Path, max: usize, links: Links) -> Result<Vec<u8>, ReadError> {
        let (tx, rx) = mpsc::channel();
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read_document(&p, max, links));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("read_document blocked")
    }

    #[test]
    fn a_regular_file_within_the_cap_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.toml");
        std::fs::write(&p, b"version = 1\n").unwrap();
        assert_eq!(
            read_document(&p, 12, Links::Refuse).unwrap(),
            b"version = 1\n"
        );
        assert_eq!(read_text(&p, 12, Links::Follow).unwrap(), "version = 1\n");
    }

    #[test]
    fn a_file_over_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'#'; 13]).unwrap();
        let e = read_document(&p, 12, Links::Follow).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(_, 12)), "{e}");
        assert!(e.to_string().contains("more than 12 bytes"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        mkfifo(&p);
        for links in [Links::Follow, Links::Refuse] {
            let e = read_bounded_time(&p, 1 << 20, links).unwrap_err();
            assert!(matches!(e, ReadError::NotRegular(_, "FIFO")), "{e}");
        }
    }

    #[test]
    fn dev_zero_is_refused() {
        let e = read_bounded_time(Path::new("/dev/zero"), 1 << 20, Links::Follow).unwrap_err();
        assert!(
            matches!(e, ReadError::NotRegular(_, "character device")),
            "{e}"
        );
    }

    #[test]
    fn a_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_document(dir.path(), 1 << 20, Links::Follow).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular(_, "folder")), "{e}");
    }

    #[test]
    fn symlinks_are_refused_or_followed_to_a_regular_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.toml");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read_document(&link, 10, Links::Refuse).unwrap_err();
        assert!(matches!(e, ReadError::Symlink(_)), "{e}");
        assert_eq!(read_document(&link, 10, Links::Follow).unwrap(), b"x");
        // Followed, a link to a device is still not a document.
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_bounded_time(&zero, 10, Links::Follow).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular(..)), "{e}");
    }

    #[test]
    fn a_missing_file_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_document(&dir.path().join("none"), 10, Links::Refuse).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let e = read_text(&dir.path().join("none"), 10, Links::Follow).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = read_text(&p, 10, Links::Follow).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }
}
