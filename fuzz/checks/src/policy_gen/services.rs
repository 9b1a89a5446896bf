//! `[services]` of the policy model: STUN servers, TURN relays with and
//! without credentials, the HTTP proxy, each well-formed or not.

use arbitrary::Arbitrary;
use p2pbroker::policy::services::{Services, Turn};
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
}

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
        for (url, auth) in self.turn.iter().take(ITEMS_MAX) {
            let url = pick(&good, &bad, *url, f, "services.turn").to_string();
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
            for (k, v) in [("username", &username), ("credential", &credential)] {
                if let Some(v) = v {
                    tt.insert(k.into(), Value::String(v.clone()));
                }
            }
            turn_tables.push(tt);
            turn.push(Turn {
                url,
                username,
                credential,
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
        let mut s = Table::new();
        s.insert("stun".into(), strings(&stun));
        s.insert("turn".into(), tables(turn_tables));
        if let Some(p) = &http_proxy {
            s.insert("http_proxy".into(), Value::String(p.clone()));
        }
        t.insert("services".into(), Value::Table(s));
        Services {
            stun,
            turn,
            http_proxy,
        }
    }
}
