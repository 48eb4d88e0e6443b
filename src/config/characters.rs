//! Options whose value is a character (`delimiter`, `quote`, `escape`,
//! `comment`): one ASCII byte, or one of the multi-byte delimiters. Read
//! the same way when options are validated and when they are resolved.

/// The byte a multi-byte delimiter stands for in the text the CSV parser
/// reads (ASCII's unit separator, made for this).
pub const WIDE_DELIMITER_BYTE: u8 = 0x1F;

/// The multi-byte delimiters cpi reads.
pub const WIDE_DELIMITERS: &[&str] = &[", ", "; ", "| "];

/// The one ASCII byte `v` holds (`None` when unset); anything else is a
/// problem pushed onto `errors`, named `{at}.{key}`.
pub fn single_byte(
    v: &Option<String>,
    key: &str,
    at: &str,
    errors: &mut Vec<String>,
) -> Option<u8> {
    let s = v.as_deref()?;
    if s.len() == 1 && s.is_ascii() {
        Some(s.as_bytes()[0])
    } else {
        errors.push(format!(
            "{at}.{key}: {s:?} must be a single ASCII character"
        ));
        None
    }
}
