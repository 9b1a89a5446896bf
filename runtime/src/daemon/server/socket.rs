//! Where the API socket lives, and binding it safely.
//!
//! Whoever can write the socket's folder can replace the socket and answer
//! in the broker's place, so the daemon binds only in a folder that it (or
//! root) owns and that neither group nor others may write, reached through
//! folders that others cannot rename (owned by it or root, and not
//! writable by others unless sticky, like `/tmp` itself). It creates a
//! missing folder with a safe mode, removes nothing at the path but a
//! stale socket, and sets the socket's mode without following a link.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::net::UnixListener;

/// The socket's mode: every local user may connect; the policy's access
/// rules decide per uid what each may do.
const SOCKET_MODE: u32 = 0o666;
/// With `--socket-group`: root and that group's members only.
const GROUP_SOCKET_MODE: u32 = 0o660;
/// A folder the daemon creates as root: others must reach the socket in it.
const SYSTEM_FOLDER_MODE: u32 = 0o755;
/// A folder the daemon creates as a user: its broker is its own.
const USER_FOLDER_MODE: u32 = 0o700;

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The daemon's socket unless `--socket`/`P2PB_SOCKET` says otherwise:
/// the system socket as root, else the user's under `$XDG_RUNTIME_DIR`
/// (the same paths clients look for; never a folder under `/tmp`).
pub fn default_path() -> anyhow::Result<PathBuf> {
    if effective_uid() == 0 {
        return Ok(PathBuf::from(p2pbroker_client::SYSTEM_SOCKET));
    }
    p2pbroker_client::user_socket_path().map_err(|_| {
        anyhow::anyhow!(
            "no place for the broker's socket: XDG_RUNTIME_DIR is not set; set it, or give --socket PATH (in a folder only you can write)"
        )
    })
}

