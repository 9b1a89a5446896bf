//! Registry authentication (pure): the `WWW-Authenticate` challenge of a
//! 401, and the token answer of a Bearer realm.
//!
//! Anonymous pulls need no credentials even where the registry asks for a
//! token (it gives anonymous ones). Credentials come from the environment
//! (`P2PB_REGISTRY_USER`, `P2PB_REGISTRY_PASSWORD`) and are sent only
//! where a challenge asks for them, over HTTPS unless the reference itself
//! is plain HTTP.

use base64::Engine as _;

/// Largest token answer read.
pub const TOKEN_MAX: usize = 64 << 10;

/// What a 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic`: the credentials on each request.
    Basic,
    /// `Bearer`: a token from `realm` for `service` and `scope`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service parameter, if any.
        service: Option<String>,
        /// The scope parameter, if any.
        scope: Option<String>,
    },
}

/// A user name and password for the registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never into a log line.
        write!(f, "Credentials({}, ***)", self.user)
    }
}

impl Credentials {
    /// From `P2PB_REGISTRY_USER` and `P2PB_REGISTRY_PASSWORD`, when both
    /// are set.
    pub fn from_env() -> Option<Credentials> {
        let user = std::env::var("P2PB_REGISTRY_USER").ok()?;
        let password = std::env::var("P2PB_REGISTRY_PASSWORD").ok()?;
        Some(Credentials { user, password })
    }

    /// The `Authorization` header value for Basic.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Parse a `WWW-Authenticate` value; `None` for a scheme this client does
/// not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (k, v) in params_of(params) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(v),
            "service" => service = Some(v),
            "scope" => scope = Some(v),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

/// `k=v` and `k="v, with commas"` pairs.
fn params_of(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            value = q[..end].to_string();
            rest = q.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.trim_start_matches([',', ' ']);
    }
    out
}

/// The token URL for a Bearer challenge: the realm with `service` and
/// `scope` (the challenge's, else pull or push on `repository`).
pub fn token_url(
    realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    repository: &str,
    push: bool,
) -> String {
    let scope = match scope {
        Some(s) => s.to_string(),
        None if push => format!("repository:{repository}:pull,push"),
        None => format!("repository:{repository}:pull"),
    };
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    for (k, v) in [("service", service), ("scope", Some(scope.as_str()))] {
        if let Some(v) = v {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
            sep = '&';
        }
    }
    url
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The token of a realm's JSON answer (`token`, or OAuth's
/// `access_token`).
pub fn token_of(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body).map_err(|e| format!("token answer: {e}"))?;
    let t = a
        .token
        .or(a.access_token)
        .ok_or("the token answer has no token")?;
    // It goes into a header: no control characters.
    if t.is_empty() || t.len() > 8192 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token answer's token is not a header value".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm");
    }

    #[test]
    fn token_urls_carry_service_and_scope_encoded() {
        let u = token_url("https://a/token", Some("reg x"), None, "team/m", true);
        assert_eq!(
            u,
            "https://a/token?service=reg%20x&scope=repository%3Ateam%2Fm%3Apull%2Cpush"
        );
        let u = token_url("https://a/t?x=1", None, Some("s"), "m", false);
        assert_eq!(u, "https://a/t?x=1&scope=s");
    }

    #[test]
    fn tokens_are_read_and_bad_ones_refused() {
        assert_eq!(token_of(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(token_of(br#"{"access_token":"xyz"}"#).unwrap(), "xyz");
        assert!(token_of(br#"{"token":"a\r\nX-Evil: 1"}"#).is_err());
        assert!(token_of(b"{}").is_err());
        assert!(token_of(b"<html>").is_err());
        let c = Credentials {
            user: "u".into(),
            password: "p".into(),
        };
        assert_eq!(c.basic(), "Basic dTpw");
        assert_eq!(format!("{c:?}"), "Credentials(u, ***)");
    }
}
