//! Checkpoint and resume of load-balanced maps: each finished chunk's results are appended to
//! a log on disk, and a rerun with the same log skips every item found there.
//!
//! # The log
//! An 8-byte magic (`PVCKPT01`), then records. A record is `len: u32 LE`, `crc32(payload): u32
//! LE`, `payload` ([postcard]). The first record is the [`Header`]: the number of items, a
//! fingerprint of the input (crc32 and byte length of the postcard bytes of every item), and the
//! item and result type names. Every later record holds the results of one finished chunk as
//! runs `(first index, results)` of consecutive indices.
//!
//! **Codec: postcard.** Compact (varints, no field names), `serde`-based so any `Serialize`
//! result works, stable wire format (1.x), already used by the cluster's maps, and exact for
//! floats (their bits are stored), which makes a resumed result bitwise identical.
//!
//! **Flush policy.** Each chunk's record is handed to the OS with one `write` as soon as the
//! chunk finishes (it survives the death of the process — SIGKILL, an abort, a panic that kills
//! it). The file is `fsync`ed (`fdatasync`) when a chunk finishes at least
//! [`Checkpoint::sync_every`] (default 1 s) after the last sync (or the map's start), and when
//! the map ends only if that much time has passed too. So every record not yet synced was
//! written within one `sync_every`:
//! * a crash of the **process** loses only the chunks in flight;
//! * a crash of the **machine** loses at most the chunks that finished within the last
//!   `sync_every` (plus the chunks in flight) — until the OS writes them back by itself;
//! * a map shorter than `sync_every` pays no `fsync` at all (creating the log does not sync
//!   either: a log whose header was lost in a machine crash is started again, or refused as
//!   not a checkpoint if the file system left garbage — never merged). The one exception is a
//!   resume that cuts off a torn tail: the cut is synced at once, before anything is appended.
//!
//! `Duration::ZERO` syncs after every chunk and at the end; `Duration::MAX` never syncs.
//!
//! **Reading.** A record cut short at the end of the file (a crash mid-write), or a last record
//! whose checksum fails, is a *torn tail*: it is cut off and the map goes on from there. A bad
//! record with data after it, a record that does not decode, an index out of range or written
//! twice is [`CheckpointError::Corrupt`]; a header for another input, length or type is refused
//! with its own error — a log is never merged into a map it was not written for. (A damaged
//! *length* field that points past the end of the file cannot be told from a torn tail: the log
//! is cut there and the results after it are computed again — lost work, never a wrong result.)
//!
//! # Pipeline
//! The map runs through the one pipeline ([`super::run::run`]) over the items *not* in the log
//! (a remapped input), into a sink that writes each result into its slot of the full output and
//! appends the chunk's record at the chunk completion point ([`Sink::chunk_done`]).
//! A background map ([`Checkpoint::map_async`]) is the same over the pipeline's background
//! start: its sink and output share the log (`BgLog`); the output closes it and collects the
//! results when the last participant leaves; the input vector lives in the closure, which
//! gets item `todo[k]` by reference.
//!
//! # Cluster maps
//! The cluster's load-balanced maps (feature `mpi`: `FarmView::checkpoint`,
//! `ClusterView::checkpoint`, in `src/cluster/checkpoint.rs`) write this same log **on the
//! root** only, through `RootLog`: the root reads it, hands out only the missing items, and
//! appends each chunk's record as its results come back to the root. A log resumes in any of
//! these maps, local or across ranks.

use super::body::{NoState, Report};
use super::input::{MapInput, SliceInput};
use super::run::{AsyncOutput, Refused, Spec, VecOut, run};
use super::sink::{Sink, VecSink, alloc_output, collect};
use super::track::Tracker;
use crate::AsyncResult;
use crate::abort::AbortHandle;
use crate::error::MapError;
use crate::views::LoadBalancedView;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"PVCKPT01";
const FRAME: usize = 8;
/// Items per block when fingerprinting the input (blocks are hashed in parallel).
const FP_BLOCK: usize = 4096;

/// Why a checkpointed map could not run or resume.
///
/// # Examples
/// ```
/// use parview::{CheckpointError, Pool};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let path = std::env::temp_dir().join(format!("parview-doc-err-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let lb = pool.load_balanced();
/// lb.checkpoint(&path).map(&[1u32, 2, 3], |x| x * 2).unwrap();
/// // The same log for a longer input is refused, never merged.
/// let e = lb.checkpoint(&path).map(&[1u32, 2, 3, 4], |x| x * 2).unwrap_err();
/// assert!(matches!(e, CheckpointError::Length { found: 3, expected: 4, .. }));
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError<E = Infallible> {
    /// Reading, writing or syncing the log failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a parview checkpoint (or of an unknown version).
    #[error("checkpoint {path}: not a parview checkpoint log (bad magic); not touched")]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
    },
    /// The log was written for a map over another number of items.
    #[error(
        "checkpoint {path} was written for a map over {found} items, this map has {expected}; remove it or use another path"
    )]
    Length {
        /// The log.
        path: PathBuf,
        /// Items in the log's map.
        found: u64,
        /// Items in this map.
        expected: u64,
    },
    /// The log was written for other input items (same length, another fingerprint).
    #[error(
        "checkpoint {path} was written for another input (fingerprint {found:016x}, this input's is {expected:016x}); remove it or use another path"
    )]
    Input {
        /// The log.
        path: PathBuf,
        /// The log's input fingerprint.
        found: u64,
        /// This input's fingerprint.
        expected: u64,
    },
    /// The log holds items or results of another type.
    #[error(
        "checkpoint {path} holds {what} of type `{found}`, this map's are `{expected}`; remove it or use another path"
    )]
    Type {
        /// The log.
        path: PathBuf,
        /// `"items"` or `"results"`.
        what: &'static str,
        /// The log's type name.
        found: String,
        /// This map's type name.
        expected: String,
    },
    /// A record in the middle of the log is damaged (a torn *tail* is cut off instead).
    #[error("checkpoint {path} is corrupt at byte {offset}: {reason}; not modified")]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An input item or a result could not be serialized (its `Serialize` failed or panicked).
    #[error("checkpoint: cannot serialize {what}: {message}")]
    Encode {
        /// What was being serialized.
        what: String,
        /// The serializer's error or the panic message.
        message: String,
    },
    /// The map itself failed (an `Err`, a panic) or was stopped: every result that finished
    /// before is in the log, so a rerun resumes from there.
    #[error("checkpointed map: {0}")]
    Map(MapError<E>),
}

