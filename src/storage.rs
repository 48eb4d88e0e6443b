//! Object-storage inboxes (DESIGN §8): `s3://bucket/prefix/` locations
//! (parsed and checked here, purely), and the few requests cpi makes to an
//! S3-compatible store through the AWS SDK: list a prefix, stream an
//! object, copy, put a report, delete.
//!
//! Credentials come only from the standard AWS chain (environment, shared
//! credentials file and `AWS_PROFILE`, web identity, container and
//! instance metadata), never from a project config; the SDK's credential
//! types redact themselves, and cpi never formats them.
//!
//! An object is known by its key and ETag: a queued job's path is
//! `s3://bucket/key#etag` ([`ObjectRef::job_path`]), so a re-upload under
//! the same key is a new file (the content ledger still refuses the same
//! content), and every read and copy is conditional on that ETag.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::Client;
use serde::{Deserialize, Serialize};

/// The scheme of an object-storage location.
pub const SCHEME: &str = "s3://";

/// The non-secret settings of an object store (S3 or S3-compatible:
/// MinIO, Ceph, R2, GCS's interoperability API). Credentials are never
/// here: they come from the environment, the shared credentials file
/// (`AWS_PROFILE`), web identity or instance metadata.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The store's URL (default: AWS S3 for the region), e.g. `https://minio.example:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (default: `AWS_REGION`, the profile's, else `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow an `http://` endpoint (default false: only `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible stores need (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
}

/// Whether `s` names an object-storage location (`s3://…`).
pub fn is_object(s: &str) -> bool {
    s.starts_with(SCHEME)
}

/// A prefix in a bucket: an object inbox, or its `processed/`, `failed/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Empty (the bucket's top) or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// `s3://bucket/prefix/`.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}/{}", self.bucket, self.prefix)
    }

    /// The location `sub/` below this one.
    pub fn join(&self, sub: &str) -> S3Location {
        let sub = sub.trim_matches('/');
        S3Location {
            bucket: self.bucket.clone(),
            prefix: format!("{}{sub}/", self.prefix),
        }
    }

    /// The name of `key` when it lies directly under this prefix (not in
    /// a sub-"folder" such as `processed/`), else `None`.
    pub fn direct_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        let name = key.strip_prefix(self.prefix.as_str())?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// One object, and the ETag it had when it was listed (if known).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The ETag without quotes; reads and copies are conditional on it.
    pub etag: Option<String>,
}

impl ObjectRef {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}/{}", self.bucket, self.key)
    }

    /// `s3://bucket/key#etag`: the object as a job knows it (the queue's
    /// unique index then holds one active job per key and content).
    pub fn job_path(&self) -> String {
        match &self.etag {
            Some(e) => format!("{}#{e}", self.url()),
            None => self.url(),
        }
    }

    /// The key's last segment: the file name.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// The prefix the object lies in.
    pub fn location(&self) -> S3Location {
        let prefix = match self.key.rfind('/') {
            Some(i) => self.key[..=i].to_string(),
            None => String::new(),
        };
        S3Location {
            bucket: self.bucket.clone(),
            prefix,
        }
    }
}

/// Bucket names as S3 allows them (3–63 of `a-z 0-9 . -`, starting and
/// ending with a letter or digit).
fn check_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{b:?} is not a valid bucket name (3 to 63 of a-z, 0-9, '.', '-')"
        ))
    }
}

fn split(s: &str) -> Result<(&str, &str), String> {
    let rest = s
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("{s:?} does not start with {SCHEME}"))?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket(bucket).map_err(|m| format!("{s:?}: {m}"))?;
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("{s:?}: '.' and '..' are not allowed in a key"));
    }
    Ok((bucket, path))
}

/// Parses `s3://bucket/prefix/` (the prefix may be empty; a missing
/// trailing `/` is added: a prefix is a folder).
pub fn parse_location(s: &str) -> Result<S3Location, String> {
    let (bucket, path) = split(s)?;
    if path.contains("//") {
        return Err(format!("{s:?}: empty folder name ('//')"));
    }
    let prefix = match path.trim_start_matches('/') {
        "" => String::new(),
        p if p.ends_with('/') => p.to_string(),
        p => format!("{p}/"),
    };
    Ok(S3Location {
        bucket: bucket.to_string(),
        prefix,
    })
}

/// Parses `s3://bucket/key`, or a job's `s3://bucket/key#etag`.
pub fn parse_object(s: &str) -> Result<ObjectRef, String> {
    let (url, etag) = match s.rsplit_once('#') {
        // An ETag is hex, with `-<parts>` for a multipart upload.
        Some((u, e)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-') => {
            (u, Some(e.to_string()))
        }
        _ => (s, None),
    };
    let (bucket, key) = split(url)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(format!("{s:?}: names a prefix, not an object"));
    }
    Ok(ObjectRef {
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag,
    })
}

