//! Load-balanced maps across ranks ([`ClusterView`]): the root hands out chunks on demand.
//!
//! # Protocol
//!
//! Every rank calls the same map (SPMD). The root owns a [`Dispenser`] over `0..n` with one
//! participant per engine of the whole job (`Σ workers`), and a [`Claimer`] per rank. It keeps
//! each rank supplied with up to `workers + 1` chunks: one per engine plus one queued (*ask
//! ahead*: a rank has its next chunk before it finishes the current one, so it never waits a
//! round trip). A finished chunk's result message is the request for the next one. The root's
//! own engines compute too: they take their chunks from an in-process queue and read the
//! items in place; only the MPI thread (the one that created the [`Cluster`]) calls MPI.
//!
//! Messages (bytes, [postcard]): root → rank on [`TAG_WORK`], a `WorkMsg` (a chunk with its
//! id, first index and items, or `Stop`); rank → root on [`TAG_DONE`], a `DoneMsg` (chunk id,
//! engine, begin/end times and the chunk's results or its first panic). The root sends with
//! blocking sends; a rank sends with a nonblocking send and keeps receiving while it completes,
//! so two large messages crossing each other cannot deadlock. Each side's MPI thread polls
//! with a short back-off (20 µs growing to 250 µs) and wakes at once when one of its engines
//! finishes a chunk, so on a machine with as many engines as cores it takes almost no CPU
//! from them.
//!
//! `Stop` goes to a rank only after every chunk it was given came back, so no message of one
//! map can be read by the next.

use std::cell::Cell;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::Communicator;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Cluster, payload_str};
use crate::schedule::{Claimer, Dispenser};
use crate::timeline::{ChunkRecord, Lane, Timeline};
use crate::{Schedule, ScheduleError};

/// Tag of root → rank messages (`WorkMsg`).
pub(super) const TAG_WORK: i32 = 0x7057;
/// Tag of rank → root messages (`DoneMsg`).
pub(super) const TAG_DONE: i32 = 0x7058;

/// Shortest and longest sleep of an MPI thread that found nothing to do.
const BACKOFF_MIN: Duration = Duration::from_micros(20);
const BACKOFF_MAX: Duration = Duration::from_micros(250);

thread_local! {
    /// Set while a cluster map runs a user item on this thread: the panic hook then reports the
    /// panic as caught instead of aborting the job.
    pub(super) static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Why a cluster map did not return all its results. Returned on the root; other ranks get
/// `Ok(None)` unless the map could not start on every rank.
///
/// # Examples
/// ```
/// use parview::cluster::ClusterMapError;
/// let e = ClusterMapError::Failed { rank: 1, index: 7, message: "boom".into() };
/// assert_eq!(e.to_string(), "item 7 panicked on rank 1: boom");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterMapError {
    /// An item panicked (or its bytes could not be decoded) on `rank`: the lowest such index.
    /// Every other item still ran, and the cluster stays usable.
    #[error("item {index} panicked on rank {rank}: {message}")]
    Failed {
        /// The rank that ran the item.
        rank: usize,
        /// The item's index in the input.
        index: usize,
        /// The panic message.
        message: String,
    },
    /// The map was aborted through its [`AbortHandle`]; `done` items had finished.
    #[error("cluster map aborted after {done} of {total} items were done")]
    Aborted {
        /// Items finished before the map stopped.
        done: usize,
        /// Items in the map.
        total: usize,
    },
    /// The view's schedule is invalid (e.g. `Dynamic(0)`); nothing ran.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// Stops a cluster map from another thread of the root: no chunk is handed out after
/// [`abort`](AbortHandle::abort), the chunks already out finish, and the map returns
/// [`ClusterMapError::Aborted`]. Clones share the flag; [`reset`](AbortHandle::reset) makes
/// the handle usable for the next map.
///
/// # Examples
/// ```
/// let h = parview::cluster::AbortHandle::new();
/// assert!(!h.is_aborted());
/// h.clone().abort();
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
    /// assert!(!parview::cluster::AbortHandle::new().is_aborted());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the maps watching this handle to stop.
    ///
    /// # Examples
    /// ```
    /// let h = parview::cluster::AbortHandle::new();
    /// h.abort();
    /// assert!(h.is_aborted());
    /// ```
    pub fn abort(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`abort`](AbortHandle::abort) was called (since the last reset).
    ///
    /// # Examples
    /// ```
    /// assert!(!parview::cluster::AbortHandle::default().is_aborted());
    /// ```
    pub fn is_aborted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Clears the flag.
    ///
    /// # Examples
    /// ```
    /// let h = parview::cluster::AbortHandle::new();
    /// h.abort();
    /// h.reset();
    /// assert!(!h.is_aborted());
    /// ```
    pub fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What one rank did in a map: its engines, the items and chunks it ran and their busy time
/// (the sum over its engines).
///
/// # Examples
/// ```
/// use parview::cluster::RankLoad;
/// let l = RankLoad { rank: 1, engines: 2, items: 10, chunks: 3, busy: std::time::Duration::ZERO };
/// assert_eq!(l.items, 10);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RankLoad {
    /// The rank.
    pub rank: usize,
    /// Its local engines (workers).
    pub engines: usize,
    /// Items it ran.
    pub items: usize,
    /// Chunks it was given.
    pub chunks: usize,
    /// Sum of its chunks' busy times.
    pub busy: Duration,
}

