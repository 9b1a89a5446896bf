//! The `nat-pmp` MOD: port mappings through a NAT-PMP gateway (RFC 6886).
//!
//! Wire format in [`proto`], state blobs in [`state`], both pure; this file
//! only pumps datagrams. Grants it needs: `udp:send,receive@gateway:5351`.
//!
//! Config: `gateway` (IPv4 address; default: the first IPv4 default
//! gateway), `port` (default 5351; for test gateways), `timeout_ms` (per exchange; default 2000, i.e. the RFC's
//! retransmissions at 250, 500 and 1000 ms), `probe_timeout_ms` (default
//! 250: the broker probes every MOD in parallel within a short budget).

pub mod proto;
pub mod state;

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::classify::class_name;
use p2pbroker_mode_sdk::clock::unix_seconds;
use p2pbroker_mode_sdk::host;
use p2pbroker_mode_sdk::net::{self, Reply};
use p2pbroker_mode_sdk::{
    AddressClass, MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport, Transport, classify,
};
use proto::{PmpError, PmpProto, PmpResult};
use state::PmpState;

/// Default budget of one exchange: the first three RFC 6886 attempts.
const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Default probe budget: one attempt; the broker probes all MODs at once.
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 250;

fn config_ms(key: &str, default: u64) -> u64 {
    host::config_or(key, default)
}

