//! The root-driven cluster ([`Farm`]): the program runs once, on rank 0; every other rank
//! serves the tasks rank 0 sends (Ray's `Pool`, `mpi4py.futures`).
//!
//! ```no_run
//! use parview::cluster::Farm;
//!
//! parview::task! {
//!     /// Whether `n` is prime (trial division: uneven costs).
//!     fn is_prime(n: u64) -> bool {
//!         n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
//!     }
//! }
//!
//! fn main() {
//!     // Rank 0 gets the handle; every other rank serves here and exits when it is dropped.
//!     let farm = Farm::start().expect("farm start");
//!     let ns: Vec<u64> = (1..10_000).collect();
//!     let flags = farm.load_balanced().map(is_prime, &ns).unwrap();
//!     println!("{} primes", flags.iter().filter(|&&p| p).count());
//! }
//! ```
//!
//! Run as `./prog`, everything runs on a local [`Pool`]; as `mpirun -n 3 ./prog`, rank 0 runs
//! `main` and hands the chunks out to every rank (its own engines included) with the SPMD
//! cluster's dispenser and protocol ([`ClusterView`](super::ClusterView)). The output is the
//! same.
//!
//! # One MPI thread
//!
//! On every rank MPI is initialised, used and finalised by one thread the farm owns: the
//! engine of a one-worker [`Pool`] (threading level Funneled). Rank 0's handle sends it each
//! call as a job and waits (parked) for the result; jobs run one at a time in the order they
//! were sent. So the handle is `Send + Sync`, [`FarmView::map_async`] returns at once while
//! the map runs on that thread, and a [`Farm`] dropped with background maps pending stops the
//! serving ranks only after them. A farm cannot be used from inside one of its own tasks (the
//! MPI thread waits for the task): that call panics, which is the task's error.
//!
//! # How serving ranks find the tasks: `task!` + `inventory`
//!
//! A serving rank never runs `main`, so it cannot receive a closure: code does not travel.
//! [`task!`](crate::task) turns a plain `fn` into a unit type that implements [`Task`] and
//! registers, with [`inventory`](https://docs.rs/inventory), an entry *name → monomorphised
//! server* (`module_path!()::name`). Rank 0 sends the name; the serving rank looks the entry
//! up and runs the same generic map code as rank 0 (the SPMD cluster's `run_rank`), typed, so
//! items and results are postcard bytes as in every cluster map and nothing is type-erased
//! but the lookup.
//!
//! Why this design:
//! * **Closures are rejected at compile time.** The views take a `T: Task`, and only
//!   `task!` implements it, so a capturing closure (whose captures could not be on the
//!   other rank) does not compile. Captures travel as values instead: a task may take a
//!   context, `fn f(ctx: &C, item: T) -> R`, passed as `map_with(f, &ctx, items)` and sent
//!   once per map and rank (serde); large read-only data is sent once per job with
//!   [`Farm::push`] and read through its [`Shared`] handle.
//! * **A declarative macro, not a proc-macro crate.** It only needs the name and the
//!   argument types, which `macro_rules!` matches; no `syn` build, no second crate to
//!   publish and keep in step. Its limits (no generics, simple argument names) are the ones
//!   a task sent by name has anyway.
//! * **`inventory` rather than `linkme`.** Both collect statics at link/load time without
//!   running `main`; inventory works on every platform Rust std does (linkme's linker
//!   sections do not, e.g. some wasm and older macOS setups) and needs no unsafe from us.
//!   Both have the same caveat: a task defined in a library crate whose object code is never
//!   referenced may be dropped by the linker; tasks in the binary (or used by it) are always
//!   there. The names are compared as strings, never by index, and every rank checks it runs
//!   the same build (below), so a registry always matches rank 0's.
//!
//! # Same build on every rank
//!
//! At start every rank hashes its executable (`/proc/self/exe`, SHA-256) and sends the
//! digest to rank 0; if one differs (a stale binary on one node, an MPMD launch of two
//! programs), [`Farm::start`] returns [`FarmError::BuildMismatch`] on rank 0, naming the
//! rank, and the other ranks print why and exit with status 0 (rank 0 reports): never a
//! wrong answer from a rank that runs other code under the same task names.
//!
//! # Checkpoint and resume
//!
//! [`FarmView::checkpoint`] logs each chunk's results on rank 0 as they come back, in the local
//! [`Checkpoint`](crate::Checkpoint)'s format; a rerun (with any number of ranks, or locally)
//! sends and runs only the items missing from the log ([`FarmCheckpoint`](super::FarmCheckpoint)).
//!
//! # Faults
//!
//! As in the SPMD cluster: a panicking task is caught on its rank and returned on rank 0 as
//! [`ClusterMapError::Failed`] naming the rank and the lowest failing index (the farm stays
//! usable); a rank that dies ends the job with `mpirun`'s message naming it; a panic of
//! rank 0's `main` while it holds the [`Farm`] aborts the job (`MPI_Abort`) instead of
//! leaving the serving ranks waiting.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::Communicator;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::balanced::{CATCHING, ItemSender, ItemsWork, RangeWork, RunOpts, catch_item};
use super::{
    AbortHandle, Cluster, ClusterBuilder, ClusterError, ClusterMapError, MapReport, RANK, RankLoad,
};
use crate::reduce::tree_reduce;
use crate::timeline::Timeline;
use crate::{Pool, Schedule};

#[doc(hidden)]
pub use inventory;

/// Tag of rank 0 → serving rank commands.
const TAG_CMD: i32 = 0x7060;
/// Tag of serving rank → rank 0 replies.
const TAG_REPLY: i32 = 0x7061;
/// Shortest and longest sleep of an idle poll.
const NAP_MIN: Duration = Duration::from_micros(20);
const NAP_MAX: Duration = Duration::from_micros(500);
/// How long an idle poll only yields (no sleep) after the last message: the next command or
/// reply usually follows within microseconds, and a sleep costs a scheduler round trip.
const SPIN: Duration = Duration::from_micros(200);

/// Idle-poll pacing: yields during [`SPIN`] after the last message, then sleeps with a
/// doubling nap up to [`NAP_MAX`].
struct Pacer {
    since: std::time::Instant,
    nap: Duration,
}

impl Pacer {
    fn new() -> Self {
        Pacer {
            since: std::time::Instant::now(),
            nap: NAP_MIN,
        }
    }

    /// A message arrived: spin again.
    fn reset(&mut self) {
        *self = Pacer::new();
    }

    /// Nothing arrived: yield or sleep.
    fn idle(&mut self) {
        if self.since.elapsed() < SPIN {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.nap);
            self.nap = (self.nap * 2).min(NAP_MAX);
        }
    }
}

/// A function the serving ranks can run, made by [`task!`](crate::task) (do not implement it
/// by hand: the macro also registers the task, and an unregistered task makes the views
/// panic).
///
/// A task maps one `Item` to one `Out`, reading a context `Ctx` (`()` for one-argument
/// tasks) that is sent once per map.
///
/// # Examples
/// ```
/// use parview::cluster::Task;
///
/// parview::task! {
///     fn scale(by: &f64, x: f64) -> f64 { by * x }
/// }
/// assert!(<scale as Task>::NAME.ends_with("::scale"));
/// assert_eq!(scale::call(&2.0, 1.5), 3.0);
/// assert_eq!(<scale as Task>::run(&2.0, &1.5), 3.0);
/// ```
///
/// A closure is not a task, so its captures cannot be lost on the way to another rank: this
/// does not compile (pass `k` as the context of a two-argument task instead).
///
/// ```compile_fail
/// let farm = parview::cluster::Farm::start().unwrap();
/// let k = 3u64;
/// let _ = farm.load_balanced().map(|x: &u64| x + k, &[1, 2]);
/// ```
pub trait Task: Copy + Send + Sync + 'static {
    /// The registered name: `module_path!()::fn_name`.
    const NAME: &'static str;
    /// Read-only context, sent once per map and rank (`()` for one-argument tasks).
    type Ctx: Serialize + DeserializeOwned + Sync + 'static;
    /// The item type.
    type Item: Serialize + DeserializeOwned + Sync + 'static;
    /// The result type.
    type Out: Serialize + DeserializeOwned + Send + 'static;
    /// Runs the task's function on one item.
    fn run(ctx: &Self::Ctx, item: &Self::Item) -> Self::Out;
}

