//! HTTPS on the API's listener (issue #26): the API and the console over
//! TLS with a test CA, plain HTTP to the TLS port refused, a renewed
//! certificate served without a restart, and a bad pair refused at start.

use std::path::Path;
use std::time::Duration;

use cpi::api::https::TlsFiles;
use reqwest::StatusCode;

use crate::support::api::Server;
use crate::support::bin::{cpi, tool};
use crate::support::tls::{ca, leaf};
use crate::support::wait::wait_for;

/// A CA and a certificate `NAME` for `localhost` and 127.0.0.1 in `dir`.
fn certificate(dir: &Path, name: &str) {
    leaf(
        dir,
        "ca",
        name,
        "localhost",
        Some("DNS:localhost,IP:127.0.0.1"),
        "30",
    );
}

/// A client that trusts only the test CA and opens a new connection per
/// request (so each one sees the certificate served at that moment).
fn client(dir: &Path) -> reqwest::Client {
    let pem = std::fs::read(dir.join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// The DER of a PEM certificate file.
fn der_of(file: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(file).unwrap();
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// `serial=...` of a PEM certificate file, as openssl prints it.
fn serial_of(dir: &Path, file: &str) -> String {
    tool(
        "openssl",
        &["x509", "-noout", "-serial", "-in", file],
        Some(dir),
    )
    .trim()
    .to_string()
}

/// The API served over HTTPS with `dir`'s `tls.crt` and `tls.key`; its https base.
async fn https_server(dir: &Path) -> (Server, String) {
    let files = TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let server = Server::start_adjusted(|s| s.http.tls = Some(files)).await;
    let base = server.base.replace("http://", "https://");
    (server, base)
}

/// The test CA, with `tls.crt`/`tls.key` issued by it.
fn test_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ca(dir.path(), "ca");
    certificate(dir.path(), "tls");
    dir
}

#[tokio::test]
async fn api_and_console_over_https_with_a_test_ca() {
    let dir = test_ca();
    let (server, base) = https_server(dir.path()).await;
    let https = client(dir.path());
    for host in [base.clone(), base.replace("127.0.0.1", "localhost")] {
        let r = https.get(format!("{host}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
    }
    let page = https.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<html"));
    let js = https
        .get(format!("{base}/console/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    // The API behind its token, over TLS.
    let r = https
        .get(format!("{base}/connections"))
        .bearer_auth(crate::support::api::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A client that does not trust the test CA gets no answer.
    let stranger = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let e = stranger
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    server.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_refused() {
    let dir = test_ca();
    let (server, base) = https_server(dir.path()).await;
    let plain = reqwest::Client::new();
    let r = plain
        .get(format!("{}/connections", server.base))
        .bearer_auth(crate::support::api::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(text.contains("HTTPS"), "{text}");
    assert!(!text.contains('['), "no API answer: {text}");
    // The port still serves TLS afterwards.
    let r = client(dir.path())
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop().await;
}

/// The certificate the server presents on a new connection of a new
/// client (a client's TLS session cache would resume the old session,
/// which presents no certificate).
async fn served(dir: &Path, base: &str) -> Vec<u8> {
    let r = client(dir)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the peer certificate")
        .to_vec()
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart() {
    let dir = test_ca();
    let d = dir.path();
    let (server, base) = https_server(d).await;
    let first = served(d, &base).await;
    assert_eq!(first, der_of(&d.join("tls.crt")));
    certificate(d, "renewed");
    let (old_serial, new_serial) = (serial_of(d, "tls.crt"), serial_of(d, "renewed.crt"));
    assert_ne!(old_serial, new_serial);
    // Renewal as certbot's deploy hooks do it: the key, then the
    // certificate. Between the two the new key does not fit the old
    // certificate, and the old pair stays in service.
    std::fs::copy(d.join("renewed.key"), d.join("tls.key.new")).unwrap();
    std::fs::rename(d.join("tls.key.new"), d.join("tls.key")).unwrap();
    assert_eq!(
        served(d, &base).await,
        first,
        "the old pair while the key alone is new"
    );
    std::fs::copy(d.join("renewed.crt"), d.join("tls.crt.new")).unwrap();
    std::fs::rename(d.join("tls.crt.new"), d.join("tls.crt")).unwrap();
    let renewed = der_of(&d.join("renewed.crt"));
    wait_for("the renewed certificate", Duration::from_secs(10), || {
        let base = base.clone();
        let renewed = renewed.clone();
        async move { (served(d, &base).await == renewed).then_some(()) }
    })
    .await
    .unwrap();
    // The serial the client saw is the new one.
    let seen = d.join("seen.der");
    std::fs::write(&seen, served(d, &base).await).unwrap();
    let seen_serial = tool(
        "openssl",
        &[
            "x509", "-inform", "der", "-noout", "-serial", "-in", "seen.der",
        ],
        Some(d),
    );
    assert_eq!(seen_serial.trim(), new_serial);
    server.stop().await;
}

#[test]
fn serve_refuses_a_key_that_does_not_fit_the_certificate() {
    let dir = test_ca();
    let d = dir.path();
    certificate(d, "other");
    let cert = d.join("tls.crt");
    let key = d.join("other.key");
    let r = cpi(&[
        "serve",
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
    ]);
    assert_ne!(r.code, 0);
    r.assert_stderr("other.key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let secret_line = key_text.lines().nth(1).unwrap();
    r.assert_hides("the key", &[secret_line]);
    // One without the other is a usage error.
    let r = cpi(&["serve", "--tls-cert-file", cert.to_str().unwrap()]);
    assert_ne!(r.code, 0, "{}", r.all());
    r.assert_stderr("--tls-key-file");
}

/// A client that starts a handshake and stalls is closed within the
/// header timeout, as one that stalls its headers.
#[tokio::test]
async fn a_stalled_handshake_is_closed_within_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = test_ca();
    let files = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let server = Server::start_adjusted(|s| {
        s.http.tls = Some(files);
        s.http.header_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // A TLS record header, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent to a stalled handshake");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    server.stop().await;
}
