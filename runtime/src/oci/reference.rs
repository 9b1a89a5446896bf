//! `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`: what a MOD is pushed
//! to, pulled from and pinned by (pure).
//!
//! The grammar is the OCI distribution specification's (lower-case
//! repository path components, 128-character tags, `sha256` digests).
//! `oci://` speaks HTTPS; `oci+http://` plain HTTP, for a lab or an
//! air-gapped registry on a trusted network only: a pinned digest still
//! guards what is run, but not who sees which MODs are pulled.

use std::fmt;

use super::OciError;

/// Longest reference accepted (a repository is at most 255 characters).
const REFERENCE_MAX: usize = 512;

/// A sha256 content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(crate::sandbox::cache::sha256(bytes))
    }

    /// `sha256:HEX`, as registries write it. Other algorithms are refused
    /// by name: this broker pins sha256 only.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(format!("`{}` is not a digest (sha256:…)", esc(s)));
        };
        if alg != "sha256" {
            return Err(format!(
                "digest algorithm `{}` is not supported (only sha256)",
                esc(alg)
            ));
        }
        let mut out = [0u8; 32];
        if hex.len() != 64
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            || hex::decode_to_slice(hex, &mut out).is_err()
        {
            return Err(format!(
                "`{}` is not a sha256 digest (64 lower-case hex digits)",
                esc(s)
            ));
        }
        Ok(Digest(out))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `oci+http://`: plain HTTP.
    pub plain_http: bool,
    /// `HOST[:PORT]` (`[IPV6]:PORT` for an IPv6 address).
    pub registry: String,
    /// `PATH/NAME`.
    pub repository: String,
    /// The tag, if named.
    pub tag: Option<String>,
    /// The pinned manifest digest, if named.
    pub digest: Option<Digest>,
}

fn esc(s: &str) -> String {
    crate::text::escaped(s)
}

fn bad(s: &str, why: &str) -> OciError {
    OciError::Reference(format!("`{}` is not an OCI reference: {why}", esc(s)))
}

impl Reference {
    /// Parse `oci://…` or `oci+http://…`. Without a tag or digest the tag
    /// is `latest`, as every registry client assumes.
    pub fn parse(s: &str) -> Result<Reference, OciError> {
        if s.len() > REFERENCE_MAX {
            return Err(OciError::Reference(format!(
                "an OCI reference of {} bytes (at most {REFERENCE_MAX})",
                s.len()
            )));
        }
        let (plain_http, rest) = if let Some(r) = s.strip_prefix("oci://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("oci+http://") {
            (true, r)
        } else {
            return Err(bad(
                s,
                "it starts with oci:// (HTTPS) or oci+http:// (plain HTTP)",
            ));
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(bad(s, "no repository after the registry"));
        };
        check_registry(registry).map_err(|why| bad(s, &why))?;
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => (p, Some(Digest::parse(d).map_err(|why| bad(s, &why))?)),
            None => (path, None),
        };
        // A tag follows the last `:` after the last `/`.
        let last = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last..].rfind(':') {
            Some(i) => (&path[..last + i], Some(&path[last + i + 1..])),
            None => (path, None),
        };
        check_repository(repository).map_err(|why| bad(s, &why))?;
        if let Some(t) = tag {
            check_tag(t).map_err(|why| bad(s, &why))?;
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(String::from),
        };
        Ok(Reference {
            plain_http,
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What the manifest is fetched by: the digest if pinned (the tag is
    /// then only a label), else the tag.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The registry's base URL (`https://HOST/v2/REPO`).
    pub fn base_url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", self.registry, self.repository)
    }

    /// The same reference pinned to `digest`.
    pub fn pinned(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.plain_http { "oci+http" } else { "oci" };
        write!(f, "{scheme}://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn check_registry(r: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = r.strip_prefix('[') {
        let (addr, rest) = v6
            .split_once(']')
            .ok_or("an unclosed `[` in the registry")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{}` is not an IPv6 address", esc(addr)))?;
        (None, rest.strip_prefix(':'))
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(h) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
            return Err(format!("`{}` is not a registry host name", esc(h)));
        }
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("`{}` is not a port", esc(p)));
    }
    Ok(())
}

fn check_repository(repo: &str) -> Result<(), String> {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* per component.
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            let dashes = sep.bytes().all(|x| x == b'-');
            if !(sep == "." || sep == "_" || sep == "__" || dashes) {
                return false;
            }
        }
        true
    };
    if repo.is_empty() || repo.len() > 255 || !repo.split('/').all(component_ok) {
        return Err(format!(
            "`{}` is not a repository (lower-case letters, digits and . _ __ - between them, \
             components separated by /)",
            esc(repo)
        ));
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a tag (at most 128 of A-Z a-z 0-9 _ . -, not starting with . or -)",
            esc(t)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse_and_print_back() {
        for s in [
            "oci://registry.example/team/nat-pmp:1.0",
            "oci+http://198.51.100.1:5000/mods/nat-pmp:v2",
            "oci://[2001:db8::1]:5000/a/b__c/d-e:x",
        ] {
            assert_eq!(Reference::parse(s).unwrap().to_string(), s);
        }
        let r = Reference::parse(&format!("oci://reg:5000/a/b:t@{D}")).unwrap();
        assert_eq!(r.registry, "reg:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.manifest_key(), D, "a pinned digest is what is fetched");
        assert_eq!(r.base_url(), "https://reg:5000/v2/a/b");
        let bare = Reference::parse("oci://reg/a").unwrap();
        assert_eq!(bare.tag.as_deref(), Some("latest"));
        let by_digest = Reference::parse(&format!("oci://reg/a@{D}")).unwrap();
        assert_eq!(by_digest.tag, None);
        assert_eq!(by_digest.to_string(), format!("oci://reg/a@{D}"));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("https://reg/a:1", "oci://"),
            ("oci://reg", "no repository"),
            ("oci://reg/A:1", "not a repository"),
            ("oci://reg/a--/b", "not a repository"),
            ("oci://reg/a//b", "not a repository"),
            ("oci://reg/a:-x", "not a tag"),
            ("oci://reg/a@md5:00", "not supported"),
            ("oci://reg/a@sha256:00", "64 lower-case"),
            ("oci://reg:0/a", "not a port"),
            ("oci://reg:99999/a", "not a port"),
            ("oci://re_g/a", "not a registry host"),
            ("oci://[::1/a", "unclosed"),
            ("oci://reg/a:\u{1b}[31m", "\\u{1b}"),
        ];
        for (s, want) in cases {
            let e = Reference::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
            assert!(!e.contains('\u{1b}'), "escaped: {e}");
        }
        let long = format!("oci://reg/{}", "a".repeat(600));
        assert!(Reference::parse(&long).is_err());
    }

    #[test]
    fn digests_round_trip_and_upper_case_is_refused() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(d.to_string(), D);
        assert_eq!(Digest::of(b"").hex().len(), 64);
        assert!(Digest::parse(&D.to_uppercase().replace("SHA256", "sha256")).is_err());
    }
}
