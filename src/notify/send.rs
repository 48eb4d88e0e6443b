//! Sending one message through a Provider: a signed JSON POST (webhook),
//! Slack's incoming-webhook JSON, or mail over SMTP (STARTTLS when the
//! server offers it). Secret files are read at each send, so a rotated
//! file is used at once; every error text is scrubbed of them.

use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::message::Outgoing;
use super::sign;
use crate::manifest::notify::{ProviderSpec, ProviderType, SmtpSpec};
use crate::secret::{self, Secret};

/// How long one send may take, connection included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Header naming the event a message is about (receivers deduplicate on it).
pub const EVENT_ID_HEADER: &str = "X-Cpi-Event-Id";
/// Header carrying the HMAC of a webhook body.
pub const SIGNATURE_HEADER: &str = "X-Cpi-Signature-256";

/// Why a message was not sent (texts hold no secret).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A secret file of the provider cannot be read.
    #[error("{field}: cannot read {path}: {source}")]
    Secret {
        /// The spec's field.
        field: &'static str,
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: secret::SmallFileError,
    },
    /// The spec lacks what its type needs (the loader checks this first).
    #[error("the provider has no {0}")]
    Incomplete(&'static str),
    /// The receiver could not be reached, or timed out.
    #[error("cannot reach the receiver: {0}")]
    Unreachable(String),
    /// The receiver answered, but not with a success.
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    /// The mail could not be built or sent.
    #[error("mail: {0}")]
    Mail(String),
}

impl SendError {
    /// Whether trying again may help (a refused message is not retried:
    /// an HTTP 4xx other than 408 and 429 will answer the same).
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            SendError::Incomplete(_) => false,
            _ => true,
        }
    }
}

fn read(field: &'static str, path: &Option<String>) -> Result<Option<Secret>, SendError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = secret::read_secret_file(std::path::Path::new(path)).map_err(|source| {
        SendError::Secret {
            field,
            path: path.clone(),
            source,
        }
    })?;
    let s = Secret::new(text.trim_end());
    secret::register(&s);
    Ok(Some(s))
}

/// An HTTP client for the providers: no redirects (a redirect could carry
/// the signed body elsewhere), bounded in time.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client builds")
}

/// Sends `msg` through `provider`.
pub async fn send(
    client: &reqwest::Client,
    provider: &ProviderSpec,
    msg: &Outgoing,
) -> Result<(), SendError> {
    match provider.kind {
        ProviderType::Webhook => {
            let url =
                read("url_file", &provider.url_file)?.ok_or(SendError::Incomplete("url_file"))?;
            let key = read("secret_file", &provider.secret_file)?;
            let body = serde_json::to_vec(&msg.body).expect("a message body serializes");
            let mut req = client
                .post(url.expose())
                .header("content-type", "application/json")
                .header(EVENT_ID_HEADER, msg.event_id.to_string());
            if let Some(k) = &key {
                req = req.header(
                    SIGNATURE_HEADER,
                    sign::signature(k.expose().as_bytes(), &body),
                );
            }
            post(req.body(body), &url).await
        }
        ProviderType::Slack => {
            let url =
                read("url_file", &provider.url_file)?.ok_or(SendError::Incomplete("url_file"))?;
            let body = serde_json::json!({ "text": msg.text });
            let req = client
                .post(url.expose())
                .header(EVENT_ID_HEADER, msg.event_id.to_string())
                .json(&body);
            post(req, &url).await
        }
        ProviderType::Email => {
            let smtp = provider
                .smtp
                .as_ref()
                .ok_or(SendError::Incomplete("smtp"))?;
            mail(smtp, msg).await
        }
    }
}

async fn post(req: reqwest::RequestBuilder, url: &Secret) -> Result<(), SendError> {
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(SendError::Status(resp.status().as_u16())),
        // The error names the URL, which is the secret: left out, scrubbed.
        Err(e) => Err(SendError::Unreachable(secret::scrub(
            &secret::error_chain(&e.without_url()),
            &[url],
        ))),
    }
}

/// `X-Cpi-Event-Id` on a mail.
#[derive(Debug, Clone)]
struct EventId(String);

impl Header for EventId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(EVENT_ID_HEADER)
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(EventId(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

async fn mail(smtp: &SmtpSpec, msg: &Outgoing) -> Result<(), SendError> {
    let bad =
        |e: &dyn std::error::Error| SendError::Mail(secret::scrub_known(&secret::error_chain(e)));
    let mut m = lettre::Message::builder()
        .from(smtp.from.parse().map_err(|e| bad(&e))?)
        .subject(msg.subject.clone())
        // The event id is also the Message-ID: mail clients thread and
        // deduplicate on it.
        .message_id(Some(format!("<{}@cpi>", msg.event_id)))
        .header(EventId(msg.event_id.to_string()))
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        m = m.to(to.parse().map_err(|e| bad(&e))?);
    }
    let m = m.body(msg.text.clone()).map_err(|e| bad(&e))?;
    let mut tls = TlsParameters::builder(smtp.host.clone());
    if let Some(path) = &smtp.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SendError::Mail(format!("smtp.ca_file: cannot read {path}: {e}")))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            SendError::Mail(format!("smtp.ca_file {path}: {}", secret::error_chain(&e)))
        })?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls.build().map_err(|e| bad(&e))?;
    let user = read("smtp.username_file", &smtp.username_file)?;
    let password = read("smtp.password_file", &smtp.password_file)?;
    let credentials = match (user, password) {
        (Some(u), Some(p)) => Some(Credentials::new(
            u.expose().to_string(),
            p.expose().to_string(),
        )),
        _ => None,
    };
    // STARTTLS when the server offers it; required when there is a password
    // to send, so that a server (or a man in the middle) that does not
    // offer it never sees the password.
    let tls = if credentials.is_some() {
        Tls::Required(tls)
    } else {
        Tls::Opportunistic(tls)
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port.unwrap_or(587))
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if let Some(c) = credentials {
        transport = transport.credentials(c);
    }
    let sent = tokio::time::timeout(SEND_TIMEOUT, transport.build().send(m)).await;
    match sent {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(bad(&e)),
        Err(_) => Err(SendError::Unreachable(
            "the mail server did not answer in time".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that cannot be reached: the error names neither the URL
    /// (the secret) nor any part of it.
    #[tokio::test]
    async fn an_unreachable_webhook_error_holds_no_url() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("u");
        // Port 1 on loopback: nothing listens.
        std::fs::write(&url_file, "http://127.0.0.1:1/planted-path-secret-0042\n").unwrap();
        let provider = ProviderSpec {
            kind: ProviderType::Webhook,
            url_file: Some(url_file.to_string_lossy().into_owned()),
            secret_file: None,
            smtp: None,
        };
        let msg = Outgoing {
            event_id: uuid::Uuid::nil(),
            subject: "s".into(),
            text: "t".into(),
            body: serde_json::json!({}),
        };
        let e = send(&client(), &provider, &msg).await.unwrap_err();
        assert!(e.retryable());
        let text = e.to_string();
        assert!(
            !text.contains("planted") && !text.contains("127.0.0.1:1"),
            "{text}"
        );
        assert!(text.starts_with("cannot reach the receiver"), "{text}");
    }
}
