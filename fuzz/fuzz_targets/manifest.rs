#![no_main]
//! The `manifest` checks (fuzz/checks/src/manifest.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::manifest::run(data));
