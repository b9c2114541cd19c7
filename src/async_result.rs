//! [`AsyncResult`]: a map or task running in the background, with ready/wait/get, progress,
//! abort and ipyparallel's timings; and the streaming iterators of `imap`.
//!
//! # Invariants
//! * The result is produced exactly once, by the last participant to leave the map's gate, and
//!   is visible to every thread that sees [`AsyncResult::ready`] return true.
//! * [`AsyncResult::progress`] comes from lock-free counters bumped once per finished chunk: it
//!   never decreases, never exceeds `total`, and reaches `total` unless the map was aborted.
//! * [`AsyncResult::abort`]: once it returns, no new chunk starts (a chunk whose claim was made
//!   before may still begin); running chunks finish; [`AsyncResult::get`] then returns
//!   [`MapError::Aborted`] with the number of items done, unless everything had already finished.
//! * **Dropping** an `AsyncResult` that is not ready aborts the map (Rust's drop-cancels rule):
//!   nothing blocks, no thread leaks, and the engines drop the remaining work. Call
//!   [`AsyncResult::wait`] first to let it finish. A result nobody took is dropped value by
//!   value; a panicking `Drop` among them is reported on stderr and cannot harm an engine.
//! * Waiting never blocks an engine: see [`AsyncResult::wait`].

