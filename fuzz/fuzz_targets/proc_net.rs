#![no_main]
//! The `proc_net` checks (fuzz/checks/src/proc_net.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::proc_net::run(data));
