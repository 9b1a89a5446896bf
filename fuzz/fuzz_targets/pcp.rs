#![no_main]
//! The `pcp` checks (fuzz/checks/src/pcp.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::pcp::run(data));
