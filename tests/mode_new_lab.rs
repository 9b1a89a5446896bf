//! `p2pb mode new` as a MOD author meets it: the project it writes passes
//! its own tests on the host, builds into a component under the name asked
//! for, and, run with `p2pb mode run` in the NAT lab's host namespace, maps
//! a port on the real miniupnpd (NAT-PMP) that the public peer then
//! reaches, until it is unmapped.

#[path = "lab/mod.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::{GatewayOptions, Lab};
use serde_json::Value;

const NAME: &str = "demo-nat";
const GRANT: &str = "udp:send,receive@gateway:5351";
const PORT: u16 = 7300;

/// The workspace's cargo (as the tests run), with its target folder for
/// the new project's builds kept apart from the workspace's own.
fn cargo(target: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.env("CARGO_TARGET_DIR", target);
    c
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mode-new")
}

fn p2pbd(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_p2pbd"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "p2pbd {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_new_mod_tests_builds_and_maps_a_port_on_miniupnpd() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join(NAME);
    let dir_s = dir.to_str().unwrap();
    let made = json(&p2pbd(&["mode", "new", NAME, "--dir", dir_s, "--json"]));
    assert_eq!(made["name"], NAME);
    assert!(dir.join("p2pbroker/wit/mode.wit").is_file());

    // Its own tests, on the host, against the SDK's fake gateway.
    let out = cargo(&target_dir())
        .args(["test", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("probe_then_map_renew_and_unmap_on_a_fake_gateway ... ok"),
        "{text}"
    );

    let target = target_dir();
    let out_dir = work.path().join("out");
    let built = json(&p2pbd(&[
        "mode",
        "build",
        dir_s,
        "--target-dir",
        target.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]));
    let wasm = built["path"].as_str().unwrap().to_string();
    assert!(wasm.ends_with(&format!("{NAME}.wasm")), "{built}");
    let seen = json(&p2pbd(&["mode", "inspect", &wasm, "--json"]));
    assert_eq!(seen["name"], NAME, "{seen}");

    // In the lab, as it is: probe, map, reached from outside, unmap.
    let lab = Lab::up(GatewayOptions::default());
    let mut server = lab.listen(true, PORT, 60);
    let call = |args: &[&str]| {
        let mut all = vec!["mode", "run", "--json", "--grant", GRANT, &wasm];
        all.extend_from_slice(args);
        lab.p2pb_json(&all)
    };
    let probe = call(&["probe"]);
    assert_eq!(probe["ok"], true, "{probe}");
    assert_eq!(probe["result"]["external_address"], lab::WAN_IP);
    let internal = format!("0.0.0.0:{PORT}");
    let m = call(&[
        "map",
        "--transport",
        "tcp",
        "--internal",
        &internal,
        "--lifetime",
        "600",
    ]);
    assert_eq!(m["ok"], true, "{m}");
    let external = m["result"]["external"].as_str().unwrap().to_string();
    assert_eq!(external, format!("{}:{PORT}", lab::WAN_IP));
    assert_eq!(lab.reach(true, &external), "hello-from-host");
    let u = call(&["unmap", "--mapping", &m["result"].to_string()]);
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(lab.reach(true, &external), "", "unmapped, not reachable");
    assert!(!lab.gateway_rules().contains(&format!("dport {PORT}")));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_new_mod_is_not_written_over_anything() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), "mine").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_p2pbd"))
        .args(["mode", "new", "x", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("keep")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1);
}
