//! # parview
//!
//! IPython Parallel's model — a pool of *engines*, a [`DirectView`] that addresses them one by
//! one, a [`LoadBalancedView`] that hands work to whichever engine is idle, and an
//! [`AsyncResult`] to watch it — on in-process threads, with OpenMP's loop [`Schedule`]s, and
//! no GIL, no pickling, no cluster to start. When one machine is not enough, the same calls run
//! across an MPI cluster (feature `mpi`, module `cluster`).
//!
//! ```
//! use parview::{Pool, Schedule};
//!
//! let pool = Pool::builder().workers(2).build().unwrap();
//!
//! // multiprocessing.Pool.map / rayon par_iter().map().collect(): ordered results.
//! let squares = pool.par_map(0..1000u64, |i| i * i);
//! assert_eq!(squares[999], 999 * 999);
//!
//! // ipyparallel: dview.apply on every engine; scatter, compute, gather.
//! let dv = pool.direct();
//! assert_eq!(dv.apply(|engine| engine), vec![0, 1]);
//! let partial = dv.scatter_gather(&squares, |_engine, piece| piece.iter().sum::<u64>());
//! assert_eq!(partial.iter().sum::<u64>(), squares.iter().sum::<u64>());
//!
//! // ipyparallel's LoadBalancedView with an OpenMP schedule, and an async map.
//! let lb = pool.load_balanced().schedule(Schedule::Dynamic(4));
//! let ar = lb.map_async((1..=100u64).collect::<Vec<_>>(), |x| x % 7);
//! println!("progress {:?}", ar.progress());
//! assert_eq!(ar.get().unwrap().len(), 100);
//! ```
//!
//! ## The model, side by side
//!
//! | IPython Parallel | multiprocessing / futures | OpenMP | parview |
//! |---|---|---|---|
//! | `Client()`, engines | `Pool(processes=n)` | `OMP_NUM_THREADS` | [`Pool::new`] (`PARVIEW_WORKERS`), [`Pool::builder`]`.workers(n)` |
//! | `rc[:]`, `rc[[0,2]]` | — | — | [`Pool::direct`], [`Pool::direct_to`] |
//! | `dview.apply(f)` | — | `#pragma omp parallel` | [`DirectView::apply`] |
//! | `dview.map(f, xs)` | — | `schedule(static)` | [`DirectView::map`] |
//! | `dview.scatter`/`gather`, `push`/`pull` | — | `threadprivate` | [`DirectView::scatter`], [`DirectView::gather`], [`DirectView::init`], [`DirectView::apply_with_state`], [`DirectView::pull`] |
//! | `rc.load_balanced_view()` | `Pool.map(f, xs, chunksize)` | `schedule(dynamic, c)`, `schedule(guided, m)` | [`Pool::load_balanced`]`.schedule(..)`, [`LoadBalancedView::map`] |
//! | — | `imap`, `imap_unordered` | — | [`LoadBalancedView::imap`], [`LoadBalancedView::imap_unordered`] |
//! | `view.apply_async`, `map_async` | `apply_async`, `executor.submit` | `#pragma omp task` | [`LoadBalancedView::submit`], [`LoadBalancedView::map_async`], [`DirectView::apply_async`] |
//! | `AsyncResult.ready/get/wait/progress` | `Future.done/result` | — | [`AsyncResult::ready`], [`AsyncResult::get`], [`AsyncResult::wait_timeout`], [`AsyncResult::progress`] |
//! | `ar.abort()` | `Future.cancel()` | `#pragma omp cancel` | [`AsyncResult::abort`] |
//! | `ar.wall_time`, `ar.serial_time` | — | — | [`AsyncResult::wall_time`], [`AsyncResult::serial_time`], [`timeline::Timeline`] |
//! | `return_exceptions=True` | — | — | [`LoadBalancedView::return_exceptions`] |
//! | `view.retries = n` | Ray's `max_retries` | — | [`LoadBalancedView::retries`] (failed attempts in [`timeline::Timeline::attempts`]) |
//! | finished results of an aborted map | joblib `Memory`, luigi | — | [`AsyncResult::get_partial`], [`LoadBalancedView::try_map_partial`] ([`Partial`]); [`LoadBalancedView::checkpoint`]: a log on disk, and a rerun resumes from it (recipe "abort, fix, resume" with [`Checkpoint::map_async`] and an [`AbortHandle`]: see [`Checkpoint`]) |
//! | `np.random.seed(s)` per task | — | — | [`rng::stream`], [`Pool::par_map_rng`] |
//! | `sum(dview.gather(...))` | — | `reduction(+:x)` | [`par_sum`], [`par_map_reduce`] (bitwise identical for any worker count) |
//!
//! ## Coming from rayon
//!
//! | rayon | parview |
//! |---|---|
//! | `rayon::join(a, b)` | [`join`]`(a, b)`, [`Pool::join`] |
//! | `rayon::scope(\|s\| s.spawn(..))` | [`scope`], [`Pool::scope`], [`Scope::spawn`] |
//! | `v.par_iter().map(f).collect()` | [`par_map`]`(&v, f)`, [`Pool::par_map`] |
//! | `.fold(id, f).reduce(id, r)` | [`par_fold`]`(input, id, f, r)`, [`LoadBalancedView::fold`] (not bitwise reproducible; [`par_map_reduce`] is) |
//! | `v.par_chunks_mut(c).enumerate().for_each(f)` | [`par_chunks_mut`]`(&mut v, c, f)`, [`LoadBalancedView::for_each_chunk_mut`] |
//! | `.with_min_len(c).for_each(f)` | `pool.schedule(`[`Schedule::Dynamic`]`(c)).for_each(input, f)` |
//! | `ThreadPoolBuilder::new().num_threads(n)` | [`Pool::builder`]`.workers(n)` |
//! | `iter.par_bridge().map(f)` | [`LoadBalancedView::imap_iter`] (input order) or [`LoadBalancedView::imap_unordered_iter`]: the iterator is read on the calling thread, at most [`max_in_flight`](LoadBalancedView::max_in_flight) items in flight |
//! | `iter.par_bridge().for_each(f)` | [`LoadBalancedView::for_each_iter`] |
//! | `any`, `all`, `find_any`, `find_first`, `find_map_any` | [`Pool::par_any`], [`Pool::par_all`], [`Pool::par_find_any`], [`Pool::par_find_first`], or the same names on a [`LoadBalancedView`]; they stop dispatching chunks once answered |
//!
//! ## One vocabulary
//!
//! * **Pick a schedule on a view, nowhere else.** `Pool`'s methods and the free functions use the
//!   default ([`Schedule::Adaptive`]); `pool.schedule(s)` (or `pool.load_balanced().schedule(s)`)
//!   is a [`LoadBalancedView`] whose every map — `map`, `try_map`, `map_into`, `for_each`,
//!   `map_async`, `imap`, the reductions `map_reduce`/`reduce`/`sum` and the random streams
//!   `map_rng`/`blocks_rng` — uses `s`. A [`DirectView`] is always static, one block per engine.
//!   An invalid schedule is reported by the call that uses it.
//! * **`_with_state`** means "with this engine's own value": [`DirectView::init`] creates per-engine
//!   state, [`DirectView::apply_with_state`] and [`DirectView::map_with_state`] run with `&mut` it,
//!   [`DirectView::pull`] reads it back.
//! * **`progress`** means counts: [`AsyncResult::progress`] returns `(done, total)`;
//!   `progress_bar(label)` (feature `progress`) draws a bar, on a view or an `AsyncResult`.
//! * **`try_`** forms return [`MapError`] instead of panicking; **`_into`** writes into a caller's
//!   buffer; **`_async`** returns an [`AsyncResult`] at once.
//! * **One path per item:** the core types and free functions are at the crate root; the modules
//!   [`reduce`], [`rng`] and [`timeline`] hold only what is not. [`WORKERS_ENV`] is the one name of
//!   `PARVIEW_WORKERS`.
//! * **Inputs** are any [`IntoMapInput`]: slices, `&Vec`, `&[T; N]`, owned `Vec<T>` and `[T; N]`,
//!   integer ranges, and tuples of two to four of these walked in step (zips) — for maps and
//!   reductions alike.
//!
//! ## How work runs
//!
//! * Each engine has a work-stealing deque ([crossbeam-deque]) and a mailbox for work addressed
//!   to it alone. Idle engines spin briefly, then sleep ([`PoolBuilder::spin`]); the protocol is
//!   documented in the `sleep` module and model-checked with loom.
//! * A blocking map started from outside the pool puts **the calling thread to work at once**.
//!   With the default [`Schedule::Adaptive`] and more than 256 items per engine it works alone
//!   for about a microsecond, so a large map of trivial items costs little more than the serial
//!   loop; if work is left, up to `P − 1` engines join (the caller plus them make a team of `P`,
//!   like OpenMP). Smaller maps, where one item can be a large share of the work, and explicit
//!   schedules are shared at once — except that a thread remembers what its last few adaptive
//!   maps cost per item (per closure): a map of more than `2P` items that took under a
//!   microsecond last time starts alone too, so a small map of cheap items called in a loop
//!   never wakes an engine. Items of an adaptive map must therefore not wait for one another.
//! * **Waiting never blocks an engine.** Every wait made on an engine thread — a nested map, a
//!   DirectView call, [`AsyncResult::wait`]/[`get`](AsyncResult::get)/[`wait_timeout`](AsyncResult::wait_timeout),
//!   iterating an [`Imap`] — runs that engine's own pending work (its mailbox first, then
//!   shareable work) while it waits, and an async map's waiter works on that map itself. So any
//!   nesting of views and pools that one thread per engine could finish in some serial order
//!   finishes: `A.direct → B.direct → A.direct` on one-engine pools, or a task that calls
//!   `submit(..).get()` on its own one-engine pool.
//! * **Helping is bounded.** An engine nested [`HELP_DEPTH`] waits deep takes only work
//!   it must run (its mailbox, the map it waits for), so thousands of queued tasks that each
//!   wait cannot pile up on one stack; a blocking call [`MAX_NESTED_WAITS`] deep panics
//!   with a message saying so instead of overflowing the stack. Engines get
//!   [`ENGINE_STACK`] bytes of stack by default.
//! * **Engines can be added and removed while work runs** ([`Pool::resize`], like Celery's
//!   `pool_grow`/`pool_shrink`): running chunks finish, maps in flight still run every item
//!   exactly once, added engines take the next chunks, and a removed engine runs the calls
//!   already queued for it, hands its other work over and drops its [`EngineState`] values (a
//!   later access is a [`ViewError::EngineRemoved`] or a panic naming the engine).
//!
//!   ```
//!   let pool = parview::Pool::builder().workers(2).build().unwrap();
//!   pool.resize(6).unwrap();
//!   assert_eq!(pool.par_map(0..100u32, |i| i * 2)[99], 198);
//!   pool.resize(1).unwrap();
//!   assert_eq!(pool.direct().apply(|engine| engine), vec![0]);
//!   ```
//! * [`Schedule`] cuts `0..n` into chunks: `Static` (one block per engine), `StaticChunked(c)`
//!   (round-robin), `Dynamic(c)`, `Guided(m)` (libgomp's rule) and `Adaptive` (chunks that grow
//!   while they are cheap). The cutting is in plain functions ([`Schedule::static_block`],
//!   [`Schedule::plan`]) you can test without threads.
//!
//! ## What a call costs
//!
//! Measured on the project machine (2 vCPUs of an Intel Xeon, 2 engines, 2026-12-02/03; `cargo
//! bench --bench core` and `--bench workloads`, OpenMP from `gcc -O3 -march=native -fopenmp` in
//! the same process, medians; see BENCHMARKS.md). Absolute times change with the machine; the
//! ratios are what carry over.
//!
//! * **A call** from outside the pool costs about what OpenMP's `parallel for` costs: a map of 2
//!   trivial items takes 0.37–0.48 µs with any schedule (0.29–0.47 µs called back to back
//!   millions of times; a call into a buffer allocates nothing of its own — `StaticChunked` on
//!   more than 8 engines allocates its table of per-slot cuts), OpenMP's `static` loop
//!   0.8–1.2 µs, rayon's `par_iter` 12–13 µs; 2 items of 5 µs take 6.1–6.3 µs, level with
//!   OpenMP's `static` loop doing the same work (0.98–1.01x; serial 10.2 µs);
//!   [`DirectView::apply`] on 2 engines 4.4–4.7 µs (rayon's `broadcast` 18–24 µs).
//!   The engines must be awake for that: an idle engine spins for the pool's spin window
//!   (200 µs, [`PoolBuilder::spin`]) and then sleeps, and waking a sleeping engine takes the
//!   operating system's time (several µs).
//! * **An item** costs what the closure costs: the per-item loop is a plain loop that the compiler
//!   vectorises for trivial closures (1,000 trivial items into a buffer: 0.74–0.78 µs in all —
//!   the caller runs them alone, see below — OpenMP's `static` 1.0–1.1 µs, a serial loop
//!   0.58–0.61 µs).
//!   **A chunk** costs one atomic operation on a shared cursor, plus, for `Adaptive` while
//!   chunks are still being sized, two clock reads (20–60 ns): `Dynamic(1)` over trivial items
//!   is bounded by that cursor, as OpenMP's `dynamic,1` is (2M trivial items: 0.79–0.93x
//!   OpenMP's time, about 62 ns per item against 78 — the time the cursor's cache line takes
//!   to move between cores, where one thread claiming alone needs 8 ns; a claim that finds
//!   the line contested pauses ~10 ns, which makes each move cheaper; run a few hundred items
//!   per chunk instead).
//! * **When not to split:** a map whose whole serial time is under about a microsecond gains
//!   nothing from a second engine; the default schedule notices (it times the first item and runs a
//!   short rest in one piece), and a thread remembers it per closure: called again, such a map
//!   of more than `2P` items runs on the calling thread without waking an engine (16 trivial
//!   items in a loop, 2026-12-03: 0.12 µs a call, `Static` 0.42 µs, OpenMP's `static` 0.83–0.95 µs). A
//!   large map of trivial items starts on the calling thread alone for [about a
//!   microsecond](Schedule::Adaptive) and is shared only if work is left.
//! * **Which schedule:** the default [`Schedule::Adaptive`] for anything you have not measured
//!   (level with the best schedule on 2 items and 2 items of 5 µs, the fastest on 16 and 1,000
//!   trivial items); `Static` for many items of equal cost, where one block per engine is the
//!   cheapest split; `Dynamic(c)` when item costs vary and you know a good `c`; `Guided(m)` as
//!   in OpenMP; `StaticChunked(c)` for a cyclic deal. A [`DirectView`] is always one block per
//!   engine.
//! * **Reductions** ([`par_map_reduce`], [`par_sum`]) cut the input into leaves of
//!   [`reduce::default_leaf`]`(n)` items — one leaf per item below 2,048 items, at least 1,024
//!   leaves up to 4M items — so a reduction over 2 items, 64 costly items or 100 Monte-Carlo chunks
//!   uses every engine (π as 100 chunks: 2.03x serial, OpenMP's `reduction(+)` 2.14x; the 64
//!   primes: 2.01x), and the tree (hence the bits) depends on `n` only. The tree costs a few µs per
//!   call on top of the map.
//!
//! ## Guarantees
//!
//! * Results come back in input order for every schedule and view; `imap_unordered` yields each
//!   index once.
//! * Every call into a pool returns, every item runs at most once (exactly once unless the map
//!   was stopped), and every value — input items, results, panic payloads — is dropped exactly
//!   once, whatever user code does.
//! * A panic in an item never kills an engine. Blocking calls re-raise it after every other item
//!   ran, naming the lowest failing index and how many failed; `try_` forms and
//!   [`AsyncResult::get`] return [`MapError`]; `return_exceptions` gives one `Result` per item.
//! * No user code can kill an engine or leave a call hanging: not a closure, not an `init` or a
//!   reduce op, not a `Drop` of an input, a result or a panic payload. A `Drop` that panics
//!   while parview drops the value is caught and reported as a panic of that item
//!   ([`MapError::Panicked`]; on stderr when nobody is left to tell), and every other value is
//!   still dropped.
//! * Sizes are checked, never wrapped: chunk sizes up to `usize::MAX` are clamped to the
//!   input, ranges up to `usize::MAX` items can be mapped and aborted, a map whose output cannot
//!   be allocated fails before anything runs ([`MapError::TooLarge`], or a panic naming the size
//!   on forms that do not return a `Result`), more than [`MAX_WORKERS`] engines is a
//!   [`BuildError`], and [`AsyncResult::wait_timeout`] takes any `Duration`.
//! * With [`rng`] streams keyed by item or block and the reductions in [`reduce`], results are
//!   **bitwise identical for any worker count and schedule**.
//! * No per-item heap allocation on any map path; the per-chunk path takes no lock.
//! * Dropping a [`Pool`] lets running *and queued* work finish, then joins the engines. Dropping
//!   an unfinished [`AsyncResult`] aborts its map.
//!
//! ## Features
//! * `progress`: [indicatif] progress bars ([`LoadBalancedView::progress`](crate::LoadBalancedView)).
//! * `mpi`: the `cluster` module — the same maps across ranks of an MPI job (see MPI.md): SPMD
//!   (`Cluster`, every rank runs `main`) or root-driven (`Farm` with `task!`, the program
//!   runs once and the other ranks serve).
//!
//! [crossbeam-deque]: https://docs.rs/crossbeam-deque
//! [indicatif]: https://docs.rs/indicatif
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod abort;
mod async_result;
#[cfg(feature = "mpi")]
pub mod cluster;
mod error;
mod join;
mod latch;
mod map;
mod pool;
#[cfg(feature = "progress")]
mod progress;
pub mod reduce;
mod registry;
pub mod rng;
mod schedule;
mod sleep;
mod sync;
pub mod timeline;
mod unwind;
mod views;