fn gateway() -> Result<Ipv4Addr, ModeError> {
    if let Some(text) = host::config("gateway") {
        return text.parse().map_err(|_| {
            ModeError::InvalidRequest(format!("config `gateway` {text:?} is not an IPv4 address"))
        });
    }
    host::default_gateways()
        .into_iter()
        .find_map(|g| match g {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| ModeError::Unavailable("no IPv4 default gateway".into()))
}

/// Map a NAT-PMP failure to the contract's error.
pub fn pmp_error(e: PmpError) -> ModeError {
    match e {
        PmpError::Result(PmpResult::NotAuthorized) => {
            ModeError::Denied("NAT-PMP gateway refused (result 2: not authorized)".into())
        }
        PmpError::Result(PmpResult::NetworkFailure) => ModeError::Unavailable(
            "NAT-PMP gateway has no usable external address (result 3: network failure)".into(),
        ),
        PmpError::Result(PmpResult::OutOfResources) => {
            ModeError::Conflict("NAT-PMP gateway is out of ports (result 4)".into())
        }
        PmpError::Result(PmpResult::UnsupportedVersion) => ModeError::Unsupported(
            "gateway does not speak NAT-PMP version 0 (result 1; try PCP)".into(),
        ),
        PmpError::Result(r) => ModeError::Protocol(format!("NAT-PMP result {r:?}")),
        other => ModeError::Protocol(format!("malformed NAT-PMP response: {other:?}")),
    }
}

/// Send `request` to the gateway and wait for a reply `parse` accepts,
/// retransmitting on the RFC 6886 schedule until `budget` is spent.
/// Replies that are not the awaited response (stray or late ones) are
/// ignored; only the gateway's address is listened to.
fn exchange<T>(
    gw: Ipv4Addr,
    request: &[u8],
    budget: Duration,
    parse: impl Fn(&[u8]) -> Result<T, PmpError>,
) -> Result<T, ModeError> {
    let port = host::config_or("port", proto::PMP_PORT);
    let to = SocketAddr::new(IpAddr::V4(gw), port);
    let schedule = |n| proto::retransmit_after_ms(n).map(Duration::from_millis);
    let result = net::exchange(to, request, schedule, budget, |b| match parse(b) {
        Ok(v) => Reply::Accept(v),
        Err(PmpError::Opcode { .. } | PmpError::Version(_)) => Reply::Ignore,
        Err(e) => Reply::Fail(pmp_error(e)),
    });
    match result {
        Err(ModeError::Timeout(_)) => Err(ModeError::Timeout(format!(
            "no NAT-PMP answer from {to} within {} ms",
            budget.as_millis()
        ))),
        other => other,
    }
}

fn external_address(gw: Ipv4Addr, budget: Duration) -> Result<proto::PmpExternal, ModeError> {
    exchange(
        gw,
        &proto::build_external_address_request(),
        budget,
        proto::parse_external_address_response,
    )
}

fn pmp_proto(t: Transport) -> PmpProto {
    match t {
        Transport::Udp => PmpProto::Udp,
        Transport::Tcp => PmpProto::Tcp,
    }
}

struct NatPmp;

impl Mode for NatPmp {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "nat-pmp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "NAT-PMP (RFC 6886) port mappings on the default gateway".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        let gw = gateway()?;
        let budget = Duration::from_millis(config_ms("probe_timeout_ms", DEFAULT_PROBE_TIMEOUT_MS));
        let ext = external_address(gw, budget)?;
        let ip = IpAddr::V4(Ipv4Addr::from(ext.address));
        let class = classify(ip);
        let mut detail = format!(
            "NAT-PMP gateway {gw}, external address {ip} ({})",
            class_name(class)
        );
        if class != AddressClass::Global {
            detail.push_str(": non-routable gateway (double NAT or CGNAT)");
        }
        let st = PmpState {
            gateway: gw.octets(),
            epoch: ext.epoch,
            seen: unix_seconds(),
            external: ext.address,
            internal_port: 0,
            external_port: 0,
        };
        Ok(ProbeReport {
            gateway: Some(from_ip(IpAddr::V4(gw))),
            external_address: Some(from_ip(ip)),
            external_class: Some(class),
            detail,
            state: st.encode(),
        })
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        let internal = to_socket(&request.internal);
        if !internal.is_ipv4() {
            return Err(ModeError::Unsupported("NAT-PMP maps IPv4 only".into()));
        }
        // NAT-PMP always maps the sender (RFC 6886 §3.3): for another LAN
        // host it would silently forward to us instead. PCP THIRD_PARTY or
        // UPnP can do that; say so and let the broker fall back.
        let own = |ip| host::local_addresses().iter().any(|a| a.address == ip);
        if !internal.ip().is_unspecified() && !own(internal.ip()) {
            return Err(ModeError::Unsupported(format!(
                "NAT-PMP can map only this host, not {}: use PCP (THIRD_PARTY) or UPnP",
                internal.ip()
            )));
        }
        let budget = Duration::from_millis(config_ms("timeout_ms", DEFAULT_TIMEOUT_MS));
        // A warm map reuses the probe's gateway and external address.
        let warm = PmpState::decode(&request.probe_state);
        let (gw, ext) = match warm {
            Some(s) => (Ipv4Addr::from(s.gateway), s.external),
            None => {
                let gw = gateway()?;
                (gw, external_address(gw, budget)?.address)
            }
        };
        if ext == [0, 0, 0, 0] {
            return Err(ModeError::Unavailable(
                "NAT-PMP gateway reports no external address".into(),
            ));
        }
        let proto = pmp_proto(request.transport);
        let req = proto::build_map_request(
            proto,
            internal.port(),
            request.external_port.unwrap_or(internal.port()),
            request.lifetime,
        );
        let m = exchange(gw, &req, budget, |b| proto::parse_map_response(b, proto))?;
        if m.internal_port != internal.port() || m.external_port == 0 {
            return Err(ModeError::Protocol(format!(
                "NAT-PMP answer for port {} / external {}",
                m.internal_port, m.external_port
            )));
        }
        let st = PmpState {
            gateway: gw.octets(),
            epoch: m.epoch,
            seen: unix_seconds(),
            external: ext,
            internal_port: m.internal_port,
            external_port: m.external_port,
        };
        Ok(Mapping {
            transport: request.transport,
            internal: request.internal,
            external: from_socket(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(ext)),
                m.external_port,
            )),
            lifetime: m.lifetime,
            state: st.encode(),
        })
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        let st = PmpState::decode(&current.state).ok_or_else(|| {
            ModeError::InvalidRequest("mapping state is not a NAT-PMP state".into())
        })?;
        let gw = Ipv4Addr::from(st.gateway);
        let budget = Duration::from_millis(config_ms("timeout_ms", DEFAULT_TIMEOUT_MS));
        // Check the epoch before re-requesting: after a gateway reset the
        // mapping is gone and the broker must hear so (it may move it to
        // another MOD), rather than have it silently re-created here.
        let ext = external_address(gw, budget)?;
        let now = unix_seconds();
        if proto::epoch_reset(st.epoch, st.seen, ext.epoch, now) {
            return Err(ModeError::MappingLost(format!(
                "NAT-PMP gateway {gw} reset its mappings (epoch {} -> {})",
                st.epoch, ext.epoch
            )));
        }
        if ext.address != st.external {
            return Err(ModeError::MappingLost(format!(
                "external address changed from {} to {}",
                Ipv4Addr::from(st.external),
                Ipv4Addr::from(ext.address)
            )));
        }
        let proto = pmp_proto(current.transport);
        let req = proto::build_map_request(proto, st.internal_port, st.external_port, lifetime);
        let m = exchange(gw, &req, budget, |b| proto::parse_map_response(b, proto))?;
        let external = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ext.address)), m.external_port);
        let next = PmpState {
            epoch: m.epoch,
            seen: now,
            external_port: m.external_port,
            ..st
        };
        Ok(Mapping {
            external: from_socket(external),
            lifetime: m.lifetime,
            state: next.encode(),
            ..current
        })
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        let st = PmpState::decode(&current.state).ok_or_else(|| {
            ModeError::InvalidRequest("mapping state is not a NAT-PMP state".into())
        })?;
        let budget = Duration::from_millis(config_ms("timeout_ms", DEFAULT_TIMEOUT_MS));
        let proto = pmp_proto(current.transport);
        // RFC 6886 §3.4: lifetime 0 and external port 0 delete the mapping.
        let req = proto::build_map_request(proto, st.internal_port, 0, 0);
        exchange(Ipv4Addr::from(st.gateway), &req, budget, |b| {
            proto::parse_map_response(b, proto)
        })?;
        Ok(())
    }
}

p2pbroker_mode_sdk::export_mode!(NatPmp);
