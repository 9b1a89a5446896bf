//! What each fuzz target checks, as one plain function per target.
//!
//! `fuzz/fuzz_targets/T.rs` hands libFuzzer's input to `T::run`; the test
//! suite replays every committed seed (`fuzz/corpus/T/*`) through the same
//! function (`tests/corpus.rs`), so a seed that crashes fails `cargo test`
//! without the fuzzer. The invariants each target asserts are in its
//! module's docs.
//!
//! Most targets read the bytes as they come. Structure-aware ones build a
//! well-formed input from them with `arbitrary` (a response, a packet, a
//! policy), so mutations land past the syntax checks of the code under
//! test, and compare what it parses with what was built.

pub mod api_framing;
pub mod api_request;
pub mod channeldata;
pub mod http_response;
pub mod journal;
pub mod manifest;
pub mod natpmp;
pub mod oci;
pub mod pcp;
pub mod pcp_packet;
pub mod policy;
pub mod policy_gen;
pub mod proc_net;
pub mod proxy;
pub mod sigdata;
pub mod sock_diag;
pub mod static_decl;
pub mod stun;
pub mod turn;
pub mod upnp;
pub mod upnp_http;

/// One target's checks, run on one input.
pub type Check = fn(&[u8]);

/// Every target by name (the name of its `fuzz/fuzz_targets/` file and
/// its corpus folder) and its checks.
pub const TARGETS: &[(&str, Check)] = &[
    ("api_framing", api_framing::run),
    ("api_request", api_request::run),
    ("http_response", http_response::run),
    ("channeldata", channeldata::run),
    ("journal", journal::run),
    ("manifest", manifest::run),
    ("natpmp", natpmp::run),
    ("oci", oci::run),
    ("pcp", pcp::run),
    ("pcp_packet", pcp_packet::run),
    ("policy", policy::run),
    ("policy_gen", policy_gen::run),
    ("proc_net", proc_net::run),
    ("proxy", proxy::run),
    ("sock_diag", sock_diag::run),
    ("static_decl", static_decl::run),
    ("stun", stun::run),
    ("turn", turn::run),
    ("upnp", upnp::run),
    ("upnp_http", upnp_http::run),
];

/// Deterministic inputs for the unit tests of the structure-aware targets,
/// so `cargo test` runs their builders without the fuzzer.
#[cfg(test)]
pub(crate) fn pseudo_random_inputs(count: usize, max_len: usize, run: Check) {
    // xorshift64 with a fixed seed: the same inputs every run, so the
    // input a failure names can be replayed.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..count {
        let len = (next() % (max_len as u64 + 1)) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "input {i} fails its checks: {data:02x?}");
    }
}