/// The `rand` crate parview's random streams are built on ([`rng::stream`] returns a
/// `rand_chacha::ChaCha8Rng`): use `parview::rand::RngExt` to draw from them without adding
/// a `rand` dependency of a matching version yourself.
///
/// ```
/// use parview::rand::RngExt;
/// let x: f64 = parview::rng::stream(7, 0).random();
/// assert!((0.0..1.0).contains(&x));
/// ```
pub use rand;

pub use abort::AbortHandle;
pub use async_result::{AsyncResult, Imap, ImapUnordered};
pub use error::{ItemError, MapError, Partial};
pub use join::{Scope, join, scope};
pub use map::checkpoint::{AsyncCheckpoint, Checkpoint, CheckpointError, CheckpointPartial};
pub use map::chunks::par_chunks_mut;
pub use map::fold::par_fold;
pub use map::retry::Retries;
pub use map::stream::{ImapIter, ImapUnorderedIter};
pub use map::{IntoMapInput, Timings};
pub use pool::{
    BuildError, DEFAULT_SPIN, ENGINE_STACK, HELP_DEPTH, MAX_NESTED_WAITS, MAX_WORKERS, Pool,
    PoolBuilder, ResizeError, WORKERS_ENV, default_workers,
};
pub use schedule::{Schedule, ScheduleError};
pub use views::{DirectView, EngineState, LoadBalancedView, ReturnExceptions, ViewError};

