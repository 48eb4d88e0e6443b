//! Digests of a row's content: the one cpi wrote beside it and the one it
//! has now differ when the row was edited behind cpi's back.

use sha2::{Digest, Sha256};

use super::state::{ObjState, ProjState};

/// The digest of a connection row's content, over the URL *as stored*: with
/// encryption at rest that is the sealed text, whose nonce is random, so the
/// digest kept beside it says nothing about the password (a digest of the
/// plain URL would let anyone with a backup test password guesses offline).
/// It also lets drift be told without the key.
pub fn connection_digest(name: &str, description: Option<&str>, stored_url: &str) -> String {
    digest(&[name, description.unwrap_or("\u{0}"), stored_url])
}

/// The digest of a project's content.
pub fn project_digest(s: &ProjState) -> String {
    digest(&[
        &s.name,
        s.description.as_deref().unwrap_or("\u{0}"),
        s.connection.as_deref().unwrap_or("\u{0}"),
        &canonical(&s.config).to_string(),
    ])
}

/// The digest of a simple kind's object.
pub fn object_digest(s: &ObjState) -> String {
    digest(&[s.kind.as_str(), &s.name, &canonical(&s.spec).to_string()])
}

/// `v` with every object's keys in sorted order. serde_json keeps insertion
/// order when any crate in the build enables its `preserve_order` feature,
/// and PostgreSQL's JSONB reorders keys: digests and diffs must not depend
/// on either.
pub fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}
