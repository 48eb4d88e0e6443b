//! Moving a file after its job, until it is done: into `processed/`, or
//! into `failed/` with its `.error.json` beside it. A move that fails
//! (folder unwritable, disk full, a mount gone) is retried with
//! [`crate::retry::backoff`] and each failure logged with source and
//! destination, so the file leaves the inbox once the fault is fixed,
//! without a restart. An object of an `s3://` inbox ([`ObjectMove`]) is
//! copied, then deleted, with the same retries.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::inbox;
pub use crate::object_storage::ObjectMove;

/// The first retry waits this long, then twice as long each time.
pub const BASE: Duration = Duration::from_millis(500);
/// Retries never wait longer than this.
pub const MAX: Duration = Duration::from_secs(30);

/// One file's way out of the inbox, with what is done so far.
#[derive(Debug, Clone)]
pub struct Move {
    /// The file in the inbox.
    pub from: PathBuf,
    /// `processed/` or `failed/`.
    pub dir: PathBuf,
    /// The job id's prefix, for names already taken.
    pub job: String,
    /// The `.error.json` to write beside the moved file (failed jobs).
    pub report: Option<Vec<u8>>,
    /// `--inbox-root`, checked again at every attempt.
    pub roots: Vec<PathBuf>,
    /// Where the file landed, once it did.
    moved: Option<PathBuf>,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Attempt {
    /// The file (and its report) are in place.
    Done(PathBuf),
    /// The file is no longer in the inbox (another replica moved it).
    Gone,
    /// Try again later.
    Failed(std::io::Error),
}

impl Move {
    /// A move of `from` into `dir` for job `job`.
    pub fn new(
        from: PathBuf,
        dir: PathBuf,
        job: &str,
        report: Option<Vec<u8>>,
        roots: &[PathBuf],
    ) -> Move {
        Move {
            from,
            dir,
            job: job.to_string(),
            report,
            roots: roots.to_vec(),
            moved: None,
        }
    }

    /// One attempt: the move if not done yet, then the report beside the
    /// moved file (so it never lies beside nothing).
    pub fn attempt(&mut self) -> Attempt {
        if self.moved.is_none() {
            if let Err(m) = super::confine::may_move_into(&self.dir, &self.roots) {
                return Attempt::Failed(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    m.to_string(),
                ));
            }
            match inbox::move_into(&self.from, &self.dir, &self.job) {
                Ok(to) => self.moved = Some(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.from.exists() => {
                    return Attempt::Gone
                }
                Err(e) => return Attempt::Failed(e),
            }
        }
        let to = self.moved.clone().expect("set above");
        if let Some(report) = &self.report {
            if let Err(e) = inbox::write_report_beside(&to, &self.job, report) {
                return Attempt::Failed(e);
            }
            self.report = None;
        }
        Attempt::Done(to)
    }

    /// Where the attempt that fails is heading, for the log.
    fn destination(&self) -> PathBuf {
        self.moved.clone().unwrap_or_else(|| self.dir.clone())
    }
}

/// A move that [`start`] and [`until_done`] drive: a file's ([`Move`]) or
/// an object's ([`ObjectMove`]).
pub trait Movable: Send + Sized + 'static {
    /// `"file"` or `"object"`, for the log.
    const KIND: &'static str;
    /// One try; what is done stays done for the next.
    fn try_once(&mut self) -> impl std::future::Future<Output = Attempt> + Send;
    /// Where it is, for the log.
    fn source(&self) -> String;
    /// Where the try that failed was heading, for the log.
    fn heading(&self) -> String;
}

impl Movable for Move {
    const KIND: &'static str = "file";
    async fn try_once(&mut self) -> Attempt {
        // A move across file systems copies and fsyncs the whole file: on the
        // blocking pool, so that a big file never holds up a runtime worker
        // (and with it `/healthz` and lease renewal).
        let mut m = self.clone();
        match tokio::task::spawn_blocking(move || {
            let a = m.attempt();
            (m, a)
        })
        .await
        {
            Ok((m, a)) => {
                *self = m;
                a
            }
            Err(e) => Attempt::Failed(std::io::Error::other(format!("the move stopped: {e}"))),
        }
    }
    fn source(&self) -> String {
        self.from.display().to_string()
    }
    fn heading(&self) -> String {
        self.destination().display().to_string()
    }
}

