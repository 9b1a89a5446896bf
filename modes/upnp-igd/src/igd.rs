//! IGD control logic without I/O: what each action sends, what its errors
//! mean, and the state blobs this MOD hands the broker.

use core::net::IpAddr;

use p2pbroker_mode_sdk::net::NetError;
use p2pbroker_mode_sdk::{ModeError, escape, reason, with_reason};

use crate::url::{HttpUrl, parse_url};

/// A gateway's WAN connection service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Service type (WANIPConnection:1/2 or WANPPPConnection:1).
    pub service_type: String,
    /// Control URL.
    pub control: HttpUrl,
}

impl Gateway {
    /// Whether the service has IGDv2's AddAnyPortMapping.
    pub fn is_v2(&self) -> bool {
        self.service_type.ends_with("WANIPConnection:2")
    }

    /// The control URL as text.
    pub fn control_url(&self) -> String {
        self.control.to_string()
    }

    /// Encode as `v1\nSERVICE\nURL` (text keeps it inspectable).
    pub fn encode(&self) -> Vec<u8> {
        format!("v1\n{}\n{}", self.service_type, self.control_url()).into_bytes()
    }

    /// Decode what [`Gateway::encode`] wrote.
    pub fn decode(b: &[u8]) -> Option<Gateway> {
        let text = std::str::from_utf8(b).ok()?;
        let mut lines = text.lines();
        (lines.next()? == "v1").then_some(())?;
        let service_type = lines.next()?.to_string();
        let control = parse_url(lines.next()?).ok()?;
        Some(Gateway {
            service_type,
            control,
        })
    }
}

/// The probe's state blob: the gateway and its external address.
pub fn encode_probe_state(gw: &Gateway, external: IpAddr) -> Vec<u8> {
    let mut v = gw.encode();
    v.extend_from_slice(format!("\n{external}").as_bytes());
    v
}

/// Decode what [`encode_probe_state`] wrote.
pub fn decode_probe_state(b: &[u8]) -> Option<(Gateway, IpAddr)> {
    let text = std::str::from_utf8(b).ok()?;
    let (gw, ip) = text.rsplit_once('\n')?;
    Some((Gateway::decode(gw.as_bytes())?, ip.parse().ok()?))
}

/// The arguments of one port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapArgs {
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// External port (never 0).
    pub external_port: u16,
    /// The LAN host.
    pub internal_client: IpAddr,
    /// Its port.
    pub internal_port: u16,
    /// Lease seconds; 0 = permanent.
    pub lease: u32,
}

/// Description written on the gateway, so its table says who mapped what.
const DESCRIPTION: &str = "p2pbroker";

impl MapArgs {
    /// SOAP arguments of AddPortMapping (v1) or AddAnyPortMapping (v2).
    pub fn soap_args(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", self.external_port.to_string()),
            ("NewProtocol", self.protocol.to_string()),
            ("NewInternalPort", self.internal_port.to_string()),
            ("NewInternalClient", self.internal_client.to_string()),
            ("NewEnabled", "1".to_string()),
            ("NewPortMappingDescription", DESCRIPTION.to_string()),
            ("NewLeaseDuration", self.lease.to_string()),
        ]
    }
}

/// The mapping state blob: the gateway and the arguments in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingState {
    /// The gateway.
    pub gateway: Gateway,
    /// Arguments as granted.
    pub args: MapArgs,
}

