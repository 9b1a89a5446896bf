//! NAT behaviour discovery (root): the stun MOD as a whole process
//! (`p2pb mode run stun discover`, process start and compiled-code cache
//! load included) against coturn's `turnutils_natdiscovery -m -f`, both
//! from the lab host against the same coturn, pair by pair, for each of
//! the lab's NAT kinds; and the `discover` call alone (its `elapsed_us`).
//! Both must classify alike, or the row says so.
//!
//! `cargo bench -p p2pbroker --bench nat` prints a Markdown table.

#[path = "../../tests/harness/mod.rs"]
mod harness;
#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use lab::{GatewayOptions, Lab, NatKind, Ns, PUB_ALT_IP, PUB_IP};

/// Pairs per NAT kind.
const N: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let stun = harness::component_path("modes/stun");
    let cache = tempfile::tempdir().unwrap();
    let p2pb = harness::p2pb();
    let servers = format!("stun_servers={PUB_IP}:3478,{PUB_ALT_IP}:3478");
    let ours_args = [
        p2pb,
        "mode",
        "run",
        "--json",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--grant",
        "udp:send,receive@stun:1-65535",
        "--config",
        &servers,
        stun.to_str().unwrap(),
        "discover",
    ];
    let theirs_args = ["turnutils_natdiscovery", "-m", "-f", PUB_IP];
    println!(
        "| NAT kind | `p2pb mode run stun discover` | its `discover` call | \
         `turnutils_natdiscovery -m -f` | ratio | verdicts |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for kind in [
        NatKind::FullCone,
        NatKind::Restricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ] {
        let lab = Lab::up(GatewayOptions {
            upnp: false,
            natpmp: false,
            nat: kind,
        });
        // Warm the compiled-code cache once, as a daemon would have.
        lab.exec(Ns::Host, &ours_args);
        let (mut ours, mut call, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        let mut verdict = String::new();
        for _ in 0..N {
            let t = Instant::now();
            let out = lab.exec(Ns::Host, &ours_args);
            ours.push(t.elapsed());
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            call.push(Duration::from_micros(v["elapsed_us"].as_u64().unwrap_or(0)));
            let r = &v["result"];
            let mine = format!("{} / {}", r["mapping"], r["filtering"]);
            let t = Instant::now();
            let out = lab.exec(Ns::Host, &theirs_args);
            theirs.push(t.elapsed());
            let b = lab::nat::parse(&String::from_utf8_lossy(&out.stdout));
            let ref_ = format!("\"{}\" / \"{}\"", b.mapping, b.filtering);
            verdict = if mine == ref_ {
                format!("agree: {}", mine.replace('"', ""))
            } else {
                format!("DIFFER: ours {mine}, theirs {ref_}")
            };
        }
        let (o, c, t) = (median(ours), median(call), median(theirs));
        println!(
            "| {kind:?} | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× | {verdict} |",
            ms(o),
            ms(c),
            ms(t),
            ms(o) / ms(t)
        );
    }
}
