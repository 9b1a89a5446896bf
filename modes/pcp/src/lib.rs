//! The `pcp` MOD: port mappings through a PCP server (RFC 6887).
//!
//! ANNOUNCE is the probe; MAP creates, renews (same nonce) and deletes
//! (lifetime 0). A server that answers in NAT-PMP (version 0) is reported
//! as `unsupported` so the broker's selector falls back to the `nat-pmp`
//! MOD — one MOD per protocol keeps each one's grants and code minimal.
//! A MAP for another LAN host carries the THIRD_PARTY option. An IPv6
//! internal address gets an IPv6 MAP from the IPv6 server: on an IPv6
//! firewall that is a pinhole to the host's own address and port.
//!
//! Grants: `udp:send,receive@gateway:5351`. Config: `server` (addresses,
//! comma-separated; the first of the mapping's family is used; default: the
//! first default gateway of that family), `port` (default 5351),
//! `timeout_ms` (default 3500: the first RFC 6887 attempt),
//! `probe_timeout_ms` (default 250).

pub mod proto;
pub mod server;
pub mod state;

use core::cell::Cell;
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::classify::class_name;
use p2pbroker_mode_sdk::clock::unix_seconds;
use p2pbroker_mode_sdk::host;
use p2pbroker_mode_sdk::net::{self, Reply};
use p2pbroker_mode_sdk::{
    AddressClass, IpSocketAddress, MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport,
    Transport, classify,
};
use proto::{MapParams, PcpError, PcpResult};
use server::{client_address, server, server_for};
use state::PcpState;

const DEFAULT_TIMEOUT_MS: u64 = 3_500;
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 250;

fn config_ms(key: &str, default: u64) -> u64 {
    host::config_or(key, default)
}

/// Map a PCP failure to the contract's error.
pub fn pcp_error(e: PcpError) -> ModeError {
    use PcpResult::*;
    match e {
        PcpError::NatPmpOnly => ModeError::Unsupported(
            "server answers in NAT-PMP (version 0) only: the nat-pmp MOD applies".into(),
        ),
        PcpError::Result(r, _) => {
            let msg = format!("PCP result {r:?}");
            match r {
                NotAuthorized | UserExQuota => ModeError::Denied(msg),
                NetworkFailure | NoResources | AddressMismatch => ModeError::Unavailable(msg),
                CannotProvideExternal => ModeError::Conflict(msg),
                UnsuppVersion | UnsuppOpcode | UnsuppOption | UnsuppProtocol
                | ExcessiveRemotePeers => ModeError::Unsupported(msg),
                MalformedRequest | MalformedOption | Success | Unknown(_) => {
                    ModeError::Protocol(msg)
                }
            }
        }
        other => ModeError::Protocol(format!("malformed PCP response: {other:?}")),
    }
}

/// One request/response with the server on the RFC 6887 schedule. A
/// response with a foreign nonce is discarded (§11.3); if nothing but such
/// responses arrived, that is reported, not hidden behind a timeout.
fn exchange<T>(
    server: IpAddr,
    request: &[u8],
    budget: Duration,
    parse: impl Fn(&[u8]) -> Result<T, PcpError>,
) -> Result<T, ModeError> {
    let port = host::config_or("port", proto::PCP_PORT);
    let to = SocketAddr::new(server, port);
    let forged = Cell::new(0u32);
    let schedule = |n| proto::retransmit_after_ms(n).map(Duration::from_millis);
    let result = net::exchange(to, request, schedule, budget, |b| match parse(b) {
        Ok(v) => Reply::Accept(v),
        Err(PcpError::Nonce) => {
            forged.set(forged.get() + 1);
            Reply::Ignore
        }
        Err(PcpError::Opcode(_)) => Reply::Ignore,
        Err(e) => Reply::Fail(pcp_error(e)),
    });
    match result {
        Err(ModeError::Timeout(_)) if forged.get() > 0 => Err(ModeError::Protocol(format!(
            "{} PCP response(s) from {to} carried a wrong nonce and were discarded; no valid answer",
            forged.get()
        ))),
        Err(ModeError::Timeout(_)) => Err(ModeError::Timeout(format!(
            "no PCP answer from {to} within {} ms",
            budget.as_millis()
        ))),
        other => other,
    }
}

