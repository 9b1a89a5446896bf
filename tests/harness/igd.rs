//! A scripted fake IGD: an HTTP server on loopback whose answers a test
//! scripts per request (path, SOAP action, body), for what real gateways do
//! not produce on demand (error codes, hostile XML, slow drips).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the fake does with one request (path, SOAP action, body).
pub enum Answer {
    /// A 200 with this body.
    Ok(String),
    /// A 500 UPnPError with this code.
    Fault(u16),
    /// Raw bytes, sent one byte every 100 ms.
    Drip(Vec<u8>),
    /// Raw bytes at once.
    Raw(Vec<u8>),
    /// The first bytes, a pause of 300 ms, then the rest, then close: a
    /// response whose head and body arrive in separate reads.
    Split(Vec<u8>, Vec<u8>),
    /// Nothing at all, the connection held open until the fake stops.
    Hang,
}

/// What the fake logs: `path action` per request.
pub type Log = Arc<Mutex<Vec<String>>>;

pub type Script = Arc<dyn Fn(&str, &str, &str) -> Answer + Send + Sync>;

pub fn soap_ok(action: &str, args: &str) -> Answer {
    Answer::Ok(format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:{action}Response xmlns:u="x">{args}</u:{action}Response></s:Body></s:Envelope>"#
    ))
}

/// A fake IGD on 127.0.0.1: answers up to 64 connections within 30 s.
/// Returns its address and the log of `path action` per request.
pub async fn fake_igd(script: Script) -> (SocketAddr, Log) {
    fake_igd_at("127.0.0.1:0", script).await
}

/// [`fake_igd`] on `bind` (e.g. `[::1]:0` for an IPv6 IGD).
pub async fn fake_igd_at(bind: &str, script: Script) -> (SocketAddr, Log) {
    let (addr, seen, _) = fake_igd_counting(bind, script).await;
    (addr, seen)
}

/// [`fake_igd_at`], also counting the connections accepted (whether or
/// not a request followed).
pub async fn fake_igd_counting(bind: &str, script: Script) -> (SocketAddr, Log, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for _ in 0..64 {
            let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
            else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head and, for POSTs, the body (bounded).
            while buf.len() < 65536 {
                let Ok(n) = s.read(&mut chunk).await else {
                    break;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
            let action = text
                .lines()
                .find_map(|l| l.strip_prefix("SOAPAction: "))
                .and_then(|v| v.trim_matches('"').split('#').nth(1).map(str::to_string))
                .unwrap_or_default();
            log.lock().unwrap().push(format!("{path} {action}"));
            let body = text
                .split_once("\r\n\r\n")
                .map(|x| x.1.to_string())
                .unwrap_or_default();
            let (bytes, drip) = match script(&path, &action, &body) {
                Answer::Ok(b) => (
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len())
                        .into_bytes(),
                    false,
                ),
                Answer::Split(head, rest) => {
                    tokio::spawn(async move {
                        if s.write_all(&head).await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            let _ = s.write_all(&rest).await;
                        }
                    });
                    continue;
                }
                Answer::Hang => {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(s);
                    });
                    continue;
                }
                Answer::Fault(code) => {
                    let b = format!(
                        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><detail><UPnPError><errorCode>{code}</errorCode><errorDescription>e</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>"#
                    );
                    (
                        format!(
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{b}",
                            b.len()
                        )
                        .into_bytes(),
                        false,
                    )
                }
                Answer::Drip(b) => (b, true),
                Answer::Raw(b) => (b, false),
            };
            tokio::spawn(async move {
                if drip {
                    for byte in bytes {
                        if s.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } else {
                    let _ = s.write_all(&bytes).await;
                }
            });
        }
    });
    (addr, seen, accepted)
}
