//! The `upnp-igd` MOD: port mappings through a UPnP Internet Gateway Device
//! (WANIPConnection:1 and :2, WANPPPConnection:1), and IPv6 pinholes
//! through an IGD 2's WANIPv6FirewallControl:1 ([`v6`]).
//!
//! Codecs are pure ([`ssdp`], [`http`], [`url`], [`xml`], [`igd`],
//! [`pinhole`], [`origin`]); the transport glue is in [`wire`] and [`v6`].
//! Discovery sends M-SEARCH and takes the first complete answer plus a
//! short grace period for other gateways, instead of a fixed multi-second
//! wait. A gateway whose external address is private, shared (CGNAT) or
//! reserved is reported as a non-routable gateway, not as "no gateway".
//! The MOD never asks for external port 0 or a wildcard.
//!
//! **Whom it talks to** ([`origin`]): only the host's default gateways. An
//! SSDP answer counts only when it comes from a default gateway and its
//! LOCATION is on that same address (IPv6: the LOCATION host is a default
//! gateway, and the answer comes from it or, while the route names the
//! router by a routable address, from an on-link link-local address —
//! IGDs answer `[ff02::c]` from theirs); other answers are logged (warn)
//! and never fetched. A description's control URL must be on the device
//! that served it; the `location` config and the gateway in a state blob
//! must be a default gateway.
//!
//! **Errors:** only "there is no IGD here" (no SSDP answer at all, or no
//! WAN connection service in any description) is `unavailable`, which makes
//! the broker leave the MOD out for a while. An IGD that answered but is
//! slow is `timeout`; garbled replies (HTTP, XML, SOAP) and refused
//! connections are `protocol`; UPnP error codes keep their mapping
//! ([`igd::to_mode_error`]).
//!
//! Grants (the manifest): `udp:send@ssdp`, `udp:receive@gateway:1900`,
//! `udp:receive@fe80::/64:1900` (IPv6 SSDP answers come from the gateway's
//! link-local address, which the host's routing table need not name: in
//! the dual-stack lab the default route is the gateway's global address),
//! `tcp:connect@gateway:1-65535` (the description's HTTP port is the
//! router's choice). Nothing else on the LAN is reachable.
//! Config: `timeout_ms` (default 2000), `probe_timeout_ms` (default 250),
//! `location` (a root description URL on a default gateway: skips
//! discovery; an IPv6 URL is used for pinholes, an IPv4 one for port
//! mappings).

pub mod http;
pub mod igd;
pub mod origin;
pub mod pinhole;
pub mod ssdp;
pub mod url;
pub mod v6;
pub mod wire;
pub mod xml;

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use igd::{Gateway, MapArgs, at, combine};
use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::classify::class_name;
use p2pbroker_mode_sdk::clock::Deadline;
use p2pbroker_mode_sdk::host;
use p2pbroker_mode_sdk::{
    AddressClass, MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport, TEXT_MAX, Transport,
    classify, clip, clip_error,
};
use pinhole::PinholeState;
use url::HttpUrl;

const DEFAULT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 250;
/// How many other external ports to try after 718 ConflictInMappingEntry.
const CONFLICT_RETRIES: u32 = 8;

fn budget(key: &str, default: u64) -> Deadline {
    Deadline::after(Duration::from_millis(host::config_or(key, default)))
}

/// The gateway at `url` and its external address.
fn gateway_at(url: &HttpUrl, deadline: Deadline) -> Result<(Gateway, IpAddr), ModeError> {
    let gw = wire::describe(url, deadline)?.ok_or_else(|| {
        ModeError::Unavailable("offers no WANIPConnection or WANPPPConnection service".into())
    })?;
    let ip = wire::external_ip(&gw, deadline)?;
    Ok((gw, ip))
}

