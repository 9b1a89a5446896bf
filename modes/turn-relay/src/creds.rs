//! TURN credentials (pure): long-term ones as configured, and REST
//! "time-limited" ones derived from a shared secret (the scheme of
//! draft-uberti-behave-turn-rest, as coturn's `use-auth-secret` and most
//! WebRTC services implement it): user name `EXPIRY:user`, with EXPIRY in
//! Unix seconds, and password base64(HMAC-SHA1(secret, user name)).
//!
//! A TURN server refuses a Refresh or ChannelBind signed with another
//! user name than the Allocate's (RFC 8656 §5), so a REST user name is
//! fixed when the allocation is made and kept in the mapping's state; its
//! password is derived anew from the secret in config at each call.
//! Neither a password nor a key is ever stored.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A user name and password for one call.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// USERNAME.
    pub username: String,
    /// The password (for REST: the base64 HMAC).
    pub password: String,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the password.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where credentials come from, as config says.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// No credentials: only a server that asks for none can be used.
    None,
    /// Long-term credentials (`turn_username`, `turn_credential`).
    LongTerm(Credentials),
    /// REST credentials (`turn_username`, `turn_secret`,
    /// `turn_rest_ttl_s`).
    Rest {
        /// The user part of the user name.
        user: String,
        /// The secret shared with the server.
        secret: String,
        /// How long a new user name stays valid, seconds.
        ttl_s: u64,
    },
}

impl core::fmt::Debug for Source {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Source::None => f.write_str("None"),
            Source::LongTerm(c) => f.debug_tuple("LongTerm").field(c).finish(),
            Source::Rest { user, ttl_s, .. } => f
                .debug_struct("Rest")
                .field("user", user)
                .field("ttl_s", ttl_s)
                .finish_non_exhaustive(),
        }
    }
}

/// The REST user name for `user`, valid until `expiry` (Unix seconds).
pub fn rest_username(user: &str, expiry: u64) -> String {
    format!("{expiry}:{user}")
}

/// The REST password of `username`: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The expiry and user of a REST user name, if it is one.
pub fn rest_parts(username: &str) -> Option<(u64, &str)> {
    let (expiry, user) = username.split_once(':')?;
    Some((expiry.parse().ok()?, user))
}

impl Source {
    /// Credentials for a new allocation made at `now_unix`.
    pub fn fresh(&self, now_unix: u64) -> Option<Credentials> {
        match self {
            Source::None => None,
            Source::LongTerm(c) => Some(c.clone()),
            Source::Rest {
                user,
                secret,
                ttl_s,
            } => {
                let username = rest_username(user, now_unix.saturating_add(*ttl_s));
                let password = rest_password(secret, &username);
                Some(Credentials { username, password })
            }
        }
    }

    /// Credentials for the allocation made with `username` (empty: made
    /// without credentials), at `now_unix`. The error says why it can no
    /// longer be signed for: the allocation is as good as lost.
    pub fn for_allocation(
        &self,
        username: &str,
        now_unix: u64,
    ) -> Result<Option<Credentials>, String> {
        if username.is_empty() {
            return Ok(None);
        }
        match self {
            Source::None => Err(format!(
                "the allocation was made as TURN user {username} and config no longer has \
                 credentials"
            )),
            Source::LongTerm(c) if c.username == username => Ok(Some(c.clone())),
            Source::LongTerm(c) => Err(format!(
                "the allocation was made as TURN user {username}, config now names {}",
                c.username
            )),
            Source::Rest { user, secret, .. } => match rest_parts(username) {
                Some((_, u)) if u != user => Err(format!(
                    "the allocation was made as TURN user {username}, config now names {user}"
                )),
                Some((expiry, _)) if expiry <= now_unix => Err(format!(
                    "the REST credential {username} of the allocation expired"
                )),
                Some(_) => Ok(Some(Credentials {
                    username: username.to_string(),
                    password: rest_password(secret, username),
                })),
                None => Err(format!(
                    "the allocation was made as TURN user {username}, not a REST user name"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest() -> Source {
        Source::Rest {
            user: "alice".into(),
            secret: "north-secret".into(),
            ttl_s: 86_400,
        }
    }

    #[test]
    fn a_rest_password_matches_an_independent_computation() {
        // Computed offline with Python's hmac, hashlib.sha1 and base64.
        assert_eq!(
            rest_password("north-secret", "1700086400:alice"),
            "Nni2GlD6PVaoCP0Cx2DhLKDWjyY="
        );
    }

    #[test]
    fn fresh_rest_credentials_expire_ttl_after_now() {
        let c = rest().fresh(1_700_000_000).unwrap();
        assert_eq!(c.username, "1700086400:alice");
        assert_eq!(c.password, "Nni2GlD6PVaoCP0Cx2DhLKDWjyY=");
        assert_eq!(rest_parts(&c.username), Some((1_700_086_400, "alice")));
    }

    #[test]
    fn an_allocation_keeps_its_rest_user_name_until_it_expires() {
        let c = rest()
            .for_allocation("1700086400:alice", 1_700_050_000)
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "1700086400:alice");
        assert_eq!(c.password, "Nni2GlD6PVaoCP0Cx2DhLKDWjyY=");
        let expired = rest().for_allocation("1700086400:alice", 1_700_086_400);
        assert!(expired.unwrap_err().contains("expired"));
        let other = rest().for_allocation("1700086400:bob", 1_700_000_000);
        assert!(other.unwrap_err().contains("config now names alice"));
    }

    #[test]
    fn long_term_credentials_must_name_the_same_user() {
        let s = Source::LongTerm(Credentials {
            username: "alice".into(),
            password: "wonderland".into(),
        });
        assert_eq!(s.fresh(0), s.for_allocation("alice", 0).unwrap());
        assert!(s.for_allocation("bob", 0).is_err());
        assert_eq!(s.for_allocation("", 0), Ok(None));
        assert!(Source::None.for_allocation("alice", 0).is_err());
        assert_eq!(Source::None.fresh(0), None);
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let s = format!(
            "{:?} {:?}",
            rest(),
            Source::LongTerm(Credentials {
                username: "alice".into(),
                password: "wonderland".into(),
            })
        );
        assert!(s.contains("alice"), "{s}");
        assert!(
            !s.contains("north-secret") && !s.contains("wonderland"),
            "{s}"
        );
    }
}
