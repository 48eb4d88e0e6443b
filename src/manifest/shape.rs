//! Every shape problem of one document at once: a typed parse stops at the
//! first unknown field or value, so the document is parsed again with each
//! offending node taken out, until it parses or nothing more can be taken.
//! Each problem is located by its path in the text and, for a misspelt
//! field or value, says which one was meant.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// How many problems one document reports at most: each costs a parse.
const MAX_PROBLEMS: usize = 50;

/// One shape problem: where (the path's keys and indexes) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ShapeProblem {
    /// `spec.config.tables[0].mode`, or empty for the document itself.
    pub(super) path: Vec<Step>,
    /// The message, prefixed by the path, with a suggestion when one fits.
    pub(super) message: String,
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// The problems of `value` as a `T`, in document order, and `T` if every
/// problem could be taken out (it is then the document less those nodes).
pub(super) fn problems<T: DeserializeOwned>(mut value: Value) -> (Vec<ShapeProblem>, Option<T>) {
    let mut found = Vec::new();
    while found.len() < MAX_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (found, Some(t)),
            Err(e) => e,
        };
        let mut path: Vec<Step> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                _ => None,
            })
            .collect();
        let mut inner = e.into_inner().to_string();
        if inner.contains("untagged enum CreateTable") {
            // serde names the type; the operator needs the three words.
            let written = get(&value, &path).map(|v| match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            });
            inner = format!(
                "unknown variant `{}`, expected one of `true`, `false`, `infer`",
                written.unwrap_or_default()
            );
        }
        // An unknown field is reported at its mapping: the field is the node to take out.
        let unknown = quoted_after(&inner, "unknown field `");
        // serde_path_to_error may or may not have entered the unknown field.
        if let Some(field) = unknown {
            if path.last() != Some(&Step::Key(field.to_string())) {
                path.push(Step::Key(field.to_string()));
            }
        }
        let shown = render(&path);
        let message = match (shown.is_empty(), suggestion(&inner)) {
            (true, None) => inner.clone(),
            (true, Some(s)) => format!("{inner} (did you mean `{s}`?)"),
            (false, None) => format!("{shown}: {inner}"),
            (false, Some(s)) => format!("{shown}: {inner} (did you mean `{s}`?)"),
        };
        let removable = !inner.starts_with("missing field") && !path.is_empty();
        found.push(ShapeProblem {
            path: path.clone(),
            message,
        });
        if !removable || !remove(&mut value, &path) {
            break;
        }
    }
    (found, None)
}

/// A JSON document (an API body's field `prefix`) as a `T`, or every
/// shape problem of it, each prefixed by its path
/// (`config.tables[0].mode: unknown variant …`), as a manifest's are: a
/// form can then put each one beside its field.
pub fn parse_json<T: DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
) -> Result<T, Vec<String>> {
    let value = match serde_yaml::to_value(value) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("{prefix}: {e}")]),
    };
    match problems::<T>(value) {
        (found, Some(t)) if found.is_empty() => Ok(t),
        (found, _) => Err(found
            .into_iter()
            .map(|p| match p.path.is_empty() {
                true => format!("{prefix}: {}", p.message),
                false => format!("{prefix}.{}", p.message),
            })
            .collect()),
    }
}

/// `spec.config.tables[0].mode`.
pub(super) fn render(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The path a config problem starts with (`tables[0].mode: …`), as steps.
pub(super) fn parse_path(message: &str) -> Vec<Step> {
    let head = message.split(": ").next().unwrap_or("");
    if head.contains([' ', '"']) {
        return Vec::new();
    }
    let mut steps = Vec::new();
    for part in head.split('.') {
        let mut pieces = part.split('[');
        if let Some(k) = pieces.next().filter(|k| !k.is_empty()) {
            steps.push(Step::Key(k.to_string()));
        }
        for p in pieces {
            match p.trim_end_matches(']').parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => return steps,
            }
        }
    }
    steps
}

/// The text between `start` and the next backtick.
fn quoted_after<'a>(message: &'a str, start: &str) -> Option<&'a str> {
    let i = message.find(start)? + start.len();
    let rest = &message[i..];
    Some(&rest[..rest.find('`')?])
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" and "unknown
/// variant …" messages: the expected name closest to what was written, if
/// one is close enough to be a typo.
pub(super) fn suggestion(message: &str) -> Option<String> {
    let written = quoted_after(message, "unknown field `")
        .or_else(|| quoted_after(message, "unknown variant `"))?;
    let expected = &message[message.find("expected")?..];
    let candidates = expected.split('`').skip(1).step_by(2);
    closest(written, candidates)
}

/// The candidate closest to `written` (case aside) within a typo's distance:
/// a third of the length, at least one edit and at most three.
pub fn closest<'a>(written: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let w = written.to_lowercase();
    let limit = (w.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_string())
}

/// The node at `path` in `value`.
fn get<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(value, |at, step| match (step, at) {
        (Step::Key(k), Value::Mapping(m)) => m.get(k.as_str()),
        (Step::Index(i), Value::Sequence(s)) => s.get(*i),
        _ => None,
    })
}

