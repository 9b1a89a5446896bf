//! Which URLs the MOD may fetch, as pure functions: only URLs on the
//! host's default gateways, learnt from the gateway itself.
//!
//! An SSDP answer is a datagram anyone on the LAN can send, and its
//! LOCATION is a URL the MOD would fetch: without a check, any LAN device
//! could point the broker at the host's own services, a container, or
//! another LAN host (server-side request forgery). So:
//!
//! - **IPv4:** the LOCATION host must be the address the answer came from,
//!   and that responder must be a default gateway of the host.
//! - **IPv6:** an IGD answers a search on the link-scope group `[ff02::c]`
//!   from its *link-local* address (miniupnpd 2.3.1 in the dual-stack lab:
//!   source `fe80::…` of its LAN interface, LOCATION on its global LAN
//!   address `2001:db8:1::1`, which is also the host's default route). A
//!   link-local URL is of no use (MODs get no interface scope), so the rule
//!   is: the LOCATION host must be a default gateway (never link-local),
//!   and the responder must be that same address, another default gateway,
//!   or — only while no default gateway is link-local, i.e. the route names
//!   the router by a routable address — an on-link link-local address.
//!   When the default route is link-local (router advertisements), the
//!   responder must be it.
//! - A description's control URL must be on the device that served the
//!   description ([`check_same_device`]); the `location` config and the
//!   gateway in a state blob must be a default gateway ([`check_location`]).
//!
//! The capability gate enforces the same at the socket level
//! (`tcp:connect@gateway`), so a fault here is refused twice.

use core::net::IpAddr;

use p2pbroker_mode_sdk::escape;

use crate::url::{HttpUrl, parse_url};

/// Whether `ip` is one of `gateways` (IPv4-mapped IPv6 counts as IPv4).
pub fn is_gateway(ip: IpAddr, gateways: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    gateways.iter().any(|g| g.to_canonical() == ip)
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
        IpAddr::V4(v4) => v4.is_link_local(),
    }
}

/// Check a URL the MOD is told to fetch (config `location`, a state blob):
/// its host must be a default gateway, and not link-local.
pub fn check_location(url: &HttpUrl, gateways: &[IpAddr]) -> Result<(), String> {
    let host = url.addr.ip().to_canonical();
    if host.is_ipv6() && is_link_local(host) {
        return Err(format!(
            "{} is link-local: MODs get no interface scope to reach it",
            url.short()
        ));
    }
    if !is_gateway(host, gateways) {
        return Err(format!(
            "{} is not on a default gateway of this host ({})",
            url.short(),
            list(gateways)
        ));
    }
    Ok(())
}

/// Check an SSDP answer from `responder` announcing `location`; returns
/// the URL to fetch, or why the answer must be ignored (the reason quotes
/// the LOCATION escaped and clipped).
pub fn check_answer(
    location: &str,
    responder: IpAddr,
    gateways: &[IpAddr],
) -> Result<HttpUrl, String> {
    let url = parse_url(location)?;
    let host = url.addr.ip().to_canonical();
    let responder = responder.to_canonical();
    match (responder, host) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            if host != responder {
                return Err(format!(
                    "LOCATION {} is not on the responder {responder}",
                    url.short()
                ));
            }
            if !is_gateway(responder, gateways) {
                return Err(format!(
                    "responder {responder} is not a default gateway of this host ({})",
                    list(gateways)
                ));
            }
        }
        (IpAddr::V6(_), IpAddr::V6(_)) => {
            check_location(&url, gateways)?;
            let link_local_route = gateways.iter().any(|g| g.is_ipv6() && is_link_local(*g));
            let on_link = is_link_local(responder) && !link_local_route;
            if responder != host && !is_gateway(responder, gateways) && !on_link {
                return Err(format!(
                    "responder {responder} is neither {host} nor a default gateway ({})",
                    list(gateways)
                ));
            }
        }
        _ => {
            return Err(format!(
                "LOCATION {} is not on the responder {responder}",
                url.short()
            ));
        }
    }
    Ok(url)
}

/// Check that `control` (from a description) is on the device that served
/// the description at `description`: a description must not send the MOD
/// elsewhere (through `URLBase` or an absolute `controlURL`).
pub fn check_same_device(control: &HttpUrl, description: &HttpUrl) -> Result<(), String> {
    if control.addr.ip().to_canonical() == description.addr.ip().to_canonical() {
        Ok(())
    } else {
        Err(format!(
            "control URL {} is not on the device that served {}",
            control.short(),
            description.short()
        ))
    }
}

/// `location` as a log line may quote it.
pub fn shown(location: &str) -> String {
    escape(location, 200)
}

