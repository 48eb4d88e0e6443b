//! Ids as people type them: a full UUID or a unique prefix of at least
//! [`MIN_HEX`] hex digits, as git and docker accept (`cpi jobs show 3e21e2`).
//! A prefix is the range of UUIDs that start with it, so that the lookup is
//! an index range scan on the primary key, never a scan of the history.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The shortest prefix accepted: 6 hex digits are 16.7 million ids, unique
/// in any history a management database keeps.
pub const MIN_HEX: usize = 6;

/// A full id or a prefix of one, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix {
    /// The hex digits typed, lower case, without dashes.
    hex: String,
}

impl IdPrefix {
    /// The smallest and the largest UUID that start with the prefix (the
    /// same one for a full id).
    pub fn range(&self) -> (Uuid, Uuid) {
        let pad = |c: char| {
            let mut s = self.hex.clone();
            s.extend(std::iter::repeat_n(c, 32 - s.len()));
            Uuid::parse_str(&s).expect("32 hex digits")
        };
        (pad('0'), pad('f'))
    }

    /// The full id, when all 32 digits were typed.
    pub fn full(&self) -> Option<Uuid> {
        (self.hex.len() == 32).then(|| self.range().0)
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.full() {
            Some(id) => write!(f, "{id}"),
            None => f.write_str(&self.hex),
        }
    }
}

/// Why typed text is not an id, or names no single one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdPrefixError {
    /// Not hex digits (dashes aside).
    #[error("{0:?} is not an id: give the id or its first {MIN_HEX} or more hex digits")]
    NotHex(String),
    /// Fewer than [`MIN_HEX`] digits.
    #[error("{0:?} is too short: give at least {MIN_HEX} hex digits of the id")]
    TooShort(String),
    /// More than 32 digits.
    #[error("{0:?} is longer than an id")]
    TooLong(String),
    /// No row has an id with the prefix.
    #[error("no {what} has an id starting with {prefix}")]
    NotFound {
        /// What was looked for ("job").
        what: String,
        /// The prefix as typed (normalised).
        prefix: String,
    },
    /// Two or more rows have an id with the prefix.
    #[error("{prefix} is ambiguous: {first}, {second}{more}; give more digits")]
    Ambiguous {
        /// The prefix as typed (normalised).
        prefix: String,
        /// The smallest id that starts with it.
        first: Uuid,
        /// The next one.
        second: Uuid,
        /// ", …" when there are more.
        more: &'static str,
    },
}

impl FromStr for IdPrefix {
    type Err = IdPrefixError;

    fn from_str(s: &str) -> Result<IdPrefix, IdPrefixError> {
        let hex: String = s.chars().filter(|&c| c != '-').collect();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdPrefixError::NotHex(s.to_string()));
        }
        if hex.len() < MIN_HEX {
            return Err(IdPrefixError::TooShort(s.to_string()));
        }
        if hex.len() > 32 {
            return Err(IdPrefixError::TooLong(s.to_string()));
        }
        Ok(IdPrefix {
            hex: hex.to_ascii_lowercase(),
        })
    }
}

/// What a prefix named, for the error a command prints.
pub fn resolved(prefix: &IdPrefix, what: &str, found: &[Uuid]) -> Result<Uuid, IdPrefixError> {
    match found {
        [id] => Ok(*id),
        [] => Err(IdPrefixError::NotFound {
            what: what.to_string(),
            prefix: prefix.to_string(),
        }),
        [a, b, ..] => Err(IdPrefixError::Ambiguous {
            prefix: prefix.to_string(),
            first: *a,
            second: *b,
            more: if found.len() > 2 { ", …" } else { "" },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_the_range_of_ids_that_start_with_it() {
        let p: IdPrefix = "3E21e2".parse().unwrap();
        let (lo, hi) = p.range();
        assert_eq!(lo.to_string(), "3e21e200-0000-0000-0000-000000000000");
        assert_eq!(hi.to_string(), "3e21e2ff-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(p.full(), None);
        assert_eq!(p.to_string(), "3e21e2");
    }

    #[test]
    fn a_full_id_with_or_without_dashes_is_itself() {
        let id = Uuid::new_v4();
        for typed in [id.to_string(), id.simple().to_string()] {
            let p: IdPrefix = typed.parse().unwrap();
            assert_eq!(p.full(), Some(id));
            assert_eq!(p.range(), (id, id));
        }
        let part: IdPrefix = id.to_string()[..13].parse().unwrap();
        assert!(part.range().0 <= id && id <= part.range().1);
    }

    #[test]
    fn short_or_foreign_text_is_refused_saying_what_to_give() {
        assert!("3e21e"
            .parse::<IdPrefix>()
            .unwrap_err()
            .to_string()
            .contains("at least 6 hex digits"));
        assert!("orders"
            .parse::<IdPrefix>()
            .unwrap_err()
            .to_string()
            .contains("is not an id"));
        assert!("".parse::<IdPrefix>().is_err());
        assert!("0".repeat(33).parse::<IdPrefix>().is_err());
    }

    #[test]
    fn ambiguity_names_two_candidates() {
        let p: IdPrefix = "abcdef".parse().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(resolved(&p, "job", &[a]), Ok(a));
        assert!(resolved(&p, "job", &[])
            .unwrap_err()
            .to_string()
            .contains("no job has an id starting with abcdef"));
        let e = resolved(&p, "job", &[a, b]).unwrap_err().to_string();
        assert!(e.contains("ambiguous") && e.contains(&a.to_string()), "{e}");
    }
}
