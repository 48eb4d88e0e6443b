//! API tokens: made once and shown once, stored (in git) only as the
//! SHA-256 of the token, and recognised by comparing digests in constant time.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The prefix of every token cpi makes, so a leaked one is easy to spot and grep for.
pub const TOKEN_PREFIX: &str = "cpi_";

/// A named token as the manifests declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownToken {
    /// The ApiToken's name: the actor in the audit trail, the subject of bindings.
    pub name: String,
    /// The SHA-256 of the token, 32 bytes.
    pub sha256: [u8; 32],
    /// After this instant the token is refused.
    pub expires: Option<DateTime<Utc>>,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// A known, current token of this name.
    Valid(String),
    /// A known token past its expiry (its name).
    Expired(String),
    /// No token has this hash.
    Unknown,
}

/// A new random token: the prefix and 32 random bytes, hex.
pub fn generate() -> Secret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Secret::new(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The hex SHA-256 of a token, as an ApiToken's `sha256` holds it.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Parses an ApiToken's `sha256` field: 64 hex digits (either case).
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// Which known token `given` is, at `now`. Every digest is compared in
/// constant time, and all of them are, so timing tells nothing.
pub fn check(known: &[KnownToken], given: &str, now: DateTime<Utc>) -> TokenCheck {
    let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let mut found: Option<&KnownToken> = None;
    for k in known {
        if bool::from(k.sha256.ct_eq(&digest)) && found.is_none() {
            found = Some(k);
        }
    }
    match found {
        None => TokenCheck::Unknown,
        Some(k) if k.expires.is_some_and(|e| e <= now) => TokenCheck::Expired(k.name.clone()),
        Some(k) => TokenCheck::Valid(k.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_prefixed_and_hash_round_trips() {
        let a = generate();
        let b = generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        let hash = sha256_hex(a.expose());
        assert_eq!(hash.len(), 64);
        assert!(parse_sha256(&hash).is_some());
        assert!(parse_sha256(&hash.to_uppercase()).is_some());
        assert!(parse_sha256("abc").is_none());
        assert!(parse_sha256(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn check_finds_the_token_and_refuses_expired_and_unknown() {
        let now: DateTime<Utc> = "2026-12-07T12:00:00Z".parse().unwrap();
        let known = vec![
            KnownToken {
                name: "ci".into(),
                sha256: parse_sha256(&sha256_hex("t-ci")).unwrap(),
                expires: None,
            },
            KnownToken {
                name: "old".into(),
                sha256: parse_sha256(&sha256_hex("t-old")).unwrap(),
                expires: Some("2026-12-07T11:59:59Z".parse().unwrap()),
            },
            KnownToken {
                name: "soon".into(),
                sha256: parse_sha256(&sha256_hex("t-soon")).unwrap(),
                expires: Some("2026-12-07T12:00:01Z".parse().unwrap()),
            },
        ];
        assert_eq!(check(&known, "t-ci", now), TokenCheck::Valid("ci".into()));
        assert_eq!(
            check(&known, "t-old", now),
            TokenCheck::Expired("old".into())
        );
        assert_eq!(
            check(&known, "t-soon", now),
            TokenCheck::Valid("soon".into())
        );
        assert_eq!(check(&known, "t-cI", now), TokenCheck::Unknown);
        assert_eq!(check(&known, "", now), TokenCheck::Unknown);
    }
}
