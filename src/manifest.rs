//! Loading and validating a manifests folder into the desired state.
//!
//! Fail-closed: every problem of every file is collected, and one problem
//! anywhere makes the whole set invalid, so nothing is applied from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ProjectConfig;
use crate::rules;
use crate::secret::{self, Secret};

/// The only `apiVersion` manifests may have.
pub const API_VERSION: &str = "cpi/v1";

/// One problem, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file, relative to the manifests folder.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong (never a secret's value).
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// The whole set is invalid; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("invalid manifests ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct InvalidManifests(pub Vec<ManifestError>);

/// Whether a missing secret file is an error (`apply`, `run`) or a warning
/// (`validate`, `diff`: they change nothing, and CI has no secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Missing secret files are errors.
    Required,
    /// Missing secret files are warnings; their values compare as unknown.
    Optional,
}

/// A connection's URL as far as the manifests tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlState {
    /// The whole URL, password included.
    Known(Secret),
    /// `database_url` + a `password_file` that is not present: the URL
    /// without its password is known.
    PasswordUnknown(String),
    /// A `database_url_file` that is not present.
    Unknown,
}

/// A Connection as the manifests declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredConnection {
    /// `metadata.name`.
    pub name: String,
    /// `spec.description`.
    pub description: Option<String>,
    /// The URL, as far as the secret files tell it.
    pub url: UrlState,
    /// The manifest file, relative to the manifests folder.
    pub source: String,
}

/// A Project as the manifests declare it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredProject {
    /// `metadata.name`.
    pub name: String,
    /// `spec.description`.
    pub description: Option<String>,
    /// The name of its Connection.
    pub connection: String,
    /// The config as stored in `cpi_projects.config` (with `name`).
    pub config: serde_json::Value,
    /// The manifest file, relative to the manifests folder.
    pub source: String,
}

/// Everything the manifests declare, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Connections by name.
    pub connections: BTreeMap<String, DesiredConnection>,
    /// Projects by name.
    pub projects: BTreeMap<String, DesiredProject>,
}

/// A manifests folder, loaded.
#[derive(Debug, Default)]
pub struct Loaded {
    /// What the manifests declare.
    pub desired: Desired,
    /// Missing secret files under [`Secrets::Optional`].
    pub warnings: Vec<String>,
    /// Every secret file referenced, present or not (the daemon watches them).
    pub secret_files: Vec<PathBuf>,
    /// Every manifest file read.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// All secrets loaded, for scrubbing messages that may echo them.
    pub fn secrets(&self) -> Vec<&Secret> {
        self.desired
            .connections
            .values()
            .filter_map(|c| match &c.url {
                UrlState::Known(s) => Some(s),
                _ => None,
            })
            .collect()
    }
}

// The one manifest model: the loader deserializes it, `cpi export` and
// `cpi convert-legacy` serialize it, and `cpi schema` describes it.

/// One cpi/v1 manifest document.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<S> {
    /// Always [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `Connection` or `Project`.
    pub kind: String,
    /// The object's name.
    pub metadata: Metadata,
    /// The kind's content.
    pub spec: S,
}

impl<S> Envelope<S> {
    /// A document of the current [`API_VERSION`].
    pub fn new(kind: &str, name: &str, spec: S) -> Self {
        Envelope {
            api_version: API_VERSION.to_string(),
            kind: kind.to_string(),
            metadata: Metadata {
                name: name.to_string(),
            },
            spec,
        }
    }
}

impl<S: Serialize> Envelope<S> {
    /// The document as YAML text after `header` (a comment saying who wrote it).
    pub fn to_yaml(&self, header: &str) -> String {
        format!(
            "{header}{}",
            serde_yaml::to_string(self).expect("a manifest always serializes")
        )
    }
}

/// A manifest's `metadata`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique per kind: 1-255 of [A-Za-z0-9_.-], starting with a letter or digit.
    pub name: String,
}

