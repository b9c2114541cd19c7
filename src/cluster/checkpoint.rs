//! Checkpoint and resume of the cluster's load-balanced maps, on the root: a farm's
//! ([`FarmView::checkpoint`] → [`FarmCheckpoint`]) and the SPMD cluster's
//! ([`ClusterView::checkpoint`] → [`ClusterCheckpoint`]).
//!
//! # The log
//! The same file as the local [`Checkpoint`](crate::Checkpoint) — magic, a header (item count,
//! input fingerprint, item and result type names), one `len | crc32 | postcard` record per
//! finished chunk, a torn tail cut off, another map's log refused — so a log written by a local
//! map, a farm running on its local pool, a farm under `mpirun` or an SPMD cluster map resumes
//! in any of the others, with any number of ranks, workers or schedule, as long as the items
//! and the item and result types are the same.
//!
//! **Only the root touches the log.** It opens the log, computes the items whose results are
//! not in it and runs the cluster map over just those (finished items are neither sent nor run
//! again); as each chunk's results come back to the root (from another rank or from its own
//! engines) the root appends the chunk's record with one `write`, on its MPI thread, and
//! `fsync`s on the local policy ([`FarmCheckpoint::sync_every`], default 1 s, and at the end).
//! A crash of any rank (or of the job) loses at most the chunks in flight: up to `workers + 1`
//! per rank with the cluster's ask-ahead. The result is bitwise identical to an uninterrupted
//! run (postcard stores floats' bits).
//!
//! # Errors
//! [`ClusterCheckpointError`]: `Log` for the log's problems (the local [`CheckpointError`]'s
//! variants: I/O, not a checkpoint, another input/length/type, corrupt, a value that cannot be
//! serialized), `Map` for the cluster map's own ([`ClusterMapError`], indices in the full
//! input), and, on the ranks other than the root of an SPMD map, `RootRefused` with the root's
//! message: every rank learns that the root refused the log (one broadcast), so none is left
//! waiting. A separate enum rather than a `CheckpointError::Cluster` variant: `CheckpointError`
//! is exhaustive and exists without feature `mpi`, and a variant that appears with a feature
//! would break exhaustive `match`es in crates that do not enable it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Serialize, Serializer};

use super::balanced::{ChunkOut, ItemsWork, RunOpts, Work, WorkMsg, catch_item, run_items};
use super::farm::{Backend, Input, MapSpec, Task, on_host, send_map, with_cluster};
use super::{AbortHandle, Cluster, ClusterMapError, ClusterView, FarmView};
use crate::map::checkpoint::RootLog;
use crate::{CheckpointError, MapError, Pool, Schedule};

/// Why a checkpointed cluster map ([`FarmCheckpoint`], [`ClusterCheckpoint`]) could not run,
/// resume or finish: `Log` for the log's problems (the local [`CheckpointError`]'s variants),
/// `Map` for the cluster map's own ([`ClusterMapError`], indices in the full input).
///
/// A separate enum rather than a `CheckpointError::Cluster` variant: [`CheckpointError`] is
/// exhaustive and exists without feature `mpi`, and a variant that appears with a feature
/// would break exhaustive `match`es in crates that do not enable it.
///
/// # Examples
/// ```
/// use parview::cluster::{ClusterCheckpointError, ClusterMapError, Farm};
/// use parview::CheckpointError;
/// parview::task! { fn sq(x: u64) -> u64 { x * x } }
/// let farm = Farm::start().unwrap();
/// let path = std::env::temp_dir().join(format!("parview-doc-cerr-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// farm.load_balanced().checkpoint(&path).map(sq, &[1, 2, 3]).unwrap();
/// // The same log for another input is refused, never merged.
/// let e = farm.load_balanced().checkpoint(&path).map(sq, &[1, 2, 4]).unwrap_err();
/// assert!(matches!(e, ClusterCheckpointError::Log(CheckpointError::Input { .. })));
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterCheckpointError {
    /// The log cannot be used or written: I/O, not a checkpoint, written for another input,
    /// length or type, corrupt, or a value that cannot be serialized (any variant of the local
    /// [`CheckpointError`]; its `Map` only for a local farm's output too large to allocate).
    /// Nothing ran if the log was refused when the map started.
    #[error(transparent)]
    Log(CheckpointError),
    /// The cluster map failed (an item panicked, an abort, an invalid schedule); indices are
    /// the full input's. Every result that came back before is in the log, so a rerun
    /// resumes from there.
    #[error("checkpointed cluster map: {0}")]
    Map(ClusterMapError),
    /// On the ranks other than the root of an SPMD map ([`ClusterCheckpoint::map`]): the root
    /// refused its log (the root returns [`Log`](Self::Log)); `message` is the root's error.
    #[error("the root refused the checkpoint log: {message}")]
    RootRefused {
        /// The root's error, as text.
        message: String,
    },
}

