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
use mpi::topology::{Communicator, SimpleCommunicator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Cluster, payload_str};
use crate::Pool;
use crate::map::Tracker;
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

/// The crate's [`AbortHandle`](crate::AbortHandle): a cluster map watching it (`abortable`)
/// hands out no chunk after [`abort`](crate::AbortHandle::abort), the chunks already out
/// finish, and the map returns [`ClusterMapError::Aborted`]. The same handle stops local
/// checkpointed maps ([`Checkpoint::abort_on`](crate::Checkpoint::abort_on)).
pub use crate::AbortHandle;

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
    pub(super) cluster: &'c Cluster,
    pub(super) schedule: Schedule,
    pub(super) abort: Option<AbortHandle>,
    #[cfg(feature = "progress")]
    progress: Option<String>,
}

/// A chunk on its way to an engine of this rank.
pub(super) struct Job {
    id: u64,
    range: Range<usize>,
    /// The `WorkMsg` bytes (remote ranks); empty on the root, whose engines read in place.
    bytes: Vec<u8>,
}

/// What travels root → rank.
#[derive(Serialize, Deserialize)]
pub(super) enum WorkMsg<S> {
    /// Variant 0: postcard writes the variant index first, so the message starts with byte 0.
    Chunk {
        id: u64,
        start: u64,
        len: u64,
        items: S,
    },
    /// Variant 1: the message is the single byte 1.
    Stop,
    /// Variant 2, the single byte 2: the map was aborted; the rank's engines skip the items
    /// left in their chunks (and the chunks still queued), which come back `Cancelled`.
    Abort,
}

/// A chunk's outcome.
#[derive(Serialize, Deserialize)]
pub(super) enum ChunkOut<R> {
    Done(Vec<R>),
    /// The whole chunk failed (its items or results could not be encoded or decoded): its
    /// first index and the message.
    Failed {
        index: u64,
        message: String,
    },
    /// Some items panicked: every item's result or panic message, in order.
    Mixed(Vec<Result<R, String>>),
    /// The map was aborted before the chunk's items all ran: no results.
    Cancelled,
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

/// Runs `f` with this thread marked as running user code whose panics are caught (the hook
/// then reports them instead of aborting the job).
pub(super) fn catching<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            CATCHING.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CATCHING.with(|c| c.replace(true)));
    f()
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

/// Runs the `len` items of a chunk; every item runs even after a failure (as in the local
/// maps), and each failure is kept with its item. Once `cancel` is set (an abort), the items
/// left are skipped and the chunk comes back [`ChunkOut::Cancelled`].
pub(super) fn run_items<R>(
    len: usize,
    cancel: &AtomicBool,
    item: impl Fn(usize) -> R,
) -> ChunkOut<R> {
    let mut out = Vec::with_capacity(len);
    let mut mixed: Option<Vec<Result<R, String>>> = None;
    for k in 0..len {
        if cancel.load(Ordering::Relaxed) {
            return ChunkOut::Cancelled;
        }
        let r = catch_item(|| item(k));
        match (&mut mixed, r) {
            (Some(m), r) => m.push(r),
            (None, Ok(v)) => out.push(v),
            (None, Err(message)) => {
                let mut m: Vec<Result<R, String>> = out.drain(..).map(Ok).collect();
                m.reserve(len - k);
                m.push(Err(message));
                mixed = Some(m);
            }
        }
    }
    match mixed {
        None => ChunkOut::Done(out),
        Some(m) => ChunkOut::Mixed(m),
    }
}