/// Takes the node at `path` out of `value`; whether it was there.
fn remove(value: &mut Value, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for step in parents {
        let next = match (step, at) {
            (Step::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match (last, at) {
        (Step::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        // An entry is replaced by an empty mapping, not removed: the
        // indexes of the entries after it must stay those of the text.
        (Step::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s[*i] = Value::Mapping(Default::default());
            true
        }
        _ => false,
    }
}

/// The 0-based line of the node at `path` in a block-style document's
/// `text`: the deepest step that could be found (flow style and aliases
/// stop the search early), `None` when not even the first.
pub(super) fn line_of(text: &str, path: &[Step]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // The node found so far: its line, and the column its key or `-` is at.
    let mut node: Option<(usize, usize)> = None;
    for step in path {
        let found = match step {
            Step::Key(k) => find_key(&lines, node, k),
            Step::Index(n) => find_item(&lines, node, *n),
        };
        match found {
            Some(f) => node = Some(f),
            None => break,
        }
    }
    node.map(|(line, _)| line)
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn blank(l: &str) -> bool {
    let t = l.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Whether `body` sets `key` (quoted or not).
fn sets_key(body: &str, key: &str) -> bool {
    let unquoted = body.trim_start_matches(['"', '\'']);
    unquoted.strip_prefix(key).is_some_and(|r| {
        r.trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with(':')
    })
}

/// The line and column of `key` under `node` (the whole document when `None`).
fn find_key(lines: &[&str], node: Option<(usize, usize)>, key: &str) -> Option<(usize, usize)> {
    if let Some((l, col)) = node {
        // `- key: v`: an entry's first key is on the entry's own line.
        let body = lines[l][col..].trim_start();
        if let Some(rest) = body.strip_prefix("- ") {
            let rest_col = lines[l].len() - rest.trim_start().len();
            if sets_key(rest.trim_start(), key) {
                return Some((l, rest_col));
            }
        }
    }
    let from = node.map_or(0, |(l, _)| l + 1);
    for (i, l) in lines.iter().enumerate().skip(from) {
        if blank(l) {
            continue;
        }
        let ind = indent(l);
        if node.is_some_and(|(_, col)| ind <= col) {
            return None;
        }
        let body = l.trim_start();
        if sets_key(body, key) {
            return Some((i, ind));
        }
        // The first key of an entry further down is not this node's.
    }
    None
}

/// The line and column of the `n`th `- ` entry under `node`.
fn find_item(lines: &[&str], node: Option<(usize, usize)>, n: usize) -> Option<(usize, usize)> {
    let from = node.map_or(0, |(l, _)| l + 1);
    let mut count = 0usize;
    let mut at: Option<usize> = None;
    for (i, l) in lines.iter().enumerate().skip(from) {
        if blank(l) {
            continue;
        }
        let ind = indent(l);
        let body = l.trim_start();
        let item = body.starts_with("- ") || body == "-";
        // A sequence may sit at its key's own indentation.
        if node.is_some_and(|(_, col)| ind < col || (ind == col && !item)) {
            return None;
        }
        if !item || at.is_some_and(|a| ind != a) {
            continue;
        }
        at = Some(ind);
        if count == n {
            return Some((i, ind));
        }
        count += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(
            closest("upsret", ["append", "upsert"]).as_deref(),
            Some("upsert")
        );
        assert_eq!(closest("dmy", ["MDY", "DMY"]).as_deref(), Some("DMY"));
        assert_eq!(closest("banana", ["append", "upsert"]), None);
    }

    #[test]
    fn line_of_follows_keys_and_entries() {
        let text = "spec:\n  config:\n    defaults:\n      mode: a\n    tables:\n      - table: t\n        mode: b\n      - table: u\n        mode: c\n";
        let path = |s: &str| {
            let mut p = vec![Step::Key("spec".into()), Step::Key("config".into())];
            p.extend(parse_path(&format!("{s}: x")));
            p
        };
        assert_eq!(line_of(text, &path("defaults.mode")), Some(3));
        assert_eq!(line_of(text, &path("tables[0].table")), Some(5));
        assert_eq!(line_of(text, &path("tables[0].mode")), Some(6));
        assert_eq!(line_of(text, &path("tables[1].mode")), Some(8));
        assert_eq!(line_of(text, &path("tables[1]")), Some(7));
    }

    #[test]
    fn problems_lists_each_typo_and_keeps_the_rest() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            mode: Option<crate::config::Mode>,
            table: Option<String>,
        }
        let v: Value = serde_yaml::from_str("mode: upsret\ntabel: x\n").unwrap();
        let (found, rest) = problems::<T>(v);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("did you mean `upsert`"));
        assert!(found[1].message.contains("did you mean `table`"));
        assert!(rest.is_some());
    }

    #[test]
    fn parse_json_names_each_problem_by_its_path() {
        let v = serde_json::json!({"inbox": "/x", "tables": [{"table": "t", "mode": "upsret", "primary_kye": "id"}]});
        let errs = parse_json::<crate::config::ProjectConfig>("config", v).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("config.tables[0].mode: ")
                    && e.contains("did you mean `upsert`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("config.tables[0].primary_kye: ")
                    && e.contains("did you mean `primary_key`")),
            "{errs:?}"
        );
        let root =
            parse_json::<crate::config::ProjectConfig>("config", serde_json::json!({"inbox": 3}))
                .unwrap_err();
        assert!(root[0].starts_with("config.inbox: "), "{root:?}");
        let ok = parse_json::<crate::config::ProjectConfig>(
            "config",
            serde_json::json!({"inbox": "/x"}),
        )
        .unwrap();
        assert_eq!(ok.inbox.as_deref(), Some("/x"));
    }
}
