//! Registries that misbehave in ways the real one in the lab does not:
//! one that serves other bytes for a pinned digest, one that cuts a blob
//! short, one that never answers, one that sends an endless manifest, one
//! that needs a Bearer token. Each serves on loopback, in this process;
//! what it may make the client hold is what is checked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2pbroker::oci::client::Client;
use p2pbroker::oci::{Digest, OciError, Reference};

/// What the fake does besides serving what was pushed.
#[derive(Clone, Copy, PartialEq)]
enum Quirk {
    None,
    /// Any manifest fetched by digest is answered with the tag's.
    OtherManifest,
    /// Blobs: the full Content-Length, half the bytes, then close.
    Truncated,
    /// Read the request, never answer.
    Hang,
    /// Manifests: 10 MiB of JSON whitespace.
    Endless,
    /// 401 with a Bearer challenge until the token is presented.
    Bearer,
}

struct Fake {
    addr: String,
    store: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    quirk: Arc<Mutex<Quirk>>,
}

struct Req {
    method: String,
    path: String,
    auth: Option<String>,
    body: Vec<u8>,
}

fn read_req(s: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    s.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut len, mut auth) = (0usize, None);
    loop {
        let mut h = String::new();
        s.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        auth,
        body,
    })
}

fn answer(s: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

impl Fake {
    fn start() -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let store: Arc<Mutex<HashMap<String, Vec<u8>>>> = Default::default();
        let quirk = Arc::new(Mutex::new(Quirk::None));
        let (st, q) = (store.clone(), quirk.clone());
        std::thread::spawn(move || {
            // Bounded: the test process ends it; each test makes few calls.
            for conn in l.incoming().take(200) {
                let Ok(conn) = conn else { continue };
                let (st, q) = (st.clone(), q.clone());
                std::thread::spawn(move || serve(conn, &st, &q));
            }
        });
        Fake { addr, store, quirk }
    }

    fn reference(&self, rest: &str) -> Reference {
        Reference::parse(&format!("oci+http://{}/{rest}", self.addr)).unwrap()
    }

    fn set(&self, q: Quirk) {
        *self.quirk.lock().unwrap() = q;
    }
}

fn serve(conn: TcpStream, store: &Mutex<HashMap<String, Vec<u8>>>, quirk: &Mutex<Quirk>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(req) = read_req(&mut r) {
        let q = *quirk.lock().unwrap();
        if q == Quirk::Hang {
            // Hold the connection until the client gives up.
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
            return;
        }
        if q == Quirk::Bearer && req.path.starts_with("/token") {
            answer(&mut w, 200, &[], br#"{"token":"opensesame"}"#);
            continue;
        }
        if q == Quirk::Bearer && req.auth.as_deref() != Some("Bearer opensesame") {
            let realm = format!("http://{}/token", w.local_addr().unwrap());
            let c = format!("Bearer realm=\"{realm}\",service=\"fake\"");
            answer(&mut w, 401, &[("WWW-Authenticate", c)], b"");
            continue;
        }
        let path = req.path.split('?').next().unwrap().to_string();
        let mut st = store.lock().unwrap();
        match req.method.as_str() {
            "HEAD" | "GET" if path.contains("/blobs/") => {
                let key = path.rsplit('/').next().unwrap().to_string();
                match st.get(&key) {
                    // A HEAD answer has no body.
                    _ if req.method == "HEAD" => {
                        let status = if st.contains_key(&key) { 200 } else { 404 };
                        answer(&mut w, status, &[], b"");
                    }
                    Some(b) if q == Quirk::Truncated => {
                        let head = format!("HTTP/1.1 200 X\r\nContent-Length: {}\r\n\r\n", b.len());
                        let _ = w.write_all(head.as_bytes());
                        let _ = w.write_all(&b[..b.len() / 2]);
                        return;
                    }
                    Some(b) => answer(&mut w, 200, &[], b),
                    None => answer(
                        &mut w,
                        404,
                        &[],
                        br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
                    ),
                }
            }
            "POST" => answer(&mut w, 202, &[("Location", "/upload/1".into())], b""),
            "PUT" if path.starts_with("/upload/") => {
                let digest = req
                    .path
                    .split("digest=")
                    .nth(1)
                    .unwrap()
                    .replace("%3A", ":");
                st.insert(digest, req.body);
                answer(&mut w, 201, &[], b"");
            }
            "PUT" => {
                let d = Digest::of(&req.body).to_string();
                let tag = path.rsplit('/').next().unwrap().to_string();
                st.insert(format!("m:{tag}"), req.body.clone());
                st.insert(format!("m:{d}"), req.body);
                answer(&mut w, 201, &[("Docker-Content-Digest", d)], b"");
            }
            "GET" if q == Quirk::Endless => {
                answer(&mut w, 200, &[], &vec![b' '; 10 << 20]);
            }
            "GET" => {
                let key = path.rsplit('/').next().unwrap();
                let key = if q == Quirk::OtherManifest && key.starts_with("sha256:") {
                    "m:1".to_string()
                } else {
                    format!("m:{key}")
                };
                match st.get(&key) {
                    Some(m) => answer(&mut w, 200, &[], m),
                    None => answer(
                        &mut w,
                        404,
                        &[],
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"\u001b[2Jgone"}]}"#,
                    ),
                }
            }
            _ => answer(&mut w, 405, &[], b""),
        }
    }
}

