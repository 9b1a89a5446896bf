//! The upnp-igd MOD against scripted fake IGDs: HTTP servers on loopback
//! for 718 and 725 here, hostile and broken replies and the error kind
//! each gives ([`replies`]), IPv6 pinholes on an IGD at `[::1]` with the
//! error codes miniupnpd does not produce ([`pinholes`]), and SSDP answers
//! from the gateway and from impostors in a private network namespace
//! ([`ssdp`], needs root). Each ends in its specific typed error, bounded
//! in time; no hang, no crash. The MOD gets the grants its manifest asks
//! for, on a network whose default gateway is the fake.

#[path = "harness/mod.rs"]
mod harness;

#[path = "upnp_fake/grants.rs"]
mod grants;
#[path = "upnp_fake/pinholes.rs"]
mod pinholes;
#[path = "upnp_fake/replies.rs"]
mod replies;
#[path = "upnp_fake/ssdp.rs"]
mod ssdp;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use p2pbroker::sandbox::limits::Limits;
use p2pbroker::sandbox::wit::{MapRequest, ModeError, Transport};
use p2pbroker::sandbox::{Mode, ModeHost, Op, Output};

use harness::igd::{Answer, Script, fake_igd, soap_ok};

const UPNP: &str = "modes/upnp-igd";

const DESC: &str = r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl</controlURL></service>
</serviceList></device></root>"#;

/// A well-behaved IGD whose AddPortMapping answers come from `add`.
fn igd(add: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Script {
    Arc::new(move |path, action, body| match (path, action) {
        ("/desc.xml", _) => Answer::Ok(DESC.into()),
        (_, "GetExternalIPAddress") => soap_ok(
            action,
            "<NewExternalIPAddress>203.0.113.9</NewExternalIPAddress>",
        ),
        (_, "AddPortMapping") => add(body),
        (_, "DeletePortMapping") => soap_ok(action, ""),
        _ => Answer::Fault(401),
    })
}

/// Config for short calls, plus `extra`.
fn config<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut c = vec![("timeout_ms", "1500"), ("probe_timeout_ms", "1500")];
    c.extend_from_slice(extra);
    c
}

/// The MOD with `grants` and `config`, on a network whose only default
/// gateway is `gateway`.
async fn load(
    host: &ModeHost,
    grants: &[String],
    config: &[(&str, &str)],
    gateway: IpAddr,
) -> Mode {
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    let spec = harness::spec(&grants, config, Limits::default());
    harness::load_on(host, UPNP, spec, harness::gateways(&[gateway])).await
}

/// The MOD with its manifest's grants, told to use the fake IGD at `igd`
/// (config `location`), which is the host's default gateway.
async fn mode(host: &ModeHost, igd: SocketAddr) -> Mode {
    let location = format!("http://{igd}/desc.xml");
    let grants = harness::manifest_grants(UPNP);
    load(host, &grants, &config(&[("location", &location)]), igd.ip()).await
}

fn request(permanent_allowed: bool) -> MapRequest {
    MapRequest {
        transport: Transport::Tcp,
        internal: "127.0.0.1:4000".parse::<SocketAddr>().unwrap().into(),
        external_port: None,
        lifetime: 600,
        permanent_allowed,
        probe_state: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conflict_718_moves_to_another_port_never_zero() {
    let (host, _) = harness::host();
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let (addr, seen) = fake_igd(igd(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n <= 2 {
            Answer::Fault(718)
        } else {
            soap_ok("AddPortMapping", "")
        }
    }))
    .await;
    let r = mode(&host, addr).await.call(Op::Map(request(false))).await;
    let Ok(Output::Mapping(m)) = r.result else {
        panic!("{:?}", r.result)
    };
    let ext = SocketAddr::from(m.external);
    assert!(ext.port() >= 1024 && ext.port() != 4000, "{ext}");
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("AddPortMapping"))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_only_725_needs_the_policy_and_then_gets_lease_zero() {
    let (host, _) = harness::host();
    let script = || {
        igd(|body| {
            if body.contains("<NewLeaseDuration>0<") {
                soap_ok("AddPortMapping", "")
            } else {
                Answer::Fault(725)
            }
        })
    };
    let (addr, _) = fake_igd(script()).await;
    let m = mode(&host, addr).await;
    let r = m.call(Op::Map(request(false))).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Unsupported(s) if s.contains("725")),
        "{:?}",
        r.result
    );
    let r = m.call(Op::Map(request(true))).await;
    let Ok(Output::Mapping(mapping)) = r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!(
        mapping.lifetime, 0,
        "a permanent lease is reported as such, for the journal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_upnp_errors() {
    let (host, _) = harness::host();
    for (code, want) in [
        (606u16, "denied"),
        (501, "unavailable"),
        (402, "invalid-request"),
    ] {
        let (addr, _) = fake_igd(igd(move |_| Answer::Fault(code))).await;
        let r = mode(&host, addr).await.call(Op::Map(request(false))).await;
        assert_eq!(
            p2pbroker::json::mode_error_kind(harness::mode_error(&r.result)),
            want,
            "{code}: {:?}",
            r.result
        );
    }
}
