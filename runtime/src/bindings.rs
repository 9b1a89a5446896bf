//! Host bindings for the `p2pbroker:mode` world (see `wit/mode.wit`).
//!
//! WASI types come from wasmtime-wasi so that `ip-address` and friends are
//! the same Rust types on both sides of the broker interface. Generated
//! items carry the WIT documentation, not Rust doc comments.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "mode",
    path: "../wit",
    exports: { default: async },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
    },
});

pub use self::exports::p2pbroker::mode::lifecycle::{
    MapRequest, Mapping, ModeError, ModeInfo, ProbeReport,
};
pub use self::p2pbroker::mode::broker::{Level, LocalAddress as WitLocalAddress};
pub use self::p2pbroker::mode::types::{AddressClass, Transport};
