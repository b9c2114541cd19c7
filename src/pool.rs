//! The pool: a handle on a set of engines, and everything a user calls on it.
//!
//! The engines themselves — deques, mailboxes, the loop that finds work, how threads wait — are
//! in `registry.rs`; the map pipeline in `map/`. This file holds what a user touches:
//! [`Pool`], [`PoolBuilder`], and **every public method of `Pool`** — building, the views
//! (`direct`, `direct_to`, `load_balanced`, `schedule`), the blocking maps (`par_map`,
//! `try_par_map`, `par_map_into`, `par_for_each`, `scatter_gather`), the reductions
//! (`par_map_reduce`, `par_reduce`, `par_sum`) and the random streams (`par_map_rng`,
//! `par_blocks_rng`). Where the work is done elsewhere (`views.rs`, `reduce.rs`, `rng.rs`),
//! the method here is a thin delegation. Exceptions, each next to its machinery: `join`/`scope`
//! (`join.rs`), `par_fold` (`map/fold.rs`), `par_chunks_mut` (`map/chunks.rs`) and the
//! early-exit forms `par_any`, `par_all`, `par_find_any`, `par_find_first` (`map/early.rs`).
//!
//! # Dropping a pool
//! Dropping a [`Pool`] marks it as shutting down and wakes every engine. Engines **drain**:
//! they finish running jobs *and* every job already queued (so no submitted work and no pending
//! [`AsyncResult`](crate::AsyncResult) is lost), then exit; `drop` joins them. If the last handle
//! is dropped on one of the pool's own engines (from inside a job), the threads are detached
//! instead of joined, since a thread cannot join itself.
//!
//! An engine exits as soon as it finds no work after the drop began, closing its mailbox
//! first (and running what got in). A job that, during that drain, addresses an engine of the
//! same pool that has already exited through a `DirectView` does not wait forever: the call
//! fails, like a call to an engine that [`Pool::resize`] removed, with a message naming the
//! engine (load-balanced and nested maps are unaffected: their caller can finish them alone).
//! Do not address engines from jobs while the pool shuts down.

use crate::error::MapError;
use crate::map::body::NoState;
use crate::map::sink::{NoSink, SliceSink};
use crate::map::{IntoMapInput, MapInput, Spec, raise};
use crate::registry::{EngineSeed, Job, Registry};
use crate::schedule::Schedule;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::registry::{ENGINE_STACK, HELP_DEPTH, MAX_NESTED_WAITS};

/// Environment variable that sets the default number of engines, like `OMP_NUM_THREADS`.
///
/// # Examples
/// ```
/// assert_eq!(parview::WORKERS_ENV, "PARVIEW_WORKERS");
/// // PARVIEW_WORKERS=4 cargo run ... gives Pool::new() four engines.
/// ```
pub const WORKERS_ENV: &str = "PARVIEW_WORKERS";

/// The most engines a pool may have (a count above it is a [`BuildError::TooManyWorkers`]).
/// Each engine is an OS thread with its own deque and mailbox.
///
/// # Examples
/// ```
/// let e = parview::Pool::builder().workers(parview::MAX_WORKERS + 1).build().unwrap_err();
/// assert!(e.to_string().contains("4097"));
/// ```
pub const MAX_WORKERS: usize = 4096;

