//! The callback's validation fed ID tokens made here, signed with RSA keys
//! the `openssl` CLI makes: a good one passes and names the user and their
//! groups; forged, expired, wrongly signed, for another client, from
//! another issuer or with another nonce are each refused by the crate.

use std::str::FromStr;

use chrono::{Duration, Utc};
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{
    Audience, EndUserEmail, IssuerUrl, JsonWebKeyId, JsonWebKeySet, Nonce, PrivateSigningKey,
    StandardClaims, SubjectIdentifier,
};

use super::*;

const ISSUER: &str = "http://127.0.0.1:9/oidc";
const CLIENT: &str = "cpi-console";
const NONCE: &str = "n-0S6_WzA2Mj";

fn rsa_key(kid: &str) -> CoreRsaPrivateSigningKey {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(out.status.success());
    CoreRsaPrivateSigningKey::from_pem(
        std::str::from_utf8(&out.stdout).unwrap(),
        Some(JsonWebKeyId::new(kid.into())),
    )
    .unwrap()
}

struct Claims {
    issuer: &'static str,
    audience: &'static str,
    nonce: &'static str,
    expires_in: Duration,
    email_verified: bool,
}

const GOOD: Claims = Claims {
    issuer: ISSUER,
    audience: CLIENT,
    nonce: NONCE,
    expires_in: Duration::minutes(5),
    email_verified: true,
};

fn token(key: &CoreRsaPrivateSigningKey, c: &Claims) -> IdToken {
    let mut extra = ExtraClaims::default();
    extra
        .rest
        .insert("groups".into(), serde_json::json!(["team-alpha", "ops"]));
    let claims = IdTokenClaims::new(
        IssuerUrl::new(c.issuer.into()).unwrap(),
        vec![Audience::new(c.audience.into())],
        Utc::now() + c.expires_in,
        Utc::now() - Duration::minutes(10),
        StandardClaims::new(SubjectIdentifier::new("u-123".into()))
            .set_email(Some(EndUserEmail::new("alice@example.com".into())))
            .set_email_verified(Some(c.email_verified)),
        extra,
    )
    .set_nonce(Some(Nonce::new(c.nonce.into())));
    IdToken::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .unwrap()
}

fn check(jwks_key: &CoreRsaPrivateSigningKey, t: &IdToken) -> Result<Identity, OidcError> {
    let jwks = JsonWebKeySet::new(vec![jwks_key.as_verification_key()]);
    let verifier = IdTokenVerifier::new_public_client(
        ClientId::new(CLIENT.into()),
        IssuerUrl::new(ISSUER.into()).unwrap(),
        jwks,
    );
    verify(&verifier, t, NONCE, "groups")
}

#[test]
fn a_good_id_token_names_the_user_and_groups_and_bad_ones_are_refused() {
    let key = rsa_key("k1");
    let who = check(&key, &token(&key, &GOOD)).unwrap();
    assert_eq!(
        who,
        Identity {
            subject: "u-123".into(),
            name: "alice@example.com".into(),
            groups: vec!["team-alpha".into(), "ops".into()],
        }
    );

    // An e-mail the provider did not verify names nobody: the subject does.
    let unverified = token(
        &key,
        &Claims {
            email_verified: false,
            ..GOOD
        },
    );
    assert_eq!(check(&key, &unverified).unwrap().name, "u-123");

    // Expired (beyond the crate's clock skew).
    let expired = token(
        &key,
        &Claims {
            expires_in: Duration::minutes(-10),
            ..GOOD
        },
    );
    let e = check(&key, &expired).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");

    // Signed by a key the provider does not publish (same kid).
    let other = rsa_key("k1");
    let e = check(&key, &token(&other, &GOOD)).unwrap_err();
    assert!(matches!(e, OidcError::InvalidIdToken(_)), "{e}");

    // Forged: the payload changed after signing (another subject).
    let good = token(&key, &GOOD).to_string();
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    let forged_payload = payload.replace("u-123", "u-admin");
    assert_ne!(payload, forged_payload);
    let forged = format!("{}.{}.{}", parts[0], b64.encode(forged_payload), parts[2]);
    let e = check(&key, &IdToken::from_str(&forged).unwrap()).unwrap_err();
    assert!(matches!(e, OidcError::InvalidIdToken(_)), "{e}");

    // Unsigned (`alg: none`) with the good payload.
    let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    if let Ok(none) = IdToken::from_str(&format!("{header}.{}.", parts[1])) {
        assert!(check(&key, &none).is_err());
    }

    // For another client, from another issuer, with another nonce.
    for bad in [
        Claims {
            audience: "someone-else",
            ..GOOD
        },
        Claims {
            issuer: "http://127.0.0.1:9/evil",
            ..GOOD
        },
        Claims {
            nonce: "replayed",
            ..GOOD
        },
    ] {
        let e = check(&key, &token(&key, &bad)).unwrap_err();
        assert!(matches!(e, OidcError::InvalidIdToken(_)), "{e}");
    }
}

#[test]
fn groups_are_read_from_the_named_claim_and_bounded() {
    let mut extra = ExtraClaims::default();
    let many: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
    extra.rest.insert("roles".into(), serde_json::json!(many));
    extra
        .rest
        .insert("groups".into(), serde_json::json!("solo"));
    let claims = IdTokenClaims::new(
        IssuerUrl::new(ISSUER.into()).unwrap(),
        vec![Audience::new(CLIENT.into())],
        Utc::now(),
        Utc::now(),
        StandardClaims::new(SubjectIdentifier::new("u-9".into())),
        extra,
    );
    let by_roles = identity(&claims, "roles");
    assert_eq!(by_roles.groups.len(), MAX_GROUPS);
    assert_eq!(by_roles.name, "u-9", "no email: the subject");
    assert_eq!(identity(&claims, "groups").groups, vec!["solo".to_string()]);
    assert!(identity(&claims, "absent").groups.is_empty());
}
