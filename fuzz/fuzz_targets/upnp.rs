#![no_main]
//! The `upnp` checks (fuzz/checks/src/upnp.rs) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::upnp::run(data));
