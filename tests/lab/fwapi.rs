//! The corporate lab's firewall management API (`fwapi.py`) on the edge:
//! HTTPS with a self-signed certificate, a token header, DNAT and allow
//! objects staged apart with per-field validation errors, and applies as
//! revisions that revert unless confirmed, programming the edge's real
//! nftables chains (`inet edge fwapi`, `ip fwnat prerouting`).

use serde_json::Value;

use super::corp::{CorpLab, CorpNs, EDGE_IP};
use super::wait_for_ready;

/// The API's port on the edge's corporate side.
pub const API_PORT: u16 = 8443;
/// The token the lab's API accepts.
pub const API_TOKEN: &str = "fw-t0ken-for-the-lab";

const SCRIPT: &str = include_str!("fwapi.py");

/// How the API behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct FwApiOptions {
    /// Milliseconds between an apply request and the rules being in place
    /// (default 200).
    pub apply_ms: Option<u32>,
    /// Applies stay `pending` forever.
    pub stuck_apply: bool,
}

/// A running API.
#[derive(Debug, Clone)]
pub struct FwApi {
    /// `https://172.16.0.1:8443`.
    pub url: String,
    /// The certificate (PEM), for clients that trust it as a CA.
    pub cert: std::path::PathBuf,
    /// SHA-256 of the certificate's DER bytes (hex), what a policy pins.
    pub cert_sha256: String,
}

impl CorpLab {
    /// Start the firewall API on the edge (a fresh self-signed certificate
    /// for `EDGE_IP`); returns once it listens.
    pub fn firewall_api(&mut self, opts: FwApiOptions) -> FwApi {
        let (cert, key) = (self.path("fwapi.crt"), self.path("fwapi.key"));
        if !cert.exists() {
            let san = format!("subjectAltName=IP:{EDGE_IP}");
            let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
            self.must(
                CorpNs::Edge,
                &[
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=edge-firewall",
                    "-addext",
                    &san,
                    "-keyout",
                    k,
                    "-out",
                    c,
                ],
            );
        }
        let der = self.must(
            CorpNs::Edge,
            &[
                "openssl",
                "x509",
                "-in",
                cert.to_str().unwrap(),
                "-outform",
                "DER",
            ],
        );
        let cert_sha256: String = p2pbroker::sha256(&der.stdout)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let script = self.path("fwapi.py");
        std::fs::write(&script, SCRIPT).unwrap();
        let port = API_PORT.to_string();
        let apply = opts.apply_ms.unwrap_or(200).to_string();
        let mut args = vec![
            "python3",
            script.to_str().unwrap(),
            EDGE_IP,
            &port,
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            API_TOKEN,
            "--apply-ms",
            &apply,
        ];
        if opts.stuck_apply {
            args.push("--stuck-apply");
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = std::fs::remove_file(self.path("fwapi.log"));
        self.spawn(CorpNs::Edge, "fwapi", &args);
        wait_for_ready(&self.path("fwapi.log"));
        FwApi {
            url: format!("https://{EDGE_IP}:{API_PORT}"),
            cert,
            cert_sha256,
        }
    }

    /// Stop the API (SIGKILL).
    pub fn stop_firewall_api(&mut self) {
        self.stop("fwapi");
    }

    /// `curl` from the host to the API: (status, JSON body or null).
    pub fn api(
        &self,
        api: &FwApi,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: &str,
    ) -> (u16, Value) {
        let url = format!("{}{path}", api.url);
        let header = format!("X-API-Token: {token}");
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let mut args = vec![
            "curl",
            "-s",
            "--max-time",
            "5",
            "--cacert",
            api.cert.to_str().unwrap(),
            "-X",
            method,
            "-H",
            &header,
            "-H",
            "Content-Type: application/json",
            "-w",
            "\n%{http_code}",
            &url,
        ];
        if body.is_some() {
            args.extend(["--data", data.as_str()]);
        }
        let out = self.exec(CorpNs::Host, &args);
        let text = String::from_utf8_lossy(&out.stdout);
        let (json, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(json).unwrap_or(Value::Null),
        )
    }

    /// The edge's firewall API chains as `nft` lists them.
    pub fn api_rules(&self) -> String {
        let mut s = String::new();
        for chain in [
            &["inet", "edge", "fwapi"][..],
            &["ip", "fwnat", "prerouting"][..],
        ] {
            let mut args = vec!["nft", "list", "chain"];
            args.extend_from_slice(chain);
            s.push_str(&String::from_utf8_lossy(
                &self.must(CorpNs::Edge, &args).stdout,
            ));
        }
        s
    }
}

impl CorpLab {
    /// A TCP service on the corporate host at `port` that greets each
    /// connection with `hello-from-host` (for `secs` seconds).
    pub fn serve_on_host(&mut self, port: u16, secs: u32) {
        let name = format!("host-svc-{port}");
        let (port, secs) = (port.to_string(), secs.to_string());
        self.spawn(
            CorpNs::Host,
            &name,
            &["python3", "-c", super::TCP_SERVER, &port, &secs],
        );
        wait_for_ready(&self.path(&format!("{name}.log")));
    }

    /// What the public peer reads from `addr` (a TCP connection from
    /// outside, 3 s at most); empty when it cannot connect.
    pub fn read_from_outside(&self, addr: &str) -> String {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let script = format!(
            "import socket\ntry:\n s=socket.create_connection(('{host}',{port}),3); s.settimeout(3)\n print(s.recv(64).decode(), end='')\nexcept Exception:\n pass\n"
        );
        let out = self.exec(CorpNs::Pub, &["python3", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