/// Turns a plain function into a [`Task`] that a [`Farm`] can send to its serving ranks, and
/// registers it (with [`inventory`](https://docs.rs/inventory)) under
/// `module_path!()::name`.
///
/// Forms (items by value need `Clone`; the context is always a reference):
///
/// ```text
/// parview::task! { fn name(item: &T) -> R { .. } }
/// parview::task! { fn name(item: T) -> R { .. } }
/// parview::task! { fn name(ctx: &C, item: &T) -> R { .. } }
/// parview::task! { fn name(ctx: &C, item: T) -> R { .. } }
/// ```
///
/// with optional doc comments/attributes and a visibility. `name` becomes a unit struct (its
/// value is what the views take) with `name::call(..)` to call the function directly. Only
/// named functions with serde argument and result types are accepted: a closure is not a
/// task, so captures cannot be lost on the way (pass them as the context).
///
/// # Examples
/// ```
/// parview::task! {
///     /// Squares a number.
///     pub fn square(x: u64) -> u64 { x * x }
/// }
/// parview::task! {
///     fn count(word: &String) -> usize { word.len() }
/// }
/// assert_eq!(square::call(7), 49);
/// assert_eq!(count::call(&"four".to_string()), 4);
/// ```
#[macro_export]
macro_rules! task {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($c:ident : & $cty:ty , $x:ident : & $ty:ty $(,)?)
        -> $ret:ty $body:block) => {
        $crate::__task_impl! { [$(#[$m])*] $vis $name, $cty, $ty, $ret, |c, x| Self::call(c, x) }
        impl $name {
            /// Calls the task's function here, in this process.
            #[allow(dead_code, clippy::ptr_arg)]
            $vis fn call($c: &$cty, $x: &$ty) -> $ret $body
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident ($c:ident : & $cty:ty , $x:ident : $ty:ty $(,)?)
        -> $ret:ty $body:block) => {
        $crate::__task_impl! { [$(#[$m])*] $vis $name, $cty, $ty, $ret,
            |c, x| Self::call(c, ::core::clone::Clone::clone(x)) }
        impl $name {
            /// Calls the task's function here, in this process.
            #[allow(dead_code, clippy::ptr_arg)]
            $vis fn call($c: &$cty, $x: $ty) -> $ret $body
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident ($x:ident : & $ty:ty $(,)?)
        -> $ret:ty $body:block) => {
        $crate::__task_impl! { [$(#[$m])*] $vis $name, (), $ty, $ret, |_c, x| Self::call(x) }
        impl $name {
            /// Calls the task's function here, in this process.
            #[allow(dead_code, clippy::ptr_arg)]
            $vis fn call($x: &$ty) -> $ret $body
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident ($x:ident : $ty:ty $(,)?)
        -> $ret:ty $body:block) => {
        $crate::__task_impl! { [$(#[$m])*] $vis $name, (), $ty, $ret,
            |_c, x| Self::call(::core::clone::Clone::clone(x)) }
        impl $name {
            /// Calls the task's function here, in this process.
            #[allow(dead_code, clippy::ptr_arg)]
            $vis fn call($x: $ty) -> $ret $body
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __task_impl {
    ([$($m:tt)*] $vis:vis $name:ident, $cty:ty, $ty:ty, $ret:ty, |$c:ident, $x:ident| $run:expr) => {
        $($m)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name;

        impl $crate::cluster::Task for $name {
            const NAME: &'static str =
                ::core::concat!(::core::module_path!(), "::", ::core::stringify!($name));
            type Ctx = $cty;
            type Item = $ty;
            type Out = $ret;
            fn run($c: &$cty, $x: &$ty) -> $ret {
                $run
            }
        }

        $crate::cluster::__farm::inventory::submit! {
            $crate::cluster::__farm::TaskEntry::of::<$name>()
        }
    };
}

/// A serving rank's side of one map: the cluster, the context bytes, the index range (`None`
/// for items).
type ServeMap = fn(&Cluster, &[u8], Option<(u64, u64)>);
/// One call from bytes: context and item bytes to the result's bytes or the panic message.
type CallErased = fn(&[u8], &[u8]) -> Result<Vec<u8>, String>;

/// A registered task, as the serving ranks find it (made by [`task!`](crate::task)).
#[doc(hidden)]
pub struct TaskEntry {
    name: fn() -> &'static str,
    serve_map: ServeMap,
    call: CallErased,
}

impl TaskEntry {
    /// The entry of task `T`.
    pub const fn of<T: Task>() -> TaskEntry {
        TaskEntry {
            name: name_of::<T>,
            serve_map: serve_map::<T>,
            call: call_erased::<T>,
        }
    }
}

fn name_of<T: Task>() -> &'static str {
    T::NAME
}

inventory::collect!(TaskEntry);

/// Name → entry, built once.
fn registry() -> &'static HashMap<&'static str, &'static TaskEntry> {
    static REG: OnceLock<HashMap<&'static str, &'static TaskEntry>> = OnceLock::new();
    REG.get_or_init(|| {
        inventory::iter::<TaskEntry>
            .into_iter()
            .map(|e| ((e.name)(), e))
            .collect()
    })
}

fn entry(name: &str) -> Option<&'static TaskEntry> {
    registry().get(name).copied()
}

/// Panics unless `T` is registered (it is whenever `task!` made it).
fn check_registered<T: Task>() {
    assert!(
        entry(T::NAME).is_some(),
        "parview: task {} is not registered: define it with parview::task!",
        T::NAME
    );
}

/// Runs `T` on one item from bytes (context and item postcard-encoded): the serving ranks'
/// direct calls.
fn call_erased<T: Task>(ctx: &[u8], item: &[u8]) -> Result<Vec<u8>, String> {
    let ctx: T::Ctx =
        postcard::from_bytes(ctx).map_err(|e| format!("decoding the task's context: {e}"))?;
    let item: T::Item =
        postcard::from_bytes(item).map_err(|e| format!("decoding the task's item: {e}"))?;
    let out = catch_item(|| T::run(&ctx, &item))?;
    postcard::to_allocvec(&out).map_err(|e| format!("encoding the task's result: {e}"))
}

/// A serving rank's side of one map of `T` (the SPMD cluster's `run_rank`, typed).
fn serve_map<T: Task>(cluster: &Cluster, ctx: &[u8], range: Option<(u64, u64)>) {
    let ctx: Result<T::Ctx, String> = postcard::from_bytes(ctx)
        .map_err(|e| format!("decoding the task's context failed on this rank: {e}"));
    let with_ctx = |item: &T::Item| match &ctx {
        Ok(c) => T::run(c, item),
        Err(e) => panic!("{e}"),
    };
    match range {
        None => cluster.run_rank(&ItemsWork {
            items: &[] as &[T::Item],
            f: with_ctx,
        }),
        Some((start, end)) => cluster.run_rank(&RangeWork {
            range: start as usize..end as usize,
            f: |i: usize| match (&i as &dyn Any).downcast_ref::<T::Item>() {
                Some(item) => with_ctx(item),
                None => panic!("task {} does not take an index", T::NAME),
            },
        }),
    }
}

// ---- shared values and per-rank state --------------------------------------

/// A pushed value's bytes and, once read, its decoded value.
struct Slot {
    bytes: Vec<u8>,
    value: OnceLock<Arc<dyn Any + Send + Sync>>,
}

fn shared_store() -> &'static Mutex<HashMap<u64, Arc<Slot>>> {
    static STORE: OnceLock<Mutex<HashMap<u64, Arc<Slot>>>> = OnceLock::new();
    STORE.get_or_init(Default::default)
}

fn rank_store() -> &'static Mutex<HashMap<String, Vec<u8>>> {
    static STORE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    STORE.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle on a read-only value that [`Farm::push`] sent once to every rank (Ray's
/// `ObjectRef`, ipyparallel's pushed name): pass it in a task's context and read it with
/// [`Shared::get`] on any rank. It travels as its id (8 bytes).
///
/// # Examples
/// ```
/// use parview::cluster::{Farm, Shared};
///
/// parview::task! {
///     fn lookup(table: &Shared<Vec<u64>>, i: usize) -> u64 { table.get()[i] }
/// }
/// let farm = Farm::start().unwrap(); // local here: no mpirun
/// let table = farm.push(&vec![10u64, 20, 30]).unwrap();
/// let got = farm.load_balanced().map_range_with(lookup, &table, 0..3).unwrap();
/// assert_eq!(got, vec![10, 20, 30]);
/// assert_eq!(table.get()[1], 20);
/// ```
pub struct Shared<V> {
    id: u64,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Shared<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Shared<V> {}

impl<V> std::fmt::Debug for Shared<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(#{})", self.id)
    }
}

impl<V> Serialize for Shared<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.id.serialize(s)
    }
}

impl<'de, V> Deserialize<'de> for Shared<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Shared {
            id: u64::deserialize(d)?,
            _value: PhantomData,
        })
    }
}

impl<V: DeserializeOwned + Send + Sync + 'static> Shared<V> {
    /// The value on this rank (decoded from the pushed bytes on first use, then shared).
    ///
    /// # Panics
    /// If the value was released ([`Farm::release`]) or never pushed in this job, or if its
    /// bytes do not decode as `V`. In a task, the panic is the task's error.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let h = farm.push(&String::from("read-only")).unwrap();
    /// assert_eq!(h.get().as_str(), "read-only");
    /// ```
    pub fn get(&self) -> Arc<V> {
        let slot = lock(shared_store())
            .get(&self.id)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "parview: shared value #{} is not on rank {}: released or never pushed",
                    self.id,
                    RANK.load(Ordering::SeqCst)
                )
            });
        let any = slot.value.get_or_init(|| {
            let v: V = postcard::from_bytes(&slot.bytes).unwrap_or_else(|e| {
                panic!(
                    "parview: shared value #{} does not decode as {}: {e}",
                    self.id,
                    std::any::type_name::<V>()
                )
            });
            Arc::new(v)
        });
        Arc::clone(any)
            .downcast::<V>()
            .unwrap_or_else(|_| panic!("parview: shared value #{} has another type", self.id))
    }
}

/// This rank's value of the per-rank state `key` (set by [`FarmDirect::push`] or
/// [`set_rank_state`]), decoded; `None` if unset or not a `V`. For tasks.
///
/// # Examples
/// ```
/// use parview::cluster::{rank_state, set_rank_state};
/// set_rank_state("seen", &3u32);
/// assert_eq!(rank_state::<u32>("seen"), Some(3));
/// assert_eq!(rank_state::<u32>("never"), None);
/// ```
pub fn rank_state<V: DeserializeOwned>(key: &str) -> Option<V> {
    let store = lock(rank_store());
    postcard::from_bytes(store.get(key)?).ok()
}

/// Sets this rank's per-rank state `key` (read back on rank 0 with [`FarmDirect::pull`]).
///
/// # Panics
/// If `value` cannot be encoded (a serde error of the type).
///
/// # Examples
/// ```
/// parview::cluster::set_rank_state("count", &vec![1u8, 2]);
/// assert_eq!(parview::cluster::rank_state::<Vec<u8>>("count"), Some(vec![1, 2]));
/// ```
pub fn set_rank_state<V: Serialize>(key: &str, value: &V) {
    let bytes = postcard::to_allocvec(value)
        .unwrap_or_else(|e| panic!("parview: set_rank_state({key:?}): encoding failed: {e}"));
    lock(rank_store()).insert(key.to_owned(), bytes);
}

/// The rank this code runs on: 0 on the root and in a local farm. For tasks.
///
/// # Examples
/// ```
/// assert_eq!(parview::cluster::current_rank(), 0); // not under mpirun
/// ```
pub fn current_rank() -> usize {
    RANK.load(Ordering::SeqCst)
}

// ---- commands ---------------------------------------------------------------

/// Rank 0 → serving rank.
#[derive(Serialize, Deserialize)]
enum Cmd {
    /// Serve one map of `task`: items (`range` None) or an index range.
    Map {
        task: String,
        ctx: Vec<u8>,
        range: Option<(u64, u64)>,
    },
    /// Run `task` once on `item`, reply with the encoded result.
    Call {
        task: String,
        ctx: Vec<u8>,
        item: Vec<u8>,
    },
    /// Keep `bytes` as shared value `id`.
    Push { id: u64, bytes: Vec<u8> },
    /// Drop shared value `id`.
    Release { id: u64 },
    /// Set per-rank state.
    SetState { key: String, bytes: Vec<u8> },
    /// Reply with per-rank state (`Option<Vec<u8>>`).
    GetState { key: String },
    /// Finalise MPI and exit with status 0.
    Shutdown,
}

/// Why a [`Farm`] could not start.
///
/// # Examples
/// ```
/// use parview::cluster::FarmError;
/// let e = FarmError::BuildMismatch { rank: 2, root: "ab12".into(), found: "cd34".into() };
/// assert!(e.to_string().contains("rank 2"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FarmError {
    /// MPI or the local pool could not be set up.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A rank runs another build than rank 0 (its executable's SHA-256 differs).
    #[error(
        "rank {rank} runs another build than rank 0 (executable SHA-256 {found}, rank 0 has \
         {root}): start the same binary on every rank (rebuild or copy it to every node)"
    )]
    BuildMismatch {
        /// The first differing rank.
        rank: usize,
        /// Rank 0's digest (hex).
        root: String,
        /// That rank's digest (hex).
        found: String,
    },
    /// A rank could not read its own executable to hash it.
    #[error("rank {rank} could not hash its executable: {message}")]
    BuildUnreadable {
        /// The rank.
        rank: usize,
        /// The I/O error.
        message: String,
    },
    /// The local pool (no `mpirun`) could not be built.
    #[error("building the local pool failed: {0}")]
    Pool(String),
}

