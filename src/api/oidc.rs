//! OpenID Connect for the console's single sign-on: the authorization code
//! flow with PKCE, on the `openidconnect` crate, which discovers the
//! provider, exchanges the code and validates the ID token (signature
//! against the provider's JWKS, issuer, audience, expiry, nonce). Nothing
//! here checks a signature by hand.
//!
//! The provider's metadata and keys are fetched on first use and again
//! when older than [`METADATA_MAX_AGE`] (a provider rotating its keys is
//! followed within that time). Requests to the provider follow no redirect
//! (as the crate advises, against SSRF) and time out after
//! [`PROVIDER_TIMEOUT`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IdTokenVerifier,
    IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::secret::{self, Secret};

/// How long the provider's metadata and keys are kept.
pub const METADATA_MAX_AGE: Duration = Duration::from_secs(600);
/// How long one request to the provider may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most groups taken from the groups claim, and the longest name kept.
pub const MAX_GROUPS: usize = 256;
const MAX_NAME: usize = 255;

/// `--oidc-*`: the provider and this client.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// `--oidc-issuer`: the issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    /// `--oidc-client-id`.
    pub client_id: String,
    /// `--oidc-client-secret-file`'s secret; none: a public client (PKCE only).
    pub client_secret: Option<Secret>,
    /// `--oidc-groups-claim` (default `groups`).
    pub groups_claim: String,
    /// Where the provider sends the browser back: `{--public-url}/auth/callback`.
    pub redirect_url: String,
}

/// Why a sign-in failed. Never holds a token, a code or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A URL of the settings is not one.
    #[error("single sign-on: {what} is not a valid URL: {source}")]
    Url {
        /// Which setting.
        what: &'static str,
        /// Why.
        #[source]
        source: url::ParseError,
    },
    /// The provider's discovery document or keys could not be had.
    #[error("single sign-on: cannot read the provider's metadata from {issuer}: {message}")]
    Discovery {
        /// The issuer.
        issuer: String,
        /// Why (the crate's message, which holds no secret).
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("single sign-on: HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The code could not be exchanged for tokens.
    #[error("single sign-on: the provider refused the code: {0}")]
    Exchange(String),
    /// The token response held no ID token.
    #[error("single sign-on: the provider sent no ID token")]
    NoIdToken,
    /// The ID token failed validation (signature, issuer, audience, expiry, nonce).
    #[error("single sign-on: the ID token is not valid: {0}")]
    InvalidIdToken(String),
}

/// The claims beside the standard ones (where the groups claim is found).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    /// Every other claim, by name.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

/// An ID token with the extra claims.
pub type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// An ID token's claims with the extra claims.
pub type IdTokenClaims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;

type Tokens = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type Client = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Who signed in, from a validated ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// What `user:` subjects of RoleBindings match: `email` when the
    /// provider says it is verified (`email_verified: true`), else `sub`.
    pub name: String,
    /// The groups claim's strings (what `group:` subjects match).
    pub groups: Vec<String>,
}

/// A sign-in under way: what the callback needs to finish it.
#[derive(Debug)]
pub struct Begun {
    /// Where to send the browser.
    pub url: String,
    /// The `state` the provider sends back.
    pub state: Secret,
    /// The nonce the ID token must carry.
    pub nonce: Secret,
    /// The PKCE verifier of the challenge sent.
    pub pkce_verifier: Secret,
}

/// The relying party: settings, an HTTP client, the provider's metadata.
pub struct Oidc {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Discovered>)>>,
}

