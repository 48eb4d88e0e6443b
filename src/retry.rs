//! Backoff between attempts, one formula for every retry loop of cpi
//! (import jobs, the reconcile loop): doubling from a base, capped.

use std::time::Duration;

/// The delay before retry number `attempt` (0 for the first retry):
/// `base × 2^attempt`, never more than `max`, never overflowing.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    // 2^31 × any base already exceeds every sensible cap; saturate instead
    // of overflowing for huge attempt counts.
    let factor = 2u32.saturating_pow(attempt.min(31));
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let s = Duration::from_secs;
        let cases: &[(u32, u64, u64, u64)] = &[
            // (attempt, base, max, expected)
            (0, 5, 300, 5),
            (1, 5, 300, 10),
            (2, 5, 300, 20),
            (5, 5, 300, 160),
            (6, 5, 300, 300),
            (7, 5, 300, 300),
            (1, 1, 60, 2),
            (6, 1, 60, 60),
            (40, 1, 60, 60),
            (u32::MAX, 1, 60, 60),
            (u32::MAX, u64::MAX / 2, u64::MAX, u64::MAX),
            (3, 0, 60, 0),
            (0, 10, 5, 5),
        ];
        for &(attempt, base, max, want) in cases {
            assert_eq!(
                backoff(attempt, s(base), s(max)),
                s(want),
                "attempt {attempt}, base {base}, max {max}"
            );
        }
    }
}
