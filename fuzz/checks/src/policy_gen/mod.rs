//! Policies built from a model of the schema ([`model`], [`fleet`]) and
//! written through the TOML serializer, so TOML syntax is never what
//! refuses them: every real key, with values at and past their documented
//! ranges and their types' ends, odd MOD names (unicode, control
//! characters, 300 characters, empty), orders naming MODs the policy
//! lacks, malformed grants, dates, CIDRs, keys and service addresses.
//!
//! Checks: a policy whose values are all within the documented ranges
//! and forms is accepted, and every value comes back as built (defaults
//! where a key was left out; grants re-parse from their display; each
//! MOD's spec holds its config with `[services]` filling the gaps and its
//! limits); a policy with a value out of range or form is refused, with a
//! message that names the key or value (the parser stops at the first,
//! so it names one of them); and the byte-level `policy` checks hold.

mod fleet;
mod grants;
mod model;
mod modes;
mod services;
mod trust;
mod values;

use arbitrary::{Arbitrary, Unstructured};
use p2pbroker::gate::Grant;
use p2pbroker::policy::Policy;

/// One input.
pub fn run(data: &[u8]) {
    let Ok(m) = model::Model::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let Some(b) = m.build() else {
        return;
    };
    check(&b);
    crate::policy::run(b.text.as_bytes());
}

fn check(b: &model::Built) {
    let faults = &b.faults.0;
    match Policy::parse(&b.text) {
        Ok(p) => {
            assert!(
                faults.is_empty(),
                "accepted despite {faults:?}:\n{}",
                b.text
            );
            check_accepted(&p, &b.expect);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !faults.is_empty(),
                "refused a valid policy: {msg}\n{}",
                b.text
            );
            assert!(
                faults.iter().any(|f| msg.contains(f)),
                "`{msg}` names none of {faults:?}:\n{}",
                b.text
            );
        }
    }
}

/// `Debug` text, to compare policy sections that have no `PartialEq`.
fn shown(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}")
}

fn check_accepted(p: &Policy, e: &model::Expect) {
    assert_eq!(p.version, 1);
    assert_eq!(p.serial, e.serial);
    assert_eq!(p.issued_at, e.issued_at);
    assert_eq!(p.expires, e.expires);
    assert_eq!(p.expires_ms().is_some(), e.expires.is_some());
    assert_eq!(p.order, e.order);
    assert_eq!(shown(&p.broker), shown(&e.broker));
    assert_eq!(shown(&p.profiles), shown(&e.fleet.profiles));
    assert_eq!(shown(&p.access), shown(&e.fleet.access));
    assert_eq!(shown(&p.lan), shown(&e.fleet.lan));
    assert_eq!(shown(&p.trust), shown(&e.fleet.trust));
    assert_eq!(shown(&p.services), shown(&e.fleet.services));
    assert!(p.modes.keys().eq(e.modes.keys()));
    for (name, want) in &e.modes {
        let got = &p.modes[name];
        assert_eq!(got.grants, want.grants);
        assert_eq!(got.config, want.config);
        assert_eq!(got.limits, want.limits);
        assert_eq!(got.sha256, want.sha256);
        assert_eq!(got.signers, want.signers);
        assert_eq!(got.threshold, want.threshold);
        let spec = p.spec(name).unwrap();
        assert_eq!(spec.grants.len(), want.grants.len());
        for g in &spec.grants {
            assert_eq!(g.to_string().parse::<Grant>().as_ref(), Ok(g));
        }
        assert_eq!(spec.config, want.spec_config);
        assert_eq!(spec.limits, want.limits);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn pseudo_random_policies_pass() {
        crate::pseudo_random_inputs(3000, 600, run);
    }

    /// Plain random bytes build both accepted and refused policies, so
    /// the test above checks both sides.
    #[test]
    fn pseudo_random_policies_are_accepted_and_refused() {
        static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
        static REFUSED: AtomicUsize = AtomicUsize::new(0);
        crate::pseudo_random_inputs(3000, 600, |data| {
            let Ok(m) = model::Model::arbitrary(&mut Unstructured::new(data)) else {
                return;
            };
            let Some(b) = m.build() else {
                return;
            };
            match Policy::parse(&b.text) {
                Ok(p) if !p.modes.is_empty() => ACCEPTED.fetch_add(1, Ordering::Relaxed),
                Ok(_) => 0,
                Err(_) => REFUSED.fetch_add(1, Ordering::Relaxed),
            };
        });
        let (a, r) = (
            ACCEPTED.load(Ordering::Relaxed),
            REFUSED.load(Ordering::Relaxed),
        );
        assert!(a >= 100 && r >= 100, "{a} accepted with MODs, {r} refused");
    }
}
