//! `[[connect]]`: which destinations local users may reach through the
//! broker's outbound `connect`, and by which routes.
//!
//! The first rule that matches the destination, its port and the caller's
//! uid decides; with no such rule the connect is refused. A rule's `via`
//! lists its routes in the order they are tried: `direct` (the broker
//! connects itself) or a connector MOD with a `[[services.proxies]]` entry.
//! Without `via`, a rule tries every proxy of `[services]` in their order.
//!
//! Destinations are matched as written: an IP address against the rule's
//! CIDRs, a DNS name against its names (`host.example`, `*.example` for
//! every name below `example`), `*` anything. A name is never resolved to
//! match a CIDR: the corporate proxy resolves names in its own DNS, and a
//! lookup here would leak every destination to the local resolver.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// The route that is not a MOD: the broker's own connection.
pub const DIRECT: &str = "direct";

/// One `[[connect]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRule {
    /// Destinations: CIDRs, IP addresses, names, `*.suffix`, or `*`.
    pub to: Vec<String>,
    /// Destination ports, `LO-HI` or one port (default all).
    #[serde(default)]
    pub ports: Option<String>,
    /// The uids this rule is for; absent means every local user.
    #[serde(default)]
    pub uids: Option<Vec<u32>>,
    /// Routes in the order tried (default: every proxy of `[services]`).
    #[serde(default)]
    pub via: Option<Vec<String>>,
}

/// A destination pattern, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Net(IpNet),
    Name(String),
    Below(String),
}

