//! Secrets and redaction.
//!
//! A [`Secret`] cannot be printed by accident: its `Debug` and `Display`
//! write `*****`. The functions below redact secrets inside text that came
//! from elsewhere (URLs, driver error messages), as a last line of defence.

use std::fmt;

/// What a redacted secret looks like wherever cpi prints one.
pub const MASK: &str = "*****";

/// Query parameters of a connection URL whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "token",
    "api_key",
    "apikey",
];

/// A secret value (a password or a whole database URL).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a driver call).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A database URL with its password and secret query parameters masked.
/// Text that does not parse as a URL is masked whole: it may be anything.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return MASK.to_string();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(MASK));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.iter().any(|(k, _)| is_secret_param(k)) {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            if is_secret_param(k) {
                q.append_pair(k, MASK);
            } else {
                q.append_pair(k, v);
            }
        }
    }
    // `set_password` percent-encodes the mask; show it plainly.
    let mut out = url.to_string().replace("%2A%2A%2A%2A%2A", MASK);
    // A password may also be written elsewhere in the URL (as the
    // database's name, say): masked there too.
    for part in parts(&Secret::new(raw)).iter().skip(1) {
        if part.len() >= 3 && part != MASK {
            out = out.replace(part.as_str(), MASK);
        }
    }
    out
}

fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(key))
}

/// The URL without its password (and without secret query parameters), used
/// to compare the parts of a URL that are known when its password is not.
pub fn url_without_secrets(raw: &str) -> Option<String> {
    let mut url = url::Url::parse(raw).ok()?;
    let _ = url.set_password(None);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_secret_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    Some(url.to_string())
}

static KNOWN: std::sync::Mutex<Option<std::collections::HashSet<Secret>>> =
    std::sync::Mutex::new(None);

/// Every part of a secret that can surface alone in a message, longest
/// first: the value itself and, for a URL, its password and the value of
/// each secret query parameter (`?password=`), each as written and decoded.
/// A driver error quotes such a part wherever it appears (a password that
/// is also the database's name shows up as `database "…" does not exist`).
fn parts(s: &Secret) -> Vec<String> {
    let v = s.expose();
    let mut all = vec![v.to_string()];
    if let Ok(url) = url::Url::parse(v) {
        if let Some(pw) = url.password() {
            let decoded = percent_encoding::percent_decode_str(pw).decode_utf8_lossy();
            all.push(decoded.into_owned());
            all.push(pw.to_string());
        }
        if let Some(query) = url.query() {
            for raw in query.split('&') {
                let Some((key, value)) = url::form_urlencoded::parse(raw.as_bytes()).next() else {
                    continue;
                };
                if is_secret_param(&key) && !value.is_empty() {
                    all.push(value.into_owned());
                    if let Some((_, raw_value)) = raw.split_once('=') {
                        all.push(raw_value.to_string());
                    }
                }
            }
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.len()));
    all.dedup();
    all
}

/// Remembers a secret this process holds, so that [`scrub_known`] masks it
/// (and each of its parts: a URL's password, its `password=` parameter) in
/// any message, whatever produced the message.
pub fn register(s: &Secret) {
    let all = parts(s).into_iter().map(Secret::new);
    if let Ok(mut known) = KNOWN.lock() {
        known.get_or_insert_with(Default::default).extend(all);
    }
}

/// [`scrub`] with every registered secret, and the credentials of any URL.
pub fn scrub_known(text: &str) -> String {
    match KNOWN.lock() {
        Ok(known) => {
            let all: Vec<&Secret> = known.iter().flatten().collect();
            scrub(text, &all)
        }
        Err(_) => scrub_credentials(text),
    }
}

/// Masks every `scheme://user:password@` credential and every secret query
/// parameter found in free text, and every occurrence of the given known
/// secrets and of their parts (a URL's password and `password=` value),
/// wherever in the text it appears. Used on every message that leaves the
/// process (errors, logs), whatever produced it.
pub fn scrub(text: &str, known: &[&Secret]) -> String {
    let mut all: Vec<String> = known.iter().flat_map(|s| parts(s)).collect();
    // Longest first: a URL is masked whole before its password alone.
    all.sort_by_key(|p| std::cmp::Reverse(p.len()));
    all.dedup();
    let mut out = text.to_string();
    for v in &all {
        if v.len() >= 3 {
            out = out.replace(v.as_str(), MASK);
            let enc = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
            if enc != *v {
                out = out.replace(&enc, MASK);
            }
        }
    }
    scrub_credentials(&out)
}

/// Masks the password part of `://user:password@host` patterns in text.
pub fn scrub_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; the
        // credential is what precedes the last '@' inside it.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'' || c == '?')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    scrub_params(&out)
}