/// Default spin window of idle engines before they sleep ([`PoolBuilder::spin`] sets another).
///
/// # Examples
/// ```
/// assert_eq!(parview::DEFAULT_SPIN.as_micros(), 200);
/// ```
pub const DEFAULT_SPIN: Duration = Duration::from_micros(200);

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `workers(0)` was asked for.
    #[error("invalid argument `workers`: a pool needs at least 1 worker, got 0")]
    ZeroWorkers,
    /// More than [`MAX_WORKERS`] engines were asked for.
    #[error("invalid argument `workers`: {requested} is more than the maximum of {max} engines")]
    TooManyWorkers {
        /// The count asked for.
        requested: usize,
        /// [`MAX_WORKERS`].
        max: usize,
    },
    /// The environment variable could not be used.
    #[error(
        "invalid environment variable {var}={value:?}: expected a whole number from 1 to {max}",
        max = MAX_WORKERS
    )]
    BadEnv {
        /// The variable's name ([`WORKERS_ENV`]).
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The OS refused to start a thread.
    #[error("could not spawn worker thread {index}: {source}")]
    Spawn {
        /// Which engine.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A pool of engines (worker threads) with work stealing, per-engine mailboxes and an idle
/// protocol that spins briefly before sleeping.
///
/// Every blocking call on a pool (or a view of it) may be made from anywhere, including from
/// inside a job of this or another pool: a waiting engine keeps running its own work, so nested
/// calls and calls that cycle through pools finish (see the crate docs, "Waiting").
///
/// Maps started from outside the pool put the calling thread to work at once; engines join
/// while work is left to share. Calls made from inside an engine (nested maps) run other
/// queued work while they wait, so they never deadlock.
///
/// # Examples
/// ```
/// use parview::Pool;
/// let pool = Pool::builder().workers(3).build().unwrap();
/// assert_eq!(pool.workers(), 3);
/// let doubled = pool.par_map(&[1, 2, 3], |x| x * 2);
/// assert_eq!(doubled, vec![2, 4, 6]);
/// ```
pub struct Pool {
    pub(crate) reg: Arc<Registry>,
    /// Engine threads and how to start more; held by a resize from start to end, so resizes
    /// run one at a time.
    threads: Mutex<Threads>,
}

/// The engine threads of a pool and what starting another one needs.
struct Threads {
    handles: Vec<JoinHandle<()>>,
    name: Box<dyn FnMut(usize) -> String + Send>,
    stack_size: usize,
}

impl Threads {
    /// Starts the thread of engine `seed.index`; the seed comes back if the OS refuses.
    fn spawn(
        &mut self,
        reg: &Arc<Registry>,
        seed: EngineSeed,
    ) -> Result<(), (EngineSeed, std::io::Error)> {
        let index = seed.index;
        let b = std::thread::Builder::new()
            .name((self.name)(index))
            .stack_size(self.stack_size);
        let r = reg.clone();
        // The seed travels through a slot so that it can come back when the spawn fails.
        let slot = Arc::new(Mutex::new(Some(seed)));
        let theirs = slot.clone();
        match b.spawn(move || {
            let seed = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(seed) = seed {
                r.run_engine(seed);
            }
        }) {
            Ok(h) => {
                self.handles.push(h);
                Ok(())
            }
            Err(e) => {
                let seed = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err((seed.expect("the thread never started"), e))
            }
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers())
            .field("spin", &self.reg.spin)
            .finish()
    }
}

/// Configures and builds a [`Pool`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let pool = parview::Pool::builder()
///     .workers(2)
///     .thread_name(|i| format!("engine-{i}"))
///     .spin(Duration::from_micros(50))
///     .build()
///     .unwrap();
/// assert_eq!(pool.workers(), 2);
/// ```
pub struct PoolBuilder {
    workers: Option<usize>,
    name: Box<dyn FnMut(usize) -> String + Send>,
    spin: Duration,
    stack_size: usize,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("spin", &self.spin)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: None,
            name: Box::new(|i| format!("parview-{i}")),
            spin: DEFAULT_SPIN,
            stack_size: crate::ENGINE_STACK,
        }
    }
}

/// The default number of engines: `PARVIEW_WORKERS` if set, else the number of logical CPUs.
///
/// # Errors
/// [`BuildError::BadEnv`] if `PARVIEW_WORKERS` is set but is not a whole number from 1 to
/// [`MAX_WORKERS`].
///
/// # Examples
/// ```
/// assert!(parview::default_workers().unwrap() >= 1);
/// ```
pub fn default_workers() -> Result<usize, BuildError> {
    match std::env::var(WORKERS_ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
            _ => Err(BuildError::BadEnv {
                var: WORKERS_ENV,
                value: v,
            }),
        },
        Err(_) => Ok(num_cpus::get().max(1)),
    }
}

impl PoolBuilder {
    /// Number of engines (default: [`default_workers`]), from 1 to [`MAX_WORKERS`]. More engines
    /// than cores is allowed.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Names engine threads (default `parview-{i}`); also called for engines that
    /// [`Pool::resize`] adds later, hence `Send`.
    pub fn thread_name(mut self, name: impl FnMut(usize) -> String + Send + 'static) -> Self {
        self.name = Box::new(name);
        self
    }

    /// How long an idle engine spins before it sleeps (default [`DEFAULT_SPIN`]). Work arriving
    /// within the window is picked up without an OS wake-up; a longer window burns more CPU
    /// while idle. `Duration::ZERO` sleeps at once.
    pub fn spin(mut self, window: Duration) -> Self {
        self.spin = window;
        self
    }