fn component(tag: &[u8]) -> Vec<u8> {
    let base = wat::parse_str("(component)").unwrap();
    p2pbroker::build::append_section(&base, "x-test", tag)
}

fn client() -> Client {
    Client::new(None, Duration::from_secs(5))
}

#[test]
fn push_then_pull_round_trips_and_a_pin_is_checked() {
    let f = Fake::start();
    let r = f.reference("team/m:1");
    let pushed = client().push(&r, &component(b"one"), Some("m")).unwrap();
    let pin = pushed.pinned.clone();
    assert!(pin.to_string().contains("@sha256:"), "{pin}");
    let got = client().pull(&pin).unwrap();
    assert_eq!(got.component, component(b"one"));
    assert_eq!(Some(got.digest), pin.digest);
    // The tag moves; the old pin is still what it was.
    client().push(&r, &component(b"two"), Some("m")).unwrap();
    assert_eq!(client().pull(&pin).unwrap().component, component(b"one"));
    assert_eq!(client().pull(&r).unwrap().component, component(b"two"));
    let again = client().push(&r, &component(b"two"), Some("m")).unwrap();
    assert!(again.layer_existed);
    // Unknown: the registry's code and message, escaped.
    let e = client()
        .pull(&f.reference("team/none:nothing"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HTTP 404: MANIFEST_UNKNOWN \\u{1b}[2Jgone"),
        "{e}"
    );
}

#[test]
fn a_registry_serving_other_bytes_for_a_pin_is_refused() {
    let f = Fake::start();
    let r = f.reference("m:1");
    let old = client().push(&r, &component(b"old"), None).unwrap().pinned;
    client().push(&r, &component(b"new"), None).unwrap();
    f.set(Quirk::OtherManifest);
    let e = client().pull(&old).unwrap_err();
    assert!(matches!(e, OciError::Digest { .. }), "{e}");
    assert!(e.to_string().contains("not the sha256:"), "{e}");
}

#[test]
fn a_truncated_blob_is_refused() {
    let f = Fake::start();
    let r = f.reference("m:1");
    let pin = client()
        .push(&r, &component(&[7; 4096]), None)
        .unwrap()
        .pinned;
    f.set(Quirk::Truncated);
    let e = client().pull(&pin).unwrap_err();
    assert!(
        matches!(e, OciError::Unreachable { .. } | OciError::Protocol { .. }),
        "{e}"
    );
}

#[test]
fn a_registry_that_hangs_is_given_up_on_at_the_deadline() {
    let f = Fake::start();
    f.set(Quirk::Hang);
    let e = Client::new(None, Duration::from_secs(2))
        .pull(&f.reference("m:1"))
        .unwrap_err();
    assert!(matches!(e, OciError::Unreachable { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("timeout"), "{e}");
}

#[test]
fn an_endless_manifest_is_cut_at_its_cap() {
    let f = Fake::start();
    f.set(Quirk::Endless);
    let e = client().pull(&f.reference("m:1")).unwrap_err().to_string();
    assert!(e.contains("more than 65536 bytes"), "{e}");
}

#[test]
fn a_bearer_challenge_is_answered_with_a_token() {
    let f = Fake::start();
    f.set(Quirk::Bearer);
    let r = f.reference("m:1");
    let pin = client().push(&r, &component(b"auth"), None).unwrap().pinned;
    assert_eq!(client().pull(&pin).unwrap().component, component(b"auth"));
    assert!(f.store.lock().unwrap().len() >= 3);
}
