#![no_main]
//! The `channeldata` checks (fuzz/checks/src/channeldata.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::channeldata::run(data));