    /// Stack size of engine threads in bytes (default
    /// [`ENGINE_STACK`](crate::ENGINE_STACK), committed only as it is used).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Starts the engines.
    ///
    /// # Errors
    /// [`BuildError::ZeroWorkers`] for `workers(0)`, [`BuildError::TooManyWorkers`] above
    /// [`MAX_WORKERS`]; [`BuildError::BadEnv`] when no count was given and `PARVIEW_WORKERS` is
    /// unusable; [`BuildError::Spawn`] if a thread cannot start.
    ///
    /// # Examples
    /// ```
    /// let err = parview::Pool::builder().workers(0).build().unwrap_err();
    /// assert!(err.to_string().contains("workers"));
    /// ```
    pub fn build(self) -> Result<Pool, BuildError> {
        let n = match self.workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) if n > MAX_WORKERS => {
                return Err(BuildError::TooManyWorkers {
                    requested: n,
                    max: MAX_WORKERS,
                });
            }
            Some(n) => n,
            None => default_workers()?,
        };
        let (reg, seeds) = Registry::new(n, MAX_WORKERS, self.spin);
        let mut threads = Threads {
            handles: Vec::with_capacity(n),
            name: self.name,
            stack_size: self.stack_size,
        };
        let mut failed = None;
        for seed in seeds {
            if failed.is_some() {
                reg.unspawned(seed);
                continue;
            }
            if let Err((seed, source)) = threads.spawn(&reg, seed) {
                failed = Some((seed.index, source));
                reg.unspawned(seed);
            }
        }
        let pool = Pool {
            reg,
            threads: Mutex::new(threads),
        };
        match failed {
            // Dropping `pool` shuts down the engines started so far.
            Some((index, source)) => Err(BuildError::Spawn { index, source }),
            None => Ok(pool),
        }
    }
}

impl Pool {
    /// A pool with [`default_workers`] engines.
    ///
    /// # Panics
    /// If `PARVIEW_WORKERS` is set to something that is not a whole number >= 1 (the message
    /// names the variable and its value), or a thread cannot be spawned. Use
    /// [`Pool::builder`] to get these as a [`BuildError`] instead.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::new();
    /// assert!(pool.workers() >= 1);
    /// ```
    #[allow(clippy::new_without_default)]
    pub fn new() -> Pool {
        match Pool::builder().build() {
            Ok(p) => p,
            Err(e) => panic!("parview: {e}"),
        }
    }

