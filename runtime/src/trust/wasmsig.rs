//! Embedded signatures in the WebAssembly tool-conventions format
//! (`Signatures.md`, the one wasmsign2 implements), for components as for
//! modules: a custom section named `signature`, first in the binary, holding
//! signed SHA-256 hashes of the sections that follow.
//!
//! Pure functions over bytes. Only whole-binary signatures are produced and
//! accepted: a signed hash set counts only if its hashes are exactly the
//! rolling hashes at every `signature_delimiter` and at the end, so no
//! section can be added, removed or changed after signing.
//!
//! Wire layout (as wasmsign2 writes it; the prose spec omits the length
//! prefixes): `version(1) content_type(1) hash_fn(1) count(varuint)` then
//! `count` length-prefixed signed hash sets, each `n(varuint) n×32 bytes
//! sigs(varuint)` then `sigs` length-prefixed signatures, each
//! `key_id(len-prefixed) alg(1) signature(len-prefixed)`. The signed message
//! is `"wasmsig" ‖ version ‖ content_type ‖ hash_fn ‖ hashes`.

use sha2::{Digest, Sha256};

/// Section name of the signature data.
pub const SIGNATURE_SECTION: &str = "signature";
/// Section name of a delimiter.
pub const DELIMITER_SECTION: &str = "signature_delimiter";
/// Specification version.
pub const SPEC_VERSION: u8 = 0x01;
/// Content type: WebAssembly.
pub const CONTENT_TYPE: u8 = 0x01;
/// Hash function: SHA-256.
pub const HASH_SHA256: u8 = 0x01;
/// Signature algorithm: Ed25519.
pub const ALG_ED25519: u8 = 0x01;
/// Domain separation prefix of the signed message.
const DOMAIN: &[u8] = b"wasmsig";
/// Caps on what a signature section may declare, against absurd sizes.
pub const MAX_SETS: usize = 64;
/// Signatures per hash set.
pub const MAX_SIGNATURES: usize = 256;
/// Hashes per set.
pub const MAX_HASHES: usize = 64;

/// Why signature data or a binary could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// Not a WebAssembly module or component.
    #[error("not a WebAssembly binary (bad header)")]
    Header,
    /// A section runs past the end, or a length is malformed.
    #[error("malformed section at byte {0}")]
    Section(usize),
    /// The signature section is not where the format requires it.
    #[error("a `signature` section must be the first section, found one at section {0}")]
    Misplaced(usize),
    /// The signature data is malformed (which field).
    #[error("malformed signature data: {0}")]
    Data(&'static str),
    /// A version, content type or hash function this broker does not know.
    #[error("unsupported signature format: {0}")]
    Unsupported(&'static str),
    /// More sets, hashes or signatures than any signer would write.
    #[error("signature data declares too many {0}")]
    TooMany(&'static str),
}

/// One top-level section: id, and where its bytes (header included) lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Section id (0 = custom).
    pub id: u8,
    /// Custom section name, if custom.
    pub name: Option<String>,
    /// Byte range of the whole section (id, size, payload).
    pub range: std::ops::Range<usize>,
    /// Byte range of the payload (after the name, for custom sections).
    pub payload: std::ops::Range<usize>,
}

fn leb_u32(b: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(v).ok();
        }
    }
    None
}

pub(crate) use crate::build::put_leb;

