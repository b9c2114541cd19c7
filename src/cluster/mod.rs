//! Scale-out over MPI with the same calls as the local pool (feature `mpi`).
//!
//! A [`Cluster`] is created once per process, on the thread that will use
//! it. MPI is initialised with threading level *Serialized*: that thread
//! makes the MPI calls, except while a background map
//! ([`ClusterView::map_async`], [`ClusterView::imap_unordered`]) runs — then
//! its driver thread does, and every other cluster call that talks to MPI
//! waits until the map has ended on its rank (see [`Cluster`], "A background
//! map in flight"), so two threads never call MPI at once; the local [`Pool`]
//! threads only compute. Every rank runs the same program (SPMD); the
//! collective methods must be called by **all** ranks in the same order:
//!
//! * [`Cluster::load_balanced`] — a [`ClusterView`]: maps whose chunks the root
//!   hands out on demand to every rank (its own engines included), with the
//!   local [`Schedule`] vocabulary, any `Serialize + DeserializeOwned` item and
//!   result type, results on the root in input order, panics returned as
//!   [`ClusterMapError::Failed`] naming rank and index, abort, progress bar
//!   and a timeline with one lane per (rank, engine); in the background with
//!   [`ClusterView::map_async`] (a [`ClusterAsyncResult`]: ready, wait, get,
//!   progress, abort, timings) and [`ClusterView::imap_unordered`] (results
//!   on the root as they arrive);
//! * [`ClusterView::checkpoint`] (and [`FarmView::checkpoint`] for the
//!   root-driven [`Farm`]) — the same maps checkpointed **on the root** to the
//!   local [`Checkpoint`](crate::Checkpoint)'s log: the root reads it, hands
//!   out only the items missing from it and appends each chunk's results as
//!   they come back; a rerun, with any number of ranks, resumes from it
//!   ([`ClusterCheckpoint`], [`FarmCheckpoint`]);
//! * [`Cluster::direct`] — a [`ClusterDirectView`]: run a closure on every
//!   rank, per-rank state ([`RankState`]), pull it to the root;
//! * [`Cluster::map_reduce`] / [`Cluster::all_map_reduce`] — deterministic
//!   reductions whose leaves are handed out like a load-balanced map: the
//!   same bits for any ranks × workers layout;
//! * the [`Equivalence`] fast path for plain numbers: [`Cluster::scatter`],
//!   [`Cluster::gather`], [`Cluster::par_map`], [`Cluster::scatter_gather`]
//!   (one contiguous block per rank, one MPI message each way).
//!
//! # Wire format
//!
//! Items and results of the load-balanced maps and the direct view travel as
//! [postcard](https://docs.rs/postcard) bytes: serde-native (any type that
//! derives `Serialize`/`Deserialize` works, `Vec<f64>`, `String`, nested
//! structs, nalgebra matrices with its `serde-serialize` feature), compact
//! (varint integers, no field names, no schema to keep in step), well kept
//! and dependency-light. The cost is one encode and one decode per chunk,
//! done on the engines, not on the MPI thread. For large arrays of plain
//! numbers the [`Equivalence`] path sends the memory as it is.
//!
//! # Failures
//!
//! A panicking item of a load-balanced map (blocking or background) or a
//! direct-view closure is caught on its rank, reported to the root as
//! [`ClusterMapError::Failed`], and the cluster stays usable. The calls that
//! return no `Result` — [`Cluster::par_map`], [`Cluster::scatter_gather`],
//! [`Cluster::map_reduce`] — catch a panicking item or leaf too, finish the
//! collective on every rank, and then **panic on the root** with a message
//! naming the rank and the index (the other ranks return `None`;
//! [`Cluster::all_map_reduce`] panics on every rank alike). Catch it with
//! `std::panic::catch_unwind` and the cluster stays usable; uncaught, it
//! unwinds out of the program and the cluster's `Drop` aborts the job. A
//! panic anywhere else on a rank (the cluster's own code on the MPI thread
//! or a driver thread) prints the rank and calls `MPI_Abort`, so the job
//! ends instead of leaving the other ranks blocked in a collective. A rank that
//! dies (killed, out of memory) makes `mpirun` end the job with a message
//! naming the rank (Open MPI's default; tested with `kill -9` in
//! `tests/mpi.rs`).
//!
//! The examples in this module are `no_run`: doc tests cannot start
//! `mpirun`. See `examples/mpi_pi.rs`, `examples/mpi_gauss.rs`,
//! `examples/mpi_primes.rs` and `tests/mpi.rs` for programs that run under
//! `mpirun -n 2`, and FROM_POOL_TO_CLUSTER.md for a local program beside its
//! cluster version.
//!
//! ```no_run
//! use parview::cluster::Cluster;
//! use parview::Schedule;
//!
//! let cluster = Cluster::init().expect("MPI init");
//! let words: Vec<String> = if cluster.is_root() {
//!     vec!["apple".into(), "fig".into()]
//! } else {
//!     Vec::new() // only the root's items are read
//! };
//! let lens = cluster
//!     .load_balanced()
//!     .schedule(Schedule::Dynamic(1))
//!     .map(&words, |w| w.len())
//!     .expect("no item panicked");
//! if let Some(lens) = lens {
//!     assert_eq!(lens, vec![5, 3]); // only the root gets Some
//! }
//! ```

mod background;
mod balanced;
mod checkpoint;
mod direct;
mod farm;

pub use background::{ClusterAsyncResult, ClusterImapUnordered};
pub use balanced::{AbortHandle, ClusterMapError, ClusterView, MapReport, RankLoad};
pub use checkpoint::{ClusterCheckpoint, ClusterCheckpointError, FarmCheckpoint};
pub use direct::{ClusterDirectView, RankState};
pub use farm::{
    Farm, FarmAsync, FarmBuilder, FarmDirect, FarmError, FarmImapUnordered, FarmView, Shared, Task,
    current_rank, rank_state, set_rank_state,
};

/// What [`task!`](crate::task) expands to; not public API.
#[doc(hidden)]
pub mod __farm {
    pub use super::farm::{TaskEntry, inventory};
}

/// The rsmpi crate this module is built on, for calls it does not wrap and for
/// `#[derive(Equivalence)]` (see [`Equivalence`]).
pub use ::mpi;

// Pool / reducer imports: the only lines that depend on the rest of the crate.
use crate::reduce::tree_reduce;
use crate::{MapError, Pool, Schedule};

