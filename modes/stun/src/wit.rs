//! Bindings of the `discovery-mode` world (contract 0.1.1): the lifecycle
//! and the optional `discovery` export, over the SDK's imports.

/// Generated bindings.
#[allow(missing_docs)]
pub mod bindings {
    p2pbroker_mode_sdk::world_bindings!("discovery-mode");
}
