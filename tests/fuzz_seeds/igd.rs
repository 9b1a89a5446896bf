//! The gateway's UPnP services as the IGD and IPv6 firewall tests reach
//! them: an HTTP GET and a SOAP client that keep every response as seeds,
//! the arguments of the calls, and the check of SSDP answers. Separate
//! from the tests so each reads as the calls made and what came back.

use std::net::{IpAddr, SocketAddr};

use p2pbroker::text::escaped;
use p2pbroker_mode_upnp_igd::http::{build_get, build_soap_post, parse_response};
use p2pbroker_mode_upnp_igd::url::HttpUrl;
use p2pbroker_mode_upnp_igd::xml::{self, SoapReply};
use p2pbroker_mode_upnp_igd::{origin, ssdp};

use crate::exchange::{Seeds, shown, tcp_exchange};
use crate::lab::{Lab, Ns};

/// The type and version of a URN, e.g. `InternetGatewayDevice-1`.
fn urn_tail(st: &str) -> String {
    let mut parts = st.rsplit(':');
    let version = parts.next().unwrap_or_default();
    format!("{}-{version}", parts.next().unwrap_or_default())
}

/// A UPnP service of the gateway, reached over HTTP/SOAP from the host
/// namespace; every response is kept as seeds.
pub struct Igd<'a> {
    pub lab: &'a Lab,
    pub seeds: &'a Seeds,
    pub service_type: String,
    pub control: HttpUrl,
}

/// GET `url` from the host namespace; keeps the whole response and its
/// body as seeds `miniupnpd-http-NAME` and `miniupnpd-NAME`.
pub fn get(lab: &Lab, seeds: &Seeds, url: &HttpUrl, name: &str) -> String {
    let (to, req) = (url.addr, build_get(url));
    let raw = lab.in_ns(Ns::Host, move || tcp_exchange(to, &req));
    let r = parse_response(&raw).unwrap_or_else(|e| panic!("{url}: {e}: {}", shown(&raw)));
    assert_eq!(r.status, 200, "{url}: {}", shown(&raw));
    seeds.keep("upnp", &format!("miniupnpd-http-{name}"), &raw);
    seeds.keep("upnp", &format!("miniupnpd-{name}"), &r.body);
    String::from_utf8(r.body).expect("miniupnpd describes itself in UTF-8")
}

impl Igd<'_> {
    /// Call `action` with `args`; keeps the response and its body as seeds
    /// `miniupnpd-http-soap-NAME` and `miniupnpd-soap-NAME`.
    fn call(&self, action: &str, args: &[(&str, String)], name: &str) -> SoapReply {
        let body = xml::build_envelope(&self.service_type, action, args);
        let req = build_soap_post(&self.control, &self.service_type, action, &body);
        let to = self.control.addr;
        let raw = self.lab.in_ns(Ns::Host, move || tcp_exchange(to, &req));
        let r = parse_response(&raw).unwrap_or_else(|e| panic!("{action}: {e}: {}", shown(&raw)));
        let text = String::from_utf8_lossy(&r.body);
        let reply = xml::parse_soap(&text, action)
            .unwrap_or_else(|e| panic!("{action}: {e}: {}", escaped(&text)));
        // UDA 1.1 §3.2.2: a UPnPError comes with HTTP 500, success with 200.
        let want = if matches!(reply, SoapReply::Ok(_)) {
            200
        } else {
            500
        };
        assert_eq!(r.status, want, "{action}: {}", shown(&raw));
        self.seeds
            .keep("upnp", &format!("miniupnpd-http-soap-{name}"), &raw);
        self.seeds
            .keep("upnp", &format!("miniupnpd-soap-{name}"), &r.body);
        reply
    }

    /// A call that must succeed: its output arguments.
    pub fn ok(&self, action: &str, args: &[(&str, String)], name: &str) -> Vec<(String, String)> {
        match self.call(action, args, name) {
            SoapReply::Ok(out) => out,
            SoapReply::Fault { code, description } => {
                panic!("{action}: UPnPError {code} {}", escaped(&description))
            }
        }
    }

    /// A call that must be refused: its UPnPError code.
    pub fn fault(&self, action: &str, args: &[(&str, String)], name: &str) -> u16 {
        match self.call(action, args, name) {
            SoapReply::Fault { code, .. } => code,
            SoapReply::Ok(out) => panic!("{action} ({name}) accepted: {out:?}"),
        }
    }
}

/// Output argument `name`.
pub fn arg<'a>(out: &'a [(String, String)], name: &str) -> &'a str {
    out.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

/// AddPortMapping's arguments, as the upnp-igd MOD sends them.
pub fn map_args(external: u16, client: &str, internal: u16) -> Vec<(&'static str, String)> {
    p2pbroker_mode_upnp_igd::igd::MapArgs {
        protocol: "TCP",
        external_port: external,
        internal_client: client.parse().unwrap(),
        internal_port: internal,
        lease: 600,
    }
    .soap_args()
}

/// The arguments naming one TCP mapping.
pub fn lookup_args(external: u16) -> Vec<(&'static str, String)> {
    vec![
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", external.to_string()),
        ("NewProtocol", "TCP".to_string()),
    ]
}

/// Check every SSDP answer (from the gateway, announcing `root`; one for
/// each search target `searched`) and keep each as seed
/// `miniupnpd-KIND-ST`.
pub fn check_ssdp(
    answers: &[(SocketAddr, Vec<u8>)],
    gateway: &str,
    root: &str,
    seeds: &Seeds,
    kind: &str,
    searched: &[&str],
) {
    let gateways: Vec<IpAddr> = vec![gateway.parse().unwrap()];
    let mut answered = Vec::new();
    for (peer, raw) in answers {
        let a = ssdp::parse_answer(raw).unwrap_or_else(|| panic!("not an answer: {}", shown(raw)));
        assert_eq!(a.location, root, "{}", shown(raw));
        assert!(a.server.contains("MiniUPnPd"), "{}", shown(raw));
        let url = origin::check_answer(&a.location, peer.ip(), &gateways).unwrap();
        assert_eq!(url.to_string(), root);
        seeds.keep(
            "upnp",
            &format!("miniupnpd-{kind}-{}", urn_tail(&a.st)),
            raw,
        );
        answered.push(a.st);
    }
    for st in searched {
        assert!(
            answered.iter().any(|a| a == st),
            "no answer for {st}: {answered:?}"
        );
    }
}