use std::any::Any;
use std::convert::Infallible;
use std::ops::Range;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::thread::{self, ThreadId};

use ::mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use ::mpi::datatype::{Partition, PartitionMut};
use ::mpi::environment::Universe;
use ::mpi::topology::{Communicator, SimpleCommunicator};
use ::mpi::{Count, Threading};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Element types that can travel between ranks with the fast path
/// (`scatter`, `gather`, `par_map`, `scatter_gather`): `f64`, `f32`, `u64`,
/// `i64`, `u32`, `i32`, `u8`, `bool`, `usize`, arrays of them, ... — the
/// re-export of rsmpi's `Equivalence` trait **and** its derive macro, so a
/// plain struct derives it through parview alone (the `mpi` attribute names
/// the re-exported crate, [`mpi`]):
///
/// ```
/// use parview::cluster::Equivalence;
///
/// #[derive(Equivalence, Default, Clone, Copy)]
/// #[mpi(crate = "::parview::cluster::mpi")]
/// struct Particle {
///     x: [f64; 3],
///     id: u64,
/// }
///
/// fn sendable<T: Equivalence>() {}
/// sendable::<f64>();
/// sendable::<Particle>();
/// ```
pub use ::mpi::traits::Equivalence;

/// Environment variables through which launchers announce the job size:
/// Open MPI's `mpirun` (`OMPI_COMM_WORLD_SIZE`), MPICH/Hydra, Intel MPI and
/// Slurm PMI-1/PMI-2 (`PMI_SIZE`), and PMIx launchers that export it
/// (`PMIX_SIZE`).
///
/// # Example
///
/// ```
/// assert!(parview::cluster::LAUNCHER_SIZE_VARS.contains(&"OMPI_COMM_WORLD_SIZE"));
/// ```
pub const LAUNCHER_SIZE_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// Why a [`Cluster`] could not be created.
///
/// # Example
///
/// ```no_run
/// use parview::cluster::{Cluster, ClusterError};
///
/// match Cluster::init() {
///     Ok(cluster) => println!("rank {} of {}", cluster.rank(), cluster.size()),
///     Err(e @ ClusterError::LauncherMismatch { .. }) => {
///         eprintln!("{e}");
///         std::process::exit(2);
///     }
///     Err(e) => panic!("{e}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// MPI was already initialised in this process (a `Cluster` or another
    /// MPI user exists or existed); MPI can be initialised once per process.
    #[error("MPI is already initialised in this process: create one Cluster per process, once")]
    AlreadyInitialized,
    /// The MPI library cannot give the threading level the cluster needs.
    #[error(
        "the MPI library provides threading level {provided}, parview::cluster needs at \
         least Serialized (MPI calls from the cluster's thread, or from the driver thread of \
         a map_async/imap_unordered while it runs, never from two threads at once)"
    )]
    ThreadingUnsupported {
        /// The level MPI provided (`Single` or `Funneled`).
        provided: String,
    },
    /// The launcher started `launcher_size` processes but MPI sees a world of
    /// `mpi_size`: the binary was built against a different MPI than the
    /// `mpirun`/`srun` that started it, so every process would run the whole
    /// job alone as a world of one.
    #[error(
        "launcher mismatch: MPI reports a world of {mpi_size} process(es) but the launcher set \
         {var}={launcher_size}. This binary was most likely built against a different MPI \
         library than the mpirun/srun that started it, so every process would run the whole \
         job alone. Launch it with the mpirun of the MPI it was built with (compare \
         `mpirun --version` and `mpicc -show`), or rebuild it against the launcher's MPI; \
         with srun, pass the matching --mpi=pmix/pmi2 plugin"
    )]
    LauncherMismatch {
        /// `MPI_COMM_WORLD` size as seen by this process.
        mpi_size: usize,
        /// Job size announced by the launcher.
        launcher_size: usize,
        /// The environment variable that announced it.
        var: &'static str,
    },
    /// The local pool could not be built (e.g. zero workers).
    #[error("building the local pool failed: {0}")]
    Pool(String),
}

