//! `[services]` of the policy model: STUN servers, TURN relays with and
//! without credentials, the HTTP proxy, the proxies of outbound connect,
//! each well-formed or not.

use arbitrary::Arbitrary;
use p2pbroker::policy::services::{Proxy, Services, Turn};
use toml::{Table, Value};

use super::model::{strings, tables};
use super::values::{BAD_HOST_PORTS, Faults, HOST_PORTS, fault, pick};

/// Entries past this many are not built.
const ITEMS_MAX: usize = 4;

/// The `[services]` section.
#[derive(Arbitrary, Debug)]
pub struct ServicesModel {
    stun: Vec<u8>,
    turn: Vec<(u8, u8)>,
    http_proxy: Option<u8>,
    proxies: Vec<(u8, u8, u8)>,
}

/// Connector MODs a proxy may name (none of them a MOD the model builds,
/// so no spec's config changes).
const PROXY_MODES: [&str; 3] = ["http-connect", "socks5", "corp-proxy"];

impl ServicesModel {
    /// Writes the section into `t`; what an accepted policy holds.
    pub fn build(&self, t: &mut Table, f: &mut Faults) -> Services {
        let stun: Vec<String> = self
            .stun
            .iter()
            .take(ITEMS_MAX)
            .map(|k| pick(&HOST_PORTS, &BAD_HOST_PORTS, *k, f, "services.stun").to_string())
            .collect();
        let good = [
            "turn:relay.example:3478",
            "turns:relay.example:5349",
            "turn:[2001:db8::1]:3478",
        ];
        let bad = [
            "http://relay:1",
            "turn:relay",
            "turn::3478",
            "turns:re lay:1",
        ];
        let mut turn = Vec::new();
        let mut turn_tables = Vec::new();
        let mut streams = Vec::new();
        for (url, auth) in self.turn.iter().take(ITEMS_MAX) {
            let url = pick(&good, &bad, *url, f, "services.turn").to_string();
            // A turns: relay needs the certificate trust; a stream relay
            // (TCP or TLS) is listed once per host:port.
            let tls_ca = url
                .starts_with("turns:")
                .then(|| "/etc/ssl/certs/ca-certificates.crt".to_string());
            if tls_ca.is_some() {
                if streams.contains(&url) {
                    f.must("services.turn");
                }
                streams.push(url.clone());
            }
            // A user name and a credential go together.
            let (username, credential) = match fault(*auth, 2) {
                Some(0) => (Some("u".to_string()), None),
                Some(_) => (None, Some("c".to_string())),
                None if auth % 2 == 0 => (None, None),
                None => (Some("p2p-fleet".into()), Some("ünïcode\u{1}secret".into())),
            };
            if username.is_some() != credential.is_some() {
                f.must("services.turn");
            }
            let mut tt = Table::new();
            tt.insert("url".into(), Value::String(url.clone()));
            for (k, v) in [
                ("username", &username),
                ("credential", &credential),
                ("tls_ca", &tls_ca),
            ] {
                if let Some(v) = v {
                    tt.insert(k.into(), Value::String(v.clone()));
                }
            }
            turn_tables.push(tt);
            turn.push(Turn {
                url,
                username,
                credential,
                secret: None,
                via: Vec::new(),
                tls_pin: None,
                tls_ca,
            });
        }
        let good = [
            "http://proxy.corp:3128",
            "https://proxy.corp:3128/",
            "http://[2001:db8::1]:8080",
        ];
        let bad = [
            "proxy:3128",
            "http://proxy",
            "ftp://proxy:21",
            "http://proxy:0",
        ];
        let http_proxy = self
            .http_proxy
            .map(|k| pick(&good, &bad, k, f, "services.http_proxy").to_string());
        let proxies = self.proxies(f);
        let mut s = Table::new();
        s.insert("stun".into(), strings(&stun));
        s.insert("turn".into(), tables(turn_tables));
        if let Some(p) = &http_proxy {
            s.insert("http_proxy".into(), Value::String(p.clone()));
        }
        let proxy_tables = proxies
            .iter()
            .map(|p| {
                let mut pt = Table::new();
                pt.insert("mode".into(), Value::String(p.mode.clone()));
                pt.insert("address".into(), Value::String(p.address.clone()));
                for (k, v) in [("username", &p.username), ("password", &p.password)] {
                    if let Some(v) = v {
                        pt.insert(k.into(), Value::String(v.clone()));
                    }
                }
                pt
            })
            .collect();
        s.insert("proxies".into(), tables(proxy_tables));
        t.insert("services".into(), Value::Table(s));
        Services {
            stun,
            turn,
            http_proxy,
            proxies,
        }
    }

    /// `[[services.proxies]]`: an `IP:PORT` each, credentials in pairs, one
    /// proxy per MOD.
    fn proxies(&self, f: &mut Faults) -> Vec<Proxy> {
        let good = ["172.16.0.1:3128", "[2001:db8::1]:1080", "10.0.0.1:65535"];
        let bad = ["proxy.corp:3128", "172.16.0.1", "172.16.0.1:0", "[::1]"];
        let mut out: Vec<Proxy> = Vec::new();
        for (mode, addr, auth) in self.proxies.iter().take(ITEMS_MAX) {
            let mode = PROXY_MODES[usize::from(*mode) % PROXY_MODES.len()].to_string();
            if out.iter().any(|p| p.mode == mode) {
                f.must("services.proxies");
            }
            let address = pick(&good, &bad, *addr, f, "services.proxies").to_string();
            let (username, password) = match fault(*auth, 2) {
                Some(0) => (Some("u".to_string()), None),
                Some(_) => (None, Some("p".to_string())),
                None if auth % 2 == 0 => (None, None),
                None => (Some("p2p".into()), Some("ünï\"code\u{1}".into())),
            };
            if username.is_some() != password.is_some() {
                f.must("services.proxies");
            }
            out.push(Proxy {
                mode,
                address,
                username,
                password,
            });
        }
        out
    }
}