fn list(gateways: &[IpAddr]) -> String {
    if gateways.is_empty() {
        return "it has none".into();
    }
    let v: Vec<String> = gateways.iter().map(IpAddr::to_string).collect();
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LOC: &str = "http://10.0.0.1:5000/rootDesc.xml";

    #[test]
    fn ipv4_answers_come_from_the_gateway_they_name() {
        let gws = ips(&["10.0.0.1"]);
        assert_eq!(
            check_answer(LOC, ip("10.0.0.1"), &gws).unwrap().to_string(),
            LOC
        );
        assert_eq!(
            check_answer(LOC, ip("::ffff:10.0.0.1"), &gws)
                .unwrap()
                .to_string(),
            LOC,
            "a mapped source is its IPv4 address"
        );
        // A LAN host pointing at the gateway, the gateway pointing elsewhere,
        // a LAN host pointing at itself, or at the host's own services.
        for (loc, from, why) in [
            (LOC, "10.0.0.7", "not on the responder"),
            ("http://10.0.0.7:80/x", "10.0.0.1", "not on the responder"),
            ("http://10.0.0.7:80/x", "10.0.0.7", "not a default gateway"),
            (
                "http://127.0.0.1:8080/admin",
                "10.0.0.1",
                "not on the responder",
            ),
            (
                "http://[2001:db8:1::1]:5000/d",
                "10.0.0.1",
                "not on the responder",
            ),
        ] {
            let e = check_answer(loc, ip(from), &gws).unwrap_err();
            assert!(e.contains(why), "{loc} from {from}: {e}");
        }
        let e = check_answer(LOC, ip("10.0.0.1"), &[]).unwrap_err();
        assert!(e.contains("it has none"), "{e}");
        assert!(check_answer("http://router:5000/", ip("10.0.0.1"), &gws).is_err());
    }

    /// The dual-stack lab: the route names the router by its global
    /// address; it answers from its link-local one.
    #[test]
    fn ipv6_answers_from_the_routers_link_local_address() {
        let gws = ips(&["10.0.0.1", "2001:db8:1::1"]);
        let loc = "http://[2001:db8:1::1]:5000/rootDesc.xml";
        for from in ["fe80::a8c1:abff:fe12:3456", "2001:db8:1::1"] {
            assert!(check_answer(loc, ip(from), &gws).is_ok(), "{from}");
        }
        for (loc, from, why) in [
            // A LAN host naming itself or another host.
            (
                "http://[2001:db8:1::7]:80/",
                "2001:db8:1::7",
                "not on a default gateway",
            ),
            (
                "http://[2001:db8:1::7]:80/",
                "fe80::7",
                "not on a default gateway",
            ),
            // A LAN host (routable source) naming the gateway.
            (loc, "2001:db8:1::7", "neither"),
            // Link-local and loopback LOCATIONs are of no use.
            ("http://[fe80::1]:5000/", "fe80::1", "link-local"),
            ("http://[::1]:5000/", "fe80::1", "not on a default gateway"),
        ] {
            let e = check_answer(loc, ip(from), &gws).unwrap_err();
            assert!(e.contains(why), "{loc} from {from}: {e}");
        }
    }

    /// Router advertisements: the default route is the router's link-local
    /// address, so only it may answer for a gateway LOCATION.
    #[test]
    fn with_a_link_local_route_only_that_router_answers() {
        let gws = ips(&["fe80::1", "2001:db8:1::1"]);
        let loc = "http://[2001:db8:1::1]:5000/rootDesc.xml";
        assert!(check_answer(loc, ip("fe80::1"), &gws).is_ok());
        let e = check_answer(loc, ip("fe80::7"), &gws).unwrap_err();
        assert!(e.contains("neither"), "{e}");
        // The router's global address is not known as a gateway here: its
        // LOCATION is refused (see the module docs).
        let only_ll = ips(&["fe80::1"]);
        assert!(check_answer(loc, ip("fe80::1"), &only_ll).is_err());
    }

    #[test]
    fn locations_and_control_urls() {
        let gws = ips(&["10.0.0.1", "2001:db8:1::1"]);
        let url = |s| parse_url(s).unwrap();
        assert!(check_location(&url(LOC), &gws).is_ok());
        assert!(check_location(&url("http://[2001:db8:1::1]:5000/"), &gws).is_ok());
        for bad in [
            "http://10.0.0.2:5000/",
            "http://127.0.0.1:5000/",
            "http://[fe80::1]:1/",
        ] {
            assert!(check_location(&url(bad), &gws).is_err(), "{bad}");
        }
        let desc = url(LOC);
        assert!(check_same_device(&url("http://10.0.0.1:80/ctl"), &desc).is_ok());
        let e = check_same_device(&url("http://10.0.0.9:80/ctl"), &desc).unwrap_err();
        assert!(e.contains("not on the device"), "{e}");
    }

    #[test]
    fn quoted_locations_are_escaped_and_short() {
        let hostile = format!("http://10.0.0.1/\r\n{}", "x".repeat(1000));
        let s = shown(&hostile);
        assert!(!s.contains('\n') && s.len() <= 200, "{s:?}");
        let e = check_answer("http://10.0.0.1:1/a b\u{1b}[2J", ip("10.0.0.1"), &[]).unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e:?}");
    }
}
