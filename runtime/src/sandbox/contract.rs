//! Checks on what goes into a MOD and what comes out: the size limits and
//! invariants the WIT documents, and that a mapping answers the request it
//! was given. A guest that breaks them gets `CallError::InvalidResult` or
//! `CallError::ContractBreach`; its values never reach the journal, a client
//! or a log unchecked. Text a MOD returns (probe details, error reasons, log
//! lines) is escaped here, once, so nothing downstream can be fooled by a
//! newline or a terminal escape ([`crate::text`]).

use super::error::mode_error_message;
use super::wit::{MapRequest, Mapping, ModeError, ModeInfo, ProbeReport};

/// Longest `mode-info.name` / `version`.
pub const NAME_MAX: usize = 32;
/// Longest `mode-info.summary`.
pub const SUMMARY_MAX: usize = 200;
/// Longest human-readable text (probe detail, error reasons).
pub const TEXT_MAX: usize = 1024;
/// Largest opaque state blob.
pub const STATE_MAX: usize = 64 * 1024;

fn check_len(field: &str, len: usize, max: usize) -> Result<(), String> {
    if len > max {
        return Err(format!(
            "`{field}` is {len} bytes, the contract allows {max}"
        ));
    }
    Ok(())
}

/// A valid MOD name: `[a-z0-9-]`, 1 to 32 bytes, not starting with `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Check `info`'s result.
pub fn info(i: &ModeInfo) -> Result<(), String> {
    if !valid_name(&i.name) {
        check_len("name", i.name.len(), NAME_MAX)?;
        return Err(format!("`name` {:?} is not [a-z0-9-]{{1,32}}", i.name));
    }
    check_len("version", i.version.len(), NAME_MAX)?;
    check_len("summary", i.summary.len(), SUMMARY_MAX)
}

/// Check `probe`'s result.
pub fn probe(p: &ProbeReport) -> Result<(), String> {
    check_len("detail", p.detail.len(), TEXT_MAX)?;
    check_len("state", p.state.len(), STATE_MAX)
}

/// A NAT report: its text within the contract's size.
pub fn nat(n: &super::wit::discovery::NatReport) -> Result<(), String> {
    check_len("detail", n.detail.len(), TEXT_MAX)
}

/// The longest lifetime a gateway may grant beyond what was asked: a day,
/// the most NAT-PMP/PCP servers and miniupnpd grant. Anything longer is
/// absurd; a broker that believed it would stop renewing a mapping it does
/// not really hold.
pub const LIFETIME_CEILING: u32 = 86_400;

