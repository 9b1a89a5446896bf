//! The `stun` MOD: NAT behaviour discovery (RFC 5780) against the
//! policy's STUN servers.
//!
//! Wire format in [`codec`], the procedure in [`discover`], both pure; this
//! file only pumps datagrams. `probe` asks one Binding request (the
//! reflexive address, within the probe budget); `discover` (the contract's
//! 0.1.1 `discovery` export) runs the whole procedure. It maps nothing:
//! `map` and `renew` are `unsupported`.
//!
//! Config: `stun_servers` (`IP:PORT` list, comma-separated; from the
//! policy's `[services] stun`; the first that answers is used),
//! `rto_ms` (first retransmission; default 100, doubling), `test_ms` (wait
//! per test; default 500: a filtering test that stays silent costs this),
//! `probe_timeout_ms` (default 250), `hairpin` (`false` skips that test).
//!
//! Grants: `udp:send,receive@stun` (every address of the policy's STUN
//! servers: list both addresses of an RFC 5780 server). The hairpinning
//! test sends to the host's own reflexive address and hears back from the
//! NAT; it runs only when the policy also grants the optional
//! `udp:send,receive@0.0.0.0/0:1-65535`, and is reported untested
//! otherwise.

pub mod codec;
pub mod discover;
mod wit;

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::addr::from_socket;
use p2pbroker_mode_sdk::classify::{class_name, classify};
use p2pbroker_mode_sdk::clock::{Deadline, now_ns};
use p2pbroker_mode_sdk::host;
use p2pbroker_mode_sdk::net::{NetError, UdpSocket};
use p2pbroker_mode_sdk::{MapRequest, Mapping, ModeError, ModeInfo, ProbeReport, clip, escape};

use codec::{Change, Refused};
use discover::{Behaviour, Discovery, Failed, Next, Outcome, Sock};
use wit::bindings::exports::p2pbroker::mode::discovery as contract;

/// Largest datagram read; STUN responses are a few dozen bytes.
const DATAGRAM_MAX: usize = 1500;

/// The servers from config, in order.
pub fn servers(text: &str) -> Result<Vec<SocketAddr>, ModeError> {
    let servers: Result<Vec<SocketAddr>, _> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                ModeError::InvalidRequest(format!(
                    "config `stun_servers`: {} is not IP:PORT",
                    escape(s, 100)
                ))
            })
        })
        .collect();
    let servers = servers?;
    if servers.is_empty() {
        return Err(ModeError::Unavailable(
            "no STUN server configured (policy [services] stun)".into(),
        ));
    }
    Ok(servers)
}

fn configured() -> Result<Vec<SocketAddr>, ModeError> {
    servers(&host::config("stun_servers").unwrap_or_default())
}

fn ms(key: &str, default: u64) -> Duration {
    Duration::from_millis(host::config_or(key, default))
}

/// Timing of one test.
#[derive(Debug, Clone, Copy)]
struct Timing {
    rto: Duration,
    wait: Duration,
}

/// Send a Binding request from `sock` to `to` and wait for its response,
/// retransmitting at `rto`, doubling, until `wait` is spent. Datagrams
/// that are not the response (late, stray, malformed) are skipped.
fn ask(sock: &UdpSocket, to: SocketAddr, change: Change, t: Timing) -> Outcome {
    let tid = tid();
    let request = codec::request(tid, change);
    let deadline = Deadline::after(t.wait);
    let mut rto = t.rto;
    let mut buf = [0u8; DATAGRAM_MAX];
    loop {
        match sock.send_to(&request, to) {
            Ok(()) => {}
            Err(NetError::Denied) => return Outcome::Denied,
            Err(e) => return Outcome::Refused(format!("cannot send to {to}: {e}")),
        }
        let resend = Deadline::after(rto).instant_ns().min(deadline.instant_ns());
        let resend = Deadline::from_ns(resend, Duration::ZERO);
        loop {
            match sock.recv_until(&mut buf, resend) {
                Ok((n, from)) => match codec::response(&buf[..n], tid) {
                    Ok(b) => return Outcome::Answer(b, from),
                    Err(Refused::Error { code, reason }) => {
                        return Outcome::Refused(format!(
                            "STUN error {code}: {}",
                            escape(&reason, 200)
                        ));
                    }
                    Err(_) => continue,
                },
                Err(NetError::Timeout) => break,
                Err(NetError::Denied) => return Outcome::Denied,
                Err(e) => return Outcome::Refused(format!("receive: {e}")),
            }
        }
        if deadline.remaining().is_none() {
            return Outcome::Silence;
        }
        rto = rto.saturating_mul(2);
    }
}

