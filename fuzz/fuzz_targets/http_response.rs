#![no_main]
//! The `http_response` checks (fuzz/checks/src/http_response.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::http_response::run(data));
