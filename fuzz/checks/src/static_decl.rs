//! Static forward declarations: no panic; every accepted forward has real
//! ports and addresses.

use p2pbroker_mode_static::decl::parse_forwards;

/// One input.
pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(fwds) = parse_forwards(text)
    {
        for f in fwds {
            assert!(f.external.port() != 0 && f.internal.port() != 0);
            assert!(!f.external.ip().is_unspecified() && !f.internal.ip().is_unspecified());
        }
    }
}
