//! What a real miniupnpd sends, byte for byte, and what the kernel lists:
//! raw exchanges with plain sockets from the host namespace of the
//! dual-stack NAT lab (SSDP, HTTP, SOAP for IGD and the IPv6 firewall,
//! NAT-PMP, PCP), and the host's socket tables (`/proc/net`, sock_diag).
//! Each capture must parse, with the project's own parsers, to what was
//! asked: an interoperability test of the codecs against the real thing.
//!
//! With `P2PB_FUZZ_SEEDS=DIR` each capture is also written to
//! `DIR/TARGET/NAME`, in the input shape of fuzz target TARGET
//! (`cargo xtask fuzz-seeds` collects them into `fuzz/corpus/`).

#[path = "lab/mod.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab::v6::{GW_LAN_IP6, HOST_IP6, upnp_url6};
use lab::{GW_LAN_IP, GatewayOptions, HOST_IP, Lab, Ns, WAN_IP};
use p2pbroker::daemon::ownership::{SocketEntry, parse_line, verdict};
use p2pbroker::daemon::sockdiag::{self, Batch};
use p2pbroker::gate::Transport;
use p2pbroker::text::escaped;
use p2pbroker_mode_nat_pmp::proto as pmp;
use p2pbroker_mode_pcp::proto as pcp;
use p2pbroker_mode_upnp_igd::http::{
    HTTP_MAX_RESPONSE, build_get, build_soap_post, parse_response,
};
use p2pbroker_mode_upnp_igd::url::{HttpUrl, parse_url};
use p2pbroker_mode_upnp_igd::xml::{self, SoapReply};
use p2pbroker_mode_upnp_igd::{origin, pinhole, ssdp};

/// One exchange (connect, send, every read) gives up after this: the
/// gateway is two veths away and answers in milliseconds.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SSDP answers are collected: miniupnpd waits up to MX (1 s)
/// before answering a search.
const SSDP_WAIT: Duration = Duration::from_millis(2500);
/// The nonce of our PCP requests: the `pcp` fuzz target's, so the seeds
/// get past its nonce check.
const PCP_NONCE: [u8; 12] = [0x5a; 12];

/// Where captures go, when `P2PB_FUZZ_SEEDS` names a folder.
struct Seeds(Option<PathBuf>);

impl Seeds {
    fn from_env() -> Seeds {
        Seeds(std::env::var_os("P2PB_FUZZ_SEEDS").map(PathBuf::from))
    }

    /// Keep `bytes` as seed `name` of fuzz target `target`.
    fn keep(&self, target: &str, name: &str, bytes: &[u8]) {
        if let Some(dir) = &self.0 {
            let dir = dir.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), without_kernel_release(bytes)).unwrap();
        }
    }
}

/// `bytes` with this machine's kernel release, which miniupnpd writes
/// into its SERVER headers (`Debian/RELEASE UPnP/1.1 …`), replaced by
/// Debian's version: the committed seeds say nothing about the machine
/// that made them. (A header, so no Content-Length changes.)
fn without_kernel_release(bytes: &[u8]) -> Vec<u8> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = format!("/{} ", release.trim());
    if release.len() < 4 {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest
        .windows(release.len())
        .position(|w| w == release.as_bytes())
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"/12 ");
        rest = &rest[at + release.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Untrusted bytes as text safe to print.
fn shown(b: &[u8]) -> String {
    escaped(&String::from_utf8_lossy(b))
}

/// Send `request` over TCP to `to` and read until the peer closes or
/// [`HTTP_MAX_RESPONSE`] is passed; bounded by [`EXCHANGE_TIMEOUT`]. Runs
/// in the caller's network namespace.
fn tcp_exchange(to: SocketAddr, request: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let mut s = TcpStream::connect_timeout(&to, EXCHANGE_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s.set_write_timeout(Some(EXCHANGE_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // miniupnpd answers `Connection: close` requests and closes: read the
    // whole response as it sent it.
    while out.len() <= HTTP_MAX_RESPONSE {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{to}: no end of response within 5 s");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{to}: {e} after {} bytes", out.len()),
        }
    }
    out
}

/// Send `request` over UDP from `from` to `to` and return the first
/// datagram that comes back from `to`; retried 3 times, a second each.
fn udp_exchange(from: SocketAddr, to: SocketAddr, request: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind(from).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 1100];
    for _ in 0..3 {
        s.send_to(request, to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match s.recv_from(&mut buf) {
                Ok((n, peer)) if peer == to => return buf[..n].to_vec(),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    panic!("no answer from {to} within 3 s");
}

/// Every SSDP answer to `searches` (M-SEARCH requests), sent from `from`
/// to `group`: (responder, bytes).
fn ssdp_search(
    from: SocketAddr,
    group: SocketAddr,
    searches: Vec<Vec<u8>>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let s = UdpSocket::bind(from).unwrap();
    for m in &searches {
        s.send_to(m, group).unwrap();
    }
    let deadline = Instant::now() + SSDP_WAIT;
    let mut answers = Vec::new();
    let mut buf = [0u8; 1500];
    // Bounded by the deadline and by a count no gateway reaches honestly.
    while answers.len() < 64 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, peer)) => answers.push((peer, buf[..n].to_vec())),
            Err(_) => break,
        }
    }
    answers
}

