//! The key format: `rvc_<id>_<secret>`.
//!
//! * `id`: 12 characters of `[a-z0-9]`, public: it names the key in logs, `rvcctl apikey list`
//!   and the database (primary key), so a lookup is one index probe.
//! * `secret`: 40 characters of `[A-Za-z0-9]` from the thread-local CSPRNG (ChaCha12 seeded by
//!   the OS), about 238 bits of entropy.
//!
//! Only `SHA-256(whole key)` is stored. A slow password hash buys nothing for a random 238-bit
//! secret (there is no dictionary to slow down) and would cost CPU on every request.
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "rvc_";
pub const ID_LEN: usize = 12;
pub const SECRET_LEN: usize = 40;
/// `rvc_` + id + `_` + secret.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// A key as presented by a client. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    id: String,
    full: String,
}

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PresentedKey(rvc_{}_<redacted>)", self.id)
    }
}

/// Why a string is not a key (the client sees one message for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("an API key starts with rvc_")]
    Prefix,
    #[error("an API key is {KEY_LEN} characters")]
    Length,
    #[error("the key id is {ID_LEN} characters of a-z0-9")]
    Id,
    #[error("the key secret is {SECRET_LEN} characters of A-Za-z0-9")]
    Secret,
}

impl PresentedKey {
    /// Parses `rvc_<id>_<secret>`; total on arbitrary input (never panics).
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let rest = s.strip_prefix(PREFIX).ok_or(KeyFormatError::Prefix)?;
        if s.len() != KEY_LEN {
            return Err(KeyFormatError::Length);
        }
        // Length checked on bytes; the checks below reject any non-ASCII byte, so slicing at
        // ASCII positions is safe after `is_ascii`.
        if !rest.is_ascii() {
            return Err(KeyFormatError::Id);
        }
        let (id, tail) = rest.split_at(ID_LEN);
        if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(KeyFormatError::Id);
        }
        let secret = tail.strip_prefix('_').ok_or(KeyFormatError::Id)?;
        if secret.len() != SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError::Secret);
        }
        Ok(Self {
            id: id.to_owned(),
            full: s.to_owned(),
        })
    }

    /// The public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// SHA-256 of the whole key, as stored.
    pub fn sha256(&self) -> [u8; 32] {
        hash(&self.full)
    }

    /// Whether this key hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        let mine = self.sha256();
        stored.len() == mine.len() && bool::from(mine.as_slice().ct_eq(stored))
    }
}

/// SHA-256 of a key string.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A freshly generated key: the full secret (show it once) and what to store.
pub struct GeneratedKey {
    pub id: String,
    /// The whole key, `rvc_<id>_<secret>`; give it to the client, never store or log it.
    pub key: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeneratedKey(rvc_{}_<redacted>)", self.id)
    }
}

/// Generates a new key.
pub fn generate() -> GeneratedKey {
    const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let id: String = (0..ID_LEN)
        .map(|_| char::from(ID_CHARS[rng.random_range(0..ID_CHARS.len())]))
        .collect();
    let secret = Alphanumeric.sample_string(&mut rng, SECRET_LEN);
    let key = format!("{PREFIX}{id}_{secret}");
    GeneratedKey {
        sha256: hash(&key),
        id,
        key,
    }
}

/// The key in an `Authorization` header value: `Bearer <key>` (scheme case-insensitive).
/// `None` when the header is not a bearer credential.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_match_their_hash() {
        let g = generate();
        assert_eq!(g.key.len(), KEY_LEN);
        let p = PresentedKey::parse(&g.key).unwrap();
        assert_eq!(p.id(), g.id);
        assert!(p.matches(&g.sha256));
        let other = generate();
        assert!(!p.matches(&other.sha256));
        assert!(!p.matches(&g.sha256[..31]));
        assert_ne!(g.id, other.id);
        assert!(
            !format!("{p:?}{g:?}").contains(&g.key[17..]),
            "Debug leaks the secret"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let g = generate();
        assert_eq!(PresentedKey::parse("").unwrap_err(), KeyFormatError::Prefix);
        assert_eq!(
            PresentedKey::parse("rvc_abc").unwrap_err(),
            KeyFormatError::Length
        );
        let upper_id = format!("rvc_{}{}", g.id.to_uppercase(), &g.key[16..]);
        assert!(PresentedKey::parse(&upper_id).is_err());
        let bad_secret = format!("{}!", &g.key[..KEY_LEN - 1]);
        assert_eq!(
            PresentedKey::parse(&bad_secret).unwrap_err(),
            KeyFormatError::Secret
        );
        let non_ascii = format!("rvc_{}é", &g.key[4..KEY_LEN - 2]);
        assert!(PresentedKey::parse(&non_ascii).is_err());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer   abc "), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(&[0xff, 0xfe]), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = PresentedKey::parse(&s);
        }

        #[test]
        fn bearer_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(t) = bearer(&b) { let _ = PresentedKey::parse(t); }
        }
    }
}
