//! The pool: worker threads ("engines"), their deques and mailboxes, and how they find work.
//!
//! # Design
//! * Each engine owns a [`crossbeam_deque::Worker`] deque; others steal from it through its
//!   [`Stealer`]. Work submitted from outside the pool goes to a global [`Injector`].
//! * Each engine also has a **mailbox** (an `Injector` only it pops) for work addressed to it
//!   alone: [`DirectView`](crate::DirectView) sends slot *i* to engine *i*, and mail is never
//!   stolen.
//! * An engine looks for work in this order: its mailbox, its own deque, the injector, then the
//!   other engines' deques (starting at a rotating victim).
//! * Idle engines spin (with [`Backoff`], which yields the CPU after a few rounds) for the
//!   pool's spin window, then sleep. The protocol that makes sleeping safe is in
//!   `src/sleep.rs` (its module docs are the design note, model-checked with loom).
//! * A thread that waits on a map it started *from inside an engine* keeps running other jobs
//!   while it waits (and its own mailbox), so nested calls never deadlock, on 1 engine too.
//!
//! # Dropping a pool
//! Dropping a [`Pool`] marks it as shutting down and wakes every engine. Engines **drain**:
//! they finish running jobs *and* every job already queued (so no submitted work and no pending
//! [`AsyncResult`](crate::AsyncResult) is lost), then exit; `drop` joins them. If the last handle
//! is dropped on one of the pool's own engines (from inside a job), the threads are detached
//! instead of joined, since a thread cannot join itself.
//!
//! Known limit: an engine exits as soon as it finds no work after the drop began. A job that,
//! during that drain, addresses an engine of the same pool through a `DirectView` can find
//! that engine gone and wait forever (load-balanced and nested maps are unaffected: their
//! caller can finish them alone). Do not address engines from jobs while the pool shuts down.

use crate::map::Participate;
use crate::sleep::Sleep;
use crate::sync::{Parker, Unparker};
use crate::timeline::Lane;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::{Backoff, CachePadded};
use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable that sets the default number of engines, like `OMP_NUM_THREADS`.
pub const WORKERS_ENV: &str = "PARVIEW_WORKERS";

/// Default spin window of idle engines before they sleep.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(200);

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `workers(0)` was asked for.
    #[error("invalid argument `workers`: a pool needs at least 1 worker, got 0")]
    ZeroWorkers,
    /// The environment variable could not be used.
    #[error("invalid environment variable {var}={value:?}: expected a whole number >= 1")]
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

/// A unit of work in a queue.
pub(crate) enum Job {
    /// Join a map as a load-balancing helper (may be taken by any engine, may arrive late).
    Ticket(Arc<dyn Participate>),
    /// Run slot `k` of a map; sent to one engine's mailbox.
    Directed(Arc<dyn Participate>, usize),
    /// A boxed closure (its own panics are caught by whoever boxed it).
    Task(Box<dyn FnOnce() + Send>),
}

static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

/// The state shared by a pool's handle, its engines and its pending work.
pub(crate) struct Registry {
    id: usize,
    injector: Injector<Job>,
    stealers: Box<[Stealer<Job>]>,
    mailboxes: Box<[CachePadded<Injector<Job>>]>,
    pub(crate) sleep: Sleep,
    terminating: AtomicBool,
    spin: Duration,
}

impl Registry {
    /// This pool's unique id.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Number of engines.
    #[inline]
    pub(crate) fn workers(&self) -> usize {
        self.stealers.len()
    }

