//! `cargo xtask demo`: the broker as a new user meets it. Builds the NAT lab
//! (network namespaces with a real miniupnpd gateway and a public peer),
//! runs `p2pb daemon` on the host behind NAT with the built-in MODs and
//! policy, and shows an application there becoming reachable from the
//! public peer — then `p2pb status`, `p2pb unmap`, and the lab torn down.
//!
//! Everything runs inside the lab's namespaces; nothing touches the
//! machine's own network.

#[path = "../../tests/lab/mod.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lab::{GatewayOptions, Lab, Ns};

/// The demo application's port.
const APP_PORT: u16 = 8080;

fn show(title: &str, out: &Output) {
    println!("\n\x1b[1m{title}\x1b[0m");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        print!("{err}");
    }
}

struct Broker<'a> {
    lab: &'a Lab,
    p2pb: String,
    socket: String,
    child: Option<Child>,
}

impl Broker<'_> {
    fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec![self.p2pb.as_str(), "--socket", &self.socket];
        all.extend_from_slice(args);
        self.lab.exec(Ns::Host, &all)
    }
}

impl Drop for Broker<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child; SIGTERM releases its leases.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run the demo with the MODs built into `modes` and the `p2pb` binary.
pub fn run(modes: &Path, p2pb: &Path) -> anyhow::Result<()> {
    println!(
        "\nbuilding the NAT lab (public peer 198.51.100.1 | gateway 198.51.100.2 / 10.0.0.1 running miniupnpd | host 10.0.0.2)"
    );
    let lab = Lab::up(GatewayOptions::default());
    let state = lab.path("state");
    let socket = lab.path("broker.sock");
    let p2pb = p2pb.to_string_lossy().to_string();
    let mut broker = Broker {
        lab: &lab,
        p2pb: p2pb.clone(),
        socket: socket.to_string_lossy().to_string(),
        child: None,
    };
    let daemon_args = [
        p2pb.as_str(),
        "--log",
        "info",
        "--socket",
        &broker.socket,
        "daemon",
        "--modes",
        modes.to_str().context("modes path")?,
        "--state-dir",
        state.to_str().context("state path")?,
    ];
    println!(
        "\n\x1b[1mhost$ p2pb daemon --modes {}\x1b[0m   (built-in policy; log: broker.log)",
        modes.display()
    );
    broker.child = Some(lab.spawn(Ns::Host, "broker", &daemon_args));
    wait_ready(&broker)?;

    show("host$ p2pb probe", &broker.cli(&["probe"]));
    println!(
        "(the lab's \"public\" side uses the documentation range 198.51.100.0/24, which the MODs \
         rightly class as reserved: hence the double-NAT warning)"
    );

    let _app = Reaped(lab.listen(true, APP_PORT, 60));
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "\nan application on the host listens on tcp {APP_PORT}; from the public peer it is unreachable:"
    );
    let before = lab.reach(true, &format!("{}:{APP_PORT}", lab::WAN_IP));
    println!(
        "public$ connect {}:{APP_PORT}  ->  {}",
        lab::WAN_IP,
        answer(&before)
    );

    let out = broker.cli(&["map", "tcp", &APP_PORT.to_string(), "--detach"]);
    show(&format!("host$ p2pb map tcp {APP_PORT} --detach"), &out);
    if !out.status.success() {
        bail!("the map failed");
    }
    let list: serde_json::Value = serde_json::from_slice(&broker.cli(&["list", "--json"]).stdout)?;
    let lease = &list[0];
    let external = lease["external"]
        .as_str()
        .context("external endpoint")?
        .to_string();
    let id = lease["id"].to_string();
    let got = lab.reach(true, &external);
    println!("\npublic$ connect {external}  ->  {}", answer(&got));

    show("host$ p2pb status", &broker.cli(&["status"]));

    show(
        &format!("host$ p2pb unmap {id}"),
        &broker.cli(&["unmap", &id]),
    );
    let after = lab.reach(true, &external);
    println!("public$ connect {external}  ->  {}", answer(&after));
    let rules = lab.gateway_rules().matches("dnat").count();
    println!("gateway forwards left: {rules}");

    drop(broker);
    println!("\nbroker stopped, lab torn down.");
    if got != "hello-from-host" || !after.is_empty() || rules != 0 {
        bail!("the demo did not behave as expected (see above)");
    }
    Ok(())
}

/// Kills and reaps the demo application however the demo ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn answer(s: &str) -> &str {
    if s.is_empty() { "no answer" } else { s }
}

fn wait_ready(b: &Broker) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if Path::new(&b.socket).exists() && b.cli(&["status", "--json"]).status.success() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the daemon did not come up: {}", b.lab.log("broker"))
}

/// The `p2pb` binary next to this xtask (same profile).
pub fn p2pb_path(root: &Path) -> PathBuf {
    root.join("target/debug/p2pb")
}