use crate::error::{ItemError, MapError, Partial};
use crate::latch::Signal;
use crate::map::Tracker;
use crate::map::run::AsyncCore;
use crate::map::sink::{Msg, Stream};
use crate::map::track::Timings;
use crate::timeline::Timeline;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A map or task running in the background (ipyparallel's `AsyncResult`,
/// `concurrent.futures.Future`).
///
/// # Examples
/// ```
/// use parview::Pool;
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let ar = pool.load_balanced().map_async((0..1000u64).collect::<Vec<_>>(), |x| x * x);
/// ar.wait();
/// assert!(ar.ready());
/// assert_eq!(ar.progress(), (1000, 1000));
/// assert!(ar.serial_time() > std::time::Duration::ZERO);
/// let v = ar.get().unwrap();
/// assert_eq!(v[999], 999 * 999);
/// ```
pub struct AsyncResult<T> {
    pub(crate) core: Arc<dyn AsyncCore<T>>,
    /// Whether dropping this handle aborts an unfinished map.
    armed: bool,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (d, t) = self.progress();
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .field("progress", &format_args!("{d}/{t}"))
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// Whether the result is available (the map finished, failed or was aborted).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| 1 + 1);
    /// ar.wait();
    /// assert!(ar.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.core.signal().is_set()
    }

    /// Blocks until the result is available. From outside the pool the waiting thread spins
    /// briefly, then sleeps. On an engine (of any pool) it does not block its engine: it works
    /// on this map itself (a load-balanced map), and runs its engine's other pending work
    /// meanwhile, so waiting from inside a job never deadlocks, on one engine too.
    ///
    /// # Panics
    /// On an engine nested [`MAX_NESTED_WAITS`](crate::MAX_NESTED_WAITS) blocking
    /// calls deep (a clear panic instead of a stack overflow).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(vec![1, 2, 3], |x| x + 1);
    /// ar.wait();
    /// assert_eq!(ar.progress(), (3, 3));
    /// ```
    pub fn wait(&self) {
        if self.ready() {
            return;
        }
        crate::registry::nested(|| {
            if crate::registry::on_engine() {
                self.core.help(); // on an engine: work on the map we wait for
            }
            let s = self.core.signal();
            s.wait(&|| s.is_set(), None, self.core.spin());
        });
    }

    /// Waits at most `timeout`; true if the result is available. Any `Duration` is accepted:
    /// one too long to add to the current time waits forever. On an engine the thread runs its
    /// engine's pending work meanwhile (a job it runs may take it past the timeout).
    ///
    /// # Panics
    /// As [`wait`](Self::wait), on an engine nested too deep.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| std::thread::sleep(Duration::from_millis(200)));
    /// assert!(!ar.wait_timeout(Duration::from_millis(1)));
    /// assert!(ar.wait_timeout(Duration::from_secs(10)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.ready() {
            return true;
        }
        let deadline = Instant::now().checked_add(timeout);
        crate::registry::nested(|| {
            let s = self.core.signal();
            s.wait(&|| s.is_set(), deadline, self.core.spin())
        })
    }

    /// Waits (as [`wait`](Self::wait)), then returns the result.
    ///
    /// # Panics
    /// As [`wait`](Self::wait), on an engine nested too deep.
    ///
    /// # Errors
    /// [`MapError::Panicked`] (lowest index, message, count) if items panicked,
    /// [`MapError::Aborted`] if [`abort`](Self::abort) stopped the map first,
    /// [`MapError::TooLarge`] if the map's output could not be allocated (nothing ran).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(vec![1, 0, 3], |x| 6 / x);
    /// let e = ar.get().unwrap_err();
    /// assert!(matches!(e, parview::MapError::Panicked { index: 1, failed: 1, .. }));
    /// ```
    pub fn get(self) -> Result<T, MapError> {
        self.wait();
        let r = self
            .core
            .take()
            .expect("the result is taken once, by `get`");
        // Finished results of a failed map, kept for `get_partial`, are not wanted.
        self.core.discard_partial();
        r
    }

    /// `(done, total)` items, from lock-free counters updated once per finished chunk. Never
    /// decreases; reaches `total` unless aborted.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async((0..10u32).collect::<Vec<_>>(), |x| x);
    /// let (done, total) = ar.progress();
    /// assert!(done <= total && total == 10);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        match self.core.tracker() {
            Some(t) => (t.done(), t.total),
            None => (0, 0),
        }
    }

    /// Stops the map: once this returns, no new chunk starts; running chunks finish. `get`
    /// then returns [`MapError::Aborted`] unless everything was already done.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced().schedule(parview::Schedule::Dynamic(1));
    /// let ar = lb.map_async((0..1000u64).collect::<Vec<_>>(), |_| std::thread::sleep(Duration::from_millis(1)));
    /// ar.abort();
    /// assert!(matches!(ar.get(), Err(parview::MapError::Aborted { .. })));
    /// ```
    pub fn abort(&self) {
        self.core.stop();
    }

    /// Time since the map was submitted (ipyparallel's `elapsed`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| ());
    /// ar.wait();
    /// assert!(ar.elapsed() > std::time::Duration::ZERO);
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.core.tracker().map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// First chunk start to last chunk finish so far.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async((0..100u32).collect::<Vec<_>>(), |x| x);
    /// ar.wait();
    /// assert!(ar.wall_time() <= ar.elapsed());
    /// ```
    pub fn wall_time(&self) -> Duration {
        self.timings().wall_time
    }

    /// Sum of the busy time of all chunks so far; `serial_time / wall_time` is the achieved
    /// parallelism.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async((0..100u32).collect::<Vec<_>>(), |x| x);
    /// ar.wait();
    /// let t = ar.timings();
    /// assert_eq!(t.serial_time, ar.serial_time());
    /// ```
    pub fn serial_time(&self) -> Duration {
        self.timings().serial_time
    }

    /// Wall and serial time together.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| 3);
    /// ar.wait();
    /// let _ = ar.timings().wall_time;
    /// ```
    pub fn timings(&self) -> Timings {
        self.core
            .tracker()
            .map_or_else(Timings::default, |t| t.timings())
    }

    /// The per-chunk timeline, if the view recorded one
    /// ([`LoadBalancedView::record_timeline`](crate::LoadBalancedView::record_timeline)) and the
    /// map has finished. Taken once: later calls return `None`.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().record_timeline().map_async((0..100u32).collect::<Vec<_>>(), |x| x);
    /// ar.wait();
    /// let tl = ar.timeline().unwrap();
    /// assert_eq!(tl.items(), 100);
    /// ```
    pub fn timeline(&self) -> Option<Timeline> {
        self.core.timeline()
    }
}

