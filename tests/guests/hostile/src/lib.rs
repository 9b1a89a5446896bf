//! Test MOD `hostile`: `probe` misbehaves as config `scenario` says, so each
//! protection of the host is tried by one test. `info` is well-behaved (the
//! broker calls it at load).
//!
//! Scenarios: loop, memory-bomb, stack-overflow, panic, trap, udp-send,
//! tcp-connect, bind, recv, giant-string, giant-list, poll-forever,
//! garbage-handle, garbage-config, socket-flood, table-flood, audit-flood,
//! lookup-flood, log-forgery, ok. Socket scenarios use config `target`.
//!
//! `map` misbehaves as config `map` says: `loop` spins; `forge-internal`,
//! `forge-transport` and `forge-lifetime` answer with a mapping that does
//! not match the request; anything else maps honestly (a fake external
//! endpoint, nothing on any network).

use core::hint::black_box;
use core::time::Duration;

use p2pbroker_mode_sdk::host::{self, config};
use p2pbroker_mode_sdk::net::{TcpStream, UdpSocket};
use p2pbroker_mode_sdk::{MapRequest, Mapping, Mode, ModeError, ModeInfo, ProbeReport};

fn report(detail: String, state: Vec<u8>) -> ProbeReport {
    ProbeReport {
        gateway: None,
        external_address: None,
        external_class: None,
        detail,
        state,
    }
}

fn target() -> Result<core::net::SocketAddr, ModeError> {
    config("target")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ModeError::InvalidRequest("config `target` missing or not IP:PORT".into()))
}

/// Depth at which `recurse` would stop: never reached. Read volatilely so
/// the compiler cannot prove the recursion endless and fold it away.
static RECURSE_LIMIT: u64 = u64::MAX;
/// Written volatilely after each recursive call so the call is not a tail
/// call and cannot become a loop (a relaxed atomic store is optimised out).
static mut RECURSE_SINK: u64 = 0;

/// Recursion that must exhaust the *wasm* stack (the host's stack-overflow
/// trap). `black_box(n)` would spill `n` to the shadow stack in linear
/// memory, which can wrap past address 0 first and trap as an
/// out-of-bounds access instead; statics are reached without a stack slot.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    // SAFETY: a plain read of an initialised, immutable static.
    if n == unsafe { core::ptr::read_volatile(&RECURSE_LIMIT) } {
        return 0;
    }
    let below = recurse(n + 1);
    // SAFETY: single-threaded guest; written through a raw pointer, no
    // reference to the static mut is formed.
    unsafe { core::ptr::write_volatile(&raw mut RECURSE_SINK, below) };
    below.wrapping_add(1)
}

#[cfg(target_arch = "wasm32")]
fn garbage_handle() {
    #[link(wasm_import_module = "wasi:sockets/udp@0.2.12")]
    unsafe extern "C" {
        #[link_name = "[resource-drop]udp-socket"]
        fn drop_udp_socket(handle: i32);
    }
    // SAFETY: deliberately unsound: the handle was never issued. The host
    // must refuse it without harm.
    unsafe { drop_udp_socket(0x7fff_fff0) };
}

#[cfg(not(target_arch = "wasm32"))]
fn garbage_handle() {}

/// Create sockets until the host refuses, keeping every one.
fn socket_flood() -> Result<ProbeReport, ModeError> {
    use p2pbroker_mode_sdk::bindings::wasi::sockets::network::IpAddressFamily;
    use p2pbroker_mode_sdk::bindings::wasi::sockets::udp_create_socket::create_udp_socket;
    let mut held = Vec::new();
    for _ in 0..20_000 {
        match create_udp_socket(IpAddressFamily::Ipv4) {
            Ok(s) => held.push(s),
            Err(e) => {
                return Err(ModeError::Unavailable(format!(
                    "socket {} refused: {e:?}",
                    held.len() + 1
                )));
            }
        }
    }
    Ok(report(format!("{} sockets", held.len()), vec![]))
}

/// Hold pollables until the table is full (a trap).
fn table_flood() -> Result<ProbeReport, ModeError> {
    use p2pbroker_mode_sdk::bindings::wasi::clocks::monotonic_clock;
    let mut held = Vec::new();
    for _ in 0..1_000_000 {
        held.push(monotonic_clock::subscribe_duration(1));
    }
    Ok(report(format!("{} pollables", held.len()), vec![]))
}

/// Send to a denied address in a loop: every send is a decision.
fn audit_flood() -> Result<ProbeReport, ModeError> {
    let sock = UdpSocket::bind("0.0.0.0:0".parse().unwrap())?;
    let t = target()?;
    for round in 0..50u16 {
        // 1000 distinct ports, each tried 50 times.
        for p in 0..1000u16 {
            let to = core::net::SocketAddr::new(t.ip(), t.port().wrapping_add(p));
            let _ = black_box(sock.send_to(b"x", to));
        }
        let _ = black_box(round);
    }
    Ok(report("flooded".into(), vec![]))
}