/// Checks the world size MPI reports against the job size the launcher
/// announced in the environment ([`LAUNCHER_SIZE_VARS`]).
///
/// `env` looks a variable up (pass `|v| std::env::var(v).ok()`); variables
/// that are unset or not a number are ignored. This is the guard against the
/// silent failure where a binary built against one MPI is started by another
/// MPI's `mpirun`: every rank then sees a world of 1 and runs the whole job.
///
/// # Errors
///
/// [`ClusterError::LauncherMismatch`] naming the first variable whose value
/// differs from `mpi_size`.
///
/// # Example
///
/// ```
/// use parview::cluster::{check_launcher, ClusterError};
///
/// let env = |v: &str| (v == "OMPI_COMM_WORLD_SIZE").then(|| "4".to_string());
/// assert!(check_launcher(4, env).is_ok());
/// assert!(matches!(
///     check_launcher(1, env),
///     Err(ClusterError::LauncherMismatch { mpi_size: 1, launcher_size: 4, .. })
/// ));
/// assert!(check_launcher(1, |_| None).is_ok()); // no launcher: singleton
/// ```
pub fn check_launcher(
    mpi_size: usize,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ClusterError> {
    for var in LAUNCHER_SIZE_VARS {
        let Some(launcher_size) = env(var).and_then(|v| v.trim().parse::<usize>().ok()) else {
            continue;
        };
        if launcher_size != mpi_size {
            return Err(ClusterError::LauncherMismatch {
                mpi_size,
                launcher_size,
                var,
            });
        }
    }
    Ok(())
}

/// The contiguous block of `0..n` owned by part `index` of `parts`: the
/// first `n % parts` parts get one extra element, so sizes differ by at most
/// one and the blocks cover `0..n` in order.
///
/// # Panics
///
/// If `parts == 0` or `index >= parts`.
///
/// # Example
///
/// ```
/// use parview::cluster::partition;
///
/// assert_eq!(partition(10, 3, 0), 0..4);
/// assert_eq!(partition(10, 3, 1), 4..7);
/// assert_eq!(partition(10, 3, 2), 7..10);
/// assert_eq!(partition(2, 3, 2), 2..2); // fewer items than parts
/// ```
pub fn partition(n: usize, parts: usize, index: usize) -> Range<usize> {
    assert!(parts > 0, "partition: parts must be > 0");
    assert!(index < parts, "partition: index {index} >= parts {parts}");
    Schedule::static_block(n, parts, index)
}

/// The single-process twin of [`Cluster::map_reduce`]: `range` is cut into
/// leaves of `leaf` consecutive indices (the last may be shorter), each
/// leaf's value is `map` folded left to right with `op`, and the leaf values
/// are combined with [`tree_reduce`] in leaf
/// order. The result depends only on `range`, `leaf`, `map` and `op` — not on
/// the number of workers or ranks — so it has the same bits as
/// `Cluster::map_reduce` on any layout.
///
/// Returns `None` for an empty range.
///
/// # Panics
///
/// If `leaf == 0`, or if `map`/`op` panic.
///
/// # Example
///
/// ```
/// use parview::cluster::map_reduce_local;
/// use parview::Pool;
///
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let sum = map_reduce_local(&pool, 0..1000, 64, |i| 1.0 / (i as f64 + 1.0), |a, b| a + b);
/// assert!((sum.unwrap() - 7.485470860550345).abs() < 1e-12);
/// ```
pub fn map_reduce_local<R, M, O>(
    pool: &Pool,
    range: Range<usize>,
    leaf: usize,
    map: M,
    op: O,
) -> Option<R>
where
    R: Send,
    M: Fn(usize) -> R + Sync,
    O: Fn(R, R) -> R + Sync,
{
    assert!(leaf > 0, "map_reduce: leaf size must be > 0");
    // The single-process reduction of `parview::reduce`: the same leaves, the same tree.
    pool.schedule(Schedule::Dynamic(1))
        .map_reduce_leaves(leaf, range, map, op)
}

/// Value of leaf `l`: items `range.start + l*leaf ..` folded left to right.
fn leaf_value<R>(
    range: &Range<usize>,
    leaf: usize,
    l: usize,
    map: &impl Fn(usize) -> R,
    op: &impl Fn(R, R) -> R,
) -> R {
    let mut items = Schedule::chunk(range.len(), leaf, l).map(|i| map(range.start + i));
    let first = items.next().expect("a leaf is never empty");
    items.fold(first, op)
}

/// Default local workers: the CPUs this process may run on; if that is the
/// whole node (the launcher did not bind the rank to a subset), they are
/// divided among the `local_ranks` ranks sharing the node.
fn default_workers(local_ranks: usize) -> usize {
    let usable = thread::available_parallelism().map_or(1, |n| n.get());
    let unbound = online_cpus().is_some_and(|online| online == usable);
    if unbound {
        (usable / local_ranks.max(1)).max(1)
    } else {
        usable
    }
}

/// Number of online CPUs of the node (Linux), ignoring this process's
/// affinity mask.
fn online_cpus() -> Option<usize> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    parse_cpu_list(list.trim())
}

/// Parses a Linux CPU list such as `0-3,5,7-8` into a count.
fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// MPI counts and displacements for `n` items over `parts` ranks.
fn counts_displs(n: usize, parts: usize) -> (Vec<Count>, Vec<Count>) {
    (0..parts)
        .map(|p| {
            let r = partition(n, parts, p);
            (to_count(r.len()), to_count(r.start))
        })
        .unzip()
}

fn to_count(x: usize) -> Count {
    Count::try_from(x).unwrap_or_else(|_| {
        panic!(
            "parview::cluster: {x} elements exceed MPI's count limit ({})",
            Count::MAX
        )
    })
}

// ---- panic handling ------------------------------------------------------

/// True while a Cluster is alive (MPI initialised, not finalised).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static RANK: AtomicUsize = AtomicUsize::new(0);
static SIZE: AtomicUsize = AtomicUsize::new(0);
static MPI_THREAD: OnceLock<ThreadId> = OnceLock::new();
static HOOK: Once = Once::new();

fn payload_str(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>")
}

pub(super) fn rank_label() -> String {
    format!(
        "rank {} of {}",
        RANK.load(Ordering::SeqCst),
        SIZE.load(Ordering::SeqCst)
    )
}

/// Aborts the whole MPI job (all ranks) with exit code 1.
pub(super) fn abort_job() -> ! {
    SimpleCommunicator::world().abort(1)
}

/// The thread that created the cluster, or a background map's driver thread: a panic there
/// (outside user code) would leave the other ranks waiting, so the hook aborts the job.
fn on_mpi_thread() -> bool {
    MPI_THREAD.get() == Some(&thread::current().id()) || background::DRIVER.with(|d| d.get())
}

/// Installs (once) a panic hook that, while a Cluster is alive, prints the
/// panic with the rank and, on the MPI thread or a driver thread, calls
/// `MPI_Abort` — unless the thread runs user code whose panics the cluster
/// catches (`balanced::CATCHING`). A panic on a pool worker is reported at
/// once; outside a cluster map it aborts the job when it reaches the MPI
/// thread (the pool re-raises it there; see also `Drop`).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !ACTIVE.load(Ordering::SeqCst) {
                return previous(info);
            }
            let msg = payload_str(info.payload());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if balanced::CATCHING.with(|c| c.get()) {
                eprintln!(
                    "parview: {} panicked: {msg}{at} (caught: reported to the root as an error)",
                    rank_label()
                );
                return;
            }
            if on_mpi_thread() {
                eprintln!(
                    "parview: {} panicked: {msg}{at}; aborting the MPI job (MPI_Abort)",
                    rank_label()
                );
                abort_job();
            }
            eprintln!(
                "parview: {} panicked on thread {:?}: {msg}{at} (a cluster map reports it \
                 to the root; any other panic aborts the MPI job when it reaches the rank's \
                 main thread)",
                rank_label(),
                thread::current().name().unwrap_or("<unnamed>")
            );
            previous(info);
        }));
    });
}

/// Panics on this rank with `message` (printed first, with the rank): a user's panic that
/// came back from the ranks, after every rank has finished the collective. Uses
/// `resume_unwind`, so the hook does not abort the job: the caller may catch it and go on
/// using the cluster. (Uncaught, it unwinds out of the program and the cluster's `Drop`
/// aborts the job.)
fn raise(message: String) -> ! {
    eprintln!("parview: {}: {message}", rank_label());
    panic::resume_unwind(Box::new(message))
}

// ---- Cluster -------------------------------------------------------------

