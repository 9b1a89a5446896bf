//! Test MOD `hostile`: `probe` misbehaves as config `scenario` says, so each
//! protection of the host is tried by one test. `info` is well-behaved (the
//! broker calls it at load).
//!
//! Scenarios: loop, memory-bomb, stack-overflow, panic, trap, udp-send,
//! tcp-connect, bind, recv, giant-string, giant-list, poll-forever,
//! garbage-handle, garbage-config, ok. Socket scenarios use config `target`.

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

    fn map(_: MapRequest) -> Result<Mapping, ModeError> {
        Err(ModeError::Unsupported("hostile maps nothing".into()))
    }

    fn renew(current: Mapping, _: u32) -> Result<Mapping, ModeError> {
        Ok(current)
    }

    fn unmap(_: Mapping) -> Result<(), ModeError> {
        Ok(())
    }
}

p2pbroker_mode_sdk::export_mode!(Hostile);