impl<R: Send + 'static> AsyncResult<Vec<R>> {
    /// Waits (as [`wait`](Self::wait)), then returns the results, or — when the map failed or
    /// was [aborted](Self::abort) — what finished: a [`Partial`] with `Some(result)` for every
    /// item that produced its value and the error [`get`](Self::get) would have returned.
    ///
    /// Recipe "abort, fix, resume": keep `results` and rerun only the `None` slots, or run the
    /// map with a [checkpoint](crate::LoadBalancedView::checkpoint) so that a rerun skips what
    /// finished by itself.
    ///
    /// # Panics
    /// As [`wait`](Self::wait), on an engine nested too deep.
    ///
    /// # Errors
    /// As [`get`](Self::get), inside a [`Partial`]; its `results` is empty only when nothing
    /// ran ([`MapError::TooLarge`], [`MapError::Schedule`]).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use parview::{MapError, Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
    /// let ar = lb.map_async(0..40u64, |i| { std::thread::sleep(Duration::from_millis(5)); i * i });
    /// std::thread::sleep(Duration::from_millis(20));
    /// ar.abort();
    /// match ar.get_partial() {
    ///     Ok(all) => assert_eq!(all.len(), 40), // it was faster than the abort
    ///     Err(p) => {
    ///         assert!(matches!(p.error, MapError::Aborted { total: 40, .. }));
    ///         for (i, r) in p.results.iter().enumerate() {
    ///             if let Some(v) = r { assert_eq!(*v, (i * i) as u64); }
    ///         }
    ///     }
    /// }
    /// ```
    pub fn get_partial(self) -> Result<Vec<R>, Partial<R>> {
        self.wait();
        let r = self
            .core
            .take()
            .expect("the result is taken once, by `get`");
        r.map_err(|error| Partial {
            results: self
                .core
                .take_partial()
                .and_then(|b| b.downcast::<Vec<Option<R>>>().ok())
                .map(|b| *b)
                .unwrap_or_default(),
            error,
        })
    }
}

impl<T: Send + 'static> AsyncResult<T> {
    /// A handle on a started map.
    pub(crate) fn from_core(core: Arc<dyn AsyncCore<T>>) -> Self {
        AsyncResult { core, armed: true }
    }

    /// Applies `f` to the value once it is there (the map behind stays the same).
    pub(crate) fn map_value<U: Send + 'static>(
        self,
        f: impl FnOnce(T) -> U + Send + Sync + 'static,
    ) -> AsyncResult<U> {
        let f = Mutex::new(Some(f));
        let mut me = self;
        me.armed = false; // the new handle takes over; dropping `me` must not abort
        AsyncResult {
            core: Arc::new(Mapped {
                inner: me.core.clone(),
                f,
            }),
            armed: true,
        }
    }
}

struct Mapped<T, U, F: FnOnce(T) -> U> {
    inner: Arc<dyn AsyncCore<T>>,
    f: Mutex<Option<F>>,
}

impl<T, U, F> AsyncCore<U> for Mapped<T, U, F>
where
    F: FnOnce(T) -> U + Send + Sync,
    T: Send,
{
    fn signal(&self) -> &Signal {
        self.inner.signal()
    }
    fn take(&self) -> Option<Result<U, MapError>> {
        let r = self.inner.take()?;
        let f = self.f.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(r.map(f))
    }
    fn tracker(&self) -> Option<&Arc<Tracker>> {
        self.inner.tracker()
    }
    fn stop(&self) {
        self.inner.stop()
    }
    fn timeline(&self) -> Option<Timeline> {
        self.inner.timeline()
    }
    fn help(&self) {
        self.inner.help()
    }
    fn spin(&self) -> Duration {
        self.inner.spin()
    }
    fn discard_partial(&self) {
        self.inner.discard_partial()
    }
}

#[cfg(feature = "progress")]
impl<T> AsyncResult<T> {
    /// Draws a progress bar for this map on stderr until it finishes (hidden when stderr is not
    /// a terminal). Feature `progress`.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(0..1000u64, |i| i + 1);
    /// ar.progress_bar("increment");
    /// assert_eq!(ar.get().unwrap().len(), 1000);
    /// ```
    pub fn progress_bar(&self, label: &str) {
        if let Some(t) = self.core.tracker() {
            crate::progress::Bar::start(label, t.clone()).detach();
        }
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        if self.armed {
            if !self.ready() {
                self.core.stop();
            }
            // Nobody can ask for partial results any more.
            self.core.discard_partial();
        }
    }
}

