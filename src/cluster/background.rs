//! Background maps over the ranks: [`ClusterView::map_async`] (a [`ClusterAsyncResult`]) and
//! [`ClusterView::imap_unordered`] (a [`ClusterImapUnordered`]).
//!
//! # How it runs
//!
//! Every rank calls the same `map_async` (SPMD). The call checks the schedule with the other
//! ranks (one broadcast), marks MPI as *in flight* on this rank, and starts a **driver
//! thread** that runs this rank's side of the same load-balanced protocol as the blocking map
//! (`balanced.rs`): on the root it hands out chunks and collects results, elsewhere it serves
//! chunks until the root's `Stop`. MPI is initialised with threading level *Serialized*: the
//! driver and the cluster's thread never call MPI at the same time, because every other MPI
//! call of the cluster first waits for the in-flight mark to clear ([`InFlight::settle`]).
//! All ranks follow that rule, so the collectives after a `map_async` run in the same order
//! on every rank; nothing is refused, nothing deadlocks.
//!
//! # Invariants
//! * The in-flight mark is cleared by the driver thread after it has made its last MPI call
//!   and published the result (a guard, so also if the driver panics — which aborts the job).
//! * The result is written once, before `ready` turns true; `get` takes it once.
//! * Abort: the root stops handing out chunks, tells every rank (`WorkMsg::Abort`), and every
//!   engine skips the items left in its chunks; the chunks out come back `Cancelled`.
//! * A handle may be leaked: the cluster's `Drop` waits for the driver before finalising MPI.

use std::cell::Cell;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::balanced::{ItemSender, ItemsWork, RangeWork, RunOpts, Work};
use super::{AbortHandle, Cluster, ClusterMapError, ClusterView, abort_job, payload_str};
use crate::Timings;
use crate::map::Tracker;
use crate::timeline::Timeline;