/// The pool the free functions use: [`Pool::global`].
fn current_pool() -> &'static Pool {
    Pool::global()
}

/// Applies `f` to every item on the global pool; results in input order.
///
/// # Panics
/// As [`Pool::par_map`]: after all other items ran, with the lowest failing index and the count.
///
/// # Examples
/// ```
/// let squares = parview::par_map(0..5u32, |i| i * i);
/// assert_eq!(squares, vec![0, 1, 4, 9, 16]);
/// ```
pub fn par_map<I, R, F>(input: I, f: F) -> Vec<R>
where
    I: IntoMapInput,
    F: Fn(I::Item) -> R + Sync,
    R: Send,
{
    current_pool().par_map(input, f)
}

/// [`Pool::par_map_into`] on the global pool: results written into a caller's buffer.
///
/// # Panics
/// As [`Pool::par_map_into`] (also when `out` has the wrong length; the message names `out`).
///
/// # Examples
/// ```
/// let mut out = vec![0u64; 4];
/// parview::par_map_into(0..4u64, &mut out, |i| 2 * i + 1);
/// assert_eq!(out, vec![1, 3, 5, 7]);
/// ```
pub fn par_map_into<I, R, F>(input: I, out: &mut [R], f: F)
where
    I: IntoMapInput,
    F: Fn(I::Item) -> R + Sync,
    R: Send,
{
    current_pool().par_map_into(input, out, f)
}