/// A map's results with where and when they were computed (root only).
///
/// `timeline` has one lane per (rank, engine): lane `lanes[k]` is `(rank, engine)`, and in
/// the [`Timeline`] it is `Lane::Engine(k)`, so the same Perfetto trace and SVG writers work.
/// Rank clocks are aligned on the root's when each rank got its first chunk (off by the
/// one-way message latency, microseconds).
///
/// # Examples
/// ```no_run
/// let c = parview::cluster::Cluster::init().unwrap();
/// let xs: Vec<u64> = if c.is_root() { (0..100).collect() } else { vec![] };
/// if let Some(rep) = c.load_balanced().map_report(&xs, |x| x * 2).unwrap() {
///     assert_eq!(rep.results[99], 198);
///     rep.timeline.write_svg("cluster.svg").unwrap();
///     for l in &rep.loads {
///         println!("rank {}: {} items, busy {:?}", l.rank, l.items, l.busy);
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct MapReport<R> {
    /// The results, in input order.
    pub results: Vec<R>,
    /// Per rank, in rank order.
    pub loads: Vec<RankLoad>,
    /// From the map's start on the root to its last chunk's end.
    pub wall: Duration,
    /// One lane per (rank, engine); see [`MapReport::lanes`].
    pub timeline: Timeline,
    /// `(rank, engine)` of each timeline lane.
    pub lanes: Vec<(usize, usize)>,
}

/// The load-balanced view of a [`Cluster`]: maps whose chunks the root hands out on demand to
/// every rank (its own engines included), with the local [`Schedule`] vocabulary.
/// Created by [`Cluster::load_balanced`].
///
/// * `Static`: one block per (rank, engine) of the whole job;
/// * `StaticChunked(c)`: chunks of `c` dealt round-robin to the (rank, engine) slots;
/// * `Dynamic(c)`, `Guided(m)`, `Adaptive` (the default): chunks handed to whichever rank has
///   room, `Guided` and `Adaptive` sized over all engines of the job (`Adaptive` grows each
///   rank's chunks while they finish in under [`Schedule::ADAPTIVE_TARGET`]).
///
/// Items and results are any `Serialize + DeserializeOwned` type; they travel as [postcard]
/// bytes (compact, no schema, serde-native). Every map is collective: all ranks call it, in
/// the same order, with the same closure; the items are read on the root only.
///
/// # Examples
/// ```no_run
/// use parview::Schedule;
/// let c = parview::cluster::Cluster::init().unwrap();
/// let words: Vec<String> = if c.is_root() { vec!["a".into(), "bb".into()] } else { vec![] };
/// let lens = c.load_balanced().schedule(Schedule::Dynamic(1)).map(&words, |w| w.len()).unwrap();
/// if let Some(lens) = lens {
///     assert_eq!(lens, vec![1, 2]); // root only
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ClusterView<'c> {
    cluster: &'c Cluster,
    schedule: Schedule,
    abort: Option<AbortHandle>,
    #[cfg(feature = "progress")]
    progress: Option<String>,
}

/// A chunk on its way to an engine of this rank.
struct Job {
    id: u64,
    range: Range<usize>,
    /// The `WorkMsg` bytes (remote ranks); empty on the root, whose engines read in place.
    bytes: Vec<u8>,
}

/// What travels root → rank.
#[derive(Serialize, Deserialize)]
enum WorkMsg<S> {
    /// Variant 0: postcard writes the variant index first, so the message starts with byte 0.
    Chunk {
        id: u64,
        start: u64,
        len: u64,
        items: S,
    },
    /// Variant 1: the message is the single byte 1.
    Stop,
}

/// A chunk's outcome.
#[derive(Serialize, Deserialize)]
pub(super) enum ChunkOut<R> {
    Done(Vec<R>),
    /// The lowest failing index of the chunk, its message, how many items failed.
    Failed {
        index: u64,
        message: String,
    },
}

/// What travels rank → root.
#[derive(Serialize, Deserialize)]
struct DoneMsg<O> {
    id: u64,
    engine: u32,
    /// Since the rank's first chunk arrived.
    began_ns: u64,
    ended_ns: u64,
    out: O,
}

/// Runs one user item, catching its panic as a message.
pub(super) fn catch_item<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    CATCHING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    r.map_err(|payload| {
        let msg = payload_str(payload.as_ref()).to_owned();
        // A payload whose Drop panics must not kill the engine.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        msg
    })
}

