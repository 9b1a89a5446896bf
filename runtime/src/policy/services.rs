//! `[services]`: the relay, STUN and proxy servers a network offers. MODs
//! that need them (a TURN relay MOD, a corporate-proxy MOD) read them as
//! config values — `stun_servers`, `turn_servers`, `http_proxy` — unless
//! their own `[modes.NAME.config]` sets the same key. The MOD's grants
//! still decide whether it may reach them.
//!
//! `[[services.proxies]]` are the proxies outbound `connect` goes through,
//! each bound to the connector MOD that speaks its protocol: that MOD (and
//! only it) reads the address as config `proxy` and the credentials as
//! `username` and `password`.

use serde::Deserialize;

/// `[services]` (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// STUN servers, `host:port`.
    #[serde(default)]
    pub stun: Vec<String>,
    /// TURN relays.
    #[serde(default)]
    pub turn: Vec<Turn>,
    /// The corporate HTTP proxy, `http://host:port`.
    #[serde(default)]
    pub http_proxy: Option<String>,
    /// Proxies for outbound `connect`, in the order routes name them.
    #[serde(default)]
    pub proxies: Vec<Proxy>,
}

/// One proxy for outbound `connect`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// The connector MOD that speaks its protocol (`http-connect`,
    /// `socks5`, or a corporation's own).
    pub mode: String,
    /// `IP:PORT` (the gate resolves no names).
    pub address: String,
    /// User name, if the proxy asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, with `username`.
    #[serde(default)]
    pub password: Option<String>,
}

/// One TURN relay (RFC 8656).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// `turn:host:port` or `turns:host:port` (RFC 7065).
    pub url: String,
    /// Long-term credential user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Long-term credential.
    #[serde(default)]
    pub credential: Option<String>,
    /// Shared secret for time-limited credentials (the "TURN REST API"
    /// scheme coturn's `use-auth-secret` implements), instead of
    /// `credential`.
    #[serde(default)]
    pub secret: Option<String>,
    /// How the broker reaches it over a stream (`?transport=tcp` or
    /// `turns:`): `direct` or connector MODs of `[[services.proxies]]`, in
    /// order. Empty: direct.
    #[serde(default)]
    pub via: Vec<String>,
    /// For `turns:`: the SHA-256 fingerprints of the certificates accepted
    /// (as `tls_pin` of the `tls` import).
    #[serde(default)]
    pub tls_pin: Option<String>,
    /// For `turns:`: a CA bundle (PEM file) the server's certificate must
    /// chain to, for its IP address.
    #[serde(default)]
    pub tls_ca: Option<String>,
}

impl Turn {
    /// Whether the broker reaches it over a stream (TCP or TLS).
    pub fn stream(&self) -> bool {
        self.url.starts_with("turns:") || self.url.ends_with("?transport=tcp")
    }

    /// Whether it is a `turns:` (TLS) server.
    pub fn tls(&self) -> bool {
        self.url.starts_with("turns:")
    }

    /// Check the stream options; the error names what is wrong.
    fn validate_stream(&self, i: usize, proxies: &[Proxy]) -> Result<(), String> {
        if self.url.starts_with("turns:") && self.url.ends_with("?transport=udp") {
            return Err(format!(
                "services.turn[{i}]: turns: over UDP is DTLS, which the broker does not carry \
                 (drop ?transport=udp)"
            ));
        }
        if !self.via.is_empty() && !self.stream() {
            return Err(format!(
                "services.turn[{i}]: via routes a stream; a UDP relay cannot go through a proxy \
                 (use ?transport=tcp or turns:)"
            ));
        }
        for v in &self.via {
            if v != "direct" && !proxies.iter().any(|p| &p.mode == v) {
                return Err(format!(
                    "services.turn[{i}].via: `{v}` is neither `direct` nor the MOD of a \
                     [[services.proxies]] entry"
                ));
            }
        }
        if (self.tls_pin.is_some() || self.tls_ca.is_some()) && !self.tls() {
            return Err(format!(
                "services.turn[{i}]: tls_pin and tls_ca are for turns: URLs"
            ));
        }
        if self.tls_pin.is_some() && self.tls_ca.is_some() {
            return Err(format!("services.turn[{i}]: tls_pin or tls_ca, not both"));
        }
        if self.tls() && self.tls_pin.is_none() && self.tls_ca.is_none() {
            return Err(format!(
                "services.turn[{i}]: a turns: relay needs tls_pin or tls_ca (whose certificate \
                 the broker accepts)"
            ));
        }
        if let Some(pin) = &self.tls_pin {
            crate::sandbox::wit::tls::parse_pins(pin)
                .map_err(|e| format!("services.turn[{i}].tls_pin: {e}"))?;
        }
        Ok(())
    }
}

