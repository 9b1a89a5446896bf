//! Trust benchmark: signature verification per MiB of component (in
//! process, and `p2pb mode verify` against `wasmsign2 verify` as processes
//! in the same run when wasmsign2 is installed: set WASMSIGN2 or put it on
//! PATH), and policy parsing.
//!
//! `cargo bench -p p2pbroker --bench trust` prints a Markdown table.

#[path = "../../tests/harness/mod.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use p2pbroker::policy::Policy;
use p2pbroker::trust::{self, keys};

const N: usize = 21;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..N)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ska, pka) = keys::generate(&dir.path().join("a")).unwrap();
    let (_, skb, _) = keys::generate(&dir.path().join("b")).unwrap();
    let (a, b) = (
        keys::read_secret(&ska).unwrap(),
        keys::read_secret(&skb).unwrap(),
    );
    // A real component grown to 1 MiB with a custom section, signed twice.
    let mut bin = harness::component("modes/direct");
    let pad = (1 << 20) - bin.len() - 16;
    let mut payload = vec![3u8];
    payload.extend_from_slice(b"pad");
    payload.resize(pad, 0xA5);
    bin.push(0);
    let mut len = payload.len() as u32;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        bin.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    bin.extend_from_slice(&payload);
    let signed = trust::sign(&trust::sign(&bin, &a).unwrap(), &b).unwrap();
    let mib = signed.len() as f64 / f64::from(1 << 20);
    let trusted = [a.public(), b.public()];
    let verify = time(|| assert_eq!(trust::verify(&signed, &trusted).unwrap().len(), 2));
    let file = dir.path().join("m.wasm");
    std::fs::write(&file, &signed).unwrap();
    let ours = time(|| {
        let o = Command::new(harness::p2pb())
            .args([
                "mode",
                "verify",
                file.to_str().unwrap(),
                "--key",
                pka.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
    });
    let peer = std::env::var("WASMSIGN2").unwrap_or_else(|_| "wasmsign2".into());
    let peer_time = Command::new(&peer).arg("--help").output().is_ok().then(|| {
        time(|| {
            let o = Command::new(&peer)
                .args([
                    "verify",
                    "-i",
                    file.to_str().unwrap(),
                    "-K",
                    pka.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        })
    });
    let default = time(|| {
        Policy::parse(p2pbroker::policy::DEFAULT_POLICY).unwrap();
    });
    let corporate = include_str!("../../policies/corporate.toml");
    let corp = time(|| {
        Policy::parse(corporate).unwrap();
    });
    println!("\n| what | median | peer (same run) | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| verify 2 signatures, in process, per MiB of component | {:.2} ms/MiB | — | — |",
        ms(verify) / mib
    );
    match peer_time {
        Some(p) => println!(
            "| `p2pb mode verify` (process, 1 MiB, 1 key) | {:.2} ms | `wasmsign2 verify` {:.2} ms | {:.2}× |",
            ms(ours),
            ms(p),
            ms(ours) / ms(p)
        ),
        None => println!(
            "| `p2pb mode verify` (process, 1 MiB, 1 key) | {:.2} ms | wasmsign2 not installed | — |",
            ms(ours)
        ),
    }
    println!(
        "| parse + validate the default policy | {:.1} µs | — | — |",
        us(default)
    );
    println!(
        "| parse + validate policies/corporate.toml | {:.1} µs | — | — |",
        us(corp)
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
