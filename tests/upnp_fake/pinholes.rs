//! IPv6 pinholes on a fake IGD at `[::1]`, the host's default gateway.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p2pbroker::sandbox::wit::{MapRequest, ModeError};
use p2pbroker::sandbox::{Mode, Op, Output};

use crate::harness;
use crate::harness::igd::{Answer, Script, fake_igd_at, soap_ok};
use crate::{igd, mode, request};

/// An IGD offering IPv6 pinholes at `/fw`, besides a WAN service.
const DESC6: &str = r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1</serviceType><controlURL>/fw</controlURL></service>
</serviceList></device></root>"#;

/// An IPv6 IGD whose firewall actions `fw(action, body)` answers.
fn igd6(fw: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Script {
    Arc::new(move |path, action, body| match path {
        "/desc.xml" => Answer::Ok(DESC6.into()),
        "/fw" => fw(action, body),
        _ => Answer::Fault(401),
    })
}

/// A firewall that grants pinholes with UniqueID 7 and records each body.
fn recording_firewall(bodies: Arc<Mutex<Vec<String>>>) -> Script {
    igd6(move |action, body| {
        bodies.lock().unwrap().push(body.to_string());
        match action {
            "AddPinhole" => soap_ok(action, "<UniqueID>7</UniqueID>"),
            "UpdatePinhole" | "DeletePinhole" => soap_ok(action, ""),
            _ => Answer::Fault(401),
        }
    })
}

fn request6(internal: &str) -> MapRequest {
    MapRequest {
        internal: internal.parse::<SocketAddr>().unwrap().into(),
        ..request(false)
    }
}

async fn pinhole(m: &Mode) -> p2pbroker::sandbox::wit::Mapping {
    match m.call(Op::Map(request6("[::]:4000"))).await.result {
        Ok(Output::Mapping(mapping)) => mapping,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinhole_is_for_the_senders_own_address_then_renewed_and_closed() {
    let (host, _) = harness::host();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (addr, seen) = fake_igd_at("[::1]:0", recording_firewall(bodies.clone())).await;
    let m = mode(&host, addr).await;
    let mapping = pinhole(&m).await;
    // `[::]` asked for the host's own address: the one the IGD sees.
    let me: SocketAddr = "[::1]:4000".parse().unwrap();
    assert_eq!(SocketAddr::from(mapping.internal), me);
    assert_eq!(SocketAddr::from(mapping.external), me, "no translation");
    assert_eq!(mapping.lifetime, 600);
    let add = bodies.lock().unwrap()[0].clone();
    for part in [
        "<RemoteHost></RemoteHost>",
        "<RemotePort>0</RemotePort>",
        "<InternalClient>::1</InternalClient>",
        "<InternalPort>4000</InternalPort>",
        "<Protocol>6</Protocol>",
        "<LeaseTime>600</LeaseTime>",
    ] {
        assert!(add.contains(part), "{part} not in {add}");
    }
    let r = m.call(Op::Renew(mapping, 100_000)).await;
    let Ok(Output::Mapping(renewed)) = r.result else {
        panic!("{:?}", r.result)
    };
    assert_eq!(renewed.lifetime, 86_400, "leases stop at 86400 s");
    let r = m.call(Op::Unmap(renewed)).await;
    assert!(matches!(r.result, Ok(Output::Unmapped)), "{:?}", r.result);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "/desc.xml ",
            "/fw AddPinhole",
            "/fw UpdatePinhole",
            "/fw AddPinhole",
            "/fw DeletePinhole"
        ]
    );
    let bodies = bodies.lock().unwrap();
    assert!(bodies[1].contains("<UniqueID>7</UniqueID><NewLeaseTime>86400</NewLeaseTime>"));
    assert!(bodies[3].contains("<UniqueID>7</UniqueID>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pinhole_errors_are_typed() {
    let (host, _) = harness::host();
    for (code, want) in [
        (606u16, "denied"),
        (703, "denied"),
        (701, "unavailable"),
        (501, "unavailable"),
        (702, "unsupported"),
        (705, "unsupported"),
        (402, "invalid-request"),
        (708, "invalid-request"),
        (709, "protocol"),
    ] {
        let (addr, _) = fake_igd_at("[::1]:0", igd6(move |_, _| Answer::Fault(code))).await;
        let r = mode(&host, addr)
            .await
            .call(Op::Map(request6("[::]:4000")))
            .await;
        let e = harness::mode_error(&r.result);
        assert_eq!(p2pbroker::json::mode_error_kind(e), want, "{code}: {e:?}");
        assert!(format!("{e:?}").contains(&code.to_string()), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn renew_reports_a_lost_or_reused_pinhole() {
    let (host, _) = harness::host();
    // (UpdatePinhole's fault, the UniqueID AddPinhole names on renew,
    // DeletePinhole calls expected).
    for (update, uid_now, deletes) in [
        (Some(704u16), 7u16, 0usize),
        (Some(402), 7, 0),
        (Some(606), 7, 0),
        // The update hit another pinhole with our old ID; ours was gone and
        // the check re-created it as 9: the MOD removes that again.
        (None, 9, 1),
    ] {
        let adds = Arc::new(Mutex::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (adds.clone(), bodies.clone());
        let (addr, seen) = fake_igd_at(
            "[::1]:0",
            igd6(move |action, body| {
                b.lock().unwrap().push(body.to_string());
                match (action, update) {
                    ("AddPinhole", _) => {
                        let mut n = a.lock().unwrap();
                        *n += 1;
                        let uid = if *n == 1 { 7 } else { uid_now };
                        soap_ok(action, &format!("<UniqueID>{uid}</UniqueID>"))
                    }
                    ("UpdatePinhole", Some(code)) => Answer::Fault(code),
                    _ => soap_ok(action, ""),
                }
            }),
        )
        .await;
        let m = mode(&host, addr).await;
        let mapping = pinhole(&m).await;
        let r = m.call(Op::Renew(mapping, 600)).await;
        assert!(
            matches!(harness::mode_error(&r.result), ModeError::MappingLost(_)),
            "{update:?}/{uid_now}: {:?}",
            r.result
        );
        let log = seen.lock().unwrap();
        assert_eq!(
            log.iter().filter(|l| l.ends_with("DeletePinhole")).count(),
            deletes,
            "{log:?}"
        );
        if deletes == 1 {
            assert!(
                bodies
                    .lock()
                    .unwrap()
                    .last()
                    .unwrap()
                    .contains("<UniqueID>9<")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unmap_of_a_gone_pinhole_succeeds_other_refusals_do_not() {
    let (host, _) = harness::host();
    for (code, gone) in [(704u16, true), (402, true), (606, false), (501, false)] {
        let (addr, _) = fake_igd_at(
            "[::1]:0",
            igd6(move |action, _| match action {
                "AddPinhole" => soap_ok(action, "<UniqueID>7</UniqueID>"),
                _ => Answer::Fault(code),
            }),
        )
        .await;
        let m = mode(&host, addr).await;
        let r = m.call(Op::Unmap(pinhole(&m).await)).await;
        assert_eq!(r.result.is_ok(), gone, "{code}: {:?}", r.result);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_requests_the_firewall_cannot_serve_are_refused_up_front() {
    let (host, _) = harness::host();
    // An IGD without WANIPv6FirewallControl:1 (IGD 1): unsupported.
    let (addr, seen) = fake_igd_at("[::1]:0", igd(|_| Answer::Fault(501))).await;
    let r = mode(&host, addr)
        .await
        .call(Op::Map(request6("[::]:4000")))
        .await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Unsupported(m) if m.contains("WANIPv6FirewallControl")),
        "{:?}",
        r.result
    );
    assert_eq!(*seen.lock().unwrap(), ["/desc.xml "], "no SOAP call");
    // Another external port, or port 0: nothing is sent at all.
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (addr, seen) = fake_igd_at("[::1]:0", recording_firewall(bodies)).await;
    let m = mode(&host, addr).await;
    let other_port = MapRequest {
        external_port: Some(4001),
        ..request6("[::]:4000")
    };
    let r = m.call(Op::Map(other_port)).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::Unsupported(_)),
        "{:?}",
        r.result
    );
    let r = m.call(Op::Map(request6("[::1]:0"))).await;
    assert!(
        matches!(harness::mode_error(&r.result), ModeError::InvalidRequest(_)),
        "{:?}",
        r.result
    );
    assert!(seen.lock().unwrap().is_empty());
}
