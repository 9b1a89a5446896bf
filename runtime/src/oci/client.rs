//! The registry client: push and pull one MOD over the OCI distribution
//! API (blocking; the daemon runs it on a blocking thread).
//!
//! What a registry can make this host hold is bounded: every request
//! under one deadline for the whole push or pull (connect, headers and
//! body), a manifest at most [`MANIFEST_MAX`] bytes, a component exactly
//! the size its manifest declares (at most a component's cap), an error
//! or token answer a few KiB. Every byte is checked against its digest
//! before it is returned; the registry's text is escaped and clipped.

use std::io::Read;
use std::time::{Duration, Instant};

use super::auth::{self, Challenge, Credentials};
use super::manifest::{self, MANIFEST_MAX};
use super::{Digest, MANIFEST_MEDIA_TYPE, OciError, Reference};

/// Default deadline of one push or pull.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// Connecting to the registry, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An error answer's body, read at most (for its message).
const ERROR_BODY_MAX: usize = 4 << 10;
/// A blob's content type on upload.
const OCTETS: &str = "application/octet-stream";
/// A registry's message, shown at most.
const MESSAGE_MAX: usize = 300;

/// What was pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pinned to the manifest's digest (what a policy
    /// names).
    pub pinned: Reference,
    /// The component's digest.
    pub layer: Digest,
    /// Whether the component was already there (not uploaded again).
    pub layer_existed: bool,
}

/// What was pulled, each part checked against its digest.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: Vec<u8>,
    /// The component.
    pub component: Vec<u8>,
}

/// A registry client for one push or pull.
pub struct Client {
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    deadline: Instant,
    auth: Option<String>,
    /// Pushing: a token is asked for pull and push.
    push: bool,
}

/// One request to make.
struct Call<'a> {
    method: &'static str,
    url: String,
    send: Option<(&'a [u8], &'static str)>,
    accept: Option<&'static str>,
    /// The body read at most (more is an error).
    max: usize,
}

impl<'a> Call<'a> {
    fn get(url: String, accept: Option<&'static str>, max: usize) -> Call<'a> {
        Call {
            method: "GET",
            url,
            send: None,
            accept,
            max,
        }
    }

    fn head(url: String) -> Call<'a> {
        Call {
            method: "HEAD",
            url,
            send: None,
            accept: None,
            max: 0,
        }
    }

    fn send(method: &'static str, url: String, body: &'a [u8], ctype: &'static str) -> Call<'a> {
        Call {
            method,
            url,
            send: Some((body, ctype)),
            accept: None,
            max: ERROR_BODY_MAX,
        }
    }
}

/// An answer: status, selected headers, capped body.
struct Answer {
    status: u16,
    location: Option<String>,
    digest: Option<String>,
    challenge: Option<String>,
    body: Vec<u8>,
}

impl Client {
    /// A client whose whole push or pull must finish within `deadline`.
    pub fn new(credentials: Option<Credentials>, deadline: Duration) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .max_redirects(5)
            .build()
            .into();
        Client {
            agent,
            credentials,
            deadline: Instant::now() + deadline,
            auth: None,
            push: false,
        }
    }

