//! The MOD's config (pure: values come through a getter).
//!
//! - `turn_servers`: comma-separated RFC 7065 URLs, as the broker hands
//!   them on from the policy's `[services] turn`. The first `turn:` URL
//!   whose host is an IP literal is used (`turn:198.51.100.1:3478`,
//!   `turn:[2001:db8::1]`, port 3478 by default; `?transport=tcp` reaches
//!   the relay over TCP, `?transport=udp` or none over UDP; `turns:` over
//!   TLS, port 5349 by default, whose certificate the broker checks as the
//!   policy says). `turns:` over UDP (DTLS) is not carried; a host name
//!   cannot be used because a relay channel opens to an address.
//! - `turn_username` with `turn_credential` (long-term credentials) or with
//!   `turn_secret` (REST credentials; `turn_rest_ttl_s`, default 86400).
//!   None: only a server that asks for no credentials works.
//! - `timeout_ms` (default 3000): the call's budget for all its TURN
//!   transactions; `probe_timeout_ms` (default 500, at most `timeout_ms`):
//!   the probe's, which the broker wants short.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::{ModeError, escape};

use crate::creds::{Credentials, Source};

/// RFC 8656 §3.1 (and RFC 7065): TURN's default port over UDP.
pub const DEFAULT_PORT: u16 = 3478;
/// The call's budget for TURN transactions: enough for RFC 8489's first
/// three transmissions (0, 0.5, 1.5 s) and a late answer, and under the
/// broker's default 5 s call limit.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// The probe's budget: the broker probes every MOD at once and ranks
/// those that answer within a few hundred milliseconds.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 500;
/// REST credentials' default validity (a day, coturn's and most
/// services' default).
pub const DEFAULT_REST_TTL_S: u64 = 86_400;

/// A config getter (the broker's `config` import, or a test's table).
pub trait Get: Fn(&str) -> Option<String> {}
impl<F: Fn(&str) -> Option<String>> Get for F {}

fn value(get: &impl Get, key: &str) -> Option<String> {
    get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn number(get: &impl Get, key: &str, default: u64) -> Result<u64, ModeError> {
    match value(get, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ModeError::InvalidRequest(format!(
                "config `{key}`: {} is not a whole number",
                escape(&v, 40)
            ))
        }),
    }
}

/// RFC 7065: TURN over TLS's default port.
pub const DEFAULT_TLS_PORT: u16 = 5349;

/// How the relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// UDP (`turn:`, `?transport=udp`).
    Udp,
    /// TCP (`turn:...?transport=tcp`).
    Tcp,
    /// TLS over TCP (`turns:`).
    Tls,
}

impl Leg {
    /// As `p2pb probe` says it.
    pub fn name(self) -> &'static str {
        match self {
            Leg::Udp => "UDP",
            Leg::Tcp => "TCP",
            Leg::Tls => "TLS",
        }
    }
}

/// The server to use, from `turn_servers`.
pub fn server(get: &impl Get) -> Result<SocketAddr, ModeError> {
    server_leg(get).map(|(a, _)| a)
}

