//! Notifications: which events an Alert takes and how they are grouped
//! and rate-limited into messages (`matching`, pure). Delivery, the
//! providers and the receivers are to come on top of it.

pub mod matching;
