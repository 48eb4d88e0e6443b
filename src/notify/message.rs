//! What a message says, as a pure function of its events: one line that
//! names what happened where, then per event the project, table, file,
//! the first error line, the counts and the job's link in the console;
//! the JSON body of a webhook holds the same. No secret (texts are
//! scrubbed of every secret the process knows) and no row value unless
//! the Alert opts in (`include_values`): quoted text in an error line, where
//! PostgreSQL and cpi quote values, is masked.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::store::events::Event;

/// An event with what the message tells beside it.
#[derive(Debug, Clone)]
pub struct Told {
    /// The event.
    pub event: Event,
    /// The first line of its job's or run's error, if any.
    pub error: Option<String>,
}

/// A message ready for any provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The first event's id (`X-Cpi-Event-Id`): stable across retries.
    pub event_id: Uuid,
    /// One line (a mail's subject).
    pub subject: String,
    /// The whole text (Slack, mail body).
    pub text: String,
    /// The webhook's JSON body.
    pub body: Value,
}

/// Shown instead of a quoted value when values are held back.
pub const VALUE_HIDDEN: &str = "\"(value hidden)\"";

/// Longest error line quoted.
const MAX_ERROR_LINE: usize = 300;

/// `line` with every double- or single-quoted part replaced by
/// [`VALUE_HIDDEN`].
pub fn mask_values(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            out.push_str(VALUE_HIDDEN);
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the message says the error was.
fn error_line(t: &Told, include_values: bool) -> Option<String> {
    let line = t.error.as_deref()?.lines().next()?.trim();
    let line: String = line.chars().take(MAX_ERROR_LINE).collect();
    let line = if include_values {
        line
    } else {
        mask_values(&line)
    };
    Some(crate::secret::scrub_known(&line))
}

fn link(console: Option<&str>, e: &Event) -> Option<String> {
    let base = console?.trim_end_matches('/');
    e.job_id.map(|id| format!("{base}/#/jobs/{id}"))
}

/// The message telling `events` (oldest first, at least one) for `alert`,
/// with `suppressed` more held back by `max_per_hour`.
pub fn build(
    alert: &str,
    events: &[Told],
    suppressed: usize,
    include_values: bool,
    console: Option<&str>,
) -> Outgoing {
    let first = &events[0].event;
    let place = first
        .project
        .as_deref()
        .map_or_else(|| "cpi".to_string(), |p| format!("project {p}"));
    let subject = if events.len() == 1 {
        let what = first
            .payload
            .get("file")
            .and_then(Value::as_str)
            .map(|f| format!(": {f}"))
            .unwrap_or_default();
        format!("[cpi] {} in {place}{what}", first.kind)
    } else {
        format!("[cpi] {} events in {place}", events.len())
    };
    let mut text = format!("{subject}\n");
    let mut items = Vec::new();
    for t in events {
        let e = &t.event;
        let error = error_line(t, include_values);
        let link = link(console, e);
        text.push_str(&format!("\n{} ({})", e.kind, e.severity));
        if let Some(p) = &e.project {
            text.push_str(&format!(" project {p}"));
        }
        if let Some(tb) = &e.target_table {
            text.push_str(&format!(" table {tb}"));
        }
        if let Some(f) = e.payload.get("file").and_then(Value::as_str) {
            text.push_str(&format!(" file {f}"));
        }
        text.push('\n');
        if let Some(err) = &error {
            text.push_str(&format!("  error: {err}\n"));
        }
        let counts: Vec<String> = e
            .payload
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_number())
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !counts.is_empty() {
            text.push_str(&format!("  {}\n", counts.join(", ")));
        }
        if let Some(l) = &link {
            text.push_str(&format!("  job: {l}\n"));
        }
        text.push_str(&format!("  event {}\n", e.id));
        items.push(json!({
            "id": e.id,
            "seq": e.seq,
            "at": e.at,
            "kind": e.kind,
            "severity": e.severity,
            "project": e.project,
            "table": e.target_table,
            "file": e.payload.get("file"),
            "job_id": e.job_id,
            "run_id": e.run_id,
            "link": link,
            "error": error,
            "payload": e.payload,
        }));
    }
    if suppressed > 0 {
        text.push_str(&format!(
            "\n{suppressed} more suppressed (the alert's max_per_hour is reached)\n"
        ));
    }
    let text = crate::secret::scrub_known(&text);
    let body = json!({
        "id": first.id,
        "alert": alert,
        "kind": first.kind,
        "severity": first.severity,
        "project": first.project,
        "text": text,
        "events": items,
        "suppressed": suppressed,
    });
    Outgoing {
        event_id: first.id,
        subject,
        text,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(kind: &str, file: &str, error: Option<&str>) -> Told {
        Told {
            event: Event {
                id: Uuid::new_v4(),
                seq: 1,
                at: chrono::Utc::now(),
                kind: kind.into(),
                severity: "error".into(),
                project: Some("sales".into()),
                target_table: Some("orders".into()),
                job_id: Some(Uuid::nil()),
                run_id: None,
                payload: json!({"file": file, "rows_read": 3, "rows_rejected": 2}),
            },
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn names_project_table_file_error_counts_and_link() {
        let t = told(
            "import.failed",
            "o.csv",
            Some("row 2: invalid input syntax for type integer: \"secret-row-value\"\nmore"),
        );
        let m = build(
            "ops",
            std::slice::from_ref(&t),
            0,
            false,
            Some("https://cpi.example.com/"),
        );
        assert_eq!(m.subject, "[cpi] import.failed in project sales: o.csv");
        for needle in [
            "table orders",
            "file o.csv",
            "error: row 2: invalid input syntax for type integer: \"(value hidden)\"",
            "rows_read 3, rows_rejected 2",
            "job: https://cpi.example.com/#/jobs/00000000-0000-0000-0000-000000000000",
        ] {
            assert!(m.text.contains(needle), "{needle} in {}", m.text);
        }
        assert!(!m.text.contains("more") && !m.body.to_string().contains("secret-row-value"));
        assert_eq!(m.body["events"][0]["file"], "o.csv");
        assert_eq!(m.event_id, t.event.id);
        let m = build("ops", &[t], 0, true, None);
        assert!(
            m.text.contains("secret-row-value"),
            "include_values opts in"
        );
    }

    #[test]
    fn a_group_and_the_suppressed_count() {
        let m = build(
            "ops",
            &[
                told("import.failed", "a", None),
                told("import.failed", "b", None),
            ],
            7,
            false,
            None,
        );
        assert_eq!(m.subject, "[cpi] 2 events in project sales");
        assert!(m.text.contains("7 more suppressed"), "{}", m.text);
        assert_eq!(m.body["suppressed"], 7);
        assert_eq!(m.body["events"].as_array().unwrap().len(), 2);
    }
}
