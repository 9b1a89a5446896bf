//! `p2pb status`: the broker, its policy and what to act on first.

use crate::client::{Target, connect, failed, json_line, lease_table};
use crate::table::{Table, ago};

/// `p2pb status`.
pub async fn status(json: bool, to: &Target) -> u8 {
    let client = match connect(to).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = match client.status().await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    if json {
        json_line(&s);
        return 0;
    }
    print!("{}", policy_header(&s));
    outln!("gateways: {}", crate::text::ip_list(&s.network.gateways));
    outln!("addresses: {}", s.network.addresses.join(", "));
    outln!();
    let mut t = Table::new(&["MOD", "VERSION", "PROBE", "AGE", "SEEN"]);
    for m in &s.modes {
        let (res, age, seen) = match &m.probe {
            None => ("not yet".to_string(), "-".to_string(), String::new()),
            Some(p) => (
                if p.ok {
                    "ok".into()
                } else {
                    p.kind.clone().unwrap_or_default()
                },
                ago(p.age_s),
                p.detail.clone(),
            ),
        };
        t.row(vec![m.name.clone(), m.version.clone(), res, age, seen]);
    }
    print!("{t}");
    for r in &s.refused {
        outln!("REFUSED  {}: {}", r.file, r.reason);
    }
    outln!();
    if s.leases.is_empty() {
        outln!("no leases");
    } else {
        print!("{}", lease_table(&s.leases));
    }
    0
}

/// The first lines of `p2pb status`: warnings first (an expired policy
/// refuses every map), then the broker and its policy. The broker's text
/// may quote a fleet server, so it is escaped.
fn policy_header(s: &p2pbroker_client::Status) -> String {
    use crate::text::escape;
    let p = &s.policy;
    let mut out = String::new();
    for w in &p.warnings {
        out.push_str(&format!("WARNING: {}\n", escape(w)));
    }
    if p.expired && p.warnings.is_empty() {
        out.push_str("WARNING: the policy in force EXPIRED: new maps are refused\n");
    }
    let expires = match p.expires_at {
        Some(at) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at);
            format!(", expires {}", humantime::format_rfc3339_seconds(t))
        }
        None => String::new(),
    };
    out.push_str(&format!(
        "broker {} (protocol {}), up {}, policy: {}{expires}\n",
        escape(&s.broker_version),
        s.protocol,
        ago(s.uptime_s),
        escape(&p.source)
    ));
    if let Some(e) = &p.error {
        out.push_str(&format!("last policy update refused: {}\n", escape(e)));
    }
    out
}

#[cfg(test)]
mod tests {
    use p2pbroker_client::{NetworkView, PolicyStatus, Status};

    fn status(policy: PolicyStatus) -> Status {
        Status {
            broker_version: "0.1.0".into(),
            protocol: 1,
            uptime_s: 5,
            policy,
            network: NetworkView {
                gateways: vec![],
                addresses: vec![],
            },
            modes: vec![],
            leases: vec![],
            refused: vec![],
        }
    }

    fn policy() -> PolicyStatus {
        PolicyStatus {
            source: "signed policy serial 4".into(),
            version: Some(4),
            error: None,
            expires_at: Some(1_800_000_000),
            expired: false,
            warnings: vec![],
        }
    }

    #[test]
    fn an_expired_policy_is_the_first_line() {
        let h = super::policy_header(&status(PolicyStatus {
            expired: true,
            warnings: vec!["the policy in force EXPIRED at 2027-01-15T08:00:00Z".into()],
            ..policy()
        }));
        let first = h.lines().next().unwrap();
        assert_eq!(
            first,
            "WARNING: the policy in force EXPIRED at 2027-01-15T08:00:00Z"
        );
        assert!(h.contains("expires 2027-01-15T08:00:00Z"), "{h}");
        // From a broker that sends no warnings, the flag alone still shows.
        let h = super::policy_header(&status(PolicyStatus {
            expired: true,
            ..policy()
        }));
        assert!(h.starts_with("WARNING: the policy in force EXPIRED"), "{h}");
    }

    #[test]
    fn a_valid_policy_has_no_warning_and_broker_text_is_escaped() {
        let h = super::policy_header(&status(PolicyStatus {
            error: Some("bad\n\u{1b}[2Jline".into()),
            ..policy()
        }));
        assert!(h.starts_with("broker 0.1.0"), "{h}");
        assert!(!h.contains("WARNING"), "{h}");
        assert!(
            h.contains("last policy update refused: bad\\u{a}\\u{1b}[2Jline"),
            "{h}"
        );
    }
}