/// Find a gateway: from config `location`, or by SSDP. Among several,
/// prefer one with a globally routable external address. Only "no IGD
/// here" is `unavailable`; an IGD that answered but is slow or garbled
/// gives `timeout` or `protocol` ([`igd::combine`]).
fn find_gateway(deadline: Deadline) -> Result<(Gateway, IpAddr), ModeError> {
    let locations = match wire::configured_location() {
        Some(l) => vec![l?],
        None => wire::discover(deadline)?,
    };
    let mut best: Option<(Gateway, IpAddr)> = None;
    let mut failures = Vec::new();
    for url in locations.iter().take(wire::MAX_GATEWAYS) {
        match gateway_at(url, deadline) {
            Ok((gw, ip)) if classify(ip) == AddressClass::Global => return Ok((gw, ip)),
            Ok(found) => best = best.or(Some(found)),
            Err(e) => failures.push(at(&url.short(), &e)),
        }
    }
    best.ok_or_else(|| combine("no usable IGD", &failures))
}

/// A warm map takes the gateway and external address the probe learned
/// (one SOAP call fewer); renew re-checks the address anyway.
fn gateway_from_state(state: &[u8], deadline: Deadline) -> Result<(Gateway, IpAddr), ModeError> {
    match igd::decode_probe_state(state) {
        Some(found) if wire::on_default_gateway(&found.0.control).is_ok() => Ok(found),
        _ => find_gateway(deadline),
    }
}

fn protocol(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    }
}

struct UpnpIgd;