impl MappingState {
    /// Encode as the gateway's lines plus one line of arguments.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.gateway.encode();
        let a = &self.args;
        v.extend_from_slice(
            format!(
                "\n{} {} {} {} {}",
                a.protocol, a.external_port, a.internal_client, a.internal_port, a.lease
            )
            .as_bytes(),
        );
        v
    }

    /// Decode what [`MappingState::encode`] wrote.
    pub fn decode(b: &[u8]) -> Option<MappingState> {
        let text = std::str::from_utf8(b).ok()?;
        let (gw, args) = text.rsplit_once('\n')?;
        let gateway = Gateway::decode(gw.as_bytes())?;
        let f: Vec<&str> = args.split(' ').collect();
        let [proto, ext, client, int, lease] = f.as_slice() else {
            return None;
        };
        let protocol = match *proto {
            "TCP" => "TCP",
            "UDP" => "UDP",
            _ => return None,
        };
        let external_port: u16 = ext.parse().ok().filter(|p| *p != 0)?;
        Some(MappingState {
            gateway,
            args: MapArgs {
                protocol,
                external_port,
                internal_client: client.parse().ok()?,
                internal_port: int.parse().ok()?,
                lease: lease.parse().ok()?,
            },
        })
    }
}

/// Why an IGD exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgdError {
    /// A UPnP error code with its description.
    Upnp(u16, String),
    /// Malformed HTTP, XML or SOAP, or an unexpected answer.
    Protocol(String),
    /// The socket layer failed (denied, timeout, refused).
    Net(NetError),
}

impl From<NetError> for IgdError {
    fn from(e: NetError) -> Self {
        IgdError::Net(e)
    }
}

/// One line for humans (the gateway's own words escaped).
pub fn message(e: &IgdError) -> String {
    match e {
        IgdError::Upnp(code, d) => format!("UPnP error {code} {}", escape(d, 200)),
        IgdError::Protocol(m) => m.clone(),
        IgdError::Net(n) => n.to_string(),
    }
}

/// Map an IGD failure to the contract's error (UPnP IGD WANIPConnection
/// v2 §2.4 error codes).
pub fn to_mode_error(e: IgdError) -> ModeError {
    let msg = message(&e);
    match e {
        IgdError::Upnp(code, _) => match code {
            402 | 716 | 724 | 726 | 727 => ModeError::InvalidRequest(msg),
            501 => ModeError::Unavailable(format!(
                "{msg}: the gateway cannot forward (e.g. no routable WAN address)"
            )),
            606 => ModeError::Denied(msg),
            714 => ModeError::MappingLost(msg),
            718 | 728 => ModeError::Conflict(msg),
            725 => ModeError::Unsupported(format!(
                "{msg}: only permanent leases, which the policy does not allow"
            )),
            _ => ModeError::Protocol(msg),
        },
        IgdError::Protocol(_) => ModeError::Protocol(msg),
        // The IGD answered before (SSDP, a probe, a mapping): a socket
        // failure now is a gateway misbehaving or slow, not "no IGD here".
        IgdError::Net(NetError::Denied) => ModeError::Denied(msg),
        IgdError::Net(NetError::Timeout) => ModeError::Timeout(msg),
        IgdError::Net(_) => ModeError::Protocol(msg),
    }
}

/// `e` with `place: ` before its reason (which gateway said it).
pub fn at(place: &impl core::fmt::Display, e: &ModeError) -> ModeError {
    with_reason(e, format!("{place}: {}", reason(e)))
}

