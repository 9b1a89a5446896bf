#![no_main]
//! The `proxy` checks (fuzz/checks/src/proxy.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::proxy::run(data));