/// Start name lookups until refused.
fn lookup_flood() -> Result<ProbeReport, ModeError> {
    use p2pbroker_mode_sdk::bindings::wasi::sockets::instance_network::instance_network;
    use p2pbroker_mode_sdk::bindings::wasi::sockets::ip_name_lookup::resolve_addresses;
    let net = instance_network();
    let mut held = Vec::new();
    for _ in 0..1000 {
        // An IP literal: resolved without asking any server.
        match resolve_addresses(&net, "127.0.0.1") {
            Ok(s) => held.push(s),
            Err(e) => {
                return Err(ModeError::Unavailable(format!(
                    "lookup {} refused: {e:?}",
                    held.len() + 1
                )));
            }
        }
    }
    Ok(report(format!("{} lookups", held.len()), vec![]))
}

fn forever_poll() {
    use p2pbroker_mode_sdk::bindings::wasi::clocks::monotonic_clock;
    use p2pbroker_mode_sdk::bindings::wasi::io::poll::poll;
    let never = monotonic_clock::subscribe_duration(u64::MAX);
    poll(&[&never]);
}

fn attack(scenario: &str) -> Result<ProbeReport, ModeError> {
    match scenario {
        "ok" => Ok(report("ok".into(), vec![])),
        "loop" => {
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        "memory-bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; 1 << 20];
                block[4096] = 1;
                hoard.push(black_box(block));
            }
        }
        "stack-overflow" => Ok(report(recurse(0).to_string(), vec![])),
        "panic" => panic!("hostile panic"),
        "trap" => {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!()
        }
        "udp-send" => {
            let sock = UdpSocket::bind("0.0.0.0:0".parse().unwrap())?;
            sock.send_to(b"exfiltrate", target()?)?;
            Ok(report("sent".into(), vec![]))
        }
        "tcp-connect" => {
            TcpStream::connect(target()?, Duration::from_secs(2))?;
            Ok(report("connected".into(), vec![]))
        }
        "bind" => {
            UdpSocket::bind(target()?)?;
            Ok(report("bound".into(), vec![]))
        }
        "recv" => {
            let sock = UdpSocket::bind("0.0.0.0:0".parse().unwrap())?;
            sock.send_to(b"ping", target()?)?;
            let mut buf = [0u8; 64];
            let (n, from) = sock.recv_from(&mut buf, Duration::from_secs(2))?;
            Ok(report(format!("{n} bytes from {from}"), vec![]))
        }
        "giant-string" => Ok(report("x".repeat(16 << 20), vec![])),
        "giant-list" => Ok(report(String::new(), vec![7u8; 8 << 20])),
        "poll-forever" => {
            forever_poll();
            Ok(report("woke".into(), vec![]))
        }
        "garbage-handle" => {
            garbage_handle();
            Ok(report("survived a bogus handle".into(), vec![]))
        }
        "socket-flood" => socket_flood(),
        "table-flood" => table_flood(),
        "audit-flood" => audit_flood(),
        "lookup-flood" => lookup_flood(),
        "log-forgery" => {
            host::warn("ok\n2026-11-29T00:00:00Z INFO forged record \u{1b}[2J");
            Err(ModeError::Protocol(
                "bad\nFORGED \u{1b}]0;title\u{7}".into(),
            ))
        }
        "garbage-config" => {
            let huge = "k".repeat(4 << 20);
            if config(&huge).is_some() {
                return Err(ModeError::Protocol("a 4 MiB key found a value".into()));
            }
            for _ in 0..1000 {
                host::warn(&huge);
            }
            Ok(report("survived".into(), vec![]))
        }
        other => Err(ModeError::InvalidRequest(format!(
            "unknown scenario `{other}`"
        ))),
    }
}

struct Hostile;

impl Mode for Hostile {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "hostile".into(),
            version: "0.1.0".into(),
            summary: "misbehaves on purpose".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        attack(&config("scenario").unwrap_or_default())
    }

    fn map(request: MapRequest) -> Result<Mapping, ModeError> {
        let mut m = Mapping {
            transport: request.transport,
            internal: request.internal,
            external: p2pbroker_mode_sdk::addr::from_socket("198.51.100.99:40000".parse().unwrap()),
            lifetime: request.lifetime,
            state: b"hostile".to_vec(),
        };
        match config("map").as_deref() {
            Some("loop") => {
                let _ = attack("loop");
            }
            Some("forge-internal") => {
                // Someone else's service on the same host.
                let mut internal = p2pbroker_mode_sdk::addr::to_socket(&request.internal);
                internal.set_port(5432);
                m.internal = p2pbroker_mode_sdk::addr::from_socket(internal);
            }
            Some("forge-transport") => {
                m.transport = match request.transport {
                    p2pbroker_mode_sdk::Transport::Tcp => p2pbroker_mode_sdk::Transport::Udp,
                    p2pbroker_mode_sdk::Transport::Udp => p2pbroker_mode_sdk::Transport::Tcp,
                };
            }
            Some("forge-lifetime") => m.lifetime = u32::MAX,
            _ => {}
        }
        Ok(m)
    }

    fn renew(current: Mapping, _: u32) -> Result<Mapping, ModeError> {
        Ok(current)
    }

    fn unmap(_: Mapping) -> Result<(), ModeError> {
        Ok(())
    }
}

p2pbroker_mode_sdk::export_mode!(Hostile);
