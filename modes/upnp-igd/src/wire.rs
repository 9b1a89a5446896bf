//! The I/O glue of the UPnP MOD: SSDP over UDP and HTTP/SOAP over TCP,
//! pumping bytes through the pure codecs. Every wait is bounded by the
//! caller's deadline (a slow-drip gateway ends in a timeout).

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::ModeError;
use p2pbroker_mode_sdk::clock::Deadline;
use p2pbroker_mode_sdk::net::{NetError, TcpStream, UdpSocket};

use crate::http::{self, HttpResponse, HttpUrl};
use crate::igd::{Gateway, IgdError, MapArgs};
use crate::{ssdp, xml};

/// After the first complete SSDP answer, how long to keep listening for
/// other gateways. Devices answer after a random delay up to MX, so no
/// grace catches every late one; 20 ms catches gateways answering together
/// with the first and costs a cold map little (the benchmark compares it
/// with igd-next, which stops at the first answer).
const SSDP_GRACE: Duration = Duration::from_millis(20);

impl From<IgdError> for ModeError {
    fn from(e: IgdError) -> Self {
        crate::igd::to_mode_error(e)
    }
}

fn left(deadline: Deadline) -> Result<Duration, IgdError> {
    deadline.remaining().ok_or(IgdError::Net(NetError::Timeout))
}

/// Search for IGDs; returns their description URLs, first answer first.
pub fn discover(deadline: Deadline) -> Result<Vec<String>, ModeError> {
    let group: SocketAddr = ssdp::SSDP_ADDR.parse().expect("literal");
    let requests = ssdp::SEARCH_TARGETS.map(ssdp::build_msearch);
    let found = search(group, &requests, deadline)?;
    if found.is_empty() {
        return Err(ModeError::Unavailable(
            "no IGD answered the SSDP search".into(),
        ));
    }
    Ok(found)
}

/// Search for IGDs on the link-local IPv6 group; returns the description
/// URLs on a routable IPv6 address (possibly none), first answer first. A
/// link-local URL is skipped (the broker gives a MOD no interface scope),
/// and so is loopback (miniupnpd 2.3.1 falls back to announcing `[::1]`
/// when its LAN interface has no routable IPv6 address).
pub fn discover_v6(deadline: Deadline) -> Result<Vec<String>, ModeError> {
    let group: SocketAddr = ssdp::SSDP_ADDR_V6.parse().expect("literal");
    let requests = ssdp::SEARCH_TARGETS_V6.map(ssdp::build_msearch_v6);
    let found = search(group, &requests, deadline)?;
    Ok(found
        .into_iter()
        .filter(|l| {
            http::parse_url(l).is_ok_and(|u| match u.addr.ip() {
                IpAddr::V6(v6) => !v6.is_unicast_link_local() && !v6.is_loopback(),
                IpAddr::V4(_) => false,
            })
        })
        .collect())
}

/// Send `requests` to `group` and collect the LOCATIONs answered until the
/// deadline, or until a short grace after the first answer.
fn search(
    group: SocketAddr,
    requests: &[Vec<u8>],
    deadline: Deadline,
) -> Result<Vec<String>, NetError> {
    let any = match group {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let sock = UdpSocket::bind(any)?;
    for r in requests {
        sock.send_to(r, group)?;
    }
    let mut found: Vec<String> = Vec::new();
    let mut until = deadline;
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv_until(&mut buf, until) {
            Ok((n, _)) => {
                if let Some(a) = ssdp::parse_answer(&buf[..n])
                    && !found.contains(&a.location)
                {
                    if found.is_empty() {
                        let grace = Deadline::after(SSDP_GRACE);
                        if grace.instant_ns() < deadline.instant_ns() {
                            until = grace;
                        }
                    }
                    found.push(a.location);
                }
            }
            Err(NetError::Timeout) => return Ok(found),
            Err(e) => return Err(e),
        }
    }
}

/// One HTTP request/response, bounded in size and time.
fn exchange(url: &HttpUrl, request: &[u8], deadline: Deadline) -> Result<HttpResponse, IgdError> {
    exchange_from(url, |_| request.to_vec(), deadline).map(|(r, _)| r)
}

/// [`exchange`] with the request built once connected, from our end's
/// address (what the gateway sees as the sender); returns that address too.
fn exchange_from(
    url: &HttpUrl,
    request: impl FnOnce(IpAddr) -> Vec<u8>,
    deadline: Deadline,
) -> Result<(HttpResponse, IpAddr), IgdError> {
    let stream = TcpStream::connect(url.addr, left(deadline)?)?;
    let local = stream.local_addr()?.ip().to_canonical();
    stream.write_all(&request(local), left(deadline)?)?;
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk, left(deadline)?)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() > http::HTTP_MAX_RESPONSE {
            return Err(IgdError::Protocol(format!(
                "response larger than {} bytes",
                http::HTTP_MAX_RESPONSE
            )));
        }
        if http::is_complete(&body) {
            break;
        }
    }
    let resp = http::parse_response(&body).map_err(IgdError::Protocol)?;
    Ok((resp, local))
}

