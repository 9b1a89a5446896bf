//! What each fuzz target checks, as one plain function per target.
//!
//! `fuzz/fuzz_targets/T.rs` hands libFuzzer's input to `T::run`; the test
//! suite replays every committed seed (`fuzz/corpus/T/*`) through the same
//! function (`tests/corpus.rs`), so a seed that crashes fails `cargo test`
//! without the fuzzer. The invariants each target asserts are in its
//! module's docs.

pub mod api_framing;
pub mod api_request;
pub mod journal;
pub mod manifest;
pub mod natpmp;
pub mod pcp;
pub mod policy;
pub mod proc_net;
pub mod sock_diag;
pub mod static_decl;
pub mod upnp;

/// One target's checks, run on one input.
pub type Check = fn(&[u8]);

/// Every target by name (the name of its `fuzz/fuzz_targets/` file and
/// its corpus folder) and its checks.
pub const TARGETS: &[(&str, Check)] = &[
    ("api_framing", api_framing::run),
    ("api_request", api_request::run),
    ("journal", journal::run),
    ("manifest", manifest::run),
    ("natpmp", natpmp::run),
    ("pcp", pcp::run),
    ("policy", policy::run),
    ("proc_net", proc_net::run),
    ("sock_diag", sock_diag::run),
    ("static_decl", static_decl::run),
    ("upnp", upnp::run),
];