/// Runs the `len` items of a chunk starting at global index `start`; every item runs even
/// after a failure (as in the local maps), the first failure is reported.
fn run_items<R>(start: usize, len: usize, item: impl Fn(usize) -> R) -> ChunkOut<R> {
    let mut out = Vec::with_capacity(len);
    let mut failed: Option<(usize, String)> = None;
    for k in 0..len {
        match catch_item(|| item(k)) {
            Ok(r) if failed.is_none() => out.push(r),
            Ok(_) => {}
            Err(message) => {
                if failed.is_none() {
                    failed = Some((start + k, message));
                    out.clear();
                }
            }
        }
    }
    match failed {
        None => ChunkOut::Done(out),
        Some((index, message)) => ChunkOut::Failed {
            index: index as u64,
            message,
        },
    }
}

/// An engine's loop: chunks from `jobs` until the queue closes, outcomes to `done`.
fn engine_loop<O>(
    engine: usize,
    jobs: &Receiver<Job>,
    done: &Sender<O>,
    run: &(dyn Fn(&Job, usize) -> O + Sync),
) {
    while let Ok(job) = jobs.recv() {
        if done.send(run(&job, engine)).is_err() {
            break;
        }
    }
}

/// How a map's chunks are computed, on the root (items in place) and on the other ranks
/// (items decoded from the chunk's bytes).
pub(super) trait Work: Sync {
    type Out: Serialize + DeserializeOwned + Send;
    /// Number of items (root only).
    fn len(&self) -> usize;
    /// The `WorkMsg::Chunk` bytes for `range` (root only).
    fn encode(&self, id: u64, range: Range<usize>) -> Result<Vec<u8>, String>;
    /// Runs `range` on the root.
    fn run_local(&self, range: Range<usize>) -> ChunkOut<Self::Out>;
    /// Runs a chunk from its bytes on another rank.
    fn run_remote(&self, bytes: &[u8]) -> ChunkOut<Self::Out>;
}

/// A map over the root's items.
pub(super) struct ItemsWork<'a, T, F> {
    pub(super) items: &'a [T],
    pub(super) f: F,
}

impl<T, R, F> Work for ItemsWork<'_, T, F>
where
    T: Serialize + DeserializeOwned + Sync,
    R: Serialize + DeserializeOwned + Send,
    F: Fn(&T) -> R + Sync,
{
    type Out = R;
    fn len(&self) -> usize {
        self.items.len()
    }
    fn encode(&self, id: u64, r: Range<usize>) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(&WorkMsg::Chunk {
            id,
            start: r.start as u64,
            len: r.len() as u64,
            items: &self.items[r],
        })
        .map_err(|e| format!("encoding the items: {e}"))
    }
    fn run_local(&self, r: Range<usize>) -> ChunkOut<R> {
        let items = &self.items[r.clone()];
        run_items(r.start, r.len(), |k| (self.f)(&items[k]))
    }
    fn run_remote(&self, bytes: &[u8]) -> ChunkOut<R> {
        match postcard::from_bytes::<WorkMsg<Vec<T>>>(bytes) {
            Ok(WorkMsg::Chunk { start, items, .. }) => {
                run_items(start as usize, items.len(), |k| (self.f)(&items[k]))
            }
            Ok(WorkMsg::Stop) => unreachable!("Stop is handled by the MPI thread"),
            Err(e) => ChunkOut::Failed {
                index: decode_start(bytes),
                message: format!("decoding the chunk's items failed on this rank: {e}"),
            },
        }
    }
}

/// The chunk's first index from a message whose items could not be decoded.
fn decode_start(bytes: &[u8]) -> u64 {
    postcard::take_from_bytes::<(u8, u64, u64)>(bytes).map_or(0, |((_, _, s), _)| s)
}

/// A map over an index range: only the range travels.
pub(super) struct RangeWork<F> {
    pub(super) range: Range<usize>,
    pub(super) f: F,
}

impl<R, F> Work for RangeWork<F>
where
    R: Serialize + DeserializeOwned + Send,
    F: Fn(usize) -> R + Sync,
{
    type Out = R;
    fn len(&self) -> usize {
        self.range.len()
    }
    fn encode(&self, id: u64, r: Range<usize>) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(&WorkMsg::Chunk {
            id,
            start: r.start as u64,
            len: r.len() as u64,
            items: (),
        })
        .map_err(|e| e.to_string())
    }
    fn run_local(&self, r: Range<usize>) -> ChunkOut<R> {
        let base = self.range.start;
        run_items(r.start, r.len(), |k| (self.f)(base + r.start + k))
    }
    fn run_remote(&self, bytes: &[u8]) -> ChunkOut<R> {
        match postcard::from_bytes::<WorkMsg<()>>(bytes) {
            Ok(WorkMsg::Chunk { start, len, .. }) => {
                let (start, len) = (start as usize, len as usize);
                let base = self.range.start;
                run_items(start, len, |k| (self.f)(base + start + k))
            }
            Ok(WorkMsg::Stop) => unreachable!("Stop is handled by the MPI thread"),
            Err(e) => ChunkOut::Failed {
                index: decode_start(bytes),
                message: format!("decoding a range chunk failed on this rank: {e}"),
            },
        }
    }
}

/// A chunk finished by one of the root's engines: id, engine, begin, end, outcome.
type LocalDone<R> = (u64, usize, Instant, Instant, ChunkOut<R>);

