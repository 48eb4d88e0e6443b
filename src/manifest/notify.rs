//! The notification kinds' documents (Provider, Alert, Receiver) and their
//! rules, kept apart from Connection and Project so each kind's model and
//! checks live in one place. The rules are pure: a spec in, its problems
//! out, each naming the field it is about.

use serde::{Deserialize, Serialize};

use crate::rules;

/// Where a Provider sends messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// A JSON POST, signed with `secret_file` when one is given.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// Mail through an SMTP server (STARTTLS when offered).
    Email,
}

/// A Provider: how messages reach people. Secrets are named by file, never written here.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// `webhook`, `slack` or `email`.
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// A secret file holding the webhook or Slack URL (webhook, slack).
    #[serde(default)]
    pub url_file: Option<String>,
    /// A secret file holding the HMAC key that signs webhook bodies (webhook).
    #[serde(default)]
    pub secret_file: Option<String>,
    /// The SMTP server (email).
    #[serde(default)]
    pub smtp: Option<SmtpSpec>,
}

/// An SMTP server and the addresses of a mail Provider.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpSpec {
    /// Host name of the server.
    pub host: String,
    /// Port (default 587).
    #[serde(default)]
    pub port: Option<u16>,
    /// The sender address.
    pub from: String,
    /// The recipients (at least one).
    pub to: Vec<String>,
    /// A secret file holding the SMTP user name.
    #[serde(default)]
    pub username_file: Option<String>,
    /// A secret file holding the SMTP password. With credentials the
    /// connection must be upgraded with STARTTLS: a password is never sent
    /// in the clear.
    #[serde(default)]
    pub password_file: Option<String>,
    /// A PEM file of CA certificates trusted for STARTTLS besides the
    /// public roots (a private mail relay's CA).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// An Alert: which events go to which Provider, and how often.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// The name of a Provider declared in the manifests.
    pub provider: String,
    /// Project names or globs (`sales-*`); at least one.
    pub projects: Vec<String>,
    /// Event kinds (`import.failed`, `check.failed`, …); at least one.
    pub events: Vec<String>,
    /// `info`, `warn` or `error`: events below it are not sent.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Events of one project within this window go in one message (`5m`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub group_window: Option<GroupWindow>,
    /// At most this many messages an hour; the last one says how many were held back.
    #[serde(default)]
    pub max_per_hour: Option<u32>,
    /// Whether messages may quote row values (default false).
    #[serde(default)]
    pub include_values: bool,
}

/// A group window as written (`5m`) and as parsed, parsed once when the
/// spec is read: stored back as written, so the spec's digest does not
/// depend on how humantime would print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWindow {
    text: String,
    duration: std::time::Duration,
}

impl GroupWindow {
    /// The window.
    pub fn duration(&self) -> std::time::Duration {
        self.duration
    }
}

impl std::str::FromStr for GroupWindow {
    type Err = humantime::DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(GroupWindow {
            text: s.to_string(),
            duration: humantime::parse_duration(s)?,
        })
    }
}

impl Serialize for GroupWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GroupWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("group_window {text:?}: {e}")))
    }
}

/// Where a Receiver's pushes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverType {
    /// Signed with `X-Cpi-Signature-256`.
    Webhook,
    /// A GitHub push hook, signed with `X-Hub-Signature-256`.
    Github,
}

/// What a good push to a Receiver starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Reconcile the manifests now.
    Reconcile,
    /// Rescan the projects' inboxes now.
    Rescan,
}

/// A Receiver: `POST /hooks/{name}` that, signed, starts a reconcile or a rescan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSpec {
    /// `webhook` or `github`.
    #[serde(rename = "type")]
    pub kind: ReceiverType,
    /// A secret file holding the HMAC key pushes are signed with.
    pub secret_file: String,
    /// Project names or globs whose inboxes a rescan covers.
    #[serde(default)]
    pub projects: Vec<String>,
    /// `reconcile` and/or `rescan`; at least one.
    pub triggers: Vec<Trigger>,
}

/// Every event kind an Alert may name, as `cpi_events.kind` spells them
/// (the store's `EventKind` is checked against this list by a test: the
/// store imports the manifest model, not the other way round).
pub const EVENT_KINDS: [&str; 14] = [
    "import.failed",
    "import.rejected_rows",
    "check.failed",
    "check.warned",
    "freshness.warn",
    "freshness.error",
    "freshness.recovered",
    "reconcile.failed",
    "drift.corrected",
    "job.retried",
    "job.replayed",
    "job.cancelled",
    "project.paused",
    "project.resumed",
];

/// Longest group window and highest `max_per_hour` accepted: beyond them
/// an alert would hold messages back for longer than anyone would wait.
pub const MAX_GROUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// See [`MAX_GROUP_WINDOW`].
pub const MAX_PER_HOUR: u32 = 3600;

/// A problem of a spec: the field (dotted path under `spec`) and what is wrong.
pub type Problem = (String, String);

