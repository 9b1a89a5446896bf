//! Every committed seed (`fuzz/corpus/T/*`) once through target T's checks,
//! so a seed that crashes fails the test suite without the fuzzer.

use std::path::{Path, PathBuf};

use p2pbroker_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of one corpus folder, sorted so a failure names the same
/// file every run.
fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_passes_its_targets_checks() {
    for (target, run) in TARGETS {
        let files = seeds(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} holds no seed");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            // Name the seed before a panic inside the checks does.
            let shown = f
                .strip_prefix(fuzz_dir())
                .unwrap_or(&f)
                .display()
                .to_string();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "seed {shown} fails its checks");
        }
    }
}

#[test]
fn every_target_is_listed_and_has_a_corpus_and_dictionary() {
    // A target added under fuzz_targets/ but not to TARGETS would never be
    // replayed; a corpus folder without a target would be dead weight.
    let mut on_disk: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(t, _)| t.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    let mut corpora: Vec<String> = std::fs::read_dir(fuzz_dir().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    corpora.sort();
    assert_eq!(corpora, listed);
    for t in &listed {
        let path = fuzz_dir().join("dict").join(format!("{t}.dict"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("dictionary {}: {e}", path.display()));
        let mut entries = 0;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // libFuzzer refuses the whole run over one bad line.
            dict_entry(line).unwrap_or_else(|e| panic!("fuzz/dict/{t}.dict:{}: {e}", n + 1));
            entries += 1;
        }
        assert!(entries > 0, "fuzz/dict/{t}.dict has no entry");
    }
}

/// The token of one dictionary line in libFuzzer's syntax (`"…"` or
/// `name="…"`; escapes `\\`, `\"` and `\xNN` only).
fn dict_entry(line: &str) -> Result<Vec<u8>, String> {
    let quoted = match line.find('"') {
        Some(0) => line,
        Some(i) if line[..i].ends_with('=') => &line[i..],
        _ => return Err("not a quoted token".into()),
    };
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|q| !q.is_empty())
        .ok_or("an empty or unterminated token")?;
    let mut out = Vec::new();
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' => return Err("an unescaped quote".into()),
            b'\\' => match bytes.next() {
                Some(c @ (b'\\' | b'"')) => out.push(c),
                Some(b'x') => {
                    let (Some(h), Some(l)) = (bytes.next(), bytes.next()) else {
                        return Err("a short \\x escape".into());
                    };
                    let hex = String::from_utf8_lossy(&[h, l]).into_owned();
                    out.push(u8::from_str_radix(&hex, 16).map_err(|_| format!("bad \\x{hex}"))?);
                }
                _ => return Err("an unknown escape".into()),
            },
            b => out.push(b),
        }
    }
    Ok(out)
}

#[test]
fn dictionary_lines_parse_as_libfuzzer_reads_them() {
    assert_eq!(dict_entry(r#""a\x00\"\\""#).unwrap(), b"a\0\"\\");
    assert_eq!(dict_entry(r#"kw="x""#).unwrap(), b"x");
    for bad in [
        "x",
        r#""""#,
        r#""a"b""#,
        r#""\q""#,
        r#""\x4""#,
        r#""\xzz""#,
        r#""open"#,
    ] {
        assert!(dict_entry(bad).is_err(), "{bad}");
    }
}
