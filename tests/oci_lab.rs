//! MODs through a real OCI registry (Debian's docker-registry) in the NAT
//! lab: `p2pb mode push` and `pull` round-trip a component byte for byte;
//! a daemon whose policy names its only MOD by pinned reference pulls it,
//! maps through it, starts again from its cache with the registry gone,
//! keeps the last good copy when a new pin cannot be pulled, and takes
//! the new one on reload once the registry is back. A moved tag changes
//! nothing a pin names.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::process::Output;

use daemon::Daemon;
use lab::registry::Registry;
use lab::{GatewayOptions, Lab, Ns};
use serde_json::Value;

const PORT: u16 = 7400;

fn in_host(lab: &Lab, args: &[&str]) -> Output {
    let mut full = vec![env!("CARGO_BIN_EXE_p2pbd")];
    full.extend(args);
    lab.exec(Ns::Host, &full)
}

fn ok_json(lab: &Lab, args: &[&str]) -> Value {
    let out = in_host(lab, args);
    assert!(
        out.status.success(),
        "p2pbd {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn policy(reference: &str) -> String {
    format!(
        "version = 1\norder = [\"nat-pmp\"]\n\
         [[access]]\nuids = [0]\nports = \"1-65535\"\n\
         [modes.nat-pmp]\ngrants = [\"udp:send,receive@gateway:5351\"]\noci = \"{reference}\"\n"
    )
}

fn sha_hex(bytes: &[u8]) -> String {
    p2pbroker::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mode_sha(d: &Daemon) -> String {
    let s = d.json(&["status", "--json"]);
    let m = s["modes"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == "nat-pmp"))
        .unwrap_or_else(|| panic!("no nat-pmp in {s}"));
    m["sha256"].as_str().unwrap().to_string()
}

fn maps_and_is_reached(lab: &Lab, d: &Daemon, port: u16) {
    let mut server = lab.listen(true, port, 60);
    let p = port.to_string();
    let lease = d.json(&["map", "tcp", &p, "--mode", "nat-pmp", "--detach", "--json"]);
    let external = lease["external"].as_str().unwrap().to_string();
    assert_eq!(lab.reach(true, &external), "hello-from-host");
    assert!(d.cli(&["unmap", "tcp", &p]).status.success());
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_daemon_pulls_its_pinned_mod_caches_it_and_keeps_the_last_good_copy() {
    let lab = Lab::up(GatewayOptions::default());
    let mut registry = lab.registry();
    let work = lab.path("work");
    std::fs::create_dir_all(&work).unwrap();
    // The built-in nat-pmp, and a second build of it (a custom section
    // changes its bytes and digest, not what it does).
    let exported = work.join("builtin");
    ok_json(
        &lab,
        &[
            "mode",
            "builtin",
            "--export",
            exported.to_str().unwrap(),
            "--json",
        ],
    );
    let v1 = exported.join("p2pbroker-mode-nat-pmp.wasm");
    let v1_bytes = std::fs::read(&v1).unwrap();
    let v2 = work.join("nat-pmp-v2.wasm");
    std::fs::write(
        &v2,
        p2pbroker::build::append_section(&v1_bytes, "x-build", b"2"),
    )
    .unwrap();
    let base = Registry::base();
    let tag = format!("{base}/mods/nat-pmp:1");
    let pushed1 = ok_json(
        &lab,
        &["mode", "push", v1.to_str().unwrap(), &tag, "--json"],
    );
    let pin1 = pushed1["reference"].as_str().unwrap().to_string();
    assert_eq!(pushed1["mode"], "nat-pmp");
    assert!(pin1.starts_with(&format!("{tag}@sha256:")), "{pin1}");
    // The tag moves to v2: a pin on v1 must not notice.
    let pushed2 = ok_json(
        &lab,
        &["mode", "push", v2.to_str().unwrap(), &tag, "--json"],
    );
    let pin2 = pushed2["reference"].as_str().unwrap().to_string();
    assert_ne!(pin1, pin2);
    assert_eq!(pushed2["uploaded"], true);
    let again = ok_json(
        &lab,
        &["mode", "push", v2.to_str().unwrap(), &tag, "--json"],
    );
    assert_eq!(
        again["uploaded"], false,
        "a blob the registry has is not sent again"
    );
    // (A new manifest unless in the same second: its creation time.)
    let newest = again["reference"].as_str().unwrap().to_string();

    // Pull: byte for byte, by pin; by tag, the newest push.
    let out = work.join("pulled.wasm");
    let o = out.to_str().unwrap();
    let got = ok_json(&lab, &["mode", "pull", &pin1, "-o", o, "--json"]);
    assert_eq!(std::fs::read(&out).unwrap(), v1_bytes);
    assert_eq!(got["reference"], pin1.as_str());
    let by_tag = ok_json(&lab, &["mode", "pull", &tag, "-o", o, "--force", "--json"]);
    assert_eq!(by_tag["reference"], newest.as_str());
    let exists = in_host(&lab, &["mode", "pull", &tag, "-o", o]);
    assert!(
        !exists.status.success(),
        "an existing file is not replaced unasked"
    );
    // A pin the registry does not have: refused, nothing written.
    let unknown = format!("{tag}@sha256:{}", "0".repeat(64));
    let missing = work.join("missing.wasm");
    let e = in_host(
        &lab,
        &["mode", "pull", &unknown, "-o", missing.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("HTTP 404"), "{err}");
    assert!(!missing.exists());

    // A daemon whose only MOD comes from the registry, pinned to v1.
    let empty = work.join("no-modes");
    std::fs::create_dir_all(&empty).unwrap();
    let mut d = Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "oci",
        &policy(&pin1),
        &empty,
        &["--no-builtin-modes"],
    );
    let v1_sha = sha_hex(&v1_bytes);
    assert_eq!(mode_sha(&d), v1_sha, "the pinned v1, not the tag's v2");
    assert!(d.log().contains("pulled"), "{}", d.log());
    maps_and_is_reached(&lab, &d, PORT);

    // The registry is gone: the daemon starts again from its cache.
    d.stop();
    registry.stop();
    d.restart();
    assert_eq!(mode_sha(&d), v1_sha);
    assert!(d.log().contains("from the MOD cache"), "{}", d.log());
    maps_and_is_reached(&lab, &d, PORT + 1);

    // A new pin while the registry is down: the last good copy serves.
    d.reload(&policy(&pin2));
    daemon::eventually("the reload is logged", 60, || {
        d.log().contains("the last good copy")
    });
    assert_eq!(mode_sha(&d), v1_sha);
    let warnings = d.json(&["status", "--json"])["policy"]["warnings"].to_string();
    assert!(warnings.contains("the last good copy"), "{warnings}");
    maps_and_is_reached(&lab, &d, PORT + 2);

    // The registry is back: the next reload pulls the new pin.
    let _registry = lab.registry();
    d.reload(&policy(&pin2));
    let v2_sha = sha_hex(&std::fs::read(&v2).unwrap());
    daemon::eventually("v2 is loaded", 60, || mode_sha(&d) == v2_sha);
    let warnings = d.json(&["status", "--json"])["policy"]["warnings"].clone();
    // (An empty list is left out.)
    assert!(
        warnings.as_array().is_none_or(|w| w.is_empty()),
        "nothing owed any more: {warnings}"
    );
    maps_and_is_reached(&lab, &d, PORT + 3);
    // The cache keeps what the pin names (manifest and component), and
    // drops v1 once v2 is the last good copy.
    let blobs = std::fs::read_dir(d.state.join("oci/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 2, "blobs cached");

    // A pin on a component that is another MOD: refused, the policy with
    // it not applied, v2 still serving and still the last good copy.
    let pcp = exported.join("p2pbroker-mode-pcp.wasm");
    let wrong_tag = format!("{base}/mods/nat-pmp:wrong");
    let wrong = ok_json(
        &lab,
        &["mode", "push", pcp.to_str().unwrap(), &wrong_tag, "--json"],
    );
    d.reload(&policy(wrong["reference"].as_str().unwrap()));
    daemon::eventually("the wrong MOD is refused", 60, || {
        d.log().contains("is MOD `pcp`, not `nat-pmp`")
    });
    assert_eq!(mode_sha(&d), v2_sha);
    let cached = |sub: &str| {
        std::fs::read_dir(d.state.join("oci").join(sub))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    // A policy that is not applied neither records nor prunes: the
    // refused component's manifest and bytes sit beside v2's.
    assert_eq!(cached("blobs/sha256"), 4, "v2's and the refused one's");
    // So with the registry gone, an unknown pin falls back to v2, never
    // to the refused component.
    drop(_registry);
    let unknown = format!("{tag}@sha256:{}", "1".repeat(64));
    d.reload(&policy(&unknown));
    daemon::eventually("the fallback is logged", 60, || {
        d.log().matches("the last good copy").count() >= 2
    });
    assert_eq!(mode_sha(&d), v2_sha);
    // Now a policy is in force again, and the cache keeps v2 alone.
    // (Pruned just after the policy is committed: waited for.)
    daemon::eventually("v2's manifest and component alone", 60, || {
        cached("blobs/sha256") == 2
    });
    assert_eq!(cached("pins"), 1, "v2 is nat-pmp's last good pin");
    // A policy that names no registry MOD (its nat-pmp is v1 from the
    // MODs folder, allow-listed): the cache keeps nothing.
    std::fs::copy(&v1, empty.join("p2pbroker-mode-nat-pmp.wasm")).unwrap();
    std::fs::copy(exported.join("allow.list"), empty.join("allow.list")).unwrap();
    let plain = policy("").replace("oci = \"\"\n", "");
    d.reload(&plain);
    daemon::eventually("the folder's nat-pmp serves", 60, || mode_sha(&d) == v1_sha);
    daemon::eventually("no blob kept", 60, || cached("blobs/sha256") == 0);
    assert_eq!(cached("pins"), 0, "no last good pin kept");
}