/// The type and version of a URN, e.g. `InternetGatewayDevice-1`.
fn urn_tail(st: &str) -> String {
    let mut parts = st.rsplit(':');
    let version = parts.next().unwrap_or_default();
    format!("{}-{version}", parts.next().unwrap_or_default())
}

/// A UPnP service of the gateway, reached over HTTP/SOAP from the host
/// namespace; every response is kept as seeds.
struct Igd<'a> {
    lab: &'a Lab,
    seeds: &'a Seeds,
    service_type: String,
    control: HttpUrl,
}

/// GET `url` from the host namespace; keeps the whole response and its
/// body as seeds `miniupnpd-http-NAME` and `miniupnpd-NAME`.
fn get(lab: &Lab, seeds: &Seeds, url: &HttpUrl, name: &str) -> String {
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
    fn ok(&self, action: &str, args: &[(&str, String)], name: &str) -> Vec<(String, String)> {
        match self.call(action, args, name) {
            SoapReply::Ok(out) => out,
            SoapReply::Fault { code, description } => {
                panic!("{action}: UPnPError {code} {}", escaped(&description))
            }
        }
    }

    /// A call that must be refused: its UPnPError code.
    fn fault(&self, action: &str, args: &[(&str, String)], name: &str) -> u16 {
        match self.call(action, args, name) {
            SoapReply::Fault { code, .. } => code,
            SoapReply::Ok(out) => panic!("{action} ({name}) accepted: {out:?}"),
        }
    }
}

/// Output argument `name`.
fn arg<'a>(out: &'a [(String, String)], name: &str) -> &'a str {
    out.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