impl Movable for ObjectMove {
    const KIND: &'static str = "object";
    async fn try_once(&mut self) -> Attempt {
        match self.attempt().await {
            Ok(Some(copy)) => Attempt::Done(PathBuf::from(copy.url())),
            Ok(None) => Attempt::Gone,
            Err(e) => Attempt::Failed(std::io::Error::other(e.to_string())),
        }
    }
    fn source(&self) -> String {
        self.from.url()
    }
    fn heading(&self) -> String {
        self.destination()
    }
}

/// [`start`] for the files of a batch, in one pass on the blocking pool:
/// each file moved (renamed), then each folder the files left and entered
/// synced once, so that the moves survive a crash without one sync per
/// file. A move that fails keeps trying in a background task of its own.
pub async fn start_all(moves: Vec<Move>, stop: watch::Receiver<bool>) {
    if moves.is_empty() {
        return;
    }
    let done = tokio::task::spawn_blocking(move || {
        let mut folders = std::collections::BTreeSet::new();
        let attempted: Vec<(Move, Attempt)> = moves
            .into_iter()
            .map(|mut m| {
                let a = m.attempt();
                if let Attempt::Done(to) = &a {
                    folders.extend(to.parent().map(std::path::Path::to_path_buf));
                    folders.extend(m.from.parent().map(std::path::Path::to_path_buf));
                }
                (m, a)
            })
            .collect();
        for dir in folders {
            if let Err(e) = inbox::sync_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot sync a folder after moves");
            }
        }
        attempted
    })
    .await;
    let attempted = match done {
        Ok(a) => a,
        Err(e) => {
            return tracing::error!(error = %e, "the moves stopped; the files stay in the inbox until the next start")
        }
    };
    for (m, attempt) in attempted {
        if !settled(&m, attempt, 0) {
            tokio::spawn(until_done(m, stop.clone()));
        }
    }
}

/// Attempts `m` once, now; if that fails, keeps trying in a background task
/// ([`until_done`]) so the worker can take its next job. The first attempt
/// is inline so that a process about to exit has moved what it could.
pub async fn start<M: Movable>(mut m: M, stop: watch::Receiver<bool>) {
    let attempt = m.try_once().await;
    if !settled(&m, attempt, 0) {
        tokio::spawn(until_done(m, stop));
    }
}

/// Attempts `m` until it is done, it is gone, or `stop` is set (then the
/// file stays in the inbox: at the next start it is found again and
/// recognised as a duplicate by its checksum, and moved).
pub async fn until_done<M: Movable>(mut m: M, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        // The last attempt failed just now: wait before the next.
        let delay = crate::retry::backoff(failures, BASE, MAX);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        failures += 1;
        let attempt = m.try_once().await;
        if settled(&m, attempt, failures) {
            return;
        }
    }
}

/// Logs one attempt (`failures` before it); whether the move is over.
fn settled<M: Movable>(m: &M, attempt: Attempt, failures: u32) -> bool {
    let kind = M::KIND;
    match attempt {
        Attempt::Done(to) => {
            tracing::info!(from = %m.source(), to = %to.display(), failures, "{kind} moved");
            true
        }
        Attempt::Gone => {
            tracing::debug!(from = %m.source(), "{kind} already moved (another replica) or replaced");
            true
        }
        Attempt::Failed(e) => {
            tracing::error!(
                from = %m.source(),
                to = %m.heading(),
                error = %e,
                retry_in = ?crate::retry::backoff(failures, BASE, MAX),
                "cannot move the {kind}; it stays in the inbox and the move is retried"
            );
            false
        }
    }
}
