#![no_main]
//! The `api_request` checks (fuzz/checks/src/api_request.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::api_request::run(data));
