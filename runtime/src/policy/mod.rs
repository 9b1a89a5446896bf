//! Policy files: which MODs run, with which grants, config and limits.
//!
//! This is the unsigned core of the fleet policy; signing, trust roots and
//! profiles build on it. Unknown fields are rejected with their name and
//! line, and every grant is parsed up front, so a bad policy is refused
//! whole and the last good one stays in force.

pub mod broker;
pub mod check;
pub mod connect;
pub mod services;
pub mod trust;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use broker::{AccessRule, BrokerSettings, LanSettings, Profile};
pub use trust::TrustSettings;

use crate::gate::Grant;
use crate::netinfo::NetInfo;
use crate::sandbox::ModeSpec;
use crate::sandbox::limits::Limits;

/// Unix ms as RFC 3339 (seconds), for messages.
pub fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The built-in default policy (`policies/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../../policies/default.toml");

/// A parsed policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; this broker reads version 1.
    pub version: u32,
    /// For a signed policy: its monotonic serial number (anti-rollback).
    #[serde(default)]
    pub serial: Option<u64>,
    /// For a signed policy: when it was issued (RFC 3339).
    #[serde(default)]
    pub issued_at: Option<String>,
    /// For a signed policy: when it stops being valid (RFC 3339).
    #[serde(default)]
    pub expires: Option<String>,
    /// MOD names, best first, when no profile matches (default: every MOD
    /// of the policy, by name).
    #[serde(default)]
    pub order: Vec<String>,
    /// Lease and probing settings.
    #[serde(default)]
    pub broker: BrokerSettings,
    /// MOD orders for particular networks.
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Who may map what (default: [`broker::default_access`]).
    #[serde(default)]
    pub access: Vec<AccessRule>,
    /// The optional LAN listener.
    #[serde(default)]
    pub lan: Option<LanSettings>,
    /// Trusted signing keys, threshold, revocations.
    #[serde(default)]
    pub trust: TrustSettings,
    /// Relay, STUN and proxy servers offered to MODs.
    #[serde(default)]
    pub services: services::Services,
    /// Where outbound `connect` may go, and by which routes (none: no
    /// outbound connect at all).
    #[serde(default)]
    pub connect: Vec<connect::ConnectRule>,
    /// MODs by name.
    #[serde(default)]
    pub modes: BTreeMap<String, ModePolicy>,
}

/// One MOD's entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModePolicy {
    /// Grant strings (see [`crate::gate::grant`]).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Config values the MOD may read.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Per-call limits; omitted fields take their defaults.
    #[serde(default)]
    pub limits: Limits,
    /// Pin: only this component hash may serve this name.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Names of `[trust.keys]` whose signatures count for this MOD
    /// (default: every trusted key).
    #[serde(default)]
    pub signers: Option<Vec<String>>,
    /// Signatures this MOD needs (default: `trust.threshold`).
    #[serde(default)]
    pub threshold: Option<u32>,
    /// Where the daemon pulls this MOD from: an OCI reference pinned to
    /// its manifest digest (`oci://REGISTRY/REPO:TAG@sha256:…`, what `p2pb
    /// mode push` prints). The pin admits the component it names; the
    /// folder's and built-in components of this name are not used.
    #[serde(default)]
    pub oci: Option<String>,
}

impl ModePolicy {
    /// The parsed `oci` reference, which must pin a digest.
    pub fn oci_reference(&self) -> Option<Result<crate::oci::Reference, String>> {
        let s = self.oci.as_deref()?;
        Some(match crate::oci::Reference::parse(s) {
            Ok(r) if r.digest.is_none() => Err(format!(
                "oci `{}` pins no digest: name the manifest digest `p2pb mode push` printed \
                 (oci://REGISTRY/REPO:TAG@sha256:…), so a moved tag cannot change what runs",
                crate::text::escaped(s)
            )),
            Ok(r) => Ok(r),
            Err(e) => Err(e.to_string()),
        })
    }
}