fn tid() -> [u8; 12] {
    let bytes = host::random_bytes(12);
    let mut out = [0u8; 12];
    out.copy_from_slice(&bytes[..12]);
    out
}

/// Send a request from `from` to `to` and watch `target` for it.
fn hairpin(from: &UdpSocket, target: &UdpSocket, to: SocketAddr, t: Timing) -> Option<bool> {
    let tid = tid();
    let request = codec::request(tid, Change::NONE);
    if from.send_to(&request, to).is_err() {
        return None;
    }
    let deadline = Deadline::after(t.wait);
    let mut buf = [0u8; DATAGRAM_MAX];
    loop {
        match target.recv_until(&mut buf, deadline) {
            Ok((n, _)) if codec::request_tid(&buf[..n]) == Some(tid) => return Some(true),
            Ok(_) => continue,
            Err(NetError::Timeout) => return Some(false),
            Err(_) => return None,
        }
    }
}

fn bind(server: SocketAddr) -> Result<UdpSocket, ModeError> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    UdpSocket::bind(any).map_err(ModeError::from)
}

/// The host's endpoints for a socket bound to `port`: a reflexive address
/// among them means no NAT.
fn local_endpoints(port: u16) -> Vec<SocketAddr> {
    host::local_addresses()
        .into_iter()
        .map(|a| SocketAddr::new(a.address, port))
        .collect()
}

/// Run the procedure against `server`.
fn run(server: SocketAddr, t: Timing, hairpin_test: bool) -> Result<discover::Report, Failed> {
    let sock_err = |e: ModeError| Failed::Refused(p2pbroker_mode_sdk::reason(&e).to_string());
    let mapping = bind(server).map_err(sock_err)?;
    let filtering = bind(server).map_err(sock_err)?;
    let port = mapping.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut d = Discovery::new(server, local_endpoints(port), hairpin_test);
    let mut hairpin_sock = None;
    // Bounded: the procedure has at most seven steps.
    for _ in 0..16 {
        match d.next() {
            Next::Ask { sock, to, change } => {
                let s = if sock == Sock::Filtering {
                    &filtering
                } else {
                    &mapping
                };
                d.answered(ask(s, to, change, t));
            }
            Next::Hairpin { to } => {
                if hairpin_sock.is_none() {
                    hairpin_sock = bind(server).ok();
                }
                let arrived = hairpin_sock
                    .as_ref()
                    .and_then(|h| hairpin(h, &mapping, to, t));
                d.hairpinned(arrived);
            }
            Next::Done => break,
        }
    }
    d.report().cloned()
}

fn failure(server: SocketAddr, f: &Failed) -> ModeError {
    match f {
        Failed::NoAnswer => ModeError::Timeout(format!("STUN server {server} did not answer")),
        Failed::Denied => ModeError::Denied(format!(
            "the broker's gate refused STUN server {server} (grant udp:send,receive@stun)"
        )),
        Failed::Refused(why) => ModeError::Protocol(format!("STUN server {server}: {why}")),
    }
}

/// Try each server until one answers test I.
fn with_servers<T>(mut f: impl FnMut(SocketAddr) -> Result<T, Failed>) -> Result<T, ModeError> {
    let mut last = None;
    for server in configured()? {
        match f(server) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(failure(server, &e)),
        }
    }
    Err(last.expect("at least one server"))
}

fn term(b: Behaviour) -> contract::Behaviour {
    match b {
        Behaviour::EndpointIndependent => contract::Behaviour::EndpointIndependent,
        Behaviour::AddressDependent => contract::Behaviour::AddressDependent,
        Behaviour::AddressAndPortDependent => contract::Behaviour::AddressAndPortDependent,
    }
}

fn summary(r: &discover::Report) -> String {
    let word = |b: Option<Behaviour>| b.map_or("undetermined", Behaviour::term);
    let hairpin = match r.hairpinning {
        Some(true) => "hairpinning",
        Some(false) => "no hairpinning",
        None => "hairpinning untested",
    };
    let mut s = format!(
        "STUN {}: reflexive {}{}; mapping {}, filtering {}, {hairpin}",
        r.server,
        r.reflexive,
        if r.nat { "" } else { " (no NAT)" },
        word(r.mapping),
        word(r.filtering),
    );
    for n in &r.notes {
        s.push_str("; ");
        s.push_str(n);
    }
    clip(s, p2pbroker_mode_sdk::TEXT_MAX)
}