/// [`Pool::try_par_map`] on the global pool.
///
/// # Errors
/// As [`Pool::try_par_map`].
///
/// # Examples
/// ```
/// let r = parview::try_par_map(&["4", "x"], |s| s.parse::<u8>());
/// assert!(matches!(r, Err(parview::MapError::Failed { index: 1, .. })));
/// ```
pub fn try_par_map<I, R, E, F>(input: I, f: F) -> Result<Vec<R>, MapError<E>>
where
    I: IntoMapInput,
    F: Fn(I::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    current_pool().try_par_map(input, f)
}

/// One contiguous slice of `data` per engine of the global pool, `f(engine, piece)` on each,
/// results in engine order (see [`Pool::scatter_gather`]).
///
/// # Panics
/// As [`Pool::scatter_gather`].
///
/// # Examples
/// ```
/// let data: Vec<f64> = (0..1000).map(f64::from).collect();
/// let partial = parview::scatter_gather(&data, |_, piece| piece.iter().sum::<f64>());
/// assert_eq!(partial.len(), parview::Pool::global().workers());
/// assert_eq!(partial.iter().sum::<f64>(), 499500.0);
/// ```
pub fn scatter_gather<T, R, F>(data: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &[T]) -> R + Sync,
{
    current_pool().scatter_gather(data, f)
}

