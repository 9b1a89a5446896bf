//! The I/O glue of the UPnP MOD: SSDP over UDP and HTTP/SOAP over TCP,
//! pumping bytes through the pure codecs. Every wait is bounded by the
//! caller's deadline (a slow-drip gateway ends in a timeout).

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use p2pbroker_mode_sdk::clock::Deadline;
use p2pbroker_mode_sdk::net::{NetError, TcpStream, UdpSocket};
use p2pbroker_mode_sdk::{ModeError, escape, host};

use crate::http::{self, HttpResponse};
use crate::igd::{Gateway, IgdError, MapArgs};
use crate::url::{HttpUrl, parse_url};
use crate::{origin, ssdp, xml};

/// After the first complete SSDP answer, how long to keep listening for
/// other gateways. Devices answer after a random delay up to MX, so no
/// grace catches every late one; 20 ms catches gateways answering together
/// with the first and costs a cold map little (the benchmark compares it
/// with igd-next, which stops at the first answer).
const SSDP_GRACE: Duration = Duration::from_millis(20);

/// How many answering IGDs are described at most: a LAN rarely has more
/// than one, and each costs a round trip of the call's budget.
pub const MAX_GATEWAYS: usize = 4;

/// How many ignored SSDP answers are logged per search: enough to see
/// what is wrong, too few to crowd the broker's 256 log lines per call.
const SSDP_IGNORED_LOGGED: usize = 8;

impl From<IgdError> for ModeError {
    fn from(e: IgdError) -> Self {
        crate::igd::to_mode_error(e)
    }
}

fn left(deadline: Deadline) -> Result<Duration, IgdError> {
    deadline.remaining().ok_or(IgdError::Net(NetError::Timeout))
}

/// The config `location` (a root description URL that skips discovery),
/// `None` when unset. It must be on a default gateway, like an SSDP
/// answer's ([`origin::check_location`]).
pub fn configured_location() -> Option<Result<HttpUrl, ModeError>> {
    let text = host::config("location")?;
    Some(
        parse_url(&text)
            .map_err(|e| ModeError::Unavailable(format!("config `location`: {e}")))
            .and_then(|url| {
                on_default_gateway(&url)
                    .map(|()| url)
                    .map_err(|e| ModeError::Denied(format!("config `location`: {e}")))
            }),
    )
}

/// Whether `url` is on a default gateway of the host: a state blob names
/// a URL the MOD would contact, and it must pass the same rule as the
/// `location` config ([`origin::check_location`]).
pub fn on_default_gateway(url: &HttpUrl) -> Result<(), String> {
    origin::check_location(url, &host::default_gateways())
}

/// What a search heard: the description URLs to fetch, first answer
/// first (at most [`MAX_GATEWAYS`]), and how many other answers were
/// ignored, with the first reason.
struct Heard {
    urls: Vec<HttpUrl>,
    ignored: usize,
    first_ignored: Option<String>,
}

impl Heard {
    /// The URLs, or `error` naming what was ignored when there are none.
    fn urls_or(
        self,
        nothing: &str,
        error: fn(String) -> ModeError,
    ) -> Result<Vec<HttpUrl>, ModeError> {
        if !self.urls.is_empty() {
            return Ok(self.urls);
        }
        Err(error(match self.first_ignored {
            None => nothing.to_string(),
            Some(first) => format!(
                "{nothing}; {} answer(s) ignored, the first: {first}",
                self.ignored
            ),
        }))
    }
}

/// Search for IGDs; returns their description URLs, first answer first.
/// Only answers that pass [`origin::check_answer`] count.
pub fn discover(deadline: Deadline) -> Result<Vec<HttpUrl>, ModeError> {
    let group: SocketAddr = ssdp::SSDP_ADDR.parse().expect("literal");
    let requests = ssdp::SEARCH_TARGETS.map(ssdp::build_msearch);
    search(group, &requests, deadline)?
        .urls_or("no IGD answered the SSDP search", ModeError::Unavailable)
}

/// Search for IGDs on the link-local IPv6 group; returns the description
/// URLs, first answer first. [`origin::check_answer`] keeps only URLs on
/// a default gateway, which is never link-local (the broker gives a MOD
/// no interface scope) nor loopback (miniupnpd 2.3.1 falls back to
/// announcing `[::1]` when its LAN interface has no routable IPv6 address).
pub fn discover_v6(deadline: Deadline) -> Result<Vec<HttpUrl>, ModeError> {
    let group: SocketAddr = ssdp::SSDP_ADDR_V6.parse().expect("literal");
    let requests = ssdp::SEARCH_TARGETS_V6.map(ssdp::build_msearch_v6);
    let heard = match search(group, &requests, deadline) {
        // No usable IPv6 source on the link (none at all, or its
        // link-local address still tentative): no IPv6 here, as when no
        // IGD answers.
        Err(e @ (NetError::Unreachable | NetError::Other(_))) => {
            return Err(ModeError::Unsupported(format!(
                "cannot send an IPv6 SSDP search on [ff02::c]:1900 ({e}): this host has no \
                 usable IPv6 on the gateway's link"
            )));
        }
        other => other?,
    };
    heard.urls_or(
        "no IGD answered an IPv6 SSDP search on [ff02::c]:1900 with a LOCATION on an IPv6 \
         default gateway; UPnP opens IPv6 pinholes only for requests made over IPv6 from the \
         host's own address",
        ModeError::Unsupported,
    )
}