/// Where `processed_dir` / `failed_dir` put an object inbox's files: a
/// relative setting (or the default) is a prefix under the inbox's.
pub fn sub_location(
    inbox: &S3Location,
    configured: Option<&str>,
    default: &str,
) -> Result<S3Location, String> {
    match configured {
        Some(d) if is_object(d) => parse_location(d),
        Some(d) => Ok(inbox.join(d)),
        None => Ok(inbox.join(default)),
    }
}

/// The config rules of object inboxes (pure): the URLs parse; an object
/// inbox's `processed_dir`/`failed_dir` are relative or `s3://`, a
/// folder inbox's are not `s3://`; an `http://` endpoint needs `allow_http`.
pub fn check_config(
    inbox: Option<&str>,
    processed_dir: Option<&str>,
    failed_dir: Option<&str>,
    storage: Option<&StorageConfig>,
    errors: &mut Vec<String>,
) {
    let object_inbox = inbox.is_some_and(is_object);
    if let Some(i) = inbox.filter(|i| is_object(i)) {
        if let Err(m) = parse_location(i) {
            errors.push(format!("inbox: {m}"));
        }
    }
    for (k, d) in [("processed_dir", processed_dir), ("failed_dir", failed_dir)] {
        let Some(d) = d else { continue };
        if is_object(d) {
            if !object_inbox {
                errors.push(format!(
                    "{k}: {d:?} is in object storage but the inbox is a folder"
                ));
            } else if let Err(m) = parse_location(d) {
                errors.push(format!("{k}: {m}"));
            }
        } else if object_inbox && d.starts_with('/') {
            errors.push(format!(
                "{k}: {d:?} is a local folder but the inbox is in object storage (use a name relative to the inbox, or s3://…)"
            ));
        }
    }
    if let Some(endpoint) = storage.and_then(|s| s.endpoint.as_deref()) {
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" => {
                if storage.and_then(|s| s.allow_http) != Some(true) {
                    errors.push(format!(
                        "storage.endpoint: {endpoint:?} is http:// (unencrypted): set storage.allow_http: true to allow it"
                    ));
                }
            }
            _ => errors.push(format!(
                "storage.endpoint: {endpoint:?} is not an http(s):// URL"
            )),
        }
    }
}

/// A request to the object store that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {url}: {message}")]
pub struct StorageError {
    /// What was asked (`list`, `read`, `copy`, ...).
    pub what: &'static str,
    /// The location or object.
    pub url: String,
    /// The SDK's explanation, with its causes.
    pub message: String,
    /// The HTTP status, when the store answered.
    pub status: Option<u16>,
}

impl StorageError {
    /// The object (or its ETag) is not there: gone, or replaced.
    pub fn is_gone(&self) -> bool {
        matches!(self.status, Some(404) | Some(412))
    }
}

fn sdk_error<E, R>(what: &'static str, url: String, e: SdkError<E, R>) -> StorageError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let status = e.raw_response().map(HasStatus::status);
    StorageError {
        what,
        url,
        message: DisplayErrorContext(&e).to_string(),
        status,
    }
}

/// The HTTP status of a raw response (the SDK's response type).
trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// The client for `config` (one per distinct config and process: loading
/// the credential chain is not free, and its cache refreshes itself).
pub async fn client(config: Option<&StorageConfig>) -> Client {
    static CLIENTS: OnceLock<Mutex<HashMap<StorageConfig, Client>>> = OnceLock::new();
    let config = config.cloned().unwrap_or_default();
    let clients = CLIENTS.get_or_init(Mutex::default);
    if let Some(c) = clients.lock().unwrap().get(&config) {
        return c.clone();
    }
    let c = new_client(&config).await;
    clients.lock().unwrap().insert(config, c.clone());
    c
}

async fn new_client(config: &StorageConfig) -> Client {
    use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
    use aws_smithy_http_client::tls;
    // rustls with ring, as the rest of cpi (no OpenSSL, no aws-lc build).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(r) = &config.region {
        loader = loader.region(Region::new(r.clone()));
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.path_style.unwrap_or(false))
        // S3-compatible stores differ in the newer checksum headers; the
        // content is checked by its sha256 in the ledger anyway.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    if let Some(e) = &config.endpoint {
        b = b.endpoint_url(e.clone());
    }
    Client::from_conf(b.build())
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The object, with its ETag.
    pub object: ObjectRef,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// The objects directly under `loc` (not in its sub-"folders", where
