//! What the value parsers share: why a value was refused, and the
//! spelled-out values (`NaN`, `Infinity`) of numbers and dates.

/// Why one value was refused; rendered after `column "x": `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// `"12,5" is not a valid numeric`
    Invalid(&'static str),
    /// Outside the type's range (the type's name).
    OutOfRange(&'static str),
    /// Longer than `varchar(n)`/`char(n)` allows (n).
    TooLong(usize),
    /// More digits than `numeric(precision, scale)` holds.
    NumericOverflow {
        /// The column's precision.
        precision: i32,
        /// The column's scale.
        scale: i32,
    },
    /// Empty in a `NOT NULL` column.
    NotNull,
    /// Contains a NUL byte, which PostgreSQL text cannot hold.
    Nul,
    /// Not valid UTF-8.
    BadUtf8,
    /// Does not match the column's explicit `date_format`/`timestamp_format`.
    Format(String),
}

impl ValueError {
    /// The message after `column "x": `, with `shown` the value as displayed.
    pub fn message(&self, shown: &str) -> String {
        match self {
            ValueError::Invalid(t) => format!("{shown} is not a valid {t}"),
            ValueError::OutOfRange(t) => format!("{shown} is out of range for type {t}"),
            ValueError::TooLong(n) => format!("{shown} is longer than {n} characters"),
            ValueError::NumericOverflow { precision, scale } => {
                format!("{shown} does not fit numeric({precision},{scale})")
            }
            ValueError::NotNull => "null value in a NOT NULL column".to_string(),
            ValueError::Nul => format!("{shown} contains a NUL byte"),
            ValueError::BadUtf8 => format!("{shown} is not valid UTF-8"),
            ValueError::Format(f) => format!("{shown} does not match the format {f:?}"),
        }
    }
}

/// A spelled-out value (`NaN`, `Infinity`, any case, optional sign): its
/// code from `names`, negated for a leading `-`. Returns at once on a
/// digit: most values are numbers, and this runs for each of them.
pub(super) fn named_value(t: &str, names: &[(&str, i32)]) -> Option<i32> {
    let first = *t.as_bytes().first()?;
    if first.is_ascii_digit() || first == b'.' {
        return None;
    }
    let (neg, body) = match first {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let code = names
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(body))
        .map(|(_, c)| *c)?;
    Some(if neg { -code } else { code })
}