    fn remaining(&self, r: &Reference) -> Result<Duration, OciError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OciError::Unreachable {
                registry: r.registry.clone(),
                why: "no answer within the deadline".into(),
            });
        }
        Ok(left)
    }

    /// One request, its body read up to `max` bytes (more is an error).
    fn once(&self, r: &Reference, c: &Call) -> Result<Answer, OciError> {
        let (method, url, send, accept, max) = (c.method, c.url.as_str(), c.send, c.accept, c.max);
        let timeout = Some(self.remaining(r)?);
        let unreachable = |e: ureq::Error| OciError::Unreachable {
            registry: r.registry.clone(),
            why: clip(&e.to_string()),
        };
        let mut req = http_request(method, url)?;
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = match send {
            Some((body, ctype)) => {
                let req = req.header("Content-Type", ctype).body(body);
                self.run(req.expect("valid request"), timeout)
            }
            None => self.run(req.body(()).expect("valid request"), timeout),
        }
        .map_err(unreachable)?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let status = resp.status().as_u16();
        let (location, digest, challenge) = (
            header("location"),
            header("docker-content-digest"),
            header("www-authenticate"),
        );
        let mut body = Vec::new();
        if method != "HEAD" {
            let cap = if (200..300).contains(&status) {
                max
            } else {
                ERROR_BODY_MAX
            };
            resp.body_mut()
                .as_reader()
                .take(cap as u64 + 1)
                .read_to_end(&mut body)
                .map_err(|e| OciError::Unreachable {
                    registry: r.registry.clone(),
                    why: clip(&e.to_string()),
                })?;
            if body.len() > cap && (200..300).contains(&status) {
                return Err(OciError::Protocol {
                    registry: r.registry.clone(),
                    why: format!("{} sent more than {cap} bytes", clip(url)),
                });
            }
        }
        Ok(Answer {
            status,
            location,
            digest,
            challenge,
            body,
        })
    }

    /// Send `req` under `timeout` (the rest of the deadline).
    fn run<S: ureq::AsSendBody>(
        &self,
        req: ureq::http::Request<S>,
        timeout: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let req = self
            .agent
            .configure_request(req)
            .timeout_global(timeout)
            .build();
        self.agent.run(req)
    }

    /// A request, authenticated once on a 401 as its challenge asks.
    fn request(&mut self, r: &Reference, c: &Call) -> Result<Answer, OciError> {
        let a = self.once(r, c)?;
        if a.status != 401 || self.auth.is_some() {
            return Ok(a);
        }
        let challenge = a.challenge.as_deref().and_then(auth::parse_challenge);
        self.auth = Some(match challenge {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => c.basic(),
                None => return Err(self.needs_login(r)),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let push = self.push;
                let token = self.token(r, &realm, service.as_deref(), scope.as_deref(), push)?;
                format!("Bearer {token}")
            }
            None => return Err(self.needs_login(r)),
        });
        self.once(r, c)
    }

    fn needs_login(&self, r: &Reference) -> OciError {
        OciError::Protocol {
            registry: r.registry.clone(),
            why: "it asks for a login (set P2PB_REGISTRY_USER and P2PB_REGISTRY_PASSWORD)".into(),
        }
    }

    /// A Bearer token from `realm`: HTTPS only, unless the registry itself
    /// is plain HTTP (credentials never go in clear to a third party).
    fn token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        push: bool,
    ) -> Result<String, OciError> {
        let https = realm.starts_with("https://");
        if !(https || (r.plain_http && realm.starts_with("http://"))) {
            return Err(OciError::Protocol {
                registry: r.registry.clone(),
                why: format!("its token realm {} is not an HTTPS URL", clip(realm)),
            });
        }
        let url = auth::token_url(realm, service, scope, &r.repository, push);
        let mut req = http_request("GET", &url)?;
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", c.basic());
        }
        let registry = r.registry.clone();
        let req = req.body(()).expect("valid request");
        let timeout = Some(self.remaining(r)?);
        let mut resp = self.run(req, timeout).map_err(|e| OciError::Unreachable {
            registry: registry.clone(),
            why: format!("token: {}", clip(&e.to_string())),
        })?;
        if resp.status().as_u16() != 200 {
            return Err(OciError::Protocol {
                registry,
                why: format!("its token realm answered HTTP {}", resp.status().as_u16()),
            });
        }
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(auth::TOKEN_MAX as u64)
            .read_to_end(&mut body)
            .map_err(|e| OciError::Unreachable {
                registry: registry.clone(),
                why: clip(&e.to_string()),
            })?;
        auth::token_of(&body).map_err(|why| OciError::Protocol { registry, why })
    }

    /// Push `component` (titled `name`) to `r`'s tag; the component blob
    /// is uploaded only if the registry lacks it.
    pub fn push(
        &mut self,
        r: &Reference,
        component: &[u8],
        name: Option<&str>,
    ) -> Result<Pushed, OciError> {
        let created = humantime::format_rfc3339_seconds(created_at()).to_string();
        let art = manifest::artifact(component, name, &created);
        let base = r.base_url();
        self.push = true;
        let mut layer_existed = false;
        for (blob, digest) in [
            (&art.config[..], Digest::of(&art.config)),
            (component, art.layer),
        ] {
            let head = self.request(r, &Call::head(format!("{base}/blobs/{digest}")))?;
            if head.status == 200 {
                layer_existed |= digest == art.layer;
                continue;
            }
            let url = format!("{base}/blobs/uploads/");
            let start = self.request(r, &Call::send("POST", url, &[], OCTETS))?;
            expect(r, &start, 202, "starting an upload")?;
            let loc = start
                .location
                .as_deref()
                .ok_or_else(|| OciError::Protocol {
                    registry: r.registry.clone(),
                    why: "an upload without a Location".into(),
                })?;
            let url = upload_url(r, loc, &digest)?;
            let put = self.request(r, &Call::send("PUT", url, blob, OCTETS))?;
            expect(r, &put, 201, "uploading a blob")?;
        }
        let key = r.tag.clone().unwrap_or_else(|| art.digest.to_string());
        let url = format!("{base}/manifests/{key}");
        let put = self.request(
            r,
            &Call::send("PUT", url, &art.manifest, MANIFEST_MEDIA_TYPE),
        )?;
        expect(r, &put, 201, "putting the manifest")?;
        if let Some(d) = put.digest.as_deref()
            && d != art.digest.to_string()
        {
            return Err(OciError::Protocol {
                registry: r.registry.clone(),
                why: format!("it stored the manifest as {}, not {}", clip(d), art.digest),
            });
        }
        Ok(Pushed {
            pinned: r.pinned(art.digest),
            layer: art.layer,
            layer_existed,
        })
    }

    /// Pull `r`: the manifest (checked against the pinned digest, if
    /// any, and for being a MOD's), then its component (checked against
    /// the manifest's size and digest).
    pub fn pull(&mut self, r: &Reference) -> Result<Pulled, OciError> {
        let base = r.base_url();
        let url = format!("{base}/manifests/{}", r.manifest_key());
        let m = self.request(r, &Call::get(url, Some(MANIFEST_MEDIA_TYPE), MANIFEST_MAX))?;
        expect(r, &m, 200, "the manifest")?;
        let digest = Digest::of(&m.body);
        if let Some(wanted) = r.digest
            && wanted != digest
        {
            return Err(OciError::Digest {
                what: format!("the manifest of {r}"),
                wanted,
                got: digest,
            });
        }
        let (layer, size) = manifest::component_layer(&m.body)?;
        let url = format!("{base}/blobs/{layer}");
        let b = self.request(r, &Call::get(url, None, size as usize))?;
        expect(r, &b, 200, "the component")?;
        if b.body.len() as u64 != size {
            return Err(OciError::Protocol {
                registry: r.registry.clone(),
                why: format!(
                    "the component blob ended after {} of its {size} bytes",
                    b.body.len()
                ),
            });
        }
        let got = Digest::of(&b.body);
        if got != layer {
            return Err(OciError::Digest {
                what: format!("the component of {r}"),
                wanted: layer,
                got,
            });
        }
        Ok(Pulled {
            digest,
            manifest: m.body,
            component: b.body,
        })
    }
}