/// A [`LoadBalancedView`] whose maps are checkpointed to an append-only log at `path`
/// ([`LoadBalancedView::checkpoint`]). A rerun with the same path skips every item whose result
/// is in the log and returns a result bitwise identical to an uninterrupted run, whatever the
/// pool size or schedule of either run.
///
/// One record per chunk: a crash loses at most the chunks in flight (one per participant), so
/// pick the schedule for the granularity you want — `Dynamic(c)`, `Guided(m)` or the default
/// `Adaptive` write as chunks finish; `Static` writes one record per engine block, only at
/// the end of each block.
///
/// Inputs are slices of `Serialize` items: the log stores a fingerprint of their postcard bytes
/// (crc32 and length; it catches accidents — a changed, added or removed item — not inputs
/// crafted to collide) and refuses another input. Results are `Serialize +
/// DeserializeOwned`. One log per map: two maps (or processes) must not use the same path at
/// the same time. A finished map's log stays (a rerun then reads every result from it); remove
/// the file to start over. Type names (`std::any::type_name`) are part of the header, so a log
/// may be refused after a compiler upgrade renames a type.
///
/// The cluster's maps (feature `mpi`) checkpoint the same way, on the root:
/// `parview::cluster::FarmCheckpoint` and `parview::cluster::ClusterCheckpoint` write this log
/// format, so a log from this map resumes in a cluster map of the same items and types (and the
/// other way round), with any number of ranks.
///
/// # Examples
/// Recipe "abort, fix, resume": a long map runs in the background and has a bug — item 60
/// divides by zero. It is stopped: by Ctrl-C (an [`AbortHandle`] pulled by the handler), by
/// [`AsyncCheckpoint::abort`], a kill or a lost node — here the closure pulls the handle itself
/// when it reaches the bad item, so the example is deterministic. Every chunk that finished is
/// in the log; the bug is fixed, and the rerun computes only what is missing, with any pool
/// size and schedule, and returns what an uninterrupted run returns.
/// ```
/// use parview::{AbortHandle, CheckpointError, MapError, Pool, Schedule};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let lb = pool.load_balanced().schedule(Schedule::Dynamic(4));
/// let path = std::env::temp_dir().join(format!("parview-doc-recipe-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let xs: Vec<i64> = (0..100).collect();
///
/// // 1. Started in the background; stopped when item 60 turns out to be bad.
/// let stop = AbortHandle::new();
/// let ctrl_c = stop.clone();
/// let ar = lb.checkpoint(&path).abort_on(&stop).map_async(xs.clone(), move |&x| {
///     if x == 60 { ctrl_c.abort(); } // stands in for Ctrl-C
///     1_000_000 / (x - 60)           // the bug: x = 60 divides by zero (a panic)
/// });
/// let p = ar.get_partial().unwrap_err();
/// assert!(matches!(p.error, CheckpointError::Map(MapError::Panicked { index: 60, .. })));
/// assert!(p.results[..60].iter().all(Option::is_some)); // all in the log
/// assert!(p.done() < 100);
///
/// // 2. Fixed, then resumed: only the items missing from the log run again.
/// let fixed = |&x: &i64| if x == 60 { 0 } else { 1_000_000 / (x - 60) };
/// let ran = Arc::new(AtomicUsize::new(0));
/// let counter = ran.clone();
/// let ar = pool.load_balanced().checkpoint(&path).map_async(xs.clone(), move |x| {
///     counter.fetch_add(1, Ordering::Relaxed);
///     fixed(x)
/// });
/// let v = ar.get().unwrap();
/// assert_eq!(ran.load(Ordering::Relaxed), 100 - p.done());
/// assert_eq!(v, xs.iter().map(fixed).collect::<Vec<_>>());
/// std::fs::remove_file(&path).unwrap();
/// ```
///
/// The blocking [`map`](Self::map) and [`try_map`](Self::try_map) write the same log (a
/// rerun may use either form): there an `Err` of `try_map` stops the map, and
/// [`abort_on`](Self::abort_on) stops it from a Ctrl-C handler or another thread.
#[derive(Debug, Clone)]
pub struct Checkpoint<'p> {
    view: LoadBalancedView<'p>,
    path: PathBuf,
    sync_every: Duration,
    retries: usize,
    abort: Option<AbortHandle>,
}

impl<'p> Checkpoint<'p> {
    pub(crate) fn new(view: LoadBalancedView<'p>, path: PathBuf) -> Self {
        Checkpoint {
            view,
            path,
            sync_every: Duration::from_secs(1),
            retries: 0,
            abort: None,
        }
    }

