//! Headless Chromium driven over WebDriver by Debian's chromedriver, both
//! in a network namespace of the caller's (a lab's host, a bench's own), so
//! the pages it loads are the broker's there.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DRIVER: &str = "http://127.0.0.1:9515";

/// A chromedriver and one browser session; both ended on drop.
pub struct Browser {
    ns: String,
    driver: Option<std::process::Child>,
    session: String,
}

impl Browser {
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// Start chromedriver in namespace `ns` (its log and Chromium's profile
    /// in `dir`) and open a session.
    pub fn start(ns: &str, dir: &Path) -> Browser {
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/bin/chromedriver", "--port=9515"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("chromedriver");
        let mut b = Browser {
            ns: ns.to_string(),
            driver: Some(driver),
            session: String::new(),
        };
        let up = Instant::now();
        while b.request("GET", "/status", None)["value"]["ready"] != true {
            assert!(
                up.elapsed() < Duration::from_secs(30),
                "chromedriver did not answer in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = dir.join("chromium-profile");
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--window-size=1300,1100",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = b.request("POST", "/session", Some(caps));
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver call (curl, inside the namespace).
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{DRIVER}{path}");
        let body = body.map(|b| b.to_string());
        let mut args = vec!["curl", "-s", "--max-time", "60", "-X", method, &url];
        if let Some(b) = &body {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = self.exec(&args);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// A call on the session; panics on a WebDriver error.
    pub fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        let v = self.request(method, &p, body);
        assert!(v["value"]["error"].is_null(), "{method} {path}: {v}");
        v["value"].clone()
    }

    /// Run `js` in the page and return its value.
    pub fn script(&self, js: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({"script": js, "args": []})),
        )
    }

    /// Wait (bounded) until `js` returns true; on failure, say what the
    /// page shows.
    pub fn wait(&self, what: &str, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.script(js) == true {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let shown = self.script("return document.body.innerText");
        panic!("not within 20 s: {what}; the page shows: {shown}");
    }

    /// The viewport as (width, bytes per pixel, pixels).
    pub fn screenshot(&self) -> (u32, usize, Vec<u8>) {
        use base64::Engine;
        let b64 = self.session("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let bpp = match info.color_type {
            png::ColorType::Rgba => 4,
            png::ColorType::Rgb => 3,
            other => panic!("a screenshot in {other:?}"),
        };
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, bpp, buf)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // Whatever Chromium left in our lab namespace (a failed test).
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.starts_with("chrom") {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
        }
    }
}
