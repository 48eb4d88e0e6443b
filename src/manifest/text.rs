//! A manifest file's YAML text: split into documents, checked before
//! parsing (tabs, nesting depth, alias expansion), and its problems
//! located by line.

use std::path::PathBuf;

use super::error::ManifestError;

/// The most YAML nodes (lines, counted with every alias expanded) one
/// document may stand for: aliases that replay a large anchor many times
/// would otherwise make a small file take gigabytes to load.
pub const MAX_EXPANDED_NODES: u64 = 200_000;

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
pub(super) fn check_tabs(ctx: &DocCtx) -> Result<(), ManifestError> {
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
pub(super) fn check_expansion(ctx: &DocCtx) -> Result<(), ManifestError> {
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

/// The deepest a document may nest (flow `{`/`[` levels, block indentation
/// levels and `- ` entries counted together). A manifest needs a handful;
/// the YAML parser takes time quadratic in the depth, so 200,000 `{a: `
/// (600 KB, inside the size cap) would run for minutes.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Refuses a document nested deeper than [`MAX_NESTING_DEPTH`], before the
/// parser sees it, naming the line and column where the limit is passed.
pub(super) fn check_depth(ctx: &DocCtx) -> Result<(), ManifestError> {
    match too_deep(ctx.text, MAX_NESTING_DEPTH) {
        None => Ok(()),
        Some((line, column)) => Err(ManifestError {
            file: ctx.file.to_string(),
            line: Some(line + ctx.offset),
            column: Some(column),
            message: format!(
                "nested deeper than {MAX_NESTING_DEPTH} levels (mappings and lists, flow and block style, counted together); refused before parsing"
            ),
        }),
    }
}

/// Where (line, column, 1-based) the nesting of `text` first passes
/// `limit`, if it does. One pass over the text, stopping there: the same
/// cost whatever the text. Quoted scalars, comments and block scalars
/// (`|`, `>`) are skipped as the YAML parser would; a `{` or `[` counts
/// only where a node may start, as it does for the parser.
pub fn too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    let mut indents: Vec<usize> = Vec::new();
    // Lines indented deeper than this belong to a block scalar.
    let mut scalar_at: Option<usize> = None;
    let mut base = 0usize;
    for (i, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if let Some(at) = scalar_at {
            if content.is_empty() || indent > at {
                continue;
            }
            scalar_at = None;
        }
        // Inside a flow collection or a quoted scalar that spans lines, the
        // block depth is the one of the line where it began.
        let mut block = base;
        if flow == 0 && quote.is_none() {
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&top| top < indent) {
                indents.push(indent);
            }
            block = indents.len();
            base = block;
        }
        // `prev`: the last character that is not a blank on this line
        // (None at its start); `spaced`: blanks since.
        let (mut prev, mut spaced) = (None::<char>, false);
        let mut chars = content.char_indices().peekable();
        while let Some((j, c)) = chars.next() {
            if let Some(q) = quote {
                if q == '"' && c == '\\' {
                    chars.next();
                } else if c == q {
                    if q == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                        (prev, spaced) = (Some(c), false);
                    }
                }
                continue;
            }
            if c == ' ' || c == '\t' {
                spaced = true;
                continue;
            }
            if c == '#' && (spaced || prev.is_none()) {
                break;
            }
            let node_start = match prev {
                None => true,
                Some('-' | '?') => spaced,
                Some(':') => spaced || flow > 0,
                Some('[' | '{' | ',') => flow > 0,
                _ => false,
            };
            // `- ` entries nest: `- - - x` is three levels.
            if c == '-' && flow == 0 && node_start && chars.peek().is_none_or(|&(_, n)| n == ' ') {
                block += 1;
            }
            match c {
                '{' | '[' if node_start || flow > 0 => {
                    flow += 1;
                    if block + flow > limit {
                        return Some((i + 1, indent + j + 1));
                    }
                }
                '}' | ']' if flow > 0 => flow -= 1,
                '"' | '\'' if node_start => quote = Some(c),
                '|' | '>' if node_start && flow == 0 => {
                    let rest = content[j + 1..]
                        .trim_start_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
                    let rest = rest.trim_start_matches([' ', '\t']);
                    if rest.is_empty() || rest.starts_with('#') {
                        scalar_at = Some(indent);
                        break;
                    }
                }
                _ => {}
            }
            (prev, spaced) = (Some(c), false);
        }
        if block + flow > limit {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

/// Whether `c` can end an anchor or alias name.
fn ends_name(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}')
}

/// The `&anchor` and `*alias` names on one line: a `&`/`*` at the start of
/// a token (after a space, `-`, `:` or a flow indicator). Text inside
/// quotes may be miscounted; that only makes the estimate larger.
pub(super) fn marks(line: &str) -> (Vec<&str>, Vec<&str>) {
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

pub(super) struct Document<'a> {
    pub(super) text: &'a str,
    /// Lines before this document in its file.
    pub(super) line_offset: usize,
}

/// Splits a YAML stream on `---` lines, keeping each document's first line
/// number so that errors point into the file, not into the document.
pub(super) fn split_documents(text: &str) -> Vec<Document<'_>> {
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

pub(super) struct DocCtx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) offset: usize,
    /// `--inbox-root`: where inboxes may be (none: anywhere).
    pub(super) roots: &'a [PathBuf],
}

pub(super) fn err(file: &str, line: Option<usize>, message: String) -> ManifestError {
    ManifestError {
        file: file.to_string(),
        line,
        column: None,
        message,
    }
}

impl DocCtx<'_> {
    pub(super) fn yaml_err(&self, e: &serde_yaml::Error) -> ManifestError {
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
    pub(super) fn err_at_key(&self, key: &str, message: String) -> ManifestError {
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