/// Configures a [`Cluster`] before MPI is initialised.
///
/// # Example
///
/// ```no_run
/// use parview::cluster::Cluster;
///
/// let cluster = Cluster::builder().workers(4).build().expect("MPI init");
/// assert_eq!(cluster.workers(), 4);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClusterBuilder {
    workers: Option<usize>,
    skip_launcher_check: bool,
}

impl ClusterBuilder {
    /// Number of local pool workers on each rank. Default: `PARVIEW_WORKERS`
    /// if set; else the CPUs the rank is bound to, or — if the launcher did
    /// not bind it — the node's CPUs divided among the ranks on the node (at
    /// least 1). So `mpirun -n 2` on a 2-core machine gives 1 worker each.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let cluster = parview::cluster::Cluster::builder().workers(1).build().unwrap();
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Skips the launcher/MPI size check ([`check_launcher`]). Only for
    /// unusual launches, e.g. a singleton started from inside an `mpirun`
    /// job that inherited its environment.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let cluster = parview::cluster::Cluster::builder()
    ///     .skip_launcher_check()
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn skip_launcher_check(mut self) -> Self {
        self.skip_launcher_check = true;
        self
    }

    /// Initialises MPI (threading level Serialized) on the calling thread,
    /// which becomes the thread that uses the cluster, checks the launcher,
    /// builds the local pool and installs the panic guard. (Serialized, not
    /// Funneled: a [`ClusterView::map_async`] drives its map from a
    /// background thread; the cluster makes sure that thread and the
    /// cluster's thread never call MPI at the same time.)
    ///
    /// # Errors
    ///
    /// * [`ClusterError::AlreadyInitialized`] if MPI was initialised before
    ///   in this process;
    /// * [`ClusterError::ThreadingUnsupported`] if MPI offers less than
    ///   `Serialized`;
    /// * [`ClusterError::LauncherMismatch`] if the launcher's job size differs
    ///   from MPI's world size (see [`check_launcher`]);
    /// * [`ClusterError::Pool`] if the local pool cannot be built.
    ///
    /// MPI is finalised again before an error is returned.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let cluster = parview::cluster::Cluster::builder().build()?;
    /// # Ok::<(), parview::cluster::ClusterError>(())
    /// ```
    pub fn build(self) -> Result<Cluster, ClusterError> {
        let (universe, provided) = ::mpi::initialize_with_threading(Threading::Serialized)
            .ok_or(ClusterError::AlreadyInitialized)?;
        if provided < Threading::Serialized {
            return Err(ClusterError::ThreadingUnsupported {
                provided: format!("{provided:?}"),
            });
        }
        let world = universe.world();
        let size = usize::try_from(world.size()).expect("MPI world size is positive");
        let rank = usize::try_from(world.rank()).expect("MPI rank is non-negative");
        if !self.skip_launcher_check {
            check_launcher(size, |v| std::env::var(v).ok())?;
        }
        // Collective on every rank (whatever each rank's settings), so no
        // rank can be left waiting in it.
        let local_ranks = usize::try_from(world.split_shared(0).size()).unwrap_or(1);
        let pool = match self.workers {
            Some(n) => Pool::builder().workers(n).build(),
            None if std::env::var_os(crate::WORKERS_ENV).is_some() => Pool::builder().build(),
            None => Pool::builder()
                .workers(default_workers(local_ranks))
                .build(),
        }
        .map_err(|e| ClusterError::Pool(e.to_string()))?;
        let usable = thread::available_parallelism().map_or(1, |n| n.get());
        if pool.workers() > usable {
            eprintln!(
                "parview: rank {rank}: {} local workers but this process may run on {usable} \
                 CPU(s) only, so they will share it (Open MPI binds each rank to one core when \
                 -n <= 2: add `--bind-to none` or `--map-by slot:PE=<workers>` to mpirun)",
                pool.workers()
            );
        }

        // The hook's MPI thread is the thread that initialised MPI (the
        // process can initialise MPI only once, so this is set only once).
        let _ = MPI_THREAD.set(thread::current().id());
        RANK.store(rank, Ordering::SeqCst);
        SIZE.store(size, Ordering::SeqCst);
        install_panic_hook();
        ACTIVE.store(true, Ordering::SeqCst);
        // Every rank's engine count, for the load-balanced maps' dispensing (collective).
        let mine = pool.workers() as u64;
        let mut all = vec![0u64; size];
        world.all_gather_into(&mine, &mut all[..]);
        let rank_workers = all.into_iter().map(|w| w as usize).collect();
        Ok(Cluster {
            pool: Arc::new(pool),
            inflight: Arc::default(),
            world,
            rank,
            size,
            rank_workers,
            _universe: universe,
        })
    }
}

/// One process's handle on the MPI job: its rank, the world size and a
/// local [`Pool`]. Created once per process with [`Cluster::init`] or
/// [`Cluster::builder`]; MPI is finalised when it is dropped.
///
/// All methods must be called from the thread that created the cluster. The
/// collective methods (`scatter`, `gather`, `par_map`, `scatter_gather`,
/// `map_reduce`, `all_map_reduce`, `barrier`, the views' maps) must be called
/// by every rank, in the same order.
///
/// **A background map in flight.** While a [`ClusterView::map_async`] or
/// [`ClusterView::imap_unordered`] runs, its driver thread owns MPI (threading
/// level Serialized). Any other cluster call that talks to MPI — every
/// collective, [`Cluster::world`], another map — first **blocks until that
/// map has ended on this rank** (on the root: every result is in; elsewhere:
/// the rank's part is served), then runs. Every rank applies the same rule,
/// so collectives stay in the same order on all ranks: no deadlock, no
/// concurrent MPI calls. Dropping the cluster waits the same way.
///
/// If the cluster is dropped while its thread is panicking, the MPI job is
/// aborted instead of finalised (finalising would wait for ranks that are
/// blocked in a collective).
///
/// # Example
///
/// ```no_run
/// use parview::cluster::Cluster;
///
/// let cluster = Cluster::init().expect("MPI init");
/// println!("rank {} of {}, {} workers", cluster.rank(), cluster.size(), cluster.workers());
/// ```
pub struct Cluster {
    pool: Arc<Pool>,
    /// Set while a background map (`map_async`, `imap_unordered`) owns MPI.
    inflight: Arc<background::InFlight>,
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Local workers of every rank, in rank order.
    rank_workers: Vec<usize>,
    // Last: dropping it finalises MPI.
    _universe: Universe,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("workers", &self.pool.workers())
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !thread::panicking() {
            // A background map (its handle forgotten) ends before MPI is finalised.
            self.inflight.settle();
        }
        if thread::panicking() {
            eprintln!(
                "parview: {} is unwinding from a panic; aborting the MPI job (MPI_Abort)",
                rank_label()
            );
            abort_job();
        }
        ACTIVE.store(false, Ordering::SeqCst);
        // `_universe` drops next and finalises MPI.
    }
}