fn problem(field: &str, message: impl Into<String>) -> Problem {
    (field.to_string(), message.into())
}

fn need_file(out: &mut Vec<Problem>, field: &str, v: &Option<String>, why: &str) {
    match v {
        None => out.push(problem(field, format!("{field} is required {why}"))),
        Some(p) if p.trim().is_empty() => out.push(problem(field, format!("{field} is empty"))),
        Some(_) => {}
    }
}

fn refuse(out: &mut Vec<Problem>, field: &str, present: bool, why: &str) {
    if present {
        out.push(problem(field, format!("{field} is not used {why}")));
    }
}

/// The problems of a Provider spec.
pub fn check_provider(spec: &ProviderSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    match spec.kind {
        ProviderType::Webhook | ProviderType::Slack => {
            need_file(
                &mut out,
                "url_file",
                &spec.url_file,
                "for webhook and slack providers",
            );
            refuse(
                &mut out,
                "smtp",
                spec.smtp.is_some(),
                "by webhook and slack providers",
            );
            if spec.kind == ProviderType::Slack {
                refuse(
                    &mut out,
                    "secret_file",
                    spec.secret_file.is_some(),
                    "by slack providers (Slack does not check signatures)",
                );
            }
        }
        ProviderType::Email => {
            refuse(
                &mut out,
                "url_file",
                spec.url_file.is_some(),
                "by email providers",
            );
            refuse(
                &mut out,
                "secret_file",
                spec.secret_file.is_some(),
                "by email providers",
            );
            match &spec.smtp {
                None => out.push(problem("smtp", "smtp is required for email providers")),
                Some(s) => check_smtp(&mut out, s),
            }
        }
    }
    out
}

fn check_smtp(out: &mut Vec<Problem>, s: &SmtpSpec) {
    if s.host.trim().is_empty() {
        out.push(problem("smtp.host", "smtp.host is empty"));
    }
    if s.port == Some(0) {
        out.push(problem("smtp.port", "smtp.port must be 1-65535"));
    }
    if !plausible_address(&s.from) {
        out.push(problem(
            "smtp.from",
            format!("smtp.from {:?} is not a mail address", s.from),
        ));
    }
    if s.to.is_empty() {
        out.push(problem("smtp.to", "smtp.to needs at least one address"));
    }
    for a in s.to.iter().filter(|a| !plausible_address(a)) {
        out.push(problem(
            "smtp.to",
            format!("smtp.to {a:?} is not a mail address"),
        ));
    }
    if s.ca_file.as_ref().is_some_and(|f| f.trim().is_empty()) {
        out.push(problem("smtp.ca_file", "smtp.ca_file is empty"));
    }
    if s.username_file.is_some() != s.password_file.is_some() {
        out.push(problem(
            "smtp.password_file",
            "smtp.username_file and smtp.password_file go together",
        ));
    }
}

// The server has the last word on addresses; this only catches typos.
fn plausible_address(a: &str) -> bool {
    let a = a
        .rsplit('<')
        .next()
        .unwrap_or(a)
        .trim_end_matches('>')
        .trim();
    matches!(a.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !a.contains(char::is_whitespace))
}

/// The problems of an Alert spec (its provider reference is checked
/// against the whole folder by the loader). `known_event` tells an event
/// kind's name: the kinds live with the events store, which imports the
/// manifest model, so they come in from above rather than by import.
pub fn check_alert(spec: &AlertSpec, known_event: impl Fn(&str) -> bool) -> Vec<Problem> {
    let mut out = Vec::new();
    if spec.provider.trim().is_empty() {
        out.push(problem("provider", "provider is empty"));
    }
    check_projects(&mut out, &spec.projects, true);
    if spec.events.is_empty() {
        out.push(problem("events", "events needs at least one event kind"));
    }
    for e in spec.events.iter().filter(|e| !known_event(e)) {
        out.push(problem("events", format!("unknown event kind {e:?}")));
    }
    if let Some(s) = &spec.min_severity {
        if !matches!(s.as_str(), "info" | "warn" | "error") {
            out.push(problem(
                "min_severity",
                format!("min_severity {s:?} is not info, warn or error"),
            ));
        }
    }
    if let Some(w) = spec
        .group_window
        .as_ref()
        .filter(|w| w.duration() > MAX_GROUP_WINDOW)
    {
        out.push(problem(
            "group_window",
            format!("group_window {:?} is over 1h", w.text),
        ));
    }
    match spec.max_per_hour {
        Some(0) => out.push(problem("max_per_hour", "max_per_hour must be at least 1")),
        Some(n) if n > MAX_PER_HOUR => out.push(problem(
            "max_per_hour",
            format!("max_per_hour is at most {MAX_PER_HOUR}"),
        )),
        _ => {}
    }
    out
}