/// Fetch a device description: its URL and text.
fn fetch_description(location: &str, deadline: Deadline) -> Result<(HttpUrl, String), IgdError> {
    let url = http::parse_url(location).map_err(IgdError::Protocol)?;
    let resp = exchange(&url, &http::build_get(&url), deadline)?;
    if resp.status != 200 {
        return Err(IgdError::Protocol(format!(
            "description fetch: HTTP {}",
            resp.status
        )));
    }
    let text = String::from_utf8(resp.body)
        .map_err(|_| IgdError::Protocol("description is not UTF-8".into()))?;
    Ok((url, text))
}

/// Fetch a description and return its WANIPv6FirewallControl:1 service,
/// `None` when the device offers none.
pub fn describe_firewall6(location: &str, deadline: Deadline) -> Result<Option<Gateway>, IgdError> {
    let (url, text) = fetch_description(location, deadline)?;
    let control = xml::parse_firewall6(&text, &url).map_err(IgdError::Protocol)?;
    Ok(control.map(|control| Gateway {
        service_type: xml::FIREWALL6_SERVICE.to_string(),
        control,
    }))
}

/// Fetch and parse a device description.
pub fn describe(location: &str, deadline: Deadline) -> Result<Gateway, IgdError> {
    let (url, text) = fetch_description(location, deadline)?;
    let svc = xml::parse_description(&text, &url).map_err(IgdError::Protocol)?;
    Ok(Gateway {
        service_type: svc.service_type,
        control: svc.control,
    })
}

/// Call `action` and return its output arguments.
pub fn soap(
    gw: &Gateway,
    action: &str,
    args: &[(&str, String)],
    deadline: Deadline,
) -> Result<Vec<(String, String)>, IgdError> {
    soap_from(gw, action, |_| args.to_vec(), deadline).map(|(out, _)| out)
}

/// [`soap`] with the arguments built from our end's address once
/// connected; returns that address too.
pub fn soap_from<'a>(
    gw: &Gateway,
    action: &str,
    args: impl FnOnce(IpAddr) -> Vec<(&'a str, String)>,
    deadline: Deadline,
) -> Result<(Vec<(String, String)>, IpAddr), IgdError> {
    let build = |local| {
        let body = xml::build_envelope(&gw.service_type, action, &args(local));
        http::build_soap_post(&gw.control, &gw.service_type, action, &body)
    };
    let (resp, local) = exchange_from(&gw.control, build, deadline)?;
    let text = String::from_utf8_lossy(&resp.body);
    match xml::parse_soap(&text, action) {
        Ok(xml::SoapReply::Ok(out)) if resp.status == 200 => Ok((out, local)),
        Ok(xml::SoapReply::Fault { code, description }) => Err(IgdError::Upnp(code, description)),
        Ok(_) => Err(IgdError::Protocol(format!(
            "{action}: HTTP {} without a UPnP error",
            resp.status
        ))),
        Err(e) => Err(IgdError::Protocol(format!("{action}: {e}"))),
    }
}

fn arg<'a>(out: &'a [(String, String)], name: &str) -> Result<&'a str, IgdError> {
    out.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| IgdError::Protocol(format!("answer lacks {name}")))
}

/// The gateway's external address.
pub fn external_ip(gw: &Gateway, deadline: Deadline) -> Result<IpAddr, IgdError> {
    let out = soap(gw, "GetExternalIPAddress", &[], deadline)?;
    let text = arg(&out, "NewExternalIPAddress")?;
    text.parse().map_err(|_| {
        IgdError::Protocol(format!(
            "external address `{text}` is not an IP address (not connected?)"
        ))
    })
}

/// Add (or refresh) a mapping; returns the external port granted.
pub fn add_mapping(gw: &Gateway, args: &MapArgs, deadline: Deadline) -> Result<u16, IgdError> {
    if gw.is_v2() {
        let out = soap(gw, "AddAnyPortMapping", &args.soap_args(), deadline)?;
        let port: u16 = arg(&out, "NewReservedPort")?
            .parse()
            .map_err(|_| IgdError::Protocol("NewReservedPort is not a port".into()))?;
        if port == 0 {
            return Err(IgdError::Protocol("gateway reserved port 0".into()));
        }
        Ok(port)
    } else {
        soap(gw, "AddPortMapping", &args.soap_args(), deadline)?;
        Ok(args.external_port)
    }
}

fn lookup_args(protocol: &str, external_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", external_port.to_string()),
        ("NewProtocol", protocol.to_string()),
    ]
}

/// Who a mapping forwards to: (internal client, internal port).
pub fn get_mapping(
    gw: &Gateway,
    protocol: &str,
    external_port: u16,
    deadline: Deadline,
) -> Result<(IpAddr, u16), IgdError> {
    let out = soap(
        gw,
        "GetSpecificPortMappingEntry",
        &lookup_args(protocol, external_port),
        deadline,
    )?;
    let client = arg(&out, "NewInternalClient")?
        .parse()
        .map_err(|_| IgdError::Protocol("NewInternalClient is not an address".into()))?;
    let port = arg(&out, "NewInternalPort")?
        .parse()
        .map_err(|_| IgdError::Protocol("NewInternalPort is not a port".into()))?;
    Ok((client, port))
}

/// Delete a mapping.
pub fn delete_mapping(
    gw: &Gateway,
    protocol: &str,
    external_port: u16,
    deadline: Deadline,
) -> Result<(), IgdError> {
    soap(
        gw,
        "DeletePortMapping",
        &lookup_args(protocol, external_port),
        deadline,
    )
    .map(|_| ())
}
