//! A MOD that maps ports with NAT-PMP (RFC 6886): what `p2pb mode new`
//! writes, small enough to read in one go and complete enough to map a
//! port on a real gateway.
//!
//! Three layers, so nearly everything is tested on the host:
//! - `natpmp`: the messages, pure functions over bytes;
//! - `probe_at`, `map_at`, `renew_at`, `unmap_at`: one conversation each,
//!   over any [`Datagrams`] (a real socket here, the SDK's `FakeGateway`
//!   in `tests.rs`);
//! - the [`Mode`] implementation at the end: finds the gateway, opens the
//!   socket, calls the above. Only this part needs the broker.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::net::{self, Datagrams, Reply, UdpSocket};
use p2pbroker_mode_sdk::{
    MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport, Transport, classify, host,
};

pub mod natpmp;
#[cfg(test)]
mod tests;

use natpmp::Refusal;

/// This MOD's name: what policies call it. `[package.metadata.p2pbroker]
/// name` in Cargo.toml must say the same.
const NAME: &str = "template";

/// The NAT-PMP server port on the gateway (the grant in Cargo.toml).
const PORT: u16 = 5351;

/// The longest one conversation may take.
const BUDGET: Duration = Duration::from_secs(4);

/// When to send again: after 250 ms, doubling (RFC 6886 §3.1), four tries.
fn schedule(attempt: u32) -> Option<Duration> {
    (attempt < 4).then(|| Duration::from_millis(250 << attempt))
}

/// What a probe learns and a mapping keeps (the `state` blobs): the
/// gateway and its external address, 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// The gateway that answered.
    pub gateway: Ipv4Addr,
    /// Its external address.
    pub external: Ipv4Addr,
}

impl State {
    /// The blob.
    pub fn encode(&self) -> Vec<u8> {
        [self.gateway.octets(), self.external.octets()].concat()
    }

    /// Read a blob; `None` if it is not one of ours.
    pub fn decode(b: &[u8]) -> Option<State> {
        let b: [u8; 8] = b.try_into().ok()?;
        Some(State {
            gateway: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            external: Ipv4Addr::new(b[4], b[5], b[6], b[7]),
        })
    }
}

/// A gateway's refusal as the broker's error kinds.
fn refused(code: u16) -> ModeError {
    let why = format!(
        "the gateway refused: {} (result {code})",
        natpmp::result_text(code)
    );
    match code {
        2 => ModeError::Denied(why),
        1 | 5 => ModeError::Unsupported(why),
        _ => ModeError::Unavailable(why),
    }
}

/// Send `request` to the gateway and wait for the answer `parse` reads.
fn ask<T>(
    io: &mut impl Datagrams,
    gateway: Ipv4Addr,
    request: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, Refusal>,
) -> Result<T, ModeError> {
    let to = SocketAddr::from((gateway, PORT));
    net::exchange_on(io, to, request, schedule, BUDGET, |b| match parse(b) {
        Ok(v) => Reply::Accept(v),
        Err(Refusal::NotOurs) => Reply::Ignore,
        Err(Refusal::Result(code)) => Reply::Fail(refused(code)),
    })
}

/// NAT-PMP's opcode for a transport.
fn opcode(t: Transport) -> u8 {
    match t {
        Transport::Udp => 1,
        Transport::Tcp => 2,
    }
}

/// Ask `gateway` for its external address.
pub fn probe_at(io: &mut impl Datagrams, gateway: Ipv4Addr) -> Result<ProbeReport, ModeError> {
    let external = ask(
        io,
        gateway,
        &natpmp::external_request(),
        natpmp::parse_external,
    )?;
    Ok(ProbeReport {
        gateway: Some(from_ip(IpAddr::V4(gateway))),
        external_address: Some(from_ip(IpAddr::V4(external))),
        // Anything but global is a gateway behind another NAT: say so.
        external_class: Some(classify(IpAddr::V4(external))),
        detail: format!("NAT-PMP gateway {gateway}, external address {external}"),
        state: State { gateway, external }.encode(),
    })
}

