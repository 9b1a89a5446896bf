#![no_main]
//! The `api_framing` checks (fuzz/checks/src/api_framing.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::api_framing::run(data));
