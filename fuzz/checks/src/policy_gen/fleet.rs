//! The fleet sections of the policy model: `[[profiles]]`, `[[access]]`,
//! `[lan]`, `[trust]` and `[services]`, built as [`super::model`] builds
//! the rest.

use arbitrary::Arbitrary;
use p2pbroker::gate::Transport;
use p2pbroker::policy::services::Services;
use p2pbroker::policy::{AccessRule, LanSettings, Profile, TrustSettings};
use toml::{Table, Value};

use super::model::{Ref, strings, tables};
use super::services::ServicesModel;
use super::trust::{TrustModel, digests};
use super::values::{
    BAD_CIDRS, BAD_IPS, CIDRS, Faults, Field, IPS, Int, Name, Ports, U32_MAX, fault, pick,
};

const ITEMS_MAX: usize = 4;

/// The fleet sections.
#[derive(Arbitrary, Debug)]
pub struct Fleet {
    profiles: Vec<ProfileModel>,
    access: Vec<AccessModel>,
    lan: Option<LanModel>,
    trust: Option<TrustModel>,
    services: Option<ServicesModel>,
}

#[derive(Arbitrary, Debug)]
struct ProfileModel {
    name: Name,
    gateway: Option<u8>,
    subnet: Option<u8>,
    interface: Option<Name>,
    /// At times no order key (it has no default).
    order_missing: u8,
    order: Vec<Ref>,
}

#[derive(Arbitrary, Debug)]
struct AccessModel {
    uids: Option<Vec<Int>>,
    /// The first, then more; at times no transport at all, or a word
    /// that is none.
    transports: Option<(u8, Vec<u8>)>,
    ports: Option<Ports>,
    max_leases: Option<Int>,
    max_lifetime: Option<Int>,
    persist: Option<bool>,
}

#[derive(Arbitrary, Debug)]
struct LanModel {
    listen: u8,
    /// The first token, then more; at times none at all.
    tokens: (u8, Vec<u8>),
    uid: Option<Int>,
    third_party: Option<bool>,
}

/// What an accepted policy's fleet sections must hold.
pub struct Expect {
    /// `[[profiles]]`.
    pub profiles: Vec<Profile>,
    /// `[[access]]`.
    pub access: Vec<AccessRule>,
    /// `[lan]`.
    pub lan: Option<LanSettings>,
    /// `[trust]`, with its defaults when absent.
    pub trust: TrustSettings,
    /// `[services]`, with its defaults when absent.
    pub services: Services,
    /// The config keys `[services]` offers every MOD.
    pub service_config: Vec<(String, String)>,
}

impl Fleet {
    /// Writes the sections into `t`; `modes` are the policy's MOD names.
    pub fn build(&self, t: &mut Table, modes: &[String], f: &mut Faults) -> Expect {
        let mut profiles = (Vec::new(), Vec::new());
        for p in self.profiles.iter().take(ITEMS_MAX) {
            let (table, e) = p.build(modes, f);
            profiles.0.push(table);
            profiles.1.push(e);
        }
        if !profiles.0.is_empty() {
            t.insert("profiles".into(), tables(profiles.0));
        }
        let mut access = (Vec::new(), Vec::new());
        for (i, a) in self.access.iter().take(ITEMS_MAX).enumerate() {
            let (table, e) = a.build(i, f);
            access.0.push(table);
            access.1.push(e);
        }
        if !access.0.is_empty() {
            t.insert("access".into(), tables(access.0));
        }
        let lan = self.lan.as_ref().map(|l| l.build(t, f));
        let trust = self
            .trust
            .as_ref()
            .map_or_else(TrustSettings::default, |tr| tr.build(t, f));
        let services = self
            .services
            .as_ref()
            .map_or_else(Services::default, |s| s.build(t, f));
        let mut service_config = Vec::new();
        if !services.stun.is_empty() {
            service_config.push(("stun_servers".into(), services.stun.join(",")));
        }
        if !services.turn.is_empty() {
            let urls: Vec<&str> = services.turn.iter().map(|t| t.url.as_str()).collect();
            service_config.push(("turn_servers".into(), urls.join(",")));
            // The first relay with a user name hands on its credentials.
            if let Some(t) = services.turn.iter().find(|t| t.username.is_some()) {
                let keys = [
                    ("turn_username", &t.username),
                    ("turn_credential", &t.credential),
                    ("turn_secret", &t.secret),
                ];
                for (k, v) in keys {
                    if let Some(v) = v {
                        service_config.push((k.into(), v.clone()));
                    }
                }
            }
        }
        if let Some(p) = &services.http_proxy {
            service_config.push(("http_proxy".into(), p.clone()));
        }
        Expect {
            profiles: profiles.1,
            access: access.1,
            lan,
            trust,
            services,
            service_config,
        }
    }
}

