//! The daemon's side of `--inbox-root` (the rule is [`crate::rules::confine`]):
//! which projects' inboxes it watches and whether it may move a file into
//! a folder. A refused project is logged once and listed in `/readyz`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ProjectConfig;
use crate::metrics::Health;
use crate::rules;

/// The inboxes the daemon may watch: `wanted` without the projects whose
/// inbox, processed or failed folder lies outside every root (none: all).
pub fn watched(
    wanted: BTreeMap<String, (PathBuf, ProjectConfig, Duration)>,
    roots: &[PathBuf],
    health: &Health,
) -> BTreeMap<String, (PathBuf, ProjectConfig, Duration)> {
    let mut refused = BTreeSet::new();
    let kept = wanted
        .into_iter()
        .filter(|(name, (_, config, _))| {
            let why = rules::outside_roots(config, roots);
            if why.is_empty() {
                return true;
            }
            let why = why.join("; ");
            if health.refuse_inbox(name, &why) {
                tracing::warn!(project = %name, reason = %why, "inbox refused: not watched, no file moved");
            }
            refused.insert(name.clone());
            false
        })
        .collect();
    health.keep_refused(&refused);
    kept
}

/// Whether the daemon may move a file into `dir` (checked again at every
/// move: a folder may have been replaced by a symlink since the scan).
pub fn may_move_into(dir: &Path, roots: &[PathBuf]) -> Result<(), rules::ConfineError> {
    if roots.is_empty() {
        return Ok(());
    }
    rules::confine(&dir.to_string_lossy(), roots).map(|_| ())
}
