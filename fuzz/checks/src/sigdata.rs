//! Signature data built from the input, for the `manifest` target: byte
//! mutation alone rarely keeps three nested lengths consistent, so a bug
//! inside a length-prefixed record (bytes left over, a record cut short)
//! would stay out of its reach. Here the input shapes a model (sets,
//! hashes, signatures with key ids of any length) and, optionally, junk
//! placed inside one record with every enclosing length fixed up; our own
//! encoder writes it. Checks: the clean bytes are what `encode` writes and
//! parse back to the model; bytes with junk anywhere are refused.

use p2pbroker::trust::wasmsig::{
    CONTENT_TYPE, HASH_SHA256, SPEC_VERSION, Signature, SignatureData, SignedHashes,
};

/// Where the junk goes.
#[derive(Clone, Copy, PartialEq)]
enum Junk {
    /// Inside one signature record (after its signature bytes).
    Signature { set: usize, sig: usize },
    /// Inside one hash set (after its signatures).
    Set { set: usize },
    /// After the whole payload.
    End,
}

/// Reads the model's numbers from the input, zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let Some((b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        *b
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        a.to_vec()
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let mut b = Bytes(data);
    let model = SignatureData {
        sets: (0..b.next() % 4)
            .map(|_| SignedHashes {
                hashes: (0..b.next() % 3).map(|_| [b.next(); 32]).collect(),
                signatures: (0..b.next() % 4)
                    .map(|_| {
                        let key_len = usize::from(b.next() % 48);
                        let key_id = b.take(key_len);
                        let alg = b.next();
                        let sig_len = usize::from(b.next());
                        Signature {
                            key_id,
                            alg,
                            sig: b.take(sig_len),
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    let clean = encode(&model, None, &[]);
    assert_eq!(
        clean,
        model.encode(),
        "our encoder and the project's differ"
    );
    assert_eq!(SignatureData::parse(&clean), Ok(model.clone()));
    let (place, n) = (b.next(), usize::from(b.next() % 8) + 1);
    let junk = b.take(n);
    if junk.is_empty() {
        return;
    }
    let sets = model.sets.len();
    let at = match place % 3 {
        0 if sets > 0 => {
            let set = usize::from(b.next()) % sets;
            let sigs = model.sets[set].signatures.len();
            if sigs == 0 {
                Junk::Set { set }
            } else {
                let sig = usize::from(b.next()) % sigs;
                Junk::Signature { set, sig }
            }
        }
        1 if sets > 0 => Junk::Set {
            set: usize::from(b.next()) % sets,
        },
        _ => Junk::End,
    };
    let bad = encode(&model, Some(at), &junk);
    assert!(
        SignatureData::parse(&bad).is_err(),
        "{} bytes left over were accepted",
        junk.len()
    );
}

/// The payload of `d`, with `junk` at `at`, every length prefix counting
/// what it encloses.
fn encode(d: &SignatureData, at: Option<Junk>, junk: &[u8]) -> Vec<u8> {
    let mut out = vec![SPEC_VERSION, CONTENT_TYPE, HASH_SHA256];
    leb(&mut out, d.sets.len());
    for (i, set) in d.sets.iter().enumerate() {
        let mut s = Vec::new();
        leb(&mut s, set.hashes.len());
        for h in &set.hashes {
            s.extend_from_slice(h);
        }
        leb(&mut s, set.signatures.len());
        for (j, sig) in set.signatures.iter().enumerate() {
            let mut g = Vec::new();
            prefixed(&mut g, &sig.key_id);
            g.push(sig.alg);
            prefixed(&mut g, &sig.sig);
            if at == Some(Junk::Signature { set: i, sig: j }) {
                g.extend_from_slice(junk);
            }
            prefixed(&mut s, &g);
        }
        if at == Some(Junk::Set { set: i }) {
            s.extend_from_slice(junk);
        }
        prefixed(&mut out, &s);
    }
    if at == Some(Junk::End) {
        out.extend_from_slice(junk);
    }
    out
}

/// Unsigned LEB128, written here rather than borrowed from the code under
/// test so the two encoders check each other.
fn leb(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    leb(out, bytes.len());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many deterministic inputs through the checks, and the case the
    /// builder exists for written out.
    #[test]
    fn built_signature_data_parses_and_junk_is_refused() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let input: Vec<u8> = (0..96)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            run(&input);
        }
        // And a case written out: one set, one signature, junk inside it.
        let model = SignatureData {
            sets: vec![SignedHashes {
                hashes: vec![[7; 32]],
                signatures: vec![Signature {
                    key_id: b"k".to_vec(),
                    alg: 1,
                    sig: vec![9; 64],
                }],
            }],
        };
        let bad = encode(&model, Some(Junk::Signature { set: 0, sig: 0 }), b"xx");
        assert!(SignatureData::parse(&bad).is_err());
        assert_eq!(encode(&model, None, &[]), model.encode());
    }
}