/// Exactly one URL source: `database_url_file`, or `database_url` (with
/// `password_file` for the password).
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A postgres:// URL without password (a password here is rejected: secrets never live in git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// A secret file holding the whole URL (absolute, or relative to --secrets-dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url_file: Option<String>,
    /// A secret file holding the password for `database_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// A Project: its connection and its import config.
// `C` is the config: typed when loaded or exported, the operator's mapping
// as written when converted from a legacy config.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ProjectSpec")]
pub struct ProjectSpec<C = ProjectConfig> {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The name of a Connection declared in the manifests.
    pub connection: String,
    /// Stored as `cpi_projects.config`; `name` is set from metadata.name.
    pub config: C,
}

/// The largest manifest file read (a manifests folder is reviewed text,
/// not data).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The most YAML nodes (lines, counted with every alias expanded) one
/// document may stand for: aliases that replay a large anchor many times
/// would otherwise make a small file take gigabytes to load.
pub const MAX_EXPANDED_NODES: u64 = 200_000;

/// Loads every `*.yaml`/`*.yml` below `dir`. Secret paths are absolute or
/// relative to `secrets_dir` (default: `dir`).
pub fn load(
    dir: &Path,
    secrets_dir: Option<&Path>,
    mode: Secrets,
) -> Result<Loaded, InvalidManifests> {
    load_confined(dir, secrets_dir, mode, &[])
}

/// [`load`], with every project's `inbox`, `processed_dir` and `failed_dir`
/// required to resolve inside one of `roots` (`--inbox-root`; none: anywhere).
pub fn load_confined(
    dir: &Path,
    secrets_dir: Option<&Path>,
    mode: Secrets,
    roots: &[PathBuf],
) -> Result<Loaded, InvalidManifests> {
    let mut errors = Vec::new();
    let mut loaded = Loaded::default();
    let secrets_dir = secrets_dir.unwrap_or(dir);
    if !dir.is_dir() {
        // An unmounted or mistyped folder must never read as "no manifests",
        // which would plan to delete everything.
        return Err(InvalidManifests(vec![ManifestError {
            file: dir.display().to_string(),
            line: None,
            column: None,
            message: "manifests folder does not exist or is not a directory".into(),
        }]));
    }
    let mut files = Vec::new();
    if let Err(e) = walk(dir, &mut files, &mut loaded.warnings) {
        errors.push(ManifestError {
            file: dir.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read folder: {e}"),
        });
    }
    files.sort();
    // Files parse independently: spread them over the cores, then merge in
    // file order so that results and errors do not depend on timing.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = files.len().div_ceil(threads).max(1);
    let outcomes: Vec<FileOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| parse_file(dir, p, secrets_dir, mode, roots))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("manifest parser thread"))
            .collect()
    });
    let mut seen: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    let mut references: Vec<(String, String, ManifestError)> = Vec::new();
    for outcome in outcomes {
        loaded.warnings.extend(outcome.warnings);
        loaded.secret_files.extend(outcome.secret_files);
        errors.extend(outcome.errors);
        for (obj, name_at) in outcome.objects {
            let (kind, name) = match &obj {
                Object::Connection(c) => ("Connection", c.name.clone()),
                Object::Project(p, _) => ("Project", p.name.clone()),
            };
            let key = (kind, name.clone());
            if let Some(first) = seen.get(&key) {
                errors.push(ManifestError {
                    message: format!("duplicate {kind} {name:?} (first declared in {first})"),
                    ..name_at
                });
                continue;
            }
            seen.insert(key, name_at.file.clone());
            match obj {
                Object::Connection(c) => {
                    loaded.desired.connections.insert(name, c);
                }
                Object::Project(p, reference_error) => {
                    references.push((p.name.clone(), p.connection.clone(), reference_error));
                    loaded.desired.projects.insert(name, p);
                }
            }
        }
    }
    for (project, connection, mut at) in references {
        if !loaded.desired.connections.contains_key(&connection) {
            at.message = format!("project {project:?} references connection {connection:?}, which no manifest declares");
            errors.push(at);
        }
    }
    loaded.files = files;
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(InvalidManifests(errors))
    }
}

