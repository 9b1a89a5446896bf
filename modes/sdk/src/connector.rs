//! What the connector MODs (`http-connect`, `socks5`) share: their config
//! (`proxy`, `username`/`password`, `timeout_ms`) and their probe (does the
//! proxy accept a connection).

use core::net::SocketAddr;
use core::time::Duration;

use crate::clock::Deadline;
use crate::net::{NetError, TcpStream};
use crate::{ModeError, ProbeReport, escape, host};

/// Default budget of one handshake (config `timeout_ms`).
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;

/// The proxy from config `proxy` (`IP:PORT`).
pub fn proxy() -> Result<SocketAddr, ModeError> {
    let text = host::config("proxy")
        .ok_or_else(|| ModeError::Unavailable("no proxy configured (config `proxy`)".into()))?;
    text.trim().parse().map_err(|_| {
        ModeError::InvalidRequest(format!(
            "config `proxy` {} is not IP:PORT",
            escape(&text, 100)
        ))
    })
}

/// Config `username` and `password`: both or neither.
pub fn credentials() -> Result<Option<(String, String)>, ModeError> {
    match (host::config("username"), host::config("password")) {
        (Some(u), Some(p)) => Ok(Some((u, p))),
        (None, None) => Ok(None),
        _ => Err(ModeError::InvalidRequest(
            "config `username` and `password` go together".into(),
        )),
    }
}

/// When the handshake must be done (config `timeout_ms`).
pub fn handshake_deadline() -> Deadline {
    Deadline::after(Duration::from_millis(host::config_or(
        "timeout_ms",
        DEFAULT_TIMEOUT_MS,
    )))
}

/// The probe of a connector MOD: the proxy (`kind`, e.g. "HTTP proxy")
/// accepts a TCP connection within `probe_timeout_ms` (default 250).
pub fn probe(kind: &str) -> Result<ProbeReport, ModeError> {
    let proxy = proxy()?;
    let timeout = Duration::from_millis(host::config_or("probe_timeout_ms", 250));
    match TcpStream::connect(proxy, timeout) {
        Ok(_) => Ok(ProbeReport {
            gateway: None,
            external_address: None,
            external_class: None,
            detail: format!("{kind} {proxy} accepts connections"),
            state: Vec::new(),
        }),
        Err(NetError::Denied) => Err(ModeError::Denied(format!(
            "the policy does not grant tcp:connect to the proxy {proxy}"
        ))),
        Err(e) => Err(ModeError::Unavailable(format!("{kind} {proxy}: {e}"))),
    }
}