/// An engine's loop: chunks from `jobs` until the queue closes, outcomes to `done`.
pub(super) fn engine_loop<O>(
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
    /// Runs `range` on the root (skipping what is left once `cancel` is set).
    fn run_local(&self, range: Range<usize>, cancel: &AtomicBool) -> ChunkOut<Self::Out>;
    /// Runs a chunk from its bytes on another rank (as `run_local`).
    fn run_remote(&self, bytes: &[u8], cancel: &AtomicBool) -> ChunkOut<Self::Out>;
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
    fn run_local(&self, r: Range<usize>, cancel: &AtomicBool) -> ChunkOut<R> {
        let items = &self.items[r.clone()];
        run_items(r.len(), cancel, |k| (self.f)(&items[k]))
    }
    fn run_remote(&self, bytes: &[u8], cancel: &AtomicBool) -> ChunkOut<R> {
        match postcard::from_bytes::<WorkMsg<Vec<T>>>(bytes) {
            Ok(WorkMsg::Chunk { items, .. }) => {
                run_items(items.len(), cancel, |k| (self.f)(&items[k]))
            }
            Ok(WorkMsg::Stop | WorkMsg::Abort) => {
                unreachable!("Stop and Abort are handled by the MPI thread")
            }
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
    fn run_local(&self, r: Range<usize>, cancel: &AtomicBool) -> ChunkOut<R> {
        let base = self.range.start;
        run_items(r.len(), cancel, |k| (self.f)(base + r.start + k))
    }
    fn run_remote(&self, bytes: &[u8], cancel: &AtomicBool) -> ChunkOut<R> {
        match postcard::from_bytes::<WorkMsg<()>>(bytes) {
            Ok(WorkMsg::Chunk { start, len, .. }) => {
                let (start, len) = (start as usize, len as usize);
                let base = self.range.start;
                run_items(len, cancel, |k| (self.f)(base + start + k))
            }
            Ok(WorkMsg::Stop | WorkMsg::Abort) => {
                unreachable!("Stop and Abort are handled by the MPI thread")
            }
            Err(e) => ChunkOut::Failed {
                index: decode_start(bytes),
                message: format!("decoding a range chunk failed on this rank: {e}"),
            },
        }
    }
}

/// A chunk finished by one of the root's engines: id, engine, begin, end, outcome.
type LocalDone<R> = (u64, usize, Instant, Instant, ChunkOut<R>);

/// Where a streaming map (`imap_unordered`) sends each item's outcome as it arrives.
pub(super) type ItemSender<R> = Sender<(usize, Result<R, ClusterMapError>)>;

/// Next sleep after an idle poll.
fn backoff(b: Duration) -> Duration {
    (b * 2).min(BACKOFF_MAX)
}

/// Called on the root with a chunk's range and its result slots as soon as the chunk's
/// outcome is in (`None` for an item that panicked); not called when streaming. The
/// checkpointed maps append the chunk's record to their log here.
pub(super) type ChunkHook<'a, R> = &'a dyn Fn(Range<usize>, &[Option<R>]);

/// Settings of one map run on the root.
pub(super) struct RunOpts<'a, R> {
    pub(super) schedule: Schedule,
    /// The map stops once any of them is aborted.
    pub(super) aborts: Vec<AbortHandle>,
    pub(super) label: Option<&'a str>,
    pub(super) timeline: bool,
    /// Progress and timings, bumped once per finished chunk (a progress bar makes one).
    pub(super) tracker: Option<Arc<Tracker>>,
    /// Streams each item's outcome instead of collecting the results.
    pub(super) stream: Option<ItemSender<R>>,
    /// Each chunk's results as they come back (see [`ChunkHook`]).
    pub(super) on_chunk: Option<ChunkHook<'a, R>>,
}

impl<R> RunOpts<'_, R> {
    /// Settings of a blocking map.
    pub(super) fn blocking<'a>(
        schedule: Schedule,
        abort: Option<&AbortHandle>,
        label: Option<&'a str>,
        timeline: bool,
    ) -> RunOpts<'a, R> {
        RunOpts {
            schedule,
            aborts: abort.into_iter().cloned().collect(),
            label,
            timeline,
            tracker: None,
            stream: None,
            on_chunk: None,
        }
    }
}