/// `processed/` and `failed/` live), every page of the listing.
pub async fn list(client: &Client, loc: &S3Location) -> Result<Vec<Listed>, StorageError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(&loc.bucket)
            .prefix(&loc.prefix)
            .delimiter("/")
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("list", loc.url(), e))?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            if loc.direct_name(key).is_none() {
                continue;
            }
            out.push(Listed {
                object: ObjectRef {
                    bucket: loc.bucket.clone(),
                    key: key.to_string(),
                    etag: o.e_tag().map(unquote),
                },
                size: o.size().unwrap_or(0).max(0) as u64,
                modified: o
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// The object's size and ETag now (`Err` with [`StorageError::is_gone`]
/// when it is not there, or its ETag is no longer the one known).
pub async fn head(client: &Client, o: &ObjectRef) -> Result<(u64, Option<String>), StorageError> {
    let h = client
        .head_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .set_if_match(o.etag.as_ref().map(|e| format!("\"{e}\"")))
        .send()
        .await
        .map_err(|e| sdk_error("read", o.url(), e))?;
    Ok((
        h.content_length().unwrap_or(0).max(0) as u64,
        h.e_tag().map(unquote),
    ))
}

/// An object to read as a file: each [`Object::read`] is one streaming GET
/// (a sniffing pass and the load each stream it; nothing is held in memory).
#[derive(Debug, Clone)]
pub struct Object {
    client: Client,
    /// The object (with the ETag every read is conditional on).
    pub object: ObjectRef,
    /// Its size, from the HEAD that opened it.
    pub size: u64,
    /// Set when a read failed on the way (network, store): the job did not
    /// judge the file, and is tried again.
    failed: Arc<AtomicBool>,
}

impl Object {
    /// Checks the object is there (with its ETag, when known) and takes
    /// its size; the ETag read here pins the following reads.
    pub async fn open(client: Client, mut object: ObjectRef) -> Result<Object, StorageError> {
        let (size, etag) = head(&client, &object).await?;
        if object.etag.is_none() {
            object.etag = etag;
        }
        Ok(Object {
            client,
            object,
            size,
            failed: Arc::default(),
        })
    }

    /// Whether a read of the object failed on the way (not for its content).
    pub fn read_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Streams the object from the start. Blocking: call it off the
    /// runtime (`spawn_blocking`), as the file reads are.
    pub fn read(&self) -> io::Result<Box<dyn Read + Send>> {
        let handle = tokio::runtime::Handle::current();
        let o = &self.object;
        let got = handle.block_on(
            self.client
                .get_object()
                .bucket(&o.bucket)
                .key(&o.key)
                .set_if_match(o.etag.as_ref().map(|e| format!("\"{e}\"")))
                .send(),
        );
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                let e = sdk_error("read", o.url(), e);
                let kind = if e.is_gone() {
                    io::ErrorKind::NotFound
                } else {
                    self.failed.store(true, Ordering::Relaxed);
                    io::ErrorKind::Other
                };
                return Err(io::Error::new(kind, e.to_string()));
            }
        };
        let body =
            tokio_util::io::SyncIoBridge::new_with_handle(got.body.into_async_read(), handle);
        Ok(Box::new(Watched {
            inner: body,
            read: Arc::default(),
            expected: self.size,
            failed: self.failed.clone(),
        }))
    }
}

/// A body whose failures are remembered (a network error is not a CSV
/// error), and whose early end is one: a body shorter than the object's
/// size is an error, never a silently shorter file.
struct Watched<R> {
    inner: R,
    read: Arc<AtomicU64>,
    expected: u64,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        let r = match r {
            Ok(0) if !buf.is_empty() && self.read.load(Ordering::Relaxed) < self.expected => {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object store closed the stream before the end of the object",
                ))
            }
            r => r,
        };
        match &r {
            Ok(n) => {
                self.read.fetch_add(*n as u64, Ordering::Relaxed);
            }
            Err(_) => self.failed.store(true, Ordering::Relaxed),
        }
        r.map_err(|e| io::Error::new(e.kind(), format!("reading from the object store: {e}")))
    }
}

