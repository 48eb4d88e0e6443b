//! Where a file is: a path on this machine, or an object in an `s3://`
//! store. A job's `file_path` column holds [`FileRef::job_path`]; it is
//! decoded once, where the job is read, and the scanner, the queue, the
//! import and the move after it all take the decoded value.

use std::path::{Path, PathBuf};

use crate::config::ProjectConfig;
use crate::object_storage::{self, AddressError, ObjectRef, S3Location};

/// One file to import.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileRef {
    /// A file in a folder (absolute once it is a job's).
    Local(PathBuf),
    /// An object, with the ETag it had when listed.
    Object(ObjectRef),
}

/// Where a file goes after its job: a folder, or a prefix of its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `processed/` or `failed/` of a folder inbox.
    Folder(PathBuf),
    /// `processed/` or `failed/` of an object inbox.
    Prefix(S3Location),
}

impl FileRef {
    /// Decodes a job's `file_path` (or a path given on the command line):
    /// `s3://bucket/key[#etag]` is an object, anything else a local path.
    pub fn parse(job_path: &str) -> Result<FileRef, AddressError> {
        if object_storage::is_object(job_path) {
            return object_storage::parse_object(job_path).map(FileRef::Object);
        }
        Ok(FileRef::Local(PathBuf::from(job_path)))
    }

    /// A local file, made absolute (a job's path is where the file is,
    /// whatever the worker's current folder).
    pub fn local(path: &Path) -> FileRef {
        FileRef::Local(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    }

    /// What a job's `file_path` holds: the absolute path, or
    /// `s3://bucket/key#etag` (the queue's unique index then holds one
    /// active job per key and content).
    pub fn job_path(&self) -> String {
        match self {
            FileRef::Local(p) => p.to_string_lossy().into_owned(),
            FileRef::Object(o) => o.job_path(),
        }
    }

    /// The file's name (an object's last key segment).
    pub fn name(&self) -> String {
        match self {
            FileRef::Local(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            FileRef::Object(o) => o.name().to_string(),
        }
    }

    /// Whether the file is in object storage.
    pub fn is_object(&self) -> bool {
        matches!(self, FileRef::Object(_))
    }

    /// The path a project's file patterns and options are chosen by: the
    /// file's own, or an object's `s3://bucket/key` (without its ETag).
    pub fn options_path(&self) -> PathBuf {
        match self {
            FileRef::Local(p) => p.clone(),
            FileRef::Object(o) => PathBuf::from(o.url()),
        }
    }

    /// The name as the config's patterns see it: relative to the inbox
    /// (a folder's path below it, an object's name), else the file name.
    pub fn relative_to(&self, inbox: Option<&str>) -> String {
        match self {
            FileRef::Object(o) => o.name().to_string(),
            FileRef::Local(p) => inbox
                .and_then(|i| p.strip_prefix(i).ok())
                .and_then(|r| r.to_str())
                .map(str::to_string)
                .unwrap_or_else(|| self.name()),
        }
    }

    /// Where the file goes after its job: `processed/` (or the config's
    /// `processed_dir`) when it is done, `failed/` (`failed_dir`) when
    /// `failed`. Relative settings are below the inbox: a folder's, or
    /// the object's prefix.
    pub fn destination(
        &self,
        config: &ProjectConfig,
        failed: bool,
    ) -> Result<Destination, AddressError> {
        match self {
            FileRef::Local(p) => {
                let mut inbox = p.parent().map(Path::to_path_buf).unwrap_or_default();
                // A file run where it was set aside (a job an earlier
                // version's retry pointed there) is finished relative to
                // its inbox: never `failed/processed/` or `failed/failed/`.
                if let Some(own) = config.inbox.as_deref().map(Path::new) {
                    if inbox == config.failed_path(own) || inbox == config.processed_path(own) {
                        inbox = own.to_path_buf();
                    }
                }
                Ok(Destination::Folder(if failed {
                    config.failed_path(&inbox)
                } else {
                    config.processed_path(&inbox)
                }))
            }
            FileRef::Object(o) => {
                let inbox = config
                    .inbox
                    .as_deref()
                    .and_then(|i| object_storage::parse_location(i).ok())
                    .unwrap_or_else(|| o.location());
                let (configured, default) = if failed {
                    (config.failed_dir.as_deref(), "failed")
                } else {
                    (config.processed_dir.as_deref(), "processed")
                };
                object_storage::sub_location(&inbox, configured, default).map(Destination::Prefix)
            }
        }
    }
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRef::Local(p) => write!(f, "{}", p.display()),
            FileRef::Object(o) => f.write_str(&o.job_path()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> ProjectConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_job_path_decodes_to_what_it_was_encoded_from() {
        for p in [
            "/in/a.csv",
            "s3://bucket/in/a.csv#0123abcd",
            "s3://bucket/a.csv",
        ] {
            assert_eq!(FileRef::parse(p).unwrap().job_path(), p);
        }
        assert!(
            FileRef::parse("s3://bucket/in/").is_err(),
            "a prefix is not a file"
        );
        assert!(FileRef::parse("s3://bucket/a.csv#0123")
            .unwrap()
            .is_object());
    }

    #[test]
    fn names_and_relative_names() {
        let local = FileRef::parse("/in/sub/a.csv").unwrap();
        assert_eq!(local.name(), "a.csv");
        assert_eq!(local.relative_to(Some("/in")), "sub/a.csv");
        assert_eq!(local.relative_to(Some("/elsewhere")), "a.csv");
        assert_eq!(local.relative_to(None), "a.csv");
        let object = FileRef::parse("s3://bucket/in/a.csv#abc").unwrap();
        assert_eq!(object.name(), "a.csv");
        assert_eq!(object.relative_to(Some("s3://bucket/in/")), "a.csv");
        assert_eq!(object.options_path(), PathBuf::from("s3://bucket/in/a.csv"));
    }

    #[test]
    fn destinations_follow_the_config_for_both_kinds() {
        let local = FileRef::parse("/in/a.csv").unwrap();
        let c = config("inbox: /in\n");
        assert_eq!(
            local.destination(&c, false).unwrap(),
            Destination::Folder("/in/processed".into())
        );
        assert_eq!(
            local.destination(&c, true).unwrap(),
            Destination::Folder("/in/failed".into())
        );
        let set_aside = FileRef::parse("/in/failed/a.csv").unwrap();
        assert_eq!(
            set_aside.destination(&c, false).unwrap(),
            Destination::Folder("/in/processed".into())
        );
        assert_eq!(
            set_aside.destination(&c, true).unwrap(),
            Destination::Folder("/in/failed".into())
        );
        let object = FileRef::parse("s3://bucket/in/a.csv#abc").unwrap();
        let c = config("inbox: s3://bucket/in/\nfailed_dir: s3://other/rejected/\n");
        let prefix = |b: &str, p: &str| {
            Destination::Prefix(S3Location {
                bucket: b.into(),
                prefix: p.into(),
            })
        };
        assert_eq!(
            object.destination(&c, false).unwrap(),
            prefix("bucket", "in/processed/")
        );
        assert_eq!(
            object.destination(&c, true).unwrap(),
            prefix("other", "rejected/")
        );
    }
}