/// [`Pool::par_map_reduce`] on the global pool: deterministic map-reduce, bitwise identical
/// for any worker count.
///
/// # Panics
/// As [`Pool::par_map_reduce`].
///
/// # Examples
/// ```
/// assert_eq!(parview::par_map_reduce(0..4usize, |i| i * i, |a, b| a + b), Some(14));
/// ```
pub fn par_map_reduce<I, M, O, R>(input: I, map: M, op: O) -> Option<R>
where
    I: IntoMapInput,
    M: Fn(I::Item) -> R + Sync,
    O: Fn(R, R) -> R + Sync,
    R: Send,
{
    current_pool().par_map_reduce(input, map, op)
}

/// [`Pool::par_sum`] on the global pool: deterministic sum, bitwise identical for any worker
/// count.
///
/// # Panics
/// On integer overflow where `+` panics (debug builds).
///
/// # Examples
/// ```
/// let s: f64 = parview::par_sum(&vec![0.1, 0.2, 0.3]);
/// assert!((s - 0.6).abs() < 1e-12);
/// assert_eq!(parview::par_sum::<_, u32>(0..10u32), 45);
/// ```
pub fn par_sum<I, T>(input: I) -> T
where
    I: IntoMapInput,
    I::Item: std::borrow::Borrow<T>,
    T: reduce::Summable,
{
    current_pool().par_sum(input)
}

/// README.md's Rust blocks, compiled and run as doctests so the README stays true to the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