/// Check (or create) the folder of the socket at `path` (see the module
/// docs); returns the path with the folder's symbolic links resolved.
/// [`bind`] does this too; the daemon calls it first, to fail before it
/// starts anything.
pub fn prepare(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("the socket path {} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let euid = effective_uid();
    let mode = if euid == 0 {
        SYSTEM_FOLDER_MODE
    } else {
        USER_FOLDER_MODE
    };
    Ok(prepare_folder(dir, euid, mode)?.join(name))
}

/// Bind the API socket at `path`: check (or create) its folder, refuse if
/// another broker answers on it, replace only a stale socket, and open it
/// to every local user, or with `group` to root and that group only.
/// Returns the listener and the path it is bound at (the folder's
/// symbolic links resolved).
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = prepare(path)?;
    clear_stale(&path)?;
    let Some(gid) = group else {
        let l =
            UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
        chmod_nofollow(&path, SOCKET_MODE)?;
        return Ok((l, path));
    };
    // Bound in a private folder and moved into place once its group and
    // mode are set: no one outside the group can connect in between.
    let staging = path.with_file_name(format!(".bind-{}", std::process::id()));
    let _ = std::fs::remove_file(staging.join("s"));
    let _ = std::fs::remove_dir(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let tmp = staging.join("s");
    let bound = (|| {
        let l =
            UnixListener::bind(&tmp).with_context(|| format!("cannot bind {}", tmp.display()))?;
        chown_group_nofollow(&tmp, gid)?;
        chmod_nofollow(&tmp, GROUP_SOCKET_MODE)?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move the socket to {}", path.display()))?;
        Ok((l, path))
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&staging);
    bound
}

/// The gid of group `name`, for `--socket-group`.
pub fn group_id(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name).context("a group name has no NUL byte")?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives `grp`'s
    // use, and only `gr_gid` (a plain integer) is read.
    let rc =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 {
        let e = std::io::Error::from_raw_os_error(rc);
        bail!("cannot look up group `{}`: {e}", crate::text::escaped(name));
    }
    if out.is_null() {
        bail!(
            "no group named `{}` on this host",
            crate::text::escaped(name)
        );
    }
    Ok(grp.gr_gid)
}

/// `chown :gid` that fails on a symbolic link instead of following it.
fn chown_group_nofollow(path: &Path, gid: u32) -> anyhow::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the
    // call; uid -1 leaves the owner as it is.
    let rc = unsafe {
        libc::fchownat(
            libc::AT_FDCWD,
            c.as_ptr(),
            u32::MAX,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot give {} to group {gid}: {e}", path.display());
    }
    Ok(())
}

/// Remove the socket at `path` if (and only if) a socket is there.
pub fn unbind(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Create `dir` if missing (mode `mode`), then check it and its ancestors;
/// returns it with symbolic links resolved.
fn prepare_folder(dir: &Path, euid: u32, mode: u32) -> anyhow::Result<PathBuf> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // The umask may have taken bits away; set the mode exactly.
            chmod_nofollow(dir, mode)?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
    let real =
        std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    check_folder(&real, euid)?;
    Ok(real)
}

/// Whether `dir` (resolved) is a safe home for the socket: see the module
/// documentation.
pub fn check_folder(dir: &Path, euid: u32) -> anyhow::Result<()> {
    let m = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !m.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    if m.uid() != euid && m.uid() != 0 {
        bail!(
            "refusing to put the socket in {}: it belongs to uid {}, not to this user ({euid}) or root (someone else may have created it first); remove it or choose another --socket",
            dir.display(),
            m.uid()
        );
    }
    if m.mode() & 0o022 != 0 {
        bail!(
            "refusing to put the socket in {}: other users may write there (mode {:o}) and could replace the socket; use a folder only its owner can write, such as the default under $XDG_RUNTIME_DIR",
            dir.display(),
            m.mode() & 0o7777
        );
    }
    for a in dir.ancestors().skip(1) {
        let m = std::fs::metadata(a).with_context(|| format!("cannot read {}", a.display()))?;
        let sticky = m.mode() & 0o1000 != 0;
        if (m.uid() != euid && m.uid() != 0) || (m.mode() & 0o022 != 0 && !sticky) {
            bail!(
                "refusing to put the socket under {}: another user could rename the folders in it (owner uid {}, mode {:o})",
                a.display(),
                m.uid(),
                m.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// Clear the way for a new socket at `path`: nothing there, or a stale
/// socket (which is removed). Anything else is left alone.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !m.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; not removing it (remove it yourself if it is not needed)",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another broker is already listening on {}", path.display());
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove stale socket {}", path.display()))
}

/// `chmod` that fails on a symbolic link instead of following it.
fn chmod_nofollow(path: &Path, mode: u32) -> anyhow::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe {
        libc::fchmodat(
            libc::AT_FDCWD,
            c.as_ptr(),
            mode as libc::mode_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot set the mode of {} to {mode:o}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A private folder to work in (tempdir gives 0700).
    fn private() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[tokio::test]
    async fn binds_in_a_private_folder_and_opens_the_socket_to_all() {
        let d = private();
        let (_l, at) = bind(&d.path().join("b.sock"), None).unwrap();
        let m = std::fs::symlink_metadata(&at).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o777, SOCKET_MODE);
        // A second daemon is refused while the first listens.
        let e = bind(&d.path().join("b.sock"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already listening"), "{e}");
    }

    #[tokio::test]
    async fn with_a_group_the_socket_is_that_groups_alone_and_answers() {
        let d = private();
        // SAFETY: getegid cannot fail.
        let gid = unsafe { libc::getegid() };
        let (l, at) = bind(&d.path().join("g.sock"), Some(gid)).unwrap();
        let m = std::fs::symlink_metadata(&at).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!((m.mode() & 0o777, m.gid()), (GROUP_SOCKET_MODE, gid));
        // The listener moved with it, and the staging folder is gone.
        let _c = std::os::unix::net::UnixStream::connect(&at).unwrap();
        assert!(l.accept().await.is_ok());
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(group_id("root").is_ok_and(|g| g == 0));
        let e = group_id("no-such-group-p2pb").unwrap_err().to_string();
        assert!(e.contains("no group named"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_folder_is_created_with_a_safe_mode() {
        let d = private();
        let sock = d.path().join("p2pbroker/broker.sock");
        let (_l, _) = bind(&sock, None).unwrap();
        let m = std::fs::metadata(d.path().join("p2pbroker")).unwrap();
        let want = if effective_uid() == 0 {
            SYSTEM_FOLDER_MODE
        } else {
            USER_FOLDER_MODE
        };
        assert_eq!(m.mode() & 0o777, want);
    }

    #[tokio::test]
    async fn a_folder_others_can_write_is_refused() {
        let d = private();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        for mode in [0o777, 0o1777, 0o775] {
            set_mode(&open, mode);
            let e = bind(&open.join("b.sock"), None).unwrap_err().to_string();
            assert!(e.contains("other users may write there"), "{mode:o}: {e}");
        }
        assert!(std::fs::read_dir(&open).unwrap().next().is_none());
        // Directly in a sticky world-writable folder such as /tmp.
        assert!(check_folder(Path::new("/tmp"), effective_uid()).is_err());
    }

    #[tokio::test]
    async fn a_folder_another_user_owns_is_refused() {
        let d = private();
        let theirs = d.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let other = if effective_uid() == 0 {
            65534
        } else {
            effective_uid()
        };
        if effective_uid() == 0 {
            std::os::unix::fs::chown(&theirs, Some(other), None).unwrap();
            let e = bind(&theirs.join("b.sock"), None).unwrap_err().to_string();
            assert!(e.contains("belongs to uid 65534"), "{e}");
        } else {
            // Not root: the check itself, with this user as the stranger.
            let e = check_folder(&theirs, other + 1).unwrap_err().to_string();
            assert!(e.contains(&format!("belongs to uid {other}")), "{e}");
        }
    }

    #[tokio::test]
    async fn only_a_stale_socket_is_ever_removed() {
        let d = private();
        let file = d.path().join("precious");
        std::fs::write(&file, b"keep me").unwrap();
        let mode = std::fs::metadata(&file).unwrap().mode();
        let e = bind(&file, None).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        // A symbolic link at the path is neither followed nor removed.
        let link = d.path().join("link.sock");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = bind(&link, None).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::metadata(&file).unwrap().mode(), mode);
        // A stale socket (nobody listening) is replaced.
        let stale = d.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let (_l, at) = bind(&stale, None).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&at).is_ok());
        unbind(&file);
        assert!(file.exists(), "unbind removes sockets only");
        unbind(&at);
        assert!(!at.exists());
    }

    #[test]
    fn the_mode_is_never_set_through_a_link() {
        let d = private();
        let target = d.path().join("target");
        std::fs::write(&target, b"").unwrap();
        set_mode(&target, 0o600);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(chmod_nofollow(&link, 0o666).is_err());
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
    }
}
