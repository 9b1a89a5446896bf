//! `p2pb policy check FILE`: every problem with its line, or what the
//! policy grants (see [`p2pbroker::policy::check`]).

use std::path::Path;

use p2pbroker::policy::check;
use serde_json::Value;

use p2pb::table::Table;

/// Check `file` and judge the MODs the daemon would load with the same
/// flags: the built-in ones the policy names (unless `builtin` is off)
/// and the `modes` folder's. Exit 0 when the policy is valid and, with a
/// folder, every component in it is admitted and some MOD would load; 1
/// with every problem otherwise. Without a folder the built-ins' verdicts
/// are shown only: the operator may bring the MODs the policy names.
pub fn run(file: &Path, modes: Option<&Path>, builtin: bool, json: bool) -> anyhow::Result<u8> {
    let text = super::trust::doc_text(file)?;
    let name = file.display();
    match check::check(&text) {
        Ok(p) => {
            let mut s = check::summary(&p);
            let sources = p2pbroker::daemon::ModeSources {
                dir: modes.map(Path::to_path_buf),
                builtin,
                oci_cache: None,
            };
            let admissions = admissions(&sources, &p)?;
            let refused = admissions
                .iter()
                .filter(|a| a["admitted"] == false && a["builtin"] == false && a["oci"] != true)
                .count();
            let loaded = admissions.iter().filter(|a| a["admitted"] == true).count();
            if json {
                s["components"] = Value::Array(admissions);
                // Text from the file (config values) is escaped past
                // JSON's rules: DEL, C1 and bidi controls.
                println!("{}", p2pbroker::text::json_line(&s));
            } else {
                human(&name.to_string(), &s);
                outln!();
                components(&sources.describe(), &admissions);
                if loaded == 0 && modes.is_some() {
                    outln!(
                        "{name}: no MOD would load from {}; the daemon would not start",
                        sources.describe()
                    );
                } else if loaded == 0 {
                    outln!(
                        "{name}: no built-in MOD would load; the daemon would not start \
                         unless its --modes folder brings one (check with --modes DIR)"
                    );
                }
            }
            Ok(if refused == 0 && (loaded > 0 || modes.is_none()) {
                0
            } else {
                super::EXIT_FAILED
            })
        }
        Err(found) => {
            let mut found = found;
            // In file order; what has no line last.
            found.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
            if json {
                let list: Vec<Value> = found
                    .iter()
                    .map(|f| serde_json::json!({"line": f.line, "message": f.message}))
                    .collect();
                let v = serde_json::json!({"valid": false, "problems": list});
                // A parse error quotes the offending line of the file.
                println!("{}", p2pbroker::text::json_line(&v));
            } else {
                for f in &found {
                    match f.line {
                        Some(l) => outln!("{name}:{l}: {}", f.message),
                        None => outln!("{name}: {}", f.message),
                    }
                }
                outln!(
                    "{name}: {} problem(s); the policy would be refused",
                    found.len()
                );
            }
            Ok(super::EXIT_FAILED)
        }
    }
}

