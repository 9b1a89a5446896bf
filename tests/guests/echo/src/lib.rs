//! Test MOD `echo`: a well-behaved MOD that does one UDP round trip.
//!
//! Config: `target` (IP:PORT, required), `bind` (default 0.0.0.0:0),
//! `timeout_ms` (default 1000). `probe` sends `ping` and reports the reply
//! as its detail; `map` echoes the internal endpoint; no network otherwise.

use core::time::Duration;

use p2pbroker_mode_sdk::host::config;
use p2pbroker_mode_sdk::net::UdpSocket;
use p2pbroker_mode_sdk::{
    MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport, TEXT_MAX, clip,
};

fn addr(key: &str, default: Option<&str>) -> Result<core::net::SocketAddr, ModeError> {
    let text = config(key)
        .or(default.map(str::to_string))
        .ok_or_else(|| ModeError::InvalidRequest(format!("config `{key}` is missing")))?;
    text.parse()
        .map_err(|_| ModeError::InvalidRequest(format!("config `{key}` is not IP:PORT")))
}

struct Echo;

impl Mode for Echo {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "echo".into(),
            version: "0.1.0".into(),
            summary: "UDP round trip".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        let target = addr("target", None)?;
        let bind = addr("bind", Some("0.0.0.0:0"))?;
        let timeout = config("timeout_ms")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1000);
        let sock = UdpSocket::bind(bind)?;
        sock.send_to(b"ping", target)?;
        let mut buf = [0u8; 512];
        let (n, _) = sock.recv_from(&mut buf, Duration::from_millis(timeout))?;
        Ok(ProbeReport {
            gateway: None,
            external_address: None,
            external_class: None,
            // Lossy decoding can triple invalid bytes: stay within the contract.
            detail: clip(String::from_utf8_lossy(&buf[..n]).into_owned(), TEXT_MAX),
            state: buf[..n].to_vec(),
        })
    }

    fn map(r: MapRequest) -> Result<Mapping, ModeError> {
        Ok(Mapping {
            transport: r.transport,
            internal: r.internal,
            external: r.internal,
            lifetime: r.lifetime,
            state: vec![],
        })
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        Ok(Mapping {
            lifetime,
            ..current
        })
    }

    fn unmap(_: Mapping) -> Result<(), ModeError> {
        Ok(())
    }
}

p2pbroker_mode_sdk::export_mode!(Echo);
