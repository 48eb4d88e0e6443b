//! Key rotation as a procedure: the edits of a key file (`cpi keys add`,
//! `promote`, `retire`) and the rules that say when each step, and
//! `cpi rekey`, is safe. All pure: the command line reads the file, the
//! running processes (`store::processes`) and the rows still sealed with a
//! key, asks here, and writes.
//!
//! The safe order, which these rules enforce:
//! 1. `cpi keys add`: the new key goes **last**, so it only decrypts;
//! 2. deploy the file to every process (each reports the ids it holds);
//! 3. `cpi keys promote ID`: refused until every running process holds ID,
//!    since from then on writes are sealed with it;
//! 4. deploy, then `cpi rekey`: refused while a running process lacks the
//!    key it would seal with;
//! 5. `cpi keys retire OLD`: refused while a row is sealed with OLD or a
//!    running process still encrypts with it.

use crate::crypto::{CryptoError, Keyring};
use crate::store::processes::{self, Process};

/// Why a step was refused or a file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn key_id_of(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    t.split_once(':').map(|(id, _)| id)
}

/// The key ids of a key file's text, in order, after checking it parses.
pub fn ids(text: &str, path: &str) -> Result<Vec<String>, CryptoError> {
    Ok(Keyring::parse(text, path)?.ids())
}

/// `text` with `line` (a new key, `<id>:<base64>`) appended last: a key
/// that decrypts but does not encrypt yet.
pub fn add(text: &str, line: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

/// `text` with key `id`'s line moved before every other key line, so that
/// it encrypts. Comments stay where they are.
pub fn promote(text: &str, id: &str) -> Result<String, Refused> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = lines
        .iter()
        .position(|l| key_id_of(l) == Some(id))
        .ok_or_else(|| Refused(format!("the key file holds no key {id}")))?;
    let first = lines
        .iter()
        .position(|l| key_id_of(l).is_some())
        .unwrap_or(at);
    if first == at {
        return Err(Refused(format!("key {id} already encrypts (it is first)")));
    }
    let mut moved = lines[at].to_string();
    if !moved.ends_with('\n') {
        moved.push('\n');
    }
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        if n == first {
            out.push_str(&moved);
        }
        if n != at {
            out.push_str(l);
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// `text` without key `id`'s line. The encrypting key (the first) cannot
/// be retired: promote another one first.
pub fn retire(text: &str, id: &str) -> Result<String, Refused> {
    let ids: Vec<&str> = text.lines().filter_map(key_id_of).collect();
    match ids.iter().position(|k| *k == id) {
        None => Err(Refused(format!("the key file holds no key {id}"))),
        Some(0) => Err(Refused(format!(
            "key {id} is the one that encrypts (first in the file): promote another key first"
        ))),
        Some(_) => Ok(text
            .split_inclusive('\n')
            .filter(|l| key_id_of(l) != Some(id))
            .collect()),
    }
}

fn names(ps: &[&Process]) -> String {
    let listed = ps.iter().map(|p| p.label()).collect::<Vec<_>>().join(", ");
    // A process killed without stopping keeps its row until it ages out.
    format!(
        "{listed}; a process that died is forgotten {} s after it was last seen",
        processes::LIVE_WITHIN.as_secs()
    )
}

/// `Ok` when every running process holds key `id`; else a refusal saying
/// what was not done, what the processes that lack the key would suffer,
/// and which they are.
fn all_hold(
    id: &str,
    live: &[Process],
    not_done: &str,
    lacking_would: &str,
) -> Result<(), Refused> {
    let lacking = processes::lacking(live, id);
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Refused(format!(
        "{not_done}: {} running process(es) {lacking_would} ({}); deploy the key file with {id} in it (second is fine) to them first",
        lacking.len(),
        names(&lacking)
    )))
}

/// Whether key `id` may start encrypting: every running process must hold it.
pub fn may_promote(id: &str, live: &[Process]) -> Result<(), Refused> {
    all_hold(
        id,
        live,
        &format!("not promoting key {id}"),
        "do not hold it yet",
    )
}

/// Whether `cpi rekey` may seal every URL with key `id`.
pub fn may_rekey(id: &str, live: &[Process]) -> Result<(), Refused> {
    all_hold(
        id,
        live,
        &format!("not re-encrypting with key {id}"),
        "could not read the result",
    )
}

/// Whether key `id` may leave the file: no stored value is sealed with it
/// (`sealed_with` counts them) and no running process encrypts with it.
pub fn may_retire(id: &str, sealed_with: u64, live: &[Process]) -> Result<(), Refused> {
    if sealed_with > 0 {
        return Err(Refused(format!(
            "not retiring key {id}: {sealed_with} stored connection URL(s) are encrypted with it; run cpi rekey first"
        )));
    }
    let encrypting = processes::encrypting_with(live, id);
    if !encrypting.is_empty() {
        return Err(Refused(format!(
            "not retiring key {id}: {} running process(es) still encrypt with it ({}); deploy the promoted key file to them first",
            encrypting.len(),
            names(&encrypting)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::processes::test_process as p;

    const FILE: &str = "# comment\nold:AAAA\n";

    #[test]
    fn add_goes_last_and_promote_moves_it_first_keeping_comments() {
        let two = add(FILE, "new:BBBB");
        assert_eq!(two, "# comment\nold:AAAA\nnew:BBBB\n");
        assert_eq!(add("old:AAAA", "new:BBBB"), "old:AAAA\nnew:BBBB\n");
        let promoted = promote(&two, "new").unwrap();
        assert_eq!(promoted, "# comment\nnew:BBBB\nold:AAAA\n");
        assert!(promote(&promoted, "new").unwrap_err().0.contains("already"));
        assert!(promote(&two, "nope").unwrap_err().0.contains("no key nope"));
        assert_eq!(
            promote("a:1\nb:2", "b").unwrap(),
            "b:2\na:1\n",
            "a last line without a newline"
        );
    }

    #[test]
    fn retire_never_drops_the_encrypting_key() {
        let promoted = "new:BBBB\nold:AAAA\n";
        assert_eq!(retire(promoted, "old").unwrap(), "new:BBBB\n");
        assert!(retire(promoted, "new")
            .unwrap_err()
            .0
            .contains("promote another"));
        assert!(retire(promoted, "x").is_err());
    }

    #[test]
    fn a_rotation_step_waits_for_every_running_process() {
        let live = [p(1, &["old", "new"]), p(2, &["old"])];
        let e = may_promote("new", &live).unwrap_err().0;
        assert!(
            e.contains("cpi run on h (pid 2)") && !e.contains("pid 1"),
            "{e}"
        );
        assert!(may_rekey("new", &live).is_err());
        let ready = [p(1, &["new", "old"]), p(2, &["old", "new"])];
        assert!(may_promote("new", &ready).is_ok());
        assert!(may_rekey("new", &ready).is_ok());
        // pid 2 still encrypts with old: old stays.
        assert!(may_retire("old", 0, &ready)
            .unwrap_err()
            .0
            .contains("pid 2"));
        let all_new = [p(1, &["new", "old"]), p(2, &["new"])];
        assert!(may_retire("old", 3, &all_new)
            .unwrap_err()
            .0
            .contains("cpi rekey"));
        assert!(may_retire("old", 0, &all_new).is_ok());
        assert!(may_promote("new", &[]).is_ok(), "nothing running");
    }
}