/// Map `request` on the gateway of `known` (the probe's state) or, with no
/// state, on `gateway`, asking it for its external address first.
pub fn map_at(
    io: &mut impl Datagrams,
    gateway: Ipv4Addr,
    known: Option<State>,
    request: &MapRequest,
) -> Result<Mapping, ModeError> {
    let internal = to_socket(&request.internal);
    if !internal.is_ipv4() {
        return Err(ModeError::Unsupported("NAT-PMP maps IPv4 only".into()));
    }
    let st = match known {
        Some(st) => st,
        None => State {
            gateway,
            external: ask(
                io,
                gateway,
                &natpmp::external_request(),
                natpmp::parse_external,
            )?,
        },
    };
    if st.external.is_unspecified() {
        return Err(ModeError::Unavailable(
            "the gateway has no external address yet".into(),
        ));
    }
    let op = opcode(request.transport);
    let wanted = request.external_port.unwrap_or(internal.port());
    let req = natpmp::map_request(op, internal.port(), wanted, request.lifetime);
    let g = ask(io, st.gateway, &req, |b| natpmp::parse_map(b, op))?;
    if g.internal != internal.port() || g.external == 0 || g.lifetime == 0 {
        return Err(ModeError::Protocol(format!(
            "the gateway answered for internal port {}, external {}, lifetime {}",
            g.internal, g.external, g.lifetime
        )));
    }
    Ok(Mapping {
        transport: request.transport,
        internal: request.internal,
        external: from_socket(SocketAddr::from((st.external, g.external))),
        lifetime: g.lifetime,
        state: st.encode(),
    })
}

/// Ask again for `current`, for `lifetime` seconds.
pub fn renew_at(
    io: &mut impl Datagrams,
    current: &Mapping,
    lifetime: u32,
) -> Result<Mapping, ModeError> {
    let st = State::decode(&current.state)
        .ok_or_else(|| ModeError::InvalidRequest("the mapping's state is not ours".into()))?;
    let request = MapRequest {
        transport: current.transport,
        internal: current.internal,
        external_port: Some(to_socket(&current.external).port()),
        lifetime,
        permanent_allowed: false,
        probe_state: Vec::new(),
    };
    map_at(io, st.gateway, Some(st), &request)
}

/// Remove `current` (lifetime 0, RFC 6886 §3.4).
pub fn unmap_at(io: &mut impl Datagrams, current: &Mapping) -> Result<(), ModeError> {
    let st = State::decode(&current.state)
        .ok_or_else(|| ModeError::InvalidRequest("the mapping's state is not ours".into()))?;
    let op = opcode(current.transport);
    let req = natpmp::map_request(op, to_socket(&current.internal).port(), 0, 0);
    ask(io, st.gateway, &req, |b| natpmp::parse_map(b, op)).map(|_| ())
}

/// The first IPv4 default gateway.
fn gateway() -> Result<Ipv4Addr, ModeError> {
    host::default_gateways()
        .into_iter()
        .find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| ModeError::Unavailable("no IPv4 default gateway".into()))
}

/// A socket on an ephemeral port.
fn socket() -> Result<UdpSocket, ModeError> {
    Ok(UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?)
}

struct ThisMode;

impl Mode for ThisMode {
    fn info() -> ModeInfo {
        ModeInfo {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Maps ports with NAT-PMP (RFC 6886)".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        probe_at(&mut socket()?, gateway()?)
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        // NAT-PMP maps the sender: it cannot map another host.
        let ip = to_socket(&request.internal).ip();
        if !ip.is_unspecified() && !host::local_addresses().iter().any(|a| a.address == ip) {
            return Err(ModeError::Unsupported(format!(
                "NAT-PMP maps this host only, not {ip}"
            )));
        }
        let known = State::decode(&request.probe_state);
        let gw = match known {
            Some(st) => st.gateway,
            None => gateway()?,
        };
        map_at(&mut socket()?, gw, known, &request)
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        renew_at(&mut socket()?, &current, lifetime)
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        unmap_at(&mut socket()?, &current)
    }
}

p2pbroker_mode_sdk::export_mode!(ThisMode);