thread_local! {
    /// Set on a background map's driver thread: the panic hook treats it as an MPI thread.
    pub(super) static DRIVER: Cell<bool> = const { Cell::new(false) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a background map's driver thread owns MPI on this rank.
#[derive(Default)]
pub(super) struct InFlight {
    busy: Mutex<bool>,
    cv: Condvar,
}

impl InFlight {
    /// Waits until no background map is in flight on this rank.
    pub(super) fn settle(&self) {
        let mut b = lock(&self.busy);
        while *b {
            b = self.cv.wait(b).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Marks a background map as in flight (after waiting for the previous one).
    fn begin(self: &Arc<Self>) -> EndGuard {
        let mut b = lock(&self.busy);
        while *b {
            b = self.cv.wait(b).unwrap_or_else(|e| e.into_inner());
        }
        *b = true;
        EndGuard(self.clone())
    }
}

/// Clears the in-flight mark when dropped.
struct EndGuard(Arc<InFlight>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.cv.notify_all();
    }
}

/// Where a background map's outcome is published.
struct Shared<T> {
    slot: Mutex<Option<Result<Option<T>, ClusterMapError>>>,
    ready: AtomicBool,
    cv: Condvar,
    /// Progress and timings (root only).
    tracker: Option<Arc<Tracker>>,
    abort: AbortHandle,
    timeline: Mutex<Option<Timeline>>,
    started: Instant,
}

impl<T> Shared<T> {
    fn new(tracker: Option<Arc<Tracker>>) -> Self {
        Shared {
            slot: Mutex::new(None),
            ready: AtomicBool::new(false),
            cv: Condvar::new(),
            tracker,
            abort: AbortHandle::new(),
            timeline: Mutex::new(None),
            started: Instant::now(),
        }
    }

    fn publish(&self, r: Result<Option<T>, ClusterMapError>, timeline: Option<Timeline>) {
        *lock(&self.timeline) = timeline;
        let mut slot = lock(&self.slot);
        *slot = Some(r);
        self.ready.store(true, Ordering::Release);
        drop(slot);
        self.cv.notify_all();
    }
}

/// A cluster map running in the background ([`ClusterView::map_async`]): the cluster's
/// counterpart of [`AsyncResult`](crate::AsyncResult), with the same method names and
/// semantics (`ready`, `wait`, `wait_timeout`, `get`, `progress`, `abort`, `elapsed`,
/// `wall_time`, `serial_time`, `timings`, `timeline`, `progress_bar`).
///
/// A separate type because the local one does not fit: its error is [`MapError`](crate::MapError),
/// which cannot name the **rank** of a failed item; its value is the same on every caller,
/// where a cluster map has results on the root only (`get` gives `Ok(Some(results))` on the
/// root and `Ok(None)` on the other ranks, as the blocking [`ClusterView::map`]); and it is
/// `'static`, where this handle borrows the [`Cluster`], so the cluster (and MPI) outlives the
/// map.
///
/// **On the root** the handle follows the map: progress counts finished items, `abort` stops
/// every rank's work, dropping an unfinished handle aborts the map (as the local one).
/// **On the other ranks** it is ready once the rank's part is served (the root said `Stop`);
/// `progress` is `(0, 0)`, `timings` are zero, `abort` and dropping it do nothing (the root
/// decides), and `get` returns `Ok(None)` — or the same schedule error as the root.
///
/// Every other cluster call that talks to MPI waits until the map has ended on this rank (see
/// [`Cluster`], "A background map in flight").
///
/// The handle stays on the cluster's thread: like the [`Cluster`] it borrows, it is not
/// `Send`. To stop the map from another thread, give the view an [`AbortHandle`]
/// ([`ClusterView::abortable`]) and abort that.
///
/// # Examples
/// ```no_run
/// let c = parview::cluster::Cluster::init().unwrap();
/// let xs: Vec<u64> = if c.is_root() { (0..1000).collect() } else { vec![] };
/// let ar = c.load_balanced().map_async(xs, |x| x * x);
/// // ... the root's thread is free here ...
/// let (done, total) = ar.progress();
/// assert!(done <= total);
/// match ar.get().unwrap() {
///     Some(v) => assert_eq!(v[999], 999 * 999), // the root
///     None => {}                                // every other rank, once its part is served
/// }
/// ```
#[must_use = "dropping the root's handle of an unfinished map aborts it"]
pub struct ClusterAsyncResult<'c, T> {
    shared: Arc<Shared<T>>,
    root: bool,
    _cluster: PhantomData<&'c Cluster>,
}

impl<T> std::fmt::Debug for ClusterAsyncResult<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (d, t) = self.progress();
        f.debug_struct("ClusterAsyncResult")
            .field("root", &self.root)
            .field("ready", &self.ready())
            .field("progress", &format_args!("{d}/{t}"))
            .finish()
    }
}