fn put_slice(out: &mut Vec<u8>, s: &[u8]) {
    put_leb(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// Split a module or component into its top-level sections.
pub fn sections(bin: &[u8]) -> Result<Vec<Section>, SigError> {
    if bin.len() < 8 || &bin[..4] != b"\0asm" {
        return Err(SigError::Header);
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bin.len() {
        let start = pos;
        let id = bin[pos];
        pos += 1;
        let size = leb_u32(bin, &mut pos).ok_or(SigError::Section(start))? as usize;
        let end = pos
            .checked_add(size)
            .filter(|e| *e <= bin.len())
            .ok_or(SigError::Section(start))?;
        let (name, payload) = if id == 0 {
            let mut p = pos;
            let n = leb_u32(bin, &mut p).ok_or(SigError::Section(start))? as usize;
            let ne = p
                .checked_add(n)
                .filter(|e| *e <= end)
                .ok_or(SigError::Section(start))?;
            let name = String::from_utf8_lossy(&bin[p..ne]).into_owned();
            (Some(name), ne..end)
        } else {
            (None, pos..end)
        };
        out.push(Section {
            id,
            name,
            range: start..end,
            payload,
        });
        pos = end;
    }
    Ok(out)
}

/// One signature in a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signer's key identifier (may be empty).
    pub key_id: Vec<u8>,
    /// Algorithm (Ed25519 = 1).
    pub alg: u8,
    /// The signature bytes.
    pub sig: Vec<u8>,
}

/// Hashes and the signatures over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHashes {
    /// Rolling SHA-256 hashes, one per part.
    pub hashes: Vec<[u8; 32]>,
    /// Signatures over `hashes`.
    pub signatures: Vec<Signature>,
}

/// The payload of a `signature` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureData {
    /// Signed hash sets.
    pub sets: Vec<SignedHashes>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, SigError> {
        let v = *self.b.get(self.pos).ok_or(SigError::Data(what))?;
        self.pos += 1;
        Ok(v)
    }
    fn leb(&mut self, what: &'static str) -> Result<u32, SigError> {
        leb_u32(self.b, &mut self.pos).ok_or(SigError::Data(what))
    }
    fn slice(&mut self, what: &'static str) -> Result<&'a [u8], SigError> {
        let n = self.leb(what)? as usize;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(SigError::Data(what))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn done(&self, what: &'static str) -> Result<(), SigError> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(SigError::Data(what))
        }
    }
}

impl SignatureData {
    /// Parse signature data.
    pub fn parse(b: &[u8]) -> Result<SignatureData, SigError> {
        let mut r = Reader { b, pos: 0 };
        if r.byte("version")? != SPEC_VERSION {
            return Err(SigError::Unsupported("specification version"));
        }
        if r.byte("content type")? != CONTENT_TYPE {
            return Err(SigError::Unsupported("content type"));
        }
        if r.byte("hash function")? != HASH_SHA256 {
            return Err(SigError::Unsupported("hash function"));
        }
        let n = r.leb("set count")? as usize;
        if n > MAX_SETS {
            return Err(SigError::TooMany("hash sets"));
        }
        let mut sets = Vec::new();
        for _ in 0..n {
            let mut s = Reader {
                b: r.slice("hash set")?,
                pos: 0,
            };
            let nh = s.leb("hash count")? as usize;
            if nh > MAX_HASHES {
                return Err(SigError::TooMany("hashes"));
            }
            let mut hashes = Vec::new();
            for _ in 0..nh {
                let end = s.pos + 32;
                let h = s.b.get(s.pos..end).ok_or(SigError::Data("hash"))?;
                hashes.push(h.try_into().expect("32 bytes"));
                s.pos = end;
            }
            let ns = s.leb("signature count")? as usize;
            if ns > MAX_SIGNATURES {
                return Err(SigError::TooMany("signatures"));
            }
            let mut signatures = Vec::new();
            for _ in 0..ns {
                let mut g = Reader {
                    b: s.slice("signature")?,
                    pos: 0,
                };
                let key_id = g.slice("key id")?.to_vec();
                let alg = g.byte("algorithm")?;
                let sig = g.slice("signature bytes")?.to_vec();
                g.done("signature")?;
                signatures.push(Signature { key_id, alg, sig });
            }
            s.done("hash set")?;
            sets.push(SignedHashes { hashes, signatures });
        }
        r.done("signature data")?;
        Ok(SignatureData { sets })
    }

    /// Encode signature data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SPEC_VERSION, CONTENT_TYPE, HASH_SHA256];
        put_leb(&mut out, self.sets.len() as u32);
        for set in &self.sets {
            let mut s = Vec::new();
            put_leb(&mut s, set.hashes.len() as u32);
            for h in &set.hashes {
                s.extend_from_slice(h);
            }
            put_leb(&mut s, set.signatures.len() as u32);
            for sig in &set.signatures {
                let mut g = Vec::new();
                put_slice(&mut g, &sig.key_id);
                g.push(sig.alg);
                put_slice(&mut g, &sig.sig);
                put_slice(&mut s, &g);
            }
            put_slice(&mut out, &s);
        }
        out
    }
}

/// The message a signer signs over `hashes`.
pub fn signed_message(hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(&[SPEC_VERSION, CONTENT_TYPE, HASH_SHA256]);
    for h in hashes {
        m.extend_from_slice(h);
    }
    m
}

