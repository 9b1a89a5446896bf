#![no_main]
//! The `upnp_http` checks (fuzz/checks/src/upnp_http/) under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| p2pbroker_fuzz_checks::upnp_http::run(data));