impl ProfileModel {
    fn build(&self, modes: &[String], f: &mut Faults) -> (Table, Profile) {
        let mut t = Table::new();
        let name = self.name.text();
        t.insert("name".into(), Value::String(name.clone()));
        let gateway = self.gateway.map(|k| pick(&IPS, &BAD_IPS, k, f, "gateway"));
        if let Some(g) = gateway {
            t.insert("gateway".into(), Value::String(g.into()));
        }
        let subnet = self
            .subnet
            .map(|k| pick(&CIDRS, &BAD_CIDRS, k, f, "subnet"));
        if let Some(s) = subnet {
            t.insert("subnet".into(), Value::String(s.into()));
        }
        let interface = self.interface.map(Name::text);
        if let Some(i) = &interface {
            t.insert("interface".into(), Value::String(i.clone()));
        }
        let order: Vec<String> = if fault(self.order_missing, 1).is_some() {
            f.must("missing field `order`");
            Vec::new()
        } else {
            let o: Vec<String> = self
                .order
                .iter()
                .take(ITEMS_MAX)
                .filter_map(|r| r.name(modes, f))
                .collect();
            t.insert("order".into(), strings(&o));
            o
        };
        let e = Profile {
            name,
            gateway: gateway.and_then(|g| g.parse().ok()),
            subnet: subnet.and_then(|s| s.parse().ok()),
            interface,
            order,
        };
        (t, e)
    }
}

impl AccessModel {
    fn build(&self, i: usize, f: &mut Faults) -> (Table, AccessRule) {
        let mut t = Table::new();
        let mut e = AccessRule {
            uids: None,
            transports: vec![Transport::Tcp, Transport::Udp],
            ports: "1024-65535".into(),
            max_leases: None,
            max_lifetime: None,
            persist: true,
        };
        if let Some(uids) = &self.uids {
            let v: Vec<i64> = uids
                .iter()
                .take(ITEMS_MAX)
                .map(|u| u.pick(&Field::any("uids", U32_MAX), f))
                .collect();
            t.insert(
                "uids".into(),
                Value::Array(v.iter().map(|u| Value::Integer(*u)).collect()),
            );
            e.uids = Some(v.iter().map(|u| *u as u32).collect());
        }
        if let Some((first, more)) = &self.transports {
            let mut words = Vec::new();
            e.transports.clear();
            let count = if fault(*first, 4) == Some(0) {
                0
            } else {
                ITEMS_MAX
            };
            for k in std::iter::once(first).chain(more).take(count) {
                let (word, tr) = match fault(*k, 2) {
                    Some(0) => ("sctp", None),
                    Some(_) => ("TCP", None),
                    None if k % 2 == 0 => ("tcp", Some(Transport::Tcp)),
                    None => ("udp", Some(Transport::Udp)),
                };
                match tr {
                    Some(tr) => e.transports.push(tr),
                    None => f.must("transports"),
                }
                words.push(word.to_string());
            }
            if words.is_empty() {
                f.must(format!("access[{i}].transports"));
            }
            t.insert("transports".into(), strings(&words));
        }
        if let Some(p) = self.ports {
            let (text, range) = p.text();
            // Port 0 cannot be mapped.
            if range.is_none_or(|(lo, _)| lo == 0) {
                f.must(format!("access[{i}].ports"));
            }
            t.insert("ports".into(), Value::String(text.clone()));
            e.ports = text;
        }
        if let Some(v) = self.max_leases {
            let v = v.pick(&Field::any("max_leases", U32_MAX), f);
            t.insert("max_leases".into(), Value::Integer(v));
            e.max_leases = Some(v as u32);
        }
        if let Some(v) = self.max_lifetime {
            let field = Field {
                key: "max_lifetime",
                path: format!("access[{i}].max_lifetime"),
                lo: 1,
                hi: U32_MAX,
                max: U32_MAX,
            };
            let v = v.pick(&field, f);
            t.insert("max_lifetime".into(), Value::Integer(v));
            e.max_lifetime = Some(v as u32);
        }
        if let Some(p) = self.persist {
            t.insert("persist".into(), Value::Boolean(p));
            e.persist = p;
        }
        (t, e)
    }
}

impl LanModel {
    fn build(&self, t: &mut Table, f: &mut Faults) -> LanSettings {
        let good = [
            "127.0.0.1:7000",
            "[::1]:7000",
            "10.0.0.2:0",
            "0.0.0.0:65535",
        ];
        let bad = ["10.0.0.2", "localhost:7000", "10.0.0.2:70000", "[::1]"];
        let listen = pick(&good, &bad, self.listen, f, "listen");
        let (first, more) = &self.tokens;
        let mut tokens = Vec::new();
        if fault(*first, 4) != Some(0) {
            let bytes: Vec<u8> = std::iter::once(*first)
                .chain(more.iter().copied())
                .collect();
            tokens = digests(&bytes, &[64], f, "lan.token_sha256");
            // Hex digits in either case.
            for (t, k) in tokens.iter_mut().zip(&bytes) {
                if k % 2 == 1 {
                    *t = t.to_uppercase();
                }
            }
        }
        if tokens.is_empty() {
            f.must("lan.token_sha256");
        }
        let mut l = Table::new();
        l.insert("listen".into(), Value::String(listen.into()));
        l.insert("token_sha256".into(), strings(&tokens));
        let uid = self.uid.map(|u| u.pick(&Field::any("uid", U32_MAX), f));
        if let Some(u) = uid {
            l.insert("uid".into(), Value::Integer(u));
        }
        if let Some(p) = self.third_party {
            l.insert("third_party".into(), Value::Boolean(p));
        }
        t.insert("lan".into(), Value::Table(l));
        LanSettings {
            listen: listen
                .parse()
                .unwrap_or_else(|_| "0.0.0.0:0".parse().unwrap()),
            token_sha256: tokens,
            uid: uid.map_or(65534, |u| u as u32),
            third_party: self.third_party.unwrap_or(false),
        }
    }
}
