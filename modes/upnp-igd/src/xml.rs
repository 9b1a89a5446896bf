//! Device descriptions and SOAP messages (UPnP IGD), as pure functions.
//!
//! XML is parsed with roxmltree with DTDs refused outright (a gateway has
//! no business sending one; refusing it shuts out entity expansion) and a
//! node limit. Elements are matched by local name, so namespace prefixes
//! and routers that omit the namespace both work.

use p2pbroker_mode_sdk::escape as escape_text;

use crate::url::{HttpUrl, parse_url, resolve};

/// Most XML nodes we parse in one document.
const XML_MAX_NODES: u32 = 20_000;

/// WAN connection service types, most capable first.
pub const WAN_SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// A WAN connection service of a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanService {
    /// Its service type (one of [`WAN_SERVICES`]).
    pub service_type: String,
    /// Its control URL, resolved.
    pub control: HttpUrl,
}

fn parse(text: &str) -> Result<roxmltree::Document<'_>, String> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: XML_MAX_NODES,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, opts)
        .map_err(|e| format!("malformed XML: {}", escape_text(&e.to_string(), 200)))
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .and_then(|c| c.text())
        .map(str::trim)
}

/// The IPv6 firewall service of IGD 2 (WANIPv6FirewallControl:1).
pub const FIREWALL6_SERVICE: &str = "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1";

/// The services of `wanted` types in a description fetched from
/// `location`, each with its rank in `wanted`, searching nested devices;
/// relative control URLs resolve against `URLBase` when present, else
/// against `location`.
fn find_services(
    text: &str,
    location: &HttpUrl,
    wanted: &[&str],
) -> Result<Vec<(usize, WanService)>, String> {
    let doc = parse(text)?;
    let root = doc.root_element();
    let base = match root
        .children()
        .find(|c| c.tag_name().name() == "URLBase")
        .and_then(|c| c.text())
    {
        Some(b) if !b.trim().is_empty() => parse_url(b.trim())?,
        _ => location.clone(),
    };
    let mut found: Vec<(usize, WanService)> = Vec::new();
    for svc in root
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "service")
    {
        let Some(st) = child_text(svc, "serviceType") else {
            continue;
        };
        let Some(rank) = wanted.iter().position(|w| *w == st) else {
            continue;
        };
        let Some(ctl) = child_text(svc, "controlURL") else {
            continue;
        };
        found.push((
            rank,
            WanService {
                service_type: st.to_string(),
                control: resolve(&base, ctl)?,
            },
        ));
    }
    found.sort_by_key(|(rank, _)| *rank);
    Ok(found)
}

/// The best WAN connection service in a device description fetched from
/// `location` (see [`WAN_SERVICES`]), `None` when the device offers none
/// (it is no Internet gateway: not a malformed reply).
pub fn parse_description(text: &str, location: &HttpUrl) -> Result<Option<WanService>, String> {
    Ok(find_services(text, location, &WAN_SERVICES)?
        .into_iter()
        .next()
        .map(|(_, s)| s))
}

/// The control URL of the description's WANIPv6FirewallControl:1 service,
/// `None` when the device offers none (it opens no IPv6 pinholes).
pub fn parse_firewall6(text: &str, location: &HttpUrl) -> Result<Option<HttpUrl>, String> {
    Ok(find_services(text, location, &[FIREWALL6_SERVICE])?
        .into_iter()
        .next()
        .map(|(_, s)| s.control))
}

/// Escape text for an XML element.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A SOAP envelope calling `action` of `service_type` with `args`.
pub fn build_envelope(service_type: &str, action: &str, args: &[(&str, String)]) -> String {
    let mut body = String::new();
    for (k, v) in args {
        body.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:{action} xmlns:u=\"{}\">{body}</u:{action}></s:Body></s:Envelope>\r\n",
        escape(service_type)
    )
}

/// The outcome of a SOAP call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapReply {
    /// Success, with the output arguments.
    Ok(Vec<(String, String)>),
    /// A UPnP error (UDA 1.1 §3.2.2).
    Fault {
        /// `errorCode`, e.g. 718.
        code: u16,
        /// `errorDescription`.
        description: String,
    },
}

