//! The `direct` MOD: when the host itself has a globally routable address,
//! it is reachable as is and the "mapping" is that address and port.
//!
//! It opens no socket: it decides from the host's addresses, which the
//! broker passes in, so its component imports only the broker interface
//! (and, for the `ip-address` type alone, `wasi:sockets/network`).
//! Behind NAT it reports `unavailable` and maps nothing.

use core::net::{IpAddr, SocketAddr};

use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::classify::class_name;
use p2pbroker_mode_sdk::host::{self, LocalAddress};
use p2pbroker_mode_sdk::{
    AddressClass, MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport, TEXT_MAX, classify,
    clip,
};

/// The first globally routable address among `addrs`.
pub fn first_global(addrs: &[LocalAddress]) -> Option<IpAddr> {
    first_global_where(addrs, |_| true)
}

/// The first globally routable address among `addrs` that `keep` accepts.
fn first_global_where(addrs: &[LocalAddress], keep: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    addrs
        .iter()
        .map(|a| a.address)
        .find(|ip| keep(ip) && classify(*ip) == AddressClass::Global)
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// One line describing what was seen.
pub fn describe(addrs: &[LocalAddress]) -> String {
    let seen: Vec<String> = addrs
        .iter()
        .map(|a| {
            format!(
                "{}/{} {}",
                a.address,
                a.prefix_len,
                class_name(classify(a.address))
            )
        })
        .collect();
    let seen = if seen.is_empty() {
        "none".into()
    } else {
        seen.join(", ")
    };
    clip(format!("local addresses: {seen}"), TEXT_MAX)
}

/// Decide the external endpoint for `internal` (pure).
pub fn decide(
    addrs: &[LocalAddress],
    internal: SocketAddr,
    external_port: Option<u16>,
) -> Result<SocketAddr, ModeError> {
    if let Some(p) = external_port
        && p != internal.port()
    {
        return Err(ModeError::Unsupported(format!(
            "a direct address cannot translate ports ({} requested, {} internal)",
            p,
            internal.port()
        )));
    }
    let ip = if internal.ip().is_unspecified() {
        // A socket bound to 0.0.0.0 is reached over IPv4 only, and one bound
        // to :: may be IPv6-only: map on an address of the same family.
        let family = family_name(internal.ip());
        first_global_where(addrs, |ip| ip.is_ipv4() == internal.is_ipv4()).ok_or_else(|| {
            ModeError::Unavailable(format!(
                "no globally routable local {family} address; host is behind NAT"
            ))
        })?
    } else {
        let ip = internal.ip();
        if !addrs.iter().any(|a| a.address == ip) {
            return Err(ModeError::InvalidRequest(format!(
                "{ip} is not an address of this host"
            )));
        }
        if classify(ip) != AddressClass::Global {
            return Err(ModeError::Unavailable(format!(
                "{ip} is not globally routable"
            )));
        }
        ip
    };
    Ok(SocketAddr::new(ip, internal.port()))
}

struct Direct;

impl Mode for Direct {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "direct".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "The host has a globally routable address: reachable as is".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        let addrs = host::local_addresses();
        let ip = first_global(&addrs).ok_or_else(|| {
            let reason = format!(
                "no globally routable local address; host is behind NAT ({})",
                describe(&addrs)
            );
            ModeError::Unavailable(clip(reason, TEXT_MAX))
        })?;
        Ok(ProbeReport {
            gateway: None,
            external_address: Some(from_ip(ip)),
            external_class: Some(AddressClass::Global),
            detail: describe(&addrs),
            state: Vec::new(),
        })
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        let internal = to_socket(&request.internal);
        let external = decide(&host::local_addresses(), internal, request.external_port)?;
        Ok(Mapping {
            transport: request.transport,
            internal: request.internal,
            external: from_socket(external),
            lifetime: request.lifetime,
            state: Vec::new(),
        })
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        let external = to_socket(&current.external);
        if !host::local_addresses()
            .iter()
            .any(|a| a.address == external.ip())
        {
            return Err(ModeError::MappingLost(format!(
                "{} is no longer an address of this host",
                external.ip()
            )));
        }
        Ok(Mapping {
            lifetime,
            ..current
        })
    }

    fn unmap(_current: Mapping) -> Result<(), ModeError> {
        Ok(())
    }
}

p2pbroker_mode_sdk::export_mode!(Direct);

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> LocalAddress {
        LocalAddress {
            address: s.parse().unwrap(),
            prefix_len: 24,
            interface: "eth0".into(),
        }
    }

    #[test]
    fn behind_nat_is_unavailable() {
        let addrs = [addr("10.0.0.2"), addr("fd00::2")];
        assert!(first_global(&addrs).is_none());
        let e = decide(&addrs, "0.0.0.0:4000".parse().unwrap(), None).unwrap_err();
        assert!(matches!(e, ModeError::Unavailable(_)));
    }

    #[test]
    fn a_global_address_maps_to_itself() {
        let addrs = [addr("10.0.0.2"), addr("8.8.4.4")];
        assert_eq!(
            decide(&addrs, "0.0.0.0:4000".parse().unwrap(), None).unwrap(),
            "8.8.4.4:4000".parse().unwrap()
        );
        assert_eq!(
            decide(&addrs, "8.8.4.4:4000".parse().unwrap(), Some(4000)).unwrap(),
            "8.8.4.4:4000".parse().unwrap()
        );
    }

    #[test]
    fn an_unspecified_address_maps_within_its_family() {
        let addrs = [addr("10.0.0.2"), addr("2606:4700::1111")];
        assert!(matches!(
            decide(&addrs, "0.0.0.0:4000".parse().unwrap(), None),
            Err(ModeError::Unavailable(_))
        ));
        assert_eq!(
            decide(&addrs, "[::]:4000".parse().unwrap(), None).unwrap(),
            "[2606:4700::1111]:4000".parse().unwrap()
        );
    }

    #[test]
    fn many_addresses_stay_within_the_text_limit() {
        let addrs: Vec<_> = (0..200).map(|i| addr(&format!("fd00::{i:x}"))).collect();
        assert!(describe(&addrs).len() <= TEXT_MAX);
    }

    #[test]
    fn port_translation_and_foreign_addresses_are_refused() {
        let addrs = [addr("8.8.4.4"), addr("10.0.0.2")];
        assert!(matches!(
            decide(&addrs, "0.0.0.0:4000".parse().unwrap(), Some(4001)),
            Err(ModeError::Unsupported(_))
        ));
        assert!(matches!(
            decide(&addrs, "1.2.3.4:4000".parse().unwrap(), None),
            Err(ModeError::InvalidRequest(_))
        ));
        assert!(matches!(
            decide(&addrs, "10.0.0.2:4000".parse().unwrap(), None),
            Err(ModeError::Unavailable(_))
        ));
    }
}