/// Where in a policy a problem is: what [`check::line_of`] looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A top-level key (`order`, `expires`, ...).
    Key(&'static str),
    /// A table (`broker`, `trust`, `services`, `lan`).
    Section(&'static str),
    /// `[modes.NAME]`.
    Mode(String),
    /// The N-th `[[profiles]]`.
    Profile(usize),
    /// The N-th `[[access]]`.
    Access(usize),
    /// The N-th `[[connect]]`.
    Connect(usize),
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// TOML syntax, a type mismatch or an unknown field (with its line).
    #[error("policy is not valid: {0}")]
    Parse(String),
    /// A MOD's limits are out of range.
    #[error("mode `{mode}`: {reason}")]
    Limits {
        /// The MOD's name.
        mode: String,
        /// Which limit and why.
        reason: String,
    },
    /// A version this broker does not read.
    #[error("policy version {0} is not supported (this broker reads version 1)")]
    Version(u32),
    /// A grant string of a MOD is wrong.
    #[error("mode `{mode}`: {source}")]
    Grant {
        /// The MOD's name.
        mode: String,
        /// The grammar error.
        source: crate::gate::GrantError,
    },
    /// The policy names no such MOD.
    #[error("the policy has no entry for mode `{0}`")]
    UnknownMode(String),
    /// A broker setting, profile or access rule is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl Policy {
    /// Parse and validate policy text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let p = Policy::parse_syntax(text)?;
        match p.problems().into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(p),
        }
    }

    /// The TOML, its types and field names, and the version: what must
    /// hold before anything else can be checked.
    pub fn parse_syntax(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        if p.version != 1 {
            return Err(PolicyError::Version(p.version));
        }
        Ok(p)
    }

    /// Every problem of a syntactically valid policy, each with where it
    /// is, in the order [`Policy::parse`] reports the first.
    pub fn problems(&self) -> Vec<(Place, PolicyError)> {
        let p = self;
        let mut out = Vec::new();
        for name in p.modes.keys() {
            if let Err(e) = p.spec(name) {
                out.push((Place::Mode(name.clone()), e));
            }
        }
        if let Err(e) = p.broker.validate() {
            out.push((Place::Section("broker"), PolicyError::Invalid(e)));
        }
        for (field, t) in [("issued_at", &p.issued_at), ("expires", &p.expires)] {
            if let Some(t) = t
                && let Err(e) = humantime::parse_rfc3339(t)
            {
                let e = format!("{field} `{t}`: {e} (RFC 3339)");
                out.push((Place::Key(field), PolicyError::Invalid(e)));
            }
        }
        let orders = std::iter::once((Place::Key("order"), "order".to_string(), &p.order)).chain(
            p.profiles.iter().enumerate().map(|(i, pr)| {
                (
                    Place::Profile(i),
                    format!("profile `{}` order", pr.name),
                    &pr.order,
                )
            }),
        );
        for (place, what, order) in orders {
            if let Some(m) = order.iter().find(|m| !p.modes.contains_key(*m)) {
                out.push((
                    place,
                    PolicyError::Invalid(format!(
                        "{what} names mode `{m}`, which has no [modes.{m}] entry"
                    )),
                ));
            }
        }
        for (i, rule) in p.access.iter().enumerate() {
            if let Err(e) = rule.validate(i) {
                out.push((Place::Access(i), PolicyError::Invalid(e)));
            }
        }
        if let Some(lan) = &p.lan
            && let Err(e) = lan.validate()
        {
            out.push((Place::Section("lan"), PolicyError::Invalid(e)));
        }
        if let Err(e) = p.trust.validate() {
            out.push((Place::Section("trust"), PolicyError::Invalid(e)));
        }
        if let Err(e) = p.services.validate() {
            out.push((Place::Section("services"), PolicyError::Invalid(e)));
        }
        let proxies = p.proxy_modes();
        for (i, rule) in p.connect.iter().enumerate() {
            if let Err(e) = rule.validate(i, &proxies, |m| p.modes.contains_key(m)) {
                out.push((Place::Connect(i), PolicyError::Invalid(e)));
            }
        }
        for (name, m) in &p.modes {
            if let Some(Err(e)) = m.oci_reference() {
                out.push((
                    Place::Mode(name.clone()),
                    PolicyError::Invalid(format!("modes.{name}: {e}")),
                ));
            }
            if let Some(s) = m
                .signers
                .iter()
                .flatten()
                .find(|s| !p.trust.keys.contains_key(*s))
            {
                out.push((
                    Place::Mode(name.clone()),
                    PolicyError::Invalid(format!(
                        "modes.{name}.signers names `{s}`, which is not in [trust.keys]"
                    )),
                ));
            }
        }
        out
    }

    /// When the policy stops being valid (unix ms), if it says.
    pub fn expires_ms(&self) -> Option<u64> {
        let t = humantime::parse_rfc3339(self.expires.as_deref()?).ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The MOD order for `net` and the name of the profile that chose it
    /// (`default` when none matched).
    pub fn order_for(&self, net: &NetInfo) -> (String, Vec<String>) {
        if let Some(p) = self.profiles.iter().find(|p| p.matches(net)) {
            return (p.name.clone(), p.order.clone());
        }
        let order = if self.order.is_empty() {
            self.modes.keys().cloned().collect()
        } else {
            self.order.clone()
        };
        ("default".into(), order)
    }

    /// The MODs of `[[services.proxies]]`, in their order.
    pub fn proxy_modes(&self) -> Vec<String> {
        self.services
            .proxies
            .iter()
            .map(|p| p.mode.clone())
            .collect()
    }

    /// The access rules in force (the built-in ones if the policy has none).
    pub fn access_rules(&self) -> Vec<AccessRule> {
        if self.access.is_empty() {
            broker::default_access()
        } else {
            self.access.clone()
        }
    }

    /// The built-in default.
    pub fn default_policy() -> Policy {
        Policy::parse(DEFAULT_POLICY).expect("the built-in policy is valid")
    }

    /// The spec (parsed grants, config, limits) for the MOD called `name`.
    pub fn spec(&self, name: &str) -> Result<ModeSpec, PolicyError> {
        let m = self
            .modes
            .get(name)
            .ok_or_else(|| PolicyError::UnknownMode(name.to_string()))?;
        let grants = m
            .grants
            .iter()
            .map(|g| g.parse::<Grant>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| PolicyError::Grant {
                mode: name.to_string(),
                source,
            })?;
        m.limits.validate().map_err(|reason| PolicyError::Limits {
            mode: name.to_string(),
            reason,
        })?;
        // The broker acts on a TLS pin (contract 0.1.3): a malformed one is
        // the policy's error, at load, not a failure at the first call.
        if let Some(pins) = m.config.get("tls_pin") {
            crate::sandbox::wit::tls::parse_pins(pins)
                .map_err(|reason| PolicyError::Invalid(format!("mode `{name}`: {reason}")))?;
        }
        let mut config = m.config.clone();
        let services = self.services.config().into_iter();
        for (k, v) in services.chain(self.services.proxy_config(name)) {
            config.entry(k.to_string()).or_insert(v);
        }
        Ok(ModeSpec {
            grants,
            config,
            limits: m.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses() {
        let p = Policy::default_policy();
        assert!(p.spec("direct").unwrap().grants.is_empty());
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = Policy::parse("version = 1\n[modes.x]\ngrant = []\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `grant`"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn a_mod_from_a_registry_must_pin_its_digest() {
        let d = "sha256:".to_string() + &"ab".repeat(32);
        let ok = format!("version = 1\n[modes.x]\noci = \"oci://reg.example/t/x:1@{d}\"\n");
        let p = Policy::parse(&ok).unwrap();
        let r = p.modes["x"].oci_reference().unwrap().unwrap();
        assert_eq!(r.digest.unwrap().to_string(), d);
        let unpinned = "version = 1\n[modes.x]\noci = \"oci://reg.example/t/x:1\"\n";
        let e = Policy::parse(unpinned).unwrap_err().to_string();
        assert!(
            e.contains("modes.x: oci `oci://reg.example/t/x:1` pins no digest"),
            "{e}"
        );
        let bad = "version = 1\n[modes.x]\noci = \"https://reg.example/x\"\n";
        let e = Policy::parse(bad).unwrap_err().to_string();
        assert!(e.contains("is not an OCI reference"), "{e}");
        // `p2pb policy check` puts it on the MOD's line.
        let found = check::check(unpinned).unwrap_err();
        assert_eq!(found[0].line, Some(2), "{found:?}");
    }

    #[test]
    fn bad_grant_names_the_mode() {
        let e =
            Policy::parse("version = 1\n[modes.x]\ngrants = [\"udp:send@mars:1\"]\n").unwrap_err();
        assert!(e.to_string().starts_with("mode `x`: invalid grant"), "{e}");
    }

    #[test]
    fn limits_merge_with_defaults_and_versions_are_checked() {
        let p = Policy::parse("version = 1\n[modes.x.limits]\ntimeout_ms = 250\n").unwrap();
        let s = p.spec("x").unwrap();
        assert_eq!(s.limits.timeout_ms, 250);
        assert_eq!(s.limits.memory_bytes, Limits::default().memory_bytes);
        assert!(matches!(
            Policy::parse("version = 2"),
            Err(PolicyError::Version(2))
        ));
        assert!(matches!(p.spec("y"), Err(PolicyError::UnknownMode(_))));
        // A huge timeout would overflow deadline arithmetic: refused whole.
        let e = Policy::parse("version = 1\n[modes.x.limits]\ntimeout_ms = 18446744073709551615\n")
            .unwrap_err();
        assert!(e.to_string().contains("mode `x`: limits.timeout_ms"), "{e}");
    }

    #[test]
    fn orders_profiles_and_access_rules_are_validated() {
        let p = Policy::default_policy();
        let (profile, order) = p.order_for(&NetInfo::default());
        assert_eq!(profile, "default");
        assert_eq!(order[0], "direct");
        assert_eq!(p.access_rules().len(), 2);
        let e = Policy::parse("version = 1\norder = [\"ghost\"]\n").unwrap_err();
        assert!(e.to_string().contains("mode `ghost`"), "{e}");
        let e = Policy::parse("version = 1\n[[profiles]]\nname = \"office\"\norder = [\"x\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("profile `office` order"), "{e}");
        let e = Policy::parse("version = 1\n[[access]]\nports = \"0-10\"\n").unwrap_err();
        assert!(e.to_string().contains("access[0].ports"), "{e}");
        let e = Policy::parse("version = 1\n[broker]\nmax_leases = 0\n").unwrap_err();
        assert!(e.to_string().contains("broker.max_leases"), "{e}");
        let p = Policy::parse(
            "version = 1\n[[profiles]]\nname = \"lab\"\ngateway = \"10.0.0.1\"\norder = [\"a\"]\n[modes.a]\n[modes.b]\n",
        )
        .unwrap();
        let net = NetInfo {
            gateways: vec!["10.0.0.1".parse().unwrap()],
            addresses: vec![],
        };
        assert_eq!(p.order_for(&net), ("lab".into(), vec!["a".to_string()]));
        assert_eq!(p.order_for(&NetInfo::default()).1, vec!["a", "b"]);
    }

    #[test]
    fn a_malformed_tls_pin_is_the_policys_error() {
        let with = |pin: &str| {
            Policy::parse(&format!(
                "version = 1\n[modes.corp-firewall]\nconfig = {{ tls_pin = \"{pin}\" }}\n"
            ))
        };
        assert!(with(&"ab".repeat(32)).is_ok());
        let e = with("ab:cd").unwrap_err().to_string();
        assert!(
            e.contains("mode `corp-firewall`") && e.contains("not a SHA-256"),
            "{e}"
        );
    }

    #[test]
    fn the_example_policies_load() {
        for (name, text) in [
            ("default", DEFAULT_POLICY),
            ("home", include_str!("../../../policies/home.toml")),
            (
                "corporate",
                include_str!("../../../policies/corporate.toml"),
            ),
            ("lockdown", include_str!("../../../policies/lockdown.toml")),
        ] {
            let p = Policy::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!p.modes.is_empty(), "{name}");
            for m in p.modes.keys() {
                p.spec(m).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let corp = Policy::parse(include_str!("../../../policies/corporate.toml")).unwrap();
        let office = NetInfo {
            gateways: vec!["10.20.0.1".parse().unwrap()],
            addresses: vec![],
        };
        assert_eq!(
            corp.order_for(&office),
            (
                "office".into(),
                vec![
                    "corp-firewall".to_string(),
                    "static".to_string(),
                    "turn-relay".to_string()
                ]
            )
        );
        let lock = Policy::parse(include_str!("../../../policies/lockdown.toml")).unwrap();
        assert_eq!(lock.trust.threshold, 2);
        assert!(!lock.access_rules()[0].persist);
    }
}
