//! The MODs built into the `p2pb` binary (see build.rs): with no MODs
//! folder, the daemon serves on these, admitted by their own sha256
//! allow-list.

use std::collections::HashSet;

/// One embedded component.
#[derive(Debug)]
pub struct Builtin {
    /// File name it was built as (`p2pbroker-mode-NAME.wasm`).
    pub file: &'static str,
    /// The component, manifest included.
    pub bytes: &'static [u8],
}

static ALL: &[Builtin] = include!(concat!(env!("OUT_DIR"), "/builtin_modes.rs"));

/// Every built-in MOD, in file-name order.
pub fn all() -> &'static [Builtin] {
    ALL
}

impl Builtin {
    /// Hex sha256 of the component.
    pub fn sha256(&self) -> String {
        hex::encode(crate::sandbox::sha256(self.bytes))
    }

    /// The MOD name its manifest declares, if it carries one.
    pub fn name(&self) -> Option<String> {
        crate::trust::manifest::read(self.bytes)
            .ok()
            .flatten()?
            .name
    }
}

/// The built-in MODs' allow-list: their sha256 digests, hashed once per
/// process (every policy reload asks again).
pub fn allow_list() -> &'static HashSet<String> {
    static LIST: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| ALL.iter().map(Builtin::sha256).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_mod_has_a_unique_manifest_name() {
        let names: Vec<String> = all().iter().filter_map(Builtin::name).collect();
        assert_eq!(names.len(), all().len(), "a built-in without a name");
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(allow_list().len(), all().len());
    }
}
