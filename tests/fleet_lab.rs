//! A security team's whole flow, end to end in the NAT lab: generate keys,
//! sign a MOD twice, write and sign a policy requiring both signatures,
//! publish it to a folder a real HTTP server serves, and watch a running
//! broker pick it up — refusing the unsigned MOD, releasing the lease that
//! MOD held, keeping the other lease — then survive a server that answers
//! 304, garbage, or nothing in time, keeping the last good policy.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "fleet/mod.rs"]
mod fleet;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use daemon::{Reaped, eventually};
use fleet::{p2pb, public_hex, s};
use lab::{GatewayOptions, Lab};
use serde_json::Value;

const GRANTS_PCP: &str = "[\"udp:send,receive@gateway:5351\"]";

#[test]
fn a_signed_policy_pushed_over_http_is_applied_without_dropping_leases() {
    let lab = Lab::up(GatewayOptions::default());
    let dir = lab.path("team");
    std::fs::create_dir_all(&dir).unwrap();
    let k = |n: &str| dir.join(n);
    // 1. Keys: the MOD author, the security team, the policy signer.
    for n in ["author", "security", "fleet"] {
        p2pb(&["key", "generate", "--out", s(&k(n))]);
    }
    let (author, security) = (public_hex(&k("author.pub")), public_hex(&k("security.pub")));
    // 2. The MODs folder: pcp signed twice, static unsigned; both allow-listed.
    let modes = lab.path("modes");
    std::fs::create_dir_all(&modes).unwrap();
    let pcp = modes.join("pcp.wasm");
    std::fs::copy(harness::component_path("modes/pcp"), &pcp).unwrap();
    std::fs::copy(
        harness::component_path("modes/static"),
        modes.join("static.wasm"),
    )
    .unwrap();
    p2pb(&["mode", "sign", "--key", s(&k("author.key")), s(&pcp)]);
    p2pb(&["mode", "sign", "--key", s(&k("security.key")), s(&pcp)]);
    p2pb(&[
        "mode",
        "verify",
        s(&pcp),
        "--key",
        s(&k("author.pub")),
        "--key",
        s(&k("security.pub")),
    ]);
    let mut allow = String::new();
    for f in ["pcp.wasm", "static.wasm"] {
        let sha = hex::encode(p2pbroker::sha256(&std::fs::read(modes.join(f)).unwrap()));
        allow.push_str(&format!("{sha}  {f}\n"));
    }
    std::fs::write(modes.join("allow.list"), allow).unwrap();
    // 3. The starting policy (local, unsigned): both MODs, a static forward.
    let forward = format!("tcp {}:7050 -> {}:7050", lab::WAN_IP, lab::HOST_IP);
    let start = format!(
        "version = 1\norder = [\"pcp\", \"static\"]\n[modes.pcp]\ngrants = {GRANTS_PCP}\n\
         [modes.static]\ngrants = []\nconfig = {{ forwards = \"{forward}\" }}\n"
    );
    // 4. The root of trust: the fleet key signs policies.
    let root = fleet::signed_root(&dir, &public_hex(&k("fleet.pub")));
    // 5. Serve the publication folder over HTTP inside the host namespace.
    let (site, _server, d) = fleet::serve_and_start(&lab, 8099, &start, &modes, &root);
    let status = || d.json(&["status", "--json"]);
    // Nothing published yet: the local policy stays, and says why.
    eventually("the missing bundle is reported", 20, || {
        status()["policy"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("404"))
    });
    let _apps = [7050, 7051].map(|p| Reaped(lab.listen(true, p, 120)));
    let by_static = d.json(&[
        "map", "tcp", "7050", "--mode", "static", "--detach", "--json",
    ]);
    let by_pcp = d.json(&["map", "tcp", "7051", "--detach", "--json"]);
    assert_eq!(by_pcp["mode"], "pcp");
    // 6. The security team's policy: both signatures required.
    let signed = k("policy.toml");
    std::fs::write(
        &signed,
        format!(
            "version = 1\nserial = 1\nissued_at = \"2026-11-25T00:00:00Z\"\nexpires = \"2099-01-01T00:00:00Z\"\n\
             order = [\"pcp\", \"static\"]\n[trust]\nthreshold = 2\n[trust.keys]\nauthor = \"{author}\"\nsecurity = \"{security}\"\n\
             [modes.pcp]\ngrants = {GRANTS_PCP}\n[modes.static]\ngrants = []\nconfig = {{ forwards = \"{forward}\" }}\n"
        ),
    )
    .unwrap();
    p2pb(&["policy", "sign", "--key", s(&k("fleet.key")), s(&signed)]);
    let ok = p2pb(&["policy", "verify", s(&signed), "--root", s(&root)]);
    assert!(String::from_utf8_lossy(&ok.stdout).contains("serial 1"));
    p2pb(&[
        "policy",
        "publish",
        s(&signed),
        "--to",
        s(&site),
        "--root",
        s(&root),
    ]);
    eventually("the broker applies serial 1", 30, || {
        status()["policy"]["version"] == 1
    });
    let st = status();
    assert_eq!(st["policy"]["error"], Value::Null);
    let names: Vec<&str> = st["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["pcp"], "the unsigned MOD is not loaded");
    let refused = st["refused"].as_array().unwrap();
    assert!(
        refused.iter().any(|r| r["file"] == "static.wasm"
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("signed by 0 trusted key(s)")),
        "{refused:?}"
    );
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).to_string();
    assert!(text.contains("REFUSED  static.wasm"), "{text}");
    // The static lease is released, the pcp lease kept as it was.
    let leases = d.json(&["list", "--json"]);
    let ids: Vec<&Value> = leases
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["id"])
        .collect();
    assert_eq!(
        ids,
        vec![&by_pcp["id"]],
        "static lease {} released",
        by_static["id"]
    );
    assert_eq!(
        lab.reach(true, by_pcp["external"].as_str().unwrap()),
        "hello-from-host"
    );
    // 7. Unchanged content is answered 304.
    eventually("a 304", 20, || {
        std::fs::read_to_string(site.join("requests.log"))
            .unwrap_or_default()
            .contains("/policy.toml 304")
    });
    // 8. Garbage: refused, the last good policy stays.
    std::fs::write(site.join("MODE"), "garbage").unwrap();
    eventually("garbage is refused", 20, || {
        status()["policy"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("signed by 0 trusted key(s)"))
    });
    assert_eq!(status()["policy"]["version"], 1);
    // 9. A server that does not answer in time: a timeout, not a hang.
    std::fs::write(site.join("MODE"), "slow").unwrap();
    eventually("the slow server times out", 30, || {
        status()["policy"]["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("timeout") || e.contains("timed out"))
    });
    let st = status();
    assert_eq!(st["policy"]["version"], 1);
    assert_eq!(
        st["leases"].as_array().unwrap().len(),
        1,
        "no lease dropped"
    );
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_signed_policy_expires_while_the_server_answers_304_and_maps_are_refused() {
    let lab = Lab::up(GatewayOptions::default());
    let team = lab.path("team");
    std::fs::create_dir_all(&team).unwrap();
    let root = fleet::signed_root(&team, &fleet::key(&team, "fleet"));
    let modes = lab.path("modes");
    fleet::modes_folder(&modes, &[("modes/static", "static.wasm")]);
    let forwards = format!(
        "tcp {w}:7060 -> {h}:7060; tcp {w}:7061 -> {h}:7061",
        w = lab::WAN_IP,
        h = lab::HOST_IP
    );
    let mode = format!("[modes.static]\ngrants = []\nconfig = {{ forwards = \"{forwards}\" }}\n");
    let start = format!("version = 1\n{mode}");
    let (site, _server, d) = fleet::serve_and_start(&lab, 8098, &start, &modes, &root);
    let status = || d.json(&["status", "--json"]);
    let first_line = || {
        let out = d.cli(&["status"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    // A signed policy valid for 40 s more, renewing every few seconds (a
    // 10 s gateway lifetime) so that renewals happen before the expiry.
    let expires = unix_now() + 40;
    let expires_text = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires),
    )
    .to_string();
    let signed = team.join("policy.toml");
    std::fs::write(
        &signed,
        format!(
            "version = 1\nserial = 1\nissued_at = \"2026-11-25T00:00:00Z\"\nexpires = \"{expires_text}\"\n\
             [broker]\nmapping_lifetime = 10\n{mode}"
        ),
    )
    .unwrap();
    p2pb(&[
        "policy",
        "sign",
        "--key",
        s(&team.join("fleet.key")),
        s(&signed),
    ]);
    p2pb(&["policy", "publish", s(&signed), "--to", s(&site)]);
    eventually("the broker applies serial 1", 30, || {
        status()["policy"]["version"] == 1
    });
    // Within a day of its expiry: said ahead of time.
    let st = status();
    assert_eq!(st["policy"]["expires_at"], expires);
    assert_eq!(st["policy"]["expired"], false);
    let line = first_line();
    assert!(
        line.starts_with(&format!(
            "WARNING: the policy in force expires at {expires_text}"
        )),
        "{line}"
    );
    let _apps = [7060, 7061].map(|p| Reaped(lab.listen(true, p, 300)));
    let lease = d.json(&["map", "tcp", "7060", "--detach", "--json"]);
    let id = lease["id"].as_u64().unwrap();
    eventually("the lease is renewed while the policy is valid", 30, || {
        fleet::journal_puts(&d.state, id).len() >= 2
    });
    // Expiry, while the server keeps answering 304 for the same bundle.
    eventually("status says the policy expired", 60, || {
        status()["policy"]["expired"] == true
    });
    assert!(unix_now() >= expires, "expired only once its time came");
    let polls = |log: &str| log.matches("/policy.toml 304").count();
    let before = polls(&std::fs::read_to_string(site.join("requests.log")).unwrap());
    eventually("the server answers 304 after the expiry", 20, || {
        polls(&std::fs::read_to_string(site.join("requests.log")).unwrap()) > before
    });
    let refused = d.cli(&["map", "tcp", "7061", "--detach", "--json"]);
    assert!(
        !refused.status.success(),
        "a map after the expiry succeeded"
    );
    let why = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(why.contains("policy-expired"), "{why}");
    assert!(why.contains(&expires_text), "{why}");
    let st = status();
    assert_eq!(st["policy"]["expired"], true);
    assert_eq!(st["policy"]["version"], 1);
    let warning = st["policy"]["warnings"][0].as_str().unwrap().to_string();
    assert!(warning.contains("EXPIRED"), "{warning}");
    let line = first_line();
    assert!(
        line.starts_with(&format!(
            "WARNING: the policy in force EXPIRED at {expires_text}"
        )),
        "{line}"
    );
    // The lease lapses with its last grant, which no renewal stretched past
    // the expiry (a grant is at most the seconds left, rounded up).
    eventually("the lease lapses", 30, || {
        d.json(&["list", "--json"]).as_array().unwrap().is_empty()
    });
    let puts = fleet::journal_puts(&d.state, id);
    assert!(puts.len() >= 2, "{puts:?}");
    for (granted_at, lifetime) in &puts {
        assert!(*granted_at <= expires, "renewed after the expiry: {puts:?}");
        assert!(
            granted_at + lifetime <= expires + 1,
            "a grant outlives the policy: {puts:?}"
        );
    }
    // A stalling server changes nothing: still expired, still refused.
    std::fs::write(site.join("MODE"), "slow").unwrap();
    eventually("the stalled fetch times out", 30, || {
        status()["policy"]["error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("timeout") || e.contains("timed out"))
    });
    assert_eq!(status()["policy"]["expired"], true);
    let refused = d.cli(&["map", "tcp", "7061", "--detach", "--json"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("policy-expired"));
    // The daemon said so in its log, once.
    let log = d.log();
    assert_eq!(
        log.matches("the policy in force EXPIRED").count(),
        1,
        "{log}"
    );
}
