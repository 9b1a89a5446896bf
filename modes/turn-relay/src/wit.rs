//! Bindings of the `relay-mode` world (contract 0.1.4): the lifecycle, the
//! `relay` import and the `relay-control` export, over the SDK's imports.

/// Generated bindings.
#[allow(missing_docs)]
pub mod bindings {
    p2pbroker_mode_sdk::world_bindings!("relay-mode");
}
