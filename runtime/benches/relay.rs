//! The relay data path (contract 0.1.4 `relay`, runtime/src/relay) in the
//! lab, against coturn's own client on the same relay between the same
//! hosts:
//!
//! - **ours**: a public peer sends to a relayed lease's address; coturn
//!   relays to the broker as ChannelData; the broker hands the datagram to
//!   a UDP echo application behind the symmetric NAT and carries the echo
//!   back. Round-trip time per datagram (median, p99) and, with 64
//!   datagrams in flight, packets/s and Mbit/s echoed, at 100 B and
//!   1,200 B.
//! - **baseline**: the same measurement with the broker taken out: an
//!   application in the host namespace that speaks TURN itself (our
//!   sans-I/O client run natively) and echoes ChannelData straight back.
//!   Measured by the same peer with the same microsecond clock, so the
//!   medians divide: the ratio is what the broker adds.
//! - **theirs**: `turnutils_uclient` in the same host namespace, allocating
//!   on the same coturn, echoing through `turnutils_peer` on the public
//!   peer's address: the same relay legs without the broker. It reports
//!   its average round trip.
//!
//! The two take turns, round by round: the broker's lease is removed and
//! coturn restarted (its quota slots free only when a session times out)
//! before its own client runs, as a user of its own.
//! `cargo bench -p p2pbroker --bench relay` prints a Markdown table.

#[path = "../../tests/daemon/mod.rs"]
mod daemon;
#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;
#[path = "support/relay_baseline.rs"]
mod relay_baseline;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lab::{GatewayOptions, HOST_IP, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP};

const ROUNDS: usize = 3;
const PINGS: usize = 500;
const BURST_SECS: u64 = 2;
const WINDOW: usize = 64;
const APP_PORT: u16 = 7060;
const PEER_PORT: u16 = 6100;
const UCLIENT_PEER_PORT: u16 = 3480;

fn policy() -> String {
    format!(
        "version = 1\norder = [\"turn-relay\"]\n\
         [[services.turn]]\nurl = \"turn:{PUB_IP}:3478\"\nusername = \"{}\"\ncredential = \"{}\"\n\
         [modes.turn-relay]\ngrants = [\"udp:send,receive@turn:1-65535\"]\n",
        lab::TURN_USER,
        lab::TURN_PASSWORD
    )
}

/// A UDP echo application in the host namespace, for the whole run.
fn echo_app(lab: &Lab) {
    let ns = lab.ns(Ns::Host);
    let bound = lab::in_netns(&ns, || UdpSocket::bind((HOST_IP, APP_PORT)).unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Ends with the process.
        while let Ok((n, from)) = bound.recv_from(&mut buf) {
            let _ = bound.send_to(&buf[..n], from);
        }
    });
}