/// The root's bookkeeping of one map.
struct RootState<R> {
    /// Empty when streaming.
    results: Vec<Option<R>>,
    stream: Option<ItemSender<R>>,
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

/// What [`RootState::record`] learned about a chunk that came back.
struct Returned {
    rank: usize,
    range: Range<usize>,
    /// Items that ran (0 if cancelled).
    ran: usize,
    began: Duration,
    ended: Duration,
}

impl<R> RootState<R> {
    fn record(
        &mut self,
        id: u64,
        engine: usize,
        began: Duration,
        ended: Duration,
        out: ChunkOut<R>,
        timeline: bool,
    ) -> Option<Returned> {
        let (rank, range) = self.chunks.get(id as usize)?.clone();
        let off = self.offset[rank].unwrap_or_default();
        let (b, e) = (off + began, off + ended.max(began));
        self.wall = self.wall.max(e);
        let load = &mut self.loads[rank];
        load.busy += e - b;
        // A cancelled chunk ran none of its items: no timeline record for it.
        if timeline && !matches!(out, ChunkOut::Cancelled) {
            self.records.push(ChunkRecord {
                lane: Lane::Engine(self.lane_base[rank] + engine),
                start: range.start,
                end: range.end,
                began: b,
                ended: e,
                stolen: false,
            });
        }
        let ran = match out {
            ChunkOut::Done(v) if v.len() == range.len() => {
                for (i, r) in range.clone().zip(v) {
                    self.put(i, Ok(r), rank);
                }
                range.len()
            }
            ChunkOut::Mixed(v) if v.len() == range.len() => {
                for (i, r) in range.clone().zip(v) {
                    self.put(i, r, rank);
                }
                range.len()
            }
            ChunkOut::Done(v) => {
                self.fail_chunk(
                    rank,
                    &range,
                    format!(
                        "rank returned {} results for {} items",
                        v.len(),
                        range.len()
                    ),
                );
                range.len()
            }
            ChunkOut::Mixed(v) => {
                self.fail_chunk(
                    rank,
                    &range,
                    format!(
                        "rank returned {} outcomes for {} items",
                        v.len(),
                        range.len()
                    ),
                );
                range.len()
            }
            ChunkOut::Failed { index, message } => {
                let index = (index as usize).clamp(range.start, range.end.saturating_sub(1));
                self.fail(rank, index, message.clone());
                if let Some(tx) = &self.stream {
                    for i in range.clone() {
                        let _ = tx.send((i, Err(failed(rank, i, &message))));
                    }
                }
                range.len()
            }
            ChunkOut::Cancelled => 0,
        };
        self.loads[rank].items += ran;
        self.done_items += ran;
        Some(Returned {
            rank,
            range,
            ran,
            began: b,
            ended: e,
        })
    }

    /// Hands a chunk that came back to the map's [`ChunkHook`] (not when streaming).
    fn chunk_in(&self, range: &Range<usize>, hook: Option<ChunkHook<'_, R>>) {
        if let Some(hook) = hook {
            if self.stream.is_none() {
                hook(range.clone(), &self.results[range.clone()]);
            }
        }
    }

    /// One item's outcome: streamed, or kept in its slot; a failure is remembered.
    fn put(&mut self, i: usize, r: Result<R, String>, rank: usize) {
        match r {
            Ok(v) => match &self.stream {
                Some(tx) => {
                    let _ = tx.send((i, Ok(v)));
                }
                None => self.results[i] = Some(v),
            },
            Err(message) => {
                if let Some(tx) = &self.stream {
                    let _ = tx.send((i, Err(failed(rank, i, &message))));
                }
                self.fail(rank, i, message);
            }
        }
    }

    /// A whole chunk failed with `message` (a broken message from a rank).
    fn fail_chunk(&mut self, rank: usize, range: &Range<usize>, message: String) {
        if let Some(tx) = &self.stream {
            for i in range.clone() {
                let _ = tx.send((i, Err(failed(rank, i, &message))));
            }
        }
        self.fail(rank, range.start, message);
    }

    fn fail(&mut self, rank: usize, index: usize, message: String) {
        if self.first_fail.as_ref().is_none_or(|(_, i, _)| index < *i) {
            self.first_fail = Some((rank, index, message));
        }
    }
}

fn failed(rank: usize, index: usize, message: &str) -> ClusterMapError {
    ClusterMapError::Failed {
        rank,
        index,
        message: message.to_owned(),
    }
}

/// What one process needs to take part in a load-balanced map: owned, so a background map's
/// driver thread can hold it (see `background.rs`).
pub(super) struct Node {
    pub(super) pool: Arc<Pool>,
    pub(super) rank: usize,
    pub(super) size: usize,
    /// Local workers of every rank, in rank order.
    pub(super) rank_workers: Vec<usize>,
}

impl Cluster {
    /// This process's part in a map, for a driver thread. Waits for a background map in flight.
    pub(super) fn node(&self) -> Node {
        Node {
            pool: self.pool.clone(),
            rank: self.rank,
            size: self.size,
            rank_workers: self.rank_workers.clone(),
        }
    }

    /// The root's side of a map (see [`Node::run_root`]).
    pub(super) fn run_root<W: Work>(
        &self,
        work: &W,
        opts: &RunOpts<'_, W::Out>,
    ) -> (Result<Vec<W::Out>, ClusterMapError>, MapReport<()>) {
        self.inflight.settle();
        self.node().run_root(work, opts)
    }