/// Send `requests` to `group` and collect the LOCATIONs answered until the
/// deadline, or until a short grace after the first accepted answer. An
/// answer failing [`origin::check_answer`] is never fetched; the first few
/// are logged (warn) with the reason.
fn search(group: SocketAddr, requests: &[Vec<u8>], deadline: Deadline) -> Result<Heard, NetError> {
    let any = match group {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let gateways = host::default_gateways();
    let sock = UdpSocket::bind(any)?;
    for r in requests {
        sock.send_to(r, group)?;
    }
    let mut heard = Heard {
        urls: Vec::new(),
        ignored: 0,
        first_ignored: None,
    };
    // (responder, LOCATION) already judged: one answer per search target.
    let mut refused: Vec<(IpAddr, String)> = Vec::new();
    let mut until = deadline;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = match sock.recv_until(&mut buf, until) {
            Ok(got) => got,
            Err(NetError::Timeout) => return Ok(heard),
            Err(e) => return Err(e),
        };
        let Some(answer) = ssdp::parse_answer(&buf[..n]) else {
            continue;
        };
        match origin::check_answer(&answer.location, from.ip(), &gateways) {
            Ok(url) if !heard.urls.contains(&url) && heard.urls.len() < MAX_GATEWAYS => {
                if heard.urls.is_empty() {
                    let grace = Deadline::after(SSDP_GRACE);
                    if grace.instant_ns() < deadline.instant_ns() {
                        until = grace;
                    }
                }
                heard.urls.push(url);
            }
            Ok(_) => {}
            Err(why) => {
                let key = (from.ip(), origin::shown(&answer.location));
                if refused.contains(&key) {
                    continue;
                }
                heard.ignored += 1;
                if refused.len() < SSDP_IGNORED_LOGGED {
                    host::warn(&format!(
                        "SSDP answer from {from} ignored (never fetched): {why}"
                    ));
                    refused.push(key);
                }
                heard.first_ignored.get_or_insert(why);
            }
        }
    }
}

/// One HTTP request/response, bounded in size ([`http::HTTP_MAX_RESPONSE`])
/// and time (the deadline). Reading stops when the framing says the body is
/// whole; a body without Content-Length and not chunked (HTTP/1.0, or
/// `Connection: close`) is read until the peer closes.
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

/// Fetch a device description's text.
fn fetch_description(url: &HttpUrl, deadline: Deadline) -> Result<String, IgdError> {
    let resp = exchange(url, &http::build_get(url), deadline)?;
    if resp.status != 200 {
        return Err(IgdError::Protocol(format!(
            "description fetch: HTTP {}",
            resp.status
        )));
    }
    String::from_utf8(resp.body).map_err(|_| IgdError::Protocol("description is not UTF-8".into()))
}

/// A service the description at `url` names, as a [`Gateway`], once its
/// control URL is checked to be on that same device.
fn service_at(url: &HttpUrl, service_type: String, control: HttpUrl) -> Result<Gateway, IgdError> {
    origin::check_same_device(&control, url).map_err(IgdError::Protocol)?;
    Ok(Gateway {
        service_type,
        control,
    })
}

/// Fetch a description and return its WANIPv6FirewallControl:1 service,
/// `None` when the device offers none.
pub fn describe_firewall6(url: &HttpUrl, deadline: Deadline) -> Result<Option<Gateway>, IgdError> {
    let text = fetch_description(url, deadline)?;
    let control = xml::parse_firewall6(&text, url).map_err(IgdError::Protocol)?;
    control
        .map(|c| service_at(url, xml::FIREWALL6_SERVICE.to_string(), c))
        .transpose()
}

/// Fetch and parse a device description: its best WAN connection service,
/// `None` when it offers none.
pub fn describe(url: &HttpUrl, deadline: Deadline) -> Result<Option<Gateway>, IgdError> {
    let text = fetch_description(url, deadline)?;
    let svc = xml::parse_description(&text, url).map_err(IgdError::Protocol)?;
    svc.map(|s| service_at(url, s.service_type, s.control))
        .transpose()
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
            "external address `{}` is not an IP address (not connected?)",
            escape(text, 64)
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