// ---- the root's side -------------------------------------------------------------------

/// The items `todo` of `items`, serialized as a sequence (the bytes of a `&[T]` of them).
struct Picked<'a, T> {
    items: &'a [T],
    idx: &'a [usize],
}

impl<T: Serialize> Serialize for Picked<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.idx.len()))?;
        for &i in self.idx {
            seq.serialize_element(&self.items[i])?;
        }
        seq.end()
    }
}

/// A map over the root's items `todo` only (the ones not in the log): chunk `k..` of it is
/// items `todo[k]..`, sent as a plain items chunk, so the other ranks serve it unchanged.
struct PickedWork<'a, T, F> {
    items: &'a [T],
    todo: &'a [usize],
    f: F,
}

impl<T, R, F> Work for PickedWork<'_, T, F>
where
    T: Serialize + DeserializeOwned + Sync,
    R: Serialize + DeserializeOwned + Send,
    F: Fn(&T) -> R + Sync,
{
    type Out = R;
    fn len(&self) -> usize {
        self.todo.len()
    }
    fn encode(&self, id: u64, r: Range<usize>) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(&WorkMsg::Chunk {
            id,
            start: r.start as u64,
            len: r.len() as u64,
            items: Picked {
                items: self.items,
                idx: &self.todo[r],
            },
        })
        .map_err(|e| format!("encoding the items: {e}"))
    }
    fn run_local(&self, r: Range<usize>, cancel: &std::sync::atomic::AtomicBool) -> ChunkOut<R> {
        let idx = &self.todo[r];
        run_items(idx.len(), cancel, |k| (self.f)(&self.items[idx[k]]))
    }
    fn run_remote(&self, bytes: &[u8], cancel: &std::sync::atomic::AtomicBool) -> ChunkOut<R> {
        ItemsWork {
            items: &[] as &[T],
            f: &self.f,
        }
        .run_remote(bytes, cancel)
    }
}

/// Finished results of one run, serialized as the `Vec<R>` of a log record.
struct Slots<'a, R>(&'a [Option<R>]);

impl<R: Serialize> Serialize for Slots<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(r.as_ref().expect("a run holds finished results only"))?;
        }
        seq.end()
    }
}

/// One chunk's record: runs `(first input index, results)` of consecutive input indices,
/// serialized as the local log's `Vec<(u64, Vec<R>)>`.
struct ChunkRuns<'a, R> {
    /// The chunk's slots (in `todo` order).
    slots: &'a [Option<R>],
    /// `(first input index, slots range)` of each run.
    runs: Vec<(usize, Range<usize>)>,
}

impl<R: Serialize> Serialize for ChunkRuns<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.runs.len()))?;
        for (start, r) in &self.runs {
            seq.serialize_element(&Run(*start as u64, Slots(&self.slots[r.clone()])))?;
        }
        seq.end()
    }
}

/// `(u64, Vec<R>)` as postcard writes a tuple.
struct Run<'a, R>(u64, Slots<'a, R>);

impl<R: Serialize> Serialize for Run<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&self.1)?;
        t.end()
    }
}

/// The runs `(first input index, slots range)` of the finished slots of a chunk whose items
/// are input items `todo_of_chunk`.
fn runs_of<R>(todo_of_chunk: &[usize], chunk: &[Option<R>]) -> Vec<(usize, Range<usize>)> {
    let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
    for (j, slot) in chunk.iter().enumerate() {
        if slot.is_none() {
            continue;
        }
        let i = todo_of_chunk[j];
        match runs.last_mut() {
            Some((start, s)) if *start + s.len() == i && s.end == j => s.end += 1,
            _ => runs.push((i, j..j + 1)),
        }
    }
    runs
}

