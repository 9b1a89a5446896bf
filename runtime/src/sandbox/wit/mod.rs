//! Host bindings for the `p2pbroker:mode` world (see `wit/mode.wit`).
//!
//! WASI types come from wasmtime-wasi so that `ip-address` and friends are
//! the same Rust types on both sides of the broker interface. Generated
//! items carry the WIT documentation, not Rust doc comments.
#![allow(missing_docs)]

mod broker;
pub mod relay;
pub mod sockets;
pub mod stdio;
pub mod tls;
pub mod tunnel;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use broker::{BrokerCtx, LOG_LINE_MAX, LOG_LINES_MAX, LogLine};

use crate::sandbox::limits::Limiter;

wasmtime::component::bindgen!({
    world: "mode",
    path: "../wit",
    exports: { default: async },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
    },
});

/// Bindings of the `discovery-mode` world (0.1.1): only its `discovery`
/// export is used from here; the imports are the `mode` world's.
pub mod discovery {
    wasmtime::component::bindgen!({
        world: "discovery-mode",
        path: "../wit",
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "p2pbroker:mode/types": super::p2pbroker::mode::types,
            "p2pbroker:mode/broker": super::p2pbroker::mode::broker,
        },
    });
    pub use self::exports::p2pbroker::mode::discovery::{Behaviour, GuestIndices, NatReport};
}

/// Bindings of the `connector-mode` world (0.1.2): only its `connector`
/// export is used from here.
pub mod connector {
    wasmtime::component::bindgen!({
        world: "connector-mode",
        path: "../wit",
        exports: { default: async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "p2pbroker:mode/types": super::p2pbroker::mode::types,
            "p2pbroker:mode/broker": super::p2pbroker::mode::broker,
        },
    });
    pub use self::exports::p2pbroker::mode::connector::{Destination, GuestIndices};
}

/// Bindings of the `tls-mode` world (0.1.3): only its `tls` import is
/// used from here (the host side of pinned TLS, [`tls`]).
pub mod tls_bindings {
    wasmtime::component::bindgen!({
        world: "tls-mode",
        path: "../wit",
        exports: { default: async },
        imports: { "p2pbroker:mode/tls.connect": async },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "p2pbroker:mode/types": super::p2pbroker::mode::types,
            "p2pbroker:mode/broker": super::p2pbroker::mode::broker,
        },
    });
}

/// Bindings of the `relay-mode` world (0.1.4): its `relay` import (the
/// host side is [`relay`]) and its `relay-control` export.
pub mod relay_bindings {
    wasmtime::component::bindgen!({
        world: "relay-mode",
        path: "../wit",
        exports: { default: async },
        imports: {
            "p2pbroker:mode/relay.open": async,
            "p2pbroker:mode/relay.send": async,
            "p2pbroker:mode/relay.receive": async,
            "p2pbroker:mode/relay.open-tls": async,
        },
        with: {
            "wasi": wasmtime_wasi::p2::bindings,
            "p2pbroker:mode/types": super::p2pbroker::mode::types,
            "p2pbroker:mode/broker": super::p2pbroker::mode::broker,
        },
    });
    pub use self::exports::p2pbroker::mode::relay_control::GuestIndices;
}

pub use self::exports::p2pbroker::mode::lifecycle::{
    MapRequest, Mapping, ModeError, ModeInfo, ProbeReport,
};
pub use self::p2pbroker::mode::broker::{Level, LocalAddress as WitLocalAddress};
pub use self::p2pbroker::mode::types::{AddressClass, Transport};

/// Everything a store holds for one lifecycle call.
pub struct CallState {
    /// Whether the call spins (its thread is made nicer while it does).
    pub(crate) spin: crate::sandbox::priority::SpinWatch,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) budget: std::sync::Arc<sockets::Budget>,
    pub(crate) audit: std::sync::Arc<crate::audit::CallAudit>,
    pub(crate) broker: BrokerCtx,
    pub(crate) tls: tls::TlsCtx,
    pub(crate) relay: relay::RelayCtx,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