/// SHA-256 of this process's executable, hex.
fn exe_digest() -> Result<String, String> {
    let path = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| e.to_string())?
    };
    let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

/// Configures a [`Farm`] before it starts.
///
/// # Examples
/// ```
/// let farm = parview::cluster::Farm::builder().workers(2).start().unwrap();
/// assert_eq!(farm.rank_workers(), &[2]); // local: no mpirun
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct FarmBuilder {
    workers: Option<usize>,
}

impl FarmBuilder {
    /// Local workers of each rank (default as [`ClusterBuilder::workers`]; locally the pool's
    /// default, `PARVIEW_WORKERS` or the CPUs).
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::builder().workers(1).start().unwrap();
    /// assert_eq!(farm.rank_workers(), &[1]);
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Starts the farm: under a launcher (`mpirun`, `srun`; see
    /// [`LAUNCHER_SIZE_VARS`](super::LAUNCHER_SIZE_VARS)) MPI is initialised (threading level
    /// Funneled) on a thread the farm owns (see the module docs), every rank checks it runs rank 0's build, and
    /// **every rank but 0 serves tasks here and never returns**: it exits the process with
    /// status 0 (after finalising MPI) when rank 0's [`Farm`] is dropped. Without a launcher
    /// it returns a local farm on a [`Pool`], with the same results.
    ///
    /// # Errors
    /// On rank 0 (or locally): [`FarmError::Cluster`] (MPI initialisation, launcher mismatch,
    /// pool), [`FarmError::BuildMismatch`] / [`FarmError::BuildUnreadable`] (MPI is finalised
    /// again before they are returned), [`FarmError::Pool`].
    ///
    /// # Panics
    /// On a serving rank, never (it exits); a serving rank whose MPI thread panics aborts the
    /// job.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::builder().workers(2).start()?;
    /// assert!(farm.is_local());
    /// # Ok::<(), parview::cluster::FarmError>(())
    /// ```
    pub fn start(self) -> Result<Farm, FarmError> {
        let launched = super::LAUNCHER_SIZE_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if !launched {
            let pool = match self.workers {
                Some(n) => Pool::builder().workers(n).build(),
                None => Pool::builder().build(),
            }
            .map_err(|e| FarmError::Pool(e.to_string()))?;
            let w = pool.workers();
            return Ok(Farm {
                backend: Backend::Local(Arc::new(pool), [w]),
            });
        }
        // MPI lives on the one engine of `host`: it initialises MPI (so that thread is the
        // MPI thread of threading level Funneled), keeps the Cluster in a thread-local and
        // makes every MPI call, whichever thread holds the Farm.
        let host = Pool::builder()
            .workers(1)
            .thread_name(|_| "parview-farm-mpi".into())
            // Its caller waits (a whole map, or for ever on a serving rank): sleep, don't spin.
            .spin(Duration::ZERO)
            .build()
            .map_err(|e| FarmError::Pool(e.to_string()))?;
        let workers = self.workers;
        let (size, rank_workers) = on_host(&host, move || start_on_mpi_thread(workers))?;
        Ok(Farm {
            backend: Backend::Mpi {
                host,
                size,
                rank_workers,
            },
        })
    }
}

/// The MPI thread's side of [`FarmBuilder::start`]: initialise, check the build, then serve
/// (every rank but 0; never returns) or keep the Cluster here (rank 0).
fn start_on_mpi_thread(workers: Option<usize>) -> Result<(usize, Vec<usize>), FarmError> {
    {
        let mut b = ClusterBuilder::default();
        if let Some(n) = workers {
            b = b.workers(n);
        }
        let cluster = b.build()?;
        let digest = exe_digest();
        let mine = postcard::to_allocvec(&digest).expect("a digest encodes");
        let verdict = match cluster.gather_bytes(&mine) {
            Some(all) => {
                let all: Vec<Result<String, String>> = all
                    .iter()
                    .map(|b| {
                        postcard::from_bytes(b).unwrap_or_else(|e| Err(format!("undecodable: {e}")))
                    })
                    .collect();
                check_digests(&all)
            }
            None => Ok(()),
        };
        let ok = cluster.broadcast_flag(verdict.is_ok());
        if !ok {
            if cluster.is_root() {
                drop(cluster);
                return Err(verdict.expect_err("rank 0 saw the mismatch"));
            }
            eprintln!(
                "parview: rank {} of {}: the farm did not start (rank 0 found a rank running \
                 another build; this rank's executable SHA-256 is {}); exiting",
                cluster.rank(),
                cluster.size(),
                digest.unwrap_or_else(|e| format!("unreadable: {e}"))
            );
            drop(cluster);
            std::process::exit(0);
        }
        if !cluster.is_root() {
            serve(cluster)
        }
        let info = (cluster.size(), cluster.rank_workers().to_vec());
        CLUSTER.with(|c| *c.borrow_mut() = Some(cluster));
        Ok(info)
    }
}

thread_local! {
    /// Rank 0's Cluster, on the MPI thread (the engine of the Farm's host pool).
    static CLUSTER: std::cell::RefCell<Option<Cluster>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` on the engine of the 1-worker `host` pool (the MPI thread) and returns its value.
/// Jobs sent to that engine run one at a time, in the order they were sent (its mailbox).
///
/// # Panics
/// If called from inside a task (the MPI thread would wait for the task, the task for the
/// MPI thread): the panic is that task's error.
pub(super) fn on_host<R: Send>(host: &Pool, f: impl FnOnce() -> R + Send) -> R {
    assert!(
        !CATCHING.with(|c| c.get()),
        "parview: a Farm cannot be used from inside one of its tasks"
    );
    let f = Mutex::new(Some(f));
    let mut out = host.direct().apply(|_| {
        let f = lock(&f).take().expect("runs once");
        f()
    });
    out.pop().expect("one engine")
}

/// Runs `f` with rank 0's Cluster; must be on the MPI thread.
pub(super) fn with_cluster<R>(f: impl FnOnce(&Cluster) -> R) -> R {
    CLUSTER.with(|c| {
        let c = c.borrow();
        let c = c
            .as_ref()
            .expect("parview: the farm's MPI state is on its MPI thread only");
        f(c)
    })
}

/// Rank 0's verdict on every rank's digest.
fn check_digests(all: &[Result<String, String>]) -> Result<(), FarmError> {
    let root = match &all[0] {
        Ok(d) => d.clone(),
        Err(message) => {
            return Err(FarmError::BuildUnreadable {
                rank: 0,
                message: message.clone(),
            });
        }
    };
    for (rank, d) in all.iter().enumerate().skip(1) {
        match d {
            Ok(d) if *d == root => {}
            Ok(d) => {
                return Err(FarmError::BuildMismatch {
                    rank,
                    root,
                    found: d.clone(),
                });
            }
            Err(message) => {
                return Err(FarmError::BuildUnreadable {
                    rank,
                    message: message.clone(),
                });
            }
        }
    }
    Ok(())
}

/// A serving rank's loop: commands from rank 0 until `Shutdown`; then MPI is finalised and the
/// process exits with status 0.
fn serve(cluster: Cluster) -> ! {
    let root = cluster.world.process_at_rank(0);
    let mut pace = Pacer::new();
    loop {
        let Some(probed) = root.immediate_matched_probe_with_tag(TAG_CMD) else {
            pace.idle();
            continue;
        };
        let (bytes, _) = probed.matched_receive_vec::<u8>();
        let cmd: Cmd = postcard::from_bytes(&bytes).unwrap_or_else(|e| {
            // The hook aborts the job on this (MPI) thread: the protocol is broken.
            panic!(
                "parview: rank {} got an undecodable command: {e}",
                cluster.rank()
            )
        });
        match cmd {
            Cmd::Map { task, ctx, range } => match entry(&task) {
                Some(e) => (e.serve_map)(&cluster, &ctx, range),
                // Same build on every rank (checked at start), so this is a broken protocol.
                None => panic!("parview: task {task} is not registered on this rank"),
            },
            Cmd::Call { task, ctx, item } => {
                let out = match entry(&task) {
                    Some(e) => (e.call)(&ctx, &item),
                    None => Err(format!("task {task} is not registered on this rank")),
                };
                reply(&cluster, &out);
            }
            Cmd::Push { id, bytes } => {
                lock(shared_store()).insert(
                    id,
                    Arc::new(Slot {
                        bytes,
                        value: OnceLock::new(),
                    }),
                );
            }
            Cmd::Release { id } => {
                lock(shared_store()).remove(&id);
            }
            Cmd::SetState { key, bytes } => {
                lock(rank_store()).insert(key, bytes);
            }
            Cmd::GetState { key } => {
                let v = lock(rank_store()).get(&key).cloned();
                reply(&cluster, &v);
            }
            Cmd::Shutdown => break,
        }
        pace.reset();
    }
    drop(cluster); // finalises MPI
    std::process::exit(0)
}

fn reply<V: Serialize>(cluster: &Cluster, v: &V) {
    let bytes = postcard::to_allocvec(v).expect("a reply encodes");
    cluster
        .world
        .process_at_rank(0)
        .send_with_tag(&bytes[..], TAG_REPLY);
}

// ---- the root's handle --------------------------------------------------------

pub(super) enum Backend {
    /// The pool and its worker count (as a one-rank layout).
    Local(Arc<Pool>, [usize; 1]),
    /// The 1-worker pool whose engine is the MPI thread (it holds the Cluster), the world
    /// size and every rank's workers.
    Mpi {
        host: Pool,
        size: usize,
        rank_workers: Vec<usize>,
    },
}

/// Rank 0's handle on a root-driven cluster (or the local stand-in without `mpirun`),
/// created by [`Farm::start`]. Dropping it stops the serving ranks (they exit with status 0)
/// and finalises MPI; rank 0 must drop it (return from `main`): a `std::process::exit` while
/// it is alive leaves the serving ranks to be ended by `mpirun` with an error.
///
/// Every MPI call of rank 0 runs on one thread the farm owns (the engine of a one-worker pool,
/// which initialised MPI: threading level Funneled), so the handle is `Send` and `Sync` and
/// may be used from any thread; calls from several threads run one after the other.
///
/// # Examples
/// ```
/// use parview::cluster::Farm;
///
/// parview::task! {
///     fn cube(x: i64) -> i64 { x * x * x }
/// }
/// let farm = Farm::start().unwrap();
/// let v = farm.load_balanced().map(cube, &[1, 2, 3]).unwrap();
/// assert_eq!(v, vec![1, 8, 27]);
/// ```
pub struct Farm {
    pub(super) backend: Backend,
}

impl std::fmt::Debug for Farm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Farm")
            .field("local", &self.is_local())
            .field("rank_workers", &self.rank_workers())
            .finish()
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        let Backend::Mpi { host, .. } = &self.backend else {
            return;
        };
        if std::thread::panicking() {
            // Finalising would leave nothing wrong, but rank 0's program did not finish:
            // end the whole job rather than report success.
            eprintln!(
                "parview: rank 0 is unwinding from a panic while it holds the Farm; aborting \
                 the MPI job (MPI_Abort)"
            );
            on_host(host, || super::abort_job());
        }
        let stop = postcard::to_allocvec(&Cmd::Shutdown).expect("encodes");
        on_host(host, || {
            with_cluster(|c| send_all(c, &stop));
            // Dropping the Cluster on its own thread finalises MPI.
            CLUSTER.with(|c| drop(c.borrow_mut().take()));
        });
    }
}

