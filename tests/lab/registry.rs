//! A real OCI registry in the lab: Debian's `docker-registry` (the CNCF
//! distribution registry) on the public side, plain HTTP, no login,
//! its storage in the lab's folder.

use std::process::Child;
use std::time::{Duration, Instant};

use super::{Lab, Ns, PUB_IP};

/// The registry's port.
pub const REGISTRY_PORT: u16 = 5001;

/// A running registry; dropping it stops it (its storage stays with the
/// lab, so a restarted one serves the same content).
pub struct Registry {
    child: Option<Child>,
}

impl Registry {
    /// `oci+http://HOST:PORT` (append `/REPO:TAG`).
    pub fn base() -> String {
        format!("oci+http://{PUB_IP}:{REGISTRY_PORT}")
    }

    /// Stop it (SIGKILL: a registry that vanishes, as on a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Lab {
    /// Start the registry and wait (bounded) until the host reaches it.
    pub fn registry(&self) -> Registry {
        super::require_root_and("registry lab", &["docker-registry", "curl"]);
        let conf = self.path("registry.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {PUB_IP}:{REGISTRY_PORT}\n",
            self.path("registry-data").display()
        );
        std::fs::write(&conf, yaml).unwrap();
        let child = self.spawn(
            Ns::Pub,
            "registry",
            &["docker-registry", "serve", conf.to_str().unwrap()],
        );
        let mut r = Registry { child: Some(child) };
        let url = format!("http://{PUB_IP}:{REGISTRY_PORT}/v2/");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.exec(
                Ns::Host,
                &[
                    "curl",
                    "-s",
                    "-m",
                    "2",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ],
            );
            if out.stdout == b"200" {
                return r;
            }
            if let Some(Ok(Some(st))) = r.child.as_mut().map(|c| c.try_wait()) {
                panic!("docker-registry exited ({st}): {}", self.log("registry"));
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer within 30 s: {}",
                self.log("registry")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
