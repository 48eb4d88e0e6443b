//! `s3://` locations and objects, parsed and checked purely: no request
//! is made here. A prefix is an [`S3Location`]; an object, with the ETag it
//! had when listed, an [`ObjectRef`].

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
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The store's URL (default: AWS S3 for the region), e.g. `https://minio.example:9000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (default: `AWS_REGION`, the profile's, else `us-east-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow an `http://` endpoint (default false: only `https://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible stores need (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Bucket event notifications: an SQS queue receiving the bucket's
    /// `ObjectCreated` events, so that a new object is queued at once
    /// (the periodic listing stays, as the backfill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<StorageEvents>,
}

/// Where a bucket's event notifications arrive.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct StorageEvents {
    /// The SQS queue's URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`); its origin is the SQS endpoint.
    pub queue_url: String,
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
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Why a text is not an `s3://` location or object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// It is not an object-storage URL at all.
    #[error("{0:?} does not start with {SCHEME}")]
    NoScheme(String),
    /// Bucket names as S3 allows them (3–63 of `a-z 0-9 . -`, starting and
    /// ending with a letter or digit).
    #[error("{url:?}: {bucket:?} is not a valid bucket name (3 to 63 of a-z, 0-9, '.', '-')")]
    Bucket {
        /// The whole text.
        url: String,
        /// The bucket part.
        bucket: String,
    },
    /// `.` and `..` would name another key than the one written.
    #[error("{0:?}: '.' and '..' are not allowed in a key")]
    DotSegment(String),
    /// `a//b` names a folder without a name.
    #[error("{0:?}: empty folder name ('//')")]
    EmptyFolder(String),
    /// An object was expected, a prefix given.
    #[error("{0:?}: names a prefix, not an object")]
    NotAnObject(String),
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

fn split(s: &str) -> Result<(&str, &str), AddressError> {
    let rest = s
        .strip_prefix(SCHEME)
        .ok_or_else(|| AddressError::NoScheme(s.to_string()))?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_bucket(bucket) {
        return Err(AddressError::Bucket {
            url: s.to_string(),
            bucket: bucket.to_string(),
        });
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(AddressError::DotSegment(s.to_string()));
    }
    Ok((bucket, path))
}

/// Parses `s3://bucket/prefix/` (the prefix may be empty; a missing
/// trailing `/` is added: a prefix is a folder).
pub fn parse_location(s: &str) -> Result<S3Location, AddressError> {
    let (bucket, path) = split(s)?;
    if path.contains("//") {
        return Err(AddressError::EmptyFolder(s.to_string()));
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
pub fn parse_object(s: &str) -> Result<ObjectRef, AddressError> {
    let (url, etag) = match s.rsplit_once('#') {
        // An ETag is hex, with `-<parts>` for a multipart upload.
        Some((u, e)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-') => {
            (u, Some(e.to_string()))
        }
        _ => (s, None),
    };
    let (bucket, key) = split(url)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(AddressError::NotAnObject(s.to_string()));
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
) -> Result<S3Location, AddressError> {
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
    if let Some(ev) = storage.and_then(|s| s.events.as_ref()) {
        let allow_http = storage.and_then(|s| s.allow_http) == Some(true);
        match url::Url::parse(&ev.queue_url) {
            _ if !object_inbox => errors.push(
                "storage.events: bucket event notifications need an s3:// inbox".to_string(),
            ),
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && allow_http) => {}
            Ok(u) if u.scheme() == "http" => errors.push(format!(
                "storage.events.queue_url: {:?} is http:// (unencrypted): set storage.allow_http: true to allow it",
                ev.queue_url
            )),
            _ => errors.push(format!(
                "storage.events.queue_url: {:?} is not an http(s):// URL",
                ev.queue_url
            )),
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
