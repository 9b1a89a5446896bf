//! `p2pb mode new` as a MOD author meets it: the project it writes passes
//! its own tests on the host, builds into a component under the name asked
//! for, and, run with `p2pb mode run` in the NAT lab's host namespace, maps
//! a port on the real miniupnpd (NAT-PMP) that the public peer then
//! reaches, until it is unmapped.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use lab::{GatewayOptions, Lab, Ns};
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

    lifecycle_in_the_lab(&wasm, PORT);
}

#[test]
fn a_new_python_mod_tests_builds_and_maps_a_port_on_miniupnpd() {
    script_mod(
        "python",
        &["python3", "-m", "unittest", "-v"],
        "test_probe_then_map_renew_and_unmap",
        PORT + 1,
    );
}

#[test]
fn a_new_js_mod_tests_builds_and_maps_a_port_on_miniupnpd() {
    script_mod(
        "js",
        &["node", "--test"],
        "probe then map, renew and unmap on a fake gateway",
        PORT + 2,
    );
}

/// `p2pb mode new --lang LANG`: its own tests (`test`, which must name
/// `passing`) on the host against the SDK's fake gateway, its build with
/// the language's toolchain (CI installs them: `cargo xtask test`; without
/// one the build says how to get it), then the lab.
fn script_mod(lang: &str, test: &[&str], passing: &str, port: u16) {
    let work = tempfile::tempdir().unwrap();
    let name = format!("demo-{lang}");
    let dir = work.path().join(&name);
    let dir_s = dir.to_str().unwrap();
    let made = json(&p2pbd(&[
        "mode", "new", &name, "--lang", lang, "--dir", dir_s, "--json",
    ]));
    assert_eq!(made["lang"], lang);
    let out = Command::new(test[0])
        .args(&test[1..])
        .current_dir(&dir)
        .env("PYTHONPATH", dir.join("p2pbroker/python"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(passing), "{text}");
    let built = json(&p2pbd(&["mode", "build", dir_s, "--json"]));
    let toolchain = if lang == "js" {
        "componentize-qjs"
    } else {
        "componentize-py"
    };
    assert_eq!(built["toolchain"], toolchain, "{built}");
    let wasm = built["path"].as_str().unwrap().to_string();
    let seen = json(&p2pbd(&["mode", "inspect", &wasm, "--json"]));
    assert_eq!(seen["name"], name.as_str(), "{seen}");
    lifecycle_in_the_lab(&wasm, port);
}

/// In the lab, as it is: probe, map, reached from outside, unmap.
fn lifecycle_in_the_lab(wasm: &str, port: u16) {
    let lab = Lab::up(GatewayOptions::default());
    let mut server = lab.listen(true, port, 60);
    // Compiled once, as the daemon does (a Python MOD takes seconds).
    let cache = lab.path("cache").to_str().unwrap().to_string();
    let call = |args: &[&str]| {
        let mut all = vec![
            "mode",
            "run",
            "--json",
            "--cache-dir",
            &cache,
            "--grant",
            GRANT,
            wasm,
        ];
        all.extend_from_slice(args);
        lab.p2pb_json(harness::p2pb(), &all)
    };
    let probe = call(&["probe"]);
    assert_eq!(probe["ok"], true, "{probe}");
    assert_eq!(probe["result"]["external_address"], lab::WAN_IP);
    let internal = format!("0.0.0.0:{port}");
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
    assert_eq!(external, format!("{}:{port}", lab::WAN_IP));
    assert_eq!(lab.reach(true, &external), "hello-from-host");
    let u = call(&["unmap", "--mapping", &m["result"].to_string()]);
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(lab.reach(true, &external), "", "unmapped, not reachable");
    assert!(!lab.gateway_rules().contains(&format!("dport {port}")));
    let _ = server.kill();
    let _ = server.wait();
}

/// What a Python MOD finds of the host: nothing (no file, folder,
/// environment, argument or input), and what it prints goes to its log
/// lines, within the per-call cap.
#[test]
fn a_python_mod_finds_nothing_and_its_output_is_capped() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("hostile");
    let dir_s = dir.to_str().unwrap();
    // A Python project carries the contract it is built against.
    p2pbd(&[
        "mode",
        "new",
        "hostile-python",
        "--lang",
        "python",
        "--dir",
        dir_s,
    ]);
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guests/hostile-python");
    for f in ["app.py", "p2pbroker.toml"] {
        std::fs::copy(guest.join(f), dir.join(f)).unwrap();
    }
    let built = json(&p2pbd(&["mode", "build", dir_s, "--json"]));
    let wasm = built["path"].as_str().unwrap();
    let r = json(&p2pbd(&["mode", "run", "--json", wasm, "probe"]));
    assert_eq!(r["ok"], true, "{r}");
    let seen: Value = serde_json::from_str(r["result"]["detail"].as_str().unwrap()).unwrap();
    for what in ["passwd", "root", "cwd", "write"] {
        assert!(
            seen[what].as_str().unwrap().starts_with("refused"),
            "{what}: {seen}"
        );
    }
    assert_eq!(seen["environ"], "{}");
    assert_eq!(seen["argv"], "[]");
    assert_eq!(seen["stdin"], "''");
    // 1,000 printed lines and a 2 MB line on stderr: 256 lines kept, the
    // rest counted.
    let logs = r["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 256);
    assert_eq!(logs[0]["message"], "line 0");
    assert_eq!(logs[0]["level"], "info");
    assert_eq!(r["logs_dropped"], 1000 - 256 + 1);
}

/// The newcomer's path to its end (docs/mod-authors.md), in each
/// language: `mode new`, build, sign with a team key, `mode push` to the
/// lab's registry (Debian's docker-registry); then a daemon whose policy
/// names each MOD only by the pinned reference push printed, and trusts
/// the team key, pulls them, and maps a port through each that the public
/// peer reaches, until unmap. No MODs folder, no built-in MODs.
#[test]
fn signed_mods_in_three_languages_reach_a_daemon_through_a_registry() {
    let work = tempfile::tempdir().unwrap();
    let modes = work.path().join("modes");
    let base = work.path().join("team");
    p2pbd(&["key", "generate", "--out", base.to_str().unwrap()]);
    let shown = p2pbd(&["key", "show", base.with_extension("pub").to_str().unwrap()]);
    let public = String::from_utf8(shown.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("public").map(|h| h.trim().to_string()))
        .unwrap();
    let names = ["demo-rust", "demo-python", "demo-js"];
    let mut policy = format!(
        "version = 1\norder = {names:?}\n\
         [trust]\nthreshold = 1\n[trust.keys]\nteam = \"{public}\"\n\
         [[access]]\nuids = [0]\nports = \"1-65535\"\n"
    );
    let lab = Lab::up(GatewayOptions::default());
    let _registry = lab.registry();
    for name in names {
        let lang = name.trim_start_matches("demo-");
        let dir = work.path().join(name);
        let d = dir.to_str().unwrap();
        p2pbd(&["mode", "new", name, "--lang", lang, "--dir", d]);
        let out = modes.to_str().unwrap();
        let target = target_dir();
        let mut build = vec!["mode", "build", d, "--out", out, "--json"];
        if lang == "rust" {
            build.extend(["--target-dir", target.to_str().unwrap()]);
        }
        let built = json(&p2pbd(&build));
        let wasm = built["path"].as_str().unwrap();
        let key = base.with_extension("key");
        p2pbd(&["mode", "sign", "--key", key.to_str().unwrap(), wasm]);
        // Pushed from the lab's host: the registry is on the public side.
        let to = format!("{}/team/{name}:0.1.0", lab::registry::Registry::base());
        let pushed = lab.exec(
            Ns::Host,
            &[
                env!("CARGO_BIN_EXE_p2pbd"),
                "mode",
                "push",
                wasm,
                &to,
                "--json",
            ],
        );
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        let pinned = json(&pushed)["reference"].as_str().unwrap().to_string();
        policy.push_str(&format!(
            "[modes.{name}]\ngrants = [\"{GRANT}\"]\noci = \"{pinned}\"\n"
        ));
    }
    let empty = work.path().join("no-modes");
    std::fs::create_dir_all(&empty).unwrap();
    let d = daemon::Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "pulled",
        &policy,
        &empty,
        &["--no-builtin-modes"],
    );
    for (i, name) in names.into_iter().enumerate() {
        assert!(
            d.log().contains(&format!("oci:{name}: ")),
            "{name} pulled: {}",
            d.log()
        );
        let port = PORT + 10 + i as u16;
        let mut server = lab.listen(true, port, 60);
        let p = port.to_string();
        let lease = d.json(&["map", "tcp", &p, "--mode", name, "--detach", "--json"]);
        assert_eq!(lease["mode"], name, "{lease}");
        let external = lease["external"].as_str().unwrap().to_string();
        assert_eq!(external, format!("{}:{port}", lab::WAN_IP));
        assert_eq!(lab.reach(true, &external), "hello-from-host");
        let out = d.cli(&["unmap", "tcp", &p]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(lab.reach(true, &external), "", "{name}: unmapped");
        let _ = server.kill();
        let _ = server.wait();
    }
}

#[test]
fn the_python_sdk_passes_its_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modes/sdk-python");
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("test_a_silent_gateway_is_a_timeout_after_the_schedule")
            && text.contains("Ran 4 tests")
            && text.trim_end().ends_with("OK"),
        "{text}"
    );
}

#[test]
fn the_js_sdk_passes_its_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modes/sdk-js");
    let out = Command::new("node")
        .arg("--test")
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("# pass 4") && text.contains("# fail 0"),
        "{text}"
    );
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