impl<T> ClusterAsyncResult<'_, T> {
    /// Whether the map has ended on this rank (root: finished, failed or aborted; other
    /// ranks: their part is served).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_async(Vec::<u8>::new(), |x| *x);
    /// ar.wait();
    /// assert!(ar.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Blocks until [`ready`](Self::ready). The waiting thread sleeps; the map does not need
    /// it. The map does need every engine of the cluster's pool (`cluster.pool()`): wait from
    /// the cluster's thread or any other thread, not from a job of that pool that was already
    /// running when the map started (a job queued after it runs once the map is done).
    ///
    /// # Panics
    /// Never by itself; a rank that dies ends the whole job (see the module docs).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_async(vec![1u32, 2, 3], |x| x + 1);
    /// ar.wait();
    /// if c.is_root() {
    ///     assert_eq!(ar.progress(), (3, 3));
    /// }
    /// ```
    pub fn wait(&self) {
        let mut slot = lock(&self.shared.slot);
        while !self.ready() {
            slot = self.shared.cv.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits at most `timeout`; true if ready. Any `Duration` is accepted: one too long to
    /// add to the current time waits forever.
    ///
    /// # Panics
    /// Never by itself.
    ///
    /// # Examples
    /// ```no_run
    /// use std::time::Duration;
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..8, |_| std::thread::sleep(Duration::from_millis(100)));
    /// let _early = ar.wait_timeout(Duration::from_millis(1));
    /// assert!(ar.wait_timeout(Duration::from_secs(60)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            self.wait();
            return true;
        };
        let mut slot = lock(&self.shared.slot);
        while !self.ready() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            slot = self
                .shared
                .cv
                .wait_timeout(slot, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Waits (as [`wait`](Self::wait)), then returns the outcome: `Ok(Some(results))` on the
    /// root, in input order; `Ok(None)` on the other ranks.
    ///
    /// # Errors
    /// As [`ClusterView::map`]: on the root [`ClusterMapError::Failed`] (lowest index, its
    /// rank and message; every other item still ran, the cluster stays usable),
    /// [`ClusterMapError::Aborted`] if [`abort`](Self::abort) stopped the map before every
    /// item was done; [`ClusterMapError::Schedule`] on every rank.
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    /// ```no_run
    /// use parview::cluster::ClusterMapError;
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<u32> = if c.is_root() { vec![1, 0, 3] } else { vec![] };
    /// match c.load_balanced().map_async(xs, |x| 6 / x).get() {
    ///     Err(ClusterMapError::Failed { index: 1, rank, .. }) => println!("item 1 failed on rank {rank}"),
    ///     Ok(None) => {} // not the root
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn get(self) -> Result<Option<T>, ClusterMapError> {
        self.wait();
        lock(&self.shared.slot)
            .take()
            .expect("the outcome is published before ready and taken once, by `get`")
    }

    /// `(done, total)` items on the root, from counters bumped once per finished chunk: never
    /// decreases, reaches `total` unless aborted. `(0, 0)` on the other ranks.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<u32> = if c.is_root() { (0..10).collect() } else { vec![] };
    /// let ar = c.load_balanced().map_async(xs, |x| *x);
    /// let (done, total) = ar.progress();
    /// assert!(done <= total);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.shared
            .tracker
            .as_ref()
            .map_or((0, 0), |t| (t.done(), t.total))
    }

    /// Stops the map (root): no chunk is handed out after this, every rank is told at once and
    /// its engines skip the items left in their chunks; `get` then returns
    /// [`ClusterMapError::Aborted`] unless every item was already done. Does nothing on the
    /// other ranks.
    ///
    /// # Examples
    /// ```no_run
    /// use parview::cluster::ClusterMapError;
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..100_000, |i| {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    ///     i
    /// });
    /// ar.abort();
    /// let r = ar.get();
    /// if c.is_root() {
    ///     assert!(matches!(r, Err(ClusterMapError::Aborted { .. })));
    /// }
    /// ```
    pub fn abort(&self) {
        if self.root {
            self.shared.abort.abort();
        }
    }

    /// Time since the map was started (ipyparallel's `elapsed`).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..10, |i| i);
    /// ar.wait();
    /// assert!(ar.elapsed() > std::time::Duration::ZERO);
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// First chunk start to last chunk finish so far, over all ranks (root; zero elsewhere).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..100, |i| i);
    /// ar.wait();
    /// assert!(ar.wall_time() <= ar.elapsed());
    /// ```
    pub fn wall_time(&self) -> Duration {
        self.timings().wall_time
    }

    /// Sum of the busy time of all chunks so far, over all ranks (root; zero elsewhere);
    /// `serial_time / wall_time` is the achieved parallelism.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..100, |i| i);
    /// ar.wait();
    /// assert_eq!(ar.timings().serial_time, ar.serial_time());
    /// ```
    pub fn serial_time(&self) -> Duration {
        self.timings().serial_time
    }

    /// Wall and serial time together (root; zero elsewhere).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..100, |i| i);
    /// ar.wait();
    /// let _ = ar.timings().wall_time;
    /// ```
    pub fn timings(&self) -> Timings {
        self.shared
            .tracker
            .as_ref()
            .map_or_else(Timings::default, |t| t.timings())
    }

    /// The map's timeline, one lane per (rank, engine) as in [`MapReport`](super::MapReport),
    /// once the map has ended (root; `None` elsewhere). Taken once: later calls return `None`.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..100, |i| i);
    /// ar.wait();
    /// if let Some(tl) = ar.timeline() {
    ///     tl.write_svg("map_async.svg").unwrap();
    /// }
    /// ```
    pub fn timeline(&self) -> Option<Timeline> {
        if !self.ready() {
            return None;
        }
        lock(&self.shared.timeline).take()
    }

    /// Draws a progress bar for this map on the root's stderr until it ends (hidden when
    /// stderr is not a terminal; nothing on the other ranks). Feature `progress`.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..1000, |i| i + 1);
    /// ar.progress_bar("increment");
    /// let _ = ar.get();
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_bar(&self, label: &str) {
        if let Some(t) = &self.shared.tracker {
            crate::progress::Bar::start(label, t.clone()).detach();
        }
    }
}

