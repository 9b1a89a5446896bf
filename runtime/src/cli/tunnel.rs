//! `p2pb mode run FILE handshake --to HOST:PORT`: open a tunnel through a
//! connector MOD's proxy, as the daemon would for `connect`, and say what
//! happened (and, with `--read-ms`, what the far end sent first).

use std::io::Read;
use std::time::Duration;

use p2pbroker::sandbox::Mode;
use p2pbroker::sandbox::connect::TunnelError;
use p2pbroker::sandbox::wit::connector::Destination;

/// Largest greeting read with `--read-ms`.
const GREETING_MAX: usize = 4096;

/// `HOST:PORT` or `[IPv6]:PORT` as a destination (parsed as `p2pb connect`
/// parses it).
pub fn destination(text: &str) -> anyhow::Result<Destination> {
    let (host, port) = p2pb::connect::destination(text).map_err(anyhow::Error::msg)?;
    Ok(Destination { host, port })
}

/// Run it; the exit code.
pub async fn run(mode: &Mode, to: &Option<String>, read_ms: u64, json: bool) -> anyhow::Result<u8> {
    let Some(to) = to else {
        anyhow::bail!("handshake needs --to HOST:PORT");
    };
    let dest = destination(to)?;
    let proxy = mode.proxy().map(|p| p.to_string()).unwrap_or_default();
    let outcome = mode.tunnel(dest).await;
    let mut v = serde_json::json!({ "mode": mode.name(), "sha256": mode.sha256(), "proxy": proxy });
    let code = match outcome {
        Ok((mut stream, report)) => {
            let received = if read_ms > 0 {
                read_greeting(&mut stream, Duration::from_millis(read_ms))
            } else {
                String::new()
            };
            v["ok"] = true.into();
            v["result"] = serde_json::json!({ "tunnel": true, "received": received });
            v["logs"] = serde_json::json!(report.logs);
            v["elapsed_us"] = (report.elapsed.as_micros() as u64).into();
            0
        }
        Err(e) => {
            v["ok"] = false.into();
            v["error"] = match &e {
                TunnelError::Handshake(c) => p2pbroker::json::call_error(c),
                other => serde_json::json!({ "kind": "tunnel", "message": other.to_string() }),
            };
            super::EXIT_FAILED
        }
    };
    if json {
        println!("{}", p2pbroker::text::json_line(&v));
    } else if v["ok"] == true {
        outln!("tunnel    open to {to} through {proxy} ({})", mode.name());
        if read_ms > 0 {
            outln!(
                "received  {}",
                v["result"]["received"].as_str().unwrap_or_default()
            );
        }
    } else {
        outln!(
            "tunnel    failed: {}",
            v["error"]["message"].as_str().unwrap_or_default()
        );
    }
    Ok(code)
}

/// What arrives within `wait` (escaped for a terminal).
fn read_greeting(stream: &mut std::net::TcpStream, wait: Duration) -> String {
    let _ = stream.set_read_timeout(Some(wait));
    let mut buf = vec![0u8; GREETING_MAX];
    let n = stream.read(&mut buf).unwrap_or(0);
    p2pbroker::text::escape(&String::from_utf8_lossy(&buf[..n])).into_owned()
}
