//! Object-storage inboxes (DESIGN §8): `s3://bucket/prefix/` locations
//! (parsed and checked here, purely), and the few requests cpi makes to an
//! S3-compatible store through the AWS SDK: list a prefix, stream an
//! object, copy, put a report, delete; and [`ObjectMove`], an object's
//! way from one prefix to another (copy, report, then delete), which the
//! daemon's moves after a job and the operator's controls both take.
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

mod address;
pub mod events;

pub use address::{
    check_config, is_object, parse_location, parse_object, sub_location, AddressError, ObjectRef,
    S3Location, StorageConfig, StorageEvents, SCHEME,
};

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

/// The SDK settings both clients (S3, SQS) start from: the default
/// credentials chain, the store's region, and rustls with ring as the rest
/// of cpi (no OpenSSL, no aws-lc build).
async fn sdk_config(config: &StorageConfig, read_timeout: Duration) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls;
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
                .read_timeout(read_timeout)
                .build(),
        );
    if let Some(r) = &config.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    loader.load().await
}

async fn new_client(config: &StorageConfig) -> Client {
    use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
    let shared = sdk_config(config, Duration::from_secs(60)).await;
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

/// Copies `from` (if it still has its ETag) to `to`, server side; the
/// copy's ETag (a multipart upload's copy has an ETag of its own).
pub async fn copy(
    client: &Client,
    from: &ObjectRef,
    to: &ObjectRef,
) -> Result<Option<String>, StorageError> {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // The copy source is `bucket/key`, URL-encoded but for its slashes.
    const KEY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let source = format!("{}/{}", from.bucket, utf8_percent_encode(&from.key, KEY));
    let out = client
        .copy_object()
        .copy_source(source)
        .set_copy_source_if_match(from.etag.as_ref().map(|e| format!("\"{e}\"")))
        .bucket(&to.bucket)
        .key(&to.key)
        .send()
        .await
        .map_err(|e| sdk_error("copy", from.url(), e))?;
    Ok(out
        .copy_object_result()
        .and_then(|r| r.e_tag())
        .map(unquote))
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

/// Reads a small object whole (a report), or `None` when it is not there
/// or larger than `max` bytes (not read then: its HEAD tells).
pub async fn get_small(
    client: &Client,
    o: &ObjectRef,
    max: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    match head(client, o).await {
        Ok((size, _)) if size <= max => {}
        Ok(_) => return Ok(None),
        Err(e) if e.is_gone() => return Ok(None),
        Err(e) => return Err(e),
    }
    let got = client
        .get_object()
        .bucket(&o.bucket)
        .key(&o.key)
        .send()
        .await
        .map_err(|e| sdk_error("read", o.url(), e))?;
    let body = got.body.collect().await.map_err(|e| StorageError {
        what: "read",
        url: o.url(),
        message: e.to_string(),
        status: None,
    })?;
    let bytes = body.into_bytes();
    Ok((bytes.len() as u64 <= max).then(|| bytes.to_vec()))
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

/// An object's way out of an `s3://` inbox: copied into `processed/` or
/// `failed/` (with its `.error.json` beside it), then deleted. Nothing is
/// deleted before its copy exists; each step that is done stays done
/// across retries.
#[derive(Debug)]
pub struct ObjectMove {
    client: Client,
    /// The object in the inbox, with the ETag the job read.
    pub from: ObjectRef,
    /// `processed/` or `failed/`.
    pub to: S3Location,
    /// The job id's prefix, for names already taken.
    pub job: String,
    /// The `.error.json` to put beside the copy (failed jobs).
    pub report: Option<Vec<u8>>,
    /// The copy, once it exists.
    copied: Option<ObjectRef>,
}

impl ObjectMove {
    /// A move of `from` into `to` for job `job`.
    pub fn new(
        client: Client,
        from: ObjectRef,
        to: S3Location,
        job: &str,
        report: Option<Vec<u8>>,
    ) -> ObjectMove {
        ObjectMove {
            client,
            from,
            to,
            job: job.to_string(),
            report,
            copied: None,
        }
    }

    /// `name` in `to`, or `<job>_name` when that key is taken (nothing is
    /// ever overwritten).
    async fn free_key(&self, name: &str) -> Result<String, StorageError> {
        let plain = format!("{}{name}", self.to.prefix);
        if exists(&self.client, &self.to.bucket, &plain).await? {
            Ok(format!("{}{}_{name}", self.to.prefix, self.job))
        } else {
            Ok(plain)
        }
    }

    /// One attempt: the copy if not done yet, the report beside it, then
    /// the delete of the original. `Ok(Some(copy))`: done; `Ok(None)`: the
    /// original is gone, or replaced by a new upload (its ETag changed):
    /// the new object is a new file, left in the inbox for its own job.
    /// What is done stays done for the next attempt.
    pub async fn attempt(&mut self) -> Result<Option<ObjectRef>, StorageError> {
        if self.copied.is_none() {
            let key = self.free_key(self.from.name()).await?;
            let to = ObjectRef {
                bucket: self.to.bucket.clone(),
                key,
                etag: None,
            };
            match copy(&self.client, &self.from, &to).await {
                Ok(etag) => self.copied = Some(ObjectRef { etag, ..to }),
                Err(e) if e.is_gone() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let copied = self.copied.clone().expect("set above");
        if let Some(report) = &self.report {
            let name = format!("{}.error.json", copied.name());
            let at = ObjectRef {
                bucket: copied.bucket.clone(),
                key: self.free_key(&name).await?,
                etag: None,
            };
            put(&self.client, &at, report.clone()).await?;
            self.report = None;
        }
        delete(&self.client, &self.from).await?;
        Ok(Some(copied))
    }

    /// Where the attempt that fails is heading, for the log.
    pub fn destination(&self) -> String {
        self.copied
            .as_ref()
            .map_or_else(|| self.to.url(), ObjectRef::url)
    }
}

/// An SQS client for `queue_url`, at the queue's own origin (the SQS
/// endpoint of its region, or an S3-compatible store's), with the same
/// credentials chain and TLS as the object store's.
pub async fn queue_client(config: &StorageConfig, queue_url: &str) -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::Region;
    let shared = sdk_config(config, Duration::from_secs(30)).await;
    let mut b = aws_sdk_sqs::config::Builder::from(&shared);
    if shared.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    if let Ok(u) = url::Url::parse(queue_url) {
        b = b.endpoint_url(u.origin().ascii_serialization());
    }
    aws_sdk_sqs::Client::from_conf(b.build())
}

/// Up to ten messages of the queue (waiting at most `wait` for one):
/// each message's receipt handle and body.
pub async fn receive_events(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait: Duration,
) -> Result<Vec<(String, String)>, StorageError> {
    let out = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(1))
        .send()
        .await
        .map_err(|e| StorageError {
            what: "receive from",
            url: queue_url.to_string(),
            message: DisplayErrorContext(&e).to_string(),
            status: None,
        })?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| Some((m.receipt_handle()?.to_string(), m.body()?.to_string())))
        .collect())
}

/// Deletes messages handled (queued, or dropped as malformed), ten per request.
pub async fn delete_events(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipts: &[String],
) -> Result<(), StorageError> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
    for batch in receipts.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| StorageError {
                what: "delete messages from",
                url: queue_url.to_string(),
                message: DisplayErrorContext(&e).to_string(),
                status: None,
            })?;
    }
    Ok(())
}
