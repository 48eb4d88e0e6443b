//! File-system watching (notify): events are hints that something changed
//! under a path. Every consumer also rescans on a timer, so a missed event
//! (network file systems, overflowing queues) only delays work.
//!
//! inotify watches are a per-user kernel budget
//! (`fs.inotify.max_user_watches`). When it runs out, the paths the native
//! watcher cannot take are polled instead ([`FALLBACK_POLL`]), with one
//! WARN line naming how many are polled and the sysctl to raise: a
//! thousand inboxes are watched either way, never silently missed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Health;

/// How often the paths beyond the inotify budget are polled.
pub const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// inotify (or the platform's native backend), or polling for file systems
/// where the kernel sees no events (NFS, SMB).
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// The kernel's change events (inotify).
    Native,
    /// Compare the folders' contents this often.
    Poll(Duration),
}

/// Which watcher holds a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Inner,
    Fallback,
}

/// Which changes a watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// Every change: a manifest removed or renamed away matters.
    All,
    /// Paths that appeared or were written. An inbox loses a file each time
    /// an import moves one out; listing the folder again for that is
    /// wasted (with 1,000 files waiting, a thousand listings of a thousand
    /// files each).
    Arrivals,
}

impl Events {
    /// Whether `kind` is one of these changes.
    pub fn wants(self, kind: &notify::EventKind) -> bool {
        use notify::event::{ModifyKind, RenameMode};
        use notify::EventKind;
        match kind {
            // Reads (open, close without writing) are not changes, and
            // cpi's own reads of the folder would otherwise wake it up again.
            EventKind::Access(_) => false,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                self == Events::All
            }
            _ => true,
        }
    }
}

/// A watcher that sends every changed path into a channel.
pub struct Watcher {
    inner: Box<dyn notify::Watcher + Send>,
    native: bool,
    /// Polls what the native watcher could not take (created on first need).
    fallback: Option<notify::PollWatcher>,
    watched: HashMap<PathBuf, (RecursiveMode, Via)>,
    /// Test-only: at most this many native watches, as if the kernel's
    /// budget were this small (`cpi run --inotify-watch-cap`, hidden).
    native_cap: Option<usize>,
    tx: UnboundedSender<PathBuf>,
    health: Arc<Health>,
    events: Events,
}

/// The event handler of a notify watcher: changed paths into `tx`.
fn handler(
    tx: UnboundedSender<PathBuf>,
    health: Arc<Health>,
    events: Events,
) -> impl Fn(notify::Result<notify::Event>) + Send + 'static {
    move |res: notify::Result<notify::Event>| match res {
        Ok(event) if !events.wants(&event.kind) => {}
        Ok(event) => {
            for p in event.paths {
                let _ = tx.send(p);
            }
        }
        Err(e) => {
            health.watcher_error();
            tracing::warn!(error = %e, "file watcher error; the periodic rescan covers for it");
        }
    }
}

impl Watcher {
    /// Errors count in `health` (the `cpi_watcher_errors_total` metric).
    pub fn new(
        backend: Backend,
        events: Events,
        tx: UnboundedSender<PathBuf>,
        health: Arc<Health>,
    ) -> notify::Result<Watcher> {
        let h = handler(tx.clone(), health.clone(), events);
        let (inner, native): (Box<dyn notify::Watcher + Send>, bool) = match backend {
            Backend::Native => (Box::new(notify::recommended_watcher(h)?), true),
            Backend::Poll(every) => (
                Box::new(notify::PollWatcher::new(
                    h,
                    notify::Config::default().with_poll_interval(every),
                )?),
                false,
            ),
        };
        Ok(Watcher {
            inner,
            native,
            fallback: None,
            watched: HashMap::new(),
            native_cap: None,
            tx,
            health,
            events,
        })
    }

    /// Test-only: behave as if the kernel allowed `cap` inotify watches.
    pub fn cap_native(&mut self, cap: usize) {
        self.native_cap = Some(cap);
    }

    /// How many paths are polled because inotify's watches ran out.
    pub fn fallback_count(&self) -> usize {
        self.watched
            .values()
            .filter(|(_, via)| *via == Via::Fallback)
            .count()
    }