#[derive(Default)]
struct FileOutcome {
    /// Each object with the location of its name (for a duplicate error).
    objects: Vec<(Object, ManifestError)>,
    errors: Vec<ManifestError>,
    warnings: Vec<String>,
    secret_files: Vec<PathBuf>,
}

fn parse_file(
    dir: &Path,
    path: &Path,
    secrets_dir: &Path,
    mode: Secrets,
    roots: &[PathBuf],
) -> FileOutcome {
    let rel = path
        .strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    match read_bounded(path) {
        Ok(text) => parse_text(&rel, &text, secrets_dir, mode, roots),
        Err(m) => FileOutcome {
            errors: vec![err(&rel, None, m)],
            ..FileOutcome::default()
        },
    }
}

/// Every problem of one manifest file's text, as `load` would report them
/// for `file` (secrets optional; cross-file checks left out). For fuzzing.
pub fn check_text(file: &str, text: &str) -> Vec<ManifestError> {
    parse_text(
        file,
        text,
        Path::new("/nonexistent"),
        Secrets::Optional,
        &[],
    )
    .errors
}

fn parse_text(
    rel: &str,
    text: &str,
    secrets_dir: &Path,
    mode: Secrets,
    roots: &[PathBuf],
) -> FileOutcome {
    let rel = rel.to_string();
    let mut out = FileOutcome::default();
    let mut side = Loaded::default();
    for doc in split_documents(text) {
        let ctx = DocCtx {
            file: &rel,
            text: doc.text,
            offset: doc.line_offset,
            roots,
        };
        if let Err(e) = check_tabs(&ctx).and_then(|()| check_expansion(&ctx)) {
            out.errors.push(e);
            continue;
        }
        match parse_document(&ctx, secrets_dir, mode, &mut side) {
            Ok(None) => {}
            Ok(Some(obj)) => out
                .objects
                .push((obj, ctx.err_at_key("name", String::new()))),
            Err(mut e) => out.errors.append(&mut e),
        }
    }
    out.warnings = side.warnings;
    out.secret_files = side.secret_files;
    out
}

/// A file's text, refused above [`MAX_FILE_BYTES`] (checked while reading:
/// the file may grow between a stat and the read).
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read file: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "file is larger than {} KiB, the most a manifest file may be",
            MAX_FILE_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("cannot read file: not UTF-8 ({e})"))
}

