//! Client API request lines: no panic on any bytes; every accepted request
//! re-encodes to a line that parses back to the same request; every refusal
//! has a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pbroker_client::{encode_request, parse_request};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(r) => {
            let line = encode_request(&r);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            let again = parse_request(line.trim_end().as_bytes()).expect("re-encoded parses");
            assert_eq!(again, r);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