const ROOT: i32 = 0;

impl Cluster {
    /// Initialises MPI and the local pool with the defaults; same as
    /// `Cluster::builder().build()`.
    ///
    /// # Errors
    ///
    /// See [`ClusterBuilder::build`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// let cluster = parview::cluster::Cluster::init()?;
    /// # Ok::<(), parview::cluster::ClusterError>(())
    /// ```
    pub fn init() -> Result<Cluster, ClusterError> {
        ClusterBuilder::default().build()
    }

    /// A builder to set the local workers before initialising.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let cluster = parview::cluster::Cluster::builder().workers(2).build()?;
    /// # Ok::<(), parview::cluster::ClusterError>(())
    /// ```
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// This process's rank in `0..size()`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// assert!(c.rank() < c.size());
    /// ```
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks in the job (`MPI_COMM_WORLD` size).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// println!("{} ranks", c.size());
    /// ```
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, which holds the input of the scatter forms
    /// and receives their results.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// if c.is_root() {
    ///     println!("I print the results");
    /// }
    /// ```
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Number of workers in this rank's local pool.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::builder().workers(3).build().unwrap();
    /// assert_eq!(c.workers(), 3);
    /// ```
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    /// This rank's local pool, for work that needs no communication.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let local: Vec<u64> = c.pool().schedule(parview::Schedule::Static).map(0..8, |i| i as u64);
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The MPI world communicator, for calls this module does not wrap.
    /// Use it only from the cluster's thread. Waits first until a background
    /// map in flight ([`ClusterView::map_async`]) has ended on this rank;
    /// do not keep the reference across a later `map_async`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use mpi::traits::Communicator;
    ///
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// assert_eq!(c.world().size() as usize, c.size());
    /// ```
    pub fn world(&self) -> &SimpleCommunicator {
        self.inflight.settle();
        &self.world
    }

    /// Blocks until every rank has called it. Collective.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// c.barrier();
    /// ```
    pub fn barrier(&self) {
        self.world().barrier();
    }

