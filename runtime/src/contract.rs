//! Checks on what a MOD returns: the size limits and invariants the WIT
//! documents. A guest that breaks them gets `CallError::InvalidResult`; its
//! values never reach the journal, a client or a log unchecked.

use crate::bindings::{MapRequest, Mapping, ModeError, ModeInfo, ProbeReport};
use crate::error::mode_error_message;

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

/// Check a mapping returned by `map` or `renew` against what was asked.
pub fn mapping(m: &Mapping, transport_asked: crate::bindings::Transport) -> Result<(), String> {
    check_len("state", m.state.len(), STATE_MAX)?;
    if m.transport != transport_asked {
        return Err("mapping transport differs from the request".into());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Transport;

    fn mapping_to(external: &str) -> Mapping {
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

    #[test]
    fn mapping_invariants() {
        assert!(mapping(&mapping_to("198.51.100.1:4000"), Transport::Udp).is_ok());
        assert!(
            mapping(&mapping_to("198.51.100.1:0"), Transport::Udp)
                .unwrap_err()
                .contains("port 0")
        );
        assert!(mapping(&mapping_to("0.0.0.0:4000"), Transport::Udp).is_err());
        assert!(mapping(&mapping_to("198.51.100.1:4000"), Transport::Tcp).is_err());
    }
}
