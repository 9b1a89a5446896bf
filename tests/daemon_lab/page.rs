//! `p2pb daemon --http`: the status page in headless Chromium (driven over
//! WebDriver by Debian's chromedriver, both in the lab's host namespace),
//! checked against what the API says: the leases and the topology it
//! draws, the pixels of each lease's bar in a screenshot, and live updates
//! from the event stream with no reload.

use super::*;
use browser::Browser;
use lab::Ns;

const PAGE: &str = "127.0.0.1:8088";
/// `rgb(r, g, b)` as three bytes.
fn rgb(css: &str) -> [u8; 3] {
    let inner = css.trim_start_matches("rgb(").trim_end_matches(')');
    let v: Vec<u8> = inner
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    [v[0], v[1], v[2]]
}

fn wait_page(b: &Browser, what: &str, js: &str) {
    b.wait(what, js);
}

#[test]
fn the_status_page_shows_what_the_api_says_and_follows_events_live() {
    let lab = Lab::up(GatewayOptions::default());
    let d = Daemon::start_with(
        &lab.ns(Ns::Host),
        &lab.path(""),
        "broker",
        &all_modes(),
        daemon::modes_dir(),
        &["--http", PAGE],
    );
    let _app = Reaped(lab.listen(true, 7030, 120));
    let first = d.json(&["map", "tcp", "7030", "--detach", "--json"]);
    let b = Browser::start(&lab.ns(Ns::Host), &lab.path(""));
    b.session(
        "POST",
        "/url",
        Some(serde_json::json!({"url": format!("http://{PAGE}/")})),
    );
    wait_page(
        &b,
        "the page draws the lease",
        "return document.querySelectorAll('#leases tbody tr').length === 1",
    );

    // What the page shows is what the API says.
    let status = d.json(&["status", "--json"]);
    let probe = d.json(&["probe", "--json"]);
    let row = b.script(&format!(
        "return document.querySelector('tr[data-lease-id=\"{}\"]').textContent",
        first["id"]
    ));
    let row = row.as_str().unwrap();
    for field in ["internal", "external", "mode"] {
        let want = status["leases"][0][field].as_str().unwrap();
        assert!(row.contains(want), "{field} {want} not in {row}");
    }
    let topo = b.script("return document.getElementById('topology').textContent");
    let topo = topo.as_str().unwrap();
    let gw = status["network"]["gateways"][0].as_str().unwrap();
    assert!(topo.contains(&format!("Gateway {gw}")), "{topo}");
    let ext = probe["external_address"].as_str().unwrap();
    assert!(topo.contains(&format!("External {ext}")), "{topo}");
    assert!(topo.contains(&format!("via {}", first["mode"].as_str().unwrap())));

    // The screenshot: the lease's bar is painted in its MOD's colour.
    let bar = b.script(&format!(
        "const e = document.querySelector('rect[data-lease=\"{}\"]'); \
         const r = e.getBoundingClientRect(); \
         return {{x: r.x + r.width / 2, y: r.y + r.height / 2, \
                  fill: getComputedStyle(e).fill, mode: e.dataset.mode}}",
        first["id"]
    ));
    assert_eq!(bar["mode"], first["mode"]);
    let want = rgb(bar["fill"].as_str().unwrap());
    assert_ne!(want, [255, 255, 255], "a colour, not the background");
    let (width, bpp, pixels) = b.screenshot();
    let (x, y) = (
        bar["x"].as_f64().unwrap() as u32,
        bar["y"].as_f64().unwrap() as u32,
    );
    let at = (y * width + x) as usize * bpp;
    let got = &pixels[at..at + 3];
    let close = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 3);
    assert!(
        close,
        "pixel at ({x},{y}) is {got:?}, the page says {want:?}"
    );

    // Live: a lease mapped and released elsewhere appears and goes, with
    // no reload, and both events are listed.
    wait_page(
        &b,
        "the event stream is live",
        "return document.getElementById('live').className === 'on'",
    );
    let _app2 = Reaped(lab.listen(true, 7031, 120));
    let second = d.json(&["map", "tcp", "7031", "--detach", "--json"]);
    let id = &second["id"];
    wait_page(
        &b,
        "the new lease shows up live",
        &format!("return document.querySelector('tr[data-lease-id=\"{id}\"]') !== null"),
    );
    d.json(&["unmap", &id.to_string(), "--json"]);
    wait_page(
        &b,
        "the released lease goes away live",
        &format!("return document.querySelector('tr[data-lease-id=\"{id}\"]') === null"),
    );
    let events = b.script("return document.getElementById('events').textContent");
    let events = events.as_str().unwrap();
    assert!(
        events.contains(&format!("mapped #{id}")) && events.contains(&format!("released #{id}")),
        "{events}"
    );
    assert_eq!(
        b.script("return performance.getEntriesByType('navigation').length"),
        1
    );

    // A name other than an address is refused (DNS rebinding).
    let url = format!("http://{PAGE}/api/status");
    assert_eq!(http_status(&lab, &url, &["Host: evil.example"]), "403");
}
