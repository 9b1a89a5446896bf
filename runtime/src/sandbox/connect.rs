//! Outbound tunnels through a connector MOD (contract 0.1.2): the broker
//! connects to the MOD's proxy itself, through the MOD's gate (audited like
//! any socket the MOD opens), lends the connection to the MOD for the
//! proxy's handshake, and returns the connected socket for the application.
//! The broker never reads the tunnel's data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::call::{CallReport, Op, Output};
use super::error::CallError;
use super::mode::Mode;
use super::wit::connector::Destination;
use crate::audit::{Decision, now_rfc3339};
use crate::gate::{Transport, Use, Verdict};

/// Longest wait for the TCP connection to the proxy.
pub const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The MOD's config names no usable proxy.
    #[error("config `proxy` {0}")]
    NoProxy(String),
    /// The MOD's gate does not allow connecting to the proxy.
    #[error("the policy does not grant this MOD tcp:connect to its proxy {0}")]
    Denied(SocketAddr),
    /// The proxy did not accept the connection.
    #[error("cannot connect to the proxy {0}: {1}")]
    Connect(SocketAddr, String),
    /// The MOD's handshake failed.
    #[error("{0}")]
    Handshake(CallError),
}

impl Mode {
    /// The proxy this MOD's tunnels go through (config `proxy`, `IP:PORT`).
    pub fn proxy(&self) -> Result<SocketAddr, TunnelError> {
        let text = self
            .config
            .get("proxy")
            .ok_or_else(|| TunnelError::NoProxy("is not set".into()))?;
        text.trim().parse().map_err(|_| {
            TunnelError::NoProxy(format!("`{}` is not IP:PORT", crate::text::escape(text)))
        })
    }

    /// Open a tunnel to `to` through this MOD's proxy: the connected
    /// socket (blocking mode), ready for the application, and the
    /// handshake call's report (its logs and decisions).
    pub async fn tunnel(
        &self,
        to: Destination,
    ) -> Result<(std::net::TcpStream, CallReport), TunnelError> {
        let proxy = self.proxy()?;
        if !self.gate_connect(proxy) {
            return Err(TunnelError::Denied(proxy));
        }
        let stream = match tokio::time::timeout(
            PROXY_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(proxy),
        )
        .await
        {
            Ok(Ok(s)) => Arc::new(s),
            Ok(Err(e)) => return Err(TunnelError::Connect(proxy, e.to_string())),
            Err(_) => return Err(TunnelError::Connect(proxy, "timed out".into())),
        };
        let mut report = self.call(Op::Handshake(to, stream.clone())).await;
        match std::mem::replace(&mut report.result, Ok(Output::Tunnel)) {
            Ok(Output::Tunnel) => {}
            Ok(_) => {
                return Err(TunnelError::Handshake(CallError::InvalidResult(
                    "handshake returned something else".into(),
                )));
            }
            Err(e) => return Err(TunnelError::Handshake(e)),
        }
        // The call's store, and the streams lent to it, are gone by now.
        let stream = Arc::try_unwrap(stream)
            .map_err(|_| TunnelError::Connect(proxy, "still held after the handshake".into()))?;
        let std = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
            .map_err(|e| TunnelError::Connect(proxy, e.to_string()))?;
        Ok((std, report))
    }

    /// The gate's verdict on the broker connecting to `proxy` for this MOD,
    /// audit-logged as the MOD's decision.
    fn gate_connect(&self, proxy: SocketAddr) -> bool {
        let verdict = self.gate.check(Transport::Tcp, Use::Connect, proxy);
        let allowed = verdict != Verdict::Deny;
        self.audit.record(&Decision {
            time: now_rfc3339(),
            mode: self.name.clone(),
            sha256: self.sha256.clone(),
            address: proxy,
            transport: Transport::Tcp,
            use_: Use::Connect,
            verdict: if allowed { "allow" } else { "deny" },
            grant: match verdict {
                Verdict::Allow(i) => self.gate.grants().get(i).map(|g| g.to_string()),
                Verdict::Deny => None,
            },
        });
        allowed
    }
}
