//! SDK for writing P2P Broker MODs.
//!
//! A MOD is a WebAssembly component implementing the `p2pbroker:mode`
//! contract (`wit/mode.wit`). With this crate an author implements the
//! [`Mode`] trait — the lifecycle, nothing else — and calls
//! [`export_mode!`]; `p2pb mode build` turns the crate into a component.
//!
//! Contract of the SDK:
//! - Guests stay target-agnostic: everything here works on
//!   `wasm32-unknown-unknown` and `wasm32-wasip2`, and the pure parts
//!   ([`classify`](mod@classify), [`addr`]) compile and test on the host.
//! - The network is reached only through [`net`], thin blocking wrappers
//!   over `wasi:sockets` with deadlines; every address passes the broker's
//!   capability gate, and a refusal surfaces as [`net::NetError::Denied`].
//! - Each lifecycle call runs in a fresh instance: keep state in the
//!   `state` blobs of probe reports and mappings, not in statics.
#![warn(missing_docs)]

pub mod addr;
pub mod classify;
pub mod clock;
pub mod connector;
pub mod host;
pub mod http;
pub mod net;
pub mod stream;
pub mod testing;

/// Generated bindings for the `mode` world.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "mode",
        path: "../../wit",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "p2pbroker_mode_sdk::bindings",
    });
}

pub use bindings::p2pbroker::mode::types::{
    AddressClass, MapRequest, Mapping, ModeError, ModeInfo, ProbeReport, Transport,
};
pub use bindings::wasi::sockets::network::{IpAddress, IpSocketAddress};
pub use classify::classify;

/// Longest human-readable text the contract allows (probe `detail`, error
/// reasons), in bytes: the broker rejects a longer one as a contract breach.
pub const TEXT_MAX: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, so a detail
/// or reason built from data of unknown size stays within [`TEXT_MAX`].
pub fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `text` from outside (a gateway's reply, a URL it announced) made safe for
/// a log line or an error reason, at most `max` bytes: control characters,
/// Unicode format characters (bidirectional overrides, zero-width marks)
/// become `\u{..}` escapes and `\` becomes `\\`, so a hostile peer can
/// neither forge lines nor hide text on a terminal. The cut never splits
/// an escape.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let piece = if c == '\\' {
            "\\\\".to_string()
        } else if c.is_control() || is_format(c) {
            format!("\\u{{{:x}}}", u32::from(c))
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Unicode format characters that change how text around them shows
/// (general category Cf, the ones terminals honour).
fn is_format(c: char) -> bool {
    matches!(u32::from(c), 0xad | 0x061c | 0x180e | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb)
}

/// The reason a [`ModeError`] carries, whatever its kind.
pub fn reason(e: &ModeError) -> &str {
    match e {
        ModeError::Unavailable(s)
        | ModeError::Denied(s)
        | ModeError::Conflict(s)
        | ModeError::Timeout(s)
        | ModeError::Protocol(s)
        | ModeError::MappingLost(s)
        | ModeError::Unsupported(s)
        | ModeError::InvalidRequest(s) => s,
    }
}

/// An error of the same kind as `e` with another reason.
pub fn with_reason(e: &ModeError, reason: String) -> ModeError {
    match e {
        ModeError::Unavailable(_) => ModeError::Unavailable(reason),
        ModeError::Denied(_) => ModeError::Denied(reason),
        ModeError::Conflict(_) => ModeError::Conflict(reason),
        ModeError::Timeout(_) => ModeError::Timeout(reason),
        ModeError::Protocol(_) => ModeError::Protocol(reason),
        ModeError::MappingLost(_) => ModeError::MappingLost(reason),
        ModeError::Unsupported(_) => ModeError::Unsupported(reason),
        ModeError::InvalidRequest(_) => ModeError::InvalidRequest(reason),
    }
}

/// `e` with its reason cut to [`TEXT_MAX`]: a reason built from data of
/// unknown size must not turn a clean error into a contract breach (the
/// broker refuses a longer one). A MOD whose reasons quote what peers send
/// applies it to every error it returns. [`export_mode!`] does not: it
/// passes results through as they are, so a test MOD can still try the
/// broker's own contract checks.
pub fn clip_error(e: ModeError) -> ModeError {
    if reason(&e).len() <= TEXT_MAX {
        return e;
    }
    with_reason(&e, clip(reason(&e).to_string(), TEXT_MAX))
}

/// The lifecycle a MOD implements. Each function runs in a fresh instance.
pub trait Mode {
    /// Name, version and summary; must not touch the network.
    fn info() -> ModeInfo;
    /// Is this MOD usable here, and what did it see? Keep it short.
    fn probe() -> Result<ProbeReport, ModeError>;
    /// Establish a mapping.
    fn map(request: MapRequest) -> Result<Mapping, ModeError>;
    /// Extend a mapping for `lifetime` seconds.
    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError>;
    /// Remove a mapping; one already gone is success.
    fn unmap(current: Mapping) -> Result<(), ModeError>;
}

/// Export a type implementing [`Mode`] as the component's lifecycle.
///
/// ```text
/// struct MyMode;
/// impl p2pbroker_mode_sdk::Mode for MyMode { /* ... */ }
/// p2pbroker_mode_sdk::export_mode!(MyMode);
/// ```
#[macro_export]
macro_rules! export_mode {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __P2pbLifecycle;
        impl $crate::bindings::exports::p2pbroker::mode::lifecycle::Guest for __P2pbLifecycle {
            fn info() -> $crate::ModeInfo {
                $crate::install_panic_hook();
                <$t as $crate::Mode>::info()
            }
            fn probe() -> Result<$crate::ProbeReport, $crate::ModeError> {
                $crate::install_panic_hook();
                <$t as $crate::Mode>::probe()
            }
            fn map(request: $crate::MapRequest) -> Result<$crate::Mapping, $crate::ModeError> {
                $crate::install_panic_hook();
                <$t as $crate::Mode>::map(request)
            }
            fn renew(
                current: $crate::Mapping,
                lifetime: u32,
            ) -> Result<$crate::Mapping, $crate::ModeError> {
                $crate::install_panic_hook();
                <$t as $crate::Mode>::renew(current, lifetime)
            }
            fn unmap(current: $crate::Mapping) -> Result<(), $crate::ModeError> {
                $crate::install_panic_hook();
                <$t as $crate::Mode>::unmap(current)
            }
        }
        // Only a component exports the lifecycle: host builds of MODs
        // (unit tests, the fuzz checks linking several) would otherwise
        // define the same export symbols twice.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_raw!(__P2pbLifecycle with_types_in $crate::bindings);
    };
}