/// Collects the manifest files below `dir`. A symlink to a folder is never
/// followed (a link to `.` or `..` would make the walk loop or explode);
/// it is reported as a warning. Each real folder is listed once: linear.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, warnings: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out, warnings)?;
        } else if kind.is_symlink() && path.is_dir() {
            warnings.push(format!(
                "{}: a symlink to a folder is not followed",
                path.display()
            ));
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The key of serde_yaml's duplicate-key messages (typed and generic).
fn duplicate_key(message: &str) -> Option<&str> {
    let after = |start: &str, end: char| {
        let i = message.find(start)? + start.len();
        let rest = &message[i..];
        Some(&rest[..rest.find(end)?])
    };
    after("duplicate field `", '`').or_else(|| after("duplicate entry with key \"", '"'))
}

/// The (line, column), 1-based, of the second `key:` at one indentation
/// from line `from` on: where a duplicate key is repeated.
fn second_key(text: &str, key: &str, from: usize) -> Option<(usize, usize)> {
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        let body = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - body.len();
        let is_key = body
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'));
        if is_key && !seen.insert(indent) {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

/// YAML forbids tabs for indentation; say so, where the parser would only
/// say "found character that cannot start any token".
fn check_tabs(ctx: &DocCtx) -> Result<(), ManifestError> {
    for (i, line) in ctx.text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if let Some(col) = line[..indent].find('\t') {
            return Err(ManifestError {
                file: ctx.file.to_string(),
                line: Some(i + 1 + ctx.offset),
                column: Some(col + 1),
                message: "a tab in the indentation: YAML indents with spaces only".into(),
            });
        }
    }
    Ok(())
}

/// Refuses a document whose aliases would expand past [`MAX_EXPANDED_NODES`].
fn check_expansion(ctx: &DocCtx) -> Result<(), ManifestError> {
    let n = expanded_nodes(ctx.text);
    if n > MAX_EXPANDED_NODES {
        return Err(err(
            ctx.file,
            Some(ctx.offset + 1),
            format!(
                "its aliases (*name) expand to about {n} nodes, more than the {MAX_EXPANDED_NODES} a document may have"
            ),
        ));
    }
    Ok(())
}

/// Whether `c` can end an anchor or alias name.
fn ends_name(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}')
}

/// The `&anchor` and `*alias` names on one line: a `&`/`*` at the start of
/// a token (after a space, `-`, `:` or a flow indicator). Text inside
/// quotes may be miscounted; that only makes the estimate larger.
fn marks(line: &str) -> (Vec<&str>, Vec<&str>) {
    let (mut anchors, mut aliases) = (Vec::new(), Vec::new());
    let code = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let bytes = code.as_bytes();
    for (i, c) in code.char_indices() {
        if c != '&' && c != '*' {
            continue;
        }
        if i > 0 && !matches!(bytes[i - 1], b' ' | b'[' | b'{' | b',' | b'-' | b':') {
            continue;
        }
        let rest = &code[i + 1..];
        let name = &rest[..rest.find(ends_name).unwrap_or(rest.len())];
        if name.is_empty() {
            continue;
        }
        if c == '&' {
            anchors.push(name);
        } else {
            aliases.push(name);
        }
    }
    (anchors, aliases)
}

/// An estimate (from above, for block and flow style) of the nodes a
/// document stands for with every alias expanded: each line counts 1 (plus
/// its commas, for flow style), and an alias counts as much as the lines of
/// its anchor's node, nested aliases included. Linear in the text.
pub fn expanded_nodes(text: &str) -> u64 {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let blank = |l: &str| {
        let t = l.trim_start();
        t.is_empty() || t.starts_with('#')
    };
    // prefix[i]: the weight of lines[..i]; anchors: name -> (first, end) line range.
    let mut prefix = vec![0u64; lines.len() + 1];
    let mut anchors: std::collections::HashMap<&str, (usize, usize)> = Default::default();
    // Where each open anchor's block ends is known when a line at or left of
    // its indentation comes; until then its weight is what is known so far.
    let mut open: Vec<(&str, usize, usize)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !blank(line) {
            let ind = indent(line);
            open.retain(|&(name, start, at)| {
                if ind <= at {
                    anchors.insert(name, (start, i));
                    false
                } else {
                    true
                }
            });
        }
        let (anch, aliases) = marks(line);
        let mut w = 1 + line.matches(',').count() as u64;
        for a in aliases {
            let range = anchors
                .get(a)
                .copied()
                .or_else(|| open.iter().find(|o| o.0 == a).map(|o| (o.1, i)));
            if let Some((start, end)) = range {
                w = w.saturating_add(prefix[end.max(start + 1).min(i)] - prefix[start.min(i)]);
            }
        }
        prefix[i + 1] = prefix[i].saturating_add(w);
        for a in anch {
            open.retain(|o| o.0 != a);
            anchors.remove(a);
            open.push((a, i, indent(line)));
        }
    }
    prefix[lines.len()]
}

struct Document<'a> {
    text: &'a str,
    /// Lines before this document in its file.
    line_offset: usize,
}

/// Splits a YAML stream on `---` lines, keeping each document's first line
/// number so that errors point into the file, not into the document.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 0usize;
    let mut pos = 0usize;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            docs.push(Document {
                text: &text[start..pos],
                line_offset: start_line,
            });
            start = pos + line.len();
            start_line = line_no + 1;
        }
        pos += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        line_offset: start_line,
    });
    docs
}

struct DocCtx<'a> {
    file: &'a str,
    text: &'a str,
    offset: usize,
    /// `--inbox-root`: where inboxes may be (none: anywhere).
    roots: &'a [PathBuf],
}

fn err(file: &str, line: Option<usize>, message: String) -> ManifestError {
    ManifestError {
        file: file.to_string(),
        line,
        column: None,
        message,
    }
}

