//! Proof of ownership end to end, in the NAT lab with real miniupnpd: a
//! local user maps only a port its own socket holds; a socket handed to the
//! broker is its own proof, and a lease made `until_closed` ends with it.

#[path = "daemon/mod.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;
#[path = "lab/mod.rs"]
mod lab;

use daemon::{Daemon, Reaped, eventually};
use lab::{GatewayOptions, Lab, Ns};
use p2pbroker_client::{Client, ErrorCode, MapOptions};

const POLICY: &str = r#"version = 1
order = ["upnp-igd"]
[broker]
probe_budget_ms = 2000
probe_cap_ms = 4000
[modes.upnp-igd]
config = { probe_timeout_ms = "1500" }
grants = ["udp:send@ssdp", "udp:receive@gateway:1900", "udp:receive@fe80::/64:1900", "tcp:connect@gateway:1-65535"]
"#;

/// Number of forwards in the gateway's NAT chain.
fn forwards(lab: &Lab) -> usize {
    lab.gateway_rules().matches("dnat").count()
}

/// `p2pb map tcp PORT --detach` as user 65534 (nobody).
fn map_as_nobody(d: &Daemon, port: u16) -> std::process::Output {
    d.cli_as_nobody(&["map", "tcp", &port.to_string(), "--detach", "--json"])
}

#[test]
fn a_user_maps_its_own_listener_and_not_roots() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", POLICY);
    // Let an unprivileged user reach the socket.
    use std::os::unix::fs::PermissionsExt;
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A root service on 7012: nobody may not expose it.
    let _service = Reaped(lab.listen(true, 7012, 120));
    let out = map_as_nobody(&d, 7012);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not-owner") && err.contains("uid 0"), "{err}");
    // Nothing listening at all is refused too, saying what to do.
    let out = map_as_nobody(&d, 7014);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-owner") && err.contains("start the application first"),
        "{err}"
    );
    assert_eq!(forwards(&lab), 0, "{}", lab.gateway_rules());
    // Its own listener it may map, and the public peer reaches it.
    let _app = Reaped(lab.listen_as(65534, true, 7013, 120));
    let out = map_as_nobody(&d, 7013);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lease["owner_uid"], 65534);
    assert_eq!(forwards(&lab), 1);
    assert_eq!(
        lab.reach(true, lease["external"].as_str().unwrap()),
        "hello-from-host"
    );
    // Root may map any user's socket (but one must exist).
    d.json(&["map", "tcp", "7012", "--detach", "--json"]);
    assert_eq!(forwards(&lab), 2);
}

#[test]
fn a_handed_over_socket_is_its_own_proof_and_its_lease_ends_with_it() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", POLICY);
    let path = d.socket.clone();
    // The application's socket lives in the host namespace; the client
    // hands it to the broker with the request.
    let (listener, lease) = lab.in_ns(Ns::Host, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = std::net::TcpListener::bind("0.0.0.0:7015").unwrap();
            let c = Client::open(&path).await.unwrap();
            // The port and transport are the socket's own.
            let opts = MapOptions::tcp(1).persist(true).until_closed(true);
            let lease = c.map_socket(&l, opts).await.unwrap();
            (l, lease)
        })
    });
    assert_eq!(
        lease.internal,
        format!("{}:7015", lab::HOST_IP).parse().unwrap()
    );
    assert_eq!(forwards(&lab), 1, "{}", lab.gateway_rules());
    let listed = d.json(&["list", "--json"]);
    assert_eq!(listed[0]["id"], lease.id);
    // The application closes its socket: the broker notices and releases.
    drop(listener);
    eventually("the lease ends with its socket", 20, || {
        d.json(&["list", "--json"])
            .as_array()
            .is_some_and(|l| l.is_empty())
    });
    eventually("the gateway forgets the mapping", 20, || {
        forwards(&lab) == 0
    });
}

#[test]
fn a_socket_flag_without_a_socket_or_from_another_namespace_is_refused() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start(&lab, "broker", POLICY);
    let path = d.socket.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // This socket is in the test's own namespace, not the broker's: it
        // could name any port of the broker's host.
        let foreign = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let c = Client::open(&path).await.unwrap();
        let e = c
            .map_socket(&foreign, MapOptions::tcp(0))
            .await
            .unwrap_err();
        match e {
            p2pbroker_client::ClientError::Api(a) => {
                assert_eq!(a.code, ErrorCode::NotOwner, "{a}");
                assert!(a.message.contains("network namespace"), "{a}");
            }
            other => panic!("{other}"),
        }
    });
    // `socket: true` on a line with no descriptor attached.
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(
        b"{\"v\":1,\"id\":1,\"op\":\"map\",\"transport\":\"tcp\",\"port\":7016,\"socket\":true}\n",
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(
        line.contains("bad-request") && line.contains("no socket came with the request"),
        "{line}"
    );
    assert_eq!(forwards(&lab), 0);
}

#[test]
fn re_establishing_proves_ownership_again() {
    let mut lab = Lab::up(GatewayOptions::default());
    // A short gateway lifetime, so the renewal that finds the loss comes soon.
    let policy = POLICY.replace("[broker]\n", "[broker]\nmapping_lifetime = 10\n");
    let d = Daemon::start(&lab, "broker", &policy);
    use std::os::unix::fs::PermissionsExt;
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = lab.listen_as(65534, true, 7017, 120);
    let out = map_as_nobody(&d, 7017);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(forwards(&lab), 1);
    // The application goes; a root service takes the port; the gateway
    // reboots. The lease is lost, and mapping it again would expose the
    // root service: it is released instead.
    drop(Reaped(app));
    let _service = Reaped(lab.listen(true, 7017, 120));
    lab.restart_gateway();
    eventually("the lease is released, not re-established", 60, || {
        d.json(&["list", "--json"])
            .as_array()
            .is_some_and(|l| l.is_empty())
    });
    assert!(d.log().contains("no longer allowed"), "{}", d.log());
    eventually("nothing forwards to the root service", 20, || {
        forwards(&lab) == 0
    });
}