/// What the provider's discovery gave: the client, and where it signs
/// users out (RP-initiated logout), if it says.
struct Discovered {
    client: Client,
    end_session: Option<EndSessionUrl>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Checks the URLs; contacts nobody (the provider is read on first use).
    pub fn new(settings: OidcSettings) -> Result<Oidc, OidcError> {
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|source| OidcError::Url {
            what: "--oidc-issuer",
            source,
        })?;
        let redirect =
            RedirectUrl::new(settings.redirect_url.clone()).map_err(|source| OidcError::Url {
                what: "--public-url",
                source,
            })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(OidcError::Client)?;
        Ok(Oidc {
            settings,
            issuer,
            redirect,
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The groups claim's name.
    pub fn groups_claim(&self) -> &str {
        &self.settings.groups_claim
    }

    async fn client(&self) -> Result<Arc<Discovered>, OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, c)) = cached.as_ref() {
            if at.elapsed() < METADATA_MAX_AGE {
                return Ok(c.clone());
            }
        }
        let metadata = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| OidcError::Discovery {
                issuer: self.settings.issuer.clone(),
                message: secret::error_chain(&e),
            })?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let client = Client::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(self.redirect.clone());
        let found = Arc::new(Discovered {
            client,
            end_session,
        });
        *cached = Some((Instant::now(), found.clone()));
        Ok(found)
    }

    /// Where to send the browser to sign out at the provider too
    /// (RP-initiated logout: `id_token_hint` when the session kept its ID
    /// token, this client's id, and `post_logout_redirect_uri`); `None`
    /// when the provider advertises no `end_session_endpoint`.
    pub async fn logout_url(
        &self,
        id_token: Option<&str>,
        back_to: &str,
    ) -> Result<Option<String>, OidcError> {
        let found = self.client().await?;
        let Some(end) = found.end_session.clone() else {
            return Ok(None);
        };
        let back =
            PostLogoutRedirectUrl::new(back_to.to_string()).map_err(|source| OidcError::Url {
                what: "--public-url",
                source,
            })?;
        let mut req = LogoutRequest::from(end)
            .set_client_id(ClientId::new(self.settings.client_id.clone()))
            .set_post_logout_redirect_uri(back);
        // A token that no longer parses is only left out: the provider then
        // asks the user to confirm instead.
        if let Some(t) = id_token.and_then(|t| t.parse::<IdToken>().ok()) {
            req = req.set_id_token_hint(&t);
        }
        Ok(Some(req.http_get_url().to_string()))
    }

    /// Starts a sign-in: the provider's authorization URL with a new state,
    /// nonce and PKCE (S256) challenge; scopes `openid email profile`.
    pub async fn begin(&self) -> Result<Begun, OidcError> {
        let client = &self.client().await?.client;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Begun {
            url: url.to_string(),
            state: Secret::new(state.secret().clone()),
            nonce: Secret::new(nonce.secret().clone()),
            pkce_verifier: Secret::new(verifier.secret().clone()),
        })
    }

    /// Finishes a sign-in: exchanges `code` (with the PKCE verifier) and
    /// validates the ID token against `nonce`. Who it names, and the ID
    /// token itself (the hint of a later sign-out at the provider).
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<(Identity, Secret), OidcError> {
        let found = self.client().await?;
        let client = &found.client;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(secret::error_chain(&e)))?;
        let id_token = tokens.id_token().ok_or(OidcError::NoIdToken)?;
        let verifier = client.id_token_verifier();
        let who = verify(&verifier, id_token, nonce, &self.settings.groups_claim);
        drop(verifier);
        Ok((who?, Secret::new(id_token.to_string())))
    }
}

/// Validates `token` (signature, issuer, audience, expiry, nonce) with
/// the crate's verifier, then reads who it names.
pub fn verify(
    verifier: &IdTokenVerifier<'_, CoreJsonWebKey>,
    token: &IdToken,
    nonce: &str,
    groups_claim: &str,
) -> Result<Identity, OidcError> {
    let claims = token
        .claims(verifier, &Nonce::new(nonce.to_string()))
        .map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
    Ok(identity(claims, groups_claim))
}

/// Who validated `claims` name: `sub`, a verified `email` (else `sub`), and the
/// strings of `groups_claim` (an array, or one string), bounded.
pub fn identity(claims: &IdTokenClaims, groups_claim: &str) -> Identity {
    let subject = clip(claims.subject().as_str());
    // An e-mail the provider has not verified could be anyone's: then the
    // subject, which the provider alone assigns.
    let name = match (claims.email(), claims.email_verified()) {
        (Some(e), Some(true)) => clip(e.as_str()),
        _ => subject.clone(),
    };
    let groups = match claims.additional_claims().rest.get(groups_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .take(MAX_GROUPS)
            .map(clip)
            .collect(),
        Some(serde_json::Value::String(one)) => vec![clip(one)],
        _ => Vec::new(),
    };
    Identity {
        subject,
        name,
        groups,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_NAME).collect()
}

#[cfg(test)]
mod tests;
