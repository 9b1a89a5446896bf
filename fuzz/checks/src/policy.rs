//! Policy TOML and signed-bundle inputs: no panic on any bytes; an accepted
//! policy yields a spec for every MOD it lists and an order naming only
//! them; signature files and roots never panic.

use p2pbroker::netinfo::NetInfo;
use p2pbroker::policy::Policy;
use p2pbroker::trust::bundle::{Root, parse_sigs};

/// One input.
pub fn run(data: &[u8]) {
    let _ = parse_sigs(data);
    let _ = Root::parse(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = Policy::parse(text)
    {
        for m in p.modes.keys() {
            assert!(p.spec(m).is_ok());
        }
        let (_, order) = p.order_for(&NetInfo::default());
        assert!(order.iter().all(|m| p.modes.contains_key(m)));
    }
}
