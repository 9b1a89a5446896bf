#![no_main]
//! The `natpmp` checks (fuzz/checks/src/natpmp.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::natpmp::run(data));