/// The root's part of a checkpointed cluster map: the open log, the results read from it, the
/// items still to run, and the handle that stops the map if the log cannot be written.
struct RootSide<'a, R> {
    log: RootLog<'a>,
    slots: Vec<Option<R>>,
    todo: Vec<usize>,
    stop: AbortHandle,
}

impl<'a, R: Serialize + DeserializeOwned> RootSide<'a, R> {
    /// Opens the log for a map of `items` (fingerprinted on `pool`).
    fn open<T: Serialize + Sync>(
        pool: &Pool,
        path: &'a Path,
        sync_every: Duration,
        items: &[T],
    ) -> Result<Self, CheckpointError> {
        let n = items.len();
        let mut slots: Vec<Option<R>> = (0..n).map(|_| None).collect();
        // An item's `Serialize` may panic (on the MPI thread that would end the job).
        let log = catch_item(|| {
            RootLog::open::<T, R>(pool, path, sync_every, items, &mut |i, r| {
                slots[i] = Some(r);
            })
        })
        .unwrap_or_else(|message| {
            Err(CheckpointError::Encode {
                what: "the input".into(),
                message: format!("Serialize panicked: {message}"),
            })
        })?;
        let todo = (0..n).filter(|&i| slots[i].is_none()).collect();
        Ok(RootSide {
            log,
            slots,
            todo,
            stop: AbortHandle::new(),
        })
    }

    /// The map's [`ChunkHook`](super::balanced::ChunkHook): appends the record of the chunk
    /// `r` (indices into `todo`) whose slots are `chunk`; stops the map if it cannot.
    fn chunk_in(&self, r: Range<usize>, chunk: &[Option<R>]) {
        let runs = runs_of(&self.todo[r], chunk);
        let Some(&(first, _)) = runs.first() else {
            return;
        };
        let record = ChunkRuns { slots: chunk, runs };
        // A result's `Serialize` may panic: caught (the MPI thread must not unwind).
        match catch_item(|| self.log.append(&record, first)) {
            Ok(true) => {}
            Ok(false) => self.stop.abort(),
            Err(message) => {
                self.log
                    .fail_encode(first, format!("Serialize panicked: {message}"));
                self.stop.abort();
            }
        }
    }

    /// The full result from the map over `todo` (`res`, in `todo` order) and the log.
    fn finish(
        self,
        res: Result<Vec<R>, ClusterMapError>,
    ) -> Result<Vec<R>, ClusterCheckpointError> {
        let RootSide {
            log,
            mut slots,
            todo,
            ..
        } = self;
        let n = slots.len();
        let logged = n - todo.len();
        if let Some(e) = log.finish() {
            return Err(ClusterCheckpointError::Log(e));
        }
        match res {
            Ok(vals) => {
                for (k, v) in vals.into_iter().enumerate() {
                    slots[todo[k]] = Some(v);
                }
                Ok(slots
                    .into_iter()
                    .map(|s| s.expect("every item was in the log or ran"))
                    .collect())
            }
            Err(ClusterMapError::Failed {
                rank,
                index,
                message,
            }) => Err(ClusterCheckpointError::Map(ClusterMapError::Failed {
                rank,
                index: todo.get(index).copied().unwrap_or(index),
                message,
            })),
            Err(ClusterMapError::Aborted { done, .. }) => {
                Err(ClusterCheckpointError::Map(ClusterMapError::Aborted {
                    done: logged + done,
                    total: n,
                }))
            }
            Err(e) => Err(ClusterCheckpointError::Map(e)),
        }
    }

