//! A security team's whole flow, end to end in the NAT lab: generate keys,
//! sign a MOD twice, write and sign a policy requiring both signatures,
//! publish it to a folder a real HTTP server serves, and watch a running
//! broker pick it up — refusing the unsigned MOD, releasing the lease that
//! MOD held, keeping the other lease — then survive a server that answers
//! 304, garbage, or nothing in time, keeping the last good policy.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::path::Path;
use std::process::Output;

use daemon::{Daemon, Reaped, eventually};
use lab::{GatewayOptions, Lab, Ns};
use serde_json::Value;

/// A static file server with ETag / If-None-Match, logging each request's
/// status, switchable (file `MODE`) to serve garbage or to stall.
const SERVER: &str = r#"
import hashlib, http.server, os, sys, time
root, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body=b"", etag=None):
        with open(os.path.join(root, "requests.log"), "a") as f:
            f.write("%s %d\n" % (self.path, code))
        self.send_response(code)
        if etag: self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        m = os.path.join(root, "MODE")
        mode = open(m).read().strip() if os.path.exists(m) else "normal"
        if mode == "slow":
            time.sleep(20)
        path = os.path.join(root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            return self.reply(404)
        body = open(path, "rb").read()
        if mode == "garbage" and self.path.endswith("policy.toml"):
            body = os.urandom(512)
        etag = '"%s"' % hashlib.sha256(body).hexdigest()
        if self.headers.get("If-None-Match") == etag:
            return self.reply(304)
        self.reply(200, body, etag)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn p2pb(args: &[&str]) -> Output {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_p2pb"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "p2pb {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn public_hex(pubfile: &Path) -> String {
    let out = p2pb(&["key", "show", pubfile.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("public   "))
        .unwrap()
        .trim()
        .to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

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
    let root = k("root.toml");
    let fleet_hex = public_hex(&k("fleet.pub"));
    std::fs::write(
        &root,
        format!("version = 1\nexpires = \"2099-01-01T00:00:00Z\"\nthreshold = 1\n[keys]\nfleet = \"{fleet_hex}\"\n"),
    )
    .unwrap();
    p2pb(&[
        "policy",
        "sign",
        "--root",
        "--key",
        s(&k("fleet.key")),
        s(&root),
    ]);
    // 5. Serve the publication folder over HTTP inside the host namespace.
    let site = lab.path("site");
    std::fs::create_dir_all(&site).unwrap();
    let _server = Reaped(lab.spawn(
        Ns::Host,
        "http",
        &["python3", "-c", SERVER, s(&site), "8099"],
    ));
    let d = Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "broker",
        &start,
        &modes,
        &[
            "--policy-url",
            "http://127.0.0.1:8099/",
            "--root",
            s(&root),
            "--policy-interval-ms",
            "300",
        ],
    );
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
