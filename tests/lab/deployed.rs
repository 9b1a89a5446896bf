//! The gateway as routers run it: miniupnpd without `-d`.
//!
//! The lab's default gateway runs in debug mode (`-d`): in the foreground,
//! with every debug line on stderr (the lab's log) and in syslog. With no
//! syslog daemon on these machines, glibc falls back to the console, which
//! on a VM's serial port takes about 1 ms a line; a NAT-PMP request makes
//! 3–7 lines, so the gateway answers in 1–9 ms instead of well under one
//! (BENCHMARKS.md, ninth pass). That suits the tests (the log says what the
//! gateway did) but not a comparison of clients: a client that asks the
//! gateway more often pays for the logging, not for its own work.
//!
//! [`Lab::up_as_deployed`] starts miniupnpd as a service does: it forks
//! into the background and logs notices only. It is then not our child;
//! it is stopped by the PID in its pid file, after checking that PID is
//! still a miniupnpd.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{GatewayOptions, Lab};

impl Lab {
    /// The IPv4 lab with its gateway run as deployed (see the module
    /// docs).
    pub fn up_as_deployed(opts: GatewayOptions) -> Lab {
        Lab::build_with(opts, false, true)
    }

    /// The PID of the gateway run as deployed, while it runs.
    pub fn deployed_gateway_pid(&self) -> Option<libc::pid_t> {
        gateway_pid(&self.path("miniupnpd.pid"))
    }
}

/// The PID in miniupnpd's pid file, if it names a live miniupnpd.
pub(super) fn gateway_pid(pid_file: &Path) -> Option<libc::pid_t> {
    let pid: libc::pid_t = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (pid > 1 && comm.trim() == "miniupnpd" && !exited(pid)).then_some(pid)
}

/// Stop the background miniupnpd named by `pid_file` and wait (bounded)
/// until it has exited; a gateway that ignores SIGTERM for 5 s is killed.
pub(super) fn stop_gateway(pid_file: &Path) {
    // Its pid file appears once it has forked: give a gateway still
    // starting (a lab torn down mid-start) a moment to write it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = gateway_pid(pid_file) {
            break pid;
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) on a PID just checked to be the lab's miniupnpd.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !exited(pid) {
        if Instant::now() >= deadline {
            // SAFETY: as above; it has not exited, so the PID is still its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(pid_file);
}

/// Whether `pid` is gone or a zombie (its parent, init, reaps it).
pub fn exited(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}
