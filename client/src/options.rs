//! Options of a `map` request.

use std::net::IpAddr;

use crate::proto::{MapParams, Transport};

/// Options of a `map` request: `MapOptions::tcp(6881).lifetime(3600)`.
#[derive(Debug, Clone)]
pub struct MapOptions(pub(crate) MapParams);

impl MapOptions {
    fn new(transport: Transport, port: u16) -> MapOptions {
        MapOptions(MapParams::new(transport, port))
    }
    /// Map local TCP `port`.
    pub fn tcp(port: u16) -> MapOptions {
        MapOptions::new(Transport::Tcp, port)
    }
    /// Map local UDP `port`.
    pub fn udp(port: u16) -> MapOptions {
        MapOptions::new(Transport::Udp, port)
    }
    /// End the lease after `secs` seconds (at least 1). Without it, the
    /// lease lasts until unmapped or, unless persistent, until the
    /// connection closes, and at most the policy's lifetime cap for this
    /// user.
    pub fn lifetime(mut self, secs: u32) -> Self {
        self.0.lifetime = Some(secs);
        self
    }
    /// Ask for this external port (a taken port is then a conflict).
    pub fn external_port(mut self, port: u16) -> Self {
        self.0.external_port = Some(port);
        self
    }
    /// Use only this MOD (by name) instead of the broker's choice.
    pub fn mode(mut self, name: &str) -> Self {
        self.0.mode = Some(name.to_string());
        self
    }
    /// Keep the lease after this connection closes: the broker owns it
    /// until [`Client::unmap`] or the end of its [`lifetime`](Self::lifetime).
    pub fn persist(mut self, yes: bool) -> Self {
        self.0.persist = yes;
        self
    }
    /// Map another address (LAN-shared broker) instead of this host's.
    pub fn address(mut self, ip: IpAddr) -> Self {
        self.0.address = Some(ip);
        self
    }
    /// End the lease as soon as the application's socket on the port
    /// closes (the broker follows it), not only when this connection does.
    pub fn until_closed(mut self, yes: bool) -> Self {
        self.0.until_closed = yes;
        self
    }
}