impl Mode for UpnpIgd {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "upnp-igd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "UPnP IGD port mappings (WANIPConnection:1/2, WANPPPConnection:1) and IPv6 pinholes (WANIPv6FirewallControl:1)".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        let (gw, ip) = find_gateway(budget("probe_timeout_ms", DEFAULT_PROBE_TIMEOUT_MS))?;
        let class = classify(ip);
        let mut detail = format!(
            "IGD {} ({}), external address {ip} ({})",
            gw.control.short(),
            gw.service_type,
            class_name(class)
        );
        if class != AddressClass::Global {
            detail.push_str(": non-routable gateway (double NAT or CGNAT)");
        }
        // The control URL's path comes from the gateway: any length.
        let detail = clip(detail, TEXT_MAX);
        Ok(ProbeReport {
            gateway: Some(from_ip(gw.control.addr.ip())),
            external_address: Some(from_ip(ip)),
            external_class: Some(class),
            detail,
            state: igd::encode_probe_state(&gw, ip),
        })
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        let deadline = budget("timeout_ms", DEFAULT_TIMEOUT_MS);
        let internal = to_socket(&request.internal);
        if let SocketAddr::V6(v6) = internal
            && v6.ip().to_ipv4_mapped().is_none()
        {
            return v6::map(&request, v6, deadline);
        }
        let (gw, ext_ip) = gateway_from_state(&request.probe_state, deadline)?;
        let client = if internal.ip().is_unspecified() {
            host::local_address_towards(gw.control.addr.ip())
                .ok_or_else(|| ModeError::Unavailable("no local address towards the IGD".into()))?
        } else {
            internal.ip()
        };
        let mut args = MapArgs {
            protocol: protocol(request.transport),
            external_port: request.external_port.unwrap_or(internal.port()),
            internal_client: client,
            internal_port: internal.port(),
            lease: request.lifetime,
        };
        let mut tries = 0;
        let granted_port = loop {
            match wire::add_mapping(&gw, &args, deadline) {
                Ok(port) => break port,
                Err(igd::IgdError::Upnp(718, _))
                    if tries < CONFLICT_RETRIES && request.external_port.is_none() =>
                {
                    // Someone holds that port: pick another, never 0.
                    tries += 1;
                    args.external_port = 1024 + (host::random_u64() % (65535 - 1024)) as u16;
                }
                Err(igd::IgdError::Upnp(725, _))
                    if args.lease != 0 && request.permanent_allowed =>
                {
                    host::warn(
                        "gateway grants only permanent leases (725); policy allows it: the broker deletes it on release",
                    );
                    args.lease = 0;
                }
                Err(e) => return Err(igd::to_mode_error(e)),
            }
        };
        let state = igd::MappingState {
            gateway: gw,
            args: MapArgs {
                external_port: granted_port,
                ..args
            },
        };
        Ok(Mapping {
            transport: request.transport,
            internal: from_socket(SocketAddr::new(client, internal.port())),
            external: from_socket(SocketAddr::new(ext_ip, granted_port)),
            lifetime: args.lease,
            state: state.encode(),
        })
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        if let Some(st) = PinholeState::decode(&current.state) {
            let deadline = budget("timeout_ms", DEFAULT_TIMEOUT_MS);
            return v6::renew(current, st, lifetime, deadline);
        }
        let st = igd::MappingState::decode(&current.state).ok_or_else(|| {
            ModeError::InvalidRequest("mapping state is not a UPnP IGD state".into())
        })?;
        // After a move to another network the old gateway is out of reach.
        wire::on_default_gateway(&st.gateway.control).map_err(ModeError::MappingLost)?;
        let deadline = budget("timeout_ms", DEFAULT_TIMEOUT_MS);
        // Is it still ours? After a gateway reboot it is gone (714), and
        // another client may have taken the port meanwhile.
        match wire::get_mapping(
            &st.gateway,
            st.args.protocol,
            st.args.external_port,
            deadline,
        ) {
            Ok((client, port))
                if client == st.args.internal_client && port == st.args.internal_port => {}
            Ok((client, port)) => {
                return Err(ModeError::MappingLost(format!(
                    "external port now forwards to {client}:{port}"
                )));
            }
            Err(igd::IgdError::Upnp(714, _)) => {
                return Err(ModeError::MappingLost(
                    "the gateway no longer has this mapping (714 NoSuchEntryInArray)".into(),
                ));
            }
            Err(e) => return Err(igd::to_mode_error(e)),
        }
        let ext_ip = wire::external_ip(&st.gateway, deadline)?;
        let previous = to_socket(&current.external);
        if ext_ip != previous.ip() {
            return Err(ModeError::MappingLost(format!(
                "external address changed from {} to {ext_ip}",
                previous.ip()
            )));
        }
        let args = MapArgs {
            lease: if st.args.lease == 0 { 0 } else { lifetime },
            ..st.args
        };
        let port = wire::add_mapping(&st.gateway, &args, deadline).map_err(igd::to_mode_error)?;
        if port != st.args.external_port {
            return Err(ModeError::MappingLost(format!(
                "gateway moved the mapping to port {port}"
            )));
        }
        Ok(Mapping {
            lifetime: args.lease,
            ..current
        })
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        if let Some(st) = PinholeState::decode(&current.state) {
            return v6::unmap(st, budget("timeout_ms", DEFAULT_TIMEOUT_MS));
        }
        let st = igd::MappingState::decode(&current.state).ok_or_else(|| {
            ModeError::InvalidRequest("mapping state is not a UPnP IGD state".into())
        })?;
        wire::on_default_gateway(&st.gateway.control).map_err(ModeError::Denied)?;
        let deadline = budget("timeout_ms", DEFAULT_TIMEOUT_MS);
        match wire::delete_mapping(
            &st.gateway,
            st.args.protocol,
            st.args.external_port,
            deadline,
        ) {
            Ok(()) | Err(igd::IgdError::Upnp(714, _)) => Ok(()),
            Err(e) => Err(igd::to_mode_error(e)),
        }
    }
}

/// [`UpnpIgd`] with every error reason clipped to the contract's 1 KiB:
/// reasons quote URLs and texts of any length from gateways, and a longer
/// one would turn a clean error into a contract breach.
struct Exported;

impl Mode for Exported {
    fn info() -> ModeInfo {
        UpnpIgd::info()
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        UpnpIgd::probe().map_err(clip_error)
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        UpnpIgd::map(request).map_err(clip_error)
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        UpnpIgd::renew(current, lifetime).map_err(clip_error)
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        UpnpIgd::unmap(current).map_err(clip_error)
    }
}

p2pbroker_mode_sdk::export_mode!(Exported);