    /// Watches exactly `paths` from now on (adding and removing as needed).
    /// `true` when a path was added: what changed under it before now was
    /// not seen, so the caller looks once more.
    pub fn set(&mut self, paths: &[(PathBuf, bool)]) -> bool {
        let wanted: HashMap<PathBuf, RecursiveMode> = paths
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
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(p, (mode, _))| wanted.get(*p) != Some(mode))
            .map(|(p, _)| p.clone())
            .collect();
        for p in stale {
            if let Some((_, via)) = self.watched.remove(&p) {
                let _ = match (via, self.fallback.as_mut()) {
                    (Via::Fallback, Some(f)) => notify::Watcher::unwatch(f, &p),
                    _ => self.inner.unwatch(&p),
                };
            }
        }
        let polled_before = self.fallback_count();
        let mut added = false;
        let mut wanted: Vec<(PathBuf, RecursiveMode)> = wanted
            .into_iter()
            .filter(|(p, _)| !self.watched.contains_key(p))
            .collect();
        // A stable order: which inboxes fall back does not change per call.
        wanted.sort();
        for (p, mode) in wanted {
            let natives = self.watched.len() - self.fallback_count();
            let result = if self.native_cap.is_some_and(|cap| natives >= cap) {
                Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))
            } else {
                self.inner.watch(&p, mode)
            };
            let via = match result {
                Ok(()) => Via::Inner,
                Err(e) if self.native && matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    match self.poll(&p, mode) {
                        Ok(()) => Via::Fallback,
                        Err(e) => {
                            self.cannot_watch(&p, &e);
                            continue;
                        }
                    }
                }
                Err(e) => {
                    self.cannot_watch(&p, &e);
                    continue;
                }
            };
            self.watched.insert(p, (mode, via));
            added = true;
        }
        let polled = self.fallback_count();
        if polled > polled_before {
            tracing::warn!(
                polled,
                watched = self.watched.len() - polled,
                poll_every = ?FALLBACK_POLL,
                "inotify watches ran out: {polled} folders are polled instead; raise the limit \
                 with `sysctl fs.inotify.max_user_watches=<more>` (and restart cpi)"
            );
        }
        added
    }

    /// Watches `p` with the fallback poller.
    fn poll(&mut self, p: &std::path::Path, mode: RecursiveMode) -> notify::Result<()> {
        if self.fallback.is_none() {
            let h = handler(self.tx.clone(), self.health.clone(), self.events);
            let config = notify::Config::default().with_poll_interval(FALLBACK_POLL);
            self.fallback = Some(notify::PollWatcher::new(h, config)?);
        }
        let f = self.fallback.as_mut().expect("created above");
        notify::Watcher::watch(f, p, mode)
    }

    fn cannot_watch(&self, p: &std::path::Path, e: &notify::Error) {
        self.health.watcher_error();
        tracing::warn!(path = %p.display(), error = %e, "cannot watch; relying on the periodic rescan");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};
    use notify::EventKind;

    #[test]
    fn an_inbox_hears_arrivals_and_not_departures() {
        let arrivals = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            // A backend that cannot tell the direction of a rename.
            EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
        ];
        let departures = [
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ];
        for k in &arrivals {
            assert!(Events::Arrivals.wants(k), "{k:?}");
            assert!(Events::All.wants(k), "{k:?}");
        }
        for k in &departures {
            assert!(!Events::Arrivals.wants(k), "{k:?}");
            assert!(Events::All.wants(k), "{k:?}");
        }
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!Events::All.wants(&read) && !Events::Arrivals.wants(&read));
    }

    /// The first path a real inotify watch of an inbox reports after an
    /// import moved one file out into `processed/`, another file was
    /// deleted, and a third one arrived.
    async fn first_reported(events: Events) -> PathBuf {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().to_path_buf();
        std::fs::create_dir(inbox.join("processed")).unwrap();
        for f in ["moved.csv", "deleted.csv"] {
            std::fs::write(inbox.join(f), "id\n1\n").unwrap();
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut w = Watcher::new(Backend::Native, events, tx, Arc::default()).unwrap();
        assert!(w.set(&[(inbox.clone(), false)]));
        std::fs::rename(inbox.join("moved.csv"), inbox.join("processed/moved.csv")).unwrap();
        std::fs::remove_file(inbox.join("deleted.csv")).unwrap();
        std::fs::write(inbox.join("arrived.csv"), "id\n2\n").unwrap();
        // inotify reports a watch's events in order: the departures come
        // before the arrival unless they are dropped.
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .unwrap()
    }

    #[tokio::test]
    async fn an_inbox_watch_is_not_woken_by_files_leaving_it() {
        let first = first_reported(Events::Arrivals).await;
        assert_eq!(first.file_name().unwrap(), "arrived.csv");
        // The same steps under a watch of every change (manifests): the
        // move out is what it hears first.
        let first = first_reported(Events::All).await;
        assert_eq!(first.file_name().unwrap(), "moved.csv");
    }
}
