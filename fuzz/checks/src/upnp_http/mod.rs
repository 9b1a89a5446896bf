//! HTTP responses from a UPnP gateway, built from a model rather than
//! mutated as bytes: a status line, headers and a framing (see
//! [`framing`], [`chunked`]) around a SOAP reply ([`soap`]), a device
//! description ([`desc`]) or raw bytes.
//!
//! Checks: an honestly framed response parses to exactly the status and
//! body built, and so does any prefix of it `is_complete` calls complete
//! (a prefix it does not is refused, unless the body ends at the close);
//! lying or malformed framing is refused, never with a body longer than
//! the input; Transfer-Encoding overrides Content-Length; a built SOAP
//! success for action A parses as A's output arguments with the values
//! built, a built fault as a fault with its errorCode; a description
//! yields the best service built, its control URL resolved; the
//! byte-level `upnp` checks hold on the response and on its body.

mod chunked;
mod desc;
mod framing;
mod hostile;
mod soap;
mod text;

use arbitrary::{Arbitrary, Unstructured};
use p2pbroker_mode_upnp_igd::http::{HTTP_MAX_RESPONSE, HttpResponse, is_complete, parse_response};

/// One input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let body = match &input.payload {
        Payload::Soap(e) => {
            let text = e.render();
            e.check(&text);
            text.into_bytes()
        }
        Payload::Description(d) => {
            let text = d.render();
            d.check(&text);
            text.into_bytes()
        }
        Payload::Raw(b) => b.clone(),
    };
    let built = input.response.build(&body);
    check(&built, &input.response.cuts);
    crate::upnp::run(&built.bytes);
    crate::upnp::run(&body);
}

#[derive(Arbitrary, Debug)]
struct Input {
    payload: Payload,
    response: framing::Response,
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Soap(soap::Envelope),
    Description(desc::Description),
    Raw(Vec<u8>),
}

/// The status and body `b` must parse to, or `None` for a refusal.
fn verdict(r: &Result<HttpResponse, String>) -> Option<(u16, &[u8])> {
    match r {
        Ok(r) => Some((r.status, &r.body)),
        Err(e) => {
            assert!(!e.is_empty(), "a refusal says why");
            None
        }
    }
}

fn check(b: &framing::Built, cuts: &[u16]) {
    let got = parse_response(&b.bytes);
    if let Ok(r) = &got {
        assert!(r.body.len() <= b.bytes.len());
    }
    let Some(expect) = &b.expect else {
        return;
    };
    let want = expect.body.as_deref().map(|body| (b.status, body));
    assert_eq!(
        verdict(&got),
        want,
        "{:?}",
        String::from_utf8_lossy(&b.bytes)
    );
    if let Some(c) = expect.complete {
        assert_eq!(
            is_complete(&b.bytes),
            c,
            "{:?}",
            String::from_utf8_lossy(&b.bytes)
        );
    }
    if b.bytes.len() > HTTP_MAX_RESPONSE {
        return;
    }
    // Reading may stop where `is_complete` says: what has come then parses
    // to what the whole would. Before that, nothing but a close-delimited
    // body parses.
    for cut in cuts {
        let prefix = &b.bytes[..usize::from(*cut) % (b.bytes.len() + 1)];
        let got = parse_response(prefix);
        if is_complete(prefix) {
            assert_eq!(verdict(&got), want, "{:?}", String::from_utf8_lossy(prefix));
        } else if !b.close_delimited {
            assert!(got.is_err(), "{:?}", String::from_utf8_lossy(prefix));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use p2pbroker_mode_upnp_igd::url::parse_url;
    use p2pbroker_mode_upnp_igd::xml::{SoapReply, parse_description, parse_soap};

    use super::*;

    #[test]
    fn pseudo_random_responses_pass() {
        crate::pseudo_random_inputs(3000, 1500, run);
    }

    /// Plain random bytes reach every kind of outcome, so the test above
    /// checks each of them.
    #[test]
    fn pseudo_random_responses_reach_every_outcome() {
        static SEEN: Mutex<BTreeMap<&str, usize>> = Mutex::new(BTreeMap::new());
        crate::pseudo_random_inputs(3000, 1500, |data| {
            let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else {
                return;
            };
            let mut seen = Vec::new();
            let body = match &input.payload {
                Payload::Soap(e) => {
                    let text = e.render();
                    let actions = ["AddPortMapping", "GetExternalIPAddress", "AddPinhole"];
                    for a in actions {
                        match parse_soap(&text, a) {
                            Ok(SoapReply::Ok(args)) if !args.is_empty() => seen.push("soap ok"),
                            Ok(SoapReply::Fault { .. }) => seen.push("soap fault"),
                            Err(e) if e.contains("malformed") => seen.push("soap malformed"),
                            _ => {}
                        }
                    }
                    text.into_bytes()
                }
                Payload::Description(d) => {
                    let text = d.render();
                    let loc = parse_url("http://10.0.0.1:5000/rootDesc.xml").unwrap();
                    match parse_description(&text, &loc) {
                        Ok(Some(_)) => seen.push("description service"),
                        Ok(None) => seen.push("description none"),
                        Err(_) => seen.push("description refused"),
                    }
                    text.into_bytes()
                }
                Payload::Raw(b) => b.clone(),
            };
            let b = input.response.build(&body);
            let head = String::from_utf8_lossy(&b.bytes).to_ascii_lowercase();
            let framing = if head.contains("transfer-encoding") {
                "chunked"
            } else if head.contains("content-length") {
                "length"
            } else {
                "close"
            };
            match parse_response(&b.bytes) {
                Ok(r) if r.body.len() > 100 => seen.push(match framing {
                    "chunked" => "http chunked body",
                    "length" => "http length body",
                    _ => "http close body",
                }),
                Ok(_) => {}
                Err(_) => seen.push("http refused"),
            }
            let mut all = SEEN.lock().unwrap();
            for s in seen {
                *all.entry(s).or_default() += 1;
            }
        });
        let seen = SEEN.lock().unwrap();
        assert_eq!(seen.len(), 10, "{seen:#?}");
    }
}
