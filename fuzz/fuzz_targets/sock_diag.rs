#![no_main]
//! The `sock_diag` checks (fuzz/checks/src/sock_diag.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::sock_diag::run(data));