impl<T> Drop for ClusterAsyncResult<'_, T> {
    fn drop(&mut self) {
        if self.root && !self.ready() {
            self.shared.abort.abort();
        }
    }
}

/// Results of [`ClusterView::imap_unordered`] on the root, as they arrive: `(index, outcome)`
/// in completion order, every index exactly once unless the map is aborted (then the
/// iteration ends early). An item that panicked comes as `Err(ClusterMapError::Failed)`
/// naming its rank. On the other ranks the iterator yields nothing: `next` returns `None` once
/// the rank's part is served. Dropping it on the root aborts what is left.
///
/// # Examples
/// ```no_run
/// let c = parview::cluster::Cluster::init().unwrap();
/// let xs: Vec<u64> = if c.is_root() { (0..100).collect() } else { vec![] };
/// let mut seen = 0;
/// for (i, r) in c.load_balanced().imap_unordered(xs, |x| x * 2) {
///     assert_eq!(r.unwrap(), 2 * i as u64); // root only
///     seen += 1;
/// }
/// assert_eq!(seen, if c.is_root() { 100 } else { 0 });
/// ```
#[must_use = "iterators are lazy, and dropping the root's one aborts the map"]
pub struct ClusterImapUnordered<'c, R> {
    rx: Receiver<(usize, Result<R, ClusterMapError>)>,
    ar: ClusterAsyncResult<'c, ()>,
}

impl<R> std::fmt::Debug for ClusterImapUnordered<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterImapUnordered")
            .field("map", &self.ar)
            .finish()
    }
}

impl<R> ClusterImapUnordered<'_, R> {
    /// `(done, total)` of the underlying map (root; `(0, 0)` elsewhere).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<u8> = if c.is_root() { vec![1, 2, 3] } else { vec![] };
    /// let it = c.load_balanced().imap_unordered(xs, |x| *x);
    /// let (done, total) = it.progress();
    /// assert!(done <= total);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.ar.progress()
    }

    /// Stops the map as [`ClusterAsyncResult::abort`]; the iteration ends once the chunks
    /// out have come back.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<u8> = if c.is_root() { vec![1; 1000] } else { vec![] };
    /// let mut it = c.load_balanced().imap_unordered(xs, |x| *x);
    /// it.abort();
    /// assert!(it.count() <= 1000);
    /// ```
    pub fn abort(&self) {
        self.ar.abort();
    }
}

impl<R> Iterator for ClusterImapUnordered<'_, R> {
    type Item = (usize, Result<R, ClusterMapError>);
    fn next(&mut self) -> Option<Self::Item> {
        // The driver drops the last sender when the map has ended on this rank.
        self.rx.recv().ok()
    }
}

