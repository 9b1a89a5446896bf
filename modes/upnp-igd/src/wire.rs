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
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let group: SocketAddr = ssdp::SSDP_ADDR.parse().expect("literal");
    for target in ssdp::SEARCH_TARGETS {
        sock.send_to(&ssdp::build_msearch(target), group)?;
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
            Err(NetError::Timeout) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if found.is_empty() {
        return Err(ModeError::Unavailable(
            "no IGD answered the SSDP search".into(),
        ));
    }
    Ok(found)
}

/// One HTTP request/response, bounded in size and time.
fn exchange(url: &HttpUrl, request: &[u8], deadline: Deadline) -> Result<HttpResponse, IgdError> {
    let stream = TcpStream::connect(url.addr, left(deadline)?)?;
    stream.write_all(request, left(deadline)?)?;
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
    http::parse_response(&body).map_err(IgdError::Protocol)
}

/// Fetch and parse a device description.
pub fn describe(location: &str, deadline: Deadline) -> Result<Gateway, IgdError> {
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
    let svc = xml::parse_description(&text, &url).map_err(IgdError::Protocol)?;
    Ok(Gateway {
        service_type: svc.service_type,
        control: svc.control,
    })
}

/// Call `action` and return its output arguments.
fn soap(
    gw: &Gateway,
    action: &str,
    args: &[(&str, String)],
    deadline: Deadline,
) -> Result<Vec<(String, String)>, IgdError> {
    let body = xml::build_envelope(&gw.service_type, action, args);
    let req = http::build_soap_post(&gw.control, &gw.service_type, action, &body);
    let resp = exchange(&gw.control, &req, deadline)?;
    let text = String::from_utf8_lossy(&resp.body);
    match xml::parse_soap(&text, action) {
        Ok(xml::SoapReply::Ok(out)) if resp.status == 200 => Ok(out),
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
