//! Where the broker's socket is, by one rule that the daemon and every
//! client share.
//!
//! 1. `$P2PB_SOCKET`, if set and not empty;
//! 2. [`SYSTEM_SOCKET`] when a socket is there (a system broker serves
//!    every local user), or when the effective uid is 0;
//! 3. `$XDG_RUNTIME_DIR/p2pbroker/broker.sock` (a per-user broker), when
//!    that variable holds an absolute path;
//! 4. otherwise no path: [`ClientError::NoSocketPath`]. There is no `/tmp`
//!    fallback, because any user can create a folder there first and
//!    answer in the broker's place.

use std::ffi::OsString;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::ClientError;

/// The system broker's socket: a broker run as root (systemd's
/// `RuntimeDirectory=p2pbroker`) listens here for every local user.
pub const SYSTEM_SOCKET: &str = "/run/p2pbroker/broker.sock";

/// The broker's socket path by the rule above.
pub fn default_socket_path() -> Result<PathBuf, ClientError> {
    choose(
        env("P2PB_SOCKET"),
        is_socket(Path::new(SYSTEM_SOCKET)),
        effective_uid(),
        env("XDG_RUNTIME_DIR"),
    )
}

/// A per-user broker's socket, `$XDG_RUNTIME_DIR/p2pbroker/broker.sock`
/// (the folder systemd and login managers give each user, owner-only).
pub fn user_socket_path() -> Result<PathBuf, ClientError> {
    user_path(env("XDG_RUNTIME_DIR"))
}

/// An environment variable; an empty one counts as unset, as in most
/// shells' `${VAR:-...}`.
fn env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// The rule as a pure function of what it reads.
fn choose(
    socket: Option<OsString>,
    system_exists: bool,
    euid: u32,
    runtime_dir: Option<OsString>,
) -> Result<PathBuf, ClientError> {
    if let Some(p) = socket {
        return Ok(PathBuf::from(p));
    }
    if system_exists || euid == 0 {
        return Ok(PathBuf::from(SYSTEM_SOCKET));
    }
    user_path(runtime_dir)
}

fn user_path(runtime_dir: Option<OsString>) -> Result<PathBuf, ClientError> {
    // The XDG spec: a relative path in the variable is invalid, ignore it.
    match runtime_dir.map(PathBuf::from) {
        Some(d) if d.is_absolute() => Ok(d.join("p2pbroker/broker.sock")),
        _ => Err(ClientError::NoSocketPath),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(s.into())
    }

    #[test]
    fn the_variable_wins_then_the_system_broker_then_the_users_own() {
        let p = |r: Result<PathBuf, ClientError>| r.unwrap().display().to_string();
        assert_eq!(
            p(choose(os("/x.sock"), true, 0, os("/run/user/7"))),
            "/x.sock"
        );
        // A system broker serves every user, whatever XDG_RUNTIME_DIR says.
        assert_eq!(
            p(choose(None, true, 1000, os("/run/user/1000"))),
            SYSTEM_SOCKET
        );
        // Root's default is the system socket even before a daemon made it.
        assert_eq!(p(choose(None, false, 0, None)), SYSTEM_SOCKET);
        assert_eq!(
            p(choose(None, false, 1000, os("/run/user/1000"))),
            "/run/user/1000/p2pbroker/broker.sock"
        );
    }

    #[test]
    fn without_a_runtime_folder_there_is_no_default_and_never_tmp() {
        for dir in [None, os("relative/dir")] {
            let e = choose(None, false, 1000, dir).unwrap_err();
            assert!(matches!(e, ClientError::NoSocketPath), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains("P2PB_SOCKET") && msg.contains("XDG_RUNTIME_DIR"),
                "{msg}"
            );
        }
    }
}