fn protocol(t: Transport) -> u8 {
    match t {
        Transport::Tcp => proto::PCP_PROTO_TCP,
        Transport::Udp => proto::PCP_PROTO_UDP,
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::from([0u8; 4]),
        IpAddr::V6(_) => IpAddr::from([0u16; 8]),
    }
}

fn map_params(st: &PcpState, external_port: u16, lifetime: u32) -> MapParams {
    MapParams {
        nonce: st.nonce,
        protocol: st.protocol,
        internal_port: st.internal_port,
        external_port,
        external_ip: unspecified_like(st.client),
        lifetime,
        client: st.client,
        third_party: st.third_party,
    }
}

fn map_once(
    st: &PcpState,
    external_port: u16,
    lifetime: u32,
    budget: Duration,
) -> Result<proto::PcpMap, ModeError> {
    let request = proto::build_map(&map_params(st, external_port, lifetime));
    exchange(st.server, &request, budget, |b| {
        proto::parse_map(b, &st.nonce)
    })
}

/// Delete (RFC 6887 §15: lifetime 0, same nonce); `false` when the server
/// answers NOT_AUTHORIZED, i.e. it no longer ties the mapping to our nonce.
fn delete_once(st: &PcpState, budget: Duration) -> Result<bool, ModeError> {
    let request = proto::build_map(&map_params(st, 0, 0));
    exchange(st.server, &request, budget, |b| {
        match proto::parse_map(b, &st.nonce) {
            Err(PcpError::Result(PcpResult::NotAuthorized, _)) => Ok(false),
            other => other.map(|_| true),
        }
    })
}

/// Renew an IPv6 mapping by deleting it and mapping it again.
///
/// miniupnpd 2.3.1 loses an IPv6 mapping's nonce when it is re-MAPped. In
/// the lab: MAP v6, MAP again with the same nonce (success), then delete
/// with that nonce gives NOT_AUTHORIZED (2) and leaves the pinhole until it
/// expires. Its pinhole update rewrites the firewall rule's label without
/// the description that holds the nonce, and a later delete compares
/// against it. A fresh MAP writes the nonce again, so delete-then-MAP keeps
/// a pinhole we can remove (RFC 6887 renews by repeating the MAP; a delete
/// and a new MAP is as valid, one exchange more). The pinhole is
/// absent between the two exchanges (milliseconds): established flows go on
/// where the firewall passes established traffic first (as usual and as in
/// the lab); a new inbound connection in that instant has to retry.
fn renew_v6(st: &PcpState, lifetime: u32, budget: Duration) -> Result<proto::PcpMap, ModeError> {
    if !delete_once(st, budget)? {
        return Err(ModeError::MappingLost(format!(
            "PCP server {} no longer ties this mapping to our nonce (NOT_AUTHORIZED): \
             another client holds or renewed it",
            st.server
        )));
    }
    map_once(st, st.external_port, lifetime, budget)
}

/// The mapping the server granted, for `transport` to `internal`.
fn mapping_from(
    transport: Transport,
    internal: IpSocketAddress,
    st: &PcpState,
    m: &proto::PcpMap,
) -> Result<Mapping, ModeError> {
    if m.external_port == 0 || m.external_ip.is_unspecified() {
        return Err(ModeError::Protocol(
            "PCP server assigned port 0 or no address".into(),
        ));
    }
    let next = PcpState {
        epoch: m.header.epoch,
        seen: unix_seconds(),
        external_port: m.external_port,
        ..*st
    };
    Ok(Mapping {
        transport,
        internal,
        external: from_socket(SocketAddr::new(m.external_ip, m.external_port)),
        lifetime: m.header.lifetime,
        state: next.encode(),
    })
}

struct Pcp;

