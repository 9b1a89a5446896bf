//! The declaration grammar of static forwards (pure, fuzzable):
//!
//! ```text
//! FORWARDS := FORWARD (";" FORWARD)*
//! FORWARD  := ("tcp" | "udp") EXTERNAL "->" INTERNAL
//! ```
//!
//! with socket addresses such as `198.51.100.11:7000` or `[2001:db8::1]:7000`,
//! e.g. `tcp 198.51.100.11:7000 -> 10.0.0.2:7000; udp 198.51.100.11:7001 -> 10.0.0.2:7001`.

use core::net::SocketAddr;

use p2pbroker_mode_sdk::Transport;

/// One declared forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Transport.
    pub transport: Transport,
    /// Where the outside reaches it.
    pub external: SocketAddr,
    /// The endpoint on this host.
    pub internal: SocketAddr,
}

/// Parse a forwards declaration; the error names the bad forward.
pub fn parse_forwards(text: &str) -> Result<Vec<Forward>, String> {
    let mut out = Vec::new();
    for (i, item) in text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let err = |why: &str| {
            format!(
                "forward {} `{item}`: {why} (expected `tcp|udp EXTERNAL -> INTERNAL`)",
                i + 1
            )
        };
        let (proto, rest) = item
            .split_once(char::is_whitespace)
            .ok_or_else(|| err("missing addresses"))?;
        let transport = match proto {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return Err(err("transport must be tcp or udp")),
        };
        let (ext, int) = rest.split_once("->").ok_or_else(|| err("missing `->`"))?;
        let external: SocketAddr = ext
            .trim()
            .parse()
            .map_err(|_| err("external is not IP:PORT"))?;
        let internal: SocketAddr = int
            .trim()
            .parse()
            .map_err(|_| err("internal is not IP:PORT"))?;
        if external.port() == 0 || internal.port() == 0 {
            return Err(err("port 0"));
        }
        if external.ip().is_unspecified() || internal.ip().is_unspecified() {
            return Err(err("unspecified address"));
        }
        out.push(Forward {
            transport,
            external,
            internal,
        });
    }
    Ok(out)
}

/// The forward serving `transport` to `internal` (unspecified IP: any of
/// this host's), with `external_port` when one is asked for.
pub fn find(
    forwards: &[Forward],
    transport: Transport,
    internal: SocketAddr,
    external_port: Option<u16>,
) -> Option<Forward> {
    forwards.iter().copied().find(|f| {
        f.transport == transport
            && f.internal.port() == internal.port()
            && (internal.ip().is_unspecified() || f.internal.ip() == internal.ip())
            && external_port.is_none_or(|p| p == f.external.port())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_finds() {
        let f = parse_forwards(
            "tcp 198.51.100.11:7000 -> 10.0.0.2:7000; udp [2001:db8::1]:53 -> [2001:db8::2]:5353;",
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].internal, "[2001:db8::2]:5353".parse().unwrap());
        let hit = find(&f, Transport::Tcp, "0.0.0.0:7000".parse().unwrap(), None).unwrap();
        assert_eq!(hit.external, "198.51.100.11:7000".parse().unwrap());
        assert!(find(&f, Transport::Udp, "0.0.0.0:7000".parse().unwrap(), None).is_none());
        assert!(find(&f, Transport::Tcp, "10.0.0.3:7000".parse().unwrap(), None).is_none());
        assert!(
            find(
                &f,
                Transport::Tcp,
                "10.0.0.2:7000".parse().unwrap(),
                Some(7001)
            )
            .is_none()
        );
    }

    #[test]
    fn errors_name_the_forward() {
        for (text, want) in [
            ("sctp 1.2.3.4:1 -> 10.0.0.2:1", "tcp or udp"),
            ("tcp 1.2.3.4:1 10.0.0.2:1", "missing `->`"),
            ("tcp 1.2.3.4 -> 10.0.0.2:1", "external is not IP:PORT"),
            ("tcp 1.2.3.4:1 -> 10.0.0.2:0", "port 0"),
            ("tcp 0.0.0.0:1 -> 10.0.0.2:1", "unspecified"),
            ("tcp", "missing addresses"),
        ] {
            let e = parse_forwards(text).unwrap_err();
            assert!(e.contains(want) && e.contains("forward 1"), "{text}: {e}");
        }
        assert!(parse_forwards("").unwrap().is_empty());
    }
}