fn same_endpoint(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// Whether the mapping's internal endpoint `got` answers `asked`: the same
/// endpoint, or — when the request left the address unspecified for the MOD
/// or the gateway to fill in (`p2pb mode run`, a static forward; NAT-PMP and
/// PCP map the sender) — the same port and family. The daemon always asks
/// for a concrete address.
fn answers_internal(got: std::net::SocketAddr, asked: std::net::SocketAddr) -> bool {
    if asked.ip().is_unspecified() {
        let (g, a) = (got.ip().to_canonical(), asked.ip().to_canonical());
        return got.port() == asked.port() && g.is_ipv4() == a.is_ipv4();
    }
    same_endpoint(got, asked)
}

fn mapping_shape(m: &Mapping) -> Result<(), String> {
    check_len("state", m.state.len(), STATE_MAX)?;
    let external: std::net::SocketAddr = m.external.into();
    if external.port() == 0 {
        // Port 0 can mean "every port" to some gateways (TS-2023-006).
        return Err("external port 0".into());
    }
    if external.ip().is_unspecified() {
        return Err("external address is unspecified".into());
    }
    Ok(())
}

fn lifetime_bound(granted: u32, asked: u32, permanent_ok: bool) -> Result<(), String> {
    if granted == 0 && !permanent_ok {
        return Err("a permanent mapping (lifetime 0), which was not allowed".into());
    }
    if granted > asked.max(LIFETIME_CEILING) {
        return Err(format!(
            "lifetime {granted} s for {asked} s asked (at most {} s is believable)",
            asked.max(LIFETIME_CEILING)
        ));
    }
    Ok(())
}

/// Check what `map` returned against its request: the same transport and
/// internal endpoint, a believable lifetime. `Err` is a contract breach.
pub fn map_result(m: &Mapping, req: &MapRequest) -> Result<(), String> {
    mapping_shape(m)?;
    if m.transport != req.transport {
        return Err("the mapping's transport differs from the request's".into());
    }
    let (got, asked) = (m.internal.into(), req.internal.into());
    if !answers_internal(got, asked) {
        return Err(format!(
            "the mapping forwards to {got}, the request was for {asked}"
        ));
    }
    lifetime_bound(m.lifetime, req.lifetime, req.permanent_allowed)
}

/// Check what `renew` returned against the mapping it renewed: the same
/// transport and internal endpoint (a renewal may not rewrite where the
/// port forwards to), a believable lifetime. The external endpoint may
/// change (a new public address). `Err` is a contract breach.
pub fn renew_result(m: &Mapping, current: &Mapping, asked: u32) -> Result<(), String> {
    mapping_shape(m)?;
    if m.transport != current.transport {
        return Err("the renewal changed the mapping's transport".into());
    }
    let (got, had) = (m.internal.into(), current.internal.into());
    if !same_endpoint(got, had) {
        return Err(format!("the renewal moved the mapping from {had} to {got}"));
    }
    lifetime_bound(m.lifetime, asked, current.lifetime == 0)
}

/// Check a request before it reaches a MOD.
pub fn request(r: &MapRequest) -> Result<(), String> {
    let internal: std::net::SocketAddr = r.internal.into();
    if internal.port() == 0 {
        return Err("internal port 0".into());
    }
    if r.external_port == Some(0) {
        return Err("external port 0 (use none for any port)".into());
    }
    if r.lifetime == 0 {
        return Err("lifetime 0".into());
    }
    check_len("probe-state", r.probe_state.len(), STATE_MAX)
}

/// Check a renewal before it reaches a MOD: lifetime 0 would delete the
/// mapping on NAT-PMP/PCP gateways; deletion is `unmap`'s job.
pub fn renew_lifetime(lifetime: u32) -> Result<(), String> {
    if lifetime == 0 {
        return Err("renew with lifetime 0 (use unmap to remove a mapping)".into());
    }
    Ok(())
}

/// Check a MOD's own error value.
pub fn error(e: &ModeError) -> Result<(), String> {
    check_len("error reason", mode_error_message(e).len(), TEXT_MAX)
}

/// Text from a MOD made safe to show and log (see [`crate::text`]).
pub fn clean_text(s: String) -> String {
    match crate::text::escape(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(e) => e,
    }
}

/// A MOD's error with its reason made safe to show and log.
pub fn clean_error(e: ModeError) -> ModeError {
    match e {
        ModeError::Unavailable(m) => ModeError::Unavailable(clean_text(m)),
        ModeError::Denied(m) => ModeError::Denied(clean_text(m)),
        ModeError::Conflict(m) => ModeError::Conflict(clean_text(m)),
        ModeError::Timeout(m) => ModeError::Timeout(clean_text(m)),
        ModeError::Protocol(m) => ModeError::Protocol(clean_text(m)),
        ModeError::MappingLost(m) => ModeError::MappingLost(clean_text(m)),
        ModeError::Unsupported(m) => ModeError::Unsupported(clean_text(m)),
        ModeError::InvalidRequest(m) => ModeError::InvalidRequest(clean_text(m)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sandbox::wit::Transport;

    /// A UDP mapping of 10.0.0.2:4000 to `external` (other modules' tests).
    pub(crate) fn mapping_to(external: &str) -> Mapping {
        Mapping {
            transport: Transport::Udp,
            internal: "10.0.0.2:4000"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
            external: external.parse::<std::net::SocketAddr>().unwrap().into(),
            lifetime: 60,
            state: vec![],
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("nat-pmp"));
        for bad in ["", "-x", "NatPmp", "a b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn oversized_fields_are_named() {
        let i = ModeInfo {
            name: "ok".into(),
            version: "1".into(),
            summary: "s".repeat(SUMMARY_MAX + 1),
        };
        assert!(info(&i).unwrap_err().contains("`summary`"));
        let p = ProbeReport {
            gateway: None,
            external_address: None,
            external_class: None,
            detail: String::new(),
            state: vec![0; STATE_MAX + 1],
        };
        assert!(probe(&p).unwrap_err().contains("`state`"));
    }

    fn request(internal: &str, lifetime: u32, permanent: bool) -> MapRequest {
        MapRequest {
            transport: Transport::Udp,
            internal: internal.parse::<std::net::SocketAddr>().unwrap().into(),
            external_port: None,
            lifetime,
            permanent_allowed: permanent,
            probe_state: vec![],
        }
    }

    #[test]
    fn a_mapping_must_answer_its_request() {
        let req = request("10.0.0.2:4000", 60, false);
        assert!(map_result(&mapping_to("198.51.100.1:4000"), &req).is_ok());
        assert!(
            map_result(&mapping_to("198.51.100.1:0"), &req)
                .unwrap_err()
                .contains("port 0")
        );
        assert!(map_result(&mapping_to("0.0.0.0:4000"), &req).is_err());
        let mut m = mapping_to("198.51.100.1:4000");
        m.transport = Transport::Tcp;
        assert!(map_result(&m, &req).unwrap_err().contains("transport"));
        // A forged internal endpoint: another port, another host.
        for forged in ["10.0.0.2:5432", "10.0.0.9:4000"] {
            let mut m = mapping_to("198.51.100.1:4000");
            m.internal = forged.parse::<std::net::SocketAddr>().unwrap().into();
            let e = map_result(&m, &req).unwrap_err();
            assert!(e.contains(forged), "{e}");
        }
        // An unspecified address is the MOD's to fill in, same port and family.
        let any = request("0.0.0.0:4000", 60, false);
        assert!(map_result(&mapping_to("198.51.100.1:4000"), &any).is_ok());
        let mut m = mapping_to("198.51.100.1:4000");
        m.internal = "10.0.0.2:4001"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        assert!(map_result(&m, &any).is_err());
        m.internal = "[2001:db8::2]:4000"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        assert!(map_result(&m, &any).is_err());
        // The same endpoint written as an IPv4-mapped IPv6 address is fine.
        let mut m = mapping_to("198.51.100.1:4000");
        m.internal = "[::ffff:10.0.0.2]:4000"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        assert!(map_result(&m, &req).is_ok());
    }

    #[test]
    fn lifetimes_must_be_believable() {
        let mut m = mapping_to("198.51.100.1:4000");
        m.lifetime = 0;
        assert!(map_result(&m, &request("10.0.0.2:4000", 60, false)).is_err());
        assert!(map_result(&m, &request("10.0.0.2:4000", 60, true)).is_ok());
        // A gateway may clamp up to its minimum, not grant a year.
        m.lifetime = 120;
        assert!(map_result(&m, &request("10.0.0.2:4000", 60, false)).is_ok());
        m.lifetime = 365 * 86_400;
        assert!(
            map_result(&m, &request("10.0.0.2:4000", 3600, false))
                .unwrap_err()
                .contains("lifetime")
        );
    }

    #[test]
    fn a_renewal_may_not_move_the_mapping_inside() {
        let current = mapping_to("198.51.100.1:4000");
        let mut m = current.clone();
        m.external = "198.51.100.9:4001"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        assert!(
            renew_result(&m, &current, 60).is_ok(),
            "a new public address"
        );
        m.internal = "10.0.0.2:22"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into();
        assert!(
            renew_result(&m, &current, 60)
                .unwrap_err()
                .contains("moved")
        );
        let mut permanent = current.clone();
        permanent.lifetime = 0;
        assert!(renew_result(&permanent, &current, 60).is_err());
        assert!(renew_result(&permanent, &permanent, 60).is_ok());
    }

    #[test]
    fn text_from_a_mod_is_escaped() {
        assert_eq!(clean_text("fine".into()), "fine");
        let e = clean_error(ModeError::Protocol("bad\n\u{1b}[2J".into()));
        let ModeError::Protocol(m) = e else { panic!() };
        assert!(!m.contains('\u{1b}') && !m.contains('\n'), "{m}");
    }
}
