#![no_main]
//! The `policy` checks (fuzz/checks/src/policy.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::policy::run(data));
