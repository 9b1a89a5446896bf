#![no_main]
//! The `oci` checks (fuzz/checks/src/oci.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::oci::run(data));