/// Next id of a pushed value (ids are rank 0's).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Farm {
    /// Runs `f` with the Cluster on the MPI thread; `None` for a local farm.
    fn mpi<R: Send>(&self, f: impl FnOnce(&Cluster) -> R + Send) -> Option<R> {
        match &self.backend {
            Backend::Local(..) => None,
            Backend::Mpi { host, .. } => Some(on_host(host, || with_cluster(f))),
        }
    }

    /// Starts a farm with the defaults: `Farm::builder().start()` (see
    /// [`FarmBuilder::start`]; on every rank but 0 it never returns).
    ///
    /// # Errors
    /// As [`FarmBuilder::start`].
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start()?;
    /// println!("{} rank(s)", farm.ranks());
    /// # Ok::<(), parview::cluster::FarmError>(())
    /// ```
    pub fn start() -> Result<Farm, FarmError> {
        FarmBuilder::default().start()
    }

    /// A builder, to set the workers per rank.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::builder().workers(1).start().unwrap();
    /// ```
    pub fn builder() -> FarmBuilder {
        FarmBuilder::default()
    }

    /// Whether this farm runs on a local pool only (started without a launcher).
    ///
    /// # Examples
    /// ```
    /// assert!(parview::cluster::Farm::start().unwrap().is_local());
    /// ```
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(..))
    }

    /// Number of ranks (1 when local).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(parview::cluster::Farm::start().unwrap().ranks(), 1);
    /// ```
    pub fn ranks(&self) -> usize {
        match &self.backend {
            Backend::Local(..) => 1,
            Backend::Mpi { size, .. } => *size,
        }
    }

    /// Local workers of every rank, in rank order.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::builder().workers(3).start().unwrap();
    /// assert_eq!(farm.rank_workers().iter().sum::<usize>(), 3);
    /// ```
    pub fn rank_workers(&self) -> &[usize] {
        match &self.backend {
            Backend::Local(_, w) => w,
            Backend::Mpi { rank_workers, .. } => rank_workers,
        }
    }

    /// The load-balanced view: maps of a [`Task`] over items or an index range, chunks handed
    /// out on demand to every rank (see [`FarmView`]).
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn double(x: u32) -> u32 { 2 * x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().map(double, &[1, 2]).unwrap(), vec![2, 4]);
    /// ```
    pub fn load_balanced(&self) -> FarmView<'_> {
        FarmView {
            farm: self,
            schedule: Schedule::Adaptive,
            abort: None,
            #[cfg(feature = "progress")]
            progress: None,
        }
    }

    /// The direct view over ranks: run a task once on every rank (or some), per-rank state
    /// (see [`FarmDirect`]).
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn whoami(rank: usize) -> usize { rank } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.direct().apply(whoami).unwrap(), vec![0]);
    /// ```
    pub fn direct(&self) -> FarmDirect<'_> {
        FarmDirect {
            farm: self,
            targets: None,
        }
    }

    /// Sends `value` once to every rank (ipyparallel's push, Ray's put) and returns its
    /// handle: pass the handle in a task's context and read it with [`Shared::get`]. The
    /// value stays on every rank until [`Farm::release`] or the end of the job.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] (rank 0, index 0) if `value` cannot be encoded.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let h = farm.push(&vec![1.0f64; 1000]).unwrap();
    /// assert_eq!(h.get().len(), 1000);
    /// ```
    pub fn push<V>(&self, value: &V) -> Result<Shared<V>, ClusterMapError>
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let bytes = postcard::to_allocvec(value).map_err(|e| ClusterMapError::Failed {
            rank: 0,
            index: 0,
            message: format!("encoding the pushed value: {e}"),
        })?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if !self.is_local() {
            let cmd = postcard::to_allocvec(&Cmd::Push {
                id,
                bytes: bytes.clone(),
            })
            .expect("encodes");
            self.mpi(|c| send_all(c, &cmd));
        }
        lock(shared_store()).insert(
            id,
            Arc::new(Slot {
                bytes,
                value: OnceLock::new(),
            }),
        );
        Ok(Shared {
            id,
            _value: PhantomData,
        })
    }

    /// Drops a pushed value on every rank; a later [`Shared::get`] of it panics.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let h = farm.push(&5u8).unwrap();
    /// farm.release(h);
    /// assert!(std::panic::catch_unwind(|| h.get()).is_err());
    /// ```
    pub fn release<V>(&self, shared: Shared<V>) {
        let cmd = postcard::to_allocvec(&Cmd::Release { id: shared.id }).expect("encodes");
        self.mpi(|c| send_all(c, &cmd));
        lock(shared_store()).remove(&shared.id);
    }

    /// Deterministic map-reduce of task `T` over the indices of `range`: the values of `T`
    /// are computed across the ranks (a load-balanced map), then folded on rank 0 leaf by
    /// leaf (`leaf` consecutive indices, left to right with `op`) and the leaf values combined
    /// with [`tree_reduce`]. The result has the same bits as
    /// [`map_reduce_local`](super::map_reduce_local) and as
    /// [`Cluster::map_reduce`](super::Cluster::map_reduce) for any ranks × workers layout;
    /// `op` runs on rank 0 only, so it may be any closure. `None` if `range` is empty.
    ///
    /// The per-index values travel to rank 0 (for very many large values, have the task
    /// return a leaf's value instead).
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// If `leaf == 0`; if `op` panics.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn inv(i: usize) -> f64 { 1.0 / (i as f64 + 1.0) } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let h = farm.map_reduce(inv, 0..1000, 64, |a, b| a + b).unwrap().unwrap();
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let local = parview::cluster::map_reduce_local(&pool, 0..1000, 64, inv::call, |a, b| a + b);
    /// assert_eq!(h.to_bits(), local.unwrap().to_bits());
    /// ```
    pub fn map_reduce<T, O>(
        &self,
        task: T,
        range: Range<usize>,
        leaf: usize,
        op: O,
    ) -> Result<Option<T::Out>, ClusterMapError>
    where
        T: Task<Ctx = (), Item = usize>,
        O: Fn(T::Out, T::Out) -> T::Out,
    {
        self.map_reduce_with(task, &(), range, leaf, op)
    }

    /// [`Farm::map_reduce`] of a task with a context.
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// As [`Farm::map_reduce`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn pow(k: &u32, i: usize) -> u64 { (i as u64).pow(*k) } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let s = farm.map_reduce_with(pow, &2, 0..4, 2, |a, b| a + b).unwrap();
    /// assert_eq!(s, Some(14));
    /// ```
    pub fn map_reduce_with<T, O>(
        &self,
        task: T,
        ctx: &T::Ctx,
        range: Range<usize>,
        leaf: usize,
        op: O,
    ) -> Result<Option<T::Out>, ClusterMapError>
    where
        T: Task<Item = usize>,
        O: Fn(T::Out, T::Out) -> T::Out,
    {
        assert!(leaf > 0, "Farm::map_reduce: leaf size must be > 0");
        let values = self.load_balanced().map_range_with(task, ctx, range)?;
        let mut values = values.into_iter();
        let mut leaves = Vec::with_capacity(values.len().div_ceil(leaf));
        loop {
            let mut it = values.by_ref().take(leaf);
            let Some(first) = it.next() else { break };
            leaves.push(it.fold(first, &op));
        }
        Ok(tree_reduce(leaves, &op))
    }
}

