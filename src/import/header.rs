//! The header's names made into column names (issue 27): an empty name
//! becomes `column_N` (its position), a name longer than PostgreSQL's 63
//! bytes a unique, stable shorter one (a prefix and a hash of the whole
//! name), instead of refusing the file. Each change is a note for the job
//! and for `cpi infer`. Pure.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use crate::import::mapping::renamed;

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`).
pub const MAX_NAME_BYTES: usize = 63;

/// Hex digits of the hash a shortened name ends with.
const HASH_DIGITS: usize = 8;

/// The header's names as the file's columns, and what was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// One name per field, in file order.
    pub names: Vec<String>,
    /// One note per changed name (`header field 2 has no name: loaded as "column_2"`).
    pub notes: Vec<String>,
}

/// `name` shortened to [`MAX_NAME_BYTES`]: its longest prefix (on a
/// character boundary) that leaves room for `_` and eight hex digits of
/// the whole name's sha256. The same name always gives the same result,
/// two names differing anywhere give different ones.
pub fn shorten(name: &str) -> String {
    let room = MAX_NAME_BYTES - 1 - HASH_DIGITS;
    let mut end = room.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}_{}", &name[..end], &hash[..HASH_DIGITS])
}

/// The header's names, each empty or over-long one (after the `columns`
/// renames: a name renamed to a good column name is kept) replaced. A
/// replacement never takes a name the header already has (ignoring case):
/// `column_2` taken, it is `column_2_2`, and so on.
pub fn column_names(header: &[String], renames: &BTreeMap<String, String>) -> Named {
    let taken: HashSet<String> = header
        .iter()
        .map(|h| renamed(renames, h).to_lowercase())
        .collect();
    let mut given: HashSet<String> = HashSet::new();
    let mut names = Vec::with_capacity(header.len());
    let mut notes = Vec::new();
    for (i, h) in header.iter().enumerate() {
        let target = renamed(renames, h);
        let (base, why) = if target.is_empty() {
            (
                format!("column_{}", i + 1),
                format!("header field {} has no name", i + 1),
            )
        } else if target.len() > MAX_NAME_BYTES {
            (
                shorten(target),
                format!(
                    "header field {} {:?} is longer than {MAX_NAME_BYTES} bytes",
                    i + 1,
                    target
                ),
            )
        } else {
            names.push(h.clone());
            continue;
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name.to_lowercase()) || given.contains(&name.to_lowercase()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        given.insert(name.to_lowercase());
        notes.push(format!("{why}: loaded as {name:?}"));
        names.push(name);
    }
    Named { names, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn empty_names_are_numbered_by_position() {
        let none = BTreeMap::new();
        let n = column_names(&s(&["id", "", "v", ""]), &none);
        assert_eq!(n.names, s(&["id", "column_2", "v", "column_4"]));
        assert_eq!(
            n.notes,
            s(&[
                "header field 2 has no name: loaded as \"column_2\"",
                "header field 4 has no name: loaded as \"column_4\"",
            ])
        );
    }

    #[test]
    fn a_replacement_never_takes_a_name_of_the_header() {
        let none = BTreeMap::new();
        let n = column_names(&s(&["Column_2", "", "column_2_2"]), &none);
        assert_eq!(n.names, s(&["Column_2", "column_2_3", "column_2_2"]));
    }

    #[test]
    fn long_names_are_shortened_uniquely_and_stably() {
        let a = "a".repeat(70);
        let b = format!("{}b", "a".repeat(69));
        let (sa, sb) = (shorten(&a), shorten(&b));
        assert_eq!(sa.len(), MAX_NAME_BYTES);
        assert!(sa.starts_with(&"a".repeat(54)), "{sa}");
        assert_ne!(sa, sb);
        assert_eq!(sa, shorten(&a));
        // A multi-byte character is never cut.
        let e = "é".repeat(40);
        let se = shorten(&e);
        assert!(
            se.len() <= MAX_NAME_BYTES && se.starts_with(&"é".repeat(27)),
            "{se}"
        );
        let none = BTreeMap::new();
        let n = column_names(&s(&["id", &a]), &none);
        assert_eq!(n.names, vec!["id".to_string(), sa.clone()]);
        assert_eq!(
            n.notes,
            vec![format!(
                "header field 2 {a:?} is longer than 63 bytes: loaded as {sa:?}"
            )]
        );
        // 63 bytes is still a name.
        let ok = "x".repeat(63);
        assert_eq!(column_names(&s(&[&ok]), &none).names, s(&[&ok]));
    }

    #[test]
    fn a_renamed_name_is_kept() {
        let long = "z".repeat(64);
        let renames = BTreeMap::from([(long.clone(), "z".to_string())]);
        let n = column_names(&s(&[&long, ""]), &renames);
        assert_eq!(n.names, s(&[&long, "column_2"]));
        assert_eq!(n.notes.len(), 1);
    }
}