/// The server to use and how to reach it.
pub fn server_leg(get: &impl Get) -> Result<(SocketAddr, Leg), ModeError> {
    let list = value(get, "turn_servers").unwrap_or_default();
    let mut first_refusal = None;
    for url in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let leg = if url.starts_with("turns:") {
            Leg::Tls
        } else if url.ends_with("?transport=tcp") {
            Leg::Tcp
        } else {
            Leg::Udp
        };
        match parse_url(url) {
            Ok(a) => return Ok((a, leg)),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    Err(first_refusal.unwrap_or_else(|| {
        ModeError::Unavailable(
            "no TURN server configured (policy [services] turn, config turn_servers)".into(),
        )
    }))
}

/// One RFC 7065 URL as an address, or why it cannot be used.
pub fn parse_url(url: &str) -> Result<SocketAddr, ModeError> {
    let shown = escape(url, 200);
    let (rest, default_port) = match url.strip_prefix("turns:") {
        Some(rest) => (rest, DEFAULT_TLS_PORT),
        None => match url.strip_prefix("turn:") {
            Some(rest) => (rest, DEFAULT_PORT),
            None => {
                return Err(ModeError::InvalidRequest(format!(
                    "config `turn_servers`: {shown} is not a turn: or turns: URL"
                )));
            }
        },
    };
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if default_port == DEFAULT_TLS_PORT && query == "transport=udp" {
        return Err(ModeError::Unsupported(format!(
            "TURN server {shown}: TURN over DTLS (turns: on UDP) is not carried; give \
             turns: over TCP"
        )));
    }
    match query {
        "" | "transport=udp" | "transport=tcp" => {}
        _ => {
            return Err(ModeError::InvalidRequest(format!(
                "config `turn_servers`: {shown} has an unknown query (?transport=udp or tcp)"
            )));
        }
    }
    let (host, port) = split_host_port(hostport, default_port).ok_or_else(|| {
        ModeError::InvalidRequest(format!(
            "config `turn_servers`: {shown} is not turn:HOST[:PORT]"
        ))
    })?;
    let ip: IpAddr = host.parse().map_err(|_| {
        ModeError::InvalidRequest(format!(
            "TURN server {shown}: {} is a name; a relay channel opens to an address, so give \
             an IP literal",
            escape(host, 100)
        ))
    })?;
    if port == 0 || ip.is_unspecified() {
        return Err(ModeError::InvalidRequest(format!(
            "config `turn_servers`: {shown} is no address to reach"
        )));
    }
    Ok(SocketAddr::new(ip, port))
}

/// `host[:port]` or `[v6][:port]`; the port defaults to `default_port`.
fn split_host_port(s: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = if after.is_empty() {
            ""
        } else {
            after.strip_prefix(':')?
        };
        (host, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, p),
            Some(_) => return None, // a bare IPv6 literal needs brackets
            None => (s, ""),
        }
    };
    if host.is_empty() || (port.is_empty() && s.ends_with(':')) {
        return None;
    }
    let port = if port.is_empty() {
        default_port
    } else {
        port.parse().ok()?
    };
    Some((host, port))
}

/// The credentials' source.
pub fn credentials(get: &impl Get) -> Result<Source, ModeError> {
    let user = value(get, "turn_username");
    // Secrets are taken as written: blanks may be part of them.
    let credential = get("turn_credential").filter(|v| !v.is_empty());
    let secret = get("turn_secret").filter(|v| !v.is_empty());
    match (user, credential, secret) {
        (None, None, None) => Ok(Source::None),
        (Some(_), Some(_), Some(_)) => Err(ModeError::InvalidRequest(
            "config sets both turn_credential and turn_secret; give one".into(),
        )),
        (Some(username), Some(password), None) => {
            Ok(Source::LongTerm(Credentials { username, password }))
        }
        (Some(user), None, Some(secret)) => Ok(Source::Rest {
            user,
            secret,
            ttl_s: number(get, "turn_rest_ttl_s", DEFAULT_REST_TTL_S)?.max(1),
        }),
        (Some(_), None, None) => Err(ModeError::InvalidRequest(
            "config turn_username needs turn_credential or turn_secret".into(),
        )),
        (None, _, _) => Err(ModeError::InvalidRequest(
            "config turn_credential or turn_secret needs turn_username".into(),
        )),
    }
}

/// The call's budget for TURN transactions (`timeout_ms`).
pub fn timeout(get: &impl Get) -> Result<Duration, ModeError> {
    Ok(Duration::from_millis(
        number(get, "timeout_ms", DEFAULT_TIMEOUT_MS)?.max(1),
    ))
}