    /// A builder to set the number of engines, thread names and the spin window.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.workers(), 2);
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The lazily created default pool that the free functions ([`crate::par_map`], ...) use.
    /// It lives for the whole process.
    ///
    /// # Panics
    /// On first use, like [`Pool::new`], if `PARVIEW_WORKERS` is unusable.
    ///
    /// # Examples
    /// ```
    /// let a = parview::Pool::global() as *const _;
    /// let b = parview::Pool::global() as *const _;
    /// assert_eq!(a, b);
    /// ```
    pub fn global() -> &'static Pool {
        static GLOBAL: OnceLock<Pool> = OnceLock::new();
        GLOBAL.get_or_init(Pool::new)
    }

    /// Number of engines (now: [`resize`](Self::resize) changes it).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(parview::Pool::builder().workers(5).build().unwrap().workers(), 5);
    /// ```
    pub fn workers(&self) -> usize {
        self.reg.workers()
    }

    /// The index of the engine the current thread is, if it is one of *this* pool's engines.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.current_engine(), None); // the main thread is not an engine
    /// let engines = pool.direct().apply(|_| parview::Pool::global().current_engine());
    /// assert_eq!(engines.len(), 2);
    /// ```
    pub fn current_engine(&self) -> Option<usize> {
        self.reg.current_engine()
    }

    /// Run `f` on the pool without waiting (fire and forget). A panic in `f` is caught and
    /// printed; the engine survives. For a result, use
    /// [`LoadBalancedView::submit`](crate::LoadBalancedView::submit).
    ///
    /// # Examples
    /// ```
    /// use std::sync::mpsc;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// pool.spawn(move || tx.send(6 * 7).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 42);
    /// ```
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let job = Job::Task(Box::new(move || {
            if let Err(m) = crate::unwind::catch(f) {
                eprintln!("parview: spawned task panicked: {m}");
            }
        }));
        self.reg.push_shared(std::iter::once(job));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.reg.terminate();
        if self.reg.current_engine().is_some() {
            return; // dropped from inside one of our own jobs: detach rather than self-join
        }
        let threads = self.threads.get_mut().unwrap_or_else(|e| e.into_inner());
        for h in threads.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Why [`Pool::resize`] refused or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    /// `resize(0)`: a pool keeps at least one engine.
    #[error("invalid argument `n`: a pool needs at least 1 engine, got 0")]
    Zero,
    /// More than [`MAX_WORKERS`] engines were asked for.
    #[error("invalid argument `n`: {requested} is more than the maximum of {max} engines")]
    TooMany {
        /// The count asked for.
        requested: usize,
        /// [`MAX_WORKERS`].
        max: usize,
    },
    /// The OS refused to start engine `index`'s thread: the pool has engines `0..index` now.
    #[error("could not spawn engine thread {index} (the pool has {index} engines now): {source}")]
    Spawn {
        /// Which engine (also the pool's size now).
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Pool {
    /// Sets the number of engines to `n` while the pool runs (Celery's `pool_grow`/`pool_shrink`
    /// and Ray's autoscaling as one call, like `ThreadPoolExecutor::setCorePoolSize` in Java).
    /// Engines keep their indices: growing adds engines `workers()..n`, shrinking removes
    /// engines `n..workers()`, so `pool.direct()` always targets `0..workers()`.
    ///
    /// What happens to work in flight:
    /// * **Nothing runs twice, nothing is lost.** A running chunk finishes; a map started
    ///   before the resize keeps its plan (its chunks were cut for the old size) and every
    ///   item still runs exactly once. Added engines take the next chunks of maps in flight
    ///   whose offers to help are still queued, and all later work.
    /// * **A removed engine** finishes its current job (with whatever it runs while that job
    ///   waits), runs every [`DirectView`](crate::DirectView) call already queued for it,
    ///   hands its own queued shareable work to the other engines, drops its
    ///   [`EngineState`](crate::EngineState) values (a later access to one panics naming the
    ///   engine, or is a [`ViewError::EngineRemoved`](crate::ViewError::EngineRemoved) from
    ///   the `try_` calls), and parks: its thread (no CPU while parked) is reused when a later
    ///   resize adds that index again (as a fresh engine, without the old state), and exits
    ///   when the pool is dropped.
    /// * **DirectView calls to a removed engine** are refused before anything runs (the
    ///   panicking calls panic naming the engine); a call sent at the very moment the engine
    ///   leaves fails as a panic of its items whose message names the engine. No call waits
    ///   for an engine that is gone.
    ///
    /// **Waiting.** Called from outside the pool (any thread that is not one of its engines),
    /// `resize` returns once added engines are started and removed engines have left (so their
    /// state has been dropped). Called from inside a job of this pool it does not wait for
    /// removals — the calling engine may be one of those removed, and it leaves only when its
    /// job returns — so it never deadlocks; the removals complete on their own. Resizes are
    /// serialised; the pool's count changes as soon as `resize` has readied the new engines.
    ///
    /// # Errors
    /// [`ResizeError::Zero`] for `n == 0`, [`ResizeError::TooMany`] above [`MAX_WORKERS`]
    /// (both before anything changes); [`ResizeError::Spawn`] if the OS refuses a thread (the
    /// pool then has the engines started so far).
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// let pool = Arc::new(parview::Pool::builder().workers(2).build().unwrap());
    /// let p = pool.clone();
    /// let running = std::thread::spawn(move || p.par_map(0..10_000u64, |i| i * i));
    /// pool.resize(4).unwrap(); // two more engines join the map in flight and later work
    /// assert_eq!(pool.workers(), 4);
    /// let all = pool.direct(); // engines 0..4
    /// let state = all.init(|e| e * 100);
    /// pool.resize(1).unwrap(); // engines 1..4 finish their jobs and leave
    /// assert_eq!(pool.workers(), 1);
    /// assert_eq!(all.try_pull(&state), Err(parview::ViewError::EngineRemoved { engine: 1 }));
    /// assert_eq!(pool.direct().pull(&state), vec![0]); // engine 0 kept its value
    /// assert_eq!(running.join().unwrap()[9_999], 9_999 * 9_999);
    /// assert!(matches!(pool.resize(0), Err(parview::ResizeError::Zero)));
    /// ```
    pub fn resize(&self, n: usize) -> Result<(), ResizeError> {
        if n == 0 {
            return Err(ResizeError::Zero);
        }
        if n > MAX_WORKERS {
            return Err(ResizeError::TooMany {
                requested: n,
                max: MAX_WORKERS,
            });
        }
        let removed = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            let old = self.reg.workers();
            if n > old {
                let mut seeds = self.reg.grow(n).into_iter();
                while let Some(seed) = seeds.next() {
                    if let Err((seed, source)) = threads.spawn(&self.reg, seed) {
                        let index = seed.index;
                        self.reg.unspawned(seed);
                        seeds.for_each(|s| self.reg.unspawned(s));
                        self.reg.set_active(index);
                        return Err(ResizeError::Spawn { index, source });
                    }
                }
                self.reg.set_active(n);
                return Ok(());
            }
            self.reg.shrink(n)
        };
        if removed.is_empty() || self.reg.current_engine().is_some() {
            return Ok(());
        }
        // Poll: leaving is rare and short; on an engine of another pool the wait runs that
        // pool's work meanwhile (`wait_until`), so no cycle through pools can deadlock.
        let left = || removed.clone().all(|w| !self.reg.leaving(w));
        while !left() {
            let deadline = std::time::Instant::now() + Duration::from_micros(200);
            crate::registry::wait_until(&left, Some(deadline), Duration::ZERO);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Views of a pool (views.rs has the views themselves)

impl Pool {
    /// A [`DirectView`](crate::DirectView) on every engine (ipyparallel's `rc[:]`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(3).build().unwrap();
    /// assert_eq!(pool.direct().apply(|engine| engine * 10), vec![0, 10, 20]);
    /// ```
    pub fn direct(&self) -> crate::DirectView<'_> {
        crate::DirectView::new(self, (0..self.workers()).collect())
    }

    /// A [`DirectView`](crate::DirectView) on the given engines, in the given order (ipyparallel's `rc[[0, 2]]`).
    ///
    /// # Errors
    /// [`ViewError`](crate::ViewError) for an empty list, an engine out of range, or a repeated engine.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(4).build().unwrap();
    /// let dv = pool.direct_to(&[0, 2]).unwrap();
    /// assert_eq!(dv.apply(|e| e), vec![0, 2]);
    /// assert!(pool.direct_to(&[4]).is_err());
    /// ```
    pub fn direct_to(&self, targets: &[usize]) -> Result<crate::DirectView<'_>, crate::ViewError> {
        if targets.is_empty() {
            return Err(crate::ViewError::NoTargets);
        }
        let workers = self.workers();
        let mut seen = vec![false; workers];
        for &engine in targets {
            if engine >= workers {
                return Err(crate::ViewError::NoSuchEngine { engine, workers });
            }
            if std::mem::replace(&mut seen[engine], true) {
                return Err(crate::ViewError::Duplicate { engine });
            }
        }
        Ok(crate::DirectView::new(self, targets.to_vec()))
    }

    /// A [`LoadBalancedView`](crate::LoadBalancedView) with the default schedule ([`Schedule::Adaptive`]).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced();
    /// assert_eq!(lb.map(&[1, 2, 3], |x| x * x), vec![1, 4, 9]);
    /// ```
    pub fn load_balanced(&self) -> crate::LoadBalancedView<'_> {
        crate::LoadBalancedView::new(self)
    }
}