    /// Runs the map over `todo` on the root with `schedule`, the user's `abort` handle and
    /// progress `label`, appending each chunk to the log.
    fn run<T, F>(
        self,
        c: &Cluster,
        items: &[T],
        f: F,
        (schedule, abort, label): (Schedule, Option<&AbortHandle>, Option<&str>),
    ) -> Result<Vec<R>, ClusterCheckpointError>
    where
        T: Serialize + DeserializeOwned + Sync,
        R: Send,
        F: Fn(&T) -> R + Sync,
    {
        let hook = |r: Range<usize>, chunk: &[Option<R>]| self.chunk_in(r, chunk);
        let mut opts = RunOpts::blocking(schedule, abort, label, false);
        opts.aborts.push(self.stop.clone());
        opts.on_chunk = Some(&hook);
        let work = PickedWork {
            items,
            todo: &self.todo,
            f,
        };
        let (res, _) = c.run_root(&work, &opts);
        drop(opts);
        self.finish(res)
    }
}

// ---- the farm ----------------------------------------------------------------------------

/// A [`FarmView`] whose maps are checkpointed to an append-only log on rank 0
/// ([`FarmView::checkpoint`]): a rerun with the same path sends and runs only the items whose
/// results are not in the log, and returns a result bitwise identical to an uninterrupted run,
/// whatever the ranks, workers or schedule of either run. The log is the local
/// [`Checkpoint`](crate::Checkpoint)'s (same format, same flush policy, same refusals): a log
/// written by a farm under `mpirun` resumes in a local farm or a local
/// [`LoadBalancedView::checkpoint`](crate::LoadBalancedView::checkpoint) map of the same items
/// and types, and the other way round.
///
/// **Only rank 0 touches the log.** It opens the log, computes the items whose results are not
/// in it and runs the farm map over just those (finished items are neither sent nor run
/// again); as each chunk's results come back to rank 0 (from another rank or from its own
/// engines) it appends the chunk's record with one `write`, on its MPI thread, and `fsync`s on
/// the local policy ([`sync_every`](Self::sync_every), default 1 s, and at the end). A crash
/// of any rank, or of the job, loses at most the chunks in flight: up to `workers + 1` per
/// rank with the cluster's ask-ahead. Locally (no `mpirun`) the map is the local checkpointed
/// map on the farm's pool.
///
/// The log's fingerprint covers the items and the item and result type names, not the task
/// or its context (as the local map does not cover its closure): use one log per task.
///
/// # Examples
/// Recipe "abort, fix, resume" on a farm: the first run meets an item that panics; every
/// other item still runs and is logged; the fixed rerun (here the fix is in the context, which
/// is not part of the log's fingerprint) computes only the one item that is missing.
/// ```
/// use parview::cluster::{ClusterCheckpointError, ClusterMapError, Farm};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// static RAN: AtomicUsize = AtomicUsize::new(0); // locally, tasks run in this process
/// parview::task! {
///     fn inv(fixed: &bool, x: u32) -> f64 {
///         RAN.fetch_add(1, Ordering::Relaxed);
///         assert!(*fixed || x != 60, "division by zero");
///         1.0 / (x + 1) as f64
///     }
/// }
/// let farm = Farm::start().unwrap();
/// let path = std::env::temp_dir().join(format!("parview-doc-farm-{}.ckpt", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let xs: Vec<u32> = (0..100).collect();
/// let e = farm.load_balanced().checkpoint(&path).map_with(inv, &false, &xs).unwrap_err();
/// assert!(matches!(e, ClusterCheckpointError::Map(ClusterMapError::Failed { index: 60, .. })));
///
/// RAN.store(0, Ordering::Relaxed);
/// let v = farm.load_balanced().checkpoint(&path).map_with(inv, &true, &xs).unwrap();
/// assert_eq!(RAN.load(Ordering::Relaxed), 1); // item 60 only
/// assert_eq!(v, xs.iter().map(|&x| 1.0 / (x + 1) as f64).collect::<Vec<_>>());
/// std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct FarmCheckpoint<'f> {
    view: FarmView<'f>,
    path: PathBuf,
    sync_every: Duration,
}

