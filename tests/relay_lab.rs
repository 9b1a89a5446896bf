//! Relay fallback in the lab (contract 0.1.4 `relay`): behind a symmetric
//! NAT with no UPnP, NAT-PMP or PCP, the turn-relay MOD allocates on the
//! lab's real coturn and the broker carries ChannelData between the relay
//! and a UDP application, which a permitted public peer then reaches.
//! Wrong credentials are a specific error; an unpermitted peer's datagrams
//! never reach the application; an unmap ends the data path.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use daemon::{Daemon, Reaped};
use lab::turn::TURN_TLS_PORT;
use lab::{GatewayOptions, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP, TURN_PASSWORD, TURN_USER};

fn policy(password: &str) -> String {
    policy_with(password, "")
}

fn policy_with(password: &str, broker: &str) -> String {
    format!(
        "version = 1\norder = [\"turn-relay\"]\n[broker]\n{broker}\n\
         [[services.turn]]\nurl = \"turn:{PUB_IP}:3478\"\nusername = \"{TURN_USER}\"\n\
         credential = \"{password}\"\n\
         [modes.turn-relay]\ngrants = [\"udp:send,receive@turn:1-65535\", \"tcp:connect@turn:1-65535\"]\n"
    )
}

fn symmetric_lab() -> Lab {
    Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat: NatKind::Symmetric,
    })
}

fn start(lab: &Lab, name: &str, password: &str) -> Daemon {
    start_policy(lab, name, &policy(password))
}

fn start_policy(lab: &Lab, name: &str, policy: &str) -> Daemon {
    let modes = daemon::modes_folder(&lab.path(&format!("{name}-modes")), &["modes/turn-relay"]);
    Daemon::start_with(&lab.ns(Ns::Host), &lab.path(""), name, policy, &modes, &[])
}

/// From the public peer at `from`, send to `to` and return what comes back
/// within 3 s (`None`: nothing).
fn exchange(lab: &Lab, from: &str, to: SocketAddr) -> Option<(String, SocketAddr)> {
    let from: SocketAddr = from.parse().unwrap();
    lab.in_ns(Ns::Pub, move || {
        let s = UdpSocket::bind(from).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"hi", to).unwrap();
        let mut buf = [0u8; 256];
        let (n, src) = s.recv_from(&mut buf).ok()?;
        Some((String::from_utf8_lossy(&buf[..n]).into_owned(), src))
    })
}

#[test]
fn a_udp_application_behind_a_symmetric_nat_is_reached_through_coturn() {
    let lab = symmetric_lab();
    reached_through_coturn(&lab, &policy(TURN_PASSWORD), 3478, "udp");
}

/// The same with the broker reaching coturn over TCP (RFC 8656 framing on
/// the stream; the relayed leg stays UDP).
#[test]
fn the_relay_is_reached_over_tcp_as_well() {
    let lab = symmetric_lab();
    let url = format!("turn:{PUB_IP}:3478");
    let p = policy(TURN_PASSWORD).replace(&url, &format!("{url}?transport=tcp"));
    reached_through_coturn(&lab, &p, 3478, "tcp");
}

/// And over TLS on 443 (`turns:`), the certificate checked against the CA
/// bundle the policy names (the lab's CA issued coturn's certificate for
/// its address).
#[test]
fn the_relay_is_reached_over_tls_with_the_ca_the_policy_trusts() {
    let lab = symmetric_lab();
    let ca = lab.turn_cert().ca.display().to_string();
    let p = tls_policy(&format!("tls_ca = \"{ca}\""));
    reached_through_coturn(&lab, &p, TURN_TLS_PORT, "tls");
}

