//! What a registry sends, as the OCI client reads it: manifests, the
//! `WWW-Authenticate` challenge, token answers; and the references and
//! digests a policy or a user writes. No panic; an accepted manifest names
//! exactly the layer digest it returns and a size within a component's
//! cap; an accepted token is a header value; an accepted reference or
//! digest prints back to itself (a reference without tag or digest gains
//! `:latest`, and then does).

use p2pbroker::oci::{Digest, Reference, auth, manifest};

/// One input.
pub fn run(data: &[u8]) {
    if let Ok((d, size)) = manifest::component_layer(data) {
        assert!(size <= p2pbroker::sandbox::load::COMPONENT_MAX as u64);
        // Typed, as the client reads it: fields it ignores are skipped
        // unchecked (a bad escape there does not refuse a manifest).
        let m: manifest::Manifest = serde_json::from_slice(data).unwrap();
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].digest, d.to_string());
    }
    if let Ok(t) = auth::token_of(data) {
        assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = auth::parse_challenge(text);
    if let Ok(r) = Reference::parse(text) {
        let again = Reference::parse(&r.to_string()).expect("prints back to a reference");
        assert_eq!(again, r);
        assert!(r.tag.is_some() || r.digest.is_some());
    }
    if let Ok(d) = Digest::parse(text) {
        assert_eq!(d.to_string(), text);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pseudo_random_inputs_pass() {
        crate::pseudo_random_inputs(2000, 300, super::run);
    }
}
