//! S3 event notifications as SQS delivers them, parsed purely: a message
//! body in, the objects it says were created out. A test event (sent when
//! a notification is configured) holds none; anything else that is not an
//! S3 event record list is refused, to be logged and dropped.

use std::time::SystemTime;

use super::address::ObjectRef;

/// Why a message is not an S3 event notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not the shape of one.
    #[error("not an S3 event notification: {0}")]
    Malformed(String),
}

/// One created object, with when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The object, with its ETag.
    pub object: ObjectRef,
    /// The event's time.
    pub at: SystemTime,
}

/// The largest message body read (SQS allows 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The objects an S3 event message says were created (`ObjectCreated:*`);
/// other events (removals, the configuration's `s3:TestEvent`) give none.
pub fn created(body: &str) -> Result<Vec<Created>, EventError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(EventError::Malformed("over 256 KiB".into()));
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    if v.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = v
        .get("Records")
        .and_then(|r| r.as_array())
        .ok_or_else(|| EventError::Malformed("no Records".into()))?;
    let mut out = Vec::new();
    for r in records {
        if r.get("eventSource").and_then(|s| s.as_str()) != Some("aws:s3") {
            return Err(EventError::Malformed("a record not from aws:s3".into()));
        }
        let name = r.get("eventName").and_then(|n| n.as_str()).unwrap_or("");
        if !name.starts_with("ObjectCreated:") {
            continue;
        }
        let s3 = r.get("s3");
        let text = |path: &[&str]| {
            let mut at = s3;
            for p in path {
                at = at.and_then(|x| x.get(*p));
            }
            at.and_then(|x| x.as_str()).map(str::to_string)
        };
        let (Some(bucket), Some(raw_key)) = (text(&["bucket", "name"]), text(&["object", "key"]))
        else {
            return Err(EventError::Malformed(
                "a record without bucket or key".into(),
            ));
        };
        // Keys come URL-encoded, spaces as `+`.
        let key = percent_encoding::percent_decode_str(&raw_key.replace('+', " "))
            .decode_utf8()
            .map_err(|_| EventError::Malformed("a key that is not UTF-8".into()))?
            .into_owned();
        let etag = text(&["object", "eTag"]).map(|e| e.trim_matches('"').to_string());
        let at = r
            .get("eventTime")
            .and_then(|t| t.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(SystemTime::now, |t| t.with_timezone(&chrono::Utc).into());
        out.push(Created {
            object: ObjectRef { bucket, key, etag },
            at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_created_records_give_their_objects() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-07T15:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"bkt"},"object":{"key":"in/a+b%C3%A9.csv","size":3,"eTag":"abc"}}},{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"bkt"},"object":{"key":"in/x.csv"}}}]}"#;
        let got = created(body).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].object.key, "in/a bé.csv");
        assert_eq!(got[0].object.bucket, "bkt");
        assert_eq!(got[0].object.etag.as_deref(), Some("abc"));
        assert!(created(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn foreign_or_malformed_messages_are_refused() {
        for body in [
            "not json",
            "{}",
            r#"{"Records":[{"eventSource":"aws:sns"}]}"#,
            r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{}}]}"#,
        ] {
            assert!(created(body).is_err(), "{body}");
        }
    }
}