/// AddPortMapping's arguments, as the upnp-igd MOD sends them.
fn map_args(external: u16, client: &str, internal: u16) -> Vec<(&'static str, String)> {
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
fn lookup_args(external: u16) -> Vec<(&'static str, String)> {
    vec![
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", external.to_string()),
        ("NewProtocol", "TCP".to_string()),
    ]
}

/// Check every SSDP answer (from the gateway, announcing `root`; one for
/// each search target `searched`) and keep each as seed
/// `miniupnpd-KIND-ST`.
fn check_ssdp(
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

#[test]
fn miniupnpd_igd_answers_parse_to_what_was_asked() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let seeds = Seeds::from_env();
    let root = lab.upnp_url();

    // SSDP: every answer is the gateway's, announcing its description.
    let searches = ssdp::SEARCH_TARGETS.map(ssdp::build_msearch).to_vec();
    let from: SocketAddr = format!("{HOST_IP}:0").parse().unwrap();
    let group: SocketAddr = ssdp::SSDP_ADDR.parse().unwrap();
    let answers = lab.in_ns(Ns::Host, move || ssdp_search(from, group, searches));
    check_ssdp(
        &answers,
        GW_LAN_IP,
        &root,
        &seeds,
        "ssdp",
        &ssdp::SEARCH_TARGETS,
    );

    // The description names a WAN service and the IPv6 firewall, both on
    // the gateway.
    let base = parse_url(&root).unwrap();
    let desc = get(&lab, &seeds, &base, "rootDesc.xml");
    let wan = xml::parse_description(&desc, &base)
        .unwrap()
        .expect("a WAN service");
    assert!(
        xml::WAN_SERVICES.contains(&wan.service_type.as_str()),
        "{}",
        wan.service_type
    );
    assert_eq!(wan.control.addr, base.addr);
    let fw = xml::parse_firewall6(&desc, &base)
        .unwrap()
        .expect("the IPv6 firewall");
    assert_eq!(fw.addr, base.addr);
    let igd = Igd {
        lab: &lab,
        seeds: &seeds,
        service_type: wan.service_type,
        control: wan.control,
    };

    let out = igd.ok("GetExternalIPAddress", &[], "GetExternalIPAddress");
    assert_eq!(arg(&out, "NewExternalIPAddress"), WAN_IP);
    igd.ok(
        "AddPortMapping",
        &map_args(7100, HOST_IP, 7100),
        "AddPortMapping",
    );
    let out = igd.ok(
        "GetSpecificPortMappingEntry",
        &lookup_args(7100),
        "GetSpecificPortMappingEntry",
    );
    assert_eq!(arg(&out, "NewInternalClient"), HOST_IP);
    assert_eq!(arg(&out, "NewInternalPort"), "7100");
    let index = |i: u32| vec![("NewPortMappingIndex", i.to_string())];
    let out = igd.ok(
        "GetGenericPortMappingEntry",
        &index(0),
        "GetGenericPortMappingEntry",
    );
    assert_eq!(arg(&out, "NewExternalPort"), "7100");
    // Past the last entry: SpecifiedArrayIndexInvalid.
    assert_eq!(
        igd.fault("GetGenericPortMappingEntry", &index(1), "713"),
        713
    );
    // Refusals. External port 0: WildCardNotPermittedInExtPort.
    let port_0 = map_args(0, HOST_IP, 7101);
    assert_eq!(igd.fault("AddPortMapping", &port_0, "716"), 716);
    // secure_mode: a mapping for another LAN host is not this host's to
    // make; miniupnpd 2.3.1 says ConflictInMappingEntry.
    let other = map_args(7102, "10.0.0.3", 7102);
    assert_eq!(igd.fault("AddPortMapping", &other, "718"), 718);
    // Outside the gateway's allow rules (external ports from 1024).
    let low = map_args(80, HOST_IP, 7104);
    assert_eq!(igd.fault("AddPortMapping", &low, "606"), 606);
    assert_eq!(igd.fault("NoSuchAction", &[], "401"), 401);
    // Nothing mapped there: NoSuchEntryInArray to a lookup, yet a delete
    // succeeds (miniupnpd 2.3.1 with nftables).
    let missing = lookup_args(7199);
    assert_eq!(
        igd.fault("GetSpecificPortMappingEntry", &missing, "714"),
        714
    );
    igd.ok("DeletePortMapping", &missing, "DeletePortMapping-missing");
    if igd.service_type.ends_with(":2") {
        let out = igd.ok(
            "AddAnyPortMapping",
            &map_args(7103, HOST_IP, 7103),
            "AddAnyPortMapping",
        );
        assert_eq!(
            arg(&out, "NewReservedPort"),
            "7103",
            "the asked port is free"
        );
        igd.ok(
            "DeletePortMapping",
            &lookup_args(7103),
            "DeletePortMapping-7103",
        );
    }
    igd.ok("DeletePortMapping", &lookup_args(7100), "DeletePortMapping");
    assert_eq!(
        lab.gateway_rules().matches("dnat").count(),
        0,
        "{}",
        lab.gateway_rules()
    );
}

#[test]
fn miniupnpd_ipv6_firewall_answers_parse_to_what_was_asked() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let seeds = Seeds::from_env();
    let root = upnp_url6();

    // SSDP on [ff02::c] over the host's LAN link.
    let searches = ssdp::SEARCH_TARGETS_V6.map(ssdp::build_msearch_v6).to_vec();
    let answers = lab.in_ns(Ns::Host, move || {
        // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
        let link = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert_ne!(link, 0, "no eth0 in the host namespace");
        let group = SocketAddrV6::new("ff02::c".parse().unwrap(), 1900, 0, link);
        let from: SocketAddr = format!("[{HOST_IP6}]:0").parse().unwrap();
        ssdp_search(from, group.into(), searches)
    });
    let searched = ssdp::SEARCH_TARGETS_V6;
    check_ssdp(&answers, GW_LAN_IP6, &root, &seeds, "ssdp6", &searched);

    let base = parse_url(&root).unwrap();
    let desc = get(&lab, &seeds, &base, "rootDesc6.xml");
    let control = xml::parse_firewall6(&desc, &base)
        .unwrap()
        .expect("the IPv6 firewall");
    assert_eq!(control.addr, base.addr, "on the address the host asked");
    let fw = Igd {
        lab: &lab,
        seeds: &seeds,
        service_type: xml::FIREWALL6_SERVICE.to_string(),
        control,
    };

    let out = fw.ok("GetFirewallStatus", &[], "GetFirewallStatus");
    assert_eq!(arg(&out, "FirewallEnabled"), "1");
    assert_eq!(arg(&out, "InboundPinholeAllowed"), "1");
    let args = |port: u16, lease: u32| {
        pinhole::PinholeArgs {
            protocol: 6,
            internal_client: HOST_IP6.parse().unwrap(),
            internal_port: port,
            lease,
        }
        .add_args()
    };
    let out = fw.ok("AddPinhole", &args(7400, 600), "AddPinhole");
    let uid = pinhole::parse_unique_id(&out).unwrap();
    assert_eq!(lab.pinholes().len(), 1, "{}", lab.firewall_rules());
    // A port below 1024: not authorized.
    assert_eq!(
        fw.fault("AddPinhole", &args(80, 600), "AddPinhole-606"),
        606
    );
    // A lease over a day: invalid arguments.
    assert_eq!(
        fw.fault("AddPinhole", &args(7401, 86_401), "AddPinhole-402"),
        402
    );
    let out = fw.ok(
        "UpdatePinhole",
        &pinhole::update_args(uid, 900),
        "UpdatePinhole",
    );
    assert!(out.is_empty(), "{out:?}");
    fw.ok("DeletePinhole", &pinhole::delete_args(uid), "DeletePinhole");
    assert!(lab.pinholes().is_empty(), "{}", lab.firewall_rules());
    // Gone now: miniupnpd 2.3.1 answers 402 (not 704, NoSuchEntry).
    let gone = pinhole::delete_args(uid);
    assert_eq!(
        fw.fault("DeletePinhole", &gone, "DeletePinhole-unknown"),
        402
    );
}