impl DocCtx<'_> {
    fn yaml_err(&self, e: &serde_yaml::Error) -> ManifestError {
        let loc = e.location();
        // serde_yaml's message repeats the location; the ManifestError shows it once.
        let mut message = e.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        let from = loc.as_ref().map_or(1, |l| l.line());
        if let Some((line, column)) =
            duplicate_key(&message).and_then(|k| second_key(self.text, k, from))
        {
            // serde_yaml points at the mapping; the repeated key is the news.
            return ManifestError {
                file: self.file.to_string(),
                line: Some(line + self.offset),
                column: Some(column),
                message,
            };
        }
        ManifestError {
            file: self.file.to_string(),
            line: loc.as_ref().map(|l| l.line() + self.offset),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    }

    /// The error located at the first line of the document that sets `key`.
    fn err_at_key(&self, key: &str, message: String) -> ManifestError {
        let line = self.text.lines().position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(key) && t[key.len()..].trim_start().starts_with(':')
        });
        ManifestError {
            file: self.file.to_string(),
            line: Some(line.map_or(self.offset + 1, |l| l + 1 + self.offset)),
            column: None,
            message,
        }
    }
}

enum Object {
    Connection(DesiredConnection),
    /// With the error to report if its connection reference is dangling.
    Project(DesiredProject, ManifestError),
}

fn parse_document(
    ctx: &DocCtx,
    secrets_dir: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<Option<Object>, Vec<ManifestError>> {
    // The common block-style document names its kind on a top-level line:
    // read that and parse once, typed. Anything else (flow style, a missing
    // kind, a legacy config) takes the slow path through a generic Value.
    let quick = ctx
        .text
        .lines()
        .find_map(|l| l.strip_prefix("kind:"))
        .map(str::trim)
        .filter(|k| matches!(*k, "Connection" | "Project") && !ctx.text.contains("env_var"));
    let value: serde_yaml::Value;
    let kind = match quick {
        Some(k) => k,
        None => {
            value = serde_yaml::from_str(ctx.text).map_err(|e| vec![ctx.yaml_err(&e)])?;
            if value.is_null() {
                return Ok(None);
            }
            if let Some(spec) = value.get("spec") {
                rules::check_legacy(spec).map_err(|m| vec![ctx.err_at_key("env_var", m)])?;
            }
            if value.get("apiVersion").is_none() {
                return Err(vec![err(
                    ctx.file,
                    Some(ctx.offset + 1),
                    "missing apiVersion".into(),
                )]);
            }
            value.get("kind").and_then(|k| k.as_str()).unwrap_or("")
        }
    };
    match kind {
        "Connection" => {
            let env: Envelope<ConnectionSpec> =
                serde_yaml::from_str(ctx.text).map_err(|e| vec![ctx.yaml_err(&e)])?;
            check_api_version(ctx, &env.api_version)?;
            check_name(ctx, &env.metadata.name)?;
            connection(ctx, env.metadata.name, env.spec, secrets_dir, mode, loaded)
                .map(|c| Some(Object::Connection(c)))
        }
        "Project" => {
            let env: Envelope<ProjectSpec> =
                serde_yaml::from_str(ctx.text).map_err(|e| vec![ctx.yaml_err(&e)])?;
            check_api_version(ctx, &env.api_version)?;
            check_name(ctx, &env.metadata.name)?;
            project(ctx, env.metadata.name, env.spec).map(|(p, at)| Some(Object::Project(p, at)))
        }
        "" => Err(vec![err(
            ctx.file,
            Some(ctx.offset + 1),
            "missing kind (Connection or Project)".into(),
        )]),
        other => Err(vec![ctx.err_at_key(
            "kind",
            format!("unknown kind {other:?} (expected Connection or Project)"),
        )]),
    }
}

fn check_api_version(ctx: &DocCtx, v: &str) -> Result<(), Vec<ManifestError>> {
    if v == API_VERSION {
        Ok(())
    } else {
        Err(vec![ctx.err_at_key(
            "apiVersion",
            format!("apiVersion {v:?} is not supported (expected {API_VERSION:?})"),
        )])
    }
}

fn check_name(ctx: &DocCtx, name: &str) -> Result<(), Vec<ManifestError>> {
    rules::check_name(name).map_err(|m| vec![ctx.err_at_key("name", format!("metadata.name {m}"))])
}

fn secret_path(secrets_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        secrets_dir.join(p)
    }
}

