//! A plan as text (one unified diff of canonical YAML per changed object)
//! or as JSON. Secrets never reach either: URLs are redacted here, and a
//! secret change is only ever described.

use serde_json::{json, Map, Value};
use similar::TextDiff;

use crate::manifest::{Kind, UrlState};
use crate::plan::{Action, Change, ConnState, ObjState, Plan, ProjState, SecretNote};
use crate::secret::{self, MASK};

/// Shown for a secret that changed: never the secret.
pub const SECRET_CHANGED: &str = "(secret changed)";
/// Shown for a secret that could not be read.
pub const SECRET_UNKNOWN: &str = "(unknown: secret file not present)";

fn url_text(url: &UrlState) -> String {
    match url {
        UrlState::Known(s) => secret::redact_url(s.expose()),
        UrlState::PasswordUnknown(base) => match url::Url::parse(base) {
            Ok(mut u) => {
                let _ = u.set_password(Some(MASK));
                u.to_string().replace("%2A%2A%2A%2A%2A", MASK)
            }
            Err(_) => MASK.to_string(),
        },
        UrlState::Unknown => SECRET_UNKNOWN.to_string(),
    }
}

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

/// The redacted, canonical view of a connection (key order fixed).
pub fn connection_view(s: &ConnState) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), Kind::Connection.as_str().into());
    m.insert("name".into(), s.name.clone().into());
    m.insert("description".into(), opt(&s.description));
    m.insert("database_url".into(), url_text(&s.url).into());
    m.insert("managed_by".into(), opt(&s.managed_by));
    m.insert("source".into(), opt(&s.source));
    Value::Object(m)
}

/// A project state as JSON, for the text and JSON diff.
pub fn project_view(s: &ProjState) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), Kind::Project.as_str().into());
    m.insert("name".into(), s.name.clone().into());
    m.insert("description".into(), opt(&s.description));
    m.insert("connection".into(), opt(&s.connection));
    m.insert("config".into(), crate::plan::canonical(&s.config));
    m.insert("managed_by".into(), opt(&s.managed_by));
    m.insert("source".into(), opt(&s.source));
    Value::Object(m)
}

/// A simple kind's object as JSON, for the text and JSON diff: its spec
/// names secret files by path and holds no secret.
pub fn object_view(s: &ObjState) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), s.kind.as_str().into());
    m.insert("name".into(), s.name.clone().into());
    let mut spec = crate::plan::canonical(&s.spec);
    if s.kind == Kind::ApiToken {
        shorten_hash(&mut spec);
    }
    m.insert("spec".into(), spec);
    m.insert("managed_by".into(), opt(&s.managed_by));
    m.insert("source".into(), opt(&s.source));
    Value::Object(m)
}

/// How much of an ApiToken's hash a diff shows: enough to tell a replaced
/// token from the old one, too little to search for (the hash is no secret,
/// but an operator reads the name, the expiry and whether it changed).
const HASH_SHOWN: usize = 12;

fn shorten_hash(spec: &mut Value) {
    if let Some(Value::String(h)) = spec.get_mut("sha256") {
        if h.len() > HASH_SHOWN {
            *h = format!("{}…", &h[..HASH_SHOWN]);
        }
    }
}

fn yaml(v: &Value) -> String {
    // serde_json's map keeps keys sorted; kind/name first reads better, so
    // emit the top level by hand in the view's order.
    let Value::Object(m) = v else {
        return serde_yaml::to_string(v).unwrap_or_default();
    };
    let mut out = String::new();
    for key in [
        "kind",
        "name",
        "description",
        "database_url",
        "connection",
        "config",
        "spec",
        "managed_by",
        "source",
    ] {
        if let (Some(Value::String(url)), "database_url") = (m.get(key), key) {
            // Shown as is: a redacted display value, not YAML to parse back.
            out.push_str(&format!("database_url: {url}\n"));
        } else if let Some(val) = m.get(key) {
            let mut one = serde_yaml::Mapping::new();
            one.insert(key.into(), serde_yaml::to_value(val).unwrap_or_default());
            out.push_str(&serde_yaml::to_string(&one).unwrap_or_default());
        }
    }
    out
}