#[test]
fn miniupnpd_natpmp_and_pcp_answers_parse_to_what_was_asked() {
    let lab = Lab::up_dual_stack(GatewayOptions::default());
    let seeds = Seeds::from_env();
    let gw: SocketAddr = format!("{GW_LAN_IP}:{}", pmp::PMP_PORT).parse().unwrap();
    let from: SocketAddr = format!("{HOST_IP}:0").parse().unwrap();
    let ask = |req: Vec<u8>| lab.in_ns(Ns::Host, move || udp_exchange(from, gw, &req));
    let wan: std::net::Ipv4Addr = WAN_IP.parse().unwrap();

    // NAT-PMP.
    let raw = ask(pmp::build_external_address_request().to_vec());
    let e = pmp::parse_external_address_response(&raw).unwrap();
    assert_eq!(e.address, wan.octets());
    seeds.keep("natpmp", "miniupnpd-external-address", &raw);
    for (proto, name, port) in [
        (pmp::PmpProto::Tcp, "tcp", 7500),
        (pmp::PmpProto::Udp, "udp", 7501),
    ] {
        let raw = ask(pmp::build_map_request(proto, port, port, 600).to_vec());
        let m = pmp::parse_map_response(&raw, proto).unwrap();
        assert_eq!(
            (m.internal_port, m.external_port),
            (port, port),
            "the asked port is free"
        );
        assert!((1..=600).contains(&m.lifetime), "{m:?}");
        seeds.keep("natpmp", &format!("miniupnpd-map-{name}"), &raw);
        // Delete: lifetime 0 and external port 0 in the answer's echo.
        let raw = ask(pmp::build_map_request(proto, port, 0, 0).to_vec());
        let m = pmp::parse_map_response(&raw, proto).unwrap();
        assert_eq!((m.internal_port, m.lifetime), (port, 0), "{m:?}");
        seeds.keep("natpmp", &format!("miniupnpd-unmap-{name}"), &raw);
    }
    // An external port the gateway's rules deny (below 1024): it grants
    // the first allowed one instead. (Not sent: an *internal* port the
    // rules deny. miniupnpd 2.3.1 then tries one external port after
    // another, each refused by the same rule, and answered nothing else,
    // not even HTTP, for as long as the lab watched: over 10 s.)
    let raw = ask(pmp::build_map_request(pmp::PmpProto::Tcp, 7502, 80, 600).to_vec());
    let m = pmp::parse_map_response(&raw, pmp::PmpProto::Tcp).unwrap();
    assert_eq!((m.internal_port, m.external_port), (7502, 1024), "{m:?}");
    seeds.keep("natpmp", "miniupnpd-map-other-port", &raw);
    let raw = ask(pmp::build_map_request(pmp::PmpProto::Tcp, 7502, 0, 0).to_vec());
    assert_eq!(
        pmp::parse_map_response(&raw, pmp::PmpProto::Tcp)
            .unwrap()
            .lifetime,
        0
    );
    // An opcode NAT-PMP does not have: UnsupportedOpcode, in 8 bytes.
    let raw = ask(vec![pmp::PMP_VERSION, 3]);
    assert_eq!(&raw[..4], &[0, 128 + 3, 0, 5], "{raw:?}");
    let e = pmp::parse_external_address_response(&raw).unwrap_err();
    assert!(matches!(e, pmp::PmpError::Opcode { got: 131, .. }), "{e:?}");
    seeds.keep("natpmp", "miniupnpd-unsupported-opcode", &raw);
    // A PCP request cut short is answered in NAT-PMP's format (version 0,
    // result 3), which the PCP parser reads as a NAT-PMP-only server.
    let raw = ask(vec![pcp::PCP_VERSION, pcp::PCP_OP_MAP, 0, 0]);
    assert_eq!(&raw[..4], &[0, 128, 0, 3], "{raw:?}");
    let e = pcp::parse_header(&raw, pcp::PCP_OP_MAP);
    assert_eq!(e, Err(pcp::PcpError::NatPmpOnly));
    seeds.keep("natpmp", "miniupnpd-short-pcp-request", &raw);
    seeds.keep("pcp", "miniupnpd-short-request", &raw);

    // PCP over IPv4.
    let host: IpAddr = HOST_IP.parse().unwrap();
    // Any external address of the client's family.
    let map = |client: IpAddr, port: u16, lifetime: u32| {
        let external_ip = match client {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        pcp::build_map(&pcp::MapParams {
            nonce: PCP_NONCE,
            protocol: pcp::PCP_PROTO_TCP,
            internal_port: port,
            external_port: port,
            external_ip,
            lifetime,
            client,
            third_party: None,
        })
    };
    let raw = ask(pcp::build_announce(host));
    let h = pcp::parse_header(&raw, pcp::PCP_OP_ANNOUNCE).unwrap();
    assert_eq!(h.lifetime, 0, "{h:?}");
    seeds.keep("pcp", "miniupnpd-announce", &raw);
    let raw = ask(map(host, 7600, 600));
    let m = pcp::parse_map(&raw, &PCP_NONCE).unwrap();
    assert_eq!((m.internal_port, m.external_port), (7600, 7600));
    assert_eq!(m.external_ip, IpAddr::V4(wan));
    assert_eq!(m.protocol, pcp::PCP_PROTO_TCP);
    seeds.keep("pcp", "miniupnpd-map", &raw);
    let raw = ask(map(host, 7600, 0));
    let m = pcp::parse_map(&raw, &PCP_NONCE).unwrap();
    assert_eq!(m.header.lifetime, 0, "{m:?}");
    seeds.keep("pcp", "miniupnpd-map-delete", &raw);
    // The client field is not the packet's source: ADDRESS_MISMATCH.
    let raw = ask(map("10.0.0.9".parse().unwrap(), 7601, 600));
    let e = pcp::parse_map(&raw, &PCP_NONCE).unwrap_err();
    assert!(
        matches!(e, pcp::PcpError::Result(pcp::PcpResult::AddressMismatch, _)),
        "{e:?}"
    );
    seeds.keep("pcp", "miniupnpd-map-address-mismatch", &raw);

    // PCP over IPv6: a pinhole to the host's own address and port.
    let host6: IpAddr = HOST_IP6.parse().unwrap();
    let gw6: SocketAddr = format!("[{GW_LAN_IP6}]:{}", pcp::PCP_PORT).parse().unwrap();
    let from6: SocketAddr = format!("[{HOST_IP6}]:0").parse().unwrap();
    let ask6 = |req: Vec<u8>| lab.in_ns(Ns::Host, move || udp_exchange(from6, gw6, &req));
    let raw = ask6(map(host6, 7602, 600));
    let m = pcp::parse_map(&raw, &PCP_NONCE).unwrap();
    assert_eq!((m.external_ip, m.external_port), (host6, 7602));
    seeds.keep("pcp", "miniupnpd-map-v6", &raw);
    let raw = ask6(map(host6, 7602, 0));
    assert_eq!(pcp::parse_map(&raw, &PCP_NONCE).unwrap().header.lifetime, 0);
    assert!(lab.pinholes().is_empty(), "{}", lab.firewall_rules());
}

/// What the host namespace's socket tables said about a few sockets.
struct Tables {
    /// `/proc/net/NAME` text by NAME.
    proc_net: Vec<(&'static str, String)>,
    /// sock_diag dumps.
    diag: Vec<Dump>,
    /// The sockets' (local address, transport, inode).
    sockets: Vec<(SocketAddr, Transport, u64)>,
}

/// One sock_diag dump as the kernel answered it.
struct Dump {
    /// What was asked, for seed names and messages.
    name: &'static str,
    /// The port asked for (`None`: the whole table).
    port: Option<u16>,
    family: u8,
    transport: Transport,
    /// Each batch received.
    batches: Vec<Vec<u8>>,
}

/// One sock_diag dump, raw: every batch until NLMSG_DONE.
fn diag_dump(family: u8, transport: Transport, port: Option<u16>) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    sockdiag::dump_batches(family, transport, port, |b| {
        batches.push(b.to_vec());
        sockdiag::parse(b, sockdiag::DUMP_SEQ, port, &mut Vec::new())
    })
    .unwrap_or_else(|e| panic!("sock_diag dump: {e}"));
    batches
}

/// The socket's inode, as `/proc/net` and sock_diag list it.
fn inode(fd: &impl std::os::fd::AsRawFd) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .ino()
}

