#![no_main]
//! The `policy_gen` checks (fuzz/checks/src/policy_gen/) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::policy_gen::run(data));
