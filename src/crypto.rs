//! Encryption at rest of `cpi_connections.database_url`.
//!
//! A stored URL is either plain text (written before a key existed) or an
//! envelope `cpi:v1:<key-id>:<base64(nonce || ciphertext)>`: AES-256-GCM
//! with a random 96-bit nonce per write (`aes-gcm`, RustCrypto). A key file
//! holds one or more keys, one `<key-id>:<base64 key>` per line; the first
//! encrypts, every one decrypts. A key is rotated in an order that never
//! leaves a running process unable to read (`cpi keys add`, deploy,
//! `cpi keys promote`, `cpi rekey`, `cpi keys retire`; the rules are `key_file`'s).
//!
//! The key ring is process-wide, like the scrubber's registry of secrets:
//! the command line installs it ([`install_file`]) before anything reads a
//! connection, and the store, the importer, the API and the daemon all see
//! the same one without threading it through every call. A running process
//! (`cpi run`, `cpi serve`) re-reads its key file when it changes
//! ([`Reloader`]), so deploying a rotated key file needs no restart; a file
//! that does not parse, or drops the key the process encrypts with, is
//! refused and the process keeps the keys it holds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key as AesKey, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::secret::Secret;

/// The version prefix of an encrypted value.
pub const PREFIX: &str = "cpi:v1:";

/// The flag (and environment variable) that gives the key file.
pub const FLAG: &str = "--encryption-key-file (CPI_ENCRYPTION_KEY_FILE)";

const NONCE_LEN: usize = 12;

/// Why a value could not be encrypted or decrypted, or a key file read.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// An encrypted value and no key file.
    #[error("the URL is stored encrypted (key {key_id}); give the key file with {FLAG}")]
    NoKey {
        /// The key id in the envelope.
        key_id: String,
    },
    /// An encrypted value whose key is not in the key file.
    #[error("the URL is encrypted with key {key_id}, which the key file given with {FLAG} does not hold")]
    UnknownKey {
        /// The key id in the envelope.
        key_id: String,
    },
    /// The envelope does not parse or does not authenticate.
    #[error("the stored URL does not decrypt with key {key_id} (altered, or a different key of the same id)")]
    Corrupt {
        /// The key id in the envelope (may be garbage).
        key_id: String,
    },
    /// The key file cannot be read or does not parse; never repeats a key.
    #[error("encryption key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong (line numbers, never content).
        message: String,
    },
    /// A changed key file that no longer holds the key a running process
    /// encrypts with: values it sealed would become unreadable.
    #[error("encryption key file {path} no longer holds key {key_id}, which this process encrypts with (promote another key, deploy it, cpi rekey, then retire this one)")]
    DropsEncryptingKey {
        /// The file.
        path: String,
        /// The key the process encrypts with.
        key_id: String,
    },
}

/// One key: its id and the cipher. No `Debug`: it holds the key.
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys of a key file; empty when none was given (values are then
/// stored in plain text and encrypted values cannot be read).
#[derive(Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// Whether a stored value is an encrypted envelope.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The key id of an envelope.
pub fn key_id(stored: &str) -> Option<&str> {
    stored.strip_prefix(PREFIX)?.split(':').next()
}

impl Keyring {
    /// Parses a key file's text: `<key-id>:<base64 of 32 bytes>` per line,
    /// blank lines and `#` comments ignored. `path` names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Keyring, CryptoError> {
        let err = |message: String| CryptoError::KeyFile {
            path: path.to_string(),
            message,
        };
        let mut keys: Vec<Key> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, b64) = line
                .split_once(':')
                .ok_or_else(|| err(format!("line {}: expected <key-id>:<base64 key>", n + 1)))?;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(format!(
                    "line {}: a key id is letters, digits, - and _",
                    n + 1
                )));
            }
            let bytes = B64
                .decode(b64.trim())
                .map_err(|_| err(format!("line {}: the key is not base64", n + 1)))?;
            if bytes.len() != 32 {
                return Err(err(format!("line {}: a key is 32 bytes (AES-256)", n + 1)));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(err(format!("line {}: key id {id} appears twice", n + 1)));
            }
            keys.push(Key {
                id: id.to_string(),
                cipher: Aes256Gcm::new(AesKey::<Aes256Gcm>::from_slice(&bytes)),
            });
        }
        if keys.is_empty() {
            return Err(err("holds no key".into()));
        }
        Ok(Keyring { keys })
    }

    /// Reads a key file, warning when others may read it.
    pub fn load(path: &Path) -> Result<Keyring, CryptoError> {
        let shown = path.display().to_string();
        let text = crate::secret::read_secret_file(path).map_err(|e| CryptoError::KeyFile {
            path: shown.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(file = %shown, "the encryption key file is readable by others than its owner: chmod 600 it");
                }
            }
        }
        Keyring::parse(&text, &shown)
    }

    /// Whether there is a key to encrypt with.
    pub fn has_key(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The ids of the keys, the encrypting one first (ids are not secret:
    /// processes report them so that a rotation can wait for all).
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The id of the key that encrypts, if any.
    pub fn current_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// The text to store for `plain`: an envelope with the first key, or the
    /// plain text when there is no key.
    pub fn seal(&self, plain: &Secret) -> String {
        let Some(key) = self.keys.first() else {
            return plain.expose().to_string();
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encrypting into a Vec cannot fail for inputs below GCM's 64 GiB limit.
        let ct = key
            .cipher
            .encrypt(&nonce, plain.expose().as_bytes())
            .expect("AES-GCM encryption of a short value");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ct);
        format!("{PREFIX}{}:{}", key.id, B64.encode(body))
    }

    /// The plain value of a stored text: plain text as is, an envelope
    /// decrypted with the key of its id.
    pub fn open(&self, stored: &str) -> Result<Secret, CryptoError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored));
        };
        let (id, b64) = rest.split_once(':').unwrap_or((rest, ""));
        let key_id = id.to_string();
        if self.keys.is_empty() {
            return Err(CryptoError::NoKey { key_id });
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey {
                key_id: key_id.clone(),
            })?;
        let corrupt = || CryptoError::Corrupt {
            key_id: key_id.clone(),
        };
        let body = B64.decode(b64).map_err(|_| corrupt())?;
        if body.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ct) = body.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| corrupt())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| corrupt())
    }

    /// Whether a stored text is already what [`Self::seal`] would write
    /// (an envelope of the first key; plain text when there is no key).
    pub fn is_current(&self, stored: &str) -> bool {
        match self.current_id() {
            None => !is_sealed(stored),
            Some(id) => key_id(stored) == Some(id),
        }
    }
}

