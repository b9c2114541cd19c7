//! parview: IPython-Parallel-style views on a work-stealing thread pool.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
