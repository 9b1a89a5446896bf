//! The HTTP/1.1 response reader MODs use for management APIs (SDK `http`)
//! and the corp-firewall MOD's reading of the API's answers. Input: the
//! bytes a hostile API (or whoever holds its address) sends.
//!
//! `parse_response` never panics, takes no more bytes than it was given,
//! keeps its bounds (body ≤ `BODY_MAX`), and is stable: the bytes it says
//! a response took parse to the same response on their own. A head
//! without framing is complete only once the peer closed. The MOD's
//! readers of ids, revisions, rule lists and errors never panic on any
//! status and body, and nothing they return carries a control character
//! (API text reaches logs and terminals escaped); an id they accept is a
//! plain token that cannot change a request path.

use p2pbroker_mode_corp_firewall::api;
use p2pbroker_mode_sdk::http::{BODY_MAX, Parsed, Response, parse_response};
use p2pbroker_mode_sdk::{ModeError, Transport};

fn clean(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control()),
        "unescaped control character in {text:?}"
    );
}

/// An id that cannot bend a request path.
fn plain(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn error_text(e: &ModeError) -> &str {
    p2pbroker_mode_sdk::reason(e)
}

/// One input.
pub fn run(data: &[u8]) {
    for closed in [false, true] {
        match parse_response(data, closed) {
            Ok(Parsed::Done(r, used)) => {
                assert!(used <= data.len());
                assert!(r.body.len() <= BODY_MAX);
                assert_eq!(
                    parse_response(&data[..used], closed),
                    Ok(Parsed::Done(r.clone(), used)),
                    "a response's own bytes parse to it"
                );
                answers(&r);
            }
            Ok(Parsed::Incomplete) => {}
            Err(e) => clean(&e.to_string()),
        }
    }
    // The MOD's readers on any status and body.
    if let [hi, lo, body @ ..] = data {
        answers(&Response {
            status: u16::from_be_bytes([*hi, *lo]) % 1000,
            body: body.to_vec(),
        });
    }
}

fn answers(r: &Response) {
    let target = "10.1.0.2:7000".parse().unwrap();
    match api::created_id(r, "the rule") {
        Ok(id) => assert!(plain(&id), "id {id:?}"),
        Err(e) => clean(error_text(&e)),
    }
    if let Err(e) = api::revision(r) {
        clean(error_text(&e));
    }
    match api::rev_state(r) {
        Ok(api::RevState::Failed(why)) => clean(&why),
        Ok(_) => {}
        Err(e) => clean(error_text(&e)),
    }
    if let Err(e) = api::is_running(r, "1", "the rules") {
        clean(error_text(&e));
    }
    match api::port_taken(r, Transport::Tcp, 7000, "p2pb-tcp-7000", target) {
        Ok(Some(t)) => {
            clean(&t.name);
            assert!(!t.same || plain(&t.id), "adopted id {:?}", t.id);
        }
        Ok(None) => {}
        Err(e) => clean(error_text(&e)),
    }
    for id in api::staged_named(r, "p2pb-tcp-7000") {
        assert!(plain(&id), "id {id:?}");
    }
    if let Err(e) = api::running_allow(r, "p2pb-tcp-7000", target) {
        clean(error_text(&e));
    }
    clean(error_text(&api::refusal(r, "the rule")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_answers_and_framings_pass_the_checks() {
        run(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\n{\"id\":\"7\"}");
        run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
        run(b"HTTP/1.0 422 Unprocessable\r\n\r\n{\"error\":\"\\u001b[2J\",\"fields\":{\"a\\nb\":\"c\"}}");
        crate::pseudo_random_inputs(2000, 200, run);
    }
}
