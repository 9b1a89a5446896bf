//! IPv6 pinholes through an IGD 2's WANIPv6FirewallControl:1 service,
//! without I/O: the SOAP arguments of AddPinhole, UpdatePinhole and
//! DeletePinhole, the UniqueID answer, the state blob, and what each error
//! code means for each action (UPnP WANIPv6FirewallControl:1, IGD 2;
//! ISO/IEC 29341-24-11).
//!
//! A pinhole is not a translation: it lets inbound traffic to the host's
//! own IPv6 address and port through the gateway's firewall, so a
//! mapping's external endpoint is its internal one.

use core::net::Ipv6Addr;

use p2pbroker_mode_sdk::ModeError;

use crate::igd::{IgdError, message};
use crate::url::{HttpUrl, parse_url};

/// Longest pinhole lease (the service's LeaseTime range is 1 to 86400 s;
/// miniupnpd answers 402 outside it).
pub const PINHOLE_LEASE_MAX: u32 = 86_400;

/// The lease to ask for when `requested` seconds are wanted: never 0
/// (pinholes have no permanent form), at most [`PINHOLE_LEASE_MAX`].
pub fn lease(requested: u32) -> u32 {
    requested.clamp(1, PINHOLE_LEASE_MAX)
}

/// The arguments of one inbound pinhole: any remote host and port to
/// `internal_client`:`internal_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinholeArgs {
    /// IANA protocol number: 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// The host's IPv6 address (gateways require the requester's own).
    pub internal_client: Ipv6Addr,
    /// Its port.
    pub internal_port: u16,
    /// Lease seconds, 1 to [`PINHOLE_LEASE_MAX`].
    pub lease: u32,
}

impl PinholeArgs {
    /// SOAP arguments of AddPinhole: RemoteHost empty and RemotePort 0
    /// mean any peer.
    pub fn add_args(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RemoteHost", String::new()),
            ("RemotePort", "0".to_string()),
            ("InternalClient", self.internal_client.to_string()),
            ("InternalPort", self.internal_port.to_string()),
            ("Protocol", self.protocol.to_string()),
            ("LeaseTime", self.lease.to_string()),
        ]
    }
}

/// SOAP arguments of UpdatePinhole.
pub fn update_args(uid: u16, lease: u32) -> Vec<(&'static str, String)> {
    vec![
        ("UniqueID", uid.to_string()),
        ("NewLeaseTime", lease.to_string()),
    ]
}

/// SOAP arguments of DeletePinhole.
pub fn delete_args(uid: u16) -> Vec<(&'static str, String)> {
    vec![("UniqueID", uid.to_string())]
}

/// The UniqueID in AddPinhole's output arguments.
pub fn parse_unique_id(out: &[(String, String)]) -> Result<u16, String> {
    let text = out
        .iter()
        .find(|(k, _)| k == "UniqueID")
        .map(|(_, v)| v.as_str())
        .ok_or("AddPinhole answer lacks UniqueID")?;
    text.parse()
        .map_err(|_| format!("UniqueID `{text}` is not a number from 0 to 65535"))
}

/// The state blob of a pinhole: where to control it and its UniqueID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinholeState {
    /// The WANIPv6FirewallControl:1 control URL (on the gateway's IPv6 address).
    pub control: HttpUrl,
    /// The pinhole as granted.
    pub args: PinholeArgs,
    /// Its UniqueID on the gateway.
    pub uid: u16,
}

impl PinholeState {
    /// Encode as `p1\nURL\nPROTO CLIENT PORT LEASE UID` (text keeps it
    /// inspectable; `p1` keeps it apart from port-mapping states).
    pub fn encode(&self) -> Vec<u8> {
        let a = &self.args;
        format!(
            "p1\n{}\n{} {} {} {} {}",
            self.control, a.protocol, a.internal_client, a.internal_port, a.lease, self.uid
        )
        .into_bytes()
    }

    /// Decode what [`PinholeState::encode`] wrote; `None` for anything
    /// else, including a port 0, a lease out of range or another protocol.
    pub fn decode(b: &[u8]) -> Option<PinholeState> {
        let text = std::str::from_utf8(b).ok()?;
        let mut lines = text.split('\n');
        (lines.next()? == "p1").then_some(())?;
        let control = parse_url(lines.next()?).ok()?;
        let f: Vec<&str> = lines.next()?.split(' ').collect();
        if lines.next().is_some() {
            return None;
        }
        let [proto, client, port, lease, uid] = f.as_slice() else {
            return None;
        };
        let protocol = proto.parse().ok().filter(|p| matches!(p, 6 | 17))?;
        let internal_port = port.parse().ok().filter(|p| *p != 0)?;
        let lease = lease
            .parse()
            .ok()
            .filter(|l| (1..=PINHOLE_LEASE_MAX).contains(l))?;
        Some(PinholeState {
            control,
            args: PinholeArgs {
                protocol,
                internal_client: client.parse().ok()?,
                internal_port,
                lease,
            },
            uid: uid.parse().ok()?,
        })
    }
}

/// Which pinhole action failed: a code can mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinholeAction {
    /// AddPinhole (map, and renew's ownership check).
    Add,
    /// UpdatePinhole (renew).
    Update,
    /// DeletePinhole (unmap).
    Delete,
}

/// Whether DeletePinhole's failure means the pinhole is already gone:
/// 704 NoSuchEntry per the spec, 402 from miniupnpd 2.3.1, which answers
/// so for an unknown UniqueID (seen in the lab).
pub fn is_gone(e: &IgdError) -> bool {
    matches!(e, IgdError::Upnp(402 | 704, _))
}

