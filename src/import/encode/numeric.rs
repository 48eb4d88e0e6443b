//! `numeric` values: parsed into PostgreSQL's base-10000 layout, checked
//! against the column's precision and scale.

use super::value::{named_value, ValueError};

/// A decimal number split the way PostgreSQL stores it: base-10000 digit
/// groups, the weight of the first group, the sign and the display scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numeric {
    /// Base-10000 digit groups, most significant first.
    pub digits: Vec<i16>,
    /// Weight of the first group (its power of 10000).
    pub weight: i16,
    /// `NUMERIC_POS` or `NUMERIC_NEG`.
    pub sign: u16,
    /// Digits after the decimal point, as written.
    pub dscale: u16,
    /// Digits before the decimal point, leading zeros removed (for typmod checks).
    pub int_digits: usize,
}

pub(super) const NUMERIC_POS: u16 = 0x0000;
pub(super) const NUMERIC_NEG: u16 = 0x4000;
pub(super) const NUMERIC_NAN: u16 = 0xC000;
pub(super) const NUMERIC_PINF: u16 = 0xD000;
pub(super) const NUMERIC_NINF: u16 = 0xF000;

impl Numeric {
    fn special(sign: u16) -> Numeric {
        Numeric {
            digits: Vec::new(),
            weight: 0,
            sign,
            dscale: 0,
            int_digits: 0,
        }
    }

    /// Appends the value in PostgreSQL's binary `numeric` layout.
    pub fn write_binary(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&(self.digits.len() as i16).to_be_bytes());
        buf.extend_from_slice(&self.weight.to_be_bytes());
        buf.extend_from_slice(&self.sign.to_be_bytes());
        buf.extend_from_slice(&self.dscale.to_be_bytes());
        for d in &self.digits {
            buf.extend_from_slice(&d.to_be_bytes());
        }
    }
}

/// Parses `[+-]digits[.digits][e[+-]digits]`, `NaN`, `Infinity`.
pub fn parse_numeric(t: &str) -> Option<Numeric> {
    if let Some(special) = named_value(t, &[("nan", 0), ("infinity", 1), ("inf", 1)]) {
        if special == 0 && t.starts_with(['+', '-']) {
            return None;
        }
        return Some(Numeric::special(match special {
            0 => NUMERIC_NAN,
            1 => NUMERIC_PINF,
            _ => NUMERIC_NINF,
        }));
    }
    let (neg, rest) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = rest[i + 1..].parse().ok()?;
            // PostgreSQL's limits follow (weight, display scale).
            if e.abs() > 131_072 {
                return None;
            }
            (&rest[..i], e)
        }
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, and where the decimal point falls among them.
    let all: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    let point = int_part.len() as i64 + exp as i64;
    let dscale = (frac_part.len() as i64 - exp as i64).max(0);
    if dscale > 16383 {
        return None;
    }
    // Align the digits so the point falls on a group boundary: pad the
    // integer side on the left to a multiple of 4.
    let lead = (4 - point.rem_euclid(4)) % 4;
    let first_pos = point + lead; // digits before the point, padded
    let mut groups: Vec<i16> = Vec::with_capacity(all.len() / 4 + 2);
    let total = (lead as usize) + all.len();
    let padded_len = total.div_ceil(4) * 4;
    let padded_len = padded_len.max(if first_pos > 0 { first_pos as usize } else { 0 });
    let mut i = 0usize;
    while i < padded_len {
        let mut g = 0i16;
        for k in 0..4 {
            let idx = i + k;
            let d = if idx >= lead as usize && idx - (lead as usize) < all.len() {
                all[idx - lead as usize] as i16
            } else {
                0
            };
            g = g * 10 + d;
        }
        groups.push(g);
        i += 4;
    }
    let mut weight = first_pos / 4 - 1;
    // Strip leading zero groups (each lowers the weight) and trailing ones.
    let lead_zero = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead_zero);
    weight -= lead_zero as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let int_digits = int_part.trim_start_matches('0').len() as i64 + exp as i64;
    if groups.is_empty() {
        weight = 0;
    }
    if !(-32768..=32767).contains(&weight) {
        return None;
    }
    Some(Numeric {
        sign: if neg && !groups.is_empty() {
            NUMERIC_NEG
        } else {
            NUMERIC_POS
        },
        digits: groups,
        weight: weight as i16,
        dscale: dscale as u16,
        int_digits: int_digits.max(0) as usize,
    })
}

pub(super) fn check_numeric_typmod(n: &Numeric, typmod: i32) -> Result<(), ValueError> {
    if typmod < 4 {
        return Ok(());
    }
    let precision = ((typmod - 4) >> 16) & 0xffff;
    let scale = (typmod - 4) & 0xffff;
    if scale > precision || n.sign == NUMERIC_NAN {
        // Negative scales (PostgreSQL 15) and NaN: let the server decide.
        return Ok(());
    }
    if n.sign == NUMERIC_PINF || n.sign == NUMERIC_NINF {
        return Err(ValueError::NumericOverflow { precision, scale });
    }
    if n.int_digits as i32 > precision - scale {
        return Err(ValueError::NumericOverflow { precision, scale });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_match_postgres_layout() {
        // 12.50 → digits [12, 5000], weight 0, dscale 2
        let n = parse_numeric("12.50").unwrap();
        assert_eq!(
            (n.digits.clone(), n.weight, n.sign, n.dscale),
            (vec![12, 5000], 0, 0, 2)
        );
        let n = parse_numeric("-123456.7").unwrap();
        assert_eq!(
            (n.digits.clone(), n.weight, n.sign, n.dscale),
            (vec![12, 3456, 7000], 1, 0x4000, 1)
        );
        let n = parse_numeric("0.0001").unwrap();
        assert_eq!((n.digits.clone(), n.weight, n.dscale), (vec![1], -1, 4));
        let n = parse_numeric("0.00").unwrap();
        assert_eq!((n.digits.len(), n.weight, n.sign, n.dscale), (0, 0, 0, 2));
        let n = parse_numeric("1.5e3").unwrap();
        assert_eq!((n.digits.clone(), n.weight, n.dscale), (vec![1500], 0, 0));
        let n = parse_numeric("10000").unwrap();
        assert_eq!((n.digits.clone(), n.weight), (vec![1], 1));
        assert!(parse_numeric("12,5").is_none());
        assert!(parse_numeric(".").is_none());
        assert!(parse_numeric("1e").is_none());
        assert_eq!(parse_numeric("NaN").unwrap().sign, NUMERIC_NAN);
        assert_eq!(parse_numeric("-Infinity").unwrap().sign, NUMERIC_NINF);
        assert_eq!(parse_numeric("inf").unwrap().sign, NUMERIC_PINF);
    }
}