/// Next sleep after an idle poll.
fn backoff(b: Duration) -> Duration {
    (b * 2).min(BACKOFF_MAX)
}

/// Why the root's map loop ended early.
enum Ended {
    Complete,
    Aborted,
}

/// Settings of one map run on the root.
pub(super) struct RunOpts<'a> {
    pub(super) schedule: Schedule,
    pub(super) abort: Option<&'a AbortHandle>,
    pub(super) label: Option<&'a str>,
    pub(super) timeline: bool,
}

/// The root's bookkeeping of one map.
struct RootState<R> {
    results: Vec<Option<R>>,
    first_fail: Option<(usize, usize, String)>,
    loads: Vec<RankLoad>,
    records: Vec<ChunkRecord>,
    lane_base: Vec<usize>,
    /// Per rank: when (since t0) it got its first chunk.
    offset: Vec<Option<Duration>>,
    /// Chunk id → (rank, range).
    chunks: Vec<(usize, Range<usize>)>,
    done_items: usize,
    wall: Duration,
}

impl<R> RootState<R> {
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        id: u64,
        engine: usize,
        began: Duration,
        ended: Duration,
        out: ChunkOut<R>,
        timeline: bool,
    ) -> Option<(usize, usize, Duration)> {
        let (rank, range) = self.chunks.get(id as usize)?.clone();
        let off = self.offset[rank].unwrap_or_default();
        let (b, e) = (off + began, off + ended.max(began));
        self.wall = self.wall.max(e);
        let load = &mut self.loads[rank];
        load.items += range.len();
        load.busy += e - b;
        self.done_items += range.len();
        if timeline {
            self.records.push(ChunkRecord {
                lane: Lane::Engine(self.lane_base[rank] + engine),
                start: range.start,
                end: range.end,
                began: b,
                ended: e,
                stolen: false,
            });
        }
        match out {
            ChunkOut::Done(v) if v.len() == range.len() => {
                for (slot, r) in self.results[range.clone()].iter_mut().zip(v) {
                    *slot = Some(r);
                }
            }
            ChunkOut::Done(v) => self.fail(
                rank,
                range.start,
                format!(
                    "rank returned {} results for {} items",
                    v.len(),
                    range.len()
                ),
            ),
            ChunkOut::Failed { index, message } => self.fail(rank, index as usize, message),
        }
        Some((rank, range.len(), e - b))
    }

    fn fail(&mut self, rank: usize, index: usize, message: String) {
        if self.first_fail.as_ref().is_none_or(|(_, i, _)| index < *i) {
            self.first_fail = Some((rank, index, message));
        }
    }
}