/// A binary split into its existing signature data (if any) and the rolling
/// hashes of everything after it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The 8-byte header.
    pub header: [u8; 8],
    /// Existing signature data.
    pub data: Option<SignatureData>,
    /// The bytes after the signature section (all signed content).
    pub content_start: usize,
    /// Rolling hashes at each delimiter and at the end.
    pub hashes: Vec<[u8; 32]>,
}

/// Parse `bin`: find the signature section and hash the rest.
pub fn parse(bin: &[u8]) -> Result<Parsed, SigError> {
    let secs = sections(bin)?;
    let mut data = None;
    let mut content_start = 8;
    for (i, s) in secs.iter().enumerate() {
        if s.id == 0 && s.name.as_deref() == Some(SIGNATURE_SECTION) {
            if i != 0 {
                return Err(SigError::Misplaced(i));
            }
            data = Some(SignatureData::parse(&bin[s.payload.clone()])?);
            content_start = s.range.end;
        }
    }
    let mut hasher = Sha256::new();
    let mut hashes = Vec::new();
    let mut last_was_delimiter = false;
    for s in secs.iter().filter(|s| s.range.start >= content_start) {
        hasher.update(&bin[s.range.clone()]);
        last_was_delimiter = s.id == 0 && s.name.as_deref() == Some(DELIMITER_SECTION);
        if last_was_delimiter {
            hashes.push(hasher.clone().finalize().into());
        }
    }
    if !last_was_delimiter {
        hashes.push(hasher.finalize().into());
    }
    Ok(Parsed {
        header: bin[..8].try_into().expect("8 bytes"),
        data,
        content_start,
        hashes,
    })
}

/// Rebuild `bin` with `data` as its signature section.
pub fn embed(bin: &[u8], p: &Parsed, data: &SignatureData) -> Vec<u8> {
    let mut payload = Vec::new();
    put_slice(&mut payload, SIGNATURE_SECTION.as_bytes());
    payload.extend_from_slice(&data.encode());
    let mut out = p.header.to_vec();
    out.push(0);
    put_slice(&mut out, &payload);
    out.extend_from_slice(&bin[p.content_start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Vec<u8> {
        // Header, a type section with no types, a custom section "x".
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[1, 1, 0]);
        m.extend_from_slice(&[0, 3, 1, b'x', 7]);
        m
    }

    #[test]
    fn sections_are_split_and_bad_lengths_refused() {
        let m = module();
        let s = sections(&m).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].name.as_deref(), Some("x"));
        assert_eq!(&m[s[1].payload.clone()], &[7]);
        let mut bad = m.clone();
        bad[9] = 50;
        assert_eq!(sections(&bad), Err(SigError::Section(8)));
        assert_eq!(sections(b"\0asx\x01\0\0\0"), Err(SigError::Header));
    }

    #[test]
    fn signature_data_round_trips_and_rejects_trailing_bytes() {
        let d = SignatureData {
            sets: vec![SignedHashes {
                hashes: vec![[7; 32]],
                signatures: vec![Signature {
                    key_id: b"kid".to_vec(),
                    alg: ALG_ED25519,
                    sig: vec![9; 64],
                }],
            }],
        };
        let e = d.encode();
        assert_eq!(SignatureData::parse(&e).unwrap(), d);
        let mut longer = e.clone();
        longer.push(0);
        assert!(SignatureData::parse(&longer).is_err());
        let mut v2 = e;
        v2[0] = 2;
        assert_eq!(
            SignatureData::parse(&v2),
            Err(SigError::Unsupported("specification version"))
        );
    }

    #[test]
    fn embedding_keeps_content_and_hashes() {
        let m = module();
        let p = parse(&m).unwrap();
        assert!(p.data.is_none());
        let signed = embed(&m, &p, &SignatureData::default());
        let q = parse(&signed).unwrap();
        assert_eq!(q.hashes, p.hashes, "the signature section is not hashed");
        assert_eq!(&signed[q.content_start..], &m[8..]);
        // A signature section anywhere but first is refused.
        let mut late = m.clone();
        late.extend_from_slice(&signed[8..q.content_start]);
        assert_eq!(parse(&late).unwrap_err(), SigError::Misplaced(2));
    }
}