impl<'c> ClusterView<'c> {
    /// Starts `work` in the background on this rank; see the module docs.
    fn launch<W, T>(
        &self,
        work: W,
        stream: Option<ItemSender<W::Out>>,
        finish: impl FnOnce(Vec<W::Out>) -> T + Send + 'static,
    ) -> ClusterAsyncResult<'c, T>
    where
        W: Work + Send + 'static,
        W::Out: 'static,
        T: Send + 'static,
    {
        let c = self.cluster;
        let root = c.is_root();
        let tracker = root.then(|| Arc::new(Tracker::new(work.len(), false)));
        let shared = Arc::new(Shared::new(tracker.clone()));
        let handle = ClusterAsyncResult {
            shared: shared.clone(),
            root,
            _cluster: PhantomData,
        };
        // Collective, after the previous background map (if any) has ended on this rank.
        if let Err(e) = self.check_schedule() {
            if let Some(t) = &tracker {
                t.mark_finished();
            }
            shared.publish(Err(e), None);
            return handle;
        }
        let guard = c.inflight.begin();
        let node = c.node();
        let schedule = self.schedule;
        let mut aborts = vec![shared.abort.clone()];
        aborts.extend(self.abort.clone());
        let label = self.label().map(str::to_owned);
        let job = move || {
            let _guard = guard; // dropped last: MPI is free once everything below is done
            let was_driver = DRIVER.with(|d| d.replace(true));
            let ran = panic::catch_unwind(AssertUnwindSafe(|| {
                if node.rank == 0 {
                    let opts = RunOpts {
                        schedule,
                        aborts,
                        label: label.as_deref(),
                        timeline: true,
                        tracker,
                        stream,
                        on_chunk: None,
                    };
                    let (res, rep) = node.run_root(&work, &opts);
                    (res.map(|v| Some(finish(v))), Some(rep.timeline))
                } else {
                    drop(stream);
                    node.run_rank(&work);
                    (Ok(None), None)
                }
            }));
            match ran {
                Ok((res, timeline)) => shared.publish(res, timeline),
                Err(p) => {
                    // The protocol broke (a message could not be decoded, the engines
                    // stopped): other ranks may wait on this one forever.
                    eprintln!(
                        "parview: {} background cluster map failed: {}; aborting the MPI job \
                         (MPI_Abort)",
                        super::rank_label(),
                        payload_str(p.as_ref())
                    );
                    abort_job()
                }
            }
            DRIVER.with(|d| d.set(was_driver));
            // The user's items and closure: a panicking Drop must not take the rank down.
            if super::balanced::catching(|| {
                panic::catch_unwind(AssertUnwindSafe(move || drop(work)))
            })
            .is_err()
            {
                eprintln!("parview: dropping a background cluster map's closure panicked");
            }
        };
        let job: Arc<Mutex<Option<Job>>> = Arc::new(Mutex::new(Some(Box::new(job))));
        let theirs = job.clone();
        let spawned = std::thread::Builder::new()
            .name("parview-cluster-map".into())
            .spawn(move || {
                let j = lock(&theirs).take();
                if let Some(j) = j {
                    j();
                }
            });
        if spawned.is_err() {
            // No thread to be had: run the map here, so every rank still takes part.
            let j = lock(&job).take();
            if let Some(j) = j {
                j();
            }
        }
        handle
    }

    /// Starts a map of `f` over the root's `items_on_root` across all ranks and returns at
    /// once with a [`ClusterAsyncResult`] (the cluster's `AsyncResult`): `ready`, `wait`,
    /// `wait_timeout`, `get`, `progress`, `abort`, timings and the timeline. Collective: every
    /// rank calls it (the items are read on the root only; other ranks pass an empty `Vec`)
    /// and gets a handle; on the root `get` gives `Ok(Some(results))` in input order, on the
    /// others `Ok(None)` once their part is served.
    ///
    /// The map is driven by a background thread on each rank. Until it has ended on a rank,
    /// every other cluster call that talks to MPI on that rank (a collective, another map)
    /// **waits for it**; see [`Cluster`], "A background map in flight". `f` must not call the
    /// cluster.
    ///
    /// # Panics
    /// Never for an item: an item's panic is returned by `get` as
    /// [`ClusterMapError::Failed`]. A broken protocol (a rank running another program) aborts
    /// the MPI job with a message, as the blocking map does.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let words: Vec<String> = if c.is_root() { vec!["a".into(), "bb".into()] } else { vec![] };
    /// let ar = c.load_balanced().map_async(words, |w| w.len());
    /// if let Some(lens) = ar.get().unwrap() {
    ///     assert_eq!(lens, vec![1, 2]);
    /// }
    /// ```
    pub fn map_async<T, R, F>(&self, items_on_root: Vec<T>, f: F) -> ClusterAsyncResult<'c, Vec<R>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(&T) -> R + Send + Sync + 'static,
    {
        self.launch(
            OwnedItems {
                items: items_on_root,
                f,
            },
            None,
            |v| v,
        )
    }

    /// [`map_async`](Self::map_async) over the indices of `range` (only index ranges travel).
    /// Every rank must pass the same `range`.
    ///
    /// # Panics
    /// As [`map_async`](Self::map_async).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ar = c.load_balanced().map_range_async(0..100, |i| i * i);
    /// if let Some(v) = ar.get().unwrap() {
    ///     assert_eq!(v[9], 81);
    /// }
    /// ```
    pub fn map_range_async<R, F>(
        &self,
        range: std::ops::Range<usize>,
        f: F,
    ) -> ClusterAsyncResult<'c, Vec<R>>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(usize) -> R + Send + Sync + 'static,
    {
        self.launch(RangeWork { range, f }, None, |v| v)
    }