/// One error for a search in which no gateway worked, from each tried
/// gateway's failure: `unavailable` (the broker then leaves the MOD out for
/// a while) only when every failure says there is no IGD; otherwise the
/// kind of the first other failure (a timeout, a garbled reply: worth
/// another try). The reason lists them all, `what` first.
pub fn combine(what: &str, failures: &[ModeError]) -> ModeError {
    let reasons: Vec<&str> = failures.iter().map(reason).collect();
    let text = format!("{what} ({})", reasons.join("; "));
    match failures
        .iter()
        .find(|e| !matches!(e, ModeError::Unavailable(_)))
    {
        Some(e) => with_reason(e, text),
        None => ModeError::Unavailable(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw() -> Gateway {
        Gateway {
            service_type: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
            control: parse_url("http://10.0.0.1:5000/ctl/IPConn").unwrap(),
        }
    }

    #[test]
    fn states_round_trip_and_reject_garbage() {
        assert_eq!(Gateway::decode(&gw().encode()), Some(gw()));
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(
            decode_probe_state(&encode_probe_state(&gw(), ip)),
            Some((gw(), ip))
        );
        assert_eq!(decode_probe_state(&gw().encode()), None);
        let st = MappingState {
            gateway: gw(),
            args: MapArgs {
                protocol: "UDP",
                external_port: 4000,
                internal_client: "10.0.0.2".parse().unwrap(),
                internal_port: 4001,
                lease: 600,
            },
        };
        assert_eq!(MappingState::decode(&st.encode()), Some(st.clone()));
        let zero = String::from_utf8(st.encode())
            .unwrap()
            .replace("UDP 4000", "UDP 0");
        assert_eq!(
            MappingState::decode(zero.as_bytes()),
            None,
            "external port 0 is never accepted"
        );
        assert_eq!(MappingState::decode(b"\xff\xfe"), None);
        assert_eq!(Gateway::decode(b"v2\nx\nhttp://10.0.0.1/"), None);
    }

    #[test]
    fn error_codes_are_typed() {
        let e = |c| to_mode_error(IgdError::Upnp(c, String::new()));
        assert!(matches!(e(718), ModeError::Conflict(_)));
        assert!(matches!(e(725), ModeError::Unsupported(_)));
        assert!(matches!(e(606), ModeError::Denied(_)));
        assert!(matches!(e(501), ModeError::Unavailable(_)));
        assert!(matches!(e(402), ModeError::InvalidRequest(_)));
        assert!(matches!(e(714), ModeError::MappingLost(_)));
        assert!(matches!(e(999), ModeError::Protocol(_)));
        assert!(matches!(
            to_mode_error(IgdError::Net(NetError::Denied)),
            ModeError::Denied(_)
        ));
        assert!(matches!(
            to_mode_error(IgdError::Net(NetError::Timeout)),
            ModeError::Timeout(_)
        ));
        for n in [
            NetError::Refused,
            NetError::Unreachable,
            NetError::Other("x".into()),
        ] {
            assert!(matches!(
                to_mode_error(IgdError::Net(n)),
                ModeError::Protocol(_)
            ));
        }
        assert!(matches!(
            to_mode_error(IgdError::Protocol("bad".into())),
            ModeError::Protocol(_)
        ));
        let e = to_mode_error(IgdError::Upnp(501, "a\nb".into()));
        assert!(!reason(&e).contains('\n'), "{e:?}");
    }

    /// Only "no IGD at all" keeps the MOD out: one slow or garbled IGD
    /// among others that lack a WAN service is worth another try.
    #[test]
    fn combined_failures_are_unavailable_only_without_any_igd() {
        let none = || ModeError::Unavailable("no WAN service".into());
        let e = combine("no usable IGD", &[none(), none()]);
        assert!(
            matches!(&e, ModeError::Unavailable(r) if r == "no usable IGD (no WAN service; no WAN service)")
        );
        let e = combine(
            "no usable IGD",
            &[
                none(),
                ModeError::Timeout("slow".into()),
                ModeError::Protocol("bad".into()),
            ],
        );
        assert!(
            matches!(&e, ModeError::Timeout(r) if r.contains("slow; bad")),
            "{e:?}"
        );
        let e = combine("x", &[ModeError::Protocol("garbled".into())]);
        assert!(matches!(e, ModeError::Protocol(_)));
        assert!(matches!(combine("x", &[]), ModeError::Unavailable(_)));
    }

    #[test]
    fn mapping_args_never_wildcard() {
        let a = MapArgs {
            protocol: "TCP",
            external_port: 6881,
            internal_client: "10.0.0.2".parse().unwrap(),
            internal_port: 6881,
            lease: 3600,
        };
        let args = a.soap_args();
        assert!(args.contains(&("NewExternalPort", "6881".into())));
        assert!(args.contains(&("NewInternalClient", "10.0.0.2".into())));
    }
}
