//! [`AbortHandle`]: a shared stop flag that maps watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stop flag shared by clones, for stopping a map from anywhere — another thread, a Ctrl-C
/// handler, the map's own closure: a [checkpointed](crate::Checkpoint::abort_on) map watching
/// it starts no new chunk once [`abort`](AbortHandle::abort) was called (the chunks running
/// finish and are logged) and returns [`MapError::Aborted`](crate::MapError::Aborted).
/// [`reset`](AbortHandle::reset) makes it usable for the next map. The cluster's maps
/// (feature `mpi`) take the same handle (`cluster::AbortHandle` is this type).
///
/// # Examples
/// ```
/// let h = parview::AbortHandle::new();
/// let h2 = h.clone();
/// std::thread::spawn(move || h2.abort()).join().unwrap();
/// assert!(h.is_aborted());
/// h.reset();
/// assert!(!h.is_aborted());
/// ```
#[derive(Clone, Debug, Default)]
pub struct AbortHandle(Arc<AtomicBool>);

impl AbortHandle {
    /// A handle that is not aborted.
    ///
    /// # Examples
    /// ```
    /// assert!(!parview::AbortHandle::new().is_aborted());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the maps watching this handle (and its clones) to stop.
    ///
    /// # Examples
    /// ```
    /// let h = parview::AbortHandle::new();
    /// h.clone().abort();
    /// assert!(h.is_aborted());
    /// ```
    pub fn abort(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`abort`](AbortHandle::abort) was called (since the last reset).
    ///
    /// # Examples
    /// ```
    /// assert!(!parview::AbortHandle::default().is_aborted());
    /// ```
    pub fn is_aborted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Clears the flag.
    ///
    /// # Examples
    /// ```
    /// let h = parview::AbortHandle::new();
    /// h.abort();
    /// h.reset();
    /// assert!(!h.is_aborted());
    /// ```
    pub fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }
}
