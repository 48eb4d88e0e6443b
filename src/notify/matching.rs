//! Events to messages, as pure functions: whether an Alert takes an event
//! (kind, project names or globs, minimum severity), and how a run of
//! taken events becomes messages (one per project and group window) under
//! `max_per_hour`, the last message sent saying how many were held back.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::manifest::notify::AlertSpec;

/// What the matching needs of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Its kind as written in `cpi_events` (`import.failed`, ...).
    pub kind: &'a str,
    /// `info`, `warn` or `error`.
    pub severity: &'a str,
    /// Its project; `None` for an event about the whole installation.
    pub project: Option<&'a str>,
    /// When it was written.
    pub at: DateTime<Utc>,
}

fn rank(severity: &str) -> u8 {
    match severity {
        "error" => 2,
        "warn" => 1,
        // An unknown severity (a newer cpi's) is not dropped by a minimum.
        "info" => 0,
        _ => 2,
    }
}

fn project_matches(patterns: &[String], project: &str) -> bool {
    patterns.iter().any(|p| {
        if p.contains(['*', '?', '[']) {
            glob::Pattern::new(p).is_ok_and(|g| g.matches(project))
        } else {
            p == project
        }
    })
}

/// Whether `alert` takes `event`. An event without a project (a
/// reconcile failure) concerns every project, so every alert listing its
/// kind takes it.
pub fn takes(alert: &AlertSpec, event: &EventRef<'_>) -> bool {
    alert.events.iter().any(|k| k == event.kind)
        && alert
            .min_severity
            .as_deref()
            .is_none_or(|min| rank(event.severity) >= rank(min))
        && event
            .project
            .is_none_or(|p| project_matches(&alert.projects, p))
}

/// One message to send: the indices of its events (into the run given to
/// [`messages`]) and, on the last message the hour allows, how many
/// messages were held back after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Indices of the events it tells, in order.
    pub events: Vec<usize>,
    /// Messages not sent because of `max_per_hour` (0 on all but the last).
    pub suppressed: usize,
}

/// The messages for a run of events an alert took, oldest first: events of
/// one project within `window` of the first of their group go in one
/// message (no window: one message each); with `max_per_hour`, and
/// `sent_this_hour` messages already sent, only as many as the hour still
/// allows are returned, the last carrying the count of the rest.
pub fn messages(
    events: &[EventRef<'_>],
    window: Option<Duration>,
    max_per_hour: Option<u32>,
    sent_this_hour: u32,
) -> Vec<Message> {
    let window = window.and_then(|w| chrono::Duration::from_std(w).ok());
    let mut groups: Vec<(Option<&str>, DateTime<Utc>, Vec<usize>)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let open = window.and_then(|w| {
            groups
                .iter_mut()
                .rev()
                .find(|(p, start, _)| *p == e.project && e.at - *start <= w)
        });
        match open {
            Some((_, _, members)) => members.push(i),
            None => groups.push((e.project, e.at, vec![i])),
        }
    }
    let mut out: Vec<Message> = groups
        .into_iter()
        .map(|(_, _, events)| Message {
            events,
            suppressed: 0,
        })
        .collect();
    if let Some(max) = max_per_hour {
        let room = max.saturating_sub(sent_this_hour) as usize;
        if out.len() > room {
            let held = out.len() - room;
            out.truncate(room);
            if let Some(last) = out.last_mut() {
                last.suppressed = held;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(yaml: &str) -> AlertSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn ev<'a>(
        kind: &'a str,
        severity: &'a str,
        project: Option<&'a str>,
        secs: i64,
    ) -> EventRef<'a> {
        EventRef {
            kind,
            severity,
            project,
            at: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
        }
    }

    #[test]
    fn takes_by_kind_project_glob_and_severity() {
        let a = alert("provider: p\nprojects: ['sales-*', hr]\nevents: [import.failed, check.warned]\nmin_severity: error\n");
        assert!(takes(
            &a,
            &ev("import.failed", "error", Some("sales-eu"), 0)
        ));
        assert!(takes(&a, &ev("import.failed", "error", Some("hr"), 0)));
        assert!(!takes(
            &a,
            &ev("import.failed", "error", Some("finance"), 0)
        ));
        assert!(!takes(&a, &ev("check.failed", "error", Some("hr"), 0)));
        assert!(
            !takes(&a, &ev("check.warned", "warn", Some("hr"), 0)),
            "below min_severity"
        );
        let b = alert("provider: p\nprojects: [x]\nevents: [reconcile.failed]\n");
        assert!(takes(&b, &ev("reconcile.failed", "error", None, 0)));
        assert!(!takes(&b, &ev("reconcile.failed", "error", Some("y"), 0)));
    }

    #[test]
    fn groups_one_project_within_the_window() {
        let es = [
            ev("import.failed", "error", Some("a"), 0),
            ev("import.failed", "error", Some("b"), 10),
            ev("import.failed", "error", Some("a"), 200),
            ev("import.failed", "error", Some("a"), 400),
        ];
        let m = messages(&es, Some(Duration::from_secs(300)), None, 0);
        let got: Vec<_> = m.iter().map(|m| m.events.clone()).collect();
        assert_eq!(got, [vec![0, 2], vec![1], vec![3]]);
        assert_eq!(messages(&es, None, None, 0).len(), 4);
    }

    #[test]
    fn max_per_hour_sends_at_most_n_and_the_last_counts_the_rest() {
        let es: Vec<_> = (0..50)
            .map(|i| ev("import.failed", "error", Some("a"), i))
            .collect();
        let m = messages(&es, None, Some(10), 0);
        assert_eq!(m.len(), 10);
        assert_eq!(m[9].suppressed, 40);
        assert!(m[..9].iter().all(|m| m.suppressed == 0));
        let m = messages(&es, None, Some(10), 7);
        assert_eq!((m.len(), m[2].suppressed), (3, 47));
        assert!(messages(&es, None, Some(10), 10).is_empty());
    }
}
