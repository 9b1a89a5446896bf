//! IPv6 requests: pinholes through an IGD 2's WANIPv6FirewallControl:1
//! service. This is the I/O side; the codec is [`pinhole`](crate::pinhole).
//!
//! The service is called over IPv6, at the LOCATION an IGD gives in answer
//! to SSDP on `[ff02::c]:1900` (or the config `location` when that is an
//! IPv6 URL): gateways open a pinhole only for the address the request
//! comes from. miniupnpd 2.3.1 answers 606 to the very same AddPinhole
//! sent over IPv4 (seen in the lab), so control over the IPv4 session the
//! port mappings use cannot work.

use core::net::{IpAddr, Ipv6Addr, SocketAddrV6};

use p2pbroker_mode_sdk::addr::from_socket;
use p2pbroker_mode_sdk::clock::Deadline;
use p2pbroker_mode_sdk::host;
use p2pbroker_mode_sdk::{MapRequest, Mapping, ModeError, Transport};

use crate::igd::{Gateway, at, combine, message, to_mode_error};
use crate::pinhole::{self, PinholeAction, PinholeArgs, PinholeState};
use crate::url::HttpUrl;
use crate::{wire, xml};

fn protocol(t: Transport) -> u8 {
    match t {
        Transport::Tcp => 6,
        Transport::Udp => 17,
    }
}

fn firewall(control: &HttpUrl) -> Gateway {
    Gateway {
        service_type: xml::FIREWALL6_SERVICE.to_string(),
        control: control.clone(),
    }
}

/// Find an IGD's WANIPv6FirewallControl:1 service reachable over IPv6.
fn find_firewall(deadline: Deadline) -> Result<Gateway, ModeError> {
    let locations = match wire::configured_location() {
        Some(Ok(url)) if url.addr.is_ipv6() => vec![url],
        Some(Err(e)) => return Err(e),
        _ => wire::discover_v6(deadline)?,
    };
    let (mut without, mut failed) = (Vec::new(), Vec::new());
    for url in locations.iter().take(wire::MAX_GATEWAYS) {
        match wire::describe_firewall6(url, deadline) {
            Ok(Some(gw)) => return Ok(gw),
            Ok(None) => without.push(url.short()),
            Err(e) => failed.push(at(&url.short(), &to_mode_error(e))),
        }
    }
    if failed.is_empty() {
        return Err(ModeError::Unsupported(format!(
            "IGD {} offers no {} service: it opens no IPv6 pinholes",
            without.join(", "),
            xml::FIREWALL6_SERVICE
        )));
    }
    Err(combine("no usable IPv6 IGD", &failed))
}

/// Open a pinhole for `internal` (the unspecified address: the host's own
/// IPv6 address, as the gateway sees it on the control connection).
pub fn map(
    request: &MapRequest,
    internal: SocketAddrV6,
    deadline: Deadline,
) -> Result<Mapping, ModeError> {
    if internal.port() == 0 {
        return Err(ModeError::InvalidRequest("internal port 0".into()));
    }
    if let Some(p) = request.external_port.filter(|p| *p != internal.port()) {
        return Err(ModeError::Unsupported(format!(
            "an IPv6 pinhole opens the internal port itself; external port {p} cannot be granted"
        )));
    }
    let fw = find_firewall(deadline)?;
    let wanted = Some(*internal.ip()).filter(|ip| !ip.is_unspecified());
    let args_for = |local: IpAddr| PinholeArgs {
        protocol: protocol(request.transport),
        internal_client: wanted.unwrap_or(match local {
            IpAddr::V6(v6) => v6,
            IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        }),
        internal_port: internal.port(),
        lease: pinhole::lease(request.lifetime),
    };
    let (out, local) = wire::soap_from(&fw, "AddPinhole", |l| args_for(l).add_args(), deadline)
        .map_err(|e| pinhole::to_mode_error(PinholeAction::Add, e))?;
    let uid = pinhole::parse_unique_id(&out).map_err(ModeError::Protocol)?;
    let args = args_for(local);
    let st = PinholeState {
        control: fw.control,
        args,
        uid,
    };
    // Not a translation: the outside reaches the internal endpoint itself.
    let endpoint =
        from_socket(SocketAddrV6::new(args.internal_client, args.internal_port, 0, 0).into());
    Ok(Mapping {
        transport: request.transport,
        internal: endpoint,
        external: endpoint,
        lifetime: args.lease,
        state: st.encode(),
    })
}

/// Extend a pinhole: UpdatePinhole, then make sure its UniqueID still
/// names our pinhole.
pub fn renew(
    current: Mapping,
    st: PinholeState,
    lifetime: u32,
    deadline: Deadline,
) -> Result<Mapping, ModeError> {
    wire::on_default_gateway(&st.control).map_err(ModeError::MappingLost)?;
    let fw = firewall(&st.control);
    let lease = pinhole::lease(lifetime);
    wire::soap(
        &fw,
        "UpdatePinhole",
        &pinhole::update_args(st.uid, lease),
        deadline,
    )
    .map_err(|e| pinhole::to_mode_error(PinholeAction::Update, e))?;
    // After a gateway restart UniqueIDs start again from 1 (miniupnpd), so
    // ours may now name another pinhole, which the update just extended.
    // AddPinhole with the same arguments must extend the existing pinhole
    // and return its UniqueID (the spec's rule for an identical request),
    // so it tells whether ours still exists.
    let args = PinholeArgs { lease, ..st.args };
    let out = wire::soap(&fw, "AddPinhole", &args.add_args(), deadline)
        .map_err(|e| pinhole::to_mode_error(PinholeAction::Add, e))?;
    let uid = pinhole::parse_unique_id(&out).map_err(ModeError::Protocol)?;
    if uid != st.uid {
        // Ours was gone and that call made a new one: remove it, so the
        // broker hears of the loss rather than getting a silent re-creation.
        if let Err(e) = wire::soap(&fw, "DeletePinhole", &pinhole::delete_args(uid), deadline) {
            host::warn(&format!(
                "could not remove pinhole {uid} re-created while checking: {}",
                message(&e)
            ));
        }
        return Err(ModeError::MappingLost(format!(
            "the gateway no longer has pinhole {} (its UniqueID now names another pinhole)",
            st.uid
        )));
    }
    let next = PinholeState { args, ..st };
    Ok(Mapping {
        lifetime: lease,
        state: next.encode(),
        ..current
    })
}

/// Close a pinhole; one already gone is success.
pub fn unmap(st: PinholeState, deadline: Deadline) -> Result<(), ModeError> {
    wire::on_default_gateway(&st.control).map_err(ModeError::Denied)?;
    match wire::soap(
        &firewall(&st.control),
        "DeletePinhole",
        &pinhole::delete_args(st.uid),
        deadline,
    ) {
        Ok(_) => Ok(()),
        Err(e) if pinhole::is_gone(&e) => Ok(()),
        Err(e) => Err(pinhole::to_mode_error(PinholeAction::Delete, e)),
    }
}