    /// Maps of this checkpoint watch `handle` (a clone of it is kept): once it is
    /// [aborted](AbortHandle::abort), the map stops at its next chunk completion — the chunks
    /// running finish and are logged, no new one starts — and returns
    /// [`MapError::Aborted`] inside [`CheckpointError::Map`]. For a Ctrl-C handler, a
    /// watchdog, or the map's own closure; a background map can also be stopped with
    /// [`AsyncCheckpoint::abort`]. The flag is looked at only when a chunk completes: with a
    /// handle aborted before the map starts, each participant still runs (and logs) one chunk.
    ///
    /// # Examples
    /// ```
    /// use parview::{AbortHandle, CheckpointError, MapError, Schedule};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-abort-on-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let stop = AbortHandle::new();
    /// let lb = pool.load_balanced().schedule(Schedule::Dynamic(2));
    /// let xs: Vec<u32> = (0..1000).collect();
    /// let r = lb.checkpoint(&path).abort_on(&stop).map(&xs, |&x| {
    ///     if x == 10 { stop.abort(); } // e.g. Ctrl-C
    ///     x + 1
    /// });
    /// assert!(matches!(r, Err(CheckpointError::Map(MapError::Aborted { total: 1000, .. }))));
    /// stop.reset();
    /// let v = lb.checkpoint(&path).abort_on(&stop).map(&xs, |&x| x + 1).unwrap();
    /// assert_eq!(v[999], 1000);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn abort_on(mut self, handle: &AbortHandle) -> Self {
        self.abort = Some(handle.clone());
        self
    }

    /// `fsync` the log at most this often (default 1 s): when a chunk finishes this long after
    /// the last sync (or the map's start), and at the end of the map only if this long has
    /// passed since the last sync — a map shorter than this pays no `fsync`. Records are
    /// written to the OS after every chunk regardless, so a crash of the process loses only
    /// the chunks in flight, and a crash of the machine at most the chunks that finished
    /// within the last `sync_every` (plus those in flight). `Duration::ZERO` syncs after every
    /// chunk and at the end; `Duration::MAX` never syncs (the OS writes the log back when it
    /// likes, which a process crash does not affect). See the module's "Flush policy".
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ck = pool.load_balanced().checkpoint("run.ckpt").sync_every(Duration::from_millis(200));
    /// assert_eq!(ck.get_sync_every(), Duration::from_millis(200));
    /// ```
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every;
        self
    }

    /// Run an item that panics again, up to `n` times, before it counts as failed (as
    /// [`LoadBalancedView::retries`]; attempts are not logged, only the result that finished).
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-retry-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let failed = AtomicBool::new(false);
    /// let v = pool.load_balanced().checkpoint(&path).retries(1).map(&[1u32, 2, 3], |&x| {
    ///     if x == 2 && !failed.swap(true, Ordering::Relaxed) { panic!("flaky"); }
    ///     x * 10
    /// });
    /// assert_eq!(v.unwrap(), vec![10, 20, 30]);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn retries(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// The sync interval ([`sync_every`](Self::sync_every)).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ck = pool.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.get_sync_every(), std::time::Duration::from_secs(1));
    /// ```
    pub fn get_sync_every(&self) -> Duration {
        self.sync_every
    }

    /// The log's path.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ck = pool.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.path(), std::path::Path::new("run.ckpt"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpointed ordered map: results in input order, each finished chunk appended to the
    /// log; items already in the log are not run again. A panicking item does not unwind: it is
    /// [`CheckpointError::Map`] once every other item ran (and was logged).
    ///
    /// # Errors
    /// [`CheckpointError`]: the log cannot be used (I/O, another map's log, corrupt), a value
    /// cannot be serialized, or the map failed ([`CheckpointError::Map`]).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-map-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let xs: Vec<u64> = (0..1000).collect();
    /// let a = pool.load_balanced().checkpoint(&path).map(&xs, |x| x * x).unwrap();
    /// let b = pool.load_balanced().checkpoint(&path).map(&xs, |_| -> u64 { unreachable!() }).unwrap();
    /// assert_eq!(a, b); // the second run read every result from the log
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn map<T, R, F>(&self, input: &[T], f: F) -> Result<Vec<R>, CheckpointError>
    where
        T: Serialize + Sync,
        R: Serialize + DeserializeOwned + Send,
        F: Fn(&T) -> R + Sync,
    {
        self.try_map(input, |x| Ok::<R, Infallible>(f(x)))
    }

    /// Checkpointed fallible map: as [`map`](Self::map); the first `Err` (by index) stops the
    /// map — no new chunk starts — and comes back as [`CheckpointError::Map`]. Everything that
    /// finished is in the log for the rerun.
    ///
    /// # Errors
    /// As [`map`](Self::map), and [`MapError::Failed`] inside [`CheckpointError::Map`].
    ///
    /// # Examples
    /// ```
    /// use parview::{CheckpointError, MapError};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-try-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let r = pool.load_balanced().checkpoint(&path).try_map(&[1u8, 0], |&x| x.checked_sub(1).ok_or("zero"));
    /// assert!(matches!(r, Err(CheckpointError::Map(MapError::Failed { index: 1, .. }))));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn try_map<T, R, E, F>(&self, input: &[T], f: F) -> Result<Vec<R>, CheckpointError<E>>
    where
        T: Serialize + Sync,
        R: Serialize + DeserializeOwned + Send,
        E: Send,
        F: Fn(&T) -> Result<R, E> + Sync,
    {
        let view = &self.view;
        let n = input.len();
        let (mut out, file, todo) = self.open::<T, R, E>(input)?;
        let base = VecSink(out.as_mut_ptr());
        let log = Log {
            path: &self.path,
            state: Mutex::new(LogState {
                file,
                last_sync: Instant::now(),
                error: None,
            }),
            sync_every: self.sync_every,
        };
        let mut rep = if todo.is_empty() {
            Report::default()
        } else {
            let written: Vec<AtomicBool> = todo.iter().map(|_| AtomicBool::new(false)).collect();
            let sink = LogSink {
                out: base,
                todo: &todo,
                written: &written,
                log: &log,
                abort: self.abort.as_ref(),
                _r: std::marker::PhantomData,
            };
            let input = Remapped {
                items: SliceInput(input),
                todo: &todo,
            };
            let g = super::retry::retrying(self.retries, view.pool.reg.clone(), None, f);
            run(
                &view.pool.reg,
                &Spec::shared(view.schedule),
                input,
                NoState,
                |_: &mut (), x| g(x),
                sink,
            )
        };
        to_input_indices(&mut rep, &todo);
        let log_error = log.finish();
        if let Some(e) = log_error {
            rep.stopped = true;
            // SAFETY: every participant has left; the slots outside `rep.holes` (now in input
            // indices) are exactly those read from the log or written by the sink.
            let _ = unsafe { collect(out, n, rep) };
            return Err(e);
        }
        // SAFETY: as above.
        unsafe { collect(out, n, rep) }.map_err(CheckpointError::Map)
    }

    /// [`map`](Self::map) in the background, over owned input with a `'static` closure
    /// (as [`LoadBalancedView::map_async`]): the closure still gets `&T`, so the same closure
    /// serves both forms, and a log written by one is resumed by the other.
    ///
    /// The log is opened and checked, and the input fingerprinted, before this returns (a log
    /// that cannot be used makes the handle ready at once with its error); the items not in the
    /// log then run in the background. See [`AsyncCheckpoint`] for waiting, progress, abort
    /// and results.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-map-async-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let ar = pool.load_balanced().checkpoint(&path).map_async((0..100u64).collect(), |x| x * x);
    /// assert_eq!(ar.get().unwrap()[9], 81);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn map_async<T, R, F>(&self, input: Vec<T>, f: F) -> AsyncCheckpoint<R>
    where
        T: Serialize + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(&T) -> R + Send + Sync + 'static,
    {
        self.try_map_async(input, move |x| Ok::<R, Infallible>(f(x)))
    }

    /// [`try_map`](Self::try_map) in the background (as [`map_async`](Self::map_async)): the
    /// first `Err` (by index) stops the map and comes back from [`AsyncCheckpoint::get`] as
    /// [`MapError::Failed`] inside [`CheckpointError::Map`].
    ///
    /// # Examples
    /// ```
    /// use parview::{CheckpointError, MapError};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-try-async-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let ar = pool.load_balanced().checkpoint(&path)
    ///     .try_map_async(vec![2u8, 1, 0], |&x| x.checked_sub(1).ok_or("zero"));
    /// assert!(matches!(ar.get(), Err(CheckpointError::Map(MapError::Failed { index: 2, error: "zero" }))));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn try_map_async<T, R, E, F>(&self, input: Vec<T>, f: F) -> AsyncCheckpoint<R, E>
    where
        T: Serialize + Send + Sync + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: Fn(&T) -> Result<R, E> + Send + Sync + 'static,
    {
        let n = input.len();
        let (out, file, todo) = match self.open::<T, R, E>(&input) {
            Ok(opened) => opened,
            Err(e) => return AsyncCheckpoint::ready_with(Err(e)),
        };
        let reg = self.view.pool.reg.clone();
        let logged = n - todo.len();
        let todo: Arc<[usize]> = todo.into();
        let log = Arc::new(BgLog {
            path: self.path.clone(),
            state: Mutex::new(LogState {
                file,
                last_sync: Instant::now(),
                error: None,
            }),
            sync_every: self.sync_every,
            written: todo.iter().map(|_| AtomicBool::new(false)).collect(),
            todo: todo.clone(),
            abort: self.abort.clone(),
        });
        let (vec, base) = VecOut::with_buffer(out);
        let tracker = Arc::new(Tracker::new(n, false));
        tracker.add_done(logged);
        let items = Items(input);
        let g =
            super::retry::retrying(self.retries, reg.clone(), Some(tracker.clone()), move |i| {
                f(&items.0[i])
            });
        let sink = BgSink {
            out: base,
            log: log.clone(),
        };
        let core = super::run::start(
            &reg,
            &Spec::shared(self.view.schedule).tracked(Some(tracker)),
            TodoInput(todo),
            move |_: &mut (), i: usize| g((i, i)),
            (BgOut { vec, log, n }, sink),
            "checkpoint",
            false,
        );
        AsyncCheckpoint {
            inner: Some(AsyncResult::from_core(core)),
        }
    }

    /// Checks the schedule, fingerprints `input` and opens the log: the output buffer (empty,
    /// capacity `n`) with every result found in the log in its slot, the log file positioned
    /// for appending, and the (increasing) indices of the items still to run. The slots
    /// written are exactly those not in `todo`.
    #[allow(clippy::type_complexity)]
    fn open<T, R, E>(&self, input: &[T]) -> Result<(Vec<R>, File, Vec<usize>), CheckpointError<E>>
    where
        T: Serialize + Sync,
        R: DeserializeOwned,
    {
        let view = &self.view;
        view.schedule
            .validate()
            .map_err(|e| CheckpointError::Map(e.into()))?;
        let n = input.len();
        let header = Header {
            items: n as u64,
            input: fingerprint(view, input)?,
            item_type: std::any::type_name::<T>().to_string(),
            result_type: std::any::type_name::<R>().to_string(),
        };
        let mut out = alloc_output::<R, E>(n).map_err(CheckpointError::Map)?;
        let base = out.as_mut_ptr();
        let mut filled = vec![false; n];
        let opened = open_log::<R, E>(&self.path, &header, &mut |i, r| {
            // SAFETY: `open_log` hands each index `i < n` at most once (a second one is
            // `Corrupt`), and nothing else writes `out` yet.
            unsafe { base.add(i).write(r) };
            filled[i] = true;
        });
        match opened {
            Ok(file) => {
                let todo = (0..n).filter(|&i| !filled[i]).collect();
                Ok((out, file, todo))
            }
            Err(e) => {
                let rep = Report::<E> {
                    holes: holes_of(&filled),
                    ..Report::default()
                };
                // SAFETY: exactly the slots marked in `filled` were written; `collect` drops them.
                let _ = unsafe { collect(out, n, rep) };
                Err(e)
            }
        }
    }
}

