//! The `static` MOD: forwards an administrator configured on the edge and
//! declared in the policy (config `forwards`, grammar in [`decl`]). It
//! touches no network: `probe` checks that the declared internal addresses
//! are this host's, `map` hands out the declared external endpoint, and
//! `unmap` removes nothing (the forward is the administrator's).

pub mod decl;

use core::net::SocketAddr;

use p2pbroker_mode_sdk::addr::{from_ip, from_socket, to_socket};
use p2pbroker_mode_sdk::classify::class_name;
use p2pbroker_mode_sdk::host;
use p2pbroker_mode_sdk::{MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport, classify};

fn forwards() -> Result<Vec<decl::Forward>, ModeError> {
    let text = host::config("forwards")
        .ok_or_else(|| ModeError::Unavailable("no forwards declared (config `forwards`)".into()))?;
    decl::parse_forwards(&text).map_err(ModeError::InvalidRequest)
}

fn is_local(addr: SocketAddr) -> bool {
    host::local_addresses()
        .iter()
        .any(|a| a.address == addr.ip())
}

struct Static;

impl Mode for Static {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "static".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Forwards an administrator declared in the policy".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        let all = forwards()?;
        let (ours, foreign): (Vec<&decl::Forward>, Vec<&decl::Forward>) =
            all.iter().partition(|f| is_local(f.internal));
        let first = ours.first().ok_or_else(|| {
            ModeError::Unavailable(format!(
                "none of the {} declared forward(s) points at an address of this host",
                all.len()
            ))
        })?;
        let class = classify(first.external.ip());
        let mut detail = format!("{} forward(s) for this host", ours.len());
        if !foreign.is_empty() {
            let list: Vec<String> = foreign.iter().map(|f| f.internal.to_string()).collect();
            detail.push_str(&format!("; not this host's: {}", list.join(", ")));
        }
        detail.truncate(1000);
        Ok(ProbeReport {
            gateway: None,
            external_address: Some(from_ip(first.external.ip())),
            external_class: Some(class),
            detail: format!(
                "{detail}; external {} is {}",
                first.external.ip(),
                class_name(class)
            ),
            state: Vec::new(),
        })
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        let internal = to_socket(&request.internal);
        let f = decl::find(
            &forwards()?,
            request.transport,
            internal,
            request.external_port,
        )
        .ok_or_else(|| {
            ModeError::Unavailable(format!(
                "no declared forward for {:?} {internal}",
                request.transport
            ))
        })?;
        if !is_local(f.internal) {
            return Err(ModeError::Unavailable(format!(
                "declared internal {} is not an address of this host",
                f.internal
            )));
        }
        Ok(Mapping {
            transport: request.transport,
            internal: from_socket(f.internal),
            external: from_socket(f.external),
            lifetime: request.lifetime,
            state: Vec::new(),
        })
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        let internal = to_socket(&current.internal);
        match decl::find(&forwards()?, current.transport, internal, None) {
            Some(f) if f.external == to_socket(&current.external) => Ok(Mapping {
                lifetime,
                ..current
            }),
            _ => Err(ModeError::MappingLost(format!(
                "the forward for {internal} is no longer declared"
            ))),
        }
    }

    fn unmap(_current: Mapping) -> Result<(), ModeError> {
        Ok(())
    }
}

p2pbroker_mode_sdk::export_mode!(Static);
