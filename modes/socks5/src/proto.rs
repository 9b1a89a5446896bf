//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929),
//! the CONNECT command only. Pure: messages to send, and what the proxy's
//! answers mean; every answer has a length known from its first bytes, so
//! the glue reads exactly that.

use core::net::IpAddr;

/// "No authentication required".
pub const NO_AUTH: u8 = 0x00;
/// "Username/password".
pub const USER_PASS: u8 = 0x02;
/// "No acceptable methods".
pub const NONE_ACCEPTABLE: u8 = 0xff;

/// Why the proxy did not open the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not SOCKS version 5, or a field out of range.
    Garbage(String),
    /// The proxy accepts none of the offered methods.
    NoMethod { offered_credentials: bool },
    /// The proxy chose a method not offered.
    UnofferedMethod(u8),
    /// The username/password were refused.
    Credentials,
    /// The proxy's reply code (RFC 1928 §6), other than success.
    Reply(u8),
}

/// The method selection message: no authentication, and username/password
/// when there are credentials.
pub fn greeting(credentials: bool) -> Vec<u8> {
    if credentials {
        vec![5, 2, NO_AUTH, USER_PASS]
    } else {
        vec![5, 1, NO_AUTH]
    }
}

/// The proxy's method choice (2 bytes).
pub fn method(answer: [u8; 2], credentials: bool) -> Result<u8, Refusal> {
    if answer[0] != 5 {
        return Err(Refusal::Garbage(format!(
            "version {} in the method choice",
            answer[0]
        )));
    }
    match answer[1] {
        NO_AUTH => Ok(NO_AUTH),
        USER_PASS if credentials => Ok(USER_PASS),
        NONE_ACCEPTABLE => Err(Refusal::NoMethod {
            offered_credentials: credentials,
        }),
        m => Err(Refusal::UnofferedMethod(m)),
    }
}

/// The username/password request (RFC 1929): each at most 255 bytes.
pub fn credentials(user: &str, password: &str) -> Option<Vec<u8>> {
    let (u, p) = (user.as_bytes(), password.as_bytes());
    let (ul, pl) = (u8::try_from(u.len()).ok()?, u8::try_from(p.len()).ok()?);
    if ul == 0 {
        return None;
    }
    let mut out = vec![1, ul];
    out.extend_from_slice(u);
    out.push(pl);
    out.extend_from_slice(p);
    Some(out)
}

/// The proxy's verdict on the credentials (2 bytes).
pub fn credentials_answer(answer: [u8; 2]) -> Result<(), Refusal> {
    match answer {
        [1, 0] => Ok(()),
        [1, _] => Err(Refusal::Credentials),
        [v, _] => Err(Refusal::Garbage(format!(
            "version {v} in the authentication answer"
        ))),
    }
}

/// The CONNECT request for `host:port`: an IP literal as such, anything
/// else as a domain name (at most 255 bytes) the proxy resolves.
pub fn connect(host: &str, port: u16) -> Option<Vec<u8>> {
    let mut out = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            out.push(1);
            out.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).ok().filter(|l| *l > 0)?;
            out.push(3);
            out.push(len);
            out.extend_from_slice(host.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Some(out)
}

/// The reply's first four bytes: success or the refusal; on success, how
/// many bytes of the reply follow (the bound address and port), or, for a
/// domain name, 0 and the glue reads its length byte first
/// ([`domain_rest`]).
pub fn reply_head(head: [u8; 4]) -> Result<usize, Refusal> {
    if head[0] != 5 {
        return Err(Refusal::Garbage(format!(
            "version {} in the reply",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(Refusal::Reply(head[1]));
    }
    match head[3] {
        1 => Ok(4 + 2),
        4 => Ok(16 + 2),
        3 => Ok(0),
        t => Err(Refusal::Garbage(format!("address type {t} in the reply"))),
    }
}

/// For a domain-name bound address: the bytes after its length byte.
pub fn domain_rest(len: u8) -> usize {
    usize::from(len) + 2
}

/// RFC 1928's words for a reply code.
pub fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_offers_credentials_only_when_there_are_some() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
        assert_eq!(method([5, 2], true), Ok(USER_PASS));
        assert_eq!(method([5, 2], false), Err(Refusal::UnofferedMethod(2)));
        assert_eq!(
            method([5, 0xff], false),
            Err(Refusal::NoMethod {
                offered_credentials: false
            })
        );
        assert!(matches!(method([4, 0], false), Err(Refusal::Garbage(_))));
    }

    #[test]
    fn credentials_are_length_prefixed_and_bounded() {
        assert_eq!(credentials("u", "pw").unwrap(), [1, 1, b'u', 2, b'p', b'w']);
        assert!(credentials("", "pw").is_none());
        assert!(credentials(&"u".repeat(256), "pw").is_none());
        assert_eq!(credentials_answer([1, 0]), Ok(()));
        assert_eq!(credentials_answer([1, 1]), Err(Refusal::Credentials));
    }

    #[test]
    fn connect_requests_carry_each_address_type() {
        assert_eq!(
            connect("198.51.100.1", 7000).unwrap(),
            [5, 1, 0, 1, 198, 51, 100, 1, 0x1b, 0x58]
        );
        let v6 = connect("2001:db8::1", 443).unwrap();
        assert_eq!((v6[3], v6.len()), (4, 4 + 16 + 2));
        let name = connect("peer.example", 80).unwrap();
        assert_eq!(&name[3..5], &[3, 12]);
        assert!(connect(&"a".repeat(256), 80).is_none());
    }

    #[test]
    fn reply_heads_say_what_follows_or_why_not() {
        assert_eq!(reply_head([5, 0, 0, 1]), Ok(6));
        assert_eq!(reply_head([5, 0, 0, 4]), Ok(18));
        assert_eq!(reply_head([5, 0, 0, 3]), Ok(0));
        assert_eq!(domain_rest(12), 14);
        assert_eq!(reply_head([5, 5, 0, 1]), Err(Refusal::Reply(5)));
        assert!(matches!(reply_head([5, 0, 0, 9]), Err(Refusal::Garbage(_))));
        assert!(matches!(
            reply_head([b'H', b'T', b'T', b'P']),
            Err(Refusal::Garbage(_))
        ));
        assert_eq!(reply_text(2), "connection not allowed by ruleset");
    }
}