/// A checkpointed map running in the background ([`Checkpoint::map_async`],
/// [`Checkpoint::try_map_async`]): ready, wait, progress, abort and the results, as
/// [`AsyncResult`] has them.
///
/// Its own type rather than an `AsyncResult<Vec<R>>`, because its errors are
/// [`CheckpointError`]s (the log, the codec, the closure's `E`), which `AsyncResult::get`'s
/// `MapError` cannot carry; it wraps an `AsyncResult` of the whole outcome and flattens it.
///
/// **Dropping** it before the map is done aborts the map *and waits* for the chunks running to
/// finish and be logged (at most one per engine), so the log is closed when the drop returns
/// and a rerun on the same path can start at once. [`abort`](Self::abort) returns at once;
/// [`get`](Self::get) then waits for the same chunks.
///
/// # Examples
/// ```
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let path = std::env::temp_dir().join(format!("parview-doc-async-ck-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let ar = pool.load_balanced().checkpoint(&path).map_async(vec![1u32, 2, 3], |x| x * 10);
/// ar.wait();
/// assert!(ar.ready());
/// assert_eq!(ar.progress(), (3, 3));
/// assert_eq!(ar.get().unwrap(), vec![10, 20, 30]);
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct AsyncCheckpoint<R, E = Infallible> {
    /// `Some` until `get` takes it.
    inner: Option<AsyncResult<Result<Vec<R>, CheckpointError<E>>>>,
}

impl<R, E> std::fmt::Debug for AsyncCheckpoint<R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (d, t) = self.progress();
        f.debug_struct("AsyncCheckpoint")
            .field("ready", &self.ready())
            .field("progress", &format_args!("{d}/{t}"))
            .finish()
    }
}

/// What finished of a checkpointed map that did not: `results[i]` is `Some` for every item whose
/// result was read from the log or computed before the map stopped (all of them are in the
/// log), and the error [`AsyncCheckpoint::get`] would have returned.
///
/// # Examples
/// ```
/// use parview::{CheckpointError, CheckpointPartial, MapError};
/// let p: CheckpointPartial<u8> = CheckpointPartial {
///     results: vec![Some(1), None],
///     error: CheckpointError::Map(MapError::Aborted { done: 1, total: 2 }),
/// };
/// assert_eq!(p.done(), 1);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct CheckpointPartial<R, E = Infallible> {
    /// One slot per item: `Some(result)` for each finished item.
    pub results: Vec<Option<R>>,
    /// Why the map stopped.
    pub error: CheckpointError<E>,
}

impl<R, E> CheckpointPartial<R, E> {
    /// How many results were kept.
    ///
    /// # Examples
    /// ```
    /// let p: parview::CheckpointPartial<u8> = parview::CheckpointPartial {
    ///     results: vec![None, Some(2), Some(3)],
    ///     error: parview::CheckpointError::Map(parview::MapError::Aborted { done: 2, total: 3 }),
    /// };
    /// assert_eq!(p.done(), 2);
    /// ```
    pub fn done(&self) -> usize {
        self.results.iter().filter(|r| r.is_some()).count()
    }
}

/// A `MapError` of a map that cannot fail with an `Err` (a background map refused before it
/// started), as the error of a fallible one.
fn widen<E>(e: MapError) -> MapError<E> {
    match e {
        MapError::Failed { error, .. } => match error {},
        MapError::Panicked {
            index,
            message,
            failed,
        } => MapError::Panicked {
            index,
            message,
            failed,
        },
        MapError::Aborted { done, total } => MapError::Aborted { done, total },
        MapError::TooLarge { items, item_bytes } => MapError::TooLarge { items, item_bytes },
        MapError::Schedule(s) => MapError::Schedule(s),
    }
}

impl<R: Send + 'static, E: Send + 'static> AsyncCheckpoint<R, E> {
    /// A handle that is ready at once with `r` (the log could not be used).
    fn ready_with(r: Result<Vec<R>, CheckpointError<E>>) -> Self {
        AsyncCheckpoint {
            inner: Some(AsyncResult::from_core(Arc::new(Refused::with_result(Ok(
                r,
            ))))),
        }
    }
}

impl<R, E> AsyncCheckpoint<R, E> {
    fn ar(&self) -> &AsyncResult<Result<Vec<R>, CheckpointError<E>>> {
        self.inner.as_ref().expect("present until `get`")
    }

    /// Whether the outcome is available (the map finished, failed or was aborted, and the log
    /// was closed).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-ready-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let ar = pool.load_balanced().checkpoint(&path).map_async(vec![1u8], |x| *x);
    /// ar.wait();
    /// assert!(ar.ready());
    /// # drop(ar); std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn ready(&self) -> bool {
        self.ar().ready()
    }

    /// Blocks until the outcome is available (as [`AsyncResult::wait`]: on an engine it works
    /// on the map and runs its engine's other work meanwhile).
    ///
    /// # Panics
    /// On an engine nested [`MAX_NESTED_WAITS`](crate::MAX_NESTED_WAITS) blocking calls deep.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-wait-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let ar = pool.load_balanced().checkpoint(&path).map_async(vec![1u8, 2], |x| *x);
    /// ar.wait();
    /// assert_eq!(ar.progress(), (2, 2));
    /// # drop(ar); std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn wait(&self) {
        self.ar().wait()
    }

    /// Waits at most `timeout`; true if the outcome is available (as
    /// [`AsyncResult::wait_timeout`]).
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-wt-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let ar = pool.load_balanced().checkpoint(&path).map_async(vec![1u8, 2], |x| *x);
    /// assert!(ar.wait_timeout(std::time::Duration::from_secs(60)));
    /// # drop(ar); std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.ar().wait_timeout(timeout)
    }

    /// `(done, total)` over the whole input: items whose results were read from the log count
    /// as done from the start, the others once their chunk finished *and was logged*. Never
    /// decreases; reaches `total` unless the map stopped early. `(0, 0)` when the log could not
    /// be used.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-progress-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let lb = pool.load_balanced();
    /// lb.checkpoint(&path).map(&[1u8, 2, 3, 4], |x| *x).unwrap();
    /// let ar = lb.checkpoint(&path).map_async(vec![1u8, 2, 3, 4], |x| *x);
    /// assert_eq!(ar.progress(), (4, 4)); // all from the log
    /// # drop(ar); std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.ar().progress()
    }

    /// Stops the map: once this returns no new chunk starts; the chunks running finish and are
    /// logged. [`get`](Self::get) then returns [`MapError::Aborted`] inside
    /// [`CheckpointError::Map`], unless everything was already done. To stop it from elsewhere
    /// (another thread, the closure), give the checkpoint an [`AbortHandle`]
    /// ([`Checkpoint::abort_on`]).
    ///
    /// # Examples
    /// ```
    /// use parview::{CheckpointError, MapError, Schedule};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-abort-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
    /// let ar = lb.checkpoint(&path).map_async((0..1000u64).collect(), |&x| {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    ///     x
    /// });
    /// ar.abort();
    /// match ar.get() {
    ///     Err(CheckpointError::Map(MapError::Aborted { total: 1000, .. })) => {}
    ///     Ok(v) => assert_eq!(v.len(), 1000), // it was faster than the abort
    ///     Err(e) => panic!("{e}"),
    /// }
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn abort(&self) {
        self.ar().abort()
    }

    /// Time since the map was started.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-elapsed-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let ar = pool.load_balanced().checkpoint(&path).map_async(vec![1u8], |x| *x);
    /// ar.wait();
    /// assert!(ar.elapsed() > std::time::Duration::ZERO);
    /// # drop(ar); std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.ar().elapsed()
    }

    /// Waits (as [`wait`](Self::wait)), then returns the results in input order — those read
    /// from the log and those computed now — or why the map did not finish.
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    /// As [`Checkpoint::try_map`]: the log could not be used, a value could not be
    /// serialized, or the map failed or was aborted ([`CheckpointError::Map`]); everything
    /// that finished is in the log either way.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-get-{}.ckpt", std::process::id()));
    /// std::fs::write(&path, b"not a log").unwrap();
    /// let ar = pool.load_balanced().checkpoint(&path).map_async(vec![1u8], |x| *x);
    /// assert!(matches!(ar.get(), Err(parview::CheckpointError::NotACheckpoint { .. })));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn get(mut self) -> Result<Vec<R>, CheckpointError<E>> {
        let ar = self.inner.take().expect("present until `get`");
        match ar.get() {
            Ok(r) => r,
            Err(e) => Err(CheckpointError::Map(widen(e))),
        }
    }
}

