//! Device descriptions built from a small model: devices nested in
//! devices, each with services whose serviceType and controlURL may be
//! missing, empty, padded, of another case or refused, under a URLBase or
//! not, with or without a namespace prefix; some made hostile.

use arbitrary::Arbitrary;
use p2pbroker_mode_upnp_igd::url::{HttpUrl, parse_url};
use p2pbroker_mode_upnp_igd::xml::{
    FIREWALL6_SERVICE, WAN_SERVICES, WanService, parse_description, parse_firewall6,
};

use super::hostile::Hostile;

/// Where the description was fetched from.
const LOCATION: &str = "http://10.0.0.1:5000/rootDesc.xml";
/// Devices and services past these are not built; nesting stops here.
const DEVICES_MAX: usize = 12;
const SERVICES_MAX: usize = 4;
const DEPTH_MAX: usize = 16;

/// A device description.
#[derive(Arbitrary, Debug)]
pub struct Description {
    declaration: bool,
    /// `d:` on every element, declared on the root.
    prefixed: bool,
    url_base: UrlBase,
    devices: Vec<Device>,
    hostile: Hostile,
}

#[derive(Arbitrary, Debug)]
struct Device {
    /// How many open devices to close before this one (the rest nest it).
    up: u8,
    services: Vec<Service>,
}

