//! SSDP discovery against scripted responders in a private network
//! namespace (needs root): the default gateway is 127.0.0.1, other LAN
//! hosts are 127.0.0.2 and .3. An answer is fetched only when it comes
//! from the gateway and its LOCATION is on that gateway; the others are
//! ignored with a warn line, their URLs never contacted. And the error
//! kinds: no answer at all is `unavailable`, an IGD that answered but is
//! slow or garbled is `timeout` or `protocol`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use p2pbroker::sandbox::wit::ModeError;
use p2pbroker::sandbox::{Mode, ModeHost, Op, Output};

use crate::harness::igd::{Answer, Script, fake_igd_counting, soap_ok};
use crate::harness::netns;
use crate::harness::ssdp::{SsdpAnswer, fake_ssdp};
use crate::{UPNP, config, harness, igd, load};

const GATEWAY: &str = "127.0.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A fake IGD on `at` (port chosen), answering like [`igd`]; its address
/// and how many connections it accepted.
async fn igd_on(at: &str, script: Script) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, _, accepted) = fake_igd_counting(&format!("{at}:0"), script).await;
    (addr, accepted)
}

fn answer(from: &str, location: String) -> SsdpAnswer {
    SsdpAnswer {
        from: ip(from),
        location,
    }
}

/// The grants the MOD ships with, or grants wide enough for every
/// loopback address (then only the MOD's own checks keep it from them).
fn grant_sets() -> [(&'static str, Vec<String>); 2] {
    [
        ("manifest", harness::manifest_grants(UPNP)),
        (
            "wide",
            vec![
                "udp:send@ssdp".into(),
                "udp:receive@127.0.0.0/8:1900".into(),
                "tcp:connect@127.0.0.0/8:1-65535".into(),
            ],
        ),
    ]
}

/// The MOD searching by SSDP with `grants`, on the namespace's network.
async fn searching(host: &ModeHost, grants: &[String]) -> Mode {
    load(host, grants, &config(&[]), ip(GATEWAY)).await
}

fn good_igd() -> Script {
    igd(|_| soap_ok("AddPortMapping", ""))
}

/// Run `test` in a namespace of its own (each has its own port 1900).
fn isolated<F: Future<Output = ()>>(test: impl FnOnce() -> F + Send + 'static) {
    harness::component_path(UPNP);
    netns::run(test);
}

#[test]
fn no_answer_at_all_is_unavailable() {
    isolated(|| async {
        let searches = fake_ssdp(vec![]).await;
        let (host, _) = harness::host();
        let m = searching(&host, &harness::manifest_grants(UPNP)).await;
        let r = m.call(Op::Probe).await;
        assert!(
            matches!(harness::mode_error(&r.result), ModeError::Unavailable(s) if s.contains("no IGD answered")),
            "{:?}",
            r.result
        );
        assert!(
            searches.load(Ordering::SeqCst) >= 1,
            "the search stayed in the namespace"
        );
    });
}

#[test]
fn an_answer_pointing_at_another_host_is_never_fetched() {
    for (grants_from, grants) in grant_sets() {
        isolated(move || async move {
            let (elsewhere, accepted) = igd_on("127.0.0.3", good_igd()).await;
            let searches = fake_ssdp(vec![answer(
                GATEWAY,
                format!("http://{elsewhere}/desc.xml"),
            )])
            .await;
            let (host, _) = harness::host();
            let m = searching(&host, &grants).await;
            let r = m.call(Op::Probe).await;
            let e = harness::mode_error(&r.result);
            assert!(
                matches!(e, ModeError::Unavailable(s) if s.contains("ignored") && s.contains("not on the responder")),
                "{grants_from}: {e:?}"
            );
            assert!(searches.load(Ordering::SeqCst) >= 1);
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                0,
                "{grants_from}: never fetched"
            );
            let warned: Vec<_> = r.logs.iter().filter(|l| l.level == "warn").collect();
            assert_eq!(
                warned.len(),
                1,
                "{grants_from}: one line per answer: {:?}",
                r.logs
            );
            assert!(
                warned[0]
                    .message
                    .contains("SSDP answer from 127.0.0.1:1900 ignored (never fetched)"),
                "{:?}",
                warned[0]
            );
        });
    }
}

#[test]
fn an_answer_from_a_host_that_is_not_the_gateway_is_ignored() {
    for (grants_from, grants) in grant_sets() {
        isolated(move || async move {
            // The impostor answers first, naming itself; the gateway next.
            let (impostor, impostor_hits) = igd_on("127.0.0.2", good_igd()).await;
            let (gateway, _) = igd_on(GATEWAY, good_igd()).await;
            let _searches = fake_ssdp(vec![
                answer("127.0.0.2", format!("http://{impostor}/desc.xml")),
                answer(GATEWAY, format!("http://{gateway}/desc.xml")),
            ])
            .await;
            let (host, _) = harness::host();
            let m = searching(&host, &grants).await;
            let r = m.call(Op::Probe).await;
            let Ok(Output::Probe(p)) = &r.result else {
                panic!("{grants_from}: {:?}", r.result)
            };
            assert!(p.detail.contains(&gateway.to_string()), "{}", p.detail);
            assert_eq!(
                impostor_hits.load(Ordering::SeqCst),
                0,
                "{grants_from}: never fetched"
            );
            if grants_from == "wide" {
                // The gate let the datagram through: the MOD refused it.
                assert!(
                    r.logs.iter().any(|l| l.level == "warn"
                        && l.message.contains("from 127.0.0.2:1900 ignored")
                        && l.message.contains("not a default gateway")),
                    "{:?}",
                    r.logs
                );
            }
        });
    }
}

/// An IGD that answered SSDP, then hangs, serves a description without
/// a WAN service, or speaks something else: only the second is
/// `unavailable`.
#[test]
fn an_igd_that_answered_fails_with_the_kind_of_its_failure() {
    let raw = |b: &'static [u8]| -> Script { Arc::new(move |_, _, _| Answer::Raw(b.to_vec())) };
    for (script, want) in [
        (
            Arc::new(|_: &str, _: &str, _: &str| Answer::Hang) as Script,
            "timeout",
        ),
        (
            raw(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<x/>"),
            "unavailable",
        ),
        (raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), "protocol"),
    ] {
        isolated(move || async move {
            let (gateway, _) = igd_on(GATEWAY, script).await;
            let _searches =
                fake_ssdp(vec![answer(GATEWAY, format!("http://{gateway}/desc.xml"))]).await;
            let (host, _) = harness::host();
            let m = searching(&host, &harness::manifest_grants(UPNP)).await;
            let r = m.call(Op::Probe).await;
            let e = harness::mode_error(&r.result);
            assert_eq!(p2pbroker::json::mode_error_kind(e), want, "{e:?}");
        });
    }
}
