#![no_main]
//! The `journal` checks (fuzz/checks/src/journal.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::journal::run(data));
