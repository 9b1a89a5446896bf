//! MOD binaries as the trust layer reads them: section splitting, signature
//! data, manifests. No panic; accepted signature data round-trips through
//! its encoding; an accepted manifest's grants all parse. The same input
//! also shapes signature data with consistent lengths ([`crate::sigdata`]),
//! where bytes left over inside any record must be refused.

use p2pbroker::trust::{manifest, wasmsig};

/// One input.
pub fn run(data: &[u8]) {
    if let Ok(d) = wasmsig::SignatureData::parse(data) {
        assert_eq!(wasmsig::SignatureData::parse(&d.encode()).unwrap(), d);
    }
    let mut bin = b"\0asm\x0d\0\x01\0".to_vec();
    bin.extend_from_slice(data);
    let _ = wasmsig::parse(&bin);
    let _ = p2pbroker::trust::signers(&bin, &[]);
    if let Ok(Some(m)) = manifest::read(&bin) {
        assert!(m.parsed_grants().is_ok());
    }
    crate::sigdata::run(data);
}