impl<R: Send + 'static, E> AsyncCheckpoint<R, E> {
    /// Waits (as [`wait`](Self::wait)), then returns the results, or — when the map failed or
    /// was aborted — what finished: a [`CheckpointPartial`] with `Some(result)` for every item
    /// read from the log or computed, and the error [`get`](Self::get) would have returned.
    /// (The same results are in the log: a rerun reads them back by itself.)
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    /// As [`get`](Self::get), inside a [`CheckpointPartial`]; its `results` is empty when the
    /// log could not be used (nothing ran).
    ///
    /// # Examples
    /// ```
    /// use parview::{AbortHandle, CheckpointError, MapError, Schedule};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-partial-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let stop = AbortHandle::new();
    /// let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
    /// let s = stop.clone();
    /// let ar = lb.checkpoint(&path).abort_on(&stop).map_async((0..100u64).collect(), move |&x| {
    ///     if x == 3 { s.abort(); }
    ///     x * 2
    /// });
    /// let p = ar.get_partial().unwrap_err();
    /// assert!(matches!(p.error, CheckpointError::Map(MapError::Aborted { .. })));
    /// assert_eq!(p.results[3], Some(6));
    /// assert!(p.done() < 100);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn get_partial(mut self) -> Result<Vec<R>, CheckpointPartial<R, E>> {
        let ar = self.inner.take().expect("present until `get`");
        ar.wait();
        let r = ar.core.take().expect("the result is taken once");
        let error = match r {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(e) => CheckpointError::Map(widen(e)),
        };
        let results = ar
            .core
            .take_partial()
            .and_then(|b| b.downcast::<Vec<Option<R>>>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        Err(CheckpointPartial { results, error })
    }
}

impl<R, E> Drop for AsyncCheckpoint<R, E> {
    fn drop(&mut self) {
        if let Some(ar) = &self.inner {
            if !ar.ready() {
                ar.abort();
                // Wait for the chunks running, so the log is closed when the drop returns. On
                // an engine nested too deep `wait` panics before waiting: then leave the map to
                // finish by itself (it was aborted; nothing leaks).
                let _ = panic::catch_unwind(AssertUnwindSafe(|| ar.wait()));
            }
        }
    }
}

impl<'p> LoadBalancedView<'p> {
    /// This view's maps checkpointed to the append-only log at `path`: see [`Checkpoint`] (log
    /// format, flush policy, and the recipe "abort, fix, resume").
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-ck-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let v = pool.load_balanced().checkpoint(&path).map(&[1.5f64, 2.5], |x| x * 2.0).unwrap();
    /// assert_eq!(v, vec![3.0, 5.0]);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn checkpoint(&self, path: impl AsRef<Path>) -> Checkpoint<'p> {
        Checkpoint::new(self.clone(), path.as_ref().to_path_buf())
    }
}

/// Appends `i` to a list of ranges, extending the last one when contiguous.
fn push_index(v: &mut Vec<Range<usize>>, i: usize) {
    match v.last_mut() {
        Some(r) if r.end == i => r.end += 1,
        _ => v.push(i..i + 1),
    }
}