fn host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0) && !h.contains(char::is_whitespace)
    })
}

impl Services {
    /// Check every address has the documented form; the error names it.
    pub fn validate(&self) -> Result<(), String> {
        for (i, s) in self.stun.iter().enumerate() {
            if !host_port(s) {
                return Err(format!("services.stun[{i}] `{s}` is not host:port"));
            }
        }
        for (i, t) in self.turn.iter().enumerate() {
            if !crate::gate::turn_host_port(&t.url).is_some_and(host_port) {
                return Err(format!(
                    "services.turn[{i}].url `{}` is not turn:host:port or turns:host:port \
                     (optionally ?transport=udp or tcp)",
                    t.url
                ));
            }
            if t.credential.is_some() && t.secret.is_some() {
                return Err(format!(
                    "services.turn[{i}]: credential or secret, not both"
                ));
            }
            if t.username.is_some() != (t.credential.is_some() || t.secret.is_some()) {
                return Err(format!(
                    "services.turn[{i}]: username and credential (or secret) go together"
                ));
            }
            t.validate_stream(i, &self.proxies)?;
            // A stream channel finds its entry (routes, trust) by address.
            let here = crate::gate::turn_host_port(&t.url);
            let twice = t.stream()
                && self.turn[..i]
                    .iter()
                    .any(|u| u.stream() && crate::gate::turn_host_port(&u.url) == here);
            if twice {
                return Err(format!(
                    "services.turn[{i}]: {} is a stream relay twice (TCP or TLS: one entry per \
                     host:port)",
                    here.unwrap_or_default()
                ));
            }
        }
        for (i, p) in self.proxies.iter().enumerate() {
            let usable = p
                .address
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.port() != 0 && !a.ip().is_unspecified());
            if !usable {
                return Err(format!(
                    "services.proxies[{i}].address `{}` is not IP:PORT (a port from 1, an address to reach)",
                    p.address
                ));
            }
            if p.username.is_some() != p.password.is_some() {
                return Err(format!(
                    "services.proxies[{i}]: username and password go together"
                ));
            }
            if self.proxies[..i].iter().any(|q| q.mode == p.mode) {
                return Err(format!(
                    "services.proxies[{i}]: MOD `{}` already has a proxy (one per MOD)",
                    p.mode
                ));
            }
        }
        if let Some(p) = &self.http_proxy {
            let rest = p
                .strip_prefix("http://")
                .or_else(|| p.strip_prefix("https://"));
            if !rest.is_some_and(|r| host_port(r.trim_end_matches('/'))) {
                return Err(format!(
                    "services.http_proxy `{p}` is not http(s)://host:port"
                ));
            }
        }
        Ok(())
    }

    /// The config values MODs see (`key`, value), comma-separated lists.
    pub fn config(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.stun.is_empty() {
            out.push(("stun_servers", self.stun.join(",")));
        }
        if !self.turn.is_empty() {
            let urls: Vec<&str> = self.turn.iter().map(|t| t.url.as_str()).collect();
            out.push(("turn_servers", urls.join(",")));
            // The credentials of the first relay that has them.
            if let Some(t) = self.turn.iter().find(|t| t.username.is_some()) {
                out.extend(t.username.clone().map(|u| ("turn_username", u)));
                out.extend(t.credential.clone().map(|c| ("turn_credential", c)));
                out.extend(t.secret.clone().map(|s| ("turn_secret", s)));
            }
        }
        if let Some(p) = &self.http_proxy {
            out.push(("http_proxy", p.clone()));
        }
        out
    }

    /// The config a connector MOD reads for its proxy: `proxy`, and
    /// `username` and `password` when set. Empty for any other MOD.
    pub fn proxy_config(&self, mode: &str) -> Vec<(&'static str, String)> {
        let Some(p) = self.proxies.iter().find(|p| p.mode == mode) else {
            return Vec::new();
        };
        let mut out = vec![("proxy", p.address.clone())];
        if let (Some(u), Some(pw)) = (&p.username, &p.password) {
            out.push(("username", u.clone()));
            out.push(("password", pw.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_checked_and_exposed_as_config() {
        let ok: Services = toml::from_str(
            "stun = [\"198.51.100.1:3478\"]\nhttp_proxy = \"http://proxy.corp:3128\"\n\
             [[turn]]\nurl = \"turns:relay.example:5349\"\nusername = \"u\"\ncredential = \"c\"\n\
             tls_ca = \"/etc/ssl/certs/ca-certificates.crt\"\n\
             [[turn]]\nurl = \"turn:198.51.100.1:3478?transport=tcp\"\n\
             [[turn]]\nurl = \"turn:198.51.100.1:3478\"\n",
        )
        .unwrap();
        ok.validate().unwrap();
        let c = ok.config();
        assert_eq!(c[0], ("stun_servers", "198.51.100.1:3478".to_string()));
        assert_eq!(c[1].0, "turn_servers");
        assert_eq!(c[2], ("turn_username", "u".to_string()));
        assert_eq!(c[3], ("turn_credential", "c".to_string()));
        assert_eq!(c[4], ("http_proxy", "http://proxy.corp:3128".to_string()));
        for (bad, named) in [
            ("stun = [\"nohost\"]", "services.stun[0]"),
            ("[[turn]]\nurl = \"http://x:1\"", "services.turn[0].url"),
            (
                "[[turn]]\nurl = \"turn:x:1?transport=sctp\"",
                "services.turn[0].url",
            ),
            (
                "[[turn]]\nurl = \"turn:x:1\"\nusername = \"u\"",
                "username and credential",
            ),
            (
                "[[turn]]\nurl = \"turn:x:1\"\nusername = \"u\"\ncredential = \"c\"\nsecret = \"s\"",
                "not both",
            ),
            ("http_proxy = \"proxy:3128\"", "services.http_proxy"),
            ("[[turn]]\nurl = \"turns:x:443\"", "needs tls_pin or tls_ca"),
            (
                "[[turn]]\nurl = \"turns:x:443\"\ntls_pin = \"ab\"",
                "services.turn[0].tls_pin",
            ),
            (
                "[[turn]]\nurl = \"turns:x:443\"\ntls_pin = \"ab\"\ntls_ca = \"/c\"",
                "not both",
            ),
            (
                "[[turn]]\nurl = \"turns:x:443?transport=udp\"\ntls_ca = \"/c\"",
                "DTLS",
            ),
            (
                "[[turn]]\nurl = \"turn:x:1\"\ntls_ca = \"/c\"",
                "for turns: URLs",
            ),
            (
                "[[turn]]\nurl = \"turn:x:1\"\nvia = [\"direct\"]",
                "cannot go through a proxy",
            ),
            (
                "[[turn]]\nurl = \"turn:x:1?transport=tcp\"\nvia = [\"socks5\"]",
                "services.turn[0].via",
            ),
            (
                "[[turn]]\nurl = \"turn:x:1?transport=tcp\"\n\
                 [[turn]]\nurl = \"turns:x:1\"\ntls_ca = \"/c\"",
                "a stream relay twice",
            ),
            (
                "[[proxies]]\nmode = \"socks5\"\naddress = \"proxy.corp:1080\"",
                "services.proxies[0].address",
            ),
            (
                "[[proxies]]\nmode = \"socks5\"\naddress = \"10.0.0.1:0\"",
                "services.proxies[0].address",
            ),
            (
                "[[proxies]]\nmode = \"socks5\"\naddress = \"0.0.0.0:1080\"",
                "services.proxies[0].address",
            ),
            (
                "[[proxies]]\nmode = \"socks5\"\naddress = \"10.0.0.1:1080\"\nusername = \"u\"",
                "username and password",
            ),
            (
                "[[proxies]]\nmode = \"m\"\naddress = \"10.0.0.1:1\"\n\
                 [[proxies]]\nmode = \"m\"\naddress = \"10.0.0.2:1\"",
                "already has a proxy",
            ),
        ] {
            let s: Services = toml::from_str(bad).unwrap();
            assert!(s.validate().unwrap_err().contains(named), "{bad}");
        }
    }

    #[test]
    fn a_proxy_and_its_credentials_go_to_its_mod_only() {
        let s: Services = toml::from_str(
            "[[proxies]]\nmode = \"http-connect\"\naddress = \"172.16.0.1:3129\"\n\
             username = \"p2p\"\npassword = \"s3cret\"\n\
             [[proxies]]\nmode = \"socks5\"\naddress = \"172.16.0.1:1080\"\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(
            s.proxy_config("http-connect"),
            vec![
                ("proxy", "172.16.0.1:3129".to_string()),
                ("username", "p2p".to_string()),
                ("password", "s3cret".to_string())
            ]
        );
        assert_eq!(
            s.proxy_config("socks5"),
            vec![("proxy", "172.16.0.1:1080".to_string())]
        );
        assert!(s.proxy_config("upnp-igd").is_empty());
        assert!(s.config().is_empty(), "no proxy reaches every MOD's config");
    }
}
