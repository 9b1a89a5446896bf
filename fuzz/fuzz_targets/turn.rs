#![no_main]
//! The `turn` checks (fuzz/checks/src/turn.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::turn::run(data));