/// The unfilled slots as ranges.
fn holes_of(filled: &[bool]) -> Vec<Range<usize>> {
    let mut v = Vec::new();
    for (i, &f) in filled.iter().enumerate() {
        if !f {
            push_index(&mut v, i);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Fingerprint and header

/// The first record of a log.
#[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
struct Header {
    items: u64,
    /// crc32 of the input's postcard bytes (low 32 bits) and their length (high 32 bits, mod
    /// 2^32).
    input: u64,
    item_type: String,
    result_type: String,
}

/// Fingerprint of `input`: blocks of [`FP_BLOCK`] items hashed in parallel on the view's pool,
/// then combined in order (the same value for any pool size or schedule).
fn fingerprint<T: Serialize + Sync, E>(
    view: &LoadBalancedView<'_>,
    input: &[T],
) -> Result<u64, CheckpointError<E>> {
    let blocks = input.len().div_ceil(FP_BLOCK);
    let parts = view
        .view_pool()
        .schedule(crate::Schedule::Dynamic(1))
        .try_map(0..blocks, |b| {
            // The block's bytes in one buffer, hashed once: feeding the hasher value by value
            // (8 bytes at a time) cost 3x more.
            let end = input.len().min((b + 1) * FP_BLOCK);
            let mut buf = Vec::new();
            for (i, x) in input[b * FP_BLOCK..end].iter().enumerate() {
                buf = postcard::to_extend(x, buf)
                    .map_err(|e| format!("input item {}: {e}", b * FP_BLOCK + i))?;
            }
            Ok((crc32fast::hash(&buf), buf.len() as u64))
        });
    let parts = parts.map_err(|e| match e {
        MapError::Failed { error, .. } => CheckpointError::Encode {
            what: "the input".into(),
            message: error,
        },
        other => CheckpointError::Encode {
            what: "the input".into(),
            message: other.to_string(),
        },
    })?;
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    for (c, b) in parts {
        crc.update(&c.to_le_bytes());
        crc.update(&b.to_le_bytes());
        bytes = bytes.wrapping_add(b);
    }
    Ok(u64::from(crc.finalize()) | (bytes << 32))
}

/// `len, crc, payload` of `payload` (which starts with [`FRAME`] reserved bytes).
fn seal(mut buf: Vec<u8>) -> Vec<u8> {
    let len = (buf.len() - FRAME) as u32;
    let crc = crc32fast::hash(&buf[FRAME..]);
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Opens (or creates) the log at `path` for a map described by `header`: every result found is
/// handed to `found(index, result)`; a torn tail is cut off. Returns the file, positioned for
/// appending.
fn open_log<R: DeserializeOwned, E>(
    path: &Path,
    header: &Header,
    found: &mut dyn FnMut(usize, R),
) -> Result<File, CheckpointError<E>> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |offset: usize, reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;

    // A file shorter than magic + a whole header record, that starts like one, is a log whose
    // creation was torn: start it again.
    let fresh = |file: &mut File| -> Result<(), CheckpointError<E>> {
        file.set_len(0).map_err(io)?;
        let head =
            postcard::to_extend(header, vec![0u8; FRAME]).map_err(|e| CheckpointError::Encode {
                what: "the log header".into(),
                message: e.to_string(),
            })?;
        let mut buf = MAGIC.to_vec();
        buf.extend(seal(head));
        // Not synced: the flush policy's first sync covers it (see "Flush policy").
        file.write_all(&buf).map_err(io)
    };
    if bytes.len() < MAGIC.len() {
        if MAGIC.starts_with(&bytes) {
            fresh(&mut file)?;
            return Ok(file);
        }
        return Err(CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }

    let mut at = MAGIC.len();
    let mut first = true;
    let mut seen = vec![false; header.items as usize];
    while at < bytes.len() {
        let rest = bytes.len() - at;
        let torn = if rest < FRAME {
            true
        } else {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            if len > rest - FRAME {
                true
            } else {
                let payload = &bytes[at + FRAME..at + FRAME + len];
                if crc32fast::hash(payload) != crc {
                    if at + FRAME + len == bytes.len() {
                        true // the last record, partly persisted
                    } else {
                        return Err(corrupt(at, "checksum mismatch".into()));
                    }
                } else {
                    if first {
                        let h: Header = postcard::from_bytes(payload)
                            .map_err(|e| corrupt(at, format!("bad header: {e}")))?;
                        check_header(path, &h, header)?;
                        first = false;
                    } else {
                        let runs: Vec<(u64, Vec<R>)> =
                            postcard::from_bytes(payload).map_err(|e| {
                                corrupt(at, format!("record does not decode as results: {e}"))
                            })?;
                        for (start, vals) in runs {
                            let start = start as usize;
                            let end = start.saturating_add(vals.len());
                            if end > seen.len() || seen[start..end].iter().any(|&s| s) {
                                return Err(corrupt(
                                    at,
                                    format!("results {start}..{end} out of range or repeated"),
                                ));
                            }
                            for (i, v) in (start..end).zip(vals) {
                                seen[i] = true;
                                found(i, v);
                            }
                        }
                    }
                    false
                }
            }
        };
        if torn {
            if first {
                fresh(&mut file)?;
            } else {
                file.set_len(at as u64).map_err(io)?;
                file.sync_data().map_err(io)?;
            }
            return Ok(file);
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += FRAME + len;
    }
    if first {
        // Magic only: the header never made it.
        fresh(&mut file)?;
    }
    Ok(file)
}

fn check_header<E>(path: &Path, found: &Header, want: &Header) -> Result<(), CheckpointError<E>> {
    let path = path.to_path_buf();
    if found.items != want.items {
        return Err(CheckpointError::Length {
            path,
            found: found.items,
            expected: want.items,
        });
    }
    if found.item_type != want.item_type {
        return Err(CheckpointError::Type {
            path,
            what: "items",
            found: found.item_type.clone(),
            expected: want.item_type.clone(),
        });
    }
    if found.result_type != want.result_type {
        return Err(CheckpointError::Type {
            path,
            what: "results",
            found: found.result_type.clone(),
            expected: want.result_type.clone(),
        });
    }
    if found.input != want.input {
        return Err(CheckpointError::Input {
            path,
            found: found.input,
            expected: want.input,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing

struct LogState<E> {
    file: File,
    last_sync: Instant,
    error: Option<CheckpointError<E>>,
}

impl<E> LogState<E> {
    /// Appends one sealed record, then syncs if `sync_every` has passed since the last sync;
    /// false (and the error kept) if the log cannot be written.
    fn append_frame(&mut self, path: &Path, sync_every: Duration, frame: &[u8]) -> bool {
        if self.error.is_some() {
            return false;
        }
        let mut r = self.file.write_all(frame);
        if r.is_ok() && self.last_sync.elapsed() >= sync_every {
            r = self.file.sync_data();
            self.last_sync = Instant::now();
        }
        match r {
            Ok(()) => true,
            Err(source) => {
                self.error = Some(CheckpointError::Io {
                    path: path.to_path_buf(),
                    source,
                });
                false
            }
        }
    }

    /// The end of the map: syncs only if `sync_every` has passed since the last sync (or the
    /// map's start) — the records since were written within one `sync_every`, which is what
    /// the policy allows a machine crash to lose; a map shorter than `sync_every` pays no
    /// `fsync`. Returns the first error of the run, if any.
    fn end(&mut self, path: &Path, sync_every: Duration) -> Option<CheckpointError<E>> {
        if self.error.is_none() && self.last_sync.elapsed() >= sync_every {
            if let Err(source) = self.file.sync_data() {
                self.error = Some(CheckpointError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
            self.last_sync = Instant::now();
        }
        self.error.take()
    }
}

/// The open log of a running map.
struct Log<'a, E> {
    path: &'a Path,
    state: Mutex<LogState<E>>,
    sync_every: Duration,
}

impl<E> Log<'_, E> {
    /// Appends one sealed record; false (and the error kept) if the log cannot be written.
    fn append(&self, frame: &[u8]) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.append_frame(self.path, self.sync_every, frame)
    }

    /// Records that the map must stop because of `e` (the first error wins).
    fn fail(&self, e: CheckpointError<E>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.error.get_or_insert(e);
    }

    /// Syncs the log if the policy asks for it ([`LogState::end`]); the first error of the
    /// run, if any.
    fn finish(self) -> Option<CheckpointError<E>> {
        let path = self.path;
        let mut st = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        st.end(path, self.sync_every)
    }
}

/// The input of the items still to run: item `k` is input item `todo[k]`.
struct Remapped<'a, T> {
    items: SliceInput<'a, T>,
    todo: &'a [usize],
}

impl<'a, T: Sync> MapInput for Remapped<'a, T> {
    /// The item and its index in the input.
    type Item = (&'a T, usize);
    fn len(&self) -> usize {
        self.todo.len()
    }
    #[inline]
    unsafe fn take(&self, k: usize) -> (&'a T, usize) {
        let i = self.todo[k];
        // SAFETY: `k < len` (caller contract) and `todo` holds distinct indices of `items`.
        (unsafe { self.items.take(i) }, i)
    }
}

/// Writes result `k` into slot `todo[k]` of the full output and appends each finished chunk's
/// results to the log.
struct LogSink<'a, R, E> {
    out: VecSink<R>,
    todo: &'a [usize],
    written: &'a [AtomicBool],
    log: &'a Log<'a, E>,
    abort: Option<&'a AbortHandle>,
    _r: std::marker::PhantomData<fn() -> R>,
}

/// One run of consecutive results, serialized straight from the output buffer.
#[derive(Serialize)]
struct Run<'a, R>(u64, &'a [R]);

/// The record of chunk `r` (indices into `todo`) from the output at `out`, or `None` when
/// nothing in it finished.
///
/// # Safety
/// Called by the participant that ran chunk `r`, at its completion point: every slot
/// `todo[k]` whose `written[k]` is set was written by this participant during the chunk, and
/// no other thread writes or reads these slots until the map is collected (after every
/// participant has left); the output buffer is not moved meanwhile.
unsafe fn record_of<R: Serialize>(
    out: &VecSink<R>,
    todo: &[usize],
    written: &[AtomicBool],
    r: Range<usize>,
) -> Result<Option<Vec<u8>>, String> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for k in r {
        if written[k].load(Ordering::Relaxed) {
            push_index(&mut runs, todo[k]);
        }
    }
    if runs.is_empty() {
        return Ok(None);
    }
    let refs: Vec<Run<'_, R>> = runs
        .iter()
        .map(|h| {
            // SAFETY: every slot of `h` was written during the chunk by the calling
            // participant and is not touched by anyone else until collected (function
            // contract).
            let s = unsafe { std::slice::from_raw_parts(out.0.add(h.start), h.len()) };
            Run(h.start as u64, s)
        })
        .collect();
    // One allocation for the usual record: plain data serializes to about its size (varints
    // are at most 10 bytes per run header); growing from empty cost a copy per doubling.
    let items: usize = runs.iter().map(|h| h.len()).sum();
    let guess = FRAME + 10 + runs.len() * 20 + items.saturating_mul(std::mem::size_of::<R>());
    let mut buf = Vec::new();
    let _ = buf.try_reserve_exact(guess); // a guess: without it the buffer just grows
    buf.resize(FRAME, 0);
    let buf = postcard::to_extend(&refs, buf).map_err(|e| e.to_string())?;
    Ok(Some(seal(buf)))
}

/// The chunk completion point of both log sinks: appends chunk `r`'s record to the log (or
/// notes why it cannot be serialized); false stops the map — the log failed, or `abort` was
/// aborted (after this chunk's record was appended).
///
/// # Safety
/// As [`record_of`].
unsafe fn log_chunk<R: Serialize, E>(
    out: &VecSink<R>,
    todo: &[usize],
    written: &[AtomicBool],
    append: impl FnOnce(&[u8]) -> bool,
    fail: impl FnOnce(CheckpointError<E>),
    abort: Option<&AbortHandle>,
    r: Range<usize>,
) -> bool {
    let first = r.start;
    // SAFETY: function contract.
    let ok = match panic::catch_unwind(AssertUnwindSafe(|| unsafe {
        record_of(out, todo, written, r)
    })) {
        Ok(Ok(None)) => true,
        Ok(Ok(Some(frame))) => append(&frame),
        Ok(Err(message)) => {
            fail(CheckpointError::Encode {
                what: format!("a result of the chunk starting at item {}", todo[first]),
                message,
            });
            false
        }
        Err(payload) => {
            let message = crate::unwind::panic_message(&*payload);
            crate::unwind::drop_payload(payload);
            fail(CheckpointError::Encode {
                what: format!("a result of the chunk starting at item {}", todo[first]),
                message: format!("Serialize panicked: {message}"),
            });
            false
        }
    };
    ok && !abort.is_some_and(AbortHandle::is_aborted)
}

/// Back from "todo" index space (the items the pipeline ran) to the input's indices. `todo`
/// is increasing, so the lowest failing index stays the lowest.
fn to_input_indices<E>(rep: &mut Report<E>, todo: &[usize]) {
    rep.error = rep.error.take().map(|(k, e)| (todo[k], e));
    rep.panic = rep.panic.take().map(|(k, m)| (todo[k], m));
    let mut holes = Vec::new();
    for h in rep.holes.drain(..) {
        for k in h {
            push_index(&mut holes, todo[k]);
        }
    }
    rep.holes = holes;
    rep.untaken.clear();
}

// SAFETY: the sink writes distinct slots from distinct threads (the `put` contract) and reads a
// slot only on the thread that wrote it (`chunk_done`); `R: Send`, and the log is behind a
// mutex.
unsafe impl<R: Send, E: Send> Sync for LogSink<'_, R, E> {}

impl<R: Serialize + Send, E: Send> Sink<R> for LogSink<'_, R, E> {
    #[inline]
    unsafe fn put(&self, k: usize, r: R) {
        // SAFETY: `k` is in bounds and written once (caller contract); `todo[k]` is a distinct
        // in-bounds slot of the output for each `k`, and not one read from the log.
        unsafe { self.out.put(self.todo[k], r) };
        self.written[k].store(true, Ordering::Relaxed);
    }

    fn chunk_done(&self, r: Range<usize>) -> bool {
        // SAFETY: the pipeline calls `chunk_done` on the participant that ran chunk `r`, after
        // its `put`s; slots are read by nobody else until `collect`, after every participant
        // left, and the output buffer stays where it is for the whole map.
        unsafe {
            log_chunk(
                &self.out,
                self.todo,
                self.written,
                |frame| self.log.append(frame),
                |e| self.log.fail(e),
                self.abort,
                r,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Background maps

/// The log of a background map, shared by its sink and its output.
struct BgLog<E> {
    path: PathBuf,
    state: Mutex<LogState<E>>,
    sync_every: Duration,
    /// Input index of each item the pipeline runs (increasing).
    todo: Arc<[usize]>,
    written: Box<[AtomicBool]>,
    abort: Option<AbortHandle>,
}

impl<E> BgLog<E> {
    fn state(&self) -> std::sync::MutexGuard<'_, LogState<E>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The items still to run, as the pipeline's input: item `k` is input index `todo[k]`.
struct TodoInput(Arc<[usize]>);

impl MapInput for TodoInput {
    type Item = usize;
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    unsafe fn take(&self, k: usize) -> usize {
        self.0[k]
    }
}

/// The input vector of a background map, owned by its closure: dropped with the map, item by
/// item (a panicking `Drop` is reported on stderr, it cannot unwind into an engine).
struct Items<T>(Vec<T>);

impl<T> Drop for Items<T> {
    fn drop(&mut self) {
        super::run::drop_vec(std::mem::take(&mut self.0));
    }
}

/// The sink of a background map: as [`LogSink`], owning its log.
struct BgSink<R, E> {
    out: VecSink<R>,
    log: Arc<BgLog<E>>,
}

impl<R: Serialize + Send, E: Send> Sink<R> for BgSink<R, E> {
    #[inline]
    unsafe fn put(&self, k: usize, r: R) {
        // SAFETY: as in `LogSink::put`.
        unsafe { self.out.put(self.log.todo[k], r) };
        self.log.written[k].store(true, Ordering::Relaxed);
    }

    fn chunk_done(&self, r: Range<usize>) -> bool {
        let log = &*self.log;
        // SAFETY: as in `LogSink::chunk_done`; the output buffer lives in the map's `BgOut`
        // and is taken out only by `finish`, after every participant left.
        unsafe {
            log_chunk(
                &self.out,
                &log.todo,
                &log.written,
                |frame| log.state().append_frame(&log.path, log.sync_every, frame),
                |e| {
                    log.state().error.get_or_insert(e);
                },
                log.abort.as_ref(),
                r,
            )
        }
    }
}

/// The output of a background map: the results (with what finished kept for
/// [`AsyncCheckpoint::get_partial`]) and the log to close.
struct BgOut<R, E> {
    vec: VecOut<R>,
    log: Arc<BgLog<E>>,
    n: usize,
}

impl<R: Serialize + Send + 'static, E: Send + 'static> AsyncOutput for BgOut<R, E> {
    type R = R;
    type E = E;
    type Sink = BgSink<R, E>;
    type T = Result<Vec<R>, CheckpointError<E>>;
    fn finish(&self, mut rep: Report<E>, _todo: usize) -> Result<Self::T, MapError> {
        let log = &*self.log;
        to_input_indices(&mut rep, &log.todo);
        let log_error = log.state().end(&log.path, log.sync_every);
        if log_error.is_some() {
            rep.stopped = true;
        }
        // SAFETY: called once, by the last participant, after the gate closed; the slots
        // outside `rep.holes` (now in input indices) are exactly those read from the log
        // before the map started or written by the sink.
        let r = unsafe { self.vec.finish_vec(rep, self.n, log_error.is_some()) };
        Ok(match (r, log_error) {
            (Ok(v), None) => Ok(v),
            (Ok(v), Some(e)) => {
                super::run::drop_vec(v); // empty unless nobody wants the partial results
                Err(e)
            }
            (Err(_), Some(e)) => Err(e),
            (Err(e), None) => Err(CheckpointError::Map(e)),
        })
    }
    fn drop_value(v: Self::T) {
        match v {
            Ok(v) => super::run::drop_vec(v),
            Err(e) => {
                if let Err(m) = crate::unwind::drop_caught(e) {
                    crate::unwind::report_orphan("the error of a checkpointed map", &m);
                }
            }
        }
    }
    fn take_partial(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.vec.take_partial()
    }
    fn discard_partial(&self) {
        self.vec.discard_partial()
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster's checkpointed maps (`src/cluster/checkpoint.rs`): the same log, kept by the root

/// The open log of a cluster map, on its root: the same header, records and flush policy as
/// [`Checkpoint`], so a log written by either resumes in the other.
#[cfg(feature = "mpi")]
pub(crate) struct RootLog<'a>(Log<'a, Infallible>);

#[cfg(feature = "mpi")]
impl<'a> RootLog<'a> {
    /// Opens (or creates) the log at `path` for a map of `input` to results `R`, the input
    /// fingerprinted on `pool`: every result found is handed to `found(index, result)`.
    pub(crate) fn open<T, R>(
        pool: &crate::Pool,
        path: &'a Path,
        sync_every: Duration,
        input: &[T],
        found: &mut dyn FnMut(usize, R),
    ) -> Result<Self, CheckpointError>
    where
        T: Serialize + Sync,
        R: DeserializeOwned,
    {
        let header = Header {
            items: input.len() as u64,
            input: fingerprint(&pool.load_balanced(), input)?,
            item_type: std::any::type_name::<T>().to_string(),
            result_type: std::any::type_name::<R>().to_string(),
        };
        let file = open_log::<R, Infallible>(path, &header, found)?;
        Ok(RootLog(Log {
            path,
            state: Mutex::new(LogState {
                file,
                last_sync: Instant::now(),
                error: None,
            }),
            sync_every,
        }))
    }

    /// Appends one record: `runs` serializes as the `(first index, results)` runs of one
    /// chunk. `false` (the error kept for [`finish`](Self::finish)) if it cannot be encoded
    /// or written; `first` names the chunk in that error.
    pub(crate) fn append<S: Serialize>(&self, runs: &S, first: usize) -> bool {
        match postcard::to_extend(runs, vec![0u8; FRAME]) {
            Ok(buf) => self.0.append(&seal(buf)),
            Err(e) => {
                self.fail_encode(first, e.to_string());
                false
            }
        }
    }

    /// Records that a result of the chunk starting at input item `first` could not be
    /// serialized (the map must stop).
    pub(crate) fn fail_encode(&self, first: usize, message: String) {
        self.0.fail(CheckpointError::Encode {
            what: format!("a result of the chunk starting at item {first}"),
            message,
        });
    }

    /// Ends the map's use of the log (syncing it as [`Checkpoint`] does); the first error of
    /// the run, if any.
    pub(crate) fn finish(self) -> Option<CheckpointError> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri (`.ci/miri.sh`): the partial collect, and a checkpointed map that
    //! reads results back from slots its sink wrote (`LogSink::record`) and from the log.
    use crate::map::body::Report;
    use crate::map::sink::{Sink, VecSink, alloc_output, collect_partial};
    use crate::{AbortHandle, CheckpointError, MapError, Pool, Schedule};
    use std::convert::Infallible;
    use std::time::Duration;

    #[test]
    fn collect_partial_moves_written_slots_out_once() {
        let n = 6;
        let mut out = alloc_output::<String, Infallible>(n).unwrap();
        let sink = VecSink(out.as_mut_ptr());
        for i in [0, 2, 3, 5] {
            // SAFETY: in bounds, each index once.
            unsafe { sink.put(i, format!("r{i}")) };
        }
        let rep = Report::<Infallible> {
            holes: vec![4..5, 1..2],
            ..Report::default()
        };
        // SAFETY: exactly the slots outside the holes were written.
        let p = unsafe { collect_partial(out, n, rep) }.unwrap_err();
        assert!(matches!(p.error, MapError::Aborted { done: 4, total: 6 }));
        let want: Vec<Option<String>> = [Some(0), None, Some(2), Some(3), None, Some(5)]
            .iter()
            .map(|o| o.map(|i| format!("r{i}")))
            .collect();
        assert_eq!(p.results, want);
    }

    #[test]
    fn checkpointed_map_resumes_with_owned_results() {
        let pool = Pool::builder()
            .workers(2)
            .spin(Duration::ZERO)
            .build()
            .unwrap();
        let path = std::env::temp_dir().join(format!(
            "parview-unit-ckpt-{}-{:?}.log",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let xs: Vec<u32> = (0..24).collect();
        let lb = pool.schedule(Schedule::Dynamic(3));
        let e = lb
            .checkpoint(&path)
            .try_map(&xs, |&x| if x == 13 { Err(x) } else { Ok(format!("v{x}")) })
            .unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::Map(MapError::Failed { index: 13, .. })
        ));
        let v = pool
            .schedule(Schedule::Guided(1))
            .checkpoint(&path)
            .map(&xs, |x| format!("v{x}"))
            .unwrap();
        assert_eq!(v, xs.iter().map(|x| format!("v{x}")).collect::<Vec<_>>());
        std::fs::remove_file(&path).unwrap();
    }

    /// The background path (`BgSink` reading the slots it wrote from an output owned by the
    /// map, `BgOut` collecting them with those read from the log), aborted and resumed.
    #[test]
    fn checkpointed_map_async_aborts_and_resumes_with_owned_results() {
        let pool = Pool::builder()
            .workers(2)
            .spin(Duration::ZERO)
            .build()
            .unwrap();
        let path = std::env::temp_dir().join(format!(
            "parview-unit-ckpt-async-{}-{:?}.log",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let xs: Vec<u32> = (0..24).collect();
        let want: Vec<String> = xs.iter().map(|x| format!("v{x}")).collect();
        let stop = AbortHandle::new();
        let s = stop.clone();
        let ar = pool
            .schedule(Schedule::Dynamic(3))
            .checkpoint(&path)
            .abort_on(&stop)
            .map_async(xs.clone(), move |&x| {
                if x == 10 {
                    s.abort();
                }
                format!("v{x}")
            });
        let p = ar.get_partial().unwrap_err();
        assert!(matches!(
            p.error,
            CheckpointError::Map(MapError::Aborted { total: 24, .. })
        ));
        assert!(p.results[..12].iter().all(Option::is_some));
        let v = pool
            .schedule(Schedule::Guided(1))
            .checkpoint(&path)
            .map_async(xs.clone(), |x| format!("v{x}"))
            .get()
            .unwrap();
        assert_eq!(v, want);
        // A handle dropped at once, on a fresh log: the map is aborted, what ran is dropped.
        std::fs::remove_file(&path).unwrap();
        drop(
            pool.load_balanced()
                .checkpoint(&path)
                .map_async(xs.clone(), |x| format!("v{x}")),
        );
        std::fs::remove_file(&path).unwrap();
    }
}