/// A `turns:` server whose certificate matches no pin is refused before a
/// TURN byte is sent: `denied`, naming the certificate's fingerprint; no
/// lease, no allocation.
#[test]
fn a_relay_certificate_the_policy_does_not_pin_is_refused_by_its_fingerprint() {
    let lab = symmetric_lab();
    let p = tls_policy(&format!("tls_pin = \"{}\"", "00".repeat(32)));
    let d = start_policy(&lab, "badpin", &p);
    let _app = Reaped(lab.listen(false, 7057, 60));
    let out = d.cli(&["map", "udp", "7057", "--mode", "turn-relay", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied"), "{err}");
    assert!(
        err.contains(&lab.turn_cert().sha256),
        "names the certificate: {err}"
    );
    assert_eq!(d.json(&["list", "--json"]).as_array().unwrap().len(), 0);
    assert_eq!(lab.relay_allocations(), Vec::<u16>::new());
}

/// The policy with coturn's TLS port as its relay, `trust` its tls_pin or
/// tls_ca line.
fn tls_policy(trust: &str) -> String {
    let url = format!("turn:{PUB_IP}:3478");
    policy(TURN_PASSWORD).replace(
        &format!("url = \"{url}\"\n"),
        &format!("url = \"turns:{PUB_IP}:{TURN_TLS_PORT}\"\n{trust}\n"),
    )
}

/// Map a UDP application through the relay `p` names (on coturn's `port`,
/// reached over `leg`), permit a peer, exchange, unmap: nothing is left.
fn reached_through_coturn(lab: &Lab, p: &str, port: u16, leg: &str) {
    let d = start_policy(lab, "relay", p);
    let probe = d.json(&["probe", "--json"]);
    assert!(
        probe
            .to_string()
            .contains(&format!("over {}", leg.to_uppercase())),
        "{probe}"
    );
    let _app = Reaped(lab.listen(false, 7050, 120));
    let lease = d.map_relayed(7050);
    assert_eq!(lease["mode"], "turn-relay", "{lease}");
    let relayed: SocketAddr = lease["external"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        relayed.ip().to_string(),
        PUB_IP,
        "relayed on coturn's address: {lease}"
    );
    assert_eq!(
        lease["relay"]["server"],
        format!("{PUB_IP}:{port}"),
        "{lease}"
    );
    assert_eq!(lease["relay"]["leg"], leg, "{lease}");
    assert_eq!(lease["relay"]["peers"].as_array().unwrap().len(), 0);
    assert_eq!(
        lab.relay_allocations(),
        vec![relayed.port()],
        "coturn's own view"
    );

    // TURN admits only permitted peers.
    let peer = format!("{PUB_ALT_IP}:6000");
    assert_eq!(exchange(lab, &peer, relayed), None, "not yet permitted");
    let id = lease["id"].to_string();
    let permitted = d.json(&["permit", &id, &peer, "--json"]);
    let peers = permitted["relay"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{permitted}");
    assert_eq!(peers[0]["peer"], peer.as_str());

    let (answer, from) = exchange(lab, &peer, relayed).expect("the application answers");
    assert_eq!(answer, "hello-from-host");
    assert_eq!(from, relayed, "the answer comes back through the relay");

    // Another port of another address was not permitted.
    assert_eq!(exchange(lab, &format!("{PUB_IP}:6001"), relayed), None);

    // The lease is listed as relayed; unmapping ends the data path.
    let list = d.json(&["list", "--json"]);
    assert_eq!(
        list[0]["relay"]["peers"][0]["peer"],
        peer.as_str(),
        "{list}"
    );
    d.json(&["unmap", &id, "--json"]);
    assert_eq!(exchange(lab, &peer, relayed), None, "released");
    assert_eq!(
        lab.relay_allocations(),
        Vec::<u16>::new(),
        "deleted on coturn"
    );
}

/// coturn allows the lab user two allocations: a third lease is refused
/// as a quota error, the first two stay, and nothing leaks on either side.
#[test]
fn a_full_quota_is_named_and_the_leases_before_it_stay() {
    let lab = symmetric_lab();
    let d = start(&lab, "quota", TURN_PASSWORD);
    let _apps = [7053, 7054, 7056].map(|p| Reaped(lab.listen(false, p, 60)));
    let held = [
        d.map_relayed(7053)["id"].clone(),
        d.map_relayed(7054)["id"].clone(),
    ];
    let out = d.cli(&["map", "udp", "7056", "--mode", "turn-relay", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("486") && err.contains("quota"), "{err}");
    let list = d.json(&["list", "--json"]);
    let ids: Vec<&serde_json::Value> = list.as_array().unwrap().iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, held.iter().collect::<Vec<_>>(), "{list}");
    assert_eq!(lab.relay_allocations().len(), 2);
}

/// A relay that does not answer is a timeout within the MOD's budget, not
/// a hang, and leaves no lease.
#[test]
fn a_relay_that_is_gone_is_a_timeout_not_a_hang() {
    let lab = symmetric_lab();
    let gone = policy(TURN_PASSWORD).replace(":3478", ":3490");
    let d = start_policy(&lab, "gone", &gone);
    let _app = Reaped(lab.listen(false, 7055, 60));
    let began = std::time::Instant::now();
    let out = d.cli(&["map", "udp", "7055", "--mode", "turn-relay", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timeout"), "{err}");
    // The MOD's own budget (timeout_ms, 3 s) bounds it; 30 s is only a
    // guard against a hang, not a speed check.
    assert!(began.elapsed() < Duration::from_secs(30));
    assert_eq!(d.json(&["list", "--json"]).as_array().unwrap().len(), 0);
}

#[test]
fn wrong_credentials_are_named_and_leave_no_lease() {
    let lab = symmetric_lab();
    let d = start(&lab, "badpw", "not-the-password");
    let _app = Reaped(lab.listen(false, 7051, 60));
    let out = d.cli(&["map", "udp", "7051", "--mode", "turn-relay", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials"), "{err}");
    assert!(err.contains(TURN_USER), "{err}");
    let list = d.json(&["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
}

/// With a 10 s lifetime asked, the broker refreshes the allocation (and
/// its peers' permissions) past that lifetime; when coturn restarts and
/// forgets the allocation, the lease is `lost`, relayed anew on a new
/// allocation with its peers permitted again, and reachable again.
#[test]
fn the_relay_refreshes_and_a_relay_restart_is_lost_then_re_established() {
    let mut lab = symmetric_lab();
    let d = start_policy(
        &lab,
        "refresh",
        &policy_with(TURN_PASSWORD, "mapping_lifetime = 10"),
    );
    let _app = Reaped(lab.listen(false, 7052, 180));
    let lease = d.map_relayed(7052);
    assert_eq!(lease["gateway_lifetime"], 10, "{lease}");
    let id = lease["id"].to_string();
    let peer = format!("{PUB_ALT_IP}:6002");
    d.json(&["permit", &id, &peer, "--json"]);
    let relayed = |d: &Daemon| -> SocketAddr {
        d.json(&["list", "--json"])[0]["external"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let renew_at = |d: &Daemon| d.json(&["list", "--json"])[0]["renew_at"].as_u64();
    let first = renew_at(&d).expect("scheduled");
    // Two renewals: more than the 10 s lifetime has passed since the map.
    daemon::eventually("renewed twice", 40, || {
        renew_at(&d).is_some_and(|r| r >= first + 6)
    });
    let (answer, _) = exchange(&lab, &peer, relayed(&d)).expect("still relayed");
    assert_eq!(answer, "hello-from-host");
    // Renewals after the first refresh the permission alone with
    // CreatePermission (the channel is young); a refusal by coturn would
    // have failed the renewal.
    let log = d.log();
    assert!(!log.contains("renew failed"), "{log}");

    lab.restart_relay();
    daemon::eventually("lost, then relayed anew with its peer", 40, || {
        let list = d.json(&["list", "--json"]);
        d.log().contains("lost")
            && list[0]["state"] == "active"
            && list[0]["relay"]["peers"][0]["peer"] == peer.as_str()
    });
    let (answer, from) = exchange(&lab, &peer, relayed(&d)).expect("reachable again");
    assert_eq!(answer, "hello-from-host");
    assert_eq!(from, relayed(&d));
}