/// Round trips of `size`-byte datagrams from the peer to `to`.
fn pings(lab: &Lab, to: SocketAddr, size: usize) -> Vec<Duration> {
    lab.in_ns(Ns::Pub, move || {
        let s = UdpSocket::bind((PUB_ALT_IP, PEER_PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut out = vec![0u8; size];
        let mut buf = [0u8; 2048];
        let mut rtts = Vec::with_capacity(PINGS);
        for i in 0..PINGS as u32 {
            out[..4].copy_from_slice(&i.to_be_bytes());
            let t = Instant::now();
            s.send_to(&out, to).unwrap();
            // Bounded: a lost datagram times out and is skipped.
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                if n >= 4 && buf[..4] == out[..4] {
                    rtts.push(t.elapsed());
                    break;
                }
            }
        }
        rtts
    })
}

/// Echoed datagrams per second with `WINDOW` in flight for `BURST_SECS`.
fn burst(lab: &Lab, to: SocketAddr, size: usize) -> f64 {
    lab.in_ns(Ns::Pub, move || {
        let s = UdpSocket::bind((PUB_ALT_IP, PEER_PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let out = vec![0u8; size];
        let mut buf = [0u8; 2048];
        let (mut sent, mut echoed) = (0usize, 0usize);
        let t = Instant::now();
        let end = t + Duration::from_secs(BURST_SECS);
        while Instant::now() < end {
            while sent - echoed < WINDOW {
                s.send_to(&out, to).unwrap();
                sent += 1;
            }
            match s.recv_from(&mut buf) {
                Ok(_) => echoed += 1,
                // A loss: give its slot back.
                Err(_) => sent -= (sent - echoed).min(WINDOW),
            }
        }
        echoed as f64 / t.elapsed().as_secs_f64()
    })
}

/// turnutils_uclient's average round trip (ms) for `size`-byte messages.
fn uclient(lab: &Lab, size: usize) -> f64 {
    let out = lab.exec(
        Ns::Host,
        &[
            "turnutils_uclient",
            // Its own user: the quota of one allocation is per user, and
            // coturn frees the broker's slot only when its session ends.
            "-u",
            lab::TURN_USER2,
            "-w",
            lab::TURN_PASSWORD2,
            "-e",
            PUB_ALT_IP,
            "-r",
            &UCLIENT_PEER_PORT.to_string(),
            "-n",
            &PINGS.to_string(),
            "-l",
            &size.to_string(),
            "-m",
            "1",
            // One allocation (no RTCP pair): the lab's quota is one.
            "-c",
            "-z",
            "1",
            PUB_IP,
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for l in text
        .lines()
        .filter(|l| l.contains("Total") || l.contains("Average"))
    {
        eprintln!("turnutils_uclient: {}", l.trim());
    }
    let line = text
        .lines()
        .find(|l| l.contains("Average round trip delay"))
        .unwrap_or_else(|| panic!("turnutils_uclient printed no round trip:\n{text}"));
    line.split_whitespace()
        .skip_while(|w| *w != "delay")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read: {line}"))
}

fn pct(mut v: Vec<Duration>, p: usize) -> f64 {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e3
}

/// The broker's data path alone, on loopback, its runtime on one worker
/// thread: a "relay" socket sends ChannelData through the hub to an echo
/// application and reads the framed echo, against the same two sockets
/// talking directly. Prints the added round trip and packets/s.
fn in_process() {
    use p2pbroker::relay::{PeerChannel, RelayHub, frame};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hub = RelayHub::new(rt.handle().clone());
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    relay
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let app = UdpSocket::bind("127.0.0.1:0").unwrap();
    let app_addr = app.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = app.recv_from(&mut buf) {
            let _ = app.send_to(&buf[..n], from);
        }
    });
    let id = hub.open(relay.local_addr().unwrap()).unwrap();
    let peer = PeerChannel {
        peer: "192.0.2.9:9".parse().unwrap(),
        number: 0x4000,
    };
    hub.keep(id, app_addr, "192.0.2.1:9".parse().unwrap(), &[peer])
        .unwrap();
    let c = hub.get(id).unwrap();
    // The broker's address, as a relay learns it.
    rt.block_on(c.send(&[0u8; 20])).unwrap();
    let mut buf = [0u8; 2048];
    let (_, broker) = relay.recv_from(&mut buf).unwrap();
    println!(
        "| size | through the hub median RTT | p99 | direct median RTT | added median | added p99 | hub packets/s (1 worker) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for size in [100usize, 1200] {
        let mut framed = frame::header(0x4000, size).unwrap().to_vec();
        framed.resize(frame::HEADER + size, 7);
        let plain = vec![7u8; size];
        let rtt = |to: SocketAddr, out: &[u8]| -> Vec<Duration> {
            (0..PINGS * 4)
                .filter_map(|_| {
                    let t = Instant::now();
                    relay.send_to(out, to).unwrap();
                    relay.recv_from(&mut [0u8; 2048]).ok().map(|_| t.elapsed())
                })
                .collect()
        };
        let (hub_rtt, direct) = (rtt(broker, &framed), rtt(app_addr, &plain));
        let (h50, h99, d50, d99) = (
            pct(hub_rtt.clone(), 50),
            pct(hub_rtt, 99),
            pct(direct.clone(), 50),
            pct(direct, 99),
        );
        // Throughput: WINDOW in flight for BURST_SECS.
        let (mut sent, mut echoed) = (0usize, 0usize);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(BURST_SECS) {
            while sent - echoed < WINDOW {
                relay.send_to(&framed, broker).unwrap();
                sent += 1;
            }
            match relay.recv_from(&mut buf) {
                Ok(_) => echoed += 1,
                Err(_) => sent -= (sent - echoed).min(WINDOW),
            }
        }
        // Each echo crosses the hub twice.
        let rate = echoed as f64 / t.elapsed().as_secs_f64();
        println!(
            "| {size} B | {h50:.3} ms | {h99:.3} ms | {d50:.3} ms | {:.1} µs | {:.1} µs | {:.0} echoes/s ({:.0} datagrams/s through it) |",
            (h50 - d50) * 1e3,
            (h99 - d99) * 1e3,
            rate,
            rate * 2.0
        );
        // Drain what the burst left in flight.
        while relay.recv_from(&mut buf).is_ok() {}
    }
    hub.close(id);
}

fn main() {
    in_process();
    let mut lab = Lab::up(GatewayOptions {
        upnp: false,
        natpmp: false,
        nat: NatKind::Symmetric,
    });
    let modes = daemon::modes_folder(&lab.path("bench-modes"), &["modes/turn-relay"]);
    let d = daemon::Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "relaybench",
        &policy(),
        &modes,
        &[],
    );
    echo_app(&lab);
    let peer_port = UCLIENT_PEER_PORT.to_string();
    let _peer = daemon::Reaped(lab.spawn(
        Ns::Pub,
        "turn-peer",
        &["turnutils_peer", "-L", PUB_ALT_IP, "-p", &peer_port],
    ));
    let app = APP_PORT.to_string();
    let permit = format!("{PUB_ALT_IP}:{PEER_PORT}");
    // turnutils_uclient stamps packets with a 1 ms clock: its average is
    // shown as it reports it, not subtracted from ours.
    println!();
    println!(
        "| size | ours median RTT | ours p99 | baseline median RTT | baseline p99 | ratio (medians) | turnutils_uclient avg RTT (1 ms clock) | ours packets/s | baseline packets/s | ours Mbit/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let relay: SocketAddr = format!("{PUB_IP}:3478").parse().unwrap();
    let peer: SocketAddr = permit.parse().unwrap();
    for size in [100usize, 1200] {
        let (mut rtts, mut rates, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        let (mut base_rtts, mut base_rates) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let lease = d.json(&[
                "map",
                "udp",
                &app,
                "--mode",
                "turn-relay",
                "--detach",
                "--json",
            ]);
            let id = lease["id"].to_string();
            let to: SocketAddr = lease["external"].as_str().unwrap().parse().unwrap();
            d.json(&["permit", &id, &permit, "--json"]);
            rtts.extend(pings(&lab, to, size));
            rates.push(burst(&lab, to, size));
            d.json(&["unmap", &id, "--json"]);
            // coturn frees a quota slot only when the session that held
            // it times out: a fresh relay for the baseline and for each of
            // coturn's own runs.
            lab.restart_relay();
            {
                let ns = lab.ns(Ns::Host);
                let socket = lab::in_netns(&ns, || UdpSocket::bind((HOST_IP, 0)).unwrap());
                let creds = (lab::TURN_USER2, lab::TURN_PASSWORD2);
                let b = relay_baseline::start(socket, relay, creds, peer);
                base_rtts.extend(pings(&lab, b.relayed, size));
                base_rates.push(burst(&lab, b.relayed, size));
            }
            lab.restart_relay();
            theirs.push(uclient(&lab, size));
        }
        theirs.sort_by(f64::total_cmp);
        rates.sort_by(f64::total_cmp);
        base_rates.sort_by(f64::total_cmp);
        let (median, p99) = (pct(rtts.clone(), 50), pct(rtts, 99));
        let (base, base_p99) = (pct(base_rtts.clone(), 50), pct(base_rtts, 99));
        let their = theirs[theirs.len() / 2];
        let rate = rates[rates.len() / 2];
        let base_rate = base_rates[base_rates.len() / 2];
        println!(
            "| {size} B | {median:.3} ms | {p99:.3} ms | {base:.3} ms | {base_p99:.3} ms | {:.2}x | {their:.3} ms | {rate:.0} | {base_rate:.0} | {:.1} |",
            median / base,
            rate * size as f64 * 8.0 / 1e6
        );
    }
}
