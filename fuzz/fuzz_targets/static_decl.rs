#![no_main]
//! The `static_decl` checks (fuzz/checks/src/static_decl.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::static_decl::run(data));
