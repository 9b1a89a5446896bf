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
        let dict = fuzz_dir().join("dict").join(format!("{t}.dict"));
        assert!(dict.is_file(), "no dictionary {}", dict.display());
    }
}
