//! Which PCP server to talk to, and our address towards it. The choice
//! itself is pure ([`parse_servers`], [`pick`]); the rest reads the host.

use core::net::IpAddr;

use p2pbroker_mode_sdk::{ModeError, host};

/// The addresses of config `server`: comma-separated IP addresses.
pub fn parse_servers(text: &str) -> Result<Vec<IpAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| format!("config `server`: {p:?} is not an address"))
        })
        .collect()
}

/// The server for a mapping of one family (`v6`): the first configured
/// address of that family, else the first default gateway of that family.
/// A PCP server checks the client address against the packet's source
/// (RFC 6887 §8.3), so an IPv6 mapping needs an IPv6 server. A link-local
/// one is refused: a MOD knows no interface scope to reach it with.
pub fn pick(configured: &[IpAddr], gateways: &[IpAddr], v6: bool) -> Result<IpAddr, ModeError> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let server = configured
        .iter()
        .chain(gateways)
        .find(|s| s.is_ipv6() == v6)
        .copied()
        .ok_or_else(|| ModeError::Unavailable(format!("no {family} default gateway")))?;
    if let IpAddr::V6(a) = server
        && a.is_unicast_link_local()
    {
        return Err(ModeError::Unavailable(format!(
            "the IPv6 default gateway {server} is link-local and MODs get no interface scope: \
             set config `server` to the PCP server's routable IPv6 address"
        )));
    }
    Ok(server)
}

fn configured() -> Result<Vec<IpAddr>, ModeError> {
    host::config("server")
        .map_or(Ok(Vec::new()), |t| parse_servers(&t))
        .map_err(ModeError::InvalidRequest)
}

/// The server to probe: the first configured, else the first default gateway.
pub fn server() -> Result<IpAddr, ModeError> {
    configured()?
        .into_iter()
        .chain(host::default_gateways())
        .next()
        .ok_or_else(|| ModeError::Unavailable("no default gateway".into()))
}

/// The server for a mapping of one family; see [`pick`].
pub fn server_for(v6: bool) -> Result<IpAddr, ModeError> {
    pick(&configured()?, &host::default_gateways(), v6)
}

/// Our own address towards `server` (PCP servers check it against the
/// packet's source, RFC 6887 §8.3).
pub fn client_address(server: IpAddr) -> Result<IpAddr, ModeError> {
    host::local_address_towards(server).ok_or_else(|| {
        ModeError::Unavailable(format!("no local address to reach PCP server {server}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn config_lists_addresses() {
        assert_eq!(
            parse_servers(" 10.0.0.1, 2001:db8:1::1 ,"),
            Ok(ips(&["10.0.0.1", "2001:db8:1::1"]))
        );
        assert!(parse_servers("router").unwrap_err().contains("\"router\""));
    }

    #[test]
    fn picks_the_family_of_the_mapping() {
        let gws = ips(&["10.0.0.1", "2001:db8:1::1"]);
        assert_eq!(pick(&[], &gws, true).unwrap(), gws[1]);
        assert_eq!(pick(&[], &gws, false).unwrap(), gws[0]);
        // Config first, but only for its own family.
        let conf = ips(&["2001:db8:9::1"]);
        assert_eq!(pick(&conf, &gws, true).unwrap(), conf[0]);
        assert_eq!(pick(&conf, &gws, false).unwrap(), gws[0]);
        assert!(matches!(
            pick(&[], &gws[..1], true),
            Err(ModeError::Unavailable(m)) if m.contains("no IPv6")
        ));
        // Link-local is the usual IPv6 default route; it needs config.
        let ll = ips(&["fe80::1"]);
        assert!(matches!(
            pick(&[], &ll, true),
            Err(ModeError::Unavailable(m)) if m.contains("config `server`")
        ));
        assert_eq!(pick(&conf, &ll, true).unwrap(), conf[0]);
    }
}
