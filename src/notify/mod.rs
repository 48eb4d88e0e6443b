//! Notifications: which events an Alert takes and how they are grouped
//! and rate-limited into messages (`matching`), what a message says
//! (`message`), body signatures (`sign`): all pure. `send` is the edge
//! that reaches the providers (webhook, Slack, mail). The daemon's
//! `notifier` runs delivery; the API serves the receivers.

pub mod matching;
pub mod message;
pub mod send;
pub mod sign;

use std::time::Duration;

/// Attempts at most per delivery; after the last, it is given up
/// (`failed`). With [`retry_delay`], ten attempts span about 14 minutes.
pub const MAX_ATTEMPTS: u32 = 10;

/// When a delivery whose `attempts`-th attempt just failed is tried
/// again: 2 s, 4 s, … capped at 5 minutes; `None` once [`MAX_ATTEMPTS`]
/// are spent or when retrying cannot help (`retryable` false).
pub fn retry_delay(attempts: u32, retryable: bool) -> Option<Duration> {
    (retryable && attempts < MAX_ATTEMPTS)
        .then(|| crate::retry::backoff(attempts, Duration::from_secs(1), Duration::from_secs(300)))
}

/// How long the last message an hour allows waits for the events still
/// coming, so that it can count them: sent once none came for this long.
pub const LAST_MESSAGE_QUIET: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_give_up() {
        assert_eq!(retry_delay(1, true), Some(Duration::from_secs(2)));
        assert_eq!(retry_delay(2, true), Some(Duration::from_secs(4)));
        assert_eq!(retry_delay(9, true), Some(Duration::from_secs(300)));
        assert_eq!(retry_delay(10, true), None);
        assert_eq!(retry_delay(1, false), None);
        let total: u64 = (1..MAX_ATTEMPTS)
            .filter_map(|a| retry_delay(a, true))
            .map(|d| d.as_secs())
            .sum();
        assert!((700..900).contains(&total), "{total}");
    }
}
