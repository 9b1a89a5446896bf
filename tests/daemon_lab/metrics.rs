//! `p2pb daemon --metrics`: scraped over HTTP in the lab's host namespace
//! and parsed by the Prometheus project's own OpenMetrics parser, while a
//! real gateway maps, a refused request fails and a lease is released.

use super::*;
use lab::Ns;

const ADDR: &str = "127.0.0.1:9464";

/// One sample: name, labels, value.
struct Sample {
    name: String,
    labels: Value,
    value: f64,
}

fn scrape(lab: &Lab) -> Vec<Sample> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/daemon/scrape.py");
    // Debian's interpreter: python3-prometheus-client is installed there.
    let out = lab.exec(
        Ns::Host,
        &[
            "/usr/bin/python3",
            script,
            &format!("http://{ADDR}/metrics"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the scrape: {err}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_string(),
                labels: v["labels"].clone(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of `name` whose labels include every pair of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels[*k] == *v))
        .map(|s| s.value)
}

#[test]
fn metrics_follow_maps_refusals_and_releases_and_parse_as_openmetrics() {
    let lab = Lab::up(GatewayOptions::default());
    // Only root may map, so a refusal is easy to make.
    let p = policy(&["nat-pmp", "upnp-igd"], "", "[[access]]\nuids = [0]\n");
    let d = Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "broker",
        &p,
        daemon::modes_dir(),
        &["--metrics", ADDR],
    );
    let before = scrape(&lab);
    // The policy names five MODs (its order picks among them).
    assert_eq!(value(&before, "p2pb_mods_loaded", &[]), Some(5.0));
    assert_eq!(value(&before, "p2pb_policy_serial", &[]), Some(0.0));
    assert!(
        !before.iter().any(|s| s.name == "p2pb_leases"),
        "no lease yet"
    );
    let _app = Reaped(lab.listen(true, 7020, 60));
    let lease = d.json(&["map", "tcp", "7020", "--detach", "--json"]);
    assert_eq!(lease["mode"], "nat-pmp");
    use std::os::unix::fs::PermissionsExt;
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = d.cli_as_nobody(&["map", "tcp", "7021", "--detach"]);
    assert_eq!(refused.status.code(), Some(1));

    let s = scrape(&lab);
    let nat = [("mode", "nat-pmp")];
    assert_eq!(
        value(
            &s,
            "p2pb_leases",
            &[("mode", "nat-pmp"), ("state", "active")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "p2pb_map_duration_seconds_count", &nat),
        Some(1.0)
    );
    let took = value(&s, "p2pb_map_duration_seconds_sum", &nat).unwrap();
    assert!(took > 0.0 && took < 60.0, "{took}");
    // Each stage of that one map timed once; the stages are disjoint parts
    // of it (the refused map stopped before its first stage ended).
    let mut stages = 0.0;
    for st in p2pbroker::daemon::metrics::MAP_STAGES {
        let count = value(
            &s,
            "p2pb_map_stage_duration_seconds_count",
            &[("stage", st)],
        );
        assert_eq!(count, Some(1.0), "stage {st}");
        stages += value(&s, "p2pb_map_stage_duration_seconds_sum", &[("stage", st)]).unwrap();
    }
    assert!(
        stages > 0.0 && stages <= took,
        "stages {stages} s of {took} s"
    );
    assert_eq!(
        value(&s, "p2pb_map_errors_total", &[("code", "unauthorized")]),
        Some(1.0)
    );
    // The sandbox side: the probe and the map ran as calls of the MOD.
    let calls = value(
        &s,
        "p2pb_mod_call_duration_seconds_count",
        &[("mode", "nat-pmp"), ("op", "map")],
    );
    assert_eq!(calls, Some(1.0));
    assert!(
        value(
            &s,
            "p2pb_mod_call_duration_seconds_count",
            &[("op", "probe")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(value(&s, "p2pb_mod_memory_peak_bytes", &nat).unwrap() >= 65536.0);
    assert_eq!(
        value(
            &s,
            "p2pb_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    d.json(&["unmap", &lease["id"].to_string(), "--json"]);
    let after = scrape(&lab);
    assert!(
        !after.iter().any(|s| s.name == "p2pb_leases"),
        "the released lease is no longer counted"
    );
    assert_eq!(
        value(
            &after,
            "p2pb_mod_call_duration_seconds_count",
            &[("mode", "nat-pmp"), ("op", "unmap")]
        ),
        Some(1.0)
    );
    // Anything but /metrics is not there.
    assert_eq!(http_status(&lab, &format!("http://{ADDR}/"), &[]), "404");
    // A name other than an address is refused (DNS rebinding).
    let url = format!("http://{ADDR}/metrics");
    assert_eq!(http_status(&lab, &url, &["Host: evil.example"]), "403");
}