/// Bindings, in the calling MOD crate, of a world that adds optional
/// exports to the `mode` world (`discovery-mode`, `connector-mode`): every
/// imported interface is this SDK's, so the types are the SDK's. The MOD
/// implements the generated `Guest` traits and calls
/// `export_world!(TYPE with_types_in PATH)`. Generated in the MOD, not
/// here: two worlds' export macros cannot live in one crate, and a plain
/// MOD's component must describe the `mode` world only. Expects the MOD
/// crate at `modes/NAME` (the WIT is `../../wit`) and `wit-bindgen` among
/// its dependencies.
#[macro_export]
macro_rules! world_bindings {
    ($world:literal) => {
        wit_bindgen::generate!({
            world: $world,
            path: "../../wit",
            with: {
                "wasi:io/error@0.2.12": p2pbroker_mode_sdk::bindings::wasi::io::error,
                "wasi:io/poll@0.2.12": p2pbroker_mode_sdk::bindings::wasi::io::poll,
                "wasi:io/streams@0.2.12": p2pbroker_mode_sdk::bindings::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": p2pbroker_mode_sdk::bindings::wasi::clocks::monotonic_clock,
                "wasi:clocks/wall-clock@0.2.12": p2pbroker_mode_sdk::bindings::wasi::clocks::wall_clock,
                "wasi:random/random@0.2.12": p2pbroker_mode_sdk::bindings::wasi::random::random,
                "wasi:sockets/network@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::network,
                "wasi:sockets/instance-network@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::instance_network,
                "wasi:sockets/udp@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::udp,
                "wasi:sockets/udp-create-socket@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::udp_create_socket,
                "wasi:sockets/tcp@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::tcp,
                "wasi:sockets/tcp-create-socket@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::tcp_create_socket,
                "wasi:sockets/ip-name-lookup@0.2.12": p2pbroker_mode_sdk::bindings::wasi::sockets::ip_name_lookup,
                "p2pbroker:mode/types@0.1.5": p2pbroker_mode_sdk::bindings::p2pbroker::mode::types,
                "p2pbroker:mode/broker@0.1.5": p2pbroker_mode_sdk::bindings::p2pbroker::mode::broker,
            },
            export_macro_name: "export_world",
        });
    };
}

/// getrandom's source on the guest (its `custom` backend): wasi:random, as
/// every other random number of a MOD. For a MOD whose dependencies link
/// getrandom 0.3 (`p2pb mode build` sets `getrandom_backend="custom"`);
/// expands in the MOD crate, which depends on `getrandom`.
#[macro_export]
macro_rules! getrandom_from_wasi {
    () => {
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        unsafe extern "Rust" fn __getrandom_v03_custom(
            dest: *mut u8,
            len: usize,
        ) -> Result<(), getrandom::Error> {
            let bytes = $crate::host::random_bytes(len as u64);
            // SAFETY: getrandom hands a writable buffer of `len` bytes;
            // wasi:random returns exactly `len` bytes.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dest, len.min(bytes.len())) };
            Ok(())
        }
    };
}

/// Route panic messages to the broker log (level error) before the trap,
/// so the host can say why a MOD died. Called by [`export_mode!`].
#[doc(hidden)]
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| host::error(&format!("panic: {info}"))));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("short".into(), TEXT_MAX), "short");
        assert_eq!(clip("abcdef".into(), 4), "abcd");
        // "é" is two bytes: cutting inside it would not be a String.
        assert_eq!(clip("aé".into(), 2), "a");
        assert_eq!(clip("x".repeat(5000), TEXT_MAX).len(), TEXT_MAX);
    }

    #[test]
    fn escape_defuses_terminal_tricks_and_stays_bounded() {
        assert_eq!(escape("plain ü text", 100), "plain ü text");
        assert_eq!(
            escape("a\r\nFAKE LINE\x1b[31m\u{202e}b\\", 100),
            "a\\u{d}\\u{a}FAKE LINE\\u{1b}[31m\\u{202e}b\\\\"
        );
        // The cut falls between pieces, never inside an escape or a char.
        assert_eq!(escape("ab\n", 4), "ab");
        assert_eq!(escape("aé", 2), "a");
        assert!(escape(&"\u{7}".repeat(1000), TEXT_MAX).len() <= TEXT_MAX);
    }

    #[test]
    fn errors_are_clipped_to_the_contract() {
        let long = "é".repeat(TEXT_MAX);
        let ModeError::Protocol(s) = clip_error(ModeError::Protocol(long)) else {
            panic!("kind kept")
        };
        assert!(s.len() <= TEXT_MAX && s.starts_with('é'));
        assert!(matches!(
            clip_error(ModeError::Timeout("t".into())),
            ModeError::Timeout(s) if s == "t"
        ));
    }
}