/// Reads a secret file; `Ok(None)` when it is absent and secrets are optional.
fn read_secret(
    ctx: &DocCtx,
    key: &str,
    path: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<Option<Secret>, ManifestError> {
    loaded.secret_files.push(path.to_path_buf());
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let v = s.trim_end();
            if v.is_empty() {
                Err(ctx.err_at_key(
                    key,
                    format!("{key}: secret file {} is empty", path.display()),
                ))
            } else {
                Ok(Some(Secret::new(v)))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && mode == Secrets::Optional => {
            loaded.warnings.push(format!(
                "{}: {key}: secret file {} is not present; its value is compared as unknown",
                ctx.file,
                path.display()
            ));
            Ok(None)
        }
        Err(e) => Err(ctx.err_at_key(
            key,
            format!("{key}: cannot read secret file {}: {e}", path.display()),
        )),
    }
}

fn connection(
    ctx: &DocCtx,
    name: String,
    spec: ConnectionSpec,
    secrets_dir: &Path,
    mode: Secrets,
    loaded: &mut Loaded,
) -> Result<DesiredConnection, Vec<ManifestError>> {
    let url = match (&spec.database_url, &spec.database_url_file, &spec.password_file) {
        (Some(_), Some(_), _) | (None, None, _) => {
            return Err(vec![ctx.err_at_key(
                "spec",
                "a Connection needs exactly one of database_url_file, or database_url (with password_file for the password)".into(),
            )])
        }
        (None, Some(_), Some(_)) => {
            return Err(vec![ctx.err_at_key(
                "password_file",
                "password_file goes with database_url; with database_url_file the whole URL, password included, lives in that file".into(),
            )])
        }
        (None, Some(file), None) => {
            let path = secret_path(secrets_dir, file);
            match read_secret(ctx, "database_url_file", &path, mode, loaded).map_err(|e| vec![e])? {
                None => UrlState::Unknown,
                Some(s) => {
                    // Never echo the file's content: it is the secret.
                    rules::parse_pg_url(s.expose()).map_err(|m| {
                        vec![ctx.err_at_key(
                            "database_url_file",
                            format!("database_url_file {}: content is {}", path.display(), secret::scrub(&m, &[&s])),
                        )]
                    })?;
                    // Certificate and key paths resolve like secret files.
                    match url::Url::parse(s.expose()) {
                        Ok(mut u) => {
                            if crate::tls::resolve_file_params(&mut u, secrets_dir) {
                                UrlState::Known(Secret::new(u.to_string()))
                            } else {
                                UrlState::Known(s)
                            }
                        }
                        Err(_) => UrlState::Known(s),
                    }
                }
            }
        }
        (Some(raw), None, password_file) => {
            let mut url = rules::check_manifest_url(raw)
                .map_err(|m| vec![ctx.err_at_key("database_url", m)])?;
            // Certificate and key paths resolve like secret files.
            crate::tls::resolve_file_params(&mut url, secrets_dir);
            match password_file {
                None => UrlState::Known(Secret::new(url.to_string())),
                Some(file) => {
                    let path = secret_path(secrets_dir, file);
                    match read_secret(ctx, "password_file", &path, mode, loaded).map_err(|e| vec![e])? {
                        None => UrlState::PasswordUnknown(url.to_string()),
                        Some(pw) => {
                            if url.username().is_empty() {
                                return Err(vec![ctx.err_at_key(
                                    "database_url",
                                    "database_url needs a user name when a password_file is given".into(),
                                )]);
                            }
                            // set_password percent-encodes the password into the URL.
                            url.set_password(Some(pw.expose())).map_err(|_| {
                                vec![ctx.err_at_key("database_url", "cannot set a password on this URL".into())]
                            })?;
                            UrlState::Known(Secret::new(url.to_string()))
                        }
                    }
                }
            }
        }
    };
    Ok(DesiredConnection {
        name,
        description: spec.description,
        url,
        source: ctx.file.to_string(),
    })
}

fn project(
    ctx: &DocCtx,
    name: String,
    spec: ProjectSpec,
) -> Result<(DesiredProject, ManifestError), Vec<ManifestError>> {
    let mut config = spec.config;
    match &config.name {
        Some(n) if n != &name => {
            return Err(vec![ctx.err_at_key(
                "name",
                format!("config.name {n:?} differs from metadata.name {name:?} (leave it out: it is set from metadata.name)"),
            )])
        }
        _ => config.name = Some(name.clone()),
    }
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|m| ctx.err_at_key("config", format!("config.{m}")))
            .collect());
    }
    if !ctx.roots.is_empty() {
        let outside = rules::confine_project(
            config.inbox.as_deref(),
            config.processed_dir.as_deref(),
            config.failed_dir.as_deref(),
            ctx.roots,
        );
        if !outside.is_empty() {
            return Err(outside
                .into_iter()
                .map(|(key, m)| {
                    // A default dir (processed/, failed/) is located at the inbox.
                    let key = if ctx.text.contains(&format!("{key}:")) {
                        key
                    } else {
                        "inbox"
                    };
                    ctx.err_at_key(key, format!("config.{m}"))
                })
                .collect());
        }
    }
    let config = serde_json::to_value(&config).expect("a config always serializes");
    let at = ctx.err_at_key("connection", String::new());
    Ok((
        DesiredProject {
            name,
            description: spec.description,
            connection: spec.connection,
            config,
            source: ctx.file.to_string(),
        },
        at,
    ))
}