/// Marks the `database_url` line with what is known of the secret.
fn annotate(text: String, note: SecretNote) -> String {
    let mark = match note {
        SecretNote::None => return text,
        SecretNote::Changed => SECRET_CHANGED,
        SecretNote::Unknown => SECRET_UNKNOWN,
    };
    text.lines()
        .map(|l| {
            if l.starts_with("database_url:") && !l.contains(SECRET_UNKNOWN) {
                format!("{l}  # {mark}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Shown in stored history, instead of a connection's URL, once encryption
/// at rest is on: even redacted, a URL names a host, a database and file
/// paths, which a dump of the management database must not show.
pub const URL_NOT_KEPT: &str = "(encrypted at rest: not kept in history)";

/// A diff as the reconcile history keeps it with encryption at rest on:
/// every `database_url` line's value replaced by [`URL_NOT_KEPT`], its
/// secret note kept. `None` when nothing needed replacing.
pub fn redact_history(diff: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(diff.len());
    for line in diff.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        // A diff line is a marker (-, +, space) then the YAML line.
        let marker_len = usize::from(body.starts_with(['-', '+', ' ']));
        let (marker, rest) = body.split_at(marker_len);
        let Some(value) = rest.strip_prefix("database_url:") else {
            out.push_str(line);
            continue;
        };
        let note = value.find("  # ").map_or("", |i| &value[i..]);
        let redacted = format!("{marker}database_url: {URL_NOT_KEPT}{note}{end}");
        changed |= redacted != line;
        out.push_str(&redacted);
    }
    changed.then_some(out)
}

struct Item {
    kind: Kind,
    name: String,
    action: Action,
    fields: Vec<&'static str>,
    drift: bool,
    adopt: bool,
    secret: SecretNote,
    before: Option<Value>,
    after: Option<Value>,
}

fn items(plan: &Plan) -> Vec<Item> {
    fn item<T>(kind: Kind, c: &Change<T>, view: fn(&T) -> Value) -> Item {
        Item {
            kind,
            name: c.name.clone(),
            action: c.action,
            fields: c.fields.clone(),
            drift: c.drift,
            adopt: c.adopt,
            secret: c.secret,
            before: c.before.as_ref().map(view),
            after: c.after.as_ref().map(view),
        }
    }
    plan.connections
        .iter()
        .map(|c| item(Kind::Connection, c, connection_view))
        .chain(
            plan.projects
                .iter()
                .map(|c| item(Kind::Project, c, project_view)),
        )
        .chain(plan.objects.iter().map(|c| {
            let state = c.after.as_ref().or(c.before.as_ref());
            item(state.map_or(Kind::Provider, |s| s.kind), c, object_view)
        }))
        .collect()
}

/// The one-line count of a plan (`Plan: 1 to create, …`).
pub fn summary(plan: &Plan) -> String {
    let c = plan.counts();
    let mut s = format!(
        "Plan: {} to create, {} to update, {} to delete.",
        c.create, c.update, c.delete
    );
    if c.drift > 0 {
        s.push_str(&format!(" ({} drifted from the manifests)", c.drift));
    }
    s
}

/// The text diff. `color` only when stdout is a terminal.
pub fn text(plan: &Plan, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    for it in items(plan) {
        let (sign, word) = match it.action {
            Action::Create => ("+", "create".to_string()),
            Action::Delete => ("-", "delete".to_string()),
            Action::Update => ("~", format!("update: {}", it.fields.join(", "))),
        };
        let mut tags = String::new();
        if it.drift {
            tags.push_str(" [drift: changed outside cpi]");
        }
        if it.adopt {
            tags.push_str(" [adopt]");
        }
        if it.secret == SecretNote::Changed {
            tags.push_str(&format!(" {SECRET_CHANGED}"));
        }
        let head = format!("{sign} {} {} ({word}){tags}", it.kind, it.name);
        out.push_str(&paint("1", &head));
        out.push('\n');
        let before = it.before.as_ref().map(yaml).unwrap_or_default();
        let after = it
            .after
            .as_ref()
            .map(|v| annotate(yaml(v), it.secret))
            .unwrap_or_default();
        let diff = TextDiff::from_lines(&before, &after);
        let udiff = diff
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{}/{} (observed)", it.kind, it.name),
                &format!("{}/{} (desired)", it.kind, it.name),
            )
            .to_string();
        for line in udiff.lines() {
            let code = if line.starts_with("+++") || line.starts_with("---") {
                "1"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with('-') {
                "31"
            } else if line.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                out.push_str(line);
            } else {
                out.push_str(&paint(code, line));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    for c in &plan.conflicts {
        out.push_str(&paint("31", &format!("! conflict: {c}")));
        out.push('\n');
    }
    out.push_str(&summary(plan));
    out.push('\n');
    out
}

/// A plan as JSON (`--output json`), secrets redacted.
pub fn json(plan: &Plan) -> Value {
    let changes: Vec<Value> = items(plan)
        .into_iter()
        .map(|it| {
            json!({
                "kind": it.kind,
                "name": it.name,
                "action": it.action,
                "fields": it.fields,
                "drift": it.drift,
                "adopt": it.adopt,
                "secret": it.secret,
                "before": it.before,
                "after": it.after,
            })
        })
        .collect();
    let c = plan.counts();
    json!({
        "changes": changes,
        "conflicts": plan.conflicts.iter().map(|c| json!({"kind": c.kind, "name": c.name, "owner": c.owner, "message": c.to_string()})).collect::<Vec<_>>(),
        "summary": {"create": c.create, "update": c.update, "delete": c.delete, "drift": c.drift, "unchanged": plan.unchanged},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Desired;
    use crate::plan::{observed_from_manifests, plan};
    use crate::secret::Secret;

    fn one(url: UrlState) -> Desired {
        Desired::default().with_connection("c", Some("d"), url, "c.yaml")
    }

    #[test]
    fn secret_change_is_described_never_printed() {
        let old = one(UrlState::Known(Secret::new(
            "postgresql://u:old-pass@h/db?sslpassword=k1",
        )));
        let new = one(UrlState::Known(Secret::new(
            "postgresql://u:new-pass@h/db?sslpassword=k1",
        )));
        let p = plan(&new, &observed_from_manifests(&old, "cpi"), "cpi", false);
        let t = text(&p, false);
        assert!(
            !t.contains("old-pass") && !t.contains("new-pass") && !t.contains("k1"),
            "{t}"
        );
        assert!(
            t.contains("-database_url: postgresql://u:*****@h/db?sslpassword=*****\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "+database_url: postgresql://u:*****@h/db?sslpassword=*****  # (secret changed)\n"
            ),
            "{t}"
        );
        assert!(t.ends_with("Plan: 0 to create, 1 to update, 0 to delete.\n"));
        let j = json(&p).to_string();
        assert!(!j.contains("old-pass") && !j.contains("new-pass"));
        assert!(j.contains("\"secret\":\"changed\""));
    }

    #[test]
    fn create_shows_unknown_secret() {
        let d = one(UrlState::PasswordUnknown("postgresql://u@h/db".into()));
        let p = plan(&d, &Default::default(), "cpi", false);
        let t = text(&p, false);
        assert!(t.contains("+ Connection c (create)"), "{t}");
        assert!(
            t.contains(
                "+database_url: postgresql://u:*****@h/db  # (unknown: secret file not present)"
            ),
            "{t}"
        );
        let d = one(UrlState::Unknown);
        let t = text(&plan(&d, &Default::default(), "cpi", false), false);
        assert!(
            t.contains("+database_url: (unknown: secret file not present)\n"),
            "{t}"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let d = one(UrlState::Unknown);
        let p = plan(&d, &Default::default(), "cpi", false);
        assert!(!text(&p, false).contains('\x1b'));
        assert!(text(&p, true).contains("\x1b[32m"));
    }
    #[test]
    fn history_keeps_no_url_once_encrypted_and_keeps_the_note() {
        let diff = "--- Connection/a\n+++ Connection/a\n-database_url: postgresql://u:*****@db.internal/sales?sslrootcert=/etc/ca.pem\n+database_url: postgresql://u:*****@db2.internal/sales  # (secret changed)\n name: a\n";
        let r = redact_history(diff).unwrap();
        assert!(!r.contains("internal") && !r.contains("ca.pem"), "{r}");
        assert!(
            r.contains(&format!("-database_url: {URL_NOT_KEPT}\n")),
            "{r}"
        );
        assert!(
            r.contains(&format!(
                "+database_url: {URL_NOT_KEPT}  # (secret changed)\n"
            )),
            "{r}"
        );
        assert!(r.starts_with("--- Connection/a\n+++ Connection/a\n") && r.ends_with(" name: a\n"));
        assert_eq!(redact_history(&r), None, "already redacted");
        assert_eq!(redact_history("+name: a\n"), None);
    }
}
