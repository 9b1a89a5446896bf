//! `p2pb mode builtin`: the MODs inside this binary, and `--export DIR`
//! to write them out (with an allow.list) for inspection or signing.

use std::path::Path;

use p2pbroker::builtin;

use p2pb::table::Table;

/// List (or export) the built-in MODs.
pub fn run(export: Option<&Path>, json: bool) -> anyhow::Result<u8> {
    let all = builtin::all();
    if let Some(dir) = export {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let mut allow = String::new();
        for b in all {
            let path = dir.join(b.file);
            std::fs::write(&path, b.bytes)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            allow.push_str(&format!("{}  {}\n", b.sha256(), b.file));
        }
        let path = dir.join("allow.list");
        std::fs::write(&path, allow)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if json {
        let list: Vec<serde_json::Value> = all
            .iter()
            .map(|b| {
                serde_json::json!({
                    "mode": b.name(), "file": b.file, "size": b.bytes.len(), "sha256": b.sha256(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    if all.is_empty() {
        outln!("this p2pb was built without built-in MODs (P2PB_BUILTIN_MODES=none)");
        return Ok(0);
    }
    let mut t = Table::new(&["MOD", "FILE", "SIZE", "SHA256"]);
    for b in all {
        t.row(vec![
            b.name().unwrap_or_else(|| "-".into()),
            b.file.to_string(),
            b.bytes.len().to_string(),
            b.sha256(),
        ]);
    }
    print!("{t}");
    if let Some(dir) = export {
        outln!("written to {} with its allow.list", dir.display());
    }
    Ok(0)
}
