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
pub mod host;
pub mod net;

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
        $crate::bindings::export_raw!(__P2pbLifecycle with_types_in $crate::bindings);
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
}
