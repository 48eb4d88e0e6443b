//! Manifests the daemon and reconcile tests write: one shape each for a
//! Connection, a Project and an Alert, built on [`super::fs::manifest`].

use std::path::Path;

use super::fs::manifest;
use super::TestDb;

/// A Connection manifest with a description, a URL without password and
/// the file the password is read from.
pub fn connection(name: &str, description: &str, url: &str, password_file: &str) -> String {
    manifest(
        "Connection",
        name,
        &format!(
            "description: {description}\ndatabase_url: {url}\npassword_file: {password_file}\n"
        ),
    )
}

/// A Connection `name` to the test database on the local server, its
/// password in `NAME.pass` next to the manifests.
pub fn connection_to(name: &str, db: &TestDb, description: &str) -> String {
    connection(
        name,
        description,
        &format!("postgresql://postgres@127.0.0.1:5432/{}", db.name),
        &format!("{name}.pass"),
    )
}

/// A Project on `connection` with its inbox and `defaults` (YAML flow
/// style, `{}` for none).
pub fn project(name: &str, connection: &str, inbox: &Path, defaults: &str) -> String {
    manifest(
        "Project",
        name,
        &format!(
            "connection: {connection}\nconfig:\n  inbox: {}\n  defaults: {defaults}\n",
            inbox.display()
        ),
    )
}

/// An Alert sending `events` (comma-separated) of `projects` (a YAML
/// list) through `provider`.
pub fn alert(name: &str, provider: &str, projects: &str, events: &str) -> String {
    manifest(
        "Alert",
        name,
        &format!("provider: {provider}\nprojects: {projects}\nevents: [{events}]\n"),
    )
}
