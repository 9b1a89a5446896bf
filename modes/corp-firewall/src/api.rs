//! The firewall API's objects and answers, pure: config, request bodies,
//! what each status means as a contract error, the revision states, and
//! the state blob a mapping carries. Adapting the MOD to a vendor (see
//! docs/corporate.md) means rewriting this file and the paths in `lib.rs`.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use p2pbroker_mode_sdk::http::Response;
use p2pbroker_mode_sdk::{ModeError, Transport, escape};
use serde_json::{Value, json};

/// Default seconds the API keeps an applied revision before reverting it
/// unless confirmed (we confirm at once; this is the safety net if the
/// MOD dies between apply and confirm).
pub const CONFIRM_WITHIN_S: u32 = 60;
/// Default wait for an apply to take effect, milliseconds.
pub const APPLY_TIMEOUT_MS: u64 = 3000;
/// Default budget of one lifecycle call's API traffic, milliseconds: under
/// the broker's default call limit (5 s), with room to roll back.
pub const CALL_BUDGET_MS: u64 = 4500;
/// Longest rule-name prefix (the API allows 64-byte names).
const PREFIX_MAX: usize = 32;

/// The MOD's config, from the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The API's endpoint (`api`, `IP:PORT`).
    pub api: SocketAddr,
    /// The token the API authenticates (`token`).
    pub token: String,
    /// The edge's public address, where the DNAT listens
    /// (`external_address`).
    pub external: Ipv4Addr,
    /// `confirm_within_s`.
    pub confirm_within_s: u32,
    /// `apply_timeout_ms`.
    pub apply_timeout_ms: u64,
    /// `budget_ms`.
    pub budget_ms: u64,
    /// Rule names start with this (`name_prefix`, default `p2pb`).
    pub prefix: String,
}

fn bad(key: &str, why: &str) -> ModeError {
    ModeError::InvalidRequest(format!("config `{key}` {why}"))
}

impl Config {
    /// Read and check the config through `get`.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Config, ModeError> {
        let need = |key: &str| {
            get(key).ok_or_else(|| {
                ModeError::Unavailable(format!("no firewall API configured (config `{key}`)"))
            })
        };
        let api_text = need("api")?;
        let api: SocketAddr = api_text
            .trim()
            .parse()
            .ok()
            .filter(|a: &SocketAddr| a.port() != 0)
            .ok_or_else(|| bad("api", &format!("{} is not IP:PORT", escape(&api_text, 100))))?;
        let token = need("token")?;
        if token.is_empty() || token.len() > 512 || token.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(bad("token", "must be 1-512 printable characters"));
        }
        let ext_text = need("external_address")?;
        let external: Ipv4Addr = ext_text.trim().parse().map_err(|_| {
            bad(
                "external_address",
                &format!("{} is not an IPv4 address", escape(&ext_text, 100)),
            )
        })?;
        let number = |key: &str, default: u64, max: u64| -> Result<u64, ModeError> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| bad(key, &format!("must be a number from 1 to {max}"))),
            }
        };
        let prefix = get("name_prefix").unwrap_or_else(|| "p2pb".into());
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= PREFIX_MAX
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix_ok {
            return Err(bad(
                "name_prefix",
                &format!("must be 1-{PREFIX_MAX} letters, digits, `-` or `_`"),
            ));
        }
        Ok(Config {
            api,
            token,
            external,
            confirm_within_s: number("confirm_within_s", CONFIRM_WITHIN_S.into(), 3600)? as u32,
            apply_timeout_ms: number("apply_timeout_ms", APPLY_TIMEOUT_MS, 600_000)?,
            budget_ms: number("budget_ms", CALL_BUDGET_MS, 600_000)?,
            prefix,
        })
    }
}

/// `tcp` or `udp`.
pub fn protocol(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    }
}

/// The name both rules of a mapping carry: prefix, protocol, external port.
pub fn rule_name(prefix: &str, t: Transport, external_port: u16) -> String {
    format!("{prefix}-{}-{external_port}", protocol(t))
}

/// The DNAT object: `external_port` on the edge to `target`.
pub fn dnat_body(name: &str, t: Transport, external_port: u16, target: SocketAddr) -> Vec<u8> {
    json!({
        "name": name,
        "protocol": protocol(t),
        "external_port": external_port,
        "target": target.ip().to_string(),
        "target_port": target.port(),
    })
    .to_string()
    .into_bytes()
}