/// The problems of a Receiver spec.
pub fn check_receiver(spec: &ReceiverSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    if spec.secret_file.trim().is_empty() {
        out.push(problem("secret_file", "secret_file is empty"));
    }
    if spec.triggers.is_empty() {
        out.push(problem(
            "triggers",
            "triggers needs reconcile and/or rescan",
        ));
    }
    let rescan = spec.triggers.contains(&Trigger::Rescan);
    check_projects(&mut out, &spec.projects, rescan);
    if !rescan && !spec.projects.is_empty() {
        out.push(problem(
            "projects",
            "projects is only used by the rescan trigger",
        ));
    }
    out
}

fn check_projects(out: &mut Vec<Problem>, projects: &[String], required: bool) {
    if required && projects.is_empty() {
        out.push(problem(
            "projects",
            "projects needs at least one name or glob",
        ));
    }
    for p in projects {
        let is_glob = p.contains(['*', '?', '[']);
        if is_glob {
            if let Err(e) = glob::Pattern::new(p) {
                out.push(problem("projects", format!("projects glob {p:?}: {e}")));
            }
        } else if !rules::valid_name(p) {
            out.push(problem(
                "projects",
                format!("projects {p:?} is not a project name or glob"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap()
    }

    fn known(k: &str) -> bool {
        ["import.failed", "check.failed"].contains(&k)
    }

    fn fields(p: Vec<Problem>) -> Vec<String> {
        p.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn webhook_provider_needs_its_url_file() {
        let p: ProviderSpec = yaml("type: webhook\nsecret_file: hmac\n");
        assert_eq!(fields(check_provider(&p)), ["url_file"]);
        let p: ProviderSpec = yaml("type: webhook\nurl_file: u\nsecret_file: hmac\n");
        assert!(check_provider(&p).is_empty());
    }

    #[test]
    fn a_url_in_the_manifest_is_refused() {
        // Secrets live in files: there is no field for the URL itself.
        assert!(serde_yaml::from_str::<ProviderSpec>(
            "type: slack\nurl: https://hooks.slack.com/x\n"
        )
        .is_err());
    }

    #[test]
    fn email_provider_checks_its_server_and_addresses() {
        let p: ProviderSpec = yaml(
            "type: email\nsmtp: {host: '', port: 0, from: nobody, to: [], username_file: u}\n",
        );
        assert_eq!(
            fields(check_provider(&p)),
            [
                "smtp.host",
                "smtp.port",
                "smtp.from",
                "smtp.to",
                "smtp.password_file"
            ]
        );
        let p: ProviderSpec = yaml(
            "type: email\nsmtp: {host: mx.example.com, from: 'cpi <cpi@example.com>', to: [ops@example.com]}\n",
        );
        assert!(check_provider(&p).is_empty());
    }

    #[test]
    fn alert_rules() {
        let a: AlertSpec = yaml(
            "provider: ops\nprojects: ['sales-*', 'bad name', '[']\nevents: [import.failed, nope]\nmin_severity: loud\ngroup_window: 2h\nmax_per_hour: 0\n",
        );
        assert_eq!(
            fields(check_alert(&a, known)),
            [
                "projects",
                "projects",
                "events",
                "min_severity",
                "group_window",
                "max_per_hour"
            ]
        );
        let a: AlertSpec = yaml(
            "provider: ops\nprojects: ['sales-*', hr]\nevents: [import.failed, check.failed]\nmin_severity: warn\ngroup_window: 5m\nmax_per_hour: 10\n",
        );
        assert!(check_alert(&a, known).is_empty());
        assert!(!a.include_values, "values are held back unless asked for");
        assert_eq!(
            a.group_window.as_ref().map(GroupWindow::duration),
            Some(std::time::Duration::from_secs(300))
        );
        // Stored as written, whatever humantime would print.
        assert_eq!(
            serde_json::to_value(&a).unwrap()["group_window"],
            serde_json::json!("5m")
        );
        let bad = serde_yaml::from_str::<AlertSpec>(
            "provider: ops\nprojects: [hr]\nevents: [import.failed]\ngroup_window: soon\n",
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("group_window \"soon\""), "{bad}");
    }

    #[test]
    fn receiver_rules() {
        let r: ReceiverSpec = yaml("type: github\nsecret_file: s\ntriggers: []\n");
        assert_eq!(fields(check_receiver(&r)), ["triggers"]);
        let r: ReceiverSpec = yaml("type: github\nsecret_file: s\ntriggers: [rescan]\n");
        assert_eq!(fields(check_receiver(&r)), ["projects"]);
        let r: ReceiverSpec =
            yaml("type: webhook\nsecret_file: s\nprojects: [a]\ntriggers: [reconcile, rescan]\n");
        assert!(check_receiver(&r).is_empty());
        assert!(serde_yaml::from_str::<ReceiverSpec>(
            "type: gitlab\nsecret_file: s\ntriggers: [reconcile]\n"
        )
        .is_err());
    }
}
