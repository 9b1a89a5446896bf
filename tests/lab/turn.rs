//! coturn as both labs run it: STUN (RFC 5780, two addresses), and TURN
//! with long-term credentials relaying on [`PUB_IP`], over UDP and TCP on
//! 3478 and over TLS on [`TURN_TLS_PORT`] with a certificate the lab's own
//! CA issued for [`PUB_IP`] (so a policy can pin it or trust the CA).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{PUB_ALT_IP, PUB_IP, TURN_PASSWORD, TURN_PASSWORD2, TURN_REALM, TURN_USER, TURN_USER2};

/// coturn's TLS port (what browsers reach through a corporate proxy).
pub const TURN_TLS_PORT: u16 = 443;

/// The relay's certificate and the lab CA that issued it.
#[derive(Debug, Clone)]
pub struct TurnCert {
    /// The lab CA (PEM): what `tls_ca` names.
    pub ca: PathBuf,
    /// coturn's certificate (PEM).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// SHA-256 of the certificate's DER (hex): what `tls_pin` names.
    pub sha256: String,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    // Files only: openssl opens no socket here.
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (run .ci/run: it installs the lab's Debian packages)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh lab CA and a certificate for [`PUB_IP`] in `dir`.
pub fn certificate(dir: &Path) -> TurnCert {
    let p = |n: &str| dir.join(n);
    let s = |b: &PathBuf| b.to_str().unwrap().to_string();
    let (ca, ca_key) = (p("turn-ca.crt"), p("turn-ca.key"));
    let (cert, key, csr, ext) = (p("turn.crt"), p("turn.key"), p("turn.csr"), p("turn.ext"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let (ca_s, ca_key_s) = (s(&ca), s(&ca_key));
    args.extend([
        "-days",
        "2",
        "-subj",
        "/CN=lab-turn-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &ca_key_s,
        "-out",
        &ca_s,
    ]);
    openssl(&args);
    let (key_s, csr_s, cert_s, ext_s) = (s(&key), s(&csr), s(&cert), s(&ext));
    let mut args = vec!["req", "-new"];
    args.extend(ec);
    args.extend(["-subj", "/CN=lab-turn", "-keyout", &key_s, "-out", &csr_s]);
    openssl(&args);
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:{PUB_IP}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        &ext_s,
        "-out",
        &cert_s,
    ]);
    let der = openssl(&["x509", "-in", &cert_s, "-outform", "DER"]);
    let sha256 = p2pbroker::sha256(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    TurnCert {
        ca,
        cert,
        key,
        sha256,
    }
}

/// coturn's arguments, its files in `dir`.
pub fn coturn_args(dir: &Path, cert: &TurnCert) -> Vec<String> {
    let args = [
        "turnserver",
        "-n",
        "--no-cli",
        "--no-dtls",
        "--lt-cred-mech",
        "--realm",
        TURN_REALM,
        "--relay-ip",
        PUB_IP,
        // Two allocations per user at a time: the quota test's limit
        // (turnutils_uclient needs two).
        "--user-quota",
        "2",
        "--min-port",
        "49152",
        "--max-port",
        "49407",
        "--listening-ip",
        PUB_IP,
        "--listening-ip",
        PUB_ALT_IP,
        "--listening-port",
        "3478",
        "--log-file",
        "stdout",
        "--simple-log",
    ];
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    for user in [(TURN_USER, TURN_PASSWORD), (TURN_USER2, TURN_PASSWORD2)] {
        v.push("--user".into());
        v.push(format!("{}:{}", user.0, user.1));
    }
    v.push(format!("--tls-listening-port={TURN_TLS_PORT}"));
    v.push(format!("--cert={}", cert.cert.display()));
    v.push(format!("--pkey={}", cert.key.display()));
    v.push(format!("--userdb={}", dir.join("turndb").display()));
    v.push(format!("--pidfile={}", dir.join("turn.pid").display()));
    v
}

/// The relayed ports coturn holds, from `ss -Hlun` in its namespace.
pub fn allocations(ss: &str) -> Vec<u16> {
    ss.split_whitespace()
        .filter_map(|w| w.strip_prefix(&format!("{PUB_IP}:")))
        .filter_map(|p| p.parse::<u16>().ok())
        .filter(|p| *p >= 49152)
        .collect()
}
