//! How the broker reaches a relay server over a stream, as the policy in
//! force says: the [`Dialer`] the relay hub asks when a TURN MOD opens a
//! `tcp` or `tls` channel. Routes through a connector MOD reuse outbound
//! `connect`'s path (the MOD's proxy handshake in its own sandbox, under
//! its own grants); the certificate trust comes from the server's
//! `[[services.turn]]` entry.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use p2pbroker_client::ConnectParams;

use super::broker::Broker;
use crate::policy::services::Turn;
use crate::relay::stream::{Dialer, Route, Trust, Tunnel, roots_from};

/// The daemon's dialer: reads the policy at each dial, so a reload
/// applies to the next channel opened.
pub struct PolicyDialer(pub Weak<Broker>);

/// The stream route the `[[services.turn]]` entries give `server`.
pub fn route_for(turns: &[Turn], server: SocketAddr) -> Route {
    let same = |t: &&Turn| {
        t.stream()
            && crate::gate::turn_host_port(&t.url)
                .and_then(|hp| hp.parse::<SocketAddr>().ok())
                .is_some_and(|a| {
                    a.port() == server.port() && a.ip().to_canonical() == server.ip().to_canonical()
                })
    };
    let Some(t) = turns.iter().find(same) else {
        return Route::default();
    };
    let tls = match (&t.tls_pin, &t.tls_ca) {
        (Some(pin), _) => Some(crate::sandbox::wit::tls::parse_pins(pin).map(Trust::Pins)),
        (None, Some(ca)) => Some(roots_from(std::path::Path::new(ca))),
        (None, None) => None,
    };
    Route {
        via: t.via.clone(),
        tls: tls.filter(|_| t.tls()),
    }
}

impl Dialer for PolicyDialer {
    fn route(&self, server: SocketAddr) -> Route {
        let Some(broker) = self.0.upgrade() else {
            return Route::default();
        };
        let policy = broker.shared.lock().unwrap().policy.clone();
        route_for(&policy.services.turn, server)
    }

    fn tunnel(&self, via: &str, server: SocketAddr) -> Tunnel {
        let broker = self.0.clone();
        let via = via.to_string();
        Box::pin(async move {
            let broker = broker.upgrade().ok_or("the daemon is stopping")?;
            let mode = broker.shared.lock().unwrap().modes.get(&via).cloned();
            let p = ConnectParams {
                host: server.ip().to_string(),
                port: server.port(),
                transport: p2pbroker_client::Transport::Tcp,
                via: Some(via.clone()),
            };
            super::connect::open(&via, &p, mode.as_ref())
                .await
                .map(|(s, _)| s)
                .map_err(|f| format!("{} ({})", f.kind, f.reason))
        })
    }
}

/// The dialer for `broker`'s relay hub.
pub fn dialer(broker: &Arc<Broker>) -> Arc<dyn Dialer> {
    Arc::new(PolicyDialer(Arc::downgrade(broker)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(text: &str) -> Vec<Turn> {
        let s: crate::policy::services::Services = toml::from_str(text).unwrap();
        s.turn
    }

    #[test]
    fn a_stream_server_finds_its_entry_by_address_and_a_udp_one_none() {
        let pin = "ab".repeat(32);
        let t = turns(&format!(
            "[[turn]]\nurl = \"turn:198.51.100.1:3478\"\n\
             [[turn]]\nurl = \"turn:198.51.100.1:3478?transport=tcp\"\nvia = [\"http-connect\"]\n\
             [[turn]]\nurl = \"turns:198.51.100.1:443\"\ntls_pin = \"{pin}\"\n\
             via = [\"direct\", \"http-connect\"]\n"
        ));
        let tcp = route_for(&t, "198.51.100.1:3478".parse().unwrap());
        assert_eq!(tcp.via, ["http-connect"]);
        assert!(tcp.tls.is_none());
        let tls = route_for(&t, "198.51.100.1:443".parse().unwrap());
        assert_eq!(tls.via, ["direct", "http-connect"]);
        assert!(matches!(tls.tls, Some(Ok(Trust::Pins(p))) if p == vec![[0xab; 32]]));
        let none = route_for(&t, "198.51.100.9:443".parse().unwrap());
        assert!(none.via.is_empty() && none.tls.is_none());
    }

    #[test]
    fn an_unreadable_ca_bundle_is_an_error_naming_the_file() {
        let t =
            turns("[[turn]]\nurl = \"turns:198.51.100.1:443\"\ntls_ca = \"/nonexistent/ca.pem\"\n");
        let r = route_for(&t, "198.51.100.1:443".parse().unwrap());
        let Some(Err(why)) = r.tls else {
            panic!("no error")
        };
        assert!(why.contains("/nonexistent/ca.pem"), "{why}");
    }
}