/// Each component the daemon would judge, judged by the policy as its
/// admission would (before any byte is compiled).
fn admissions(
    sources: &p2pbroker::daemon::ModeSources,
    p: &p2pbroker::policy::Policy,
) -> anyhow::Result<Vec<Value>> {
    // A MOD the policy pulls from a registry is judged by the daemon when
    // pulled; here only where from.
    let pulled: Vec<Value> = p
        .modes
        .iter()
        .filter_map(|(n, m)| Some((n, m.oci.as_ref()?)))
        .map(|(n, r)| {
            serde_json::json!({
                "file": format!("oci:{n}"), "builtin": false, "oci": true, "admitted": false,
                "why": format!("pulled by the daemon from {r}, admitted by its pin"),
            })
        })
        .collect();
    let taken = p
        .modes
        .iter()
        .filter(|(_, m)| m.oci.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    let judged = sources
        .candidates_except(&taken)?
        .into_iter()
        // As the daemon: a built-in the policy does not name is not wanted.
        .filter(|c| c.builtin.as_ref().is_none_or(|n| p.modes.contains_key(n)))
        .map(|c| {
            let builtin = c.builtin.is_some();
            let verdict = c.bytes.and_then(|b| {
                p2pbroker::trust::admission::admit(&b, &c.allow, p).map_err(|e| e.to_string())
            });
            match verdict {
                Ok(a) => serde_json::json!({
                    "file": c.label, "builtin": builtin, "admitted": true, "mode": a.name,
                    "signers": a.signers,
                    "grants": a.spec.grants.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
                Err(why) => serde_json::json!({
                    "file": c.label, "builtin": builtin, "admitted": false, "why": why,
                }),
            }
        });
    Ok(pulled.into_iter().chain(judged).collect())
}

fn components(source: &str, admissions: &[Value]) {
    if admissions.is_empty() {
        outln!("{source}: no component (*.wasm)");
        return;
    }
    let mut t = Table::new(&[
        "COMPONENT",
        "VERDICT",
        "MOD",
        "SIGNED BY",
        "EFFECTIVE GRANTS / WHY",
    ]);
    for a in admissions {
        if a["oci"] == true {
            t.row(vec![
                text(&a["file"]),
                "registry".into(),
                "-".into(),
                "-".into(),
                text(&a["why"]),
            ]);
        } else if a["admitted"] == true {
            t.row(vec![
                text(&a["file"]),
                "admitted".into(),
                text(&a["mode"]),
                list(&a["signers"]),
                list(&a["grants"]),
            ]);
        } else {
            t.row(vec![
                text(&a["file"]),
                "REFUSED".into(),
                "-".into(),
                "-".into(),
                text(&a["why"]),
            ]);
        }
    }
    print!("{t}");
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(
        || {
            if v.is_null() {
                "-".into()
            } else {
                v.to_string()
            }
        },
        str::to_string,
    )
}

fn human(name: &str, s: &Value) {
    outln!(
        "{name}: valid policy, version {} (serial {}, expires {})",
        s["version"],
        text(&s["serial"]),
        text(&s["expires"])
    );
    outln!(
        "trust: {} signature(s) needed by default; keys: {}",
        s["trust"]["threshold"],
        list(&s["trust"]["keys"])
    );
    let offered: Vec<String> = s["offered_to_every_mod"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    if !offered.is_empty() {
        outln!("every MOD is offered: {}", offered.join(" "));
    }
    outln!();
    let mut t = Table::new(&["PROFILE", "WHEN", "ORDER"]);
    for o in s["orders"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&o["profile"]),
            text(&o["when"]),
            list(&o["order"]),
        ]);
    }
    print!("{t}");
    outln!();
    let mut t = Table::new(&["MOD", "GRANTS", "SIGNATURES", "CONFIG"]);
    for m in s["modes"].as_array().into_iter().flatten() {
        let sigs = match m["signers"].as_array() {
            Some(_) => format!("{} of {}", m["threshold"], list(&m["signers"])),
            None => format!("{} of any trusted key", m["threshold"]),
        };
        let config: Vec<String> = m["config"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        t.row(vec![
            text(&m["name"]),
            list(&m["grants"]),
            sigs,
            if config.is_empty() {
                "-".into()
            } else {
                config.join(" ")
            },
        ]);
    }
    print!("{t}");
    outln!();
    let who = if s["default_access"] == true {
        "WHO MAY MAP (built-in rules)"
    } else {
        "WHO MAY MAP"
    };
    let lan = &s["lan"];
    let everyone = if lan.is_null() {
        "every local user".to_string()
    } else {
        format!("every local user and LAN client (uid {})", lan["uid"])
    };
    let mut t = Table::new(&[who, "TRANSPORTS", "PORTS", "LEASES", "LIFETIME", "PERSIST"]);
    for a in s["access"].as_array().into_iter().flatten() {
        let uids = match a["uids"].as_array() {
            Some(_) => format!("uids {}", list(&a["uids"])),
            None => everyone.clone(),
        };
        t.row(vec![
            uids,
            list(&a["transports"]),
            text(&a["ports"]),
            text(&a["max_leases"]),
            text(&a["max_lifetime"]),
            text(&a["persist"]),
        ]);
    }
    print!("{t}");
    outln!("(the first rule that covers a request decides; none: refused)");
    if !lan.is_null() {
        outln!(
            "LAN clients: on {}, {} token(s), as uid {}, {}",
            text(&lan["listen"]),
            lan["tokens"],
            lan["uid"],
            if lan["third_party"] == true {
                "may map other hosts' addresses"
            } else {
                "each may map its own address only"
            }
        );
    }
    outln!();
    match s["connect"].as_array() {
        Some(rules) if !rules.is_empty() => {
            let mut t = Table::new(&["CONNECT TO", "PORTS", "WHO", "VIA"]);
            for c in rules {
                let who = match c["uids"].as_array() {
                    Some(_) => format!("uids {}", list(&c["uids"])),
                    None => "every local user".into(),
                };
                let via = if c["via"].is_null() {
                    "every proxy, in order".into()
                } else {
                    list(&c["via"])
                };
                t.row(vec![list(&c["to"]), text(&c["ports"]), who, via]);
            }
            print!("{t}");
        }
        _ => outln!("connect: no rule, so no outbound connect"),
    }
}
