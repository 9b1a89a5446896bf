//! Client API lines. As a request (the broker's side): no panic on any
//! bytes; the line cap is exact; every accepted request re-encodes to one
//! line that parses back to the same request; every refusal has a message.
//! As a broker line (the client's side): no panic; an accepted event
//! re-encodes and parses back to the same event.

use p2pbroker_client::{
    ErrorCode, MAX_LINE, ServerLine, encode_event, encode_request, parse_request,
    parse_response_line,
};

/// One input.
pub fn run(data: &[u8]) {
    match parse_request(data) {
        Ok(r) => {
            let line = encode_request(&r);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            let again = parse_request(line.trim_end().as_bytes()).expect("re-encoded parses");
            assert_eq!(again, r);
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            assert_eq!(e.code == ErrorCode::TooLarge, data.len() > MAX_LINE);
        }
    }
    if let Ok(ServerLine::Event(e)) = parse_response_line(data) {
        let line = encode_event(&e);
        assert_eq!(
            parse_response_line(line.as_bytes()).expect("re-encoded parses"),
            ServerLine::Event(e)
        );
    }
}