/// Masks the value of every secret query parameter (`?password=…`,
/// `&token=…`) in text: it ends at the next `&`, blank, quote or `#`.
fn scrub_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['?', '&']) {
        let (head, tail) = rest.split_at(pos + 1);
        out.push_str(head);
        let key_len = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if !(tail[key_len..].starts_with('=') && is_secret_param(&tail[..key_len])) {
            rest = tail;
            continue;
        }
        let value = &tail[key_len + 1..];
        let end = value
            .find(|c: char| c == '&' || c.is_whitespace() || matches!(c, '"' | '\'' | '#'))
            .unwrap_or(value.len());
        out.push_str(&tail[..=key_len]);
        if end > 0 {
            out.push_str(MASK);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// The most bytes a secret file (a URL, a password, a token, a key ring)
/// may hold: a secret is small, and reading `/dev/zero` or a 2 GB file as
/// one must fail at once rather than exhaust memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why a small file (a secret, a key, a manifest) is not read.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    /// Opening, inspecting or reading it failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// A device, a FIFO, a socket or a folder: reading it could block
    /// forever or never end.
    #[error("it is a {0}, not a regular file (only a regular file is read)")]
    NotRegular(&'static str),
    /// Over its cap.
    #[error("it is larger than {limit} bytes, the most such a file may hold")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotUtf8,
}

impl SmallFileError {
    /// Whether the file is simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SmallFileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// An error with its sources, `: `-joined, for a message. Not scrubbed:
/// a caller whose error may name a secret scrubs the text (or leaves the
/// secret out of the error first).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Opens `path` for reading without ever blocking (a FIFO with no writer
/// would block a plain open) and refuses anything but a regular file of at
/// most `limit` bytes, judged on the opened file itself so that no swap
/// between a check and the open can slip a device in.
pub fn open_regular(path: &std::path::Path, limit: u64) -> Result<std::fs::File, SmallFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(SmallFileError::Io)?;
    let meta = file.metadata().map_err(SmallFileError::Io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(SmallFileError::NotRegular(kind_name(&kind)));
    }
    if meta.len() > limit {
        return Err(SmallFileError::TooLarge { limit });
    }
    Ok(file)
}

/// What a file that is not a regular file is, for the message.
fn kind_name(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() {
            return "character device";
        }
        if kind.is_block_device() {
            return "block device";
        }
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_dir() {
        "folder"
    } else {
        "special file"
    }
}

/// The text of a regular file of at most `limit` bytes. At most `limit + 1`
/// bytes are ever read: a file that grows after the open, or one whose
/// size the kernel does not know (`/proc`), is still refused past `limit`.
pub fn read_small_file(path: &std::path::Path, limit: u64) -> Result<String, SmallFileError> {
    use std::io::Read;
    let file = open_regular(path, limit)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(SmallFileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(SmallFileError::TooLarge { limit });
    }
    String::from_utf8(bytes).map_err(|_| SmallFileError::NotUtf8)
}

/// [`read_small_file`] with the secret cap, [`MAX_SECRET_FILE_BYTES`].
pub fn read_secret_file(path: &std::path::Path) -> Result<String, SmallFileError> {
    read_small_file(path, MAX_SECRET_FILE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "***** *****");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_password_and_secret_params() {
        let r = redact_url("postgresql://u:p%40ss@db:5432/x?sslmode=require&password=zz");
        assert_eq!(
            r,
            "postgresql://u:*****@db:5432/x?sslmode=require&password=*****"
        );
        assert_eq!(redact_url("postgresql://u@db/x"), "postgresql://u@db/x");
        assert_eq!(redact_url("not a url"), MASK);
    }

    #[test]
    fn url_without_secrets_drops_them() {
        assert_eq!(
            url_without_secrets("postgresql://u:pw@db/x?password=1&sslmode=disable").unwrap(),
            "postgresql://u@db/x?sslmode=disable"
        );
    }

    #[test]
    fn scrub_masks_credentials_in_text() {
        let t = "error connecting to postgres://bob:s3cr3t@10.0.0.1:5/db: refused";
        assert_eq!(
            scrub_credentials(t),
            "error connecting to postgres://bob:*****@10.0.0.1:5/db: refused"
        );
        let known = Secret::new("p@ss word");
        let t = "bad password p@ss word and p%40ss%20word";
        assert_eq!(scrub(t, &[&known]), "bad password ***** and *****");
    }

    #[test]
    fn scrub_masks_every_part_of_a_url_wherever_it_appears() {
        let url = Secret::new("postgresql://u:Pl4nted10@h/Pl4nted10");
        assert_eq!(
            scrub("database \"Pl4nted10\" does not exist", &[&url]),
            "database \"*****\" does not exist"
        );
        let url =
            Secret::new("postgresql://u@h/QpPlanted77?sslmode=disable&password=QpPlanted77%21");
        assert_eq!(
            scrub("database \"QpPlanted77!\" does not exist", &[&url]),
            "database \"*****\" does not exist"
        );
        assert_eq!(
            scrub_credentials("at postgres://h/db?sslmode=require&password=zz1 \"x\""),
            "at postgres://h/db?sslmode=require&password=***** \"x\""
        );
        assert_eq!(scrub_credentials("a?b=1&c"), "a?b=1&c");
    }
}