/// The allow object: traffic to `target` (after DNAT) passes the edge.
pub fn allow_body(name: &str, t: Transport, target: SocketAddr) -> Vec<u8> {
    json!({
        "name": name,
        "protocol": protocol(t),
        "destination": target.ip().to_string(),
        "port": target.port(),
    })
    .to_string()
    .into_bytes()
}

/// The apply request.
pub fn apply_body(confirm_within_s: u32) -> Vec<u8> {
    json!({ "confirm_within_s": confirm_within_s })
        .to_string()
        .into_bytes()
}

fn parse(r: &Response) -> Result<Value, ModeError> {
    serde_json::from_slice(&r.body).map_err(|e| {
        ModeError::Protocol(format!(
            "the firewall API answered {} with a body that is not JSON ({e})",
            r.status
        ))
    })
}

/// The API's own words (`error`, and `fields` for validation), escaped.
fn said(v: &Value) -> String {
    let mut out = v
        .get("error")
        .and_then(Value::as_str)
        .map(|e| escape(e, 200))
        .unwrap_or_default();
    if let Some(fields) = v.get("fields").and_then(Value::as_object) {
        let list: Vec<String> = fields
            .iter()
            .take(8)
            .map(|(k, why)| {
                format!(
                    "`{}` {}",
                    escape(k, 64),
                    escape(why.as_str().unwrap_or("is invalid"), 120)
                )
            })
            .collect();
        out.push_str(&format!(": {}", list.join("; ")));
    }
    out
}

/// What a status the MOD did not expect means, for an operation
/// described by `what` (e.g. "the DNAT rule").
pub fn refusal(r: &Response, what: &str) -> ModeError {
    let words = parse(r).map(|v| said(&v)).unwrap_or_default();
    let words = if words.is_empty() {
        String::new()
    } else {
        format!(": {words}")
    };
    match r.status {
        401 | 403 => ModeError::Denied(format!(
            "the firewall API refused the token ({}{words}): check config `token`",
            r.status
        )),
        422 | 400 => ModeError::InvalidRequest(format!(
            "the firewall API rejected {what} ({}{words})",
            r.status
        )),
        409 => ModeError::Conflict(format!(
            "the firewall API refused {what} ({}{words})",
            r.status
        )),
        404 => ModeError::MappingLost(format!(
            "the firewall API no longer has {what} (404{words})"
        )),
        500..=599 => ModeError::Unavailable(format!(
            "the firewall API failed {what} ({}{words})",
            r.status
        )),
        s => ModeError::Protocol(format!("the firewall API answered {what} with {s}{words}")),
    }
}

/// The id of an object the API created (201 `{"id": ...}`).
pub fn created_id(r: &Response, what: &str) -> Result<String, ModeError> {
    if r.status != 201 && r.status != 200 {
        return Err(refusal(r, what));
    }
    let v = parse(r)?;
    let id = match v.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ModeError::Protocol(format!(
                "the firewall API created {what} without an id"
            )));
        }
    };
    if !plain_id(&id) {
        return Err(ModeError::Protocol(format!(
            "the firewall API's id for {what} is not a plain token: {}",
            escape(&id, 80)
        )));
    }
    Ok(id)
}

/// Whether an id the API gave is a plain token (it goes into request
/// paths: no `/`, `..`, spaces or anything else).
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The ids of staged objects named `name` (left by a failed map), at most
/// 8, plain tokens only: an id that could bend a request path is skipped.
pub fn staged_named(r: &Response, name: &str) -> Vec<String> {
    let Ok(v) = parse(r) else {
        return Vec::new();
    };
    v.get("staged")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(id, o)| {
                    o.get("name").and_then(Value::as_str) == Some(name) && plain_id(id)
                })
                .map(|(id, _)| id.clone())
                .take(8)
                .collect()
        })
        .unwrap_or_default()
}

/// The revision number of an apply (202 `{"revision": n}`).
pub fn revision(r: &Response) -> Result<u64, ModeError> {
    if r.status != 202 && r.status != 200 {
        return Err(refusal(r, "the apply"));
    }
    parse(r)?
        .get("revision")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            ModeError::Protocol("the firewall API's apply answer has no revision".into())
        })
}

/// Where a revision stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevState {
    /// Not applied yet.
    Pending,
    /// In force, awaiting confirmation.
    Applied,
    /// In force for good.
    Confirmed,
    /// Applying failed; the API's reason.
    Failed(String),
    /// Reverted (not confirmed in time).
    Reverted,
}