/// Now, or `SOURCE_DATE_EPOCH` when set (reproducible builds): the same
/// component pushed at the same stated time gets the same digest.
fn created_at() -> std::time::SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or_else(std::time::SystemTime::now)
}

fn http_request(method: &str, url: &str) -> Result<ureq::http::request::Builder, OciError> {
    // A URL the registry chose (an upload Location) must parse as one.
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| OciError::Reference(format!("{} is not a URL", clip(url))))?;
    Ok(ureq::http::Request::builder().method(method).uri(uri))
}

/// The URL to PUT an upload to: the registry's Location (relative to it,
/// or absolute over HTTP(S)) with the blob's digest.
fn upload_url(r: &Reference, location: &str, digest: &Digest) -> Result<String, OciError> {
    let base = if location.starts_with('/') {
        let scheme = if r.plain_http { "http" } else { "https" };
        format!("{scheme}://{}{location}", r.registry)
    } else if location.starts_with("https://") || location.starts_with("http://") {
        location.to_string()
    } else {
        return Err(OciError::Protocol {
            registry: r.registry.clone(),
            why: format!("an upload Location {} that is not a URL", clip(location)),
        });
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{base}{sep}digest={}",
        digest.to_string().replace(':', "%3A")
    ))
}

/// `a` must have `status`; else the registry's error code and message.
fn expect(r: &Reference, a: &Answer, status: u16, what: &str) -> Result<(), OciError> {
    if a.status == status {
        return Ok(());
    }
    let detail = registry_message(&a.body)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Err(OciError::Protocol {
        registry: r.registry.clone(),
        why: format!("{what}: HTTP {}{detail}", a.status),
    })
}

/// `CODE message` of the distribution API's error body, escaped, clipped.
fn registry_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let e: Errors = serde_json::from_slice(body).ok()?;
    let first = e.errors.first()?;
    let text = format!(
        "{} {}",
        first.code.as_deref().unwrap_or(""),
        first.message.as_deref().unwrap_or("")
    );
    Some(clip(text.trim()))
}

/// Escaped and at most [`MESSAGE_MAX`] characters.
fn clip(s: &str) -> String {
    let e = crate::text::escape(s);
    match e.char_indices().nth(MESSAGE_MAX) {
        Some((at, _)) => format!("{}…", &e[..at]),
        None => e.into_owned(),
    }
}