/// Sends `cmd` to every serving rank.
fn send_all(c: &Cluster, cmd: &[u8]) {
    for r in 1..c.size() {
        send_to(c, r, cmd);
    }
}

/// Sends `cmd` to serving rank `r`.
fn send_to(c: &Cluster, r: usize, cmd: &[u8]) {
    c.world
        .process_at_rank(r as i32)
        .send_with_tag(cmd, TAG_CMD);
}

/// Waits (polling, with naps) for one reply from `rank`.
fn recv_reply(c: &Cluster, rank: usize) -> Vec<u8> {
    let p = c.world.process_at_rank(rank as i32);
    let mut pace = Pacer::new();
    loop {
        if let Some(probed) = p.immediate_matched_probe_with_tag(TAG_REPLY) {
            return probed.matched_receive_vec::<u8>().0;
        }
        pace.idle();
    }
}

/// What a map runs over.
pub(super) enum Input<'a, I> {
    Items(&'a [I]),
    Range(Range<usize>),
}

/// The load-balanced view of a [`Farm`]: maps of a [`Task`] whose chunks rank 0 hands out on
/// demand to every rank (its own engines included), with the local [`Schedule`] vocabulary
/// (default [`Schedule::Adaptive`]); results in input order on rank 0. Locally, the same map
/// on the local pool.
///
/// # Examples
/// ```
/// use parview::Schedule;
/// parview::task! { fn len(s: &String) -> usize { s.len() } }
/// let farm = parview::cluster::Farm::start().unwrap();
/// let words = vec!["a".to_string(), "bcd".to_string()];
/// let v = farm.load_balanced().schedule(Schedule::Dynamic(1)).map(len, &words).unwrap();
/// assert_eq!(v, vec![1, 3]);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct FarmView<'f> {
    pub(super) farm: &'f Farm,
    schedule: Schedule,
    abort: Option<AbortHandle>,
    #[cfg(feature = "progress")]
    progress: Option<String>,
}