/// The git revision of the manifests folder, when it is a git checkout.
pub fn revision(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const CONN: &str = "apiVersion: cpi/v1\nkind: Connection\nmetadata:\n  name: abc\nspec:\n  description: d\n  database_url: postgresql://importer@db:5432/abc\n  password_file: abc.pass\n";
    const PROJ: &str = "apiVersion: cpi/v1\nkind: Project\nmetadata:\n  name: p1\nspec:\n  connection: abc\n  config:\n    inbox: /tmp/in\n";

    #[test]
    fn loads_multi_document_files_recursively() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "sub/all.yaml", &format!("{CONN}---\n{PROJ}"));
        write(d.path(), "abc.pass", "p@ss w/rd\n");
        let l = load(d.path(), None, Secrets::Required).unwrap();
        let c = &l.desired.connections["abc"];
        assert_eq!(c.source, "sub/all.yaml");
        match &c.url {
            UrlState::Known(s) => assert_eq!(
                s.expose(),
                "postgresql://importer:p%40ss%20w%2Frd@db:5432/abc"
            ),
            other => panic!("{other:?}"),
        }
        let p = &l.desired.projects["p1"];
        assert_eq!(p.config["name"], "p1");
        assert_eq!(p.connection, "abc");
    }

    #[test]
    fn missing_secret_is_error_for_apply_and_warning_for_diff() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "c.yaml", CONN);
        let e = load(d.path(), None, Secrets::Required).unwrap_err();
        assert!(
            e.to_string()
                .contains("c.yaml:8: password_file: cannot read secret file"),
            "{e}"
        );
        let l = load(d.path(), None, Secrets::Optional).unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(
            l.desired.connections["abc"].url,
            UrlState::PasswordUnknown("postgresql://importer@db:5432/abc".into())
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.yaml",
            &format!("{CONN}---\n{}", PROJ.replace("inbox", "inbx")),
        );
        write(d.path(), "abc.pass", "x");
        let e = load(d.path(), None, Secrets::Required).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].file, "a.yaml");
        assert_eq!(e.0[0].line, Some(17));
        assert!(
            e.0[0].message.contains("unknown field `inbx`"),
            "{}",
            e.0[0].message
        );
    }

    #[test]
    fn inline_password_is_rejected_without_echoing_it() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "c.yaml",
            &CONN
                .replace("importer@", "importer:sup3rs3cret@")
                .replace("  password_file: abc.pass\n", ""),
        );
        let e = load(d.path(), None, Secrets::Optional)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.yaml:7: database_url contains a password"),
            "{e}"
        );
        assert!(!e.contains("sup3rs3cret"));
    }

    #[test]
    fn legacy_env_var_gets_the_migration_hint() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "p.yaml",
            "apiVersion: cpi/v1\nkind: Project\nmetadata: {name: p}\nspec:\n  connection: x\n  config:\n    connection:\n      env_var: ABC_URL\n",
        );
        let e = load(d.path(), None, Secrets::Optional)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.yaml:8: connection.env_var (ABC_URL) is no longer supported"),
            "{e}"
        );
        assert!(e.contains("convert-legacy"));
    }

    #[test]
    fn duplicates_and_dangling_references_fail_the_whole_set() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", PROJ);
        write(d.path(), "b.yaml", PROJ);
        let e = load(d.path(), None, Secrets::Optional).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("b.yaml:4: duplicate Project \"p1\" (first declared in a.yaml)"),
            "{text}"
        );
        assert!(text.contains("a.yaml:6: project \"p1\" references connection \"abc\", which no manifest declares"), "{text}");
    }

    #[test]
    fn missing_folder_is_an_error_not_an_empty_set() {
        let e = load(Path::new("/nonexistent/cpi"), None, Secrets::Optional).unwrap_err();
        assert!(e.to_string().contains("does not exist"));
    }

    #[test]
    fn yaml_syntax_errors_have_positions() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "bad.yml", "---\n{}\n---\nkind: [\n");
        let e = load(d.path(), None, Secrets::Optional).unwrap_err();
        assert_eq!(e.0[0].file, "bad.yml");
        assert!(e.0.iter().all(|x| x.line.is_some()), "{e}");
    }

    #[test]
    fn alias_expansion_is_estimated_linearly() {
        // A small, ordinary use of anchors stays far below the cap.
        let ok = "defaults: &d\n  a: 1\n  b: 2\ntables:\n  - *d\n  - *d\n";
        assert_eq!(expanded_nodes(ok), 6 + 2 * 3);
        // Nested: each level multiplies.
        let mut nested = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            nested.push_str(&format!("{}: &{} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n", i, ["b", "c", "d", "e", "f", "g"][i]));
        }
        assert!(
            expanded_nodes(&nested) > MAX_EXPANDED_NODES,
            "{}",
            expanded_nodes(&nested)
        );
        // `&` and `*` inside words are not marks.
        assert_eq!(
            marks("url: postgres://h/db?a=1&b=2 *x"),
            (vec![], vec!["x"])
        );
    }

    #[test]
    fn symlinked_folders_are_not_walked() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a/p.yaml", PROJ);
        std::os::unix::fs::symlink("..", d.path().join("a/up")).unwrap();
        let (mut files, mut warnings) = (Vec::new(), Vec::new());
        walk(d.path(), &mut files, &mut warnings).unwrap();
        assert_eq!(files, vec![d.path().join("a/p.yaml")]);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_duplicate_key_is_located_at_the_repeat() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "c.yaml", &format!("{CONN}  description: again\n"));
        let e = load(d.path(), None, Secrets::Optional).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (Some(9), Some(3)), "{e}");
        assert!(e.0[0].message.contains("description"), "{e}");
        // The generic path (flow style) too.
        write(
            d.path(),
            "c.yaml",
            "{apiVersion: cpi/v1, kind: Connection}\n",
        );
        write(d.path(), "d.yaml", "a: 1\nb:\n  x: 1\n  x: 2\n");
        let e = load(d.path(), None, Secrets::Optional).unwrap_err();
        let dup = e.0.iter().find(|x| x.file == "d.yaml").unwrap();
        assert_eq!(dup.line, Some(4), "{e}");
    }
}
