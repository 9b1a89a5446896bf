//! `p2pb policy check`: every problem of a policy with the line it is on,
//! and, for a valid one, what it grants — which MODs may run with which
//! sockets and signatures, in which order where, and who may map which
//! ports or connect where. Pure over the policy's text; the CLI prints it.
//!
//! Secrets in MOD config (tokens, passwords, credentials) are never shown:
//! only that they are set.

use serde_json::{Value, json};

use super::{Place, Policy, PolicyError};

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The policy, or every problem found in it. A syntax error (TOML, a
/// type, an unknown field, the version) stops the check: nothing after it
/// can be read.
pub fn check(text: &str) -> Result<Policy, Vec<Finding>> {
    let p = Policy::parse_syntax(text).map_err(|e| {
        vec![Finding {
            line: syntax_line(&e),
            message: e.to_string(),
        }]
    })?;
    let problems = p.problems();
    if problems.is_empty() {
        return Ok(p);
    }
    Err(problems
        .into_iter()
        .map(|(place, e)| Finding {
            line: line_of(text, &place),
            message: e.to_string(),
        })
        .collect())
}

/// The line a TOML error names (`... at line N, column M`).
fn syntax_line(e: &PolicyError) -> Option<usize> {
    let text = e.to_string();
    let rest = &text[text.find("line ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The header of a table, with its name trimmed of spaces and quotes.
fn header(line: &str) -> Option<(bool, String)> {
    let t = line.trim();
    let (array, inner) = if let Some(i) = t.strip_prefix("[[") {
        (true, i.split("]]").next()?)
    } else {
        (false, t.strip_prefix('[')?.split(']').next()?)
    };
    let name: String = inner
        .split('.')
        .map(|p| p.trim().trim_matches('"'))
        .collect::<Vec<_>>()
        .join(".");
    Some((array, name))
}

/// The 1-based line where `place` is written in `text`, if it can be found.
pub fn line_of(text: &str, place: &Place) -> Option<usize> {
    let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let nth_array = |name: &str, n: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| header(l) == Some((true, name.to_string())))
            .nth(n)
            .map(|(i, _)| i + 1)
    };
    match place {
        Place::Key(key) => {
            for (n, l) in lines {
                if header(l).is_some() {
                    return None;
                }
                let t = l.trim_start();
                if t.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
                {
                    return Some(n);
                }
            }
            None
        }
        Place::Section(name) => lines
            .filter(|(_, l)| {
                header(l).is_some_and(|(_, h)| h == *name || h.starts_with(&format!("{name}.")))
            })
            .map(|(n, _)| n)
            .next(),
        Place::Mode(mode) => {
            let table = format!("modes.{mode}");
            lines
                .filter(|(_, l)| {
                    header(l)
                        .is_some_and(|(_, h)| h == table || h.starts_with(&format!("{table}.")))
                })
                .map(|(n, _)| n)
                .next()
        }
        Place::Profile(i) => nth_array("profiles", *i),
        Place::Access(i) => nth_array("access", *i),
        Place::Connect(i) => nth_array("connect", *i),
    }
}

/// Config keys whose values are secrets: shown as set, never their value
/// (in any case: `API_TOKEN`, `Password`).
fn secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "pass",
        "credential",
        "secret",
        "key",
        "username",
        "user",
        "psk",
        "bearer",
        "auth",
        "cookie",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// What a valid policy grants, as the CLI's `--json` prints it.
pub fn summary(p: &Policy) -> Value {
    let orders: Vec<Value> = std::iter::once(json!({
        "profile": "default",
        "when": "no profile matches",
        "order": p.order_for(&crate::netinfo::NetInfo::default()).1,
    }))
    .chain(p.profiles.iter().map(|pr| {
        let mut when = Vec::new();
        if let Some(g) = pr.gateway {
            when.push(format!("gateway {g}"));
        }
        if let Some(s) = pr.subnet {
            when.push(format!("an address in {s}"));
        }
        if let Some(i) = &pr.interface {
            when.push(format!("interface {i}"));
        }
        json!({"profile": pr.name, "when": when.join(" and "), "order": pr.order})
    }))
    .collect();
    let modes: Vec<Value> = p
        .modes
        .iter()
        .map(|(name, m)| {
            // Its own config and its proxy's; what every MOD is offered
            // (`[services]`) is shown once, apart.
            let own = m.config.iter().map(|(k, v)| (k.as_str(), v.clone()));
            let config: serde_json::Map<String, Value> = own
                .chain(p.services.proxy_config(name))
                .map(|(k, v)| {
                    let shown = if secret(k) { "(set)".to_string() } else { v };
                    (k.to_string(), Value::String(shown))
                })
                .collect();
            json!({
                "name": name,
                "grants": m.grants,
                "limits": m.limits,
                "config": config,
                "sha256": m.sha256,
                "signers": m.signers,
                "threshold": m.threshold.unwrap_or(p.trust.threshold),
            })
        })
        .collect();
    let access: Vec<Value> = p
        .access_rules()
        .iter()
        .map(|a| {
            json!({
                "uids": a.uids,
                "transports": a.transports.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "ports": a.ports,
                "max_leases": a.max_leases,
                "max_lifetime": a.max_lifetime,
                "persist": a.persist,
            })
        })
        .collect();
    let connect: Vec<Value> = p
        .connect
        .iter()
        .map(|c| json!({"to": c.to, "ports": c.ports, "uids": c.uids, "via": c.via}))
        .collect();
    json!({
        "valid": true,
        "version": p.version,
        "serial": p.serial,
        "issued_at": p.issued_at,
        "expires": p.expires,
        "trust": {
            "threshold": p.trust.threshold,
            "keys": p.trust.keys.keys().collect::<Vec<_>>(),
            "revoked_keys": p.trust.revoked_keys.len(),
            "revoked_mods": p.trust.revoked_mods.len(),
        },
        "orders": orders,
        "modes": modes,
        "access": access,
        "default_access": p.access.is_empty(),
        "connect": connect,
        "proxies": p.services.proxies.iter().map(|x| json!({"mode": x.mode, "address": x.address})).collect::<Vec<_>>(),
        "offered_to_every_mod": p
            .services
            .config()
            .into_iter()
            .map(|(k, v)| (k, if secret(k) { "(set)".to_string() } else { v }))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "lan": p.lan.as_ref().map(|l| json!({
            "listen": l.listen,
            "tokens": l.token_sha256.len(),
            "uid": l.uid,
            "third_party": l.third_party,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_in_any_case() {
        for k in [
            "token",
            "API_TOKEN",
            "Password",
            "wg_psk",
            "Bearer",
            "proxy_user",
            "basic_auth",
        ] {
            assert!(secret(k), "{k}");
        }
        for k in ["api", "gateway", "timeout_ms", "address"] {
            assert!(!secret(k), "{k}");
        }
    }

    #[test]
    fn every_problem_is_reported_on_its_line() {
        let text = "version = 1\n\
                    order = [\"ghost\"]\n\
                    \n\
                    [broker]\n\
                    mapping_lifetime = 0\n\
                    \n\
                    [[access]]\n\
                    ports = \"0-10\"\n\
                    \n\
                    [modes.pcp]\n\
                    grants = [\"udp:send@mars:1\"]\n\
                    \n\
                    [modes.corp-firewall]\n\
                    config = { tls_pin = \"zz\" }\n";
        let found = check(text).unwrap_err();
        let lines: Vec<Option<usize>> = found.iter().map(|f| f.line).collect();
        let all = format!("{found:?}");
        // One finding per problem, each where it is written.
        for (line, what) in [
            (Some(13), "not a SHA-256"),
            (Some(10), "unknown target `mars`"),
            (Some(4), "mapping_lifetime"),
            (Some(2), "ghost"),
            (Some(7), "access[0].ports"),
        ] {
            assert!(
                found
                    .iter()
                    .any(|f| f.line == line && f.message.contains(what)),
                "{what} at {line:?}: {all}"
            );
        }
        assert_eq!(found.len(), 5, "{lines:?} {all}");
    }

    #[test]
    fn a_syntax_error_stops_the_check_with_its_line() {
        let found = check("version = 1\n[broker\n").unwrap_err();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, Some(2), "{found:?}");
        let found = check("version = 1\n[modes.x]\ncolour = \"red\"\n").unwrap_err();
        assert!(found[0].message.contains("colour"), "{found:?}");
        assert_eq!(found[0].line, Some(3), "{found:?}");
    }

    #[test]
    fn the_summary_shows_grants_orders_and_users_but_no_secret() {
        let p = check(include_str!("../../../policies/corporate.toml")).unwrap();
        let s = summary(&p);
        let fw = s["modes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "corp-firewall")
            .unwrap();
        assert_eq!(fw["grants"][0], "tcp:connect@api:1-65535");
        assert_eq!(fw["signers"][0], "security");
        assert_eq!(fw["threshold"], 1);
        assert_eq!(fw["config"]["token"], "(set)");
        assert_eq!(fw["config"]["api"], "10.20.0.254:8443");
        let office = &s["orders"][1];
        assert_eq!(office["when"], "gateway 10.20.0.1");
        assert_eq!(office["order"][0], "corp-firewall");
        assert_eq!(s["access"][0]["uids"][0], 990);
        assert_eq!(s["access"][0]["ports"], "40000-40100");
        assert!(!s.to_string().contains("rotated-by-the-fleet-policy"));
    }
}
