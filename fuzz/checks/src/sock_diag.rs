//! The sock_diag reply parser behind proof of ownership (what the kernel
//! answers a dump of one port's sockets, or all). On any bytes: no panic;
//! every socket it yields is on the asked port; no more sockets than records
//! fit in the bytes; a batch that ends the dump or fails stops there.

use p2pbroker::daemon::sockdiag::{Batch, parse};

/// One input.
pub fn run(data: &[u8]) {
    let [s0, s1, p0, p1, buf @ ..] = data else {
        return;
    };
    // Sequence numbers of a few values, so the input can match them.
    let seq = u32::from(u16::from_be_bytes([*s0, *s1]) % 4);
    // Port 0 stands for "no port": the whole table.
    let port = Some(u16::from_be_bytes([*p0, *p1])).filter(|p| *p != 0);
    let mut out = Vec::new();
    let batch = parse(buf, seq, port, &mut out);
    // A record is a 16-byte header and a 72-byte body at least.
    assert!(
        out.len() <= buf.len() / 88,
        "{} from {} bytes",
        out.len(),
        buf.len()
    );
    assert!(
        port.is_none_or(|p| out.iter().all(|e| e.local.port() == p)),
        "another port"
    );
    if let Ok(Batch::Done) | Err(_) = batch {
        // Parsing again gives the same answer (no hidden state).
        let mut again = Vec::new();
        assert_eq!(parse(buf, seq, port, &mut again), batch);
        assert_eq!(again, out);
    }
}
