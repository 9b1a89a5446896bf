//! `http://IP:PORT/path` URLs, as pure functions.
//!
//! UPnP URLs carry IP literals (UDA 1.1 §2.1): we refuse anything else
//! rather than resolve names. A path must be visible ASCII, because it is
//! copied into a request line: a space or CR/LF from a gateway's reply would
//! otherwise split the request or inject headers.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use p2pbroker_mode_sdk::escape;

/// A parsed `http://` URL with an IP-literal host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port.
    pub addr: SocketAddr,
    /// Path and query, starting with `/`, visible ASCII only.
    pub path: String,
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            SocketAddr::V4(a) => write!(f, "http://{a}{}", self.path),
            SocketAddr::V6(a) => write!(f, "http://[{}]:{}{}", a.ip(), a.port(), self.path),
        }
    }
}

/// Longest URL quoted in a message: a path from a gateway can be as long
/// as its whole reply, and the message must still say what is wrong.
const URL_SHOWN_MAX: usize = 120;

impl HttpUrl {
    /// The URL for a message: cut to a little over [`URL_SHOWN_MAX`]
    /// bytes, the cut marked with `…` (it is visible ASCII: no escaping).
    pub fn short(&self) -> String {
        let full = self.to_string();
        if full.len() <= URL_SHOWN_MAX {
            return full;
        }
        format!("{}…", &full[..URL_SHOWN_MAX])
    }
}

/// `url` from outside, safe to quote in an error.
fn shown(url: &str) -> String {
    escape(url, 200)
}

/// Refuse a path that is not visible ASCII (RFC 3986 characters).
fn check_path(url: &str, path: &str) -> Result<(), String> {
    if path.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "`{}`: the path holds spaces, control or non-ASCII characters",
            shown(url)
        ))
    }
}

/// Parse an absolute `http://IP[:PORT]/path` URL.
pub fn parse_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{}` is not an http:// URL", shown(url)))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr = if let Ok(a) = authority.parse::<SocketAddr>() {
        a
    } else {
        let host = authority.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host.parse().map_err(|_| {
            format!(
                "`{}`: host is not an IP address (names are not resolved)",
                shown(url)
            )
        })?;
        SocketAddr::new(ip, 80)
    };
    if addr.port() == 0 {
        return Err(format!("`{}`: port 0", shown(url)));
    }
    if let SocketAddr::V6(v6) = addr
        && v6.scope_id() != 0
    {
        // A zone picks an interface: not for a peer to choose.
        return Err(format!("`{}`: an IPv6 zone (scope id)", shown(url)));
    }
    check_path(url, path)?;
    Ok(HttpUrl {
        addr,
        path: path.to_string(),
    })
}

/// Resolve `reference` (absolute URL or path) against `base`.
pub fn resolve(base: &HttpUrl, reference: &str) -> Result<HttpUrl, String> {
    let reference = reference.trim();
    if reference.starts_with("http://") {
        return parse_url(reference);
    }
    let path = if reference.starts_with('/') {
        reference.to_string()
    } else {
        // Relative to the base path's folder (RFC 3986 §5.2, the cases
        // routers use: "ctl/IPConn", "/ctl/IPConn").
        let folder = &base.path[..base.path.rfind('/').map_or(0, |i| i + 1)];
        format!(
            "{}{reference}",
            if folder.is_empty() { "/" } else { folder }
        )
    };
    check_path(reference, &path)?;
    Ok(HttpUrl {
        addr: base.addr,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://10.0.0.1:5000/rootDesc.xml").unwrap();
        assert_eq!(u.addr, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(u.path, "/rootDesc.xml");
        assert_eq!(u.to_string(), "http://10.0.0.1:5000/rootDesc.xml");
        assert_eq!(u.short(), u.to_string());
        let long = parse_url(&format!("http://10.0.0.1:5000/{}", "a".repeat(500))).unwrap();
        assert_eq!(long.short().len(), URL_SHOWN_MAX + '…'.len_utf8());
        assert_eq!(parse_url("http://10.0.0.1").unwrap().addr.port(), 80);
        let v6 = parse_url("http://[fe80::1]:80/x").unwrap();
        assert_eq!(
            (v6.path.as_str(), v6.to_string()),
            ("/x", "http://[fe80::1]:80/x".into())
        );
        assert!(parse_url("https://10.0.0.1/").is_err());
        assert!(
            parse_url("http://router.local:5000/")
                .unwrap_err()
                .contains("not resolved")
        );
        assert!(parse_url("http://10.0.0.1:0/").is_err());
        assert!(
            parse_url("http://[fe80::1%2]:80/")
                .unwrap_err()
                .contains("zone")
        );
        let base = parse_url("http://10.0.0.1:5000/desc/root.xml").unwrap();
        assert_eq!(resolve(&base, "/ctl/IPConn").unwrap().path, "/ctl/IPConn");
        assert_eq!(
            resolve(&base, "ctl/IPConn").unwrap().path,
            "/desc/ctl/IPConn"
        );
        assert_eq!(
            resolve(&base, "http://10.0.0.1:6000/c")
                .unwrap()
                .addr
                .port(),
            6000
        );
    }

    #[test]
    fn paths_cannot_split_a_request() {
        let base = parse_url("http://10.0.0.1:5000/desc/root.xml").unwrap();
        for bad in [
            "/ctl\r\nX-Injected: 1",
            "/ctl HTTP/1.0",
            "ctl\tx",
            "/ctl\u{202e}",
            "/é",
        ] {
            let e = resolve(&base, bad).unwrap_err();
            assert!(e.contains("path holds"), "{bad:?}: {e}");
            assert!(!e.contains('\n') && !e.contains('\r'), "escaped: {e:?}");
            assert!(parse_url(&format!("http://10.0.0.1:5000{bad}")).is_err());
        }
        // Leading and trailing white space around a controlURL is layout.
        assert_eq!(resolve(&base, "  /ctl \n").unwrap().path, "/ctl");
    }
}