/// Ordered streaming results of [`LoadBalancedView::imap`](crate::LoadBalancedView::imap):
/// yields item `i`'s result as soon as items `0..=i` are done. Dropping it aborts the rest.
pub struct Imap<R> {
    ar: AsyncResult<()>,
    rx: Arc<Stream<R>>,
    pending: Vec<Option<Result<R, ItemError>>>,
    next: usize,
    n: usize,
}

/// Streaming results of [`LoadBalancedView::imap_unordered`](crate::LoadBalancedView::imap_unordered):
/// `(index, result)` in completion order. Dropping it aborts the rest.
pub struct ImapUnordered<R> {
    ar: AsyncResult<()>,
    rx: Arc<Stream<R>>,
    yielded: usize,
    n: usize,
}

impl<R> std::fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Imap {{ next: {}, n: {} }}", self.next, self.n)
    }
}

impl<R> std::fmt::Debug for ImapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImapUnordered {{ yielded: {}, n: {} }}",
            self.yielded, self.n
        )
    }
}

/// Next message, or `None` once the map is over and the stream is drained. Waits like
/// [`AsyncResult::wait`]: on an engine, by working on the map and running the engine's work.
fn recv<R>(ar: &AsyncResult<()>, rx: &Stream<R>) -> Option<Msg<R>> {
    if let Some(m) = rx.pop() {
        return Some(m);
    }
    crate::registry::nested(|| {
        loop {
            if let Some(m) = rx.pop() {
                return Some(m);
            }
            if ar.ready() {
                return rx.pop();
            }
            if crate::registry::on_engine() {
                ar.core.help();
            }
            let done = ar.core.signal();
            rx.bell
                .wait(&|| rx.has_message() || done.is_set(), None, ar.core.spin());
        }
    })
}

impl<R> Iterator for Imap<R> {
    type Item = Result<R, ItemError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.n {
            return None;
        }
        while self.pending[self.next].is_none() {
            let (i, r) = recv(&self.ar, &self.rx)?;
            self.pending[i] = Some(r);
        }
        let r = self.pending[self.next].take();
        self.next += 1;
        r
    }
}

impl<R> Iterator for ImapUnordered<R> {
    type Item = (usize, Result<R, ItemError>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.yielded >= self.n {
            return None;
        }
        let m = recv(&self.ar, &self.rx)?;
        self.yielded += 1;
        Some(m)
    }
}

impl<R> Imap<R> {
    pub(crate) fn new(ar: AsyncResult<()>, rx: Arc<Stream<R>>, n: usize) -> Self {
        Imap {
            ar,
            rx,
            pending: (0..n).map(|_| None).collect(),
            next: 0,
            n,
        }
    }

    /// `(done, total)` of the underlying map.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut it = pool.load_balanced().imap(vec![1, 2, 3], |x| x * 2);
    /// assert_eq!(it.next(), Some(Ok(2)));
    /// assert_eq!(it.progress().1, 3);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.ar.progress()
    }
}

impl<R> ImapUnordered<R> {
    pub(crate) fn new(ar: AsyncResult<()>, rx: Arc<Stream<R>>, n: usize) -> Self {
        ImapUnordered {
            ar,
            rx,
            yielded: 0,
            n,
        }
    }

    /// `(done, total)` of the underlying map.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let it = pool.load_balanced().imap_unordered(vec![1, 2, 3], |x| x * 2);
    /// assert_eq!(it.progress().1, 3);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.ar.progress()
    }
}

impl<R> Drop for Imap<R> {
    fn drop(&mut self) {
        self.ar.abort();
        self.rx.close();
    }
}

impl<R> Drop for ImapUnordered<R> {
    fn drop(&mut self) {
        self.ar.abort();
        self.rx.close();
    }
}