/// In the host namespace: a TCP listener and a UDP socket per family, and
/// one accepted connection; then the tables.
fn socket_tables() -> Tables {
    use std::net::TcpListener;
    let l4 = TcpListener::bind(format!("{HOST_IP}:7300")).unwrap();
    let l6 = TcpListener::bind("[::]:7301").unwrap();
    let u4 = UdpSocket::bind("0.0.0.0:7302").unwrap();
    let u6 = UdpSocket::bind(format!("[{HOST_IP6}]:7303")).unwrap();
    let client = TcpStream::connect_timeout(&l4.local_addr().unwrap(), EXCHANGE_TIMEOUT).unwrap();
    let (served, _) = l4.accept().unwrap();
    let sockets = vec![
        (l4.local_addr().unwrap(), Transport::Tcp, inode(&l4)),
        (l6.local_addr().unwrap(), Transport::Tcp, inode(&l6)),
        (u4.local_addr().unwrap(), Transport::Udp, inode(&u4)),
        (u6.local_addr().unwrap(), Transport::Udp, inode(&u6)),
    ];
    // thread-self: /proc/net is the process leader's namespace, not this
    // thread's.
    let proc_net = ["tcp", "tcp6", "udp", "udp6"]
        .map(|t| {
            (
                t,
                std::fs::read_to_string(format!("/proc/thread-self/net/{t}")).unwrap(),
            )
        })
        .to_vec();
    let (v4, v6) = (libc::AF_INET as u8, libc::AF_INET6 as u8);
    let diag = [
        ("tcp-7300", 7300, v4, Transport::Tcp),
        ("tcp6-7301", 7301, v6, Transport::Tcp),
        ("udp-7302", 7302, v4, Transport::Udp),
        ("udp6-all", 0, v6, Transport::Udp),
        ("tcp-all", 0, v4, Transport::Tcp),
    ]
    .into_iter()
    .map(|(name, port, family, transport)| {
        let port = Some(port).filter(|p| *p != 0);
        let batches = diag_dump(family, transport, port);
        Dump {
            name,
            port,
            family,
            transport,
            batches,
        }
    })
    .collect();
    drop((client, served));
    Tables {
        proc_net,
        diag,
        sockets,
    }
}