/// A revision's state (GET `revisions/N`).
pub fn rev_state(r: &Response) -> Result<RevState, ModeError> {
    if r.status != 200 {
        return Err(refusal(r, "the revision"));
    }
    let v = parse(r)?;
    Ok(match v.get("state").and_then(Value::as_str) {
        Some("pending") => RevState::Pending,
        Some("applied") => RevState::Applied,
        Some("confirmed") => RevState::Confirmed,
        Some("reverted") => RevState::Reverted,
        Some("failed") => RevState::Failed(
            v.get("error")
                .and_then(Value::as_str)
                .map(|e| escape(e, 300))
                .unwrap_or_default(),
        ),
        other => {
            return Err(ModeError::Protocol(format!(
                "the firewall API reports revision state {}",
                escape(&format!("{other:?}"), 64)
            )));
        }
    })
}

/// Whether the object `id` is in force (GET of a collection: `running`).
pub fn is_running(r: &Response, id: &str, what: &str) -> Result<bool, ModeError> {
    if r.status != 200 {
        return Err(refusal(r, what));
    }
    let v = parse(r)?;
    let running = v.get("running").and_then(Value::as_object).ok_or_else(|| {
        ModeError::Protocol(format!("the firewall API's {what} list has no `running`"))
    })?;
    Ok(running.contains_key(id))
}

/// An object that already forwards an external port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Its id.
    pub id: String,
    /// Its name, escaped.
    pub name: String,
    /// Whether it is in force (not only staged).
    pub running: bool,
    /// Whether it is this very mapping's (same name, same target): a map
    /// repeated after a crash adopts it, as a gateway answers a repeated
    /// request with the mapping it holds.
    pub same: bool,
}

/// The object (staged or running) that already forwards `external_port`
/// over `t`, if any; `name` and `target` tell whether it is this mapping's.
pub fn port_taken(
    r: &Response,
    t: Transport,
    external_port: u16,
    name: &str,
    target: SocketAddr,
) -> Result<Option<Taken>, ModeError> {
    if r.status != 200 {
        return Err(refusal(r, "the DNAT rules"));
    }
    let v = parse(r)?;
    let running = v.get("running").and_then(Value::as_object);
    let found = ["running", "staged"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_object))
        .flat_map(|m| m.iter())
        .find(|(_, o)| {
            o.get("protocol").and_then(Value::as_str) == Some(protocol(t))
                && o.get("external_port").and_then(Value::as_u64) == Some(external_port.into())
        });
    Ok(found.map(|(id, o)| {
        // Adopted ids go into later request paths: plain tokens only.
        let same = plain_id(id)
            && o.get("name").and_then(Value::as_str) == Some(name)
            && o.get("target").and_then(Value::as_str) == Some(&target.ip().to_string())
            && o.get("target_port").and_then(Value::as_u64) == Some(target.port().into());
        Taken {
            id: id.clone(),
            name: escape(o.get("name").and_then(Value::as_str).unwrap_or("?"), 64),
            running: running.is_some_and(|m| m.contains_key(id)),
            same,
        }
    }))
}

/// The id of the running allow object named `name` for `target`, if any.
pub fn running_allow(
    r: &Response,
    name: &str,
    target: SocketAddr,
) -> Result<Option<String>, ModeError> {
    if r.status != 200 {
        return Err(refusal(r, "the allow rules"));
    }
    let v = parse(r)?;
    Ok(v.get("running")
        .and_then(Value::as_object)
        .and_then(|m| {
            m.iter().find(|(id, o)| {
                plain_id(id)
                    && o.get("name").and_then(Value::as_str) == Some(name)
                    && o.get("destination").and_then(Value::as_str)
                        == Some(&target.ip().to_string())
                    && o.get("port").and_then(Value::as_u64) == Some(target.port().into())
            })
        })
        .map(|(id, _)| id.clone()))
}

/// What a mapping's `state` blob holds: the API's object ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The DNAT object.
    pub dnat: String,
    /// The allow object.
    pub allow: String,
    /// The API the objects live on (a changed `api` is a lost mapping).
    pub api: SocketAddr,
}

impl State {
    /// The blob.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain fields serialise")
    }

    /// Read a blob this MOD wrote.
    pub fn decode(b: &[u8]) -> Result<State, ModeError> {
        serde_json::from_slice(b)
            .map_err(|_| ModeError::InvalidRequest("the mapping's state is not this MOD's".into()))
    }
}

