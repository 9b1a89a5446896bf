//! Bindings of the `connector-mode` world (contract 0.1.2): the lifecycle
//! and the optional `connector` export, over the SDK's imports.

/// Generated bindings.
#[allow(missing_docs)]
pub mod bindings {
    p2pbroker_mode_sdk::world_bindings!("connector-mode");
}
