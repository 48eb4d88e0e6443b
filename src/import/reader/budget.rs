//! The budgets of a read (every input is bounded): which limit a file
//! went over, the error that says so, and the decompressed stream held to
//! its size and ratio.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::Limits;

/// Which budget of the import a file went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_record_bytes`.
    RecordBytes,
    /// `limits.max_field_bytes`.
    FieldBytes,
    /// `limits.max_decompressed_bytes`.
    DecompressedBytes,
    /// `limits.max_compression_ratio`.
    CompressionRatio,
}

impl Limit {
    /// The option that raises it.
    pub fn option(self) -> &'static str {
        match self {
            Limit::RecordBytes => "limits.max_record_bytes",
            Limit::FieldBytes => "limits.max_field_bytes",
            Limit::DecompressedBytes => "limits.max_decompressed_bytes",
            Limit::CompressionRatio => "limits.max_compression_ratio",
        }
    }
}

/// A file went over a budget of its import: it is rejected, and nothing
/// of it is loaded. Travels inside the `io::Error` the reader returns (the
/// CSV reader passes it on); [`exceeded`] finds it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (the budget {} = {limit}); the file is rejected, nothing of it is loaded; raise `{}` in its options to import it", .what, .kind.option(), .kind.option())]
pub struct Exceeded {
    /// Which budget.
    pub kind: Limit,
    /// The budget's value.
    pub limit: u64,
    /// The line the record over it starts on (0: not known yet).
    pub line: u64,
    /// What went over, in words.
    pub what: String,
}

impl Exceeded {
    pub(crate) fn new(kind: Limit, limit: u64, what: String) -> Exceeded {
        Exceeded {
            kind,
            limit,
            line: 0,
            what,
        }
    }

    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// The budget a read error reports, if it is one.
pub fn exceeded_io(e: &io::Error) -> Option<&Exceeded> {
    e.get_ref()?.downcast_ref::<Exceeded>()
}

/// The budget a CSV error reports, if it is one.
pub fn exceeded(e: &csv::Error) -> Option<&Exceeded> {
    match e.kind() {
        csv::ErrorKind::Io(io) => exceeded_io(io),
        _ => None,
    }
}

/// The decompressed stream held to `max_decompressed_bytes` and, past
/// [`Limits::RATIO_FLOOR`], to `max_compression_ratio` per byte read from
/// the file (`compressed` counts those). A gzip bomb stops at the budget,
/// not at the end of its 10 GB.
pub(crate) struct Inflated<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    out: u64,
    limits: Limits,
}

impl<R> Inflated<R> {
    pub(crate) fn new(inner: R, compressed: Arc<AtomicU64>, limits: Limits) -> Self {
        Inflated {
            inner,
            compressed,
            out: 0,
            limits,
        }
    }
}

impl<R: Read> Read for Inflated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let l = &self.limits;
        if self.out > l.max_decompressed_bytes {
            return Err(Exceeded::new(
                Limit::DecompressedBytes,
                l.max_decompressed_bytes,
                format!(
                    "the file decompresses to more than {} bytes",
                    l.max_decompressed_bytes
                ),
            )
            .into_io());
        }
        if self.out > Limits::RATIO_FLOOR {
            let read = self.compressed.load(Ordering::Relaxed).max(1);
            if self.out / read > l.max_compression_ratio {
                return Err(Exceeded::new(
                    Limit::CompressionRatio,
                    l.max_compression_ratio,
                    format!(
                        "the file decompresses to more than {} bytes per compressed byte ({} bytes from {read})",
                        l.max_compression_ratio, self.out
                    ),
                )
                .into_io());
            }
        }
        Ok(n)
    }
}