impl<'f> FarmView<'f> {
    /// This view's maps checkpointed to the append-only log at `path` on rank 0: see
    /// [`FarmCheckpoint`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn half(x: f64) -> f64 { x / 2.0 } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-fck-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let v = farm.load_balanced().checkpoint(&path).map(half, &[1.0, 3.0]).unwrap();
    /// assert_eq!(v, vec![0.5, 1.5]);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn checkpoint(&self, path: impl AsRef<Path>) -> FarmCheckpoint<'f> {
        FarmCheckpoint {
            view: self.clone(),
            path: path.as_ref().to_path_buf(),
            sync_every: Duration::from_secs(1),
        }
    }
}

impl FarmCheckpoint<'_> {
    /// `fsync` the log at most this often (default 1 s) while the map runs, and when it ends,
    /// as [`Checkpoint::sync_every`](crate::Checkpoint::sync_every): records are written to
    /// the OS after every chunk regardless; `Duration::ZERO` syncs after every chunk,
    /// `Duration::MAX` never.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let ck = farm.load_balanced().checkpoint("run.ckpt").sync_every(Duration::ZERO);
    /// assert_eq!(ck.get_sync_every(), Duration::ZERO);
    /// ```
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every;
        self
    }

    /// The sync interval ([`sync_every`](Self::sync_every)).
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let ck = farm.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.get_sync_every(), std::time::Duration::from_secs(1));
    /// ```
    pub fn get_sync_every(&self) -> Duration {
        self.sync_every
    }

    /// The log's path (on rank 0).
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let ck = farm.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.path(), std::path::Path::new("run.ckpt"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpointed [`FarmView::map`]: results in input order; items already in the log are
    /// neither sent nor run; each chunk's results are appended as they come back to rank 0.
    ///
    /// # Errors
    /// [`ClusterCheckpointError::Log`] (the log cannot be used or written: nothing more is
    /// handed out), [`ClusterCheckpointError::Map`] (as [`FarmView::map`]; what finished is
    /// in the log).
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn cube(x: u64) -> u64 { x * x * x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-fmap-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let xs: Vec<u64> = (0..1000).collect();
    /// let a = farm.load_balanced().checkpoint(&path).map(cube, &xs).unwrap();
    /// let b = farm.load_balanced().checkpoint(&path).map(cube, &xs).unwrap(); // from the log
    /// assert_eq!(a, b);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn map<T>(&self, task: T, items: &[T::Item]) -> Result<Vec<T::Out>, ClusterCheckpointError>
    where
        T: Task<Ctx = ()>,
    {
        self.map_with(task, &(), items)
    }

    /// Checkpointed [`FarmView::map_with`]. The context is not part of the log's fingerprint
    /// (only the items and the item and result types are): a rerun with another context
    /// keeps the results logged with the first.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn add(k: &i64, x: i64) -> i64 { x + k } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let path = std::env::temp_dir().join(format!("parview-doc-fwith-{}.ckpt", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let v = farm.load_balanced().checkpoint(&path).map_with(add, &10, &[1, 2]).unwrap();
    /// assert_eq!(v, vec![11, 12]);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn map_with<T: Task>(
        &self,
        _task: T,
        ctx: &T::Ctx,
        items: &[T::Item],
    ) -> Result<Vec<T::Out>, ClusterCheckpointError> {
        let spec = self.view.spec(false);
        spec.check::<T>(&Input::Items(items))
            .map_err(ClusterCheckpointError::Map)?;
        match &self.view.farm.backend {
            Backend::Local(pool, _) => pool
                .load_balanced()
                .schedule(spec.schedule)
                .checkpoint(&self.path)
                .sync_every(self.sync_every)
                .map(items, |x| T::run(ctx, x))
                .map_err(from_local),
            Backend::Mpi { host, .. } => on_host(host, || {
                with_cluster(|c| farm_root::<T>(c, &spec, ctx, items, &self.path, self.sync_every))
            }),
        }
    }
}

/// A local farm's error in the cluster's terms (rank 0).
fn from_local(e: CheckpointError) -> ClusterCheckpointError {
    let map = |e| ClusterCheckpointError::Map(e);
    match e {
        CheckpointError::Map(MapError::Panicked { index, message, .. }) => {
            map(ClusterMapError::Failed {
                rank: 0,
                index,
                message,
            })
        }
        CheckpointError::Map(MapError::Aborted { done, total }) => {
            map(ClusterMapError::Aborted { done, total })
        }
        CheckpointError::Map(MapError::Schedule(e)) => map(ClusterMapError::Schedule(e)),
        other => ClusterCheckpointError::Log(other),
    }
}

