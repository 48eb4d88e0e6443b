//! The input folder: every YAML or JSON document in it.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::error::InputError;
use crate::manifest;

/// One input document: its file (relative to the input folder), its
/// position in the file, and its content.
#[derive(Debug, Clone)]
pub struct LegacyDoc {
    /// The file, relative to the input folder.
    pub file: String,
    /// 0-based document index inside the file.
    pub index: usize,
    /// How many documents the file holds (a lone document may take its
    /// name from the file).
    pub of: usize,
    /// The document as parsed.
    pub value: Value,
}

impl LegacyDoc {
    pub(super) fn at(&self) -> String {
        if self.of > 1 {
            format!("{} (document {})", self.file, self.index + 1)
        } else {
            self.file.clone()
        }
    }
}

/// Every YAML document of every `*.yaml`/`*.yml`/`*.json` below `dir`
/// (hidden files and folders skipped), in path order.
pub fn read_input(dir: &Path) -> Result<Vec<LegacyDoc>, InputError> {
    if !dir.is_dir() {
        return Err(InputError::NotAFolder(dir.to_path_buf()));
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|source| InputError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    files.sort();
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).map_err(|source| InputError::Read {
            path: path.clone(),
            source,
        })?;
        // The parser's time grows with the square of the nesting depth.
        if let Some((line, column)) = manifest::too_deep(&text, manifest::MAX_NESTING_DEPTH) {
            errors.push(format!(
                "{rel}:{line}:{column}: nested deeper than {} levels; refused before parsing",
                manifest::MAX_NESTING_DEPTH
            ));
            continue;
        }
        let mut values = Vec::new();
        for d in serde_yaml::Deserializer::from_str(&text) {
            match <Value as serde::Deserialize>::deserialize(d) {
                Ok(Value::Null) => {}
                Ok(v) => values.push(v),
                Err(e) => errors.push(format!("{rel}: {e}")),
            }
        }
        let of = values.len();
        docs.extend(
            values
                .into_iter()
                .enumerate()
                .map(|(index, value)| LegacyDoc {
                    file: rel.clone(),
                    index,
                    of,
                    value,
                }),
        );
    }
    if !errors.is_empty() {
        return Err(InputError::Parse(errors));
    }
    if docs.is_empty() {
        return Err(InputError::Empty(dir.to_path_buf()));
    }
    Ok(docs)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
    Ok(())
}