/// Whether `bucket/key` exists.
pub async fn exists(client: &Client, bucket: &str, key: &str) -> Result<bool, StorageError> {
    let o = ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        etag: None,
    };
    match head(client, &o).await {
        Ok(_) => Ok(true),
        Err(e) if e.status == Some(404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies `from` (if it still has its ETag) to `to`, server side.
pub async fn copy(client: &Client, from: &ObjectRef, to: &ObjectRef) -> Result<(), StorageError> {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // The copy source is `bucket/key`, URL-encoded but for its slashes.
    const KEY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let source = format!("{}/{}", from.bucket, utf8_percent_encode(&from.key, KEY));
    client
        .copy_object()
        .copy_source(source)
        .set_copy_source_if_match(from.etag.as_ref().map(|e| format!("\"{e}\"")))
        .bucket(&to.bucket)
        .key(&to.key)
        .send()
        .await
        .map_err(|e| sdk_error("copy", from.url(), e))?;
    Ok(())
}

/// Writes `body` as `bucket/key` (a report: small).
pub async fn put(client: &Client, to: &ObjectRef, body: Vec<u8>) -> Result<(), StorageError> {
    client
        .put_object()
        .bucket(&to.bucket)
        .key(&to.key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .map_err(|e| sdk_error("put", to.url(), e))?;
    Ok(())
}

/// Deletes `o` (its key: S3's delete is not conditional everywhere).
pub async fn delete(client: &Client, o: &ObjectRef) -> Result<(), StorageError> {
    client
        .delete_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .send()
        .await
        .map_err(|e| sdk_error("delete", o.url(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_with_a_folder_prefix() {
        let l = parse_location("s3://my-bucket/in/orders").unwrap();
        assert_eq!(l.bucket, "my-bucket");
        assert_eq!(l.prefix, "in/orders/");
        assert_eq!(l.url(), "s3://my-bucket/in/orders/");
        assert_eq!(parse_location("s3://my-bucket/in/").unwrap().prefix, "in/");
        assert_eq!(parse_location("s3://my-bucket").unwrap().prefix, "");
        assert_eq!(parse_location("s3://my-bucket/").unwrap().prefix, "");
        for bad in [
            "s3://",
            "s3://ab/x",
            "s3://My_Bucket/x",
            "s3://-bucket/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "/local/in",
            "https://bucket/x",
        ] {
            assert!(parse_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_parse_with_and_without_an_etag() {
        let o = parse_object("s3://b-1/in/a.csv").unwrap();
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("b-1", "in/a.csv"));
        assert_eq!(o.etag, None);
        assert_eq!(o.name(), "a.csv");
        assert_eq!(o.location().prefix, "in/");
        let o = parse_object("s3://b-1/in/a.csv#0123abcd-2").unwrap();
        assert_eq!(o.key, "in/a.csv");
        assert_eq!(o.etag.as_deref(), Some("0123abcd-2"));
        assert_eq!(o.job_path(), "s3://b-1/in/a.csv#0123abcd-2");
        // A '#' in a key that is not followed by an ETag is part of the key.
        let o = parse_object("s3://b-1/in/a#b.csv").unwrap();
        assert_eq!((o.key.as_str(), o.etag), ("in/a#b.csv", None));
        assert_eq!(
            parse_object("s3://b-1/top.csv").unwrap().location().prefix,
            ""
        );
        assert!(parse_object("s3://b-1/in/").is_err());
        assert!(parse_object("s3://b-1").is_err());
    }

    #[test]
    fn only_objects_directly_under_the_prefix_are_the_inbox() {
        let l = parse_location("s3://bkt/in/").unwrap();
        assert_eq!(l.direct_name("in/a.csv"), Some("a.csv"));
        assert_eq!(l.direct_name("in/processed/a.csv"), None);
        assert_eq!(l.direct_name("in/failed/a.csv.error.json"), None);
        assert_eq!(l.direct_name("in/"), None);
        assert_eq!(l.direct_name("other/a.csv"), None);
    }

    #[test]
    fn processed_and_failed_default_under_the_inbox() {
        let l = parse_location("s3://bkt/in/").unwrap();
        assert_eq!(
            sub_location(&l, None, "processed").unwrap().url(),
            "s3://bkt/in/processed/"
        );
        assert_eq!(
            sub_location(&l, Some("done"), "processed").unwrap().url(),
            "s3://bkt/in/done/"
        );
        assert_eq!(
            sub_location(&l, Some("s3://other/rej"), "failed")
                .unwrap()
                .url(),
            "s3://other/rej/"
        );
    }

    #[test]
    fn config_rules() {
        let check = |inbox, p, f, s: Option<StorageConfig>| {
            let mut e = Vec::new();
            check_config(inbox, p, f, s.as_ref(), &mut e);
            e
        };
        assert!(check(Some("s3://bkt/in/"), Some("done"), None, None).is_empty());
        assert!(check(Some("/in"), Some("done"), Some("/x"), None).is_empty());
        assert!(check(Some("s3://B/in/"), None, None, None)[0].starts_with("inbox: "));
        assert!(check(Some("/in"), Some("s3://bkt/done/"), None, None)[0]
            .contains("the inbox is a folder"));
        assert!(
            check(Some("s3://bkt/in/"), None, Some("/var/rej"), None)[0].contains("local folder")
        );
        let http = StorageConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..Default::default()
        };
        assert!(check(None, None, None, Some(http.clone()))[0].contains("allow_http"));
        let allowed = StorageConfig {
            allow_http: Some(true),
            ..http
        };
        assert!(check(None, None, None, Some(allowed)).is_empty());
    }
}
