#![no_main]
//! The `pcp_packet` checks (fuzz/checks/src/pcp_packet/) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::pcp_packet::run(data));