    /// Is there anything an engine `w` could run (a cheap peek, no pop)?
    fn has_work(&self, w: Option<usize>) -> bool {
        w.is_some_and(|w| !self.mailboxes[w].is_empty())
            || !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// Queue `jobs` shareable jobs: on the current engine's own deque when called from one of
    /// this pool's engines, else on the injector; then wake as many sleepers.
    pub(crate) fn push_shared(&self, jobs: impl Iterator<Item = Job>) {
        let mut count = 0;
        match WorkerCtx::current_in(self) {
            Some(ctx) => jobs.for_each(|j| {
                ctx.local.push(j);
                count += 1;
            }),
            None => jobs.for_each(|j| {
                self.injector.push(j);
                count += 1;
            }),
        }
        self.sleep.notify(count);
    }

    /// Put a job in engine `w`'s mailbox and wake it if it sleeps.
    pub(crate) fn push_directed(&self, w: usize, job: Job) {
        self.mailboxes[w].push(job);
        self.sleep.notify_one(w);
    }

    /// The engine index of the current thread, if it is one of this pool's engines.
    pub(crate) fn current_engine(&self) -> Option<usize> {
        WorkerCtx::current_in(self).map(|c| c.index)
    }

    /// The lane the current thread works in for a map on this pool.
    pub(crate) fn current_lane(&self) -> Lane {
        match self.current_engine() {
            Some(i) => Lane::Engine(i),
            None => Lane::Caller,
        }
    }

    /// An unparker that wakes the current thread when it waits in [`Registry::wait_until`].
    pub(crate) fn current_unparker(&self) -> Unparker {
        match WorkerCtx::current_in(self) {
            Some(ctx) => ctx.parker.unparker().clone(),
            None => EXTERNAL_PARKER.with(|p| p.unparker().clone()),
        }
    }

    /// Block the current thread until `done()` holds. On one of this pool's engines, run other
    /// jobs meanwhile (so nested waits never deadlock); elsewhere spin for the spin window, then
    /// park (the completer unparks the unparker from [`Registry::current_unparker`]).
    pub(crate) fn wait_until(&self, done: &dyn Fn() -> bool) {
        if let Some(ctx) = WorkerCtx::current_in(self) {
            ctx.run_until(done, false);
            return;
        }
        let start = Instant::now();
        let backoff = Backoff::new();
        while !done() {
            if start.elapsed() >= self.spin {
                EXTERNAL_PARKER.with(|p| {
                    while !done() {
                        p.park();
                    }
                });
                return;
            }
            backoff.snooze();
        }
    }
}

thread_local! {
    /// The parker of a non-engine thread that waits on a map.
    static EXTERNAL_PARKER: Parker = Parker::new();
    /// This thread's engine context, if it is an engine.
    static WORKER: OnceCell<Rc<WorkerCtx>> = const { OnceCell::new() };
}

/// What an engine thread knows about itself.
struct WorkerCtx {
    index: usize,
    reg: Arc<Registry>,
    local: Worker<Job>,
    parker: Parker,
    victim: Cell<usize>,
}

impl WorkerCtx {
    /// The current thread's engine context if it belongs to `reg`'s pool.
    fn current_in(reg: &Registry) -> Option<Rc<WorkerCtx>> {
        WORKER.with(|w| w.get().filter(|c| c.reg.id == reg.id).cloned())
    }

    fn find_work(&self) -> Option<Job> {
        let reg = &*self.reg;
        loop {
            let mut retry = false;
            match reg.mailboxes[self.index].steal() {
                Steal::Success(j) => return Some(j),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            if let Some(j) = self.local.pop() {
                return Some(j);
            }
            match reg.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(j) => return Some(j),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let p = reg.stealers.len();
            let start = self.victim.get();
            for k in 0..p {
                let v = (start + k) % p;
                if v == self.index {
                    continue;
                }
                match reg.stealers[v].steal() {
                    Steal::Success(j) => {
                        self.victim.set(v);
                        return Some(j);
                    }
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            self.victim.set((start + 1) % p);
            if !retry {
                return None;
            }
        }
    }

    fn execute(&self, job: Job) {
        let lane = Lane::Engine(self.index);
        match job {
            Job::Ticket(p) => p.join(lane),
            Job::Directed(p, slot) => p.run_slot(lane, slot),
            Job::Task(f) => {
                // Tasks catch their own panics; this only guards the engine against a bug.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                    eprintln!("parview: a task panicked outside its own guard; engine continues");
                }
            }
        }
    }

    /// Run jobs until `done()`; sleep when idle. With `exit_on_terminate`, also return once the
    /// pool is shutting down and no work is left (the engine main loop).
    fn run_until(&self, done: &dyn Fn() -> bool, exit_on_terminate: bool) {
        let reg = &*self.reg;
        let me = Some(self.index);
        let finished = || {
            done()
                || (exit_on_terminate
                    && reg.terminating.load(Ordering::Acquire)
                    && !reg.has_work(me))
        };
        'outer: loop {
            if done() {
                return;
            }
            if let Some(job) = self.find_work() {
                self.execute(job);
                continue;
            }
            if finished() {
                return;
            }
            // Spin phase.
            let start = Instant::now();
            let backoff = Backoff::new();
            loop {
                if reg.has_work(me) {
                    continue 'outer;
                }
                if finished() {
                    return;
                }
                if start.elapsed() >= reg.spin {
                    break;
                }
                backoff.snooze();
            }
            // Sleep phase (see crate::sleep for why this loses no wake-up).
            reg.sleep.prepare(self.index);
            if reg.has_work(me) || finished() {
                reg.sleep.cancel(self.index);
                continue;
            }
            self.parker.park();
            reg.sleep.cancel(self.index);
        }
    }
}

fn worker_main(ctx: Rc<WorkerCtx>) {
    let ctx = WORKER.with(|w| {
        let _ = w.set(ctx);
        w.get().expect("just set").clone()
    });
    ctx.run_until(&|| false, true);
}

/// A pool of engines (worker threads) with work stealing, per-engine mailboxes and an idle
/// protocol that spins briefly before sleeping.
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
    handles: Vec<JoinHandle<()>>,
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
    name: Box<dyn FnMut(usize) -> String>,
    spin: Duration,
    stack_size: Option<usize>,
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
            stack_size: None,
        }
    }
}