impl FarmView<'_> {
    /// This view with `schedule`; an invalid one is reported as
    /// [`ClusterMapError::Schedule`] by the map.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let v = farm.load_balanced().schedule(parview::Schedule::Guided(2));
    /// assert_eq!(v.get_schedule(), parview::Schedule::Guided(2));
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The view's schedule.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().get_schedule(), parview::Schedule::Adaptive);
    /// ```
    pub fn get_schedule(&self) -> Schedule {
        self.schedule
    }

    /// Maps of this view stop handing out chunks once `handle` is aborted (from another
    /// thread) and return [`ClusterMapError::Aborted`] (on MPI; locally the handle is read
    /// before the map only).
    ///
    /// # Examples
    /// ```
    /// use parview::cluster::{AbortHandle, ClusterMapError};
    /// parview::task! { fn id(i: usize) -> usize { i } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let h = AbortHandle::new();
    /// h.abort();
    /// let r = farm.load_balanced().abortable(&h).map_range(id, 0..10);
    /// assert!(matches!(r, Err(ClusterMapError::Aborted { .. })));
    /// ```
    pub fn abortable(mut self, handle: &AbortHandle) -> Self {
        self.abort = Some(handle.clone());
        self
    }

    /// Shows a progress bar on rank 0's stderr (feature `progress`; MPI farms only).
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn sq(i: usize) -> usize { i * i } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let _ = farm.load_balanced().progress_bar("squares").map_range(sq, 0..100);
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_bar(mut self, label: &str) -> Self {
        self.progress = Some(label.to_owned());
        self
    }

    /// Maps task `T` over `items`; results in input order.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] naming the rank and the lowest index whose item panicked
    /// (every other item still ran; the farm stays usable), [`ClusterMapError::Aborted`],
    /// [`ClusterMapError::Schedule`].
    ///
    /// # Panics
    /// If `T` is not registered (implemented by hand instead of with
    /// [`task!`](crate::task)), or if a rank's result message cannot be decoded.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn neg(x: &f64) -> f64 { -x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().map(neg, &[1.0, 2.0]).unwrap(), vec![-1.0, -2.0]);
    /// ```
    pub fn map<T>(&self, task: T, items: &[T::Item]) -> Result<Vec<T::Out>, ClusterMapError>
    where
        T: Task<Ctx = ()>,
    {
        self.run(task, &(), Input::Items(items))
    }

    /// Maps task `T` over `items` with the context `ctx` (sent once per rank).
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn add(k: &i32, x: i32) -> i32 { x + k } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().map_with(add, &10, &[1, 2]).unwrap(), vec![11, 12]);
    /// ```
    pub fn map_with<T: Task>(
        &self,
        task: T,
        ctx: &T::Ctx,
        items: &[T::Item],
    ) -> Result<Vec<T::Out>, ClusterMapError> {
        self.run(task, ctx, Input::Items(items))
    }

    /// Maps task `T` over the indices of `range` (only index ranges travel).
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn sq(i: usize) -> usize { i * i } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().map_range(sq, 0..4).unwrap(), vec![0, 1, 4, 9]);
    /// ```
    pub fn map_range<T>(&self, task: T, range: Range<usize>) -> Result<Vec<T::Out>, ClusterMapError>
    where
        T: Task<Ctx = (), Item = usize>,
    {
        self.run(task, &(), Input::Range(range))
    }

    /// [`FarmView::map_range`] with a context.
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn off(k: &usize, i: usize) -> usize { i + k } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().map_range_with(off, &5, 0..2).unwrap(), vec![5, 6]);
    /// ```
    pub fn map_range_with<T>(
        &self,
        task: T,
        ctx: &T::Ctx,
        range: Range<usize>,
    ) -> Result<Vec<T::Out>, ClusterMapError>
    where
        T: Task<Item = usize>,
    {
        self.run(task, ctx, Input::Range(range))
    }

    /// [`FarmView::map_with`] with where and when: per-rank loads, wall time and a timeline
    /// with one lane per (rank, engine) (see [`MapReport`]; locally, one rank's engines).
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn inc(x: u32) -> u32 { x + 1 } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let rep = farm.load_balanced().map_report_with(inc, &(), &[1, 2, 3]).unwrap();
    /// assert_eq!(rep.results, vec![2, 3, 4]);
    /// assert_eq!(rep.loads.iter().map(|l| l.items).sum::<usize>(), 3);
    /// assert_eq!(rep.lanes.len(), farm.rank_workers().iter().sum::<usize>());
    /// ```
    pub fn map_report_with<T: Task>(
        &self,
        task: T,
        ctx: &T::Ctx,
        items: &[T::Item],
    ) -> Result<MapReport<T::Out>, ClusterMapError> {
        self.run_report(task, ctx, Input::Items(items), true)
    }

    /// [`FarmView::map_range_with`] with the [`MapReport`].
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Panics
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn sq(i: usize) -> usize { i * i } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let rep = farm.load_balanced().map_range_report_with(sq, &(), 0..10).unwrap();
    /// assert_eq!(rep.results[9], 81);
    /// println!("{}", rep.timeline);
    /// ```
    pub fn map_range_report_with<T>(
        &self,
        task: T,
        ctx: &T::Ctx,
        range: Range<usize>,
    ) -> Result<MapReport<T::Out>, ClusterMapError>
    where
        T: Task<Item = usize>,
    {
        self.run_report(task, ctx, Input::Range(range), true)
    }

    fn run<T: Task>(
        &self,
        task: T,
        ctx: &T::Ctx,
        input: Input<'_, T::Item>,
    ) -> Result<Vec<T::Out>, ClusterMapError> {
        Ok(self.run_report(task, ctx, input, false)?.results)
    }

    pub(super) fn spec(&self, timeline: bool) -> MapSpec {
        MapSpec {
            schedule: self.schedule,
            abort: self.abort.clone(),
            #[cfg(feature = "progress")]
            label: self.progress.clone(),
            #[cfg(not(feature = "progress"))]
            label: None,
            timeline,
        }
    }

    fn run_report<T: Task>(
        &self,
        _task: T,
        ctx: &T::Ctx,
        input: Input<'_, T::Item>,
        timeline: bool,
    ) -> Result<MapReport<T::Out>, ClusterMapError> {
        let spec = self.spec(timeline);
        spec.check::<T>(&input)?;
        match &self.farm.backend {
            Backend::Local(pool, [workers]) => run_local::<T>(pool, *workers, &spec, ctx, &input),
            Backend::Mpi { host, .. } => on_host(host, || {
                with_cluster(|c| run_mpi::<T>(c, &spec, ctx, &input, None))
            }),
        }
    }

    /// [`FarmView::map`] in the background: returns at once; the map runs on rank 0's MPI
    /// thread (locally, on the pool) while the calling thread goes on. Farm calls made
    /// meanwhile wait for it (one MPI thread runs them in order).
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn half(x: u64) -> u64 { x / 2 } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let ar = farm.load_balanced().map_async(half, vec![2, 4, 6]);
    /// // ... other work ...
    /// assert_eq!(ar.get().unwrap(), vec![1, 2, 3]);
    /// ```
    pub fn map_async<T>(&self, task: T, items: Vec<T::Item>) -> FarmAsync<Vec<T::Out>>
    where
        T: Task<Ctx = ()>,
        T::Item: Send,
    {
        self.map_async_with(task, (), items)
    }

    /// [`FarmView::map_async`] with a context (owned: it moves to the MPI thread).
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn scale(k: &f64, x: f64) -> f64 { k * x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let ar = farm.load_balanced().map_async_with(scale, 2.0, vec![1.0, 1.5]);
    /// assert_eq!(ar.get().unwrap(), vec![2.0, 3.0]);
    /// ```
    pub fn map_async_with<T>(
        &self,
        _task: T,
        ctx: T::Ctx,
        items: Vec<T::Item>,
    ) -> FarmAsync<Vec<T::Out>>
    where
        T: Task,
        T::Item: Send,
        T::Ctx: Send,
    {
        let spec = self.spec(false);
        let inner = match &self.farm.backend {
            Backend::Local(pool, [workers]) => {
                let p = Arc::clone(pool);
                let w = *workers;
                pool.load_balanced().submit(move || {
                    let input = Input::Items(&items[..]);
                    spec.check::<T>(&input)?;
                    Ok(run_local::<T>(&p, w, &spec, &ctx, &input)?.results)
                })
            }
            Backend::Mpi { host, .. } => {
                on_mpi_thread(host, move || -> Result<Vec<T::Out>, ClusterMapError> {
                    let input = Input::Items(&items[..]);
                    spec.check::<T>(&input)?;
                    farm_alive()?;
                    Ok(with_cluster(|c| run_mpi::<T>(c, &spec, &ctx, &input, None))?.results)
                })
            }
        };
        FarmAsync { inner }
    }
}

impl FarmView<'_> {
    /// Results as they arrive on rank 0: `(index, outcome)` in completion order, every index
    /// exactly once (the local [`ImapUnordered`](crate::ImapUnordered) with a rank-aware
    /// error). The map runs in the background like [`map_async`](Self::map_async); an item
    /// that panicked comes as `Err(ClusterMapError::Failed)` naming its rank and index, and
    /// the other items still come. A map refused before it starts (unregistered task, invalid
    /// schedule, already aborted) yields one `(0, Err(..))`. The view's
    /// [`abortable`](Self::abortable) handle stops it: the iteration then ends early.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn cube(x: u64) -> u64 { x * x * x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let mut got: Vec<(usize, u64)> = farm
    ///     .load_balanced()
    ///     .imap_unordered(cube, (0..20).collect())
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// got.sort();
    /// assert_eq!(got[3], (3, 27));
    /// assert_eq!(got.len(), 20);
    /// ```
    pub fn imap_unordered<T>(&self, task: T, items: Vec<T::Item>) -> FarmImapUnordered<T::Out>
    where
        T: Task<Ctx = ()>,
        T::Item: Send,
    {
        self.imap_unordered_with(task, (), items)
    }

    /// [`FarmView::imap_unordered`] with a context (owned: it moves to the map's thread).
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn add(k: &u32, x: u32) -> u32 { k + x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let sum: u32 = farm
    ///     .load_balanced()
    ///     .imap_unordered_with(add, 10, vec![1, 2, 3])
    ///     .map(|(_, r)| r.unwrap())
    ///     .sum();
    /// assert_eq!(sum, 36);
    /// ```
    pub fn imap_unordered_with<T>(
        &self,
        _task: T,
        ctx: T::Ctx,
        items: Vec<T::Item>,
    ) -> FarmImapUnordered<T::Out>
    where
        T: Task,
        T::Item: Send,
        T::Ctx: Send,
    {
        let spec = self.spec(false);
        let (tx, rx) = crossbeam_channel::unbounded();
        let refused = |tx: &ItemSender<T::Out>, e: ClusterMapError| {
            let _ = tx.send((0, Err(e)));
        };
        let inner = match &self.farm.backend {
            Backend::Local(pool, _) => {
                let p = Arc::clone(pool);
                pool.load_balanced().submit(move || {
                    let input = Input::Items(&items[..]);
                    if let Err(e) = spec.check::<T>(&input) {
                        refused(&tx, e);
                        return Ok(());
                    }
                    let abort = spec.abort.clone();
                    p.schedule(spec.schedule).for_each(0..items.len(), |i| {
                        if abort.as_ref().is_some_and(AbortHandle::is_aborted) {
                            return;
                        }
                        let out = catch_item(|| T::run(&ctx, &items[i])).map_err(|message| {
                            ClusterMapError::Failed {
                                rank: 0,
                                index: i,
                                message,
                            }
                        });
                        let _ = tx.send((i, out));
                    });
                    Ok(())
                })
            }
            Backend::Mpi { host, .. } => {
                on_mpi_thread(host, move || -> Result<(), ClusterMapError> {
                    let input = Input::Items(&items[..]);
                    if let Err(e) = spec.check::<T>(&input).and_then(|()| farm_alive()) {
                        refused(&tx, e);
                        return Ok(());
                    }
                    // Items stream through `tx`; a failure is already in the stream.
                    let _ = with_cluster(|c| run_mpi::<T>(c, &spec, &ctx, &input, Some(tx)));
                    Ok(())
                })
            }
        };
        FarmImapUnordered {
            rx,
            _map: FarmAsync { inner },
        }
    }
}