#[derive(Arbitrary, Debug)]
struct Service {
    kind: ServiceType,
    control: Option<Control>,
    control_first: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ServiceType {
    Wan(u8),
    Firewall6,
    /// Surrounded by whitespace, which the parser trims.
    Padded(u8),
    /// Service types compare exactly: no match.
    Upper(u8),
    Layer3,
    Empty,
    Missing,
}

impl ServiceType {
    fn text(self) -> Option<String> {
        let wan = |i: u8| WAN_SERVICES[usize::from(i) % WAN_SERVICES.len()];
        Some(match self {
            ServiceType::Wan(i) => wan(i).into(),
            ServiceType::Firewall6 => FIREWALL6_SERVICE.into(),
            ServiceType::Padded(i) => format!(" \n{}\t", wan(i)),
            ServiceType::Upper(i) => wan(i).to_uppercase(),
            ServiceType::Layer3 => "urn:schemas-upnp-org:service:Layer3Forwarding:1".into(),
            ServiceType::Empty => String::new(),
            ServiceType::Missing => return None,
        })
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Control {
    Absolute(u8),
    Relative(u8),
    Full(u8),
    Padded(u8),
    /// A space in the path could split our request: refused.
    Space,
    /// Names are not resolved: refused.
    NamedHost,
    V6(u8),
}

impl Control {
    fn text(self) -> String {
        match self {
            Control::Absolute(n) => format!("/ctl/IPConn{n}"),
            Control::Relative(n) => format!("ctl/{n}"),
            Control::Full(n) => format!("http://10.0.0.1:5000/full{n}"),
            Control::Padded(n) => format!("  /pad{n}\n"),
            Control::Space => "/a b".into(),
            Control::NamedHost => "http://router.lan/ctl".into(),
            Control::V6(n) => format!("http://[2001:db8::1]:5000/v6{n}"),
        }
    }

    /// The URL it names against a base at `authority` whose path's folder
    /// is `folder`; `None` when it must be refused.
    fn url(self, authority: &str, folder: &str) -> Option<HttpUrl> {
        let url = match self {
            Control::Absolute(n) => format!("http://{authority}/ctl/IPConn{n}"),
            Control::Relative(n) => format!("http://{authority}{folder}ctl/{n}"),
            Control::Padded(n) => format!("http://{authority}/pad{n}"),
            Control::Full(_) | Control::V6(_) => self.text(),
            Control::Space | Control::NamedHost => return None,
        };
        Some(parse_url(&url).expect("a well-formed URL"))
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum UrlBase {
    None,
    Valid,
    Blank,
    Refused,
    V6,
}

impl Description {
    /// The document.
    pub fn render(&self) -> String {
        let d = if self.prefixed { "d:" } else { "" };
        let mut x = String::new();
        if self.declaration {
            x.push_str("<?xml version=\"1.0\"?>\n");
        }
        self.hostile.prologue(&mut x);
        let xmlns = if self.prefixed { "xmlns:d" } else { "xmlns" };
        x.push_str(&format!(
            "<{d}root {xmlns}=\"urn:schemas-upnp-org:device-1-0\"><{d}specVersion><{d}major>1</{d}major>\
             <{d}minor>0</{d}minor></{d}specVersion>"
        ));
        let base = match self.url_base {
            UrlBase::None => None,
            UrlBase::Valid => Some("http://10.0.0.1:80/igd/"),
            UrlBase::Blank => Some("  "),
            UrlBase::Refused => Some("ftp://10.0.0.1/"),
            UrlBase::V6 => Some("http://[fe80::1]:49000/"),
        };
        if let Some(b) = base {
            x.push_str(&format!("<{d}URLBase>{b}</{d}URLBase>"));
        }
        let close = format!("</{d}deviceList></{d}device>");
        let mut depth = 0;
        for dev in self.devices.iter().take(DEVICES_MAX) {
            let mut up = usize::from(dev.up) % (depth + 1);
            if depth - up >= DEPTH_MAX {
                up += 1;
            }
            x.push_str(&close.repeat(up));
            depth -= up;
            x.push_str(&format!(
                "<{d}device><{d}deviceType>urn:schemas-upnp-org:device:WANDevice:1</{d}deviceType><{d}serviceList>"
            ));
            for s in dev.services.iter().take(SERVICES_MAX) {
                let kind = s.kind.text().map_or(String::new(), |t| {
                    format!("<{d}serviceType>{t}</{d}serviceType>")
                });
                let ctl = s.control.map_or(String::new(), |c| {
                    format!("<{d}controlURL>{}</{d}controlURL>", c.text())
                });
                let (first, second) = if s.control_first {
                    (&ctl, &kind)
                } else {
                    (&kind, &ctl)
                };
                x.push_str(&format!(
                    "<{d}service>{first}<{d}serviceId>urn:upnp-org:serviceId:S</{d}serviceId>{second}</{d}service>"
                ));
            }
            x.push_str(&format!("</{d}serviceList><{d}deviceList>"));
            depth += 1;
        }
        x.push_str(&close.repeat(depth));
        self.hostile.inside(&mut x);
        if self.hostile.closes() {
            x.push_str(&format!("</{d}root>"));
        }
        x
    }

    /// The services of `wanted` types in document order with their rank
    /// in `wanted`; `None` when the description must be refused (hostile,
    /// a refused URLBase, or a wanted service's control URL refused).
    fn expected(&self, wanted: &[&str]) -> Option<Vec<(usize, WanService)>> {
        if self.hostile.is_hostile() {
            return None;
        }
        // Relative URLs resolve against the URLBase's folder, else the
        // location's.
        let (authority, folder) = match self.url_base {
            UrlBase::None | UrlBase::Blank => ("10.0.0.1:5000", "/"),
            UrlBase::Valid => ("10.0.0.1:80", "/igd/"),
            UrlBase::V6 => ("[fe80::1]:49000", "/"),
            UrlBase::Refused => return None,
        };
        let mut found = Vec::new();
        let services = self.devices.iter().take(DEVICES_MAX);
        for s in services.flat_map(|d| d.services.iter().take(SERVICES_MAX)) {
            let kind = s.kind.text().unwrap_or_default();
            let (Some(rank), Some(c)) = (wanted.iter().position(|w| *w == kind.trim()), s.control)
            else {
                continue;
            };
            let control = c.url(authority, folder)?;
            found.push((
                rank,
                WanService {
                    service_type: wanted[rank].to_string(),
                    control,
                },
            ));
        }
        found.sort_by_key(|(rank, _)| *rank);
        Some(found)
    }

    /// The parsers find the best service built, or refuse what must be.
    pub fn check(&self, text: &str) {
        let location = parse_url(LOCATION).unwrap();
        let got = parse_description(text, &location);
        match self.expected(&WAN_SERVICES) {
            Some(found) => assert_eq!(got, Ok(found.into_iter().next().map(|(_, s)| s))),
            None => assert!(got.is_err(), "{got:?}"),
        }
        let got = parse_firewall6(text, &location);
        match self.expected(&[FIREWALL6_SERVICE]) {
            Some(found) => assert_eq!(got, Ok(found.into_iter().next().map(|(_, s)| s.control))),
            None => assert!(got.is_err(), "{got:?}"),
        }
    }
}
