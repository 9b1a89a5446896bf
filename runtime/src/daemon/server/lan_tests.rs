//! Tests of the LAN gate: tokens, failures, back-off, the handshake.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const GOOD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

fn gate(tokens: &[&str]) -> LanGate {
    let digests: Vec<String> = tokens
        .iter()
        .map(|t| hex::encode(crate::sandbox::sha256(t.as_bytes())))
        .collect();
    LanGate::new(&digests)
}

fn auth(token: &str) -> Vec<u8> {
    serde_json::json!({"v": 1, "auth": token})
        .to_string()
        .into_bytes()
}

fn src(ip: &str) -> Source {
    Source::lan(ip.parse().unwrap())
}

#[test]
fn the_listed_token_passes_and_others_do_not() {
    let g = gate(&[GOOD]);
    let now = Instant::now();
    let d = g.verify(src("10.0.0.2"), Some(&auth(GOOD)), now).unwrap();
    assert_eq!(lan_identity(&d).len(), 16);
    let wrong = GOOD.replace('0', "x");
    let e = g.verify(src("10.0.0.2"), Some(&auth(&wrong)), now);
    assert_eq!(e, Err(AuthError::Unknown));
    assert_eq!(e.unwrap_err().error().code, ErrorCode::Unauthorized);
    for bad in [&b"{\"v\":1}"[..], b"garbage", b"{\"v\":2,\"auth\":\"x\"}"] {
        assert_eq!(
            g.verify(src("10.0.0.3"), Some(bad), now),
            Err(AuthError::Malformed)
        );
    }
    assert_eq!(
        g.verify(src("10.0.0.4"), None, now),
        Err(AuthError::Malformed)
    );
}

#[test]
fn a_short_token_is_refused_even_when_its_digest_is_listed() {
    let g = gate(&["s3cret"]);
    let e = g
        .verify(src("10.0.0.2"), Some(&auth("s3cret")), Instant::now())
        .unwrap_err();
    assert_eq!(e, AuthError::TooShort(6));
    let msg = e.error().message;
    assert!(
        msg.contains("p2pb lan token") && msg.contains("32"),
        "{msg}"
    );
    assert_eq!(g.hashed(), 0, "refused before hashing");
}

#[test]
fn many_wrong_tokens_from_one_source_block_it_without_hashing() {
    let g = gate(&[GOOD]);
    let attacker = src("10.0.0.66");
    let t0 = Instant::now();
    let wrong = "w".repeat(40);
    for i in 0..MAX_FAILURES {
        assert_eq!(g.blocked(attacker, t0), None, "attempt {i}");
        let e = g.verify(attacker, Some(&auth(&wrong)), t0);
        assert_eq!(e, Err(AuthError::Unknown));
    }
    let hashed = g.hashed();
    assert_eq!(hashed, u64::from(MAX_FAILURES));
    assert_eq!(g.blocked(attacker, t0), Some(BACKOFF));
    // Even the right token is refused now, and nothing is hashed.
    for _ in 0..1000 {
        let e = g.verify(attacker, Some(&auth(GOOD)), t0).unwrap_err();
        assert!(matches!(e, AuthError::Blocked(_)), "{e:?}");
        assert_eq!(e.error().code, ErrorCode::Limit);
    }
    assert_eq!(g.hashed(), hashed);
    // Other sources are not affected.
    assert!(g.verify(src("10.0.0.2"), Some(&auth(GOOD)), t0).is_ok());
    // After the back-off the source may try again; one more failure
    // doubles the back-off, and a success clears it.
    let later = t0 + BACKOFF;
    assert_eq!(g.blocked(attacker, later), None);
    assert!(g.verify(attacker, Some(&auth(&wrong)), later).is_err());
    assert_eq!(g.blocked(attacker, later), Some(BACKOFF * 2));
    let after = later + BACKOFF * 2;
    assert!(g.verify(attacker, Some(&auth(GOOD)), after).is_ok());
    assert_eq!(g.sources(), 0);
}