/// Results of [`FarmView::imap_unordered`] as they arrive: `(index, outcome)`.
///
/// # Examples
/// ```
/// parview::task! { fn twice(x: i32) -> i32 { 2 * x } }
/// let farm = parview::cluster::Farm::start().unwrap();
/// let it = farm.load_balanced().imap_unordered(twice, vec![1, 2, 3]);
/// assert_eq!(it.map(|(_, r)| r.unwrap()).sum::<i32>(), 12);
/// ```
#[must_use = "iterators are lazy"]
pub struct FarmImapUnordered<R> {
    rx: crossbeam_channel::Receiver<(usize, Result<R, ClusterMapError>)>,
    _map: FarmAsync<()>,
}

impl<R> std::fmt::Debug for FarmImapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarmImapUnordered").finish_non_exhaustive()
    }
}

impl<R> Iterator for FarmImapUnordered<R> {
    type Item = (usize, Result<R, ClusterMapError>);
    fn next(&mut self) -> Option<Self::Item> {
        // Every sender is dropped once the map has ended.
        self.rx.recv().ok()
    }
}

/// A farm map running in the background ([`FarmView::map_async`]).
///
/// # Examples
/// ```
/// parview::task! { fn inc(x: u8) -> u8 { x + 1 } }
/// let farm = parview::cluster::Farm::start().unwrap();
/// let ar = farm.load_balanced().map_async(inc, vec![1, 2]);
/// ar.wait();
/// assert!(ar.ready());
/// assert_eq!(ar.get().unwrap(), vec![2, 3]);
/// ```
#[must_use = "dropping it does not stop the map; get() its result"]
pub struct FarmAsync<R> {
    inner: crate::AsyncResult<Result<R, ClusterMapError>>,
}

impl<R> std::fmt::Debug for FarmAsync<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FarmAsync")
            .field("ready", &self.inner.ready())
            .finish()
    }
}

impl<R: Send + 'static> FarmAsync<R> {
    /// Whether the map has finished.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn id(x: u8) -> u8 { x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// let ar = farm.load_balanced().map_async(id, vec![1]);
    /// ar.wait();
    /// assert!(ar.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.inner.ready()
    }

    /// Blocks until the map has finished.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn id(x: u8) -> u8 { x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// farm.load_balanced().map_async(id, vec![1]).wait();
    /// ```
    pub fn wait(&self) {
        self.inner.wait()
    }

    /// Blocks until the map has finished and returns its results.
    ///
    /// # Errors
    /// As [`FarmView::map`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn id(x: u8) -> u8 { x } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.load_balanced().map_async(id, vec![7]).get().unwrap(), vec![7]);
    /// ```
    pub fn get(self) -> Result<R, ClusterMapError> {
        self.inner.get().unwrap_or_else(|e| {
            Err(ClusterMapError::Failed {
                rank: 0,
                index: 0,
                message: e.to_string(),
            })
        })
    }
}

/// A map's settings, owned (so a background map can take them along).
pub(super) struct MapSpec {
    pub(super) schedule: Schedule,
    pub(super) abort: Option<AbortHandle>,
    pub(super) label: Option<String>,
    pub(super) timeline: bool,
}

impl MapSpec {
    /// The checks before anything is sent: registered task, valid schedule, not aborted.
    pub(super) fn check<T: Task>(&self, input: &Input<'_, T::Item>) -> Result<(), ClusterMapError> {
        check_registered::<T>();
        self.schedule.validate()?;
        if self.abort.as_ref().is_some_and(AbortHandle::is_aborted) {
            return Err(ClusterMapError::Aborted {
                done: 0,
                total: input.len(),
            });
        }
        Ok(())
    }
}

impl<I> Input<'_, I> {
    fn len(&self) -> usize {
        match self {
            Input::Items(items) => items.len(),
            Input::Range(r) => r.len(),
        }
    }
}

/// Runs `job` once on the farm's MPI thread (the engine of `host`), in the background.
fn on_mpi_thread<R: Send + 'static>(
    host: &Pool,
    job: impl FnOnce() -> R + Send + 'static,
) -> crate::AsyncResult<R> {
    let job = Mutex::new(Some(job));
    host.direct()
        .apply_async(move |_| lock(&job).take().expect("runs once")())
        .map_value(|mut v: Vec<_>| v.pop().expect("one engine"))
}

/// `Err` once the farm has been dropped: a background map queued before that must not start.
fn farm_alive() -> Result<(), ClusterMapError> {
    if CLUSTER.with(|c| c.borrow().is_none()) {
        return Err(ClusterMapError::Failed {
            rank: 0,
            index: 0,
            message: "the Farm was dropped before this map started".into(),
        });
    }
    Ok(())
}

/// A map on the local pool (a local farm).
fn run_local<T: Task>(
    pool: &Pool,
    workers: usize,
    spec: &MapSpec,
    ctx: &T::Ctx,
    input: &Input<'_, T::Item>,
) -> Result<MapReport<T::Out>, ClusterMapError> {
    let n = input.len();
    let item = |i: usize| {
        catch_item(|| match input {
            Input::Items(items) => T::run(ctx, &items[i]),
            Input::Range(r) => {
                let idx = r.start + i;
                match (&idx as &dyn Any).downcast_ref::<T::Item>() {
                    Some(item) => T::run(ctx, item),
                    None => unreachable!("range maps take index tasks"),
                }
            }
        })
    };
    let view = pool.schedule(spec.schedule);
    let (outs, tl) = if spec.timeline {
        let (v, tl) = view.map_timed(0..n, item);
        (v, Some(tl))
    } else {
        (view.map(0..n, item), None)
    };
    let mut results = Vec::with_capacity(n);
    for (index, o) in outs.into_iter().enumerate() {
        match o {
            Ok(v) => results.push(v),
            Err(message) => {
                return Err(ClusterMapError::Failed {
                    rank: 0,
                    index,
                    message,
                });
            }
        }
    }
    let tl =
        tl.unwrap_or_else(|| Timeline::new("farm (local)", workers, Duration::ZERO, Vec::new()));
    let records = tl.records();
    let loads = vec![RankLoad {
        rank: 0,
        engines: workers,
        items: n,
        chunks: records.len(),
        busy: records.iter().map(|r| r.busy()).sum(),
    }];
    Ok(MapReport {
        results,
        loads,
        wall: tl.wall_time(),
        lanes: (0..workers).map(|e| (0, e)).collect(),
        timeline: tl,
    })
}

/// Tells every serving rank to serve one map of `T` with `ctx` over items (`range` None) or an
/// index range; on rank 0's MPI thread. Nothing is sent if the context cannot be encoded.
pub(super) fn send_map<T: Task>(
    c: &Cluster,
    ctx: &T::Ctx,
    range: Option<(u64, u64)>,
) -> Result<(), ClusterMapError> {
    let ctx_bytes = postcard::to_allocvec(ctx).map_err(|e| ClusterMapError::Failed {
        rank: 0,
        index: 0,
        message: format!("encoding the task's context: {e}"),
    })?;
    let cmd = postcard::to_allocvec(&Cmd::Map {
        task: T::NAME.to_owned(),
        ctx: ctx_bytes,
        range,
    })
    .expect("a command encodes");
    send_all(c, &cmd);
    Ok(())
}

/// A map across the ranks, on rank 0's MPI thread: the command to every serving rank, then
/// the SPMD cluster's root loop.
fn run_mpi<T: Task>(
    c: &Cluster,
    spec: &MapSpec,
    ctx: &T::Ctx,
    input: &Input<'_, T::Item>,
    stream: Option<ItemSender<T::Out>>,
) -> Result<MapReport<T::Out>, ClusterMapError> {
    let range = match input {
        Input::Items(_) => None,
        Input::Range(r) => Some((r.start as u64, r.end as u64)),
    };
    send_map::<T>(c, ctx, range)?;
    let mut opts = RunOpts::blocking(
        spec.schedule,
        spec.abort.as_ref(),
        spec.label.as_deref(),
        spec.timeline,
    );
    opts.stream = stream;
    let f = |item: &T::Item| T::run(ctx, item);
    let (res, rep) = match input {
        Input::Items(items) => c.run_root(&ItemsWork { items, f }, &opts),
        Input::Range(r) => c.run_root(
            &RangeWork {
                range: r.clone(),
                f: |i: usize| match (&i as &dyn Any).downcast_ref::<T::Item>() {
                    Some(item) => f(item),
                    None => unreachable!("range maps take index tasks"),
                },
            },
            &opts,
        ),
    };
    Ok(MapReport {
        results: res?,
        loads: rep.loads,
        wall: rep.wall,
        timeline: rep.timeline,
        lanes: rep.lanes,
    })
}