impl Cluster {
    /// The root's side of a map: dispense, serve, collect. Returns results in input order.
    pub(super) fn run_root<W: Work>(
        &self,
        work: &W,
        opts: &RunOpts<'_>,
    ) -> (Result<Vec<W::Out>, ClusterMapError>, MapReport<()>) {
        let t0 = Instant::now();
        let n = work.len();
        let size = self.size;
        let workers = &self.rank_workers;
        let engines: usize = workers.iter().sum();
        let dispenser = Dispenser::new(opts.schedule, n, engines.max(1));
        let mut claimers: Vec<Claimer> = (0..size).map(|_| Claimer::default()).collect();
        let mut exhausted = vec![false; size];
        let mut outstanding = vec![0usize; size];
        let mut lane_base = Vec::with_capacity(size);
        let mut lanes = Vec::with_capacity(engines);
        for (r, &w) in workers.iter().enumerate() {
            lane_base.push(lanes.len());
            lanes.extend((0..w).map(|e| (r, e)));
        }
        let mut st = RootState::<W::Out> {
            results: (0..n).map(|_| None).collect(),
            first_fail: None,
            loads: (0..size)
                .map(|r| RankLoad {
                    rank: r,
                    engines: workers[r],
                    ..RankLoad::default()
                })
                .collect(),
            records: Vec::new(),
            lane_base,
            offset: vec![None; size],
            chunks: Vec::new(),
            done_items: 0,
            wall: Duration::ZERO,
        };
        #[cfg(feature = "progress")]
        let tracker = opts
            .label
            .map(|_| Arc::new(crate::map::Tracker::new(n, false)));
        #[cfg(feature = "progress")]
        let bar = opts
            .label
            .zip(tracker.clone())
            .map(|(l, t)| crate::progress::Bar::start(l, t));
        #[cfg(not(feature = "progress"))]
        let _ = opts.label;

        let mut ended = Ended::Complete;
        std::thread::scope(|s| {
            let (job_tx, job_rx) = unbounded::<Job>();
            let (done_tx, done_rx) = unbounded::<LocalDone<W::Out>>();
            let pool = &self.pool;
            let driver = s.spawn(move || {
                let run = |job: &Job, engine: usize| {
                    let began = Instant::now();
                    let out = work.run_local(job.range.clone());
                    (job.id, engine, began, Instant::now(), out)
                };
                pool.direct()
                    .apply(|e| engine_loop(e, &job_rx, &done_tx, &run));
            });
            let mut nap = BACKOFF_MIN;
            let mut carry: Option<LocalDone<W::Out>> = None;
            loop {
                if opts.abort.is_some_and(AbortHandle::is_aborted) && !dispenser.stopped() {
                    dispenser.stop();
                    ended = Ended::Aborted;
                }
                let mut busy = false;
                // Hand out: first up to one chunk per engine of each rank, then one ahead.
                for limit_extra in [0usize, 1] {
                    loop {
                        let mut gave = false;
                        for r in 0..size {
                            if exhausted[r] || outstanding[r] >= workers[r] + limit_extra {
                                continue;
                            }
                            match dispenser.next(&mut claimers[r], None) {
                                None => exhausted[r] = true,
                                Some((_, range)) => {
                                    let id = st.chunks.len() as u64;
                                    st.chunks.push((r, range.clone()));
                                    if st.offset[r].is_none() {
                                        st.offset[r] = Some(t0.elapsed());
                                    }
                                    outstanding[r] += 1;
                                    gave = true;
                                    if r == 0 {
                                        let _ = job_tx.send(Job {
                                            id,
                                            range,
                                            bytes: Vec::new(),
                                        });
                                    } else {
                                        match work.encode(id, range.clone()) {
                                            Ok(bytes) => self
                                                .world
                                                .process_at_rank(r as i32)
                                                .send_with_tag(&bytes[..], TAG_WORK),
                                            Err(message) => {
                                                outstanding[r] -= 1;
                                                st.record(
                                                    id,
                                                    0,
                                                    Duration::ZERO,
                                                    Duration::ZERO,
                                                    ChunkOut::Failed {
                                                        index: range.start as u64,
                                                        message,
                                                    },
                                                    false,
                                                );
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        if !gave {
                            break;
                        }
                        busy = true;
                    }
                }
                // Results from other ranks.
                while let Some(probed) = self
                    .world
                    .any_process()
                    .immediate_matched_probe_with_tag(TAG_DONE)
                {
                    let (bytes, status) = probed.matched_receive_vec::<u8>();
                    let src = status.source_rank() as usize;
                    busy = true;
                    let got = match postcard::from_bytes::<DoneMsg<ChunkOut<W::Out>>>(&bytes) {
                        Ok(m) => st.record(
                            m.id,
                            m.engine as usize,
                            Duration::from_nanos(m.began_ns),
                            Duration::from_nanos(m.ended_ns),
                            m.out,
                            opts.timeline,
                        ),
                        Err(e) => {
                            // Cannot tell which chunk: the map cannot complete correctly.
                            panic!(
                                "parview: rank 0 could not decode a result message from rank \
                                 {src}: {e}"
                            );
                        }
                    };
                    let Some((rank, items, busy_t)) = got else {
                        // A chunk this map never handed out: the protocol is broken, and
                        // waiting on would hang. The hook aborts the job on this thread.
                        panic!("parview: rank {src} returned a chunk the root never sent it")
                    };
                    {
                        outstanding[rank] -= 1;
                        claimers[rank].grow(busy_t);
                        claimers[rank].measured(busy_t, items);
                        #[cfg(feature = "progress")]
                        if let Some(t) = &tracker {
                            let now = Instant::now();
                            t.chunk(Lane::Caller, 0..0, now, now, items, false, &mut Vec::new());
                        }
                    }
                }
                // Results of the root's own engines.
                let mut locals: Vec<LocalDone<W::Out>> = carry.take().into_iter().collect();
                while let Ok(d) = done_rx.try_recv() {
                    locals.push(d);
                }
                for (id, engine, began, end, out) in locals {
                    busy = true;
                    let off = st.offset[0].unwrap_or_default();
                    let rel = |t: Instant| t.saturating_duration_since(t0).saturating_sub(off);
                    if let Some((rank, items, busy_t)) =
                        st.record(id, engine, rel(began), rel(end), out, opts.timeline)
                    {
                        outstanding[rank] -= 1;
                        claimers[rank].grow(busy_t);
                        claimers[rank].measured(busy_t, items);
                        #[cfg(feature = "progress")]
                        if let Some(t) = &tracker {
                            let now = Instant::now();
                            t.chunk(Lane::Caller, 0..0, now, now, items, false, &mut Vec::new());
                        }
                    }
                }
                let all_out = exhausted.iter().all(|&e| e) || dispenser.stopped();
                if all_out && outstanding.iter().all(|&o| o == 0) {
                    break;
                }
                if busy {
                    nap = BACKOFF_MIN;
                } else {
                    match done_rx.recv_timeout(nap) {
                        Ok(d) => {
                            carry = Some(d);
                            nap = BACKOFF_MIN;
                        }
                        Err(RecvTimeoutError::Timeout) => nap = backoff(nap),
                        Err(RecvTimeoutError::Disconnected) => {
                            panic!("parview: the root's engines stopped during a cluster map")
                        }
                    }
                }
            }
            for r in 1..size {
                let stop = postcard::to_allocvec(&WorkMsg::<()>::Stop).expect("encodes");
                self.world
                    .process_at_rank(r as i32)
                    .send_with_tag(&stop[..], TAG_WORK);
            }
            drop(job_tx);
            if let Err(p) = driver.join() {
                panic::resume_unwind(p);
            }
        });
        #[cfg(feature = "progress")]
        {
            if let Some(t) = &tracker {
                t.mark_finished();
            }
            if let Some(b) = bar {
                b.finish();
            }
        }
        let mut chunk_counts = vec![0usize; size];
        for (rank, _) in &st.chunks {
            chunk_counts[*rank] += 1;
        }
        for (l, c) in st.loads.iter_mut().zip(chunk_counts) {
            l.chunks = c;
        }
        let wall = st.wall;
        let records = std::mem::take(&mut st.records)
            .into_iter()
            .map(|mut rec| {
                rec.ended = rec.ended.min(wall);
                rec.began = rec.began.min(rec.ended);
                rec
            })
            .collect();
        let label = format!("cluster load-balanced ({})", opts.schedule);
        let report = MapReport {
            results: Vec::new(),
            loads: st.loads.clone(),
            wall,
            timeline: Timeline::new(label, engines, wall, records),
            lanes,
        };
        let result = if let Some((rank, index, message)) = st.first_fail.take() {
            Err(ClusterMapError::Failed {
                rank,
                index,
                message,
            })
        } else if matches!(ended, Ended::Aborted) {
            Err(ClusterMapError::Aborted {
                done: st.done_items,
                total: n,
            })
        } else {
            Ok(st
                .results
                .into_iter()
                .map(|r| r.expect("every chunk came back"))
                .collect())
        };
        (result, report)
    }

    /// A non-root rank's side of a map: receive chunks, run them on the local engines, send
    /// the outcomes, until `Stop`.
    pub(super) fn run_rank<W: Work>(&self, work: &W) {
        let root = self.world.process_at_rank(0);
        let origin: OnceLock<Instant> = OnceLock::new();
        std::thread::scope(|s| {
            let (job_tx, job_rx) = unbounded::<Job>();
            let (done_tx, done_rx) = unbounded::<Vec<u8>>();
            let pool = &self.pool;
            let origin = &origin;
            let driver = s.spawn(move || {
                let run = |job: &Job, engine: usize| {
                    let began = Instant::now();
                    let out = work.run_remote(&job.bytes);
                    let ended = Instant::now();
                    let o = *origin.get().expect("set before the first job");
                    let ns = |t: Instant| t.saturating_duration_since(o).as_nanos() as u64;
                    let msg = DoneMsg {
                        id: job.id,
                        engine: engine as u32,
                        began_ns: ns(began),
                        ended_ns: ns(ended),
                        out,
                    };
                    postcard::to_allocvec(&msg).unwrap_or_else(|e| {
                        postcard::to_allocvec(&DoneMsg::<ChunkOut<()>> {
                            id: job.id,
                            engine: engine as u32,
                            began_ns: ns(began),
                            ended_ns: ns(ended),
                            out: ChunkOut::Failed {
                                index: job.range.start as u64,
                                message: format!("encoding the chunk's results failed: {e}"),
                            },
                        })
                        .expect("an error message encodes")
                    })
                };
                pool.direct()
                    .apply(|e| engine_loop(e, &job_rx, &done_tx, &run));
            });
            // Receives every pending work message; returns true on Stop.
            let receive = |job_tx: &Sender<Job>| -> (bool, bool) {
                let mut got = false;
                while let Some(probed) = root.immediate_matched_probe_with_tag(TAG_WORK) {
                    let (bytes, _) = probed.matched_receive_vec::<u8>();
                    got = true;
                    if bytes.first() == Some(&1) {
                        return (true, got);
                    }
                    origin.get_or_init(Instant::now);
                    let (id, start, len) = postcard::take_from_bytes::<(u8, u64, u64, u64)>(&bytes)
                        .map_or((u64::MAX, 0, 0), |((_, id, s, l), _)| (id, s, l));
                    let _ = job_tx.send(Job {
                        id,
                        range: start as usize..(start + len) as usize,
                        bytes,
                    });
                }
                (false, got)
            };
            let mut stop = false;
            let mut nap = BACKOFF_MIN;
            while !stop {
                let (s, mut busy) = receive(&job_tx);
                stop = s;
                while let Ok(msg) = done_rx.try_recv() {
                    stop |= self.send_done(&msg, &|| receive(&job_tx).0);
                    busy = true;
                }
                if stop {
                    break;
                }
                if busy {
                    nap = BACKOFF_MIN;
                } else {
                    match done_rx.recv_timeout(nap) {
                        Ok(msg) => {
                            stop |= self.send_done(&msg, &|| receive(&job_tx).0);
                            nap = BACKOFF_MIN;
                        }
                        Err(RecvTimeoutError::Timeout) => nap = backoff(nap),
                        Err(RecvTimeoutError::Disconnected) => {
                            // The engines stopped with chunks still out: the root would wait
                            // for them forever, so end the job (the hook aborts on this thread).
                            panic!("parview: this rank's engines stopped during a cluster map")
                        }
                    }
                }
            }
            drop(job_tx);
            if let Err(p) = driver.join() {
                panic::resume_unwind(p);
            }
        });
    }

    /// Sends one result message to the root without blocking MPI progress: while the send is
    /// pending, keeps receiving work (`poll`). Returns whether `poll` saw a Stop.
    fn send_done(&self, msg: &[u8], poll: &dyn Fn() -> bool) -> bool {
        let root = self.world.process_at_rank(0);
        let mut stop = false;
        mpi::request::scope(|scope| {
            let mut req = root.immediate_send_with_tag(scope, msg, TAG_DONE);
            loop {
                match req.test() {
                    Ok(_) => break,
                    Err(r) => {
                        req = r;
                        stop |= poll();
                        std::thread::sleep(BACKOFF_MIN);
                    }
                }
            }
        });
        stop
    }
}

impl<'c> ClusterView<'c> {
    pub(super) fn new(cluster: &'c Cluster) -> Self {
        ClusterView {
            cluster,
            schedule: Schedule::Adaptive,
            abort: None,
            #[cfg(feature = "progress")]
            progress: None,
        }
    }

    /// This view with `schedule` (default [`Schedule::Adaptive`]); an invalid one is reported
    /// by the map as [`ClusterMapError::Schedule`]. All ranks should pass the same; the root's
    /// is the one used.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let v = c.load_balanced().schedule(parview::Schedule::Dynamic(4));
    /// assert_eq!(v.get_schedule(), parview::Schedule::Dynamic(4));
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The view's schedule.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// assert_eq!(c.load_balanced().get_schedule(), parview::Schedule::Adaptive);
    /// ```
    pub fn get_schedule(&self) -> Schedule {
        self.schedule
    }

    /// Maps of this view stop handing out chunks once `handle` is aborted (from another
    /// thread of the root) and return [`ClusterMapError::Aborted`]. Read on the root only.
    ///
    /// # Examples
    /// ```no_run
    /// use parview::cluster::{AbortHandle, Cluster, ClusterMapError};
    /// let c = Cluster::init().unwrap();
    /// let h = AbortHandle::new();
    /// h.abort(); // before the map: nothing is handed out
    /// let r = c.load_balanced().abortable(&h).map_range(0..100, |i| i);
    /// if c.is_root() {
    ///     assert!(matches!(r, Err(ClusterMapError::Aborted { .. })));
    /// }
    /// ```
    pub fn abortable(mut self, handle: &AbortHandle) -> Self {
        self.abort = Some(handle.clone());
        self
    }

    /// Shows a progress bar on the root's stderr (finished items, rate, ETA; hidden when
    /// stderr is not a terminal). Feature `progress`.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let _ = c.load_balanced().progress_bar("squares").map_range(0..1000, |i| i * i);
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_bar(mut self, label: &str) -> Self {
        self.progress = Some(label.to_owned());
        self
    }

    fn opts(&self, timeline: bool) -> RunOpts<'_> {
        RunOpts {
            schedule: self.schedule,
            abort: self.abort.as_ref(),
            #[cfg(feature = "progress")]
            label: self.progress.as_deref(),
            #[cfg(not(feature = "progress"))]
            label: None,
            timeline,
        }
    }

    /// Runs `work` on every rank: the report (root) or `None`.
    fn run<W: Work>(
        &self,
        work: &W,
        timeline: bool,
    ) -> Result<Option<MapReport<W::Out>>, ClusterMapError> {
        let c = self.cluster;
        // Every rank learns whether the schedule is valid, so all of them return alike.
        let valid = c.broadcast_flag(self.schedule.validate().is_ok());
        if !valid {
            return match self.schedule.validate() {
                Err(e) => Err(e.into()),
                Ok(()) => Err(ClusterMapError::Schedule(ScheduleError::ZeroChunk {
                    schedule: "the root's schedule".into(),
                })),
            };
        }
        if !c.is_root() {
            c.run_rank(work);
            return Ok(None);
        }
        let (res, rep) = c.run_root(work, &self.opts(timeline));
        let results = res?;
        Ok(Some(MapReport {
            results,
            loads: rep.loads,
            wall: rep.wall,
            timeline: rep.timeline,
            lanes: rep.lanes,
        }))
    }

    /// Maps `f` over the root's `items_on_root` across all ranks; results on the root in input
    /// order (`Ok(Some(..))`), `Ok(None)` on the other ranks. Collective.
    ///
    /// # Errors
    /// On the root: [`ClusterMapError::Failed`] naming the rank and the lowest index whose item
    /// panicked (every other item still ran; the cluster stays usable),
    /// [`ClusterMapError::Aborted`], [`ClusterMapError::Schedule`] (on every rank).
    ///
    /// # Panics
    /// If a result message from a rank cannot be decoded (a rank built from another program).
    ///
    /// # Examples
    /// ```no_run
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Sample { id: u32, xs: Vec<f64> }
    ///
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let samples: Vec<Sample> = if c.is_root() {
    ///     (0..10).map(|id| Sample { id, xs: vec![1.0; id as usize] }).collect()
    /// } else {
    ///     vec![]
    /// };
    /// if let Some(sums) = c.load_balanced().map(&samples, |s| s.xs.iter().sum::<f64>()).unwrap() {
    ///     assert_eq!(sums[3], 3.0);
    /// }
    /// ```
    pub fn map<T, R, F>(&self, items_on_root: &[T], f: F) -> Result<Option<Vec<R>>, ClusterMapError>
    where
        T: Serialize + DeserializeOwned + Sync,
        R: Serialize + DeserializeOwned + Send,
        F: Fn(&T) -> R + Sync,
    {
        let work = ItemsWork {
            items: items_on_root,
            f,
        };
        Ok(self.run(&work, false)?.map(|r| r.results))
    }

    /// [`map`](ClusterView::map) with where and when: per-rank loads, wall time and a timeline
    /// with one lane per (rank, engine) (root only).
    ///
    /// # Errors
    /// As [`map`](ClusterView::map).
    ///
    /// # Panics
    /// As [`map`](ClusterView::map).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<u64> = if c.is_root() { (0..64).collect() } else { vec![] };
    /// if let Some(rep) = c.load_balanced().map_report(&xs, |x| x + 1).unwrap() {
    ///     assert_eq!(rep.loads.iter().map(|l| l.items).sum::<usize>(), 64);
    ///     rep.timeline.write_chrome_trace("cluster.json").unwrap();
    /// }
    /// ```
    pub fn map_report<T, R, F>(
        &self,
        items_on_root: &[T],
        f: F,
    ) -> Result<Option<MapReport<R>>, ClusterMapError>
    where
        T: Serialize + DeserializeOwned + Sync,
        R: Serialize + DeserializeOwned + Send,
        F: Fn(&T) -> R + Sync,
    {
        let work = ItemsWork {
            items: items_on_root,
            f,
        };
        self.run(&work, true)
    }

    /// Maps `f` over the indices of `range` across all ranks (only index ranges travel, not
    /// items); results on the root in index order. Every rank must pass the same `range`
    /// (the root's is used to cut it). Collective.
    ///
    /// # Errors
    /// As [`map`](ClusterView::map).
    ///
    /// # Panics
    /// As [`map`](ClusterView::map).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// if let Some(v) = c.load_balanced().map_range(0..10, |i| i * i).unwrap() {
    ///     assert_eq!(v[9], 81);
    /// }
    /// ```
    pub fn map_range<R, F>(
        &self,
        range: Range<usize>,
        f: F,
    ) -> Result<Option<Vec<R>>, ClusterMapError>
    where
        R: Serialize + DeserializeOwned + Send,
        F: Fn(usize) -> R + Sync,
    {
        Ok(self.run(&RangeWork { range, f }, false)?.map(|r| r.results))
    }

    /// [`map_range`](ClusterView::map_range) with the [`MapReport`].
    ///
    /// # Errors
    /// As [`map`](ClusterView::map).
    ///
    /// # Panics
    /// As [`map`](ClusterView::map).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// if let Some(rep) = c.load_balanced().map_range_report(0..10, |i| i).unwrap() {
    ///     println!("{}", rep.timeline);
    /// }
    /// ```
    pub fn map_range_report<R, F>(
        &self,
        range: Range<usize>,
        f: F,
    ) -> Result<Option<MapReport<R>>, ClusterMapError>
    where
        R: Serialize + DeserializeOwned + Send,
        F: Fn(usize) -> R + Sync,
    {
        self.run(&RangeWork { range, f }, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_messages_start_with_their_variant() {
        let chunk = postcard::to_allocvec(&WorkMsg::Chunk {
            id: 3,
            start: 7,
            len: 2,
            items: &[1.5f64, 2.5][..],
        })
        .unwrap();
        assert_eq!(chunk[0], 0);
        let ((v, id, s, l), _) = postcard::take_from_bytes::<(u8, u64, u64, u64)>(&chunk).unwrap();
        assert_eq!((v, id, s, l), (0, 3, 7, 2));
        assert_eq!(decode_start(&chunk), 7);
        assert_eq!(
            postcard::to_allocvec(&WorkMsg::<()>::Stop).unwrap(),
            vec![1]
        );
        match postcard::from_bytes::<WorkMsg<Vec<f64>>>(&chunk).unwrap() {
            WorkMsg::Chunk { items, .. } => assert_eq!(items, vec![1.5, 2.5]),
            WorkMsg::Stop => panic!("decoded a stop"),
        }
    }

    #[test]
    fn items_run_after_a_panic_and_the_first_is_reported() {
        let out = run_items(10, 4, |k| {
            if k == 1 || k == 3 {
                panic!("bad {k}");
            }
            k
        });
        match out {
            ChunkOut::Failed { index, message } => {
                assert_eq!(index, 11);
                assert_eq!(message, "bad 1");
            }
            ChunkOut::Done(_) => panic!("no failure reported"),
        }
        match run_items(0, 3, |k| k * 2) {
            ChunkOut::Done(v) => assert_eq!(v, vec![0, 2, 4]),
            ChunkOut::Failed { .. } => panic!("failed"),
        }
    }
}
