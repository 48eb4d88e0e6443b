//! File-system watching (notify): events are hints that something changed
//! under a path. Every consumer also rescans on a timer, so a missed event
//! (network file systems, overflowing queues) only delays work.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Health;

/// inotify (or the platform's native backend), or polling for file systems
/// where the kernel sees no events (NFS, SMB).
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// The kernel's change events (inotify).
    Native,
    /// Compare the folders' contents this often.
    Poll(Duration),
}

/// A watcher that sends every changed path into a channel.
pub struct Watcher {
    inner: Box<dyn notify::Watcher + Send>,
    watched: Vec<(PathBuf, RecursiveMode)>,
    health: Arc<Health>,
}

impl Watcher {
    /// Errors count in `health` (the `cpi_watcher_errors_total` metric).
    pub fn new(
        backend: Backend,
        tx: UnboundedSender<PathBuf>,
        health: Arc<Health>,
    ) -> notify::Result<Watcher> {
        let counted = health.clone();
        let handler = move |res: notify::Result<notify::Event>| match res {
            // Reads (open, close without writing) are not changes, and cpi's
            // own reads of the folder would otherwise wake it up again.
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
            Ok(event) => {
                for p in event.paths {
                    let _ = tx.send(p);
                }
            }
            Err(e) => {
                counted.watcher_error();
                tracing::warn!(error = %e, "file watcher error; the periodic rescan covers for it");
            }
        };
        let inner: Box<dyn notify::Watcher + Send> = match backend {
            Backend::Native => Box::new(notify::recommended_watcher(handler)?),
            Backend::Poll(every) => Box::new(notify::PollWatcher::new(
                handler,
                notify::Config::default().with_poll_interval(every),
            )?),
        };
        Ok(Watcher {
            inner,
            watched: Vec::new(),
            health,
        })
    }

    /// Watches exactly `paths` from now on (adding and removing as needed).
    /// `true` when a path was added: what changed under it before now was
    /// not seen, so the caller looks once more.
    pub fn set(&mut self, paths: &[(PathBuf, bool)]) -> bool {
        let mut added = false;
        let wanted: Vec<(PathBuf, RecursiveMode)> = paths
            .iter()
            .map(|(p, recursive)| {
                let mode = if *recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                (p.clone(), mode)
            })
            .collect();
        for (p, mode) in std::mem::take(&mut self.watched) {
            if wanted.contains(&(p.clone(), mode)) {
                self.watched.push((p, mode));
            } else {
                let _ = self.inner.unwatch(&p);
            }
        }
        for (p, mode) in wanted {
            if self.watched.contains(&(p.clone(), mode)) {
                continue;
            }
            match self.inner.watch(&p, mode) {
                Ok(()) => {
                    self.watched.push((p, mode));
                    added = true;
                }
                Err(e) => {
                    self.health.watcher_error();
                    tracing::warn!(path = %p.display(), error = %e, "cannot watch; relying on the periodic rescan");
                }
            }
        }
        added
    }
}
