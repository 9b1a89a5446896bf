//! What the corporate lab's real proxies answer, byte for byte: tinyproxy
//! to CONNECT (200 followed at once by the peer's greeting, 407 without
//! credentials, 401 with wrong ones) and Dante to each SOCKS5 step (method
//! choices, the credentials verdict, CONNECT replies). Each must mean to
//! the MODs' parsers what it meant to the proxy. Seeds of the `proxy`
//! target.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use p2pbroker_mode_http_connect::proto::{self as http, Head, Refusal, Step};
use p2pbroker_mode_socks5::proto as socks;

use crate::exchange::Seeds;
use crate::lab::corp::*;
use crate::lab::{PUB_IP, in_netns};

/// Send `steps` in turn on one connection to `port` on the edge; after
/// each, collect what arrives within 300 ms (the answer, and anything sent
/// right after it).
fn converse(lab: &CorpLab, port: u16, steps: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    in_netns(&lab.ns(CorpNs::Host), move || {
        let mut s = TcpStream::connect((EDGE_IP, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut answers = Vec::new();
        for step in steps {
            s.write_all(&step).unwrap();
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_millis(300);
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            answers.push(got);
        }
        answers
    })
}

fn head_of(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut h = Head::default();
    for (i, b) in bytes.iter().enumerate() {
        if h.push(*b) == Step::Done {
            return (h.bytes().to_vec(), i + 1);
        }
    }
    panic!("no complete head in {}", String::from_utf8_lossy(bytes));
}

#[test]
fn tinyproxy_and_dante_answers_mean_what_they_meant() {
    let lab = CorpLab::up();
    let seeds = Seeds::from_env();
    let peer_port = PEER_TCP_PORT;

    // tinyproxy: 200, then the peer's greeting; the head ends before it.
    let a = converse(
        &lab,
        HTTP_PROXY_PORT,
        vec![http::request(PUB_IP, peer_port, None)],
    );
    let (head, used) = head_of(&a[0]);
    assert_eq!(http::answer(&head), Ok(()));
    assert_eq!(&a[0][used..], b"hello-from-peer\n");
    seeds.keep("proxy", "tinyproxy-200", &a[0]);
    let a = converse(
        &lab,
        HTTP_PROXY_AUTH_PORT,
        vec![http::request(PUB_IP, peer_port, None)],
    );
    assert!(matches!(
        http::answer(&head_of(&a[0]).0),
        Err(Refusal::Credentials(407, _))
    ));
    seeds.keep("proxy", "tinyproxy-407", &a[0]);
    let wrong = http::request(PUB_IP, peer_port, Some((PROXY_USER, "nope")));
    let a = converse(&lab, HTTP_PROXY_AUTH_PORT, vec![wrong]);
    assert!(matches!(
        http::answer(&head_of(&a[0]).0),
        Err(Refusal::Credentials(401, _))
    ));
    seeds.keep("proxy", "tinyproxy-401", &a[0]);

    // Dante: username/password only.
    let a = converse(&lab, SOCKS_PORT, vec![socks::greeting(false)]);
    assert_eq!(
        socks::method([a[0][0], a[0][1]], false),
        Err(socks::Refusal::NoMethod {
            offered_credentials: false
        })
    );
    seeds.keep("proxy", "dante-no-method", &a[0]);
    let good = socks::credentials(SOCKS_USER, SOCKS_PASSWORD).unwrap();
    let a = converse(
        &lab,
        SOCKS_PORT,
        vec![
            socks::greeting(true),
            good,
            socks::connect(PUB_IP, peer_port).unwrap(),
        ],
    );
    assert_eq!(
        socks::method([a[0][0], a[0][1]], true),
        Ok(socks::USER_PASS)
    );
    assert_eq!(socks::credentials_answer([a[1][0], a[1][1]]), Ok(()));
    let rest = socks::reply_head([a[2][0], a[2][1], a[2][2], a[2][3]]).unwrap();
    assert_eq!(
        &a[2][4 + rest..],
        b"hello-from-peer\n",
        "the reply, then the peer"
    );
    seeds.keep("proxy", "dante-method-userpass", &a[0]);
    seeds.keep("proxy", "dante-auth-ok", &a[1]);
    seeds.keep("proxy", "dante-connect-ok", &a[2]);
    let bad = socks::credentials(SOCKS_USER, "nope").unwrap();
    let a = converse(&lab, SOCKS_PORT, vec![socks::greeting(true), bad]);
    assert_eq!(
        socks::credentials_answer([a[1][0], a[1][1]]),
        Err(socks::Refusal::Credentials)
    );
    seeds.keep("proxy", "dante-auth-refused", &a[1]);
    let good = socks::credentials(SOCKS_USER, SOCKS_PASSWORD).unwrap();
    let closed = socks::connect(PUB_IP, 1).unwrap();
    let a = converse(&lab, SOCKS_PORT, vec![socks::greeting(true), good, closed]);
    let refused = socks::reply_head([a[2][0], a[2][1], a[2][2], a[2][3]]);
    assert!(
        matches!(refused, Err(socks::Refusal::Reply(3..=5))),
        "{refused:?}"
    );
    seeds.keep("proxy", "dante-connect-refused", &a[2]);
}
