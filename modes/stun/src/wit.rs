//! Bindings of the `discovery-mode` world (contract 0.1.1): the lifecycle
//! and the optional `discovery` export. Every imported interface is the
//! SDK's, so the types are the SDK's types. Generated here, not in the SDK:
//! two worlds' export macros cannot live in one crate, and a plain MOD's
//! component must describe the `mode` world only.

/// Generated bindings for the `discovery-mode` world.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "discovery-mode",
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
            "p2pbroker:mode/types@0.1.1": p2pbroker_mode_sdk::bindings::p2pbroker::mode::types,
            "p2pbroker:mode/broker@0.1.1": p2pbroker_mode_sdk::bindings::p2pbroker::mode::broker,
        },
        export_macro_name: "export_discovery_raw",
    });
}