    /// A non-root rank's side of a map (see [`Node::run_rank`]).
    pub(super) fn run_rank<W: Work>(&self, work: &W) {
        self.inflight.settle();
        self.node().run_rank(work);
    }
}

impl Node {
    /// `MPI_COMM_WORLD` (the cluster's communicator; rsmpi's handle is not `Send`, so a
    /// driver thread makes its own).
    fn world(&self) -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    /// The root's side of a map: dispense, serve, collect. Returns results in input order
    /// (nothing when streaming).
    pub(super) fn run_root<W: Work>(
        &self,
        work: &W,
        opts: &RunOpts<'_, W::Out>,
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
        let streaming = opts.stream.is_some();
        let mut st = RootState::<W::Out> {
            results: if streaming {
                Vec::new()
            } else {
                (0..n).map(|_| None).collect()
            },
            stream: opts.stream.clone(),
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
        let tracker = opts
            .tracker
            .clone()
            .or_else(|| opts.label.map(|_| Arc::new(Tracker::new(n, false))));
        #[cfg(feature = "progress")]
        let bar = opts
            .label
            .zip(tracker.clone())
            .map(|(l, t)| crate::progress::Bar::start(l, t));
        // Set on an abort: the root's engines skip the items left (the other ranks are told).
        let cancel = AtomicBool::new(false);
        let aborted = || opts.aborts.iter().any(AbortHandle::is_aborted);

        std::thread::scope(|s| {
            let (job_tx, job_rx) = unbounded::<Job>();
            let (done_tx, done_rx) = unbounded::<LocalDone<W::Out>>();
            let pool = &self.pool;
            let cancel = &cancel;
            let driver = s.spawn(move || {
                let run = |job: &Job, engine: usize| {
                    let began = Instant::now();
                    let out = work.run_local(job.range.clone(), cancel);
                    (job.id, engine, began, Instant::now(), out)
                };
                pool.direct()
                    .apply(|e| engine_loop(e, &job_rx, &done_tx, &run));
            });
            let mut nap = BACKOFF_MIN;
            let mut carry: Option<LocalDone<W::Out>> = None;
            // Book-keeping of a chunk that came back, from any rank.
            let returned = |ret: Returned, outstanding: &mut [usize], claimers: &mut [Claimer]| {
                outstanding[ret.rank] -= 1;
                let busy_t = ret.ended.saturating_sub(ret.began);
                if ret.ran > 0 {
                    claimers[ret.rank].grow(busy_t);
                    claimers[ret.rank].measured(busy_t, ret.ran);
                    if let Some(t) = &tracker {
                        t.chunk(
                            Lane::Caller,
                            ret.range,
                            t0 + ret.began,
                            t0 + ret.ended,
                            ret.ran,
                            false,
                            &mut Vec::new(),
                        );
                    }
                }
            };
            loop {
                if !dispenser.stopped() && aborted() {
                    dispenser.stop();
                    cancel.store(true, Ordering::Relaxed);
                    let msg = postcard::to_allocvec(&WorkMsg::<()>::Abort).expect("encodes");
                    for r in 1..size {
                        self.world()
                            .process_at_rank(r as i32)
                            .send_with_tag(&msg[..], TAG_WORK);
                    }
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
                                                .world()
                                                .process_at_rank(r as i32)
                                                .send_with_tag(&bytes[..], TAG_WORK),
                                            Err(message) => {
                                                let ret = st.record(
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
                                                if let Some(ret) = ret {
                                                    returned(ret, &mut outstanding, &mut claimers);
                                                }
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
                    .world()
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
                    let Some(ret) = got else {
                        // A chunk this map never handed out: the protocol is broken, and
                        // waiting on would hang. The hook aborts the job on this thread.
                        panic!("parview: rank {src} returned a chunk the root never sent it")
                    };
                    st.chunk_in(&ret.range, opts.on_chunk);
                    returned(ret, &mut outstanding, &mut claimers);
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
                    if let Some(ret) =
                        st.record(id, engine, rel(began), rel(end), out, opts.timeline)
                    {
                        st.chunk_in(&ret.range, opts.on_chunk);
                        returned(ret, &mut outstanding, &mut claimers);
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
                self.world()
                    .process_at_rank(r as i32)
                    .send_with_tag(&stop[..], TAG_WORK);
            }
            drop(job_tx);
            if let Err(p) = driver.join() {
                panic::resume_unwind(p);
            }
        });
        if let Some(t) = &tracker {
            t.mark_finished();
        }
        #[cfg(feature = "progress")]
        if let Some(b) = bar {
            b.finish();
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
        // As the local AsyncResult: an abort that came after every item was done changes
        // nothing.
        let result = if let Some((rank, index, message)) = st.first_fail.take() {
            Err(ClusterMapError::Failed {
                rank,
                index,
                message,
            })
        } else if st.done_items < n {
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
    /// the outcomes, until `Stop`. An `Abort` makes the engines skip what is left.
    pub(super) fn run_rank<W: Work>(&self, work: &W) {
        let world = self.world();
        let root = world.process_at_rank(0);
        let origin: OnceLock<Instant> = OnceLock::new();
        let cancel = AtomicBool::new(false);
        std::thread::scope(|s| {
            let (job_tx, job_rx) = unbounded::<Job>();
            let (done_tx, done_rx) = unbounded::<Vec<u8>>();
            let pool = &self.pool;
            let origin = &origin;
            let cancel = &cancel;
            let driver = s.spawn(move || {
                let run = |job: &Job, engine: usize| {
                    let began = Instant::now();
                    let out = work.run_remote(&job.bytes, cancel);
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
            // Receives every pending work message; returns (Stop seen, anything received).
            let receive = |job_tx: &Sender<Job>| -> (bool, bool) {
                let mut got = false;
                while let Some(probed) = root.immediate_matched_probe_with_tag(TAG_WORK) {
                    let (bytes, _) = probed.matched_receive_vec::<u8>();
                    got = true;
                    match bytes.first() {
                        Some(&1) => return (true, got),
                        Some(&2) => {
                            cancel.store(true, Ordering::Relaxed);
                            continue;
                        }
                        _ => {}
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
        let world = self.world();
        let root = world.process_at_rank(0);
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

    /// The progress bar's label, if one was asked for.
    pub(super) fn label(&self) -> Option<&str> {
        #[cfg(feature = "progress")]
        return self.progress.as_deref();
        #[cfg(not(feature = "progress"))]
        None
    }

    fn opts<R>(&self, timeline: bool) -> RunOpts<'_, R> {
        RunOpts::blocking(self.schedule, self.abort.as_ref(), self.label(), timeline)
    }

    /// Every rank learns whether the root's schedule is valid, so all of them return alike.
    /// Collective (waits for a background map in flight first).
    pub(super) fn check_schedule(&self) -> Result<(), ClusterMapError> {
        let valid = self
            .cluster
            .broadcast_flag(self.schedule.validate().is_ok());
        if valid {
            return Ok(());
        }
        match self.schedule.validate() {
            Err(e) => Err(e.into()),
            Ok(()) => Err(ClusterMapError::Schedule(ScheduleError::ZeroChunk {
                schedule: "the root's schedule".into(),
            })),
        }
    }

    /// Runs `work` on every rank: the report (root) or `None`.
    fn run<W: Work>(
        &self,
        work: &W,
        timeline: bool,
    ) -> Result<Option<MapReport<W::Out>>, ClusterMapError> {
        let c = self.cluster;
        self.check_schedule()?;
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
            _ => panic!("decoded a stop or an abort"),
        }
    }

    #[test]
    fn items_run_after_a_panic_and_each_failure_is_kept() {
        let go = AtomicBool::new(false);
        let out = run_items(4, &go, |k| {
            if k == 1 || k == 3 {
                panic!("bad {k}");
            }
            k
        });
        match out {
            ChunkOut::Mixed(v) => assert_eq!(
                v,
                vec![
                    Ok(0),
                    Err("bad 1".to_string()),
                    Ok(2),
                    Err("bad 3".to_string())
                ]
            ),
            _ => panic!("no failure reported"),
        }
        match run_items(3, &go, |k| k * 2) {
            ChunkOut::Done(v) => assert_eq!(v, vec![0, 2, 4]),
            _ => panic!("failed"),
        }
    }

    #[test]
    fn a_cancelled_chunk_skips_the_items_left() {
        let cancel = AtomicBool::new(false);
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let out = run_items(10, &cancel, |k| {
            ran.fetch_add(1, Ordering::Relaxed);
            if k == 2 {
                cancel.store(true, Ordering::Relaxed);
            }
            k
        });
        assert!(matches!(out, ChunkOut::Cancelled));
        assert_eq!(ran.load(Ordering::Relaxed), 3);
        assert_eq!(
            postcard::to_allocvec(&WorkMsg::<()>::Abort).unwrap(),
            vec![2]
        );
    }
}