/// The direct view of a [`Farm`] (ipyparallel's `rc[:]` over ranks): a task run once on
/// every rank (or on [`targets`](FarmDirect::targets)), per-rank state pushed and pulled.
///
/// # Examples
/// ```
/// parview::task! { fn hello(rank: usize) -> String { format!("rank {rank}") } }
/// let farm = parview::cluster::Farm::start().unwrap();
/// assert_eq!(farm.direct().apply(hello).unwrap(), vec!["rank 0".to_string()]);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct FarmDirect<'f> {
    farm: &'f Farm,
    targets: Option<Vec<usize>>,
}

impl FarmDirect<'_> {
    /// This view restricted to `ranks` (in that order).
    ///
    /// # Panics
    /// If a rank is out of range (`>= farm.ranks()`) or listed twice; the message names it.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn r(rank: usize) -> usize { rank } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.direct().targets(&[0]).apply(r).unwrap(), vec![0]);
    /// ```
    pub fn targets(mut self, ranks: &[usize]) -> Self {
        let size = self.farm.ranks();
        for (k, &r) in ranks.iter().enumerate() {
            assert!(r < size, "FarmDirect::targets: rank {r} >= ranks {size}");
            assert!(
                !ranks[..k].contains(&r),
                "FarmDirect::targets: rank {r} is listed twice"
            );
        }
        self.targets = Some(ranks.to_vec());
        self
    }

    fn ranks(&self) -> Vec<usize> {
        self.targets
            .clone()
            .unwrap_or_else(|| (0..self.farm.ranks()).collect())
    }

    /// Runs task `T` once on each target rank with its rank as the item; results in target
    /// order.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] naming the first target rank (in order) whose call
    /// panicked (`index` is that rank); every target still ran.
    ///
    /// # Panics
    /// If `T` is not registered.
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn pid(_rank: usize) -> u32 { std::process::id() } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.direct().apply(pid).unwrap().len(), farm.ranks());
    /// ```
    pub fn apply<T>(&self, task: T) -> Result<Vec<T::Out>, ClusterMapError>
    where
        T: Task<Ctx = (), Item = usize>,
    {
        self.apply_with(task, &())
    }

    /// [`FarmDirect::apply`] with a context.
    ///
    /// # Errors
    /// As [`FarmDirect::apply`].
    ///
    /// # Panics
    /// As [`FarmDirect::apply`].
    ///
    /// # Examples
    /// ```
    /// parview::task! { fn tag(t: &String, rank: usize) -> String { format!("{t}{rank}") } }
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// assert_eq!(farm.direct().apply_with(tag, &"r".into()).unwrap(), vec!["r0".to_string()]);
    /// ```
    pub fn apply_with<T>(&self, _task: T, ctx: &T::Ctx) -> Result<Vec<T::Out>, ClusterMapError>
    where
        T: Task<Item = usize>,
    {
        check_registered::<T>();
        let ranks = self.ranks();
        let enc = |e: postcard::Error| ClusterMapError::Failed {
            rank: 0,
            index: 0,
            message: format!("encoding the task's context: {e}"),
        };
        let ctx_bytes = postcard::to_allocvec(ctx).map_err(enc)?;
        let remote: Vec<usize> = ranks.iter().copied().filter(|&r| r != 0).collect();
        self.farm.mpi(|c| {
            for &r in &remote {
                let cmd = postcard::to_allocvec(&Cmd::Call {
                    task: T::NAME.to_owned(),
                    ctx: ctx_bytes.clone(),
                    item: postcard::to_allocvec(&r).expect("a rank encodes"),
                })
                .expect("a command encodes");
                send_to(c, r, &cmd);
            }
        });
        // Rank 0's own call runs here while the others run theirs.
        let mut mine = ranks.contains(&0).then(|| catch_item(|| T::run(ctx, &0)));
        let mut replies = self
            .farm
            .mpi(|c| remote.iter().map(|&r| recv_reply(c, r)).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter();
        let mut outs = Vec::with_capacity(ranks.len());
        let mut first_fail = None;
        for &r in &ranks {
            let out: Result<T::Out, String> = if r == 0 {
                mine.take().expect("rank 0 is listed once")
            } else {
                let bytes = replies.next().expect("one reply per serving target");
                postcard::from_bytes::<Result<Vec<u8>, String>>(&bytes)
                    .map_err(|e| format!("undecodable reply: {e}"))
                    .and_then(|x| x)
                    .and_then(|b| {
                        postcard::from_bytes(&b).map_err(|e| format!("decoding the result: {e}"))
                    })
            };
            match out {
                Ok(v) => outs.push(v),
                Err(message) => {
                    first_fail.get_or_insert(ClusterMapError::Failed {
                        rank: r,
                        index: r,
                        message,
                    });
                }
            }
        }
        match first_fail {
            Some(e) => Err(e),
            None => Ok(outs),
        }
    }

    /// Sets the per-rank state `key` to `value` on every target rank (ipyparallel's push);
    /// tasks read it with [`rank_state`] and change it with [`set_rank_state`].
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] (rank 0) if `value` cannot be encoded.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// farm.direct().push("seed", &42u64).unwrap();
    /// assert_eq!(parview::cluster::rank_state::<u64>("seed"), Some(42));
    /// ```
    pub fn push<V: Serialize>(&self, key: &str, value: &V) -> Result<(), ClusterMapError> {
        let bytes = postcard::to_allocvec(value).map_err(|e| ClusterMapError::Failed {
            rank: 0,
            index: 0,
            message: format!("encoding the state {key:?}: {e}"),
        })?;
        let ranks = self.ranks();
        if ranks.contains(&0) {
            lock(rank_store()).insert(key.to_owned(), bytes.clone());
        }
        let cmd = postcard::to_allocvec(&Cmd::SetState {
            key: key.to_owned(),
            bytes,
        })
        .expect("a command encodes");
        self.farm.mpi(|c| {
            for &r in ranks.iter().filter(|&&r| r != 0) {
                send_to(c, r, &cmd);
            }
        });
        Ok(())
    }

    /// Every target rank's per-rank state `key` (ipyparallel's pull), in target order:
    /// `None` where it is unset.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] naming the first rank whose value does not decode as `V`.
    ///
    /// # Examples
    /// ```
    /// let farm = parview::cluster::Farm::start().unwrap();
    /// farm.direct().push("n", &7i32).unwrap();
    /// assert_eq!(farm.direct().pull::<i32>("n").unwrap(), vec![Some(7)]);
    /// ```
    pub fn pull<V: DeserializeOwned>(&self, key: &str) -> Result<Vec<Option<V>>, ClusterMapError> {
        let ranks = self.ranks();
        let cmd = postcard::to_allocvec(&Cmd::GetState {
            key: key.to_owned(),
        })
        .expect("a command encodes");
        let remote: Vec<usize> = ranks.iter().copied().filter(|&r| r != 0).collect();
        let mut replies = self
            .farm
            .mpi(|c| {
                for &r in &remote {
                    send_to(c, r, &cmd);
                }
                remote.iter().map(|&r| recv_reply(c, r)).collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter();
        let mut out = Vec::with_capacity(ranks.len());
        let mut first_fail = None;
        for &r in &ranks {
            let bytes: Option<Vec<u8>> = if r == 0 {
                lock(rank_store()).get(key).cloned()
            } else {
                let reply = replies.next().expect("one reply per serving target");
                postcard::from_bytes(&reply).unwrap_or(None)
            };
            match bytes.map(|b| postcard::from_bytes::<V>(&b)) {
                None => out.push(None),
                Some(Ok(v)) => out.push(Some(v)),
                Some(Err(e)) => {
                    first_fail.get_or_insert(ClusterMapError::Failed {
                        rank: r,
                        index: r,
                        message: format!("state {key:?} does not decode: {e}"),
                    });
                }
            }
        }
        match first_fail {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_compared_to_rank_0() {
        let a = || Ok::<_, String>("aa".to_string());
        assert!(check_digests(&[a(), a(), a()]).is_ok());
        match check_digests(&[a(), a(), Ok("bb".into())]) {
            Err(FarmError::BuildMismatch {
                rank: 2,
                root,
                found,
            }) => {
                assert_eq!((root.as_str(), found.as_str()), ("aa", "bb"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_digests(&[a(), Err("gone".into())]),
            Err(FarmError::BuildUnreadable { rank: 1, .. })
        ));
        let d = exe_digest().unwrap();
        assert_eq!(d.len(), 64);
        assert_eq!(exe_digest().unwrap(), d);
    }

    #[test]
    fn commands_round_trip() {
        let b = postcard::to_allocvec(&Cmd::Map {
            task: "t".into(),
            ctx: vec![1],
            range: Some((2, 5)),
        })
        .unwrap();
        match postcard::from_bytes::<Cmd>(&b).unwrap() {
            Cmd::Map { task, ctx, range } => {
                assert_eq!((task.as_str(), ctx, range), ("t", vec![1], Some((2, 5))));
            }
            _ => panic!("wrong command"),
        }
        let s: Shared<Vec<u8>> = Shared {
            id: 9,
            _value: PhantomData,
        };
        let back: Shared<Vec<u8>> =
            postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
        assert_eq!(back.id, 9);
    }
}