/// Rank 0's side of a checkpointed farm map, on the MPI thread.
fn farm_root<T: Task>(
    c: &Cluster,
    spec: &MapSpec,
    ctx: &T::Ctx,
    items: &[T::Item],
    path: &Path,
    sync_every: Duration,
) -> Result<Vec<T::Out>, ClusterCheckpointError> {
    let side = RootSide::<T::Out>::open(c.pool(), path, sync_every, items)
        .map_err(ClusterCheckpointError::Log)?;
    if side.todo.is_empty() {
        // Everything is in the log: the serving ranks are not even told.
        return side.finish(Ok(Vec::new()));
    }
    if let Err(e) = send_map::<T>(c, ctx, None) {
        // Nothing was sent; the log is closed as it is.
        return match side.log.finish() {
            Some(log) => Err(ClusterCheckpointError::Log(log)),
            None => Err(ClusterCheckpointError::Map(e)),
        };
    }
    let opts = (spec.schedule, spec.abort.as_ref(), spec.label.as_deref());
    side.run(c, items, |x: &T::Item| T::run(ctx, x), opts)
}

// ---- the SPMD cluster ------------------------------------------------------------------

/// A [`ClusterView`] whose maps are checkpointed to an append-only log on the root
/// ([`ClusterView::checkpoint`]): the root reads the log, hands out only the items missing
/// from it and appends each chunk's results as they come back; the other ranks only serve.
/// The same log, flush policy and guarantees as the farm's [`FarmCheckpoint`] and the local
/// [`Checkpoint`](crate::Checkpoint). Collective, like every cluster map: every rank calls it,
/// with the same path (read on the root only). If the root refuses its log, it tells every
/// rank (one broadcast): the other ranks return
/// [`ClusterCheckpointError::RootRefused`], none is left waiting.
///
/// # Examples
/// ```no_run
/// use parview::cluster::Cluster;
/// let c = Cluster::init().unwrap();
/// let xs: Vec<u64> = if c.is_root() { (0..10_000).collect() } else { vec![] };
/// // Killed half way? Run the same program again: only the missing items are computed.
/// let v = c.load_balanced().checkpoint("squares.ckpt").map(&xs, |x| x * x).unwrap();
/// if let Some(v) = v {
///     assert_eq!(v[99], 9801); // the root
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ClusterCheckpoint<'c> {
    view: ClusterView<'c>,
    path: PathBuf,
    sync_every: Duration,
}

impl<'c> ClusterView<'c> {
    /// This view's maps checkpointed to the append-only log at `path` on the root: see
    /// [`ClusterCheckpoint`].
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<f64> = if c.is_root() { vec![1.5, 2.5] } else { vec![] };
    /// let v = c.load_balanced().checkpoint("halves.ckpt").map(&xs, |x| x / 2.0).unwrap();
    /// ```
    pub fn checkpoint(&self, path: impl AsRef<Path>) -> ClusterCheckpoint<'c> {
        ClusterCheckpoint {
            view: self.clone(),
            path: path.as_ref().to_path_buf(),
            sync_every: Duration::from_secs(1),
        }
    }
}

