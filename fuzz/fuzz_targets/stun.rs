#![no_main]
//! The `stun` checks (fuzz/checks/src/stun.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::stun::run(data));