#[test]
fn failures_are_forgotten_and_the_table_stays_bounded() {
    let g = gate(&[GOOD]);
    let t0 = Instant::now();
    let s = src("10.0.0.9");
    for _ in 0..MAX_FAILURES - 1 {
        let _ = g.verify(s, None, t0);
    }
    // Long after, the earlier failures no longer count.
    let later = t0 + FAILURE_MEMORY;
    let _ = g.verify(s, None, later);
    assert_eq!(g.blocked(s, later), None);
    // Failures from more sources than the table holds.
    for i in 0..(MAX_SOURCES as u32 + 100) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let _ = g.verify(Source::lan(ip.into()), None, later);
    }
    assert!(g.sources() <= MAX_SOURCES, "{}", g.sources());
}

#[tokio::test]
async fn the_handshake_answers_and_returns_the_identity() {
    let g = gate(&[GOOD]);
    let (client, server) = tokio::io::duplex(1024);
    let (srd, mut swr) = tokio::io::split(server);
    let (crd, mut cwr) = tokio::io::split(client);
    let mut srd = BufReader::new(srd);
    let mut line = auth(GOOD);
    line.push(b'\n');
    cwr.write_all(&line).await.unwrap();
    let d = handshake(&mut srd, &mut swr, src("10.0.0.2"), &g).await;
    assert!(d.is_some());
    let mut answer = String::new();
    BufReader::new(crd).read_line(&mut answer).await.unwrap();
    assert!(answer.contains("\"ok\":true"), "{answer}");
}

#[tokio::test]
async fn a_token_the_policy_drops_is_refused_and_its_connections_told() {
    let other = GOOD.replace('0', "z");
    let g = Arc::new(gate(&[GOOD, &other]));
    let now = Instant::now();
    let d = g.verify(src("10.0.0.2"), Some(&auth(GOOD)), now).unwrap();
    let revoked = tokio::spawn({
        let g = g.clone();
        async move { g.revoked(d, g.terms()).await }
    });
    // A reload that keeps the token changes nothing for its holder.
    let digest = |t: &str| hex::encode(crate::sandbox::sha256(t.as_bytes()));
    g.set_tokens(&[digest(GOOD), digest(&other)]);
    tokio::task::yield_now().await;
    assert!(!revoked.is_finished(), "still listed: not revoked");
    // One that drops it: the connection is told, and it no longer passes.
    g.set_tokens(&[digest(&other)]);
    tokio::time::timeout(Duration::from_secs(5), revoked)
        .await
        .expect("revoked within 5 s")
        .unwrap();
    assert!(!g.accepts(&d));
    let e = g.verify(src("10.0.0.2"), Some(&auth(GOOD)), now);
    assert_eq!(e, Err(AuthError::Unknown));
    assert!(g.verify(src("10.0.0.3"), Some(&auth(&other)), now).is_ok());
    // No [lan] at all: no token passes.
    g.set_tokens(&[]);
    assert_eq!(
        g.verify(src("10.0.0.3"), Some(&auth(&other)), now),
        Err(AuthError::Unknown)
    );
}

#[tokio::test]
async fn new_lan_terms_end_the_connections_let_in_under_the_old() {
    let g = Arc::new(gate(&[GOOD]));
    let digest = hex::encode(crate::sandbox::sha256(GOOD.as_bytes()));
    let lan = |uid, third_party| crate::policy::LanSettings {
        listen: "192.0.2.1:7400".parse().unwrap(),
        token_sha256: vec![digest.clone()],
        uid,
        third_party,
    };
    g.set_lan(Some(&lan(65534, false)));
    let d = g
        .verify(src("10.0.0.2"), Some(&auth(GOOD)), Instant::now())
        .unwrap();
    let revoked = tokio::spawn({
        let (g, terms) = (g.clone(), g.terms());
        async move { g.revoked(d, terms).await }
    });
    g.set_lan(Some(&lan(65534, false)));
    tokio::task::yield_now().await;
    assert!(
        !revoked.is_finished(),
        "the same terms: the connection stays"
    );
    g.set_lan(Some(&lan(65534, true)));
    tokio::time::timeout(Duration::from_secs(5), revoked)
        .await
        .expect("third_party changed: ended within 5 s")
        .unwrap();
    assert_eq!(g.terms(), (65534, true));
    assert!(g.accepts(&d), "the token itself is still good");
}