/// A mapping's internal endpoint as the API needs it: IPv4 only.
pub fn ipv4_target(internal: SocketAddr) -> Result<SocketAddr, ModeError> {
    match internal.ip().to_canonical() {
        IpAddr::V4(v4) if !v4.is_unspecified() => {
            Ok(SocketAddr::new(IpAddr::V4(v4), internal.port()))
        }
        IpAddr::V4(_) => Err(ModeError::InvalidRequest(
            "the firewall needs the internal address, not 0.0.0.0".into(),
        )),
        IpAddr::V6(_) => Err(ModeError::Unsupported(
            "this firewall API forwards IPv4 only".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ModeError> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::read(|k| m.get(k).cloned())
    }

    const GOOD: &[(&str, &str)] = &[
        ("api", "172.16.0.1:8443"),
        ("token", "t0ken"),
        ("external_address", "198.51.100.2"),
    ];

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = config(GOOD).unwrap();
        assert_eq!(c.api, "172.16.0.1:8443".parse().unwrap());
        assert_eq!((c.confirm_within_s, c.prefix.as_str()), (60, "p2pb"));
        assert!(
            matches!(config(&GOOD[1..]), Err(ModeError::Unavailable(e)) if e.contains("`api`"))
        );
        let mut bad_api = GOOD.to_vec();
        bad_api[0] = ("api", "fw.corp:8443");
        assert!(
            matches!(config(&bad_api), Err(ModeError::InvalidRequest(e)) if e.contains("not IP:PORT"))
        );
        let mut bad_token = GOOD.to_vec();
        bad_token[1] = ("token", "a\r\nX-Evil: 1");
        assert!(
            matches!(config(&bad_token), Err(ModeError::InvalidRequest(e)) if e.contains("`token`"))
        );
        let mut more = GOOD.to_vec();
        more.push(("confirm_within_s", "0"));
        assert!(
            matches!(config(&more), Err(ModeError::InvalidRequest(e)) if e.contains("confirm_within_s"))
        );
        let mut prefix = GOOD.to_vec();
        prefix.push(("name_prefix", "a b"));
        assert!(config(&prefix).is_err());
    }

    #[test]
    fn bodies_are_the_apis_objects() {
        let target: SocketAddr = "10.1.0.2:7000".parse().unwrap();
        let name = rule_name("p2pb", Transport::Tcp, 40000);
        let d: Value =
            serde_json::from_slice(&dnat_body(&name, Transport::Tcp, 40000, target)).unwrap();
        assert_eq!(
            d,
            json!({"name": "p2pb-tcp-40000", "protocol": "tcp", "external_port": 40000,
                   "target": "10.1.0.2", "target_port": 7000})
        );
        let a: Value = serde_json::from_slice(&allow_body(&name, Transport::Udp, target)).unwrap();
        assert_eq!(a["protocol"], "udp");
        assert_eq!(a["destination"], "10.1.0.2");
    }

    #[test]
    fn statuses_become_typed_errors_with_the_apis_words() {
        let e = refusal(
            &resp(401, r#"{"error":"missing or wrong X-API-Token"}"#),
            "the DNAT rule",
        );
        assert!(
            matches!(&e, ModeError::Denied(m) if m.contains("wrong X-API-Token") && m.contains("`token`")),
            "{e:?}"
        );
        let e = refusal(
            &resp(
                422,
                r#"{"error":"validation failed","fields":{"target":"must be an IPv4 address"}}"#,
            ),
            "the DNAT rule",
        );
        assert!(
            matches!(&e, ModeError::InvalidRequest(m) if m.contains("`target` must be an IPv4 address")),
            "{e:?}"
        );
        assert!(matches!(
            refusal(&resp(503, ""), "x"),
            ModeError::Unavailable(_)
        ));
        assert!(matches!(
            refusal(&resp(302, ""), "x"),
            ModeError::Protocol(_)
        ));
        // Terminal escapes in the API's words are escaped.
        let e = refusal(&resp(422, "{\"error\":\"\\u001b[2J\"}"), "x");
        assert!(!format!("{e:?}").contains('\u{1b}'));
    }

    #[test]
    fn staged_leftovers_are_found_by_name_and_only_plain_ids_kept() {
        let r = resp(
            200,
            r#"{"staged":{"4":{"name":"p2pb-tcp-7"},"../5":{"name":"p2pb-tcp-7"},"6":{"name":"other"}},"running":{}}"#,
        );
        assert_eq!(staged_named(&r, "p2pb-tcp-7"), vec!["4".to_string()]);
        // Nor is a running object with such an id ever adopted.
        let target: SocketAddr = "10.1.0.2:7".parse().unwrap();
        let odd = r#"{"name":"p2pb-tcp-7","protocol":"tcp","external_port":7,"target":"10.1.0.2","target_port":7,"destination":"10.1.0.2","port":7}"#;
        let list = resp(
            200,
            &format!(r#"{{"staged":{{}},"running":{{"a/b":{odd}}}}}"#),
        );
        let taken = port_taken(&list, Transport::Tcp, 7, "p2pb-tcp-7", target)
            .unwrap()
            .unwrap();
        assert!(!taken.same);
        assert_eq!(running_allow(&list, "p2pb-tcp-7", target).unwrap(), None);
        assert!(staged_named(&resp(200, "<html>"), "p2pb-tcp-7").is_empty());
    }

    #[test]
    fn answers_are_checked() {
        assert_eq!(created_id(&resp(201, r#"{"id":"17"}"#), "x").unwrap(), "17");
        assert_eq!(created_id(&resp(201, r#"{"id":17}"#), "x").unwrap(), "17");
        assert!(matches!(
            created_id(&resp(201, r#"{"id":"../x"}"#), "x"),
            Err(ModeError::Protocol(_))
        ));
        assert!(matches!(
            created_id(&resp(201, "<html>"), "x"),
            Err(ModeError::Protocol(_))
        ));
        assert_eq!(
            revision(&resp(202, r#"{"revision":4,"state":"pending"}"#)).unwrap(),
            4
        );
        assert_eq!(
            rev_state(&resp(200, r#"{"state":"applied"}"#)).unwrap(),
            RevState::Applied
        );
        assert_eq!(
            rev_state(&resp(200, r#"{"state":"failed","error":"nft: syntax"}"#)).unwrap(),
            RevState::Failed("nft: syntax".into())
        );
        assert!(rev_state(&resp(200, r#"{"state":"weird"}"#)).is_err());
        let web = r#"{"name":"web","protocol":"tcp","external_port":443,"target":"10.1.0.2","target_port":443}"#;
        let list = resp(
            200,
            &format!(r#"{{"staged":{{"3":{web}}},"running":{{"3":{web}}}}}"#),
        );
        assert!(is_running(&list, "3", "x").unwrap());
        assert!(!is_running(&list, "4", "x").unwrap());
        let target: SocketAddr = "10.1.0.2:443".parse().unwrap();
        let taken = port_taken(&list, Transport::Tcp, 443, "p2pb-tcp-443", target)
            .unwrap()
            .unwrap();
        assert_eq!(
            (taken.name.as_str(), taken.running, taken.same),
            ("web", true, false)
        );
        let ours = port_taken(&list, Transport::Tcp, 443, "web", target)
            .unwrap()
            .unwrap();
        assert!(ours.same);
        let elsewhere = port_taken(
            &list,
            Transport::Tcp,
            443,
            "web",
            "10.1.0.3:443".parse().unwrap(),
        )
        .unwrap()
        .unwrap();
        assert!(!elsewhere.same, "another host's rule is never adopted");
        assert_eq!(
            port_taken(&list, Transport::Udp, 443, "web", target).unwrap(),
            None
        );
        let allows = resp(
            200,
            r#"{"staged":{},"running":{"9":{"name":"web","protocol":"tcp","destination":"10.1.0.2","port":443}}}"#,
        );
        assert_eq!(
            running_allow(&allows, "web", target).unwrap().as_deref(),
            Some("9")
        );
        assert_eq!(running_allow(&allows, "other", target).unwrap(), None);
    }

    #[test]
    fn state_round_trips_and_foreign_state_is_refused() {
        let s = State {
            dnat: "1".into(),
            allow: "2".into(),
            api: "172.16.0.1:8443".parse().unwrap(),
        };
        assert_eq!(State::decode(&s.encode()).unwrap(), s);
        assert!(State::decode(b"\x00\x01").is_err());
    }

    #[test]
    fn only_concrete_ipv4_targets() {
        assert!(ipv4_target("10.1.0.2:1".parse().unwrap()).is_ok());
        assert!(ipv4_target("[::ffff:10.1.0.2]:1".parse().unwrap()).is_ok());
        assert!(matches!(
            ipv4_target("[2001:db8::1]:1".parse().unwrap()),
            Err(ModeError::Unsupported(_))
        ));
        assert!(matches!(
            ipv4_target("0.0.0.0:1".parse().unwrap()),
            Err(ModeError::InvalidRequest(_))
        ));
    }
}