impl Mode for Pcp {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "pcp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary:
                "PCP (RFC 6887) MAP on the default gateway, incl. THIRD_PARTY and IPv6 pinholes"
                    .into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        let server = server()?;
        let client = client_address(server)?;
        let budget = Duration::from_millis(config_ms("probe_timeout_ms", DEFAULT_PROBE_TIMEOUT_MS));
        let h = exchange(server, &proto::build_announce(client), budget, |b| {
            proto::parse_header(b, proto::PCP_OP_ANNOUNCE)
        })?;
        let st = PcpState {
            server,
            client,
            nonce: [0; 12],
            epoch: h.epoch,
            seen: unix_seconds(),
            protocol: 0,
            internal_port: 0,
            external_port: 0,
            third_party: None,
        };
        Ok(ProbeReport {
            gateway: Some(from_ip(server)),
            external_address: None,
            external_class: None,
            detail: format!(
                "PCP server {server} answered ANNOUNCE (epoch {}); we are {client}",
                h.epoch
            ),
            state: st.encode(),
        })
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        let internal = to_socket(&request.internal);
        let internal_ip = internal.ip().to_canonical();
        let v6 = internal_ip.is_ipv6();
        let budget = Duration::from_millis(config_ms("timeout_ms", DEFAULT_TIMEOUT_MS));
        // A probe of the other family's server is no help for this mapping.
        let probed = PcpState::decode(&request.probe_state).filter(|s| s.server.is_ipv6() == v6);
        let (server, client) = match probed {
            Some(s) => (s.server, s.client),
            None => {
                let server = server_for(v6)?;
                (server, client_address(server)?)
            }
        };
        let third_party =
            (!internal_ip.is_unspecified() && internal_ip != client).then_some(internal_ip);
        let nonce: [u8; 12] = host::random_bytes(12)
            .try_into()
            .map_err(|_| ModeError::Unavailable("no randomness for a PCP nonce".into()))?;
        let st = PcpState {
            server,
            client,
            nonce,
            epoch: 0,
            seen: 0,
            protocol: protocol(request.transport),
            internal_port: internal.port(),
            external_port: 0,
            third_party,
        };
        let wanted = request.external_port.unwrap_or(internal.port());
        let m = map_once(&st, wanted, request.lifetime, budget)?;
        let class = classify(m.external_ip);
        if class != AddressClass::Global {
            // Behind IPv6 there is no NAT to blame: the address is the host's.
            let why = if v6 {
                "not globally routable"
            } else {
                "non-routable gateway (double NAT or CGNAT)"
            };
            host::warn(&format!(
                "PCP external address {} is {}: {why}",
                m.external_ip,
                class_name(class)
            ));
        }
        mapping_from(request.transport, request.internal, &st, &m)
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        let st = PcpState::decode(&current.state)
            .ok_or_else(|| ModeError::InvalidRequest("mapping state is not a PCP state".into()))?;
        let budget = Duration::from_millis(config_ms("timeout_ms", DEFAULT_TIMEOUT_MS));
        // ANNOUNCE first: after a server reset the broker must hear
        // "mapping lost", not get a silently re-created mapping.
        let h = exchange(st.server, &proto::build_announce(st.client), budget, |b| {
            proto::parse_header(b, proto::PCP_OP_ANNOUNCE)
        })?;
        if proto::epoch_reset(st.epoch, st.seen, h.epoch, unix_seconds()) {
            return Err(ModeError::MappingLost(format!(
                "PCP server {} reset its mappings (epoch {} -> {})",
                st.server, st.epoch, h.epoch
            )));
        }
        let m = if st.client.is_ipv6() {
            renew_v6(&st, lifetime, budget)?
        } else {
            map_once(&st, st.external_port, lifetime, budget)?
        };
        let previous = to_socket(&current.external);
        if m.external_ip != previous.ip() {
            return Err(ModeError::MappingLost(format!(
                "external address changed from {} to {}",
                previous.ip(),
                m.external_ip
            )));
        }
        mapping_from(current.transport, current.internal, &st, &m)
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        let st = PcpState::decode(&current.state)
            .ok_or_else(|| ModeError::InvalidRequest("mapping state is not a PCP state".into()))?;
        let budget = Duration::from_millis(config_ms("timeout_ms", DEFAULT_TIMEOUT_MS));
        // RFC 6887 §15: lifetime 0 with the same nonce deletes.
        if delete_once(&st, budget)? {
            return Ok(());
        }
        Err(ModeError::Denied(format!(
            "PCP server {} refuses the delete (NOT_AUTHORIZED): it no longer ties the mapping \
             to our nonce (another client holds it or renewed it; miniupnpd 2.3.1 forgets an \
             IPv6 mapping's nonce when it is re-MAPped)",
            st.server
        )))
    }
}

p2pbroker_mode_sdk::export_mode!(Pcp);