/// The probe's budget (`probe_timeout_ms`, at most `timeout_ms`).
pub fn probe_timeout(get: &impl Get) -> Result<Duration, ModeError> {
    let probe =
        Duration::from_millis(number(get, "probe_timeout_ms", DEFAULT_PROBE_TIMEOUT_MS)?.max(1));
    Ok(probe.min(timeout(get)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> impl Get {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| {
            owned
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_usable_turn_url_wins() {
        let get = table(&[(
            "turn_servers",
            "turns:198.51.100.9:5349?transport=udp, turn:relay.example:3478,turn:198.51.100.1:3479,turn:198.51.100.2",
        )]);
        assert_eq!(server(&get).unwrap(), sa("198.51.100.1:3479"));
        assert_eq!(
            parse_url("turn:198.51.100.2").unwrap(),
            sa("198.51.100.2:3478")
        );
        assert_eq!(
            parse_url("turn:[2001:db8::1]:3479?transport=udp").unwrap(),
            sa("[2001:db8::1]:3479")
        );
        assert_eq!(
            parse_url("turn:[2001:db8::1]").unwrap(),
            sa("[2001:db8::1]:3478")
        );
    }

    #[test]
    fn unusable_urls_say_why() {
        let only = |url: &str| server(&table(&[("turn_servers", url)])).unwrap_err();
        let ModeError::Unsupported(why) = only("turns:198.51.100.1:5349?transport=udp") else {
            panic!("DTLS is unsupported")
        };
        assert!(why.contains("DTLS"), "{why}");
        let tls = table(&[("turn_servers", "turns:198.51.100.1")]);
        assert_eq!(
            server_leg(&tls).unwrap(),
            (sa("198.51.100.1:5349"), Leg::Tls)
        );
        let tls = table(&[("turn_servers", "turns:198.51.100.1:443?transport=tcp")]);
        assert_eq!(
            server_leg(&tls).unwrap(),
            (sa("198.51.100.1:443"), Leg::Tls)
        );
        let ModeError::InvalidRequest(why) = only("turn:relay.example:3478") else {
            panic!("a name is invalid")
        };
        assert!(why.contains("relay.example is a name"), "{why}");
        let tcp = table(&[("turn_servers", "turn:198.51.100.1:3478?transport=tcp")]);
        assert_eq!(
            server_leg(&tcp).unwrap(),
            (sa("198.51.100.1:3478"), Leg::Tcp)
        );
        let udp = table(&[("turn_servers", "turn:198.51.100.1:3478")]);
        assert_eq!(
            server_leg(&udp).unwrap(),
            (sa("198.51.100.1:3478"), Leg::Udp)
        );
        for bad in [
            "stun:198.51.100.1",
            "turn:198.51.100.1:",
            "turn:198.51.100.1:0",
            "turn:2001:db8::1",
            "turn:0.0.0.0:3478",
            "turn:198.51.100.1:3478?transport=sctp",
            "turn:[2001:db8::1]x",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ModeError::InvalidRequest(_))),
                "{bad}"
            );
        }
        // Control characters of a hostile value are escaped.
        let ModeError::InvalidRequest(why) = only("turn:evil\u{1b}[2J") else {
            panic!("invalid")
        };
        assert!(why.contains("\\u{1b}"), "{why}");
        assert!(matches!(
            server(&table(&[])),
            Err(ModeError::Unavailable(_))
        ));
    }

    #[test]
    fn credentials_come_as_long_term_rest_or_none() {
        assert_eq!(credentials(&table(&[])).unwrap(), Source::None);
        let long = credentials(&table(&[
            ("turn_username", "alice"),
            ("turn_credential", "wonderland"),
        ]))
        .unwrap();
        assert_eq!(
            long,
            Source::LongTerm(Credentials {
                username: "alice".into(),
                password: "wonderland".into()
            })
        );
        let rest = credentials(&table(&[
            ("turn_username", "alice"),
            ("turn_secret", "s"),
            ("turn_rest_ttl_s", "600"),
        ]))
        .unwrap();
        assert_eq!(
            rest,
            Source::Rest {
                user: "alice".into(),
                secret: "s".into(),
                ttl_s: 600
            }
        );
        for bad in [
            &[
                ("turn_username", "a"),
                ("turn_credential", "c"),
                ("turn_secret", "s"),
            ][..],
            &[("turn_username", "a")],
            &[("turn_secret", "s")],
            &[
                ("turn_username", "a"),
                ("turn_secret", "s"),
                ("turn_rest_ttl_s", "day"),
            ],
        ] {
            assert!(
                matches!(credentials(&table(bad)), Err(ModeError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn budgets_default_and_the_probe_stays_within_the_call() {
        assert_eq!(timeout(&table(&[])).unwrap(), Duration::from_millis(3000));
        assert_eq!(
            probe_timeout(&table(&[])).unwrap(),
            Duration::from_millis(500)
        );
        let tight = table(&[("timeout_ms", "200")]);
        assert_eq!(probe_timeout(&tight).unwrap(), Duration::from_millis(200));
        assert!(timeout(&table(&[("timeout_ms", "3s")])).is_err());
    }
}
