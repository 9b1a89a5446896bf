//! Bindings of the `tls-mode` world (contract 0.1.3): the lifecycle and
//! the `tls` import, over the SDK's imports.

/// Generated bindings.
#[allow(missing_docs)]
pub mod bindings {
    p2pbroker_mode_sdk::world_bindings!("tls-mode");
}
