//! The little HTTP/1.1 a UPnP control point needs, as pure functions:
//! `http://IP:PORT/path` URLs, GET and SOAP POST requests, and responses
//! with Content-Length, chunked or close-delimited bodies.
//!
//! Hand-written on top of `httparse` (which parses the head) because a
//! general URL/HTTP client would pull name resolution and TLS into a MOD
//! that must do neither: UPnP URLs carry IP literals (UDA 1.1 §2.1), and
//! we refuse anything else rather than resolve names.

use core::net::{IpAddr, SocketAddr};

/// Largest response we read (head + body). Real IGD descriptions are 2-6
/// KiB; 64 KiB bounds a hostile gateway's "huge body" at no cost.
pub const HTTP_MAX_RESPONSE: usize = 64 * 1024;

/// A parsed `http://` URL with an IP-literal host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port.
    pub addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parse an absolute `http://IP[:PORT]/path` URL.
pub fn parse_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if let Ok(a) = authority.parse::<SocketAddr>() {
        a
    } else {
        let host = authority.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("`{url}`: host is not an IP address (names are not resolved)"))?;
        SocketAddr::new(ip, 80)
    };
    if addr.port() == 0 {
        return Err(format!("`{url}`: port 0"));
    }
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
    Ok(HttpUrl {
        addr: base.addr,
        path,
    })
}

fn host_header(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(_) => addr.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// A GET request for `url`.
pub fn build_get(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: p2pbroker UPnP/1.1\r\n\r\n",
        url.path,
        host_header(url.addr)
    )
    .into_bytes()
}

/// A SOAP POST of `body` for `service_type#action`.
pub fn build_soap_post(url: &HttpUrl, service_type: &str, action: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
         SOAPAction: \"{service_type}#{action}\"\r\nContent-Length: {}\r\n\r\n{body}",
        url.path,
        host_header(url.addr),
        body.len()
    )
    .into_bytes()
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Decoded body.
    pub body: Vec<u8>,
}

/// Parse a complete response (the connection has closed, or the body is
/// complete). Errors name what is wrong.
pub fn parse_response(b: &[u8]) -> Result<HttpResponse, String> {
    if b.len() > HTTP_MAX_RESPONSE {
        return Err(format!("response larger than {HTTP_MAX_RESPONSE} bytes"));
    }
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated response head".into()),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = resp.code.ok_or("no status code")?;
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &b[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length `{len}`"))?;
        if rest.len() < len {
            return Err(format!("truncated body: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

/// Whether `b` holds a whole response already (so we need not wait for
/// the peer to close).
pub fn is_complete(b: &[u8]) -> bool {
    parse_response(b).is_ok()
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&b[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://10.0.0.1:5000/rootDesc.xml").unwrap();
        assert_eq!(u.addr, "10.0.0.1:5000".parse().unwrap());
        assert_eq!(u.path, "/rootDesc.xml");
        assert_eq!(parse_url("http://10.0.0.1").unwrap().addr.port(), 80);
        assert_eq!(parse_url("http://[fe80::1]:80/x").unwrap().path, "/x");
        assert!(parse_url("https://10.0.0.1/").is_err());
        assert!(
            parse_url("http://router.local:5000/")
                .unwrap_err()
                .contains("not resolved")
        );
        assert!(parse_url("http://10.0.0.1:0/").is_err());
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
    fn requests() {
        let u = parse_url("http://10.0.0.1:5000/ctl/IPConn").unwrap();
        let p = String::from_utf8(build_soap_post(
            &u,
            "urn:x:service:WANIPConnection:1",
            "GetExternalIPAddress",
            "<b/>",
        ))
        .unwrap();
        assert!(p.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.0.1:5000\r\n"));
        assert!(
            p.contains("SOAPAction: \"urn:x:service:WANIPConnection:1#GetExternalIPAddress\"\r\n")
        );
        assert!(p.ends_with("Content-Length: 4\r\n\r\n<b/>"));
    }

    #[test]
    fn bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = parse_response(b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(r.body, b"until close");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello")
                .unwrap_err()
                .contains("truncated body")
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le")
                .unwrap_err()
                .contains("truncated response head")
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello"
        ));
        let huge = vec![b'a'; HTTP_MAX_RESPONSE + 1];
        assert!(parse_response(&huge).unwrap_err().contains("larger than"));
    }
}