// ---------------------------------------------------------------------------------------------
// The blocking maps on a pool

/// Checks `schedule` in a blocking map, panicking with a message that names the argument.
fn check(schedule: Schedule) {
    if let Err(e) = schedule.validate() {
        panic!("parview: {e}");
    }
}

impl Pool {
    /// The pipeline's blocking map into a fresh `Vec` on this pool, shared (load-balanced).
    pub(crate) fn map_vec<I, R, E, F>(
        &self,
        schedule: Schedule,
        input: I,
        f: F,
        tracker: Option<Arc<crate::map::Tracker>>,
    ) -> Result<Vec<R>, MapError<E>>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        schedule.validate()?;
        crate::map::map_vec(
            &self.reg,
            &Spec::shared(schedule).tracked(tracker),
            input.into_map_input(),
            NoState,
            |_: &mut (), x| f(x),
        )
    }

    /// A [`LoadBalancedView`](crate::LoadBalancedView) with `schedule`: the one way to pick a
    /// schedule, for every kind of map (`map`, `try_map`, `map_into`, `for_each`, reductions,
    /// random streams, async maps). The `par_*` methods on `Pool` use the default.
    ///
    /// # Panics
    /// If the schedule is invalid (a chunk of 0; the message names `chunk`).
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let v = pool.schedule(Schedule::Guided(4)).map(0..100u32, |i| i % 7);
    /// assert_eq!(v[99], 99 % 7);
    /// ```
    pub fn schedule(&self, schedule: Schedule) -> crate::LoadBalancedView<'_> {
        self.load_balanced().schedule(schedule)
    }

    /// Applies `f` to every item in parallel and returns the results in input order, with the
    /// default schedule ([`Schedule::Adaptive`]; [`schedule`](Self::schedule) picks another).
    ///
    /// The calling thread works on the map too; engines join while work is left to share.
    ///
    /// # Panics
    /// If `f` panics on some items, every other item still runs, then this call panics with a
    /// message naming the lowest failing index and how many items failed. The pool keeps
    /// working. Use [`try_par_map`](Self::try_par_map) or a view's `return_exceptions` to get
    /// failures as values.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let words = ["a", "bb", "ccc"];
    /// assert_eq!(pool.par_map(&words, |w| w.len()), vec![1, 2, 3]);
    /// ```
    pub fn par_map<I, R, F>(&self, input: I, f: F) -> Vec<R>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        self.sched_map(Schedule::default(), input, f)
    }

    /// The blocking map of [`par_map`](Self::par_map) and `LoadBalancedView::map`, with `schedule`.
    pub(crate) fn sched_map<I, R, F>(&self, schedule: Schedule, input: I, f: F) -> Vec<R>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        check(schedule);
        let input = input.into_map_input();
        let n = input.len();
        self.map_vec(
            schedule,
            crate::map::Passthrough(input),
            |x| Ok::<R, std::convert::Infallible>(f(x)),
            None,
        )
        .unwrap_or_else(|e| raise(e, n))
    }

    /// A fallible map: the first error by index is returned and no new chunk starts after an
    /// error; panics come back as [`MapError::Panicked`] instead of unwinding.
    ///
    /// # Errors
    /// [`MapError::Failed`] with the lowest failing index among the items that ran,
    /// [`MapError::Panicked`], or [`MapError::Schedule`] for an invalid schedule.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let parsed: Result<Vec<i32>, _> = pool.try_par_map(&["1", "2", "x"], |s| s.parse::<i32>());
    /// assert!(matches!(parsed, Err(parview::MapError::Failed { index: 2, .. })));
    /// ```
    pub fn try_par_map<I, R, E, F>(&self, input: I, f: F) -> Result<Vec<R>, MapError<E>>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        self.sched_try_map(Schedule::default(), input, f)
    }

    /// [`try_par_map`](Self::try_par_map) with `schedule`.
    pub(crate) fn sched_try_map<I, R, E, F>(
        &self,
        schedule: Schedule,
        input: I,
        f: F,
    ) -> Result<Vec<R>, MapError<E>>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        self.map_vec(schedule, input, f, None)
    }

    /// Writes `f(item i)` into `out[i]`: no output allocation, no page faults on a fresh buffer.
    ///
    /// # Panics
    /// If `out.len()` differs from the input's length (the message names `out`), if the
    /// schedule is invalid, or — after every other item ran — if `f` panicked (as
    /// [`par_map`](Self::par_map); slots of panicked items keep their old values).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let x = vec![1.0f64, 2.0, 3.0];
    /// let mut z = vec![0.0; 3];
    /// pool.par_map_into(&x, &mut z, |v| v * v);
    /// assert_eq!(z, vec![1.0, 4.0, 9.0]);
    /// ```
    pub fn par_map_into<I, R, F>(&self, input: I, out: &mut [R], f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        self.sched_map_into(Schedule::default(), input, out, f)
    }

    /// [`par_map_into`](Self::par_map_into) with `schedule`.
    pub(crate) fn sched_map_into<I, R, F>(&self, schedule: Schedule, input: I, out: &mut [R], f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        check(schedule);
        let input = input.into_map_input();
        let n = input.len();
        if out.len() != n {
            crate::map::run::release_all(&input);
            panic!(
                "parview: invalid argument `out`: its length {} differs from the input's length {n}",
                out.len()
            );
        }
        let rep = crate::map::run::run(
            &self.reg,
            &Spec::shared(schedule),
            input,
            NoState,
            |_: &mut (), x| Ok::<R, std::convert::Infallible>(f(x)),
            SliceSink(out.as_mut_ptr()),
        );
        if let Some(e) = rep.error(n) {
            raise(e, n);
        }
    }

    /// Runs `f` on every item for its side effects, with the default schedule. With another
    /// schedule: `pool.schedule(s).for_each(..)`
    /// ([`LoadBalancedView::for_each`](crate::LoadBalancedView::for_each)); over an iterator
    /// read lazily: [`LoadBalancedView::for_each_iter`](crate::LoadBalancedView::for_each_iter).
    ///
    /// # Panics
    /// As [`par_map`](Self::par_map).
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let sum = AtomicU64::new(0);
    /// pool.par_for_each(1..=100u64, |i| { sum.fetch_add(i, Ordering::Relaxed); });
    /// assert_eq!(sum.into_inner(), 5050);
    /// ```
    pub fn par_for_each<I, F>(&self, input: I, f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) + Sync,
    {
        self.sched_for_each(Schedule::default(), input, f)
    }

    /// [`par_for_each`](Self::par_for_each) with `schedule`.
    pub(crate) fn sched_for_each<I, F>(&self, schedule: Schedule, input: I, f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) + Sync,
    {
        check(schedule);
        let input = input.into_map_input();
        let n = input.len();
        let rep = crate::map::run::run(
            &self.reg,
            &Spec::shared(schedule),
            input,
            NoState,
            |_: &mut (), x| {
                f(x);
                Ok::<(), std::convert::Infallible>(())
            },
            NoSink,
        );
        if let Some(e) = rep.error(n) {
            raise(e, n);
        }
    }

    /// One contiguous slice of `data` per engine, `f(k, piece_k)` on each, one result per engine
    /// in engine order: ipyparallel's scatter + apply + gather in one call, without copies.
    /// Pieces differ in length by at most one (some are empty when `data` is shorter than the
    /// pool). The calling thread runs a piece too; see [`DirectView::scatter_gather`] to pin
    /// piece `k` to engine `k`.
    ///
    /// [`DirectView::scatter_gather`]: crate::DirectView::scatter_gather
    ///
    /// # Panics
    /// As [`par_map`](Self::par_map), with pieces as items.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(3).build().unwrap();
    /// let data: Vec<u32> = (1..=10).collect();
    /// let sums = pool.scatter_gather(&data, |_engine, piece| piece.iter().sum::<u32>());
    /// assert_eq!(sums, vec![1 + 2 + 3 + 4, 5 + 6 + 7, 8 + 9 + 10]);
    /// ```
    pub fn scatter_gather<T, R, F>(&self, data: &[T], f: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &[T]) -> R + Sync,
    {
        let p = self.workers();
        let n = data.len();
        self.sched_map(Schedule::Static, 0..p, |k| {
            f(k, &data[Schedule::static_block(n, p, k)])
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions and random streams on a pool (the machinery is in reduce.rs and rng.rs)

impl Pool {
    /// Deterministic parallel map-reduce: `map` on every item, combined with `op` by the fixed
    /// tree of [`reduce`](crate::reduce) (leaves of [`default_leaf`](crate::reduce::default_leaf)
    /// items — a function of the input length only — folded left to right, then a pairwise
    /// tree). `None` for empty input. Bitwise identical for every worker count and schedule.
    /// Inputs of fewer than 2,048 items get one leaf per item, so a reduction over a few
    /// expensive items (64 primality tests, 100 Monte-Carlo chunks) uses every engine, like
    /// OpenMP's `reduction(+:x)`. Takes any [`IntoMapInput`].
    ///
    /// # Panics
    /// As [`par_map`](Self::par_map), if `map` or `op` panics.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let v = vec![1.5f64, -2.0, 4.25];
    /// assert_eq!(pool.par_map_reduce(&v, |x| x.abs(), f64::max), Some(4.25));
    /// assert_eq!(pool.par_map_reduce(0..0u32, |i| i, |a, b| a + b), None);
    /// ```
    pub fn par_map_reduce<I, M, O, R>(&self, input: I, map: M, op: O) -> Option<R>
    where
        I: IntoMapInput,
        M: Fn(I::Item) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
        R: Send,
    {
        self.load_balanced().map_reduce(input, map, op)
    }

    /// Deterministic parallel reduction of the items themselves (cloned out of borrowed
    /// input); `None` for empty input.
    ///
    /// # Panics
    /// As [`par_map`](Self::par_map), if `op` panics.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let words = vec!["par".to_string(), "view".to_string()];
    /// let joined = pool.par_reduce(&words, |a: String, b: String| a + &b);
    /// assert_eq!(joined.as_deref(), Some("parview"));
    /// ```
    pub fn par_reduce<I, T, O>(&self, input: I, op: O) -> Option<T>
    where
        I: IntoMapInput,
        I::Item: std::borrow::Borrow<T>,
        T: Clone + Send,
        O: Fn(T, T) -> T + Sync,
    {
        self.load_balanced().reduce(input, op)
    }

    /// Deterministic parallel sum: [`Summable::ZERO`](crate::reduce::Summable::ZERO) for empty
    /// input, otherwise the fixed tree with `+`. Bitwise identical for every worker count and
    /// schedule (but not necessarily equal to `iter().sum()` for floats).
    ///
    /// # Panics
    /// On integer overflow where `+` panics (debug builds).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.par_sum::<_, u64>(1..101u64), 5050);
    /// assert_eq!(pool.par_sum::<_, u32>(1..=3u32), 6);
    /// assert_eq!(pool.par_sum::<_, f32>(&[0.5f32, 0.25]), 0.75);
    /// ```
    pub fn par_sum<I, T>(&self, input: I) -> T
    where
        I: IntoMapInput,
        I::Item: std::borrow::Borrow<T>,
        T: crate::reduce::Summable,
    {
        self.load_balanced().sum(input)
    }

    /// Ordered map over `0..n` where item `i` receives its own random stream
    /// [`rng::stream(seed, i)`](crate::rng::stream): `output[i] = f(&mut stream(seed, i), i)`.
    /// The output depends only on `seed`, `n` and `f`, never on the worker count or schedule.
    /// One stream setup per item (~80 ns); for cheap items use
    /// [`par_blocks_rng`](Self::par_blocks_rng).
    ///
    /// # Panics
    /// As [`par_map`](Self::par_map).
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule, rand::RngExt};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let a = pool.par_map_rng(1, 8, |rng, _| rng.random_range(0..100u32));
    /// let b = pool.schedule(Schedule::Static).map_rng(1, 8, |rng, _| rng.random_range(0..100u32));
    /// assert_eq!(a, b);
    /// ```
    pub fn par_map_rng<F, R>(&self, seed: u64, n: usize, f: F) -> Vec<R>
    where
        F: Fn(&mut rand_chacha::ChaCha8Rng, usize) -> R + Sync,
        R: Send,
    {
        self.load_balanced().map_rng(seed, n, f)
    }

    /// Ordered map over blocks `0..n_blocks` where block `b` receives the stream
    /// [`Streams::new(seed).for_block(b)`](crate::rng::Streams::for_block): one stream setup per
    /// block; inside `f` loop over the block's items (e.g. with
    /// [`rng::block_range`](crate::rng::block_range)).
    ///
    /// # Panics
    /// If `n_blocks > 2^63`, or as [`par_map`](Self::par_map).
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, rand::RngExt, rng::block_range};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let n: usize = 10_000;
    /// let n_blocks = n.div_ceil(parview::rng::BLOCK);
    /// let sums = pool.par_blocks_rng(3, n_blocks, |rng, b| {
    ///     block_range(b, n).map(|_| rng.random::<f64>()).sum::<f64>()
    /// });
    /// assert_eq!(sums.len(), 3);
    /// ```
    pub fn par_blocks_rng<F, R>(&self, seed: u64, n_blocks: usize, f: F) -> Vec<R>
    where
        F: Fn(&mut rand_chacha::ChaCha8Rng, usize) -> R + Sync,
        R: Send,
    {
        self.load_balanced().blocks_rng(seed, n_blocks, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn idle_engines_go_to_sleep_and_wake_for_work() {
        let pool = Pool::builder()
            .workers(3)
            .spin(Duration::from_micros(10))
            .build()
            .unwrap();
        let t = Instant::now();
        while pool.reg.sleep.sleepers() < 3 {
            assert!(t.elapsed() < Duration::from_secs(10), "engines never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Work still gets done after everyone slept.
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..10 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).unwrap());
        }
        let mut got: Vec<i32> = rx.iter().take(10).collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn bad_env_value_is_named() {
        // Only the parser: setting the real env var would race other tests.
        let e = BuildError::BadEnv {
            var: WORKERS_ENV,
            value: "two".into(),
        };
        assert!(e.to_string().contains("PARVIEW_WORKERS=\"two\""));
    }
}