/// Map a pinhole action's failure to the contract's error.
pub fn to_mode_error(action: PinholeAction, e: IgdError) -> ModeError {
    let IgdError::Upnp(code, _) = e else {
        return crate::igd::to_mode_error(e);
    };
    let msg = message(&e);
    match (action, code) {
        // Our UniqueID and lease are in range, so on renew 402 can only be
        // miniupnpd's answer for an unknown UniqueID.
        (PinholeAction::Update, 402 | 704) => ModeError::MappingLost(format!(
            "{msg}: the gateway no longer has this pinhole (704 NoSuchEntry; miniupnpd answers 402)"
        )),
        // The gateway authorised this pinhole for us when it was made:
        // refusing now means its UniqueID belongs to another client.
        (PinholeAction::Update, 606) => ModeError::MappingLost(format!(
            "{msg}: the pinhole's UniqueID now belongs to another client"
        )),
        (_, 402 | 704 | 706 | 707 | 708) => ModeError::InvalidRequest(msg),
        (_, 606) => ModeError::Denied(format!(
            "{msg}: gateways open pinholes only for the address that asks (and miniupnpd only to ports from 1024)"
        )),
        (_, 703) => ModeError::Denied(format!(
            "{msg}: the gateway's policy allows no inbound pinholes"
        )),
        (_, 701) => ModeError::Unavailable(format!("{msg}: no room for another pinhole")),
        (_, 501) => ModeError::Unavailable(msg),
        (_, 702) => ModeError::Unsupported(format!(
            "{msg}: the gateway's IPv6 firewall is off, there is nothing to open (the direct MOD applies)"
        )),
        (_, 401 | 705) => ModeError::Unsupported(msg),
        _ => ModeError::Protocol(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PinholeState {
        PinholeState {
            control: parse_url("http://[2001:db8:1::1]:5000/ctl/IP6FCtl").unwrap(),
            args: PinholeArgs {
                protocol: 17,
                internal_client: "2001:db8:1::2".parse().unwrap(),
                internal_port: 6000,
                lease: 600,
            },
            uid: 3,
        }
    }

    #[test]
    fn add_args_open_to_any_peer() {
        let args = state().args.add_args();
        assert_eq!(
            args,
            vec![
                ("RemoteHost", String::new()),
                ("RemotePort", "0".into()),
                ("InternalClient", "2001:db8:1::2".into()),
                ("InternalPort", "6000".into()),
                ("Protocol", "17".into()),
                ("LeaseTime", "600".into()),
            ]
        );
        assert_eq!(update_args(3, 900)[1], ("NewLeaseTime", "900".into()));
        assert_eq!(delete_args(65535), vec![("UniqueID", "65535".into())]);
        assert_eq!((lease(0), lease(600), lease(u32::MAX)), (1, 600, 86_400));
    }

    #[test]
    fn unique_id_is_checked() {
        let out = |v: &str| vec![("UniqueID".to_string(), v.to_string())];
        assert_eq!(parse_unique_id(&out("1")), Ok(1));
        assert!(
            parse_unique_id(&out("65536"))
                .unwrap_err()
                .contains("65535")
        );
        assert!(parse_unique_id(&out("-1")).is_err());
        assert!(parse_unique_id(&[]).unwrap_err().contains("lacks"));
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let s = state();
        let text = String::from_utf8(s.encode()).unwrap();
        assert_eq!(
            text,
            "p1\nhttp://[2001:db8:1::1]:5000/ctl/IP6FCtl\n17 2001:db8:1::2 6000 600 3"
        );
        assert_eq!(PinholeState::decode(&s.encode()), Some(s));
        for bad in [
            text.replace("17 ", "1 "),
            text.replace(" 6000 ", " 0 "),
            text.replace(" 600 ", " 0 "),
            text.replace(" 600 ", " 86401 "),
            text.replace("2001:db8:1::2", "10.0.0.2"),
            text.replace("p1", "v1"),
            format!("{text}\nextra"),
            text.replace(" 3", " 70000"),
        ] {
            assert_eq!(PinholeState::decode(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(PinholeState::decode(b"\xff"), None);
    }

    #[test]
    fn error_codes_are_typed_per_action() {
        use PinholeAction::*;
        let e = |a, c| to_mode_error(a, IgdError::Upnp(c, String::new()));
        assert!(matches!(e(Add, 606), ModeError::Denied(_)));
        assert!(matches!(e(Add, 703), ModeError::Denied(_)));
        assert!(matches!(e(Add, 402), ModeError::InvalidRequest(_)));
        assert!(matches!(e(Add, 708), ModeError::InvalidRequest(_)));
        assert!(matches!(e(Add, 701), ModeError::Unavailable(_)));
        assert!(matches!(e(Add, 501), ModeError::Unavailable(_)));
        assert!(matches!(e(Add, 702), ModeError::Unsupported(_)));
        assert!(matches!(e(Add, 705), ModeError::Unsupported(_)));
        assert!(matches!(e(Add, 709), ModeError::Protocol(_)));
        assert!(matches!(e(Update, 704), ModeError::MappingLost(_)));
        assert!(matches!(e(Update, 402), ModeError::MappingLost(_)));
        assert!(matches!(e(Update, 606), ModeError::MappingLost(_)));
        assert!(matches!(e(Delete, 606), ModeError::Denied(_)));
        assert!(is_gone(&IgdError::Upnp(402, String::new())));
        assert!(is_gone(&IgdError::Upnp(704, String::new())));
        assert!(!is_gone(&IgdError::Upnp(606, String::new())));
        assert!(matches!(
            to_mode_error(Add, IgdError::Protocol("x".into())),
            ModeError::Protocol(_)
        ));
    }
}