/// A `proc_net` seed: the endpoint and requester its checks read from the
/// first 8 bytes (address, port, uid 0, transport), then the table.
fn proc_net_seed(endpoint: SocketAddr, transport: Transport, table: &str) -> Vec<u8> {
    let ip = match endpoint.ip().to_canonical() {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(_) => HOST_IP.parse::<std::net::Ipv4Addr>().unwrap().octets(),
    };
    let mut seed = ip.to_vec();
    seed.extend_from_slice(&endpoint.port().to_be_bytes());
    seed.push(0);
    seed.push(u8::from(transport == Transport::Udp));
    seed.push(b'\n');
    seed.extend_from_slice(table.as_bytes());
    seed
}

#[test]
fn the_kernels_socket_tables_list_the_lab_hosts_sockets() {
    // Dual stack for the IPv6 sockets; the gateway's services go unused.
    let lab = Lab::up_dual_stack(GatewayOptions {
        upnp: false,
        natpmp: false,
    });
    let seeds = Seeds::from_env();
    let t = lab.in_ns(Ns::Host, socket_tables);

    // /proc/net: each socket once, with its inode, owned by root; the
    // verdict grants root exactly it.
    let all: Vec<SocketEntry> = t
        .proc_net
        .iter()
        .flat_map(|(_, text)| text.lines().filter_map(parse_line))
        .collect();
    for (name, text) in &t.proc_net {
        assert!(
            text.trim_start().starts_with("sl"),
            "{name}: {}",
            escaped(text)
        );
        let (addr, transport, ino) = t
            .sockets
            .iter()
            .find(|(a, tr, _)| {
                name.starts_with(if *tr == Transport::Tcp { "tcp" } else { "udp" })
                    && a.is_ipv6() == name.ends_with('6')
            })
            .unwrap();
        let e = all
            .iter()
            .find(|e| e.inode == *ino)
            .unwrap_or_else(|| panic!("{name}: no inode {ino}: {}", escaped(text)));
        assert_eq!((e.local, e.uid), (*addr, 0), "{name}");
        // A wildcard socket receives for the host's address too.
        let endpoint = match addr.ip().is_unspecified() {
            true => SocketAddr::new(HOST_IP.parse().unwrap(), addr.port()),
            false => *addr,
        };
        assert_eq!(
            verdict(&all, *transport, endpoint, 0),
            Ok(vec![*ino]),
            "{name}"
        );
        seeds.keep(
            "proc_net",
            &format!("lab-{name}"),
            &proc_net_seed(*addr, *transport, text),
        );
    }
    let established = all
        .iter()
        .filter(|e| e.state == 1 && e.local.port() == 7300)
        .count();
    assert_eq!(established, 1, "the accepted connection");

    // sock_diag: the port's sockets, and the same inodes as /proc/net.
    for d in &t.diag {
        let (name, port) = (d.name, d.port);
        let mut found = Vec::new();
        let mut last = Ok(Batch::More);
        for b in &d.batches {
            last = sockdiag::parse(b, 1, port, &mut found);
        }
        assert_eq!(last, Ok(Batch::Done), "{name}");
        let ours: Vec<&(SocketAddr, Transport, u64)> = t
            .sockets
            .iter()
            .filter(|(a, tr, _)| {
                *tr == d.transport
                    && a.is_ipv6() == (i32::from(d.family) == libc::AF_INET6)
                    && port.is_none_or(|p| a.port() == p)
            })
            .collect();
        assert!(!ours.is_empty(), "{name}");
        for (addr, _, ino) in ours {
            let e = found
                .iter()
                .find(|e| e.inode == *ino)
                .unwrap_or_else(|| panic!("{name}: no inode {ino} in {found:?}"));
            assert_eq!((e.local, e.uid), (*addr, 0), "{name}");
        }
        // The target's input: [seq hi, seq lo, port hi, port lo, reply].
        let prefix = |bytes: &[u8]| {
            let mut s = vec![0, 1];
            s.extend_from_slice(&port.unwrap_or(0).to_be_bytes());
            s.extend_from_slice(bytes);
            s
        };
        for (i, b) in d.batches.iter().enumerate() {
            seeds.keep("sock_diag", &format!("lab-{name}-batch{i}"), &prefix(b));
        }
        if d.batches.len() > 1 {
            seeds.keep(
                "sock_diag",
                &format!("lab-{name}-whole"),
                &prefix(&d.batches.concat()),
            );
        }
    }
}
