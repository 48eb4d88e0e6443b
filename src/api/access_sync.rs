//! The API's access rules follow the management database: the ApiToken and
//! RoleBinding rows of `cpi_objects`, which `cpi apply` and the daemon's
//! reconcile write. Every process that serves the API (`cpi serve`, each
//! `cpi run --listen` replica) loads them at start and polls a digest of
//! them every [`POLL_INTERVAL`], reloading when it changes: a token removed
//! from git and applied stops working everywhere within that interval.
//!
//! A daemon also lays what its own manifests declare over the rows it owns
//! ([`AccessSync::declare`]), as soon as they load and before the apply, so
//! that a token revoked in git stops working on that daemon even when the
//! apply is refused; the rows of other owners stay as stored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::access::token::KnownToken;
use crate::access::Binding;
use crate::manifest::access::{binding_from_row, token_from_row};
use crate::store::simple::AccessRow;
use crate::store::StoreError;

use super::state::AccessCell;

/// How often the digest of the access rows is polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What one daemon's manifests declare, by owner.
#[derive(Debug, Clone)]
struct Declared {
    owner: String,
    tokens: Vec<KnownToken>,
    bindings: Vec<Binding>,
}

#[derive(Debug, Default)]
struct Known {
    fingerprint: Option<String>,
    rows: Vec<AccessRow>,
    declared: Option<Declared>,
}

/// Keeps an [`AccessCell`] equal to the stored rules (and a daemon's own
/// declarations).
#[derive(Debug, Clone)]
pub struct AccessSync {
    pool: PgPool,
    cell: AccessCell,
    known: Arc<Mutex<Known>>,
}

impl AccessSync {
    /// A sync that fills `cell`; nothing is read until [`refresh`](Self::refresh).
    pub fn new(pool: PgPool, cell: AccessCell) -> Self {
        AccessSync {
            pool,
            cell,
            known: Arc::default(),
        }
    }

    /// Reads the digest and, when it changed, the rows; sets the cell.
    /// `Ok(true)` when the rules were reloaded.
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let fingerprint = crate::store::simple::access_fingerprint(&self.pool).await?;
        if self.lock().fingerprint.as_ref() == Some(&fingerprint) {
            return Ok(false);
        }
        let rows = crate::store::simple::access_rows(&self.pool).await?;
        let mut known = self.lock();
        known.fingerprint = Some(fingerprint);
        known.rows = rows;
        self.publish(&known);
        Ok(true)
    }

    /// What `owner`'s manifests declare now: replaces that owner's stored
    /// rows in the rules at once (until the next declaration).
    pub fn declare(&self, owner: &str, tokens: Vec<KnownToken>, bindings: Vec<Binding>) {
        let mut known = self.lock();
        known.declared = Some(Declared {
            owner: owner.to_string(),
            tokens,
            bindings,
        });
        self.publish(&known);
    }

    /// Refreshes every [`POLL_INTERVAL`] until `stop` is set. A failed poll
    /// keeps the rules as they were (the database may be back next time).
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match self.refresh().await {
                Ok(true) => tracing::info!("access rules reloaded from the management database"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the access rules; keeping the last ones")
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, known: &Known) {
        let (tokens, bindings) = rules(&known.rows, known.declared.as_ref());
        self.cell.set(tokens, bindings);
    }
}

/// The rules of the stored rows, with `declared` in place of its owner's.
/// A row that no longer reads is left out (and said in the log, by name).
fn rules(rows: &[AccessRow], declared: Option<&Declared>) -> (Vec<KnownToken>, Vec<Binding>) {
    let mut tokens = Vec::new();
    let mut bindings = Vec::new();
    for (kind, name, spec, owner) in rows {
        if declared.is_some_and(|d| owner.as_deref() == Some(d.owner.as_str())) {
            continue;
        }
        let read = match kind.as_str() {
            "ApiToken" => token_from_row(name, spec.clone()).map(|t| tokens.push(t)),
            _ => binding_from_row(name, spec.clone()).map(|b| bindings.push(b)),
        };
        if let Err(e) = read {
            tracing::warn!(kind = %kind, name = %name, error = %e, "stored access rule ignored");
        }
    }
    if let Some(d) = declared {
        tokens.retain(|t| !d.tokens.iter().any(|o| o.name == t.name));
        bindings.retain(|b| !d.bindings.iter().any(|o| o.name == b.name));
        tokens.extend(d.tokens.iter().cloned());
        bindings.extend(d.bindings.iter().cloned());
    }
    (tokens, bindings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::token::{parse_sha256, sha256_hex};
    use serde_json::json;

    fn token_row(name: &str, owner: &str) -> AccessRow {
        (
            "ApiToken".into(),
            name.into(),
            json!({"sha256": sha256_hex(name)}),
            Some(owner.into()),
        )
    }

    fn names(t: &[KnownToken]) -> Vec<&str> {
        t.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn a_declaration_replaces_its_owners_rows_only() {
        let rows = vec![
            token_row("a-old", "team-a"),
            token_row("b", "team-b"),
            (
                "ApiToken".into(),
                "broken".into(),
                json!({"sha256": "x"}),
                None,
            ),
        ];
        let (t, _) = rules(&rows, None);
        assert_eq!(names(&t), ["a-old", "b"], "the unreadable row is left out");
        let declared = Declared {
            owner: "team-a".into(),
            tokens: vec![KnownToken {
                name: "a-new".into(),
                sha256: parse_sha256(&sha256_hex("a-new")).unwrap(),
                expires: None,
            }],
            bindings: vec![],
        };
        let (t, _) = rules(&rows, Some(&declared));
        assert_eq!(
            names(&t),
            ["b", "a-new"],
            "team-a's revoked token is gone at once"
        );
    }
}