    /// The load-balanced view: maps whose chunks the root hands out on demand to every rank,
    /// any serde item and result type, results on the root in input order (see
    /// [`ClusterView`]).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let squares = c.load_balanced().map_range(0..100, |i| (i * i) as u64).unwrap();
    /// if let Some(v) = squares {
    ///     assert_eq!(v[99], 9801);
    /// }
    /// ```
    pub fn load_balanced(&self) -> ClusterView<'_> {
        ClusterView::new(self)
    }

    /// The direct view: a closure on every rank, per-rank state (see [`ClusterDirectView`]).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// if let Some(ranks) = c.direct().apply(|rank| rank).unwrap() {
    ///     assert_eq!(ranks, (0..c.size()).collect::<Vec<_>>());
    /// }
    /// ```
    pub fn direct(&self) -> ClusterDirectView<'_> {
        ClusterDirectView::new(self)
    }

    /// Local workers of every rank, in rank order (the same on every rank).
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// assert_eq!(c.rank_workers()[c.rank()], c.workers());
    /// ```
    pub fn rank_workers(&self) -> &[usize] {
        &self.rank_workers
    }

    /// The root's `flag`, on every rank. Collective.
    fn broadcast_flag(&self, flag: bool) -> bool {
        let mut b = u8::from(flag);
        self.root().broadcast_into(&mut b);
        b != 0
    }

    /// The root's bytes on every rank (`mine` is read on the root only). Collective.
    fn broadcast_bytes(&self, mine: Option<&[u8]>) -> Vec<u8> {
        let n = self.broadcast_len(mine.map_or(0, <[u8]>::len));
        let mut buf = match mine {
            Some(b) if self.is_root() => b.to_vec(),
            _ => vec![0u8; n],
        };
        buf.resize(n, 0);
        self.root().broadcast_into(&mut buf[..]);
        buf
    }

    /// On the root, the root's side of a gather's first step: every rank's item count, the
    /// displacements they give, and the total (which must fit an MPI count). Every other rank
    /// sends its `count` with `gather_into`.
    fn gather_counts(&self, count: Count) -> (Vec<Count>, Vec<Count>, usize) {
        let mut counts = vec![0 as Count; self.size];
        self.root().gather_into_root(&count, &mut counts[..]);
        let mut displs = Vec::with_capacity(self.size);
        let mut total = 0usize;
        for &c in &counts {
            displs.push(to_count(total));
            total += usize::try_from(c).expect("non-negative count");
        }
        to_count(total);
        (counts, displs, total)
    }

    /// Every rank's bytes, on the root, in rank order (`None` elsewhere). Collective.
    fn gather_bytes(&self, mine: &[u8]) -> Option<Vec<Vec<u8>>> {
        let count = to_count(mine.len());
        if self.is_root() {
            let (counts, displs, total) = self.gather_counts(count);
            let all = self.gather_known(mine, &counts, &displs, total);
            Some(
                counts
                    .iter()
                    .zip(&displs)
                    .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
                    .collect(),
            )
        } else {
            self.root().gather_into(&count);
            self.gather_known(mine, &[], &[], 0);
            None
        }
    }

    /// The root process, after any background map in flight has ended on this rank (every
    /// collective of this module goes through here or [`Cluster::world`]).
    fn root(&self) -> ::mpi::topology::Process<'_> {
        self.world().process_at_rank(ROOT)
    }

    /// Broadcasts the root's `len` to every rank.
    fn broadcast_len(&self, len_on_root: usize) -> usize {
        let mut n = if self.is_root() {
            len_on_root as u64
        } else {
            0
        };
        self.root().broadcast_into(&mut n);
        usize::try_from(n).expect("length fits in usize")
    }

    /// Splits the root's `data_on_root` into one contiguous piece per rank
    /// (sizes differ by at most one, rank order = input order, see
    /// [`partition`]) and returns this rank's piece. `data_on_root` is read
    /// on the root only; other ranks may pass `&[]`. Collective.
    ///
    /// # Panics
    ///
    /// If the input has more than `i32::MAX` elements (MPI counts).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let data: Vec<f64> = if c.is_root() { vec![1.0; 10] } else { vec![] };
    /// let mine = c.scatter(&data);
    /// assert_eq!(mine.len(), parview::cluster::partition(10, c.size(), c.rank()).len());
    /// ```
    pub fn scatter<T>(&self, data_on_root: &[T]) -> Vec<T>
    where
        T: Equivalence + Default + Clone,
    {
        self.scatter_n(data_on_root).0
    }

    /// [`Cluster::scatter`] that also returns the root's length, on every rank.
    fn scatter_n<T>(&self, data_on_root: &[T]) -> (Vec<T>, usize)
    where
        T: Equivalence + Default + Clone,
    {
        let n = self.broadcast_len(data_on_root.len());
        let (counts, displs) = counts_displs(n, self.size);
        let mut local = vec![T::default(); partition(n, self.size, self.rank).len()];
        if self.is_root() {
            let send = Partition::new(data_on_root, &counts[..], &displs[..]);
            self.root()
                .scatter_varcount_into_root(&send, &mut local[..]);
        } else {
            self.root().scatter_varcount_into(&mut local[..]);
        }
        (local, n)
    }

    /// Gathers every rank's `local` (any length, including 0) to the root,
    /// concatenated in rank order. Returns `Some` on the root, `None`
    /// elsewhere. Collective.
    ///
    /// # Panics
    ///
    /// If the total exceeds `i32::MAX` elements (MPI counts).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let mine = vec![c.rank() as u64; c.rank()];
    /// if let Some(all) = c.gather(&mine) {
    ///     assert_eq!(all.len(), (0..c.size()).sum::<usize>());
    /// }
    /// ```
    pub fn gather<R>(&self, local: &[R]) -> Option<Vec<R>>
    where
        R: Equivalence + Default + Clone,
    {
        let count = to_count(local.len());
        if self.is_root() {
            let (counts, displs, total) = self.gather_counts(count);
            Some(self.gather_known(local, &counts, &displs, total))
        } else {
            self.root().gather_into(&count);
            self.gather_known(local, &[], &[], 0);
            None
        }
    }

    /// Gatherv with counts known on the root. Returns the buffer (empty on
    /// non-root ranks).
    fn gather_known<R>(
        &self,
        local: &[R],
        counts: &[Count],
        displs: &[Count],
        total: usize,
    ) -> Vec<R>
    where
        R: Equivalence + Default + Clone,
    {
        if self.is_root() {
            let mut out = vec![R::default(); total];
            let mut recv = PartitionMut::new(&mut out[..], counts, displs);
            self.root().gather_varcount_into_root(local, &mut recv);
            out
        } else {
            self.root().gather_varcount_into(local);
            Vec::new()
        }
    }

    /// Maps `f` over every item of the root's `data_on_root`: the items are
    /// scattered one contiguous block per rank, each rank maps its block on
    /// its local pool ([`Schedule::Adaptive`]), and the results are gathered to
    /// the root **in input order**. Returns `Some(results)` on the root, `None`
    /// on other ranks. `data_on_root` is read on the root only. Collective.
    ///
    /// The [`Equivalence`] fast path: one message per rank each way, but the
    /// ranks' shares are fixed. For uneven items use
    /// [`Cluster::load_balanced`], which hands out chunks on demand.
    ///
    /// # Panics
    ///
    /// If the input has more than `i32::MAX` elements. If `f` panics on any
    /// rank, every rank still finishes the call, and then the root panics with
    /// `Cluster::par_map: item {index} panicked on rank {rank}: {message}` (the
    /// lowest such index; catchable, the cluster stays usable); the other ranks
    /// return `None`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let xs: Vec<f64> = if c.is_root() { (0..100).map(f64::from).collect() } else { vec![] };
    /// if let Some(ys) = c.par_map(&xs, |x| x.sqrt()) {
    ///     assert_eq!(ys[49], 7.0);
    /// }
    /// ```
    pub fn par_map<T, R, F>(&self, data_on_root: &[T], f: F) -> Option<Vec<R>>
    where
        T: Equivalence + Default + Clone + Sync,
        R: Equivalence + Default + Clone + Send,
        F: Fn(&T) -> R + Sync,
    {
        let (local, n) = self.scatter_n(data_on_root);
        let my = partition(n, self.size, self.rank);
        // The pool catches the items' panics; this thread (which works on the map too) is
        // marked so that the hook does not abort the job for one of them.
        let out = balanced::catching(|| {
            self.pool
                .schedule(Schedule::Adaptive)
                .try_map(0..local.len(), |i| Ok::<R, Infallible>(f(&local[i])))
        });
        let (out, failed) = match out {
            Ok(v) => (v, None),
            Err(MapError::Panicked { index, message, .. }) => (
                vec![R::default(); local.len()],
                Some((my.start + index, message)),
            ),
            Err(e) => (
                vec![R::default(); local.len()],
                Some((my.start, e.to_string())),
            ),
        };
        let gathered = if self.is_root() {
            let (counts, displs) = counts_displs(n, self.size);
            Some(self.gather_known(&out, &counts, &displs, n))
        } else {
            self.gather_known(&out, &[], &[], 0);
            None
        };
        if let Some((rank, index, message)) = self.agree_failures(failed) {
            raise(format!(
                "Cluster::par_map: item {index} panicked on rank {rank}: {message}"
            ));
        }
        gathered
    }

    /// Every rank's first failure `(global index, message)`; on the root, the lowest one
    /// with its rank (`None` on the other ranks, and everywhere if nothing failed).
    /// Collective: one small all-reduce, and a gather only if something failed.
    fn agree_failures(&self, mine: Option<(usize, String)>) -> Option<(usize, usize, String)> {
        let flag = u8::from(mine.is_some());
        let mut any = 0u8;
        self.world()
            .all_reduce_into(&flag, &mut any, SystemOperation::max());
        if any == 0 {
            return None;
        }
        let bytes = postcard::to_allocvec(&mine).expect("an index and a message encode");
        let all = self.gather_bytes(&bytes)?;
        all.iter()
            .enumerate()
            .filter_map(|(rank, b)| {
                postcard::from_bytes::<Option<(usize, String)>>(b)
                    .ok()
                    .flatten()
                    .map(|(i, m)| (rank, i, m))
            })
            .min_by_key(|(_, i, _)| *i)
    }

    /// Scatter → map → gather by pieces: the root's input is split into one
    /// contiguous block per rank, and each rank's block into one contiguous
    /// piece per local worker; `f(start, piece)` is called once per piece,
    /// where `start` is the global index of `piece[0]`, and returns any
    /// number of results. The results of all pieces are gathered to the root
    /// in input order. Returns `Some` on the root, `None` elsewhere.
    /// Collective.
    ///
    /// Piece boundaries depend on ranks × workers; use [`Cluster::par_map`]
    /// when results must not depend on them.
    ///
    /// # Panics
    ///
    /// If the input or the output has more than `i32::MAX` elements. If `f`
    /// panics on any rank, every rank still finishes the call, and then the
    /// root panics with a message naming the rank and the piece's first index
    /// (catchable, the cluster stays usable); the other ranks return `None`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let x: Vec<f64> = if c.is_root() { vec![0.5; 1_000_000] } else { vec![] };
    /// let z = c.scatter_gather(&x, |_start, piece| {
    ///     piece.iter().map(|v| (-v * v).exp()).collect()
    /// });
    /// if let Some(z) = z {
    ///     assert_eq!(z.len(), 1_000_000);
    /// }
    /// ```
    pub fn scatter_gather<T, R, F>(&self, data_on_root: &[T], f: F) -> Option<Vec<R>>
    where
        T: Equivalence + Default + Clone + Sync,
        R: Equivalence + Default + Clone + Send,
        F: Fn(usize, &[T]) -> Vec<R> + Sync,
    {
        let (local, n) = self.scatter_n(data_on_root);
        let my = partition(n, self.size, self.rank);
        let parts = self.pool.workers().max(1);
        let pieces = self.pool.schedule(Schedule::Dynamic(1)).map(0..parts, |p| {
            let r = partition(local.len(), parts, p);
            let start = my.start + r.start;
            balanced::catch_item(|| f(start, &local[r])).map_err(|m| (start, m))
        });
        let mut failed: Option<(usize, String)> = None;
        let mut out: Vec<R> = Vec::new();
        for piece in pieces {
            match piece {
                Ok(v) => out.extend(v),
                Err((start, message)) => {
                    failed.get_or_insert((start, message));
                }
            }
        }
        let gathered = self.gather(&out);
        if let Some((rank, index, message)) = self.agree_failures(failed) {
            raise(format!(
                "Cluster::scatter_gather: the piece starting at item {index} panicked on rank \
                 {rank}: {message}"
            ));
        }
        gathered
    }

    /// Leaf values of `range` cut into leaves of `leaf`, computed across the
    /// ranks as a load-balanced map over the leaf indices (chunks handed out
    /// on demand); `Some(values)` in leaf order on the root.
    fn leaf_values<R, M, O>(
        &self,
        what: &str,
        range: &Range<usize>,
        leaf: usize,
        map: &M,
        op: &O,
    ) -> Result<Option<Vec<R>>, String>
    where
        R: Serialize + DeserializeOwned + Send,
        M: Fn(usize) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
    {
        assert!(leaf > 0, "{what}: leaf size must be > 0");
        // Every rank must pass the same range and leaf: check against root.
        let mut shape = [range.start as u64, range.end as u64, leaf as u64];
        self.root().broadcast_into(&mut shape[..]);
        assert_eq!(
            shape,
            [range.start as u64, range.end as u64, leaf as u64],
            "{what}: ranks disagree on (range.start, range.end, leaf); root has {shape:?}"
        );
        let leaves = range.len().div_ceil(leaf);
        let values = self
            .load_balanced()
            .map_range(0..leaves, |l| leaf_value(range, leaf, l, map, op));
        values.map_err(|e| match e {
            ClusterMapError::Failed {
                rank,
                index,
                message,
            } => {
                let items = Schedule::chunk(range.len(), leaf, index);
                format!(
                    "{what}: leaf {index} (items {}..{}) panicked on rank {rank}: {message}",
                    range.start + items.start,
                    range.start + items.end
                )
            }
            other => format!("{what}: {other}"),
        })
    }

    /// [`Cluster::map_reduce`] with a failure as its message (root only).
    fn try_map_reduce<R, M, O>(
        &self,
        what: &str,
        range: Range<usize>,
        leaf: usize,
        map: M,
        op: O,
    ) -> Result<Option<R>, String>
    where
        R: Serialize + DeserializeOwned + Send,
        M: Fn(usize) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
    {
        let Some(values) = self.leaf_values(what, &range, leaf, &map, &op)? else {
            return Ok(None);
        };
        balanced::catch_item(|| tree_reduce(values, &op))
            .map_err(|m| format!("{what}: combining the leaf values panicked on rank 0: {m}"))
    }

    /// Deterministic map-reduce over the index `range`, spread over all
    /// ranks: `range` is cut into leaves of `leaf` consecutive indices; the
    /// **leaves** (not the items) are handed out to the ranks on demand, as a
    /// load-balanced map ([`Schedule::Adaptive`]), so uneven leaves balance;
    /// each leaf's value is `map` folded left to right with `op`; the leaf
    /// values come back to the root in order and are combined with
    /// [`tree_reduce`].
    ///
    /// The result has the same bits for every ranks × workers layout, and the
    /// same bits as [`map_reduce_local`] in one process — also for floating
    /// point sums. Every rank must pass the same `range` and `leaf`.
    ///
    /// Returns `Some(total)` on the root and `None` on other ranks; `None`
    /// on every rank if `range` is empty. Collective.
    ///
    /// # Panics
    ///
    /// If `leaf == 0`, or if the ranks pass different `range`/`leaf`. If
    /// `map`/`op` panic in a leaf, every rank still finishes the call, and then
    /// the root panics with `Cluster::map_reduce: leaf {l} (items {a}..{b})
    /// panicked on rank {rank}: {message}` (catchable, the cluster stays
    /// usable); the other ranks return `None`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let h = c.map_reduce(0..1_000_000, 4096, |i| 1.0 / (i as f64 + 1.0), |a, b| a + b);
    /// if c.is_root() {
    ///     println!("H = {}", h.unwrap());
    /// }
    /// ```
    pub fn map_reduce<R, M, O>(&self, range: Range<usize>, leaf: usize, map: M, op: O) -> Option<R>
    where
        R: Serialize + DeserializeOwned + Send,
        M: Fn(usize) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
    {
        self.try_map_reduce("Cluster::map_reduce", range, leaf, map, op)
            .unwrap_or_else(|m| raise(m))
    }

    /// [`Cluster::map_reduce`] with the result on every rank (the root's
    /// result is broadcast as bytes, so all ranks get the same bits). Returns
    /// `None` iff `range` is empty. Collective.
    ///
    /// # Panics
    ///
    /// As [`Cluster::map_reduce`], except that a panicking leaf makes **every**
    /// rank panic with the same message.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let total: u64 = c.all_map_reduce(0..1000, 64, |i| i as u64, |a, b| a + b).unwrap();
    /// assert_eq!(total, 499_500); // on every rank
    /// ```
    pub fn all_map_reduce<R, M, O>(
        &self,
        range: Range<usize>,
        leaf: usize,
        map: M,
        op: O,
    ) -> Option<R>
    where
        R: Serialize + DeserializeOwned + Send,
        M: Fn(usize) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
    {
        let what = "Cluster::all_map_reduce";
        let total = self.try_map_reduce(what, range, leaf, map, op);
        // The root sends `Result<Option<R>, String>`: every rank returns alike or panics alike.
        let bytes = self.is_root().then(|| {
            let sent = match &total {
                Ok(t) => postcard::to_allocvec(&Ok::<_, &str>(t.as_ref())),
                Err(m) => postcard::to_allocvec(&Err::<Option<&R>, _>(m.as_str())),
            };
            sent.unwrap_or_else(|e| {
                let m = format!("{what}: encoding the result failed on rank 0: {e}");
                postcard::to_allocvec(&Err::<Option<&R>, _>(m.as_str())).expect("a message encodes")
            })
        });
        let all = self.broadcast_bytes(bytes.as_deref());
        let received = postcard::from_bytes::<Result<Option<R>, String>>(&all)
            .unwrap_or_else(|e| Err(format!("{what}: the root's result does not decode: {e}")));
        match (total, received) {
            (Ok(t), Ok(_)) if self.is_root() => t,
            (_, Ok(t)) => t,
            (_, Err(m)) => raise(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |v| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        }
    }

    #[test]
    fn launcher_check_accepts_matching_or_absent() {
        assert!(check_launcher(1, |_| None).is_ok());
        assert!(check_launcher(4, env_of(&[("OMPI_COMM_WORLD_SIZE", "4")])).is_ok());
        assert!(check_launcher(3, env_of(&[("PMI_SIZE", " 3 ")])).is_ok());
        assert!(check_launcher(2, env_of(&[("PMIX_SIZE", "2"), ("PMI_SIZE", "2")])).is_ok());
        // Garbage is ignored rather than guessed at.
        assert!(check_launcher(1, env_of(&[("PMI_SIZE", "many")])).is_ok());
    }

    #[test]
    fn launcher_check_detects_foreign_mpirun() {
        // Binary built against MPICH started by Open MPI's mpirun -n 2.
        match check_launcher(1, env_of(&[("OMPI_COMM_WORLD_SIZE", "2")])) {
            Err(ClusterError::LauncherMismatch {
                mpi_size: 1,
                launcher_size: 2,
                var: "OMPI_COMM_WORLD_SIZE",
            }) => {}
            other => panic!("expected a mismatch, got {other:?}"),
        }
        // Open MPI binary started by Hydra (MPICH) mpiexec -n 4.
        let e = check_launcher(1, env_of(&[("PMI_SIZE", "4")])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("PMI_SIZE=4"), "{msg}");
        assert!(msg.contains("world of 1"), "{msg}");
        // Second variable disagrees although the first agrees.
        assert!(matches!(
            check_launcher(
                2,
                env_of(&[("OMPI_COMM_WORLD_SIZE", "2"), ("PMIX_SIZE", "3")])
            ),
            Err(ClusterError::LauncherMismatch {
                var: "PMIX_SIZE",
                launcher_size: 3,
                ..
            })
        ));
    }

    #[test]
    fn partition_covers_in_order_and_balances() {
        for n in [0usize, 1, 2, 5, 10, 11, 1000, 1003] {
            for parts in 1..=7 {
                let blocks: Vec<_> = (0..parts).map(|p| partition(n, parts, p)).collect();
                assert_eq!(blocks[0].start, 0);
                assert_eq!(blocks[parts - 1].end, n);
                for w in blocks.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let (min, max) = blocks.iter().fold((usize::MAX, 0), |(lo, hi), b| {
                    (lo.min(b.len()), hi.max(b.len()))
                });
                assert!(max - min <= 1, "n={n} parts={parts}: {blocks:?}");
            }
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(7));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(default_workers(1) >= 1 && default_workers(64) >= 1);
    }

    #[test]
    fn counts_displs_match_partition() {
        let (c, d) = counts_displs(10, 3);
        assert_eq!(c, vec![4, 3, 3]);
        assert_eq!(d, vec![0, 4, 7]);
        let (c, d) = counts_displs(2, 3);
        assert_eq!(c, vec![1, 1, 0]);
        assert_eq!(d, vec![0, 1, 2]);
    }

    #[test]
    fn local_map_reduce_is_layout_independent() {
        let f = |i: usize| 1.0 / (i as f64 + 1.0);
        let one = Pool::builder().workers(1).build().unwrap();
        let two = Pool::builder().workers(2).build().unwrap();
        let a = map_reduce_local(&one, 0..100_000, 1000, f, |a, b| a + b).unwrap();
        let b = map_reduce_local(&two, 0..100_000, 1000, f, |a, b| a + b).unwrap();
        assert_eq!(a.to_bits(), b.to_bits());
        assert_eq!(map_reduce_local(&two, 5..5, 8, f, |a, b| a + b), None);
        // Leaf fold + tree by hand.
        let leaves: Vec<f64> = (0..3)
            .map(|l| {
                (l * 4..(l * 4 + 4).min(10))
                    .map(f)
                    .fold(None, |acc: Option<f64>, x| Some(acc.map_or(x, |a| a + x)))
                    .unwrap()
            })
            .collect();
        let want = tree_reduce(leaves, |a, b| a + b).unwrap();
        let got = map_reduce_local(&two, 0..10, 4, f, |a, b| a + b).unwrap();
        assert_eq!(want.to_bits(), got.to_bits());
    }
}