/// Parse a SOAP response body for `action`.
pub fn parse_soap(text: &str, action: &str) -> Result<SoapReply, String> {
    let doc = parse(text)?;
    let body = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Body")
        .ok_or("SOAP response without a Body")?;
    if let Some(err) = body
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "UPnPError")
    {
        let code = child_text(err, "errorCode")
            .and_then(|c| c.parse().ok())
            .ok_or("UPnPError without a numeric errorCode")?;
        let description = child_text(err, "errorDescription")
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Ok(SoapReply::Fault { code, description });
    }
    let want = format!("{action}Response");
    let resp = body
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == want)
        .ok_or_else(|| format!("SOAP Body has no {want}"))?;
    let args = resp
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            (
                n.tag_name().name().to_string(),
                n.text().unwrap_or("").trim().to_string(),
            )
        })
        .collect();
    Ok(SoapReply::Ok(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIUPNPD: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL>
<eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>"#;

    #[test]
    fn finds_nested_services_and_resolves_urls() {
        let loc = parse_url("http://10.0.0.1:5000/rootDesc.xml").unwrap();
        let s = parse_description(MINIUPNPD, &loc).unwrap().unwrap();
        assert_eq!(s.service_type, WAN_SERVICES[1]);
        assert_eq!(
            s.control,
            parse_url("http://10.0.0.1:5000/ctl/IPConn").unwrap()
        );
        // Prefixed namespace, URLBase, relative URL, a PPP and an IP v2 service.
        let quirky = r#"<d:root xmlns:d="urn:schemas-upnp-org:device-1-0"><d:URLBase>http://10.0.0.1:80/igd/</d:URLBase>
            <d:device><d:serviceList>
            <d:service><d:serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</d:serviceType><d:controlURL>ppp</d:controlURL></d:service>
            <d:service><d:serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</d:serviceType><d:controlURL> ip2 </d:controlURL></d:service>
            </d:serviceList></d:device></d:root>"#;
        let s = parse_description(quirky, &loc).unwrap().unwrap();
        assert_eq!(s.service_type, WAN_SERVICES[0]);
        assert_eq!(s.control, parse_url("http://10.0.0.1:80/igd/ip2").unwrap());
    }

    #[test]
    fn finds_the_ipv6_firewall_service() {
        // The service part of miniupnpd 2.3.1's IGD 2 description, fetched
        // over IPv6 in the lab.
        let igd2 = r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceList><device><deviceList><device>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPv6Firewall1</serviceId>
<SCPDURL>/WANIP6FC.xml</SCPDURL><controlURL>/ctl/IP6FCtl</controlURL><eventSubURL>/evt/IP6FCtl</eventSubURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>"#;
        let loc = parse_url("http://[2001:db8:1::1]:5000/rootDesc.xml").unwrap();
        assert_eq!(
            parse_firewall6(igd2, &loc).unwrap(),
            Some(parse_url("http://[2001:db8:1::1]:5000/ctl/IP6FCtl").unwrap())
        );
        assert_eq!(
            parse_description(igd2, &loc).unwrap().unwrap().service_type,
            WAN_SERVICES[0]
        );
        assert_eq!(parse_firewall6(MINIUPNPD, &loc).unwrap(), None);
        assert!(parse_firewall6("<root><unclosed>", &loc).is_err());
    }

    #[test]
    fn hostile_or_useless_descriptions_are_named() {
        let loc = parse_url("http://10.0.0.1:5000/d.xml").unwrap();
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><root>&lol2;</root>"#;
        assert!(
            parse_description(laughs, &loc)
                .unwrap_err()
                .contains("malformed XML")
        );
        assert_eq!(parse_description("<root><device/></root>", &loc), Ok(None));
        assert!(parse_description("<root><unclosed>", &loc).is_err());
        let many = format!("<root>{}</root>", "<a/>".repeat(30_000));
        assert!(parse_description(&many, &loc).is_err());
    }

    #[test]
    fn envelopes_and_replies() {
        let e = build_envelope(
            WAN_SERVICES[1],
            "AddPortMapping",
            &[("NewPortMappingDescription", "a<b&c".into())],
        );
        assert!(e.contains(
            "<u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\">"
        ));
        assert!(e.contains("<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription>"));
        let ok = r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
            <u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">
            <NewExternalIPAddress>198.51.100.2</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_soap(ok, "GetExternalIPAddress").unwrap(),
            SoapReply::Ok(vec![("NewExternalIPAddress".into(), "198.51.100.2".into())])
        );
        let fault = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
            <faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>
            <UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode>
            <errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_soap(fault, "AddPortMapping").unwrap(),
            SoapReply::Fault {
                code: 718,
                description: "ConflictInMappingEntry".into()
            }
        );
        assert!(
            parse_soap("<x/>", "A")
                .unwrap_err()
                .contains("without a Body")
        );
        assert!(
            parse_soap(ok, "AddPortMapping")
                .unwrap_err()
                .contains("no AddPortMappingResponse")
        );
    }
}
