//! The Debian package as an operator installs it: `dpkg -i` into a
//! container-like root (a copy-on-write overlay of this machine's root in
//! a private mount namespace, inside the lab's host namespace), the daemon
//! started with the installed unit's own `ExecStart`, and a port mapped
//! through real miniupnpd by a member of the `p2pbroker` group, while a
//! non-member is turned away at the socket.
//!
//! The package comes from `cargo xtask deb --dev` (`cargo xtask test`
//! builds it and names it in P2PB_TEST_DEB); without one this test fails
//! and says how to make it.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::path::PathBuf;
use std::process::{Command, Output};

use daemon::{Reaped, eventually};
use lab::{GatewayOptions, Lab, Ns};

/// Sets up the container root and installs the package, then becomes the
/// daemon. Arguments: scratch folder, package.
const CONTAINER: &str = r#"
set -eu
R=$1; DEB=$2
mount -t tmpfs tmpfs "$R"
mkdir "$R/up" "$R/wk" "$R/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$R/up,workdir=$R/wk" "$R/root"
mount --rbind /dev "$R/root/dev"
mount -t proc proc "$R/root/proc"
mount --rbind /sys "$R/root/sys"
mount -t tmpfs tmpfs "$R/root/run"
# A fresh state folder, whatever this machine's own holds.
mkdir -p "$R/root/var/lib/p2pbroker"
mount -t tmpfs -o mode=0700 tmpfs "$R/root/var/lib/p2pbroker"
cp "$DEB" "$R/root/tmp/p2pbroker.deb"
chroot "$R/root" dpkg -i /tmp/p2pbroker.deb
EXEC=$(sed -n 's/^ExecStart=//p' "$R/root/usr/lib/systemd/system/p2pbroker.service")
echo "ExecStart: $EXEC"
exec chroot "$R/root" /bin/sh -c "exec $EXEC --log info"
"#;

fn package() -> PathBuf {
    if let Some(p) = std::env::var_os("P2PB_TEST_DEB") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness::root().join("target"));
    let dir = target.join("debian");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "no single Debian package in {}: run `cargo xtask deb --dev` (cargo xtask test does)",
            dir.display()
        ),
    }
}

/// Run `args` inside the installed container, as the daemon sees it.
fn inside(pid: u32, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .args(["--mount", "--net", "--root", "--wd"])
        .args(args)
        .output()
        .expect("nsenter")
}

#[test]
fn the_package_installs_starts_on_its_unit_and_maps_for_its_group() {
    let deb = package();
    let lab = Lab::up(GatewayOptions::default());
    let scratch = lab.path("container");
    std::fs::create_dir(&scratch).unwrap();
    let (s, d) = (scratch.to_str().unwrap(), deb.to_str().unwrap());
    let mut daemon = Reaped(lab.spawn(
        Ns::Host,
        "packaged",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            CONTAINER,
            "sh",
            s,
            d,
        ],
    ));
    let pid = daemon.0.id();
    let log = || lab.log("packaged");
    eventually("the installed daemon answers", 120, || {
        if let Ok(Some(st)) = daemon.0.try_wait() {
            panic!("the packaged daemon exited ({st}): {}", log());
        }
        inside(pid, &["p2pb", "status", "--json"]).status.success()
    });
    let l = log();
    assert!(l.contains("Setting up p2pbroker"), "{l}");
    assert!(l.contains("--socket-group p2pbroker"), "{l}");

    // What the package put in place.
    let gid = String::from_utf8(inside(pid, &["getent", "group", "p2pbroker"]).stdout).unwrap();
    let gid: u32 = gid
        .split(':')
        .nth(2)
        .expect("the group exists")
        .parse()
        .unwrap();
    let st = inside(
        pid,
        &["stat", "-c", "%U %G %a", "/run/p2pbroker/broker.sock"],
    );
    assert_eq!(
        String::from_utf8_lossy(&st.stdout).trim(),
        "root p2pbroker 660"
    );
    let man = inside(pid, &["test", "-s", "/usr/share/man/man1/p2pb-map.1.gz"]);
    assert!(man.status.success(), "no man page");
    let policy = inside(pid, &["cat", "/etc/p2pbroker/policy.toml"]);
    assert!(String::from_utf8_lossy(&policy.stdout).contains("[modes.upnp-igd]"));

    // Outside the group: the socket refuses (exit 3, no broker reachable).
    let stranger = inside(
        pid,
        &[
            "setpriv",
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            "p2pb",
            "status",
        ],
    );
    assert_eq!(stranger.status.code(), Some(3), "{stranger:?}");

    // A member maps a port it listens on, through real miniupnpd.
    let _app = Reaped(lab.listen_as(4243, true, 7080, 60));
    let groups = format!("--groups={gid}");
    let map = inside(
        pid,
        &[
            "setpriv",
            "--reuid=4243",
            "--regid=4243",
            &groups,
            "p2pb",
            "map",
            "tcp",
            "7080",
            "--detach",
            "--json",
        ],
    );
    assert!(map.status.success(), "{map:?}\n{}", log());
    let lease: serde_json::Value = serde_json::from_slice(&map.stdout).unwrap();
    let ext = lease["external"].as_str().unwrap().to_string();
    assert!(ext.starts_with(lab::WAN_IP), "{lease}");
    assert_eq!(lab.reach(true, &ext), "hello-from-host");

    // `systemctl stop`: SIGTERM releases the lease at the gateway.
    // SAFETY: signalling our own child (the daemon, after the execs).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    eventually("the daemon stops", 30, || {
        matches!(daemon.0.try_wait(), Ok(Some(_)))
    });
    let code = daemon.0.try_wait().unwrap().unwrap().code();
    assert_eq!(code, Some(0), "{}", log());
    assert_eq!(lab.reach(true, &ext), "", "still reachable after stop");
    let rules = lab.gateway_rules();
    assert!(!rules.contains("dport 7080"), "left behind: {rules}");
}