    /// Maps `f` over the root's `items_on_root` across all ranks and yields `(index, outcome)`
    /// on the root **as the chunks come back** (completion order), each index exactly once; an
    /// item's panic is `Err(ClusterMapError::Failed)` naming its rank, and the other items
    /// still come. Collective, driven in the background as [`map_async`](Self::map_async) (the
    /// same rule for other cluster calls meanwhile). On the other ranks the iterator yields
    /// nothing; iterating it (or any later cluster call) waits until the rank's part is served.
    ///
    /// # Panics
    /// As [`map_async`](Self::map_async).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<u32> = if c.is_root() { (0..50).collect() } else { vec![] };
    /// let mut got: Vec<(usize, u32)> = c
    ///     .load_balanced()
    ///     .imap_unordered(xs, |x| x + 1)
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// got.sort();
    /// if c.is_root() {
    ///     assert_eq!(got.len(), 50);
    /// }
    /// ```
    pub fn imap_unordered<T, R, F>(
        &self,
        items_on_root: Vec<T>,
        f: F,
    ) -> ClusterImapUnordered<'c, R>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(&T) -> R + Send + Sync + 'static,
    {
        let (tx, rx) = unbounded();
        let ar = self.launch(
            OwnedItems {
                items: items_on_root,
                f,
            },
            Some(tx),
            |_| (),
        );
        ClusterImapUnordered { rx, ar }
    }
}

/// A driver thread's body, kept where the caller can take it back if no thread can be started.
type Job = Box<dyn FnOnce() + Send>;

/// A map over items the driver thread owns.
struct OwnedItems<T, F> {
    items: Vec<T>,
    f: F,
}

impl<T, R, F> OwnedItems<T, F>
where
    F: Fn(&T) -> R,
{
    fn view(&self) -> ItemsWork<'_, T, &F> {
        ItemsWork {
            items: &self.items,
            f: &self.f,
        }
    }
}

impl<T, R, F> Work for OwnedItems<T, F>
where
    T: Serialize + DeserializeOwned + Sync,
    R: Serialize + DeserializeOwned + Send,
    F: Fn(&T) -> R + Sync,
{
    type Out = R;
    fn len(&self) -> usize {
        self.items.len()
    }
    fn encode(&self, id: u64, range: std::ops::Range<usize>) -> Result<Vec<u8>, String> {
        self.view().encode(id, range)
    }
    fn run_local(
        &self,
        range: std::ops::Range<usize>,
        cancel: &AtomicBool,
    ) -> super::balanced::ChunkOut<R> {
        self.view().run_local(range, cancel)
    }
    fn run_remote(&self, bytes: &[u8], cancel: &AtomicBool) -> super::balanced::ChunkOut<R> {
        self.view().run_remote(bytes, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn settle_waits_for_the_map_in_flight() {
        let f = Arc::new(InFlight::default());
        f.settle(); // nothing in flight: returns at once
        let guard = f.begin();
        let (tx, rx) = mpsc::channel();
        let f2 = f.clone();
        let waiter = std::thread::spawn(move || {
            f2.settle();
            tx.send(()).unwrap();
            let _second = f2.begin(); // a second map starts once the first has ended
        });
        // Watchdog-style waits: never block the test forever.
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "settled while in flight"
        );
        drop(guard);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("settle did not return after the map ended");
        waiter.join().unwrap();
        f.settle(); // the second guard was dropped with the thread
    }

    #[test]
    fn the_outcome_is_published_once() {
        let shared = Arc::new(Shared::<Vec<u8>>::new(None));
        let ar = ClusterAsyncResult {
            shared: shared.clone(),
            root: true,
            _cluster: PhantomData,
        };
        assert!(!ar.ready());
        assert!(!ar.wait_timeout(Duration::from_millis(1)));
        assert_eq!(ar.progress(), (0, 0));
        let publisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            shared.publish(Ok(Some(vec![1, 2])), None);
        });
        assert!(ar.wait_timeout(Duration::from_secs(30)), "never published");
        assert!(ar.timeline().is_none());
        assert_eq!(ar.get(), Ok(Some(vec![1, 2])));
        publisher.join().unwrap();
    }
}