/// The default number of engines: `PARVIEW_WORKERS` if set, else the number of logical CPUs.
///
/// # Errors
/// [`BuildError::BadEnv`] if `PARVIEW_WORKERS` is set but is not a whole number >= 1.
///
/// # Examples
/// ```
/// assert!(parview::default_workers().unwrap() >= 1);
/// ```
pub fn default_workers() -> Result<usize, BuildError> {
    match std::env::var(WORKERS_ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(BuildError::BadEnv {
                var: WORKERS_ENV,
                value: v,
            }),
        },
        Err(_) => Ok(num_cpus::get().max(1)),
    }
}

impl PoolBuilder {
    /// Number of engines (default: [`default_workers`]). More engines than cores is allowed.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Names engine threads (default `parview-{i}`).
    pub fn thread_name(mut self, name: impl FnMut(usize) -> String + 'static) -> Self {
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

    /// Stack size of engine threads in bytes (default: the platform's).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the engines.
    ///
    /// # Errors
    /// [`BuildError::ZeroWorkers`] for `workers(0)`; [`BuildError::BadEnv`] when no count was
    /// given and `PARVIEW_WORKERS` is unusable; [`BuildError::Spawn`] if a thread cannot start.
    ///
    /// # Examples
    /// ```
    /// let err = parview::Pool::builder().workers(0).build().unwrap_err();
    /// assert!(err.to_string().contains("workers"));
    /// ```
    pub fn build(mut self) -> Result<Pool, BuildError> {
        let n = match self.workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) => n,
            None => default_workers()?,
        };
        let locals: Vec<Worker<Job>> = (0..n).map(|_| Worker::new_lifo()).collect();
        let parkers: Vec<Parker> = (0..n).map(|_| Parker::new()).collect();
        let reg = Arc::new(Registry {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            injector: Injector::new(),
            stealers: locals.iter().map(|w| w.stealer()).collect(),
            mailboxes: (0..n).map(|_| CachePadded::new(Injector::new())).collect(),
            sleep: Sleep::new(parkers.iter().map(|p| p.unparker().clone()).collect()),
            terminating: AtomicBool::new(false),
            spin: self.spin,
        });
        let mut pool = Pool {
            reg: reg.clone(),
            handles: Vec::with_capacity(n),
        };
        for (index, (local, parker)) in locals.into_iter().zip(parkers).enumerate() {
            let mut b = std::thread::Builder::new().name((self.name)(index));
            if let Some(s) = self.stack_size {
                b = b.stack_size(s);
            }
            let reg = reg.clone();
            // Worker<Job> and Parker are Send but not Sync: move them into the thread.
            let spawned = b.spawn(move || {
                worker_main(Rc::new(WorkerCtx {
                    index,
                    reg,
                    local,
                    parker,
                    victim: Cell::new(index + 1),
                }))
            });
            match spawned {
                Ok(h) => pool.handles.push(h),
                Err(source) => return Err(BuildError::Spawn { index, source }),
            }
        }
        Ok(pool)
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

    /// Number of engines.
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
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                eprintln!(
                    "parview: spawned task panicked: {}",
                    crate::map::panic_message(&*p)
                );
            }
        }));
        self.reg.push_shared(std::iter::once(job));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.reg.terminating.store(true, Ordering::Release);
        self.reg.sleep.wake_all();
        if self.reg.current_engine().is_some() {
            return; // dropped from inside one of our own jobs: detach rather than self-join
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