fn pattern(s: &str) -> Result<Pattern, String> {
    if s == "*" {
        return Ok(Pattern::Any);
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(Pattern::Net(net));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Pattern::Net(IpNet::from(ip)));
    }
    let (below, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{}` is not a CIDR, an IP address, a DNS name, `*.name` or `*`",
            crate::text::escape(s)
        ));
    }
    let name = name.to_ascii_lowercase();
    Ok(if below {
        Pattern::Below(name)
    } else {
        Pattern::Name(name)
    })
}

impl Pattern {
    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Pattern::Any, _) => true,
            (Pattern::Net(n), Host::Ip(ip)) => n.contains(ip),
            (Pattern::Name(n), Host::Name(h)) => n == h,
            (Pattern::Below(n), Host::Name(h)) => h
                .strip_suffix(n.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            _ => false,
        }
    }
}

/// A destination host as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal (IPv6 without brackets).
    Ip(IpAddr),
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
}

impl Host {
    /// Read a requested host (already limited to name characters by the
    /// protocol).
    pub fn of(text: &str) -> Host {
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(bare.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl ConnectRule {
    /// Whether this rule covers `host`:`port` for `uid`.
    pub fn matches(&self, host: &Host, port: u16, uid: u32) -> bool {
        let uid_ok = self.uids.as_ref().is_none_or(|u| u.contains(&uid));
        let port_ok = self.ports.as_deref().is_none_or(|p| {
            crate::gate::grant::parse_ports(p).is_ok_and(|(lo, hi)| (lo..=hi).contains(&port))
        });
        uid_ok
            && port_ok
            && self
                .to
                .iter()
                .any(|t| pattern(t).is_ok_and(|p| p.matches(host)))
    }

    /// The routes, in order (`proxies`: the MODs of `[[services.proxies]]`).
    pub fn routes(&self, proxies: &[String]) -> Vec<String> {
        self.via.clone().unwrap_or_else(|| proxies.to_vec())
    }

    /// Check the rule against the policy's proxies and MODs; the error
    /// names the rule and the field.
    pub fn validate(
        &self,
        index: usize,
        proxies: &[String],
        has_mode: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        if self.to.is_empty() {
            return Err(format!("connect[{index}].to is empty (`*` for anywhere)"));
        }
        for t in &self.to {
            pattern(t).map_err(|e| format!("connect[{index}].to: {e}"))?;
        }
        if let Some(p) = &self.ports {
            let (lo, _) = crate::gate::grant::parse_ports(p)
                .map_err(|e| format!("connect[{index}].ports: {e}"))?;
            if lo == 0 {
                return Err(format!(
                    "connect[{index}].ports: port 0 is not a destination"
                ));
            }
        }
        let routes = self.routes(proxies);
        if routes.is_empty() {
            return Err(format!(
                "connect[{index}] has no route: give `via`, or proxies in [[services.proxies]]"
            ));
        }
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].contains(r) {
                return Err(format!("connect[{index}].via names `{r}` twice"));
            }
            if r == DIRECT {
                continue;
            }
            if !proxies.contains(r) {
                return Err(format!(
                    "connect[{index}].via names `{r}`, which has no [[services.proxies]] entry (routes are `direct` or a MOD with a proxy)"
                ));
            }
            if !has_mode(r) {
                return Err(format!(
                    "connect[{index}].via names `{r}`, which has no [modes.{r}] entry"
                ));
            }
        }
        Ok(())
    }
}

/// The first rule covering `host`:`port` for `uid`, with its index.
pub fn rule_for<'a>(
    rules: &'a [ConnectRule],
    host: &Host,
    port: u16,
    uid: u32,
) -> Option<(usize, &'a ConnectRule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(host, port, uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> ConnectRule {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn destinations_match_as_written() {
        let r = rule(
            r#"to = ["10.0.0.0/8", "2001:db8::/32", "198.51.100.7", "intranet.corp", "*.corp.example"]"#,
        );
        for yes in [
            "10.1.2.3",
            "[2001:db8::1]",
            "198.51.100.7",
            "INTRANET.corp.",
            "a.corp.example",
            "a.b.corp.example",
        ] {
            assert!(r.matches(&Host::of(yes), 443, 1000), "{yes}");
        }
        // `*.x` is below x, not x itself; names are never resolved to
        // match a CIDR.
        for no in [
            "11.0.0.1",
            "198.51.100.8",
            "corp.example",
            "xcorp.example",
            "intranet.corp.evil",
            "localhost",
        ] {
            assert!(!r.matches(&Host::of(no), 443, 1000), "{no}");
        }
        assert!(rule(r#"to = ["*"]"#).matches(&Host::of("anything.example"), 1, 0));
    }

    #[test]
    fn ports_and_uids_narrow_a_rule_and_the_first_match_wins() {
        let rules: Vec<ConnectRule> = vec![
            rule("to = [\"*\"]\nports = \"443\"\nuids = [990]\nvia = [\"direct\"]"),
            rule("to = [\"*\"]\nvia = [\"socks5\"]"),
        ];
        let h = Host::of("198.51.100.1");
        assert_eq!(rule_for(&rules, &h, 443, 990).map(|r| r.0), Some(0));
        assert_eq!(rule_for(&rules, &h, 80, 990).map(|r| r.0), Some(1));
        assert_eq!(rule_for(&rules, &h, 443, 1000).map(|r| r.0), Some(1));
        assert!(rule_for(&rules[..1], &h, 443, 1000).is_none());
    }

    #[test]
    fn routes_default_to_the_proxies_and_every_mistake_is_named() {
        let proxies = vec!["http-connect".to_string(), "socks5".to_string()];
        let any = |_: &str| true;
        let r = rule("to = [\"*\"]");
        assert_eq!(r.routes(&proxies), proxies);
        r.validate(0, &proxies, any).unwrap();
        rule("to = [\"*\"]\nvia = [\"direct\", \"socks5\"]")
            .validate(0, &proxies, any)
            .unwrap();
        for (text, proxies, named) in [
            ("to = []", &proxies[..], "connect[3].to is empty"),
            (
                "to = [\"bad name!\"]",
                &proxies[..],
                "connect[3].to: `bad name!`",
            ),
            ("to = [\"*\"]\nports = \"0-10\"", &proxies[..], "port 0"),
            (
                "to = [\"*\"]\nports = \"x\"",
                &proxies[..],
                "connect[3].ports",
            ),
            ("to = [\"*\"]", &[][..], "has no route"),
            (
                "to = [\"*\"]\nvia = [\"upnp-igd\"]",
                &proxies[..],
                "no [[services.proxies]] entry",
            ),
            (
                "to = [\"*\"]\nvia = [\"direct\", \"direct\"]",
                &proxies[..],
                "twice",
            ),
        ] {
            let e = rule(text).validate(3, proxies, any).unwrap_err();
            assert!(e.contains(named), "{text}: {e}");
        }
        let e = rule("to = [\"*\"]\nvia = [\"socks5\"]")
            .validate(0, &proxies, |m| m != "socks5")
            .unwrap_err();
        assert!(e.contains("no [modes.socks5] entry"), "{e}");
    }
}
