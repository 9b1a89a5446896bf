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
UNIT="$R/root/usr/lib/systemd/system/p2pbroker.service"
EXEC=$(sed -n 's/^ExecStart=//p' "$UNIT")
echo "ExecStart: $EXEC"
# The unit's capability bounding set and no-new-privileges, as systemd
# applies them (CAP_CHOWN CAP_NET_BIND_SERVICE -> +chown,+net_bind_service).
BOUND=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
[ -n "$BOUND" ] || { echo "the unit sets no CapabilityBoundingSet" >&2; exit 1; }
grep -qx 'NoNewPrivileges=yes' "$UNIT" || { echo "the unit lacks NoNewPrivileges" >&2; exit 1; }
# journald as systemd gives it: a datagram socket at its fixed path, and
# JOURNAL_STREAM naming our standard error. The stand-in keeps every
# datagram and ends with the daemon (this shell's PID, after the exec).
mkdir -p "$R/root/run/systemd/journal"
python3 - "$R/root/run/systemd/journal/socket" "$R/root/tmp/journal.bin" $$ <<'PY' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(1.0)
out, pid, end = open(sys.argv[2], "ab", buffering=0), int(sys.argv[3]), time.time() + 300
while time.time() < end:
    try:
        d = s.recv(1 << 20)
        out.write(len(d).to_bytes(4, "little") + d)
    except socket.timeout:
        try:
            os.kill(pid, 0)
        except OSError:
            break
PY
i=0
until [ -S "$R/root/run/systemd/journal/socket" ]; do
    i=$((i + 1)); [ "$i" -le 300 ] || { echo "the journald stand-in never bound" >&2; exit 1; }
    sleep 0.1
done
export JOURNAL_STREAM=$(stat -L -c '%d:%i' /proc/self/fd/2)
exec chroot "$R/root" setpriv --no-new-privs --bounding-set=-all,$BOUND /bin/sh -c "exec $EXEC --log info"
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

/// journald's native protocol, as the stand-in kept it (each datagram
/// after its 4-byte length): per entry, `KEY=value` lines or `KEY`, a
/// 64-bit little-endian length and the value (the binary-safe form).
fn journal_entries(bytes: &[u8]) -> Vec<Vec<(String, String)>> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let Some(mut d) = rest.get(4..4 + n) else {
            break;
        };
        rest = &rest[4 + n..];
        let mut fields = Vec::new();
        while let Some(end) = d.iter().position(|&b| b == b'=' || b == b'\n') {
            let key = String::from_utf8_lossy(&d[..end]).into_owned();
            if d[end] == b'=' {
                let stop = d[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(d.len(), |p| end + p);
                fields.push((key, String::from_utf8_lossy(&d[end + 1..stop]).into_owned()));
                d = d.get(stop + 1..).unwrap_or_default();
            } else {
                let Some(len) = d.get(end + 1..end + 9) else {
                    break;
                };
                let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
                let Some(value) = d.get(end + 9..end + 9 + len) else {
                    break;
                };
                fields.push((key, String::from_utf8_lossy(value).into_owned()));
                d = d.get(end + 10 + len..).unwrap_or_default();
            }
        }
        entries.push(fields);
    }
    entries
}

/// Whether an ELF file names a program interpreter (PT_INTERP): a
/// dynamically linked binary does, a static one does not.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
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
    // It serves with the unit's bounding set only: CAP_CHOWN (bit 0) and
    // CAP_NET_BIND_SERVICE (bit 10), and no way to gain more.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for (field, want) in [
        ("CapBnd:", "0000000000000401"),
        ("CapEff:", "0000000000000401"),
        ("NoNewPrivs:", "1"),
    ] {
        let got = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(str::trim);
        assert_eq!(got, Some(want), "{field}");
    }
    assert!(l.contains("--socket-group p2pbroker"), "{l}");
    let journal = || journal_entries(&inside(pid, &["cat", "/tmp/journal.bin"]).stdout);

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

    // The package's p2pb is the static build (it starts without the
    // dynamic loader); p2pbd is dynamic (wasmtime, glibc).
    let bin = |name: &str| inside(pid, &["cat", &format!("/usr/bin/{name}")]).stdout;
    assert!(!has_interpreter(&bin("p2pb")), "/usr/bin/p2pb is static");
    assert!(has_interpreter(&bin("p2pbd")), "the check tells them apart");

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
    // Under systemd the hole reaches journald as fields, not only text.
    let field =
        |e: &[(String, String)], k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut hole = None;
    eventually("the hole reaches the journal", 10, || {
        hole = journal()
            .into_iter()
            .find(|e| field(e, "P2PB_HOLE_ACTIVITY").as_deref() == Some("mapped"));
        hole.is_some()
    });
    let hole = hole.unwrap();
    assert_eq!(
        field(&hole, "P2PB_HOLE_UID").as_deref(),
        Some("4243"),
        "{hole:?}"
    );
    assert_eq!(
        field(&hole, "P2PB_HOLE_MOD").as_deref(),
        lease["mode"].as_str()
    );
    assert_eq!(field(&hole, "P2PB_HOLE_EXTERNAL"), Some(ext.clone()));
    assert_eq!(field(&hole, "SYSLOG_IDENTIFIER").as_deref(), Some("p2pb"));
    // ...and to the hole log, which `p2pb audit` reads.
    let audit = inside(pid, &["p2pb", "audit", "--json", "--uid", "4243"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("\"activity_name\":\"mapped\""), "{audit}");

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