/// A new key file's text: one fresh random key with a random id.
pub fn generate() -> String {
    format!(
        "# cpi encryption key (AES-256-GCM). The first key encrypts, every key decrypts.\n\
         # To rotate: cpi keys add, deploy the file everywhere, cpi keys promote ID,\n\
         # deploy, cpi rekey, cpi keys retire OLD-ID, deploy (docs/operations.md).\n\
         {}\n",
        generate_line()
    )
}

/// One fresh random key as a key file's line (`<id>:<base64 key>`).
pub fn generate_line() -> String {
    let key = Aes256Gcm::generate_key(OsRng);
    let id_bytes: [u8; 4] = rand_bytes();
    format!("k{}:{}", hex::encode(id_bytes), B64.encode(key))
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

static RING: RwLock<Option<Arc<Keyring>>> = RwLock::new(None);

/// The key file the installed ring was read from.
static SOURCE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Makes `ring` the process's key ring.
pub fn install(ring: Keyring) {
    if let Ok(mut r) = RING.write() {
        *r = Some(Arc::new(ring));
    }
}

/// Reads the key file `path` and makes it the process's key ring, which a
/// [`Reloader`] then keeps in step with the file.
pub fn install_file(path: &Path) -> Result<(), CryptoError> {
    install(Keyring::load(path)?);
    if let Ok(mut s) = SOURCE.write() {
        *s = Some(path.to_path_buf());
    }
    Ok(())
}

/// Whether a key file's new ring may replace the ring a running process
/// holds: it must still hold the key the process encrypts with (the safe
/// order retires a key only after another one was promoted, deployed and
/// `cpi rekey` ran). Any other change (a key added, the order changed, a
/// non-encrypting key dropped) is accepted.
pub fn may_replace(current: &[String], next: &Keyring, path: &str) -> Result<(), CryptoError> {
    match current.first() {
        Some(encrypting) if !next.ids().contains(encrypting) => {
            Err(CryptoError::DropsEncryptingKey {
                path: path.to_string(),
                key_id: encrypting.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// What tells one version of a file from the next without reading it:
/// size, inode (an editor or `cpi keys` writing a new file) and the
/// modification and change times in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        ino: m.ino(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// What one [`Reloader::check`] found.
#[derive(Debug)]
pub enum Reload {
    /// The file is as it was at the last check.
    Unchanged,
    /// The file changed and is now the process's key ring: its key ids,
    /// the encrypting one first.
    Reloaded(Vec<String>),
    /// The file changed but cannot be used; the process keeps its keys.
    /// Reported once per change of the file.
    Refused(CryptoError),
}

/// Watches the key file of the installed ring (a `stat` per check) and
/// installs its new keys when it changes.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    seen: Option<Stamp>,
}

impl Reloader {
    /// A reloader for the file [`install_file`] read, if any.
    pub fn for_installed() -> Option<Reloader> {
        let path = SOURCE.read().ok()?.clone()?;
        let seen = stamp(&path);
        Some(Reloader { path, seen })
    }

    /// Re-reads the file if it changed since the last check.
    pub fn check(&mut self) -> Reload {
        let now = stamp(&self.path);
        if now == self.seen {
            return Reload::Unchanged;
        }
        self.seen = now;
        let shown = self.path.display().to_string();
        let next = Keyring::load(&self.path)
            .and_then(|next| may_replace(&keyring().ids(), &next, &shown).map(|()| next));
        match next {
            Ok(next) => {
                let ids = next.ids();
                install(next);
                Reload::Reloaded(ids)
            }
            Err(e) => Reload::Refused(e),
        }
    }
}

/// The process's key ring (empty when none was installed).
pub fn keyring() -> Arc<Keyring> {
    RING.read().ok().and_then(|r| r.clone()).unwrap_or_default()
}

/// [`Keyring::seal`] with the process's key ring.
pub fn seal(plain: &Secret) -> String {
    keyring().seal(plain)
}

/// [`Keyring::open`] with the process's key ring.
pub fn open(stored: &str) -> Result<Secret, CryptoError> {
    keyring().open(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> Keyring {
        Keyring::parse(text, "test").unwrap()
    }

    #[test]
    fn a_new_key_file_may_replace_a_ring_only_while_it_holds_the_encrypting_key() {
        let (old, new) = (generate(), generate());
        let ids = |t: &str| ring(t).ids();
        let both = format!("{old}{new}");
        let promoted = format!("{new}{old}");
        // add, promote, retire in the safe order: each step is accepted.
        may_replace(&ids(&old), &ring(&both), "f").unwrap();
        may_replace(&ids(&both), &ring(&promoted), "f").unwrap();
        may_replace(&ids(&promoted), &ring(&new), "f").unwrap();
        // A process without keys takes any file.
        may_replace(&[], &ring(&new), "f").unwrap();
        // Dropping the key the process encrypts with: refused, naming it
        // and never the key itself.
        let e = may_replace(&ids(&both), &ring(&new), "f").unwrap_err();
        let text = e.to_string();
        let encrypting = &ids(&both)[0];
        assert!(
            text.contains(&format!("no longer holds key {encrypting}")),
            "{text}"
        );
        assert!(
            !text.contains(old.trim().split(':').nth(1).unwrap()),
            "{text}"
        );
    }

    #[test]
    fn seal_then_open_round_trips_and_never_repeats() {
        let r = ring(&generate());
        let url = Secret::new("postgresql://u:pw@h/db");
        let a = r.seal(&url);
        let b = r.seal(&url);
        assert!(a.starts_with(PREFIX) && !a.contains("pw@h"));
        assert_ne!(a, b, "a fresh nonce per write");
        assert_eq!(r.open(&a).unwrap(), url);
        assert!(r.is_current(&a));
    }

    #[test]
    fn plain_text_reads_as_is_and_without_key_seal_is_plain() {
        let none = Keyring::default();
        assert_eq!(none.seal(&Secret::new("x")), "x");
        assert_eq!(
            none.open("postgresql://h/db").unwrap().expose(),
            "postgresql://h/db"
        );
        let sealed = ring(&generate()).seal(&Secret::new("x"));
        let e = none.open(&sealed).unwrap_err().to_string();
        assert!(e.contains("--encryption-key-file"), "{e}");
    }

    #[test]
    fn rotation_first_encrypts_all_decrypt() {
        let old = generate();
        let new = generate();
        let sealed_old = ring(&old).seal(&Secret::new("a"));
        let both = ring(&format!("{new}{old}"));
        assert_eq!(both.open(&sealed_old).unwrap().expose(), "a");
        assert!(!both.is_current(&sealed_old));
        let resealed = both.seal(&both.open(&sealed_old).unwrap());
        assert_eq!(ring(&new).open(&resealed).unwrap().expose(), "a");
        assert!(matches!(
            ring(&new).open(&sealed_old),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let r = ring(&generate());
        let mut s = r.seal(&Secret::new("abc")).into_bytes();
        let last = s.len() - 3;
        s[last] = if s[last] == b'A' { b'B' } else { b'A' };
        let s = String::from_utf8(s).unwrap();
        assert!(matches!(r.open(&s), Err(CryptoError::Corrupt { .. })));
    }

    #[test]
    fn bad_key_files_never_echo_the_key() {
        let e = Keyring::parse("k1:c2VjcmV0", "f").unwrap_err().to_string();
        assert!(e.contains("32 bytes") && !e.contains("c2VjcmV0"), "{e}");
        assert!(Keyring::parse("# nothing\n", "f").is_err());
        assert!(Keyring::parse("nocolon\n", "f").is_err());
    }
}
