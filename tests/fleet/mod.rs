//! The fleet side of the lab tests: a static HTTP server like any a fleet
//! publishes to, and the `p2pb` commands a security team runs.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

/// A static file server with ETag / If-None-Match, logging each request's
/// status, switchable (file `MODE`) to serve garbage or to stall.
pub const SERVER: &str = r#"
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

pub fn p2pb(args: &[&str]) -> Output {
    let o = std::process::Command::new(crate::harness::p2pb())
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

pub fn public_hex(pubfile: &Path) -> String {
    let out = p2pb(&["key", "show", pubfile.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("public   "))
        .unwrap()
        .trim()
        .to_string()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Generate key `name` in `dir` (`NAME.key`, `NAME.pub`); its public hex.
pub fn key(dir: &Path, name: &str) -> String {
    p2pb(&["key", "generate", "--out", s(&dir.join(name))]);
    public_hex(&dir.join(format!("{name}.pub")))
}

/// `dir/root.toml` trusting `fleet` (public hex) alone, signed with
/// `dir/fleet.key`.
pub fn signed_root(dir: &Path, fleet: &str) -> std::path::PathBuf {
    let root = dir.join("root.toml");
    std::fs::write(
        &root,
        format!(
            "version = 1\nexpires = \"2099-01-01T00:00:00Z\"\nthreshold = 1\n[keys]\nfleet = \"{fleet}\"\n"
        ),
    )
    .unwrap();
    p2pb(&[
        "policy",
        "sign",
        "--root",
        "--key",
        s(&dir.join("fleet.key")),
        s(&root),
    ]);
    root
}

/// Copy the built components `mods` (e.g. `modes/static`) into `dir` as
/// `NAME.wasm` and allow-list them all.
pub fn modes_folder(dir: &Path, mods: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut allow = String::new();
    for (rel, file) in mods {
        std::fs::copy(crate::harness::component_path(rel), dir.join(file)).unwrap();
        let sha = hex::encode(p2pbroker::sha256(&std::fs::read(dir.join(file)).unwrap()));
        allow.push_str(&format!("{sha}  {file}\n"));
    }
    std::fs::write(dir.join("allow.list"), allow).unwrap();
}

/// Every `put` of lease `id` in the journal of state folder `state`:
/// (granted_at, gateway lifetime), in order.
pub fn journal_puts(state: &Path, id: u64) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(state.join("leases.journal")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "put" && v["lease"]["id"] == id)
        .map(|v| {
            (
                v["lease"]["granted_at"].as_u64().unwrap(),
                v["lease"]["mapping"]["lifetime"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Serve a fresh `site` folder over HTTP on `port` in the lab's host
/// namespace, and start a broker there polling it every 300 ms, with
/// `start` as its local policy and `root` as its root of trust.
pub fn serve_and_start(
    lab: &crate::lab::Lab,
    port: u16,
    start: &str,
    modes: &Path,
    root: &Path,
) -> (
    std::path::PathBuf,
    crate::daemon::Reaped,
    crate::daemon::Daemon,
) {
    use crate::lab::Ns;
    let site = lab.path("site");
    std::fs::create_dir_all(&site).unwrap();
    let port = port.to_string();
    let server = crate::daemon::Reaped(lab.spawn(
        Ns::Host,
        "http",
        &["python3", "-c", SERVER, s(&site), &port],
    ));
    let url = format!("http://127.0.0.1:{port}/");
    let d = crate::daemon::Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "broker",
        start,
        modes,
        &[
            "--policy-url",
            &url,
            "--root",
            s(root),
            "--policy-interval-ms",
            "300",
        ],
    );
    (site, server, d)
}