struct Stun;

impl wit::bindings::exports::p2pbroker::mode::lifecycle::Guest for Stun {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "stun".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "NAT behaviour discovery with STUN (RFC 5780); maps nothing".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        let t = Timing {
            rto: ms("rto_ms", 100),
            wait: ms("probe_timeout_ms", 250),
        };
        let (server, b) = with_servers(|server| {
            let sock = bind(server).map_err(|e| Failed::Refused(e_text(&e)))?;
            match ask(&sock, server, Change::NONE, t) {
                Outcome::Answer(b, _) => Ok((server, b)),
                Outcome::Silence => Err(Failed::NoAnswer),
                Outcome::Denied => Err(Failed::Denied),
                Outcome::Refused(why) => Err(Failed::Refused(why)),
            }
        })?;
        let ip: IpAddr = b.mapped.ip();
        Ok(ProbeReport {
            gateway: None,
            external_address: Some(p2pbroker_mode_sdk::addr::from_ip(ip)),
            external_class: Some(classify(ip)),
            detail: format!(
                "STUN {server}: reflexive {} ({}){}",
                b.mapped,
                class_name(classify(ip)),
                if b.other.is_some() {
                    ", RFC 5780 server"
                } else {
                    ""
                }
            ),
            state: Vec::new(),
        })
    }

    fn map(_: MapRequest) -> Result<Mapping, ModeError> {
        Err(unsupported())
    }

    fn renew(_: Mapping, _: u32) -> Result<Mapping, ModeError> {
        Err(unsupported())
    }

    fn unmap(_: Mapping) -> Result<(), ModeError> {
        // It never made one; removing what is not there is success.
        Ok(())
    }
}

fn e_text(e: &ModeError) -> String {
    p2pbroker_mode_sdk::reason(e).to_string()
}

fn unsupported() -> ModeError {
    ModeError::Unsupported("the stun MOD discovers how the NAT behaves; it maps nothing".into())
}

impl contract::Guest for Stun {
    fn discover() -> Result<contract::NatReport, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        let t = Timing {
            rto: ms("rto_ms", 100),
            wait: ms("test_ms", 500),
        };
        let hairpin_test = host::config("hairpin").as_deref() != Some("false");
        let started = now_ns();
        let r = with_servers(|server| run(server, t, hairpin_test))?;
        host::debug(&format!(
            "discovery took {} ms",
            (now_ns() - started) / 1_000_000
        ));
        Ok(contract::NatReport {
            server: from_socket(r.server),
            reflexive: from_socket(r.reflexive),
            nat: r.nat,
            mapping: r.mapping.map(term),
            filtering: r.filtering.map(term),
            hairpinning: r.hairpinning,
            detail: summary(&r),
        })
    }
}

// stun-types links getrandom even though this MOD makes its own
// transaction ids.
p2pbroker_mode_sdk::getrandom_from_wasi!();

// Only a component exports (host builds link no exports).
#[cfg(target_arch = "wasm32")]
wit::bindings::export_world!(Stun with_types_in wit::bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_in_order_and_refuse_names_with_the_value_escaped() {
        let s = servers("198.51.100.1:3478, 198.51.100.3:3478,").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1], "198.51.100.3:3478".parse().unwrap());
        let Err(ModeError::InvalidRequest(why)) = servers("stun.example:3478\u{1b}[2J") else {
            panic!("names are not IP:PORT")
        };
        assert!(why.contains("stun.example:3478\\u{1b}[2J"), "{why}");
        assert!(matches!(servers(" , "), Err(ModeError::Unavailable(_))));
    }

    #[test]
    fn the_summary_names_each_verdict_and_every_note() {
        let r = discover::Report {
            server: "198.51.100.1:3478".parse().unwrap(),
            reflexive: "198.51.100.2:40000".parse().unwrap(),
            nat: true,
            mapping: Some(Behaviour::EndpointIndependent),
            filtering: None,
            hairpinning: None,
            notes: vec!["filtering test II: refused".into()],
        };
        let s = summary(&r);
        assert!(
            s.contains("mapping endpoint-independent, filtering undetermined"),
            "{s}"
        );
        assert!(
            s.ends_with("hairpinning untested; filtering test II: refused"),
            "{s}"
        );
    }
}