impl ClusterCheckpoint<'_> {
    /// `fsync` the log at most this often (default 1 s), as [`FarmCheckpoint::sync_every`].
    /// Read on the root only.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ck = c.load_balanced().checkpoint("run.ckpt").sync_every(std::time::Duration::ZERO);
    /// assert_eq!(ck.get_sync_every(), std::time::Duration::ZERO);
    /// ```
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every;
        self
    }

    /// The sync interval ([`sync_every`](Self::sync_every)).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let ck = c.load_balanced().checkpoint("run.ckpt");
    /// assert_eq!(ck.get_sync_every(), std::time::Duration::from_secs(1));
    /// ```
    pub fn get_sync_every(&self) -> Duration {
        self.sync_every
    }

    /// The log's path (used on the root).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// assert_eq!(c.load_balanced().checkpoint("a.ckpt").path(), std::path::Path::new("a.ckpt"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpointed [`ClusterView::map`]: results on the root in input order (`Ok(Some)`),
    /// `Ok(None)` on the other ranks; items already in the root's log are neither sent nor
    /// run. Collective.
    ///
    /// # Errors
    /// On the root: [`ClusterCheckpointError::Log`] (the log cannot be used — then every
    /// other rank returns [`ClusterCheckpointError::RootRefused`] and nothing runs — or
    /// cannot be written: nothing more is handed out), [`ClusterCheckpointError::Map`] (as
    /// [`ClusterView::map`]; what finished is in the log). An invalid schedule is
    /// `Map(Schedule)` on every rank.
    ///
    /// # Panics
    /// As [`ClusterView::map`].
    ///
    /// # Examples
    /// ```no_run
    /// use parview::cluster::{Cluster, ClusterCheckpointError};
    /// let c = Cluster::init().unwrap();
    /// let xs: Vec<u32> = if c.is_root() { (0..100).collect() } else { vec![] };
    /// match c.load_balanced().checkpoint("run.ckpt").map(&xs, |x| x + 1) {
    ///     Ok(Some(v)) => assert_eq!(v[0], 1),
    ///     Ok(None) => {} // not the root
    ///     Err(ClusterCheckpointError::RootRefused { message }) => eprintln!("{message}"),
    ///     Err(e) => eprintln!("root: {e}"),
    /// }
    /// ```
    pub fn map<T, R, F>(
        &self,
        items_on_root: &[T],
        f: F,
    ) -> Result<Option<Vec<R>>, ClusterCheckpointError>
    where
        T: Serialize + DeserializeOwned + Sync,
        R: Serialize + DeserializeOwned + Send,
        F: Fn(&T) -> R + Sync,
    {
        let view = &self.view;
        let c = view.cluster;
        view.check_schedule().map_err(ClusterCheckpointError::Map)?;
        if !c.is_root() {
            // The root's verdict on its log: byte 0 = go, else 1 and the root's message.
            let verdict = c.broadcast_bytes(None);
            if let Some((&1, message)) = verdict.split_first() {
                return Err(ClusterCheckpointError::RootRefused {
                    message: String::from_utf8_lossy(message).into_owned(),
                });
            }
            c.run_rank(&ItemsWork {
                items: &[] as &[T],
                f,
            });
            return Ok(None);
        }
        let side = RootSide::<R>::open(c.pool(), &self.path, self.sync_every, items_on_root);
        let verdict = match &side {
            Ok(_) => vec![0u8],
            Err(e) => [&[1u8][..], e.to_string().as_bytes()].concat(),
        };
        c.broadcast_bytes(Some(&verdict));
        let side = side.map_err(ClusterCheckpointError::Log)?;
        let opts = (view.schedule, view.abort.as_ref(), view.label());
        side.run(c, items_on_root, f, opts).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_items_travel_as_a_plain_items_chunk() {
        let items = ["a".to_string(), "b".into(), "c".into(), "d".into()];
        let bytes = postcard::to_allocvec(&Picked {
            items: &items,
            idx: &[3, 0, 2],
        })
        .unwrap();
        let back: Vec<String> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, ["d", "a", "c"]);
    }

    #[test]
    fn a_chunk_record_has_the_local_logs_runs() {
        // Chunk 2..8 of `todo`: input items 5, 6, 7, 10, 11, 12; the one at 7 panicked.
        let todo = [0, 1, 5, 6, 7, 10, 11, 12, 20];
        let chunk = [
            Some(5.5f64),
            Some(6.5),
            None,
            Some(10.5),
            Some(11.5),
            Some(12.5),
        ];
        let runs = runs_of(&todo[2..8], &chunk);
        assert_eq!(runs, vec![(5, 0..2), (10, 3..6)]);
        let bytes = postcard::to_allocvec(&ChunkRuns {
            slots: &chunk,
            runs,
        })
        .unwrap();
        let back: Vec<(u64, Vec<f64>)> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            back,
            vec![(5, vec![5.5, 6.5]), (10, vec![10.5, 11.5, 12.5])]
        );
    }
}
