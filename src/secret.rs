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
    url.to_string().replace("%2A%2A%2A%2A%2A", MASK)
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

/// Remembers a secret this process holds, so that [`scrub_known`] masks it
/// in any message, whatever produced the message.
pub fn register(s: &Secret) {
    let mut all = vec![s.clone()];
    // A URL's password can surface alone (decoded), e.g. in a driver error.
    if let Ok(url) = url::Url::parse(s.expose()) {
        if let Some(pw) = url.password() {
            let decoded = percent_encoding::percent_decode_str(pw).decode_utf8_lossy();
            all.push(Secret::new(decoded.into_owned()));
            all.push(Secret::new(pw));
        }
    }
    if let Ok(mut known) = KNOWN.lock() {
        known.get_or_insert_with(Default::default).extend(all);
    }
}

/// [`scrub`] with every registered secret, and the credentials of any URL.
pub fn scrub_known(text: &str) -> String {
    match KNOWN.lock() {
        Ok(known) => {
            // Longest first: a URL is masked whole before its password alone.
            let mut all: Vec<&Secret> = known.iter().flatten().collect();
            all.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
            scrub(text, &all)
        }
        Err(_) => scrub_credentials(text),
    }
}

/// Masks every `scheme://user:password@` credential found in free text, and
/// every occurrence of the given known secrets. Used on every message that
/// leaves the process (errors, logs), whatever produced it.
pub fn scrub(text: &str, known: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in known {
        let v = s.expose();
        if v.len() >= 3 {
            out = out.replace(v, MASK);
            let enc = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
            if enc != v {
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
}
