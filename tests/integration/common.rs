//! The old name of [`crate::support`], kept so that modules not yet moved
//! over compile unchanged.

pub use crate::support::*;
