//! The engines: their queues, the loop that finds and runs work, and how any thread waits.
//!
//! # Design
//! * Each engine owns a [`Worker`] deque; others steal from it through its [`Stealer`]. Work
//!   submitted from outside the pool goes to a global [`Injector`].
//! * Each engine also has a **mailbox** (an `Injector` only it pops) for work addressed to it
//!   alone: a [`DirectView`](crate::DirectView) sends slot *i* to engine *i*, and mail is never
//!   stolen.
//! * An engine looks for work in this order: its mailbox, its own deque, the injector, then the
//!   other engines' deques (starting at a rotating victim).
//! * Idle engines spin (with [`Backoff`], which yields the CPU after a few rounds) for the
//!   pool's spin window, then sleep. The protocol that makes sleeping safe is in
//!   [`crate::sleep`] (its module docs are the design note); the loom models at the end of this
//!   file check it *through this loop*, with the mailbox path.
//!
//! # Waiting
//! Every blocking wait in the crate — a map's caller waiting for its helpers, a DirectView
//! call, [`AsyncResult::wait`](crate::AsyncResult::wait), an `Imap` iterator, a call into
//! another pool — goes through [`wait_until`]:
//! * On an engine (of *any* pool) the waiting thread keeps running its own pool's work — its
//!   mailbox first, then shareable work — so a call made from inside a job never deadlocks,
//!   whatever pool it calls into: `A.direct → B.direct → A.direct` on one-engine pools
//!   finishes, because A's engine, waiting on B, still serves A's mailbox.
//! * Elsewhere it spins for the spin window, then parks. Whoever completes the awaited event
//!   unparks the parker from [`current_unparker`] (the engine's own parker on an engine).
//!
//! # Bounded helping
//! Helping nests: a job that waits runs other jobs, which may wait in turn. Two limits keep the
//! stack bounded (the answer to Java ForkJoinPool's compensation threads, without threads):
//! * Below [`HELP_DEPTH`] nested waits an engine takes any work. At that depth and deeper it
//!   serves only its mailbox (work that no other thread may run) and the work it waits for
//!   itself (an async map's waiter joins that map; a blocking map's caller works on it), and
//!   it sleeps as `MAILBOX_ONLY` so that shared work wakes another engine instead. Thousands of
//!   queued tasks that each wait on a busy engine thus nest at most `HELP_DEPTH` deep.
//! * A blocking call made [`MAX_NESTED_WAITS`] deep panics with a message that says so (the
//!   panic is an ordinary item panic of the job that made the call), instead of overflowing the
//!   stack and aborting the process. Engines have [`ENGINE_STACK`] bytes of stack by default.

use crate::sleep::Sleep;
use crate::sync::{
    AtomicBool, Injector, Ordering, Parker, Steal, Stealer, Unparker, Worker, thread_local,
};
use crossbeam_utils::{Backoff, CachePadded};
use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// Nested waits below which an engine runs any work while it waits; from this depth on, only
/// its mailbox and the work it waits for (see the crate docs, "Helping is bounded").
///
/// # Examples
/// ```
/// // A chain of submit().get() deeper than HELP_DEPTH still finishes on one engine.
/// use std::sync::Arc;
/// fn chain(pool: &Arc<parview::Pool>, d: usize) -> usize {
///     if d == 0 { return 0; }
///     let p = pool.clone();
///     pool.load_balanced().submit(move || chain(&p, d - 1)).get().unwrap() + 1
/// }
/// let pool = Arc::new(parview::Pool::builder().workers(1).build().unwrap());
/// let p = pool.clone();
/// let depth = 2 * parview::HELP_DEPTH;
/// assert_eq!(pool.direct().apply(move |_| chain(&p, depth)), vec![depth]);
/// ```
pub const HELP_DEPTH: usize = 16;

/// A blocking call made this many waits deep on one engine panics (naming the limit) instead
/// of risking a stack overflow; the panic is an ordinary item panic of the job that made it.
///
/// # Examples
/// ```
/// assert!(parview::MAX_NESTED_WAITS > parview::HELP_DEPTH);
/// ```
pub const MAX_NESTED_WAITS: usize = 128;

/// Default stack size of an engine thread (bytes): room for [`MAX_NESTED_WAITS`] nested calls
/// with moderate frames. Memory is committed only as it is touched.
/// [`PoolBuilder::stack_size`](crate::PoolBuilder::stack_size) overrides it.
///
/// # Examples
/// ```
/// assert_eq!(parview::ENGINE_STACK, 32 << 20);
/// let pool = parview::Pool::builder().workers(1).stack_size(4 << 20).build().unwrap();
/// assert_eq!(pool.par_map(0..3u8, |i| i), vec![0, 1, 2]);
/// ```
pub const ENGINE_STACK: usize = 32 << 20;

/// Something an engine can join (a ticket) or run a slot of (directed work).
pub(crate) trait Participate: Send + Sync {
    /// Join as a helper: enter, work, finish (a no-op if the map is already finished).
    fn join(&self, engine: usize);
    /// Run static slot `slot` (pre-entered), then finish.
    fn run_slot(&self, engine: usize, slot: usize);
}

/// A unit of work in a queue.
pub(crate) enum Job {
    /// Join a map as a load-balancing helper (may be taken by any engine, may arrive late).
    Ticket(Arc<dyn Participate>),
    /// Run slot `k` of a map; sent to one engine's mailbox.
    Directed(Arc<dyn Participate>, usize),
    /// A boxed closure.
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
    pub(crate) spin: Duration,
}

/// What an engine thread takes with it when it starts (its deque's owning end and its parker
/// are `Send` but not `Sync`).
pub(crate) struct EngineSeed {
    pub(crate) index: usize,
    local: Worker<Job>,
    parker: Parker,
}

impl Registry {
    /// A registry for `n >= 1` engines and their seeds (one per engine thread to start).
    pub(crate) fn new(n: usize, spin: Duration) -> (Arc<Registry>, Vec<EngineSeed>) {
        let locals: Vec<Worker<Job>> = (0..n).map(|_| Worker::new_lifo()).collect();
        let parkers: Vec<Parker> = (0..n).map(|_| Parker::new()).collect();
        let reg = Arc::new(Registry {
            id: NEXT_POOL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            injector: Injector::new(),
            stealers: locals.iter().map(|w| w.stealer()).collect(),
            mailboxes: (0..n).map(|_| CachePadded::new(Injector::new())).collect(),
            sleep: Sleep::new(parkers.iter().map(|p| p.unparker().clone()).collect()),
            terminating: AtomicBool::new(false),
            spin,
        });
        let seeds = locals
            .into_iter()
            .zip(parkers)
            .enumerate()
            .map(|(index, (local, parker))| EngineSeed {
                index,
                local,
                parker,
            })
            .collect();
        (reg, seeds)
    }

    /// This pool's unique id.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Number of engines.
    #[inline]
    pub(crate) fn workers(&self) -> usize {
        self.stealers.len()
    }

    /// Is there anything engine `w` could run (a cheap peek, no pop)? With `shared` false, only
    /// its mailbox counts.
    fn has_work(&self, w: usize, shared: bool) -> bool {
        !self.mailboxes[w].is_empty()
            || (shared
                && (!self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())))
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

    /// Marks the pool as shutting down and wakes every engine: they drain their queues and exit.
    pub(crate) fn terminate(&self) {
        self.terminating.store(true, Ordering::Release);
        self.sleep.wake_all();
    }

    /// The body of engine thread `seed.index`: runs until the pool shuts down and no work is
    /// left. Never unwinds: every job runs under `catch_unwind`.
    pub(crate) fn run_engine(self: &Arc<Self>, seed: EngineSeed) {
        let ctx = Rc::new(WorkerCtx {
            index: seed.index,
            reg: self.clone(),
            local: seed.local,
            parker: seed.parker,
            victim: Cell::new(seed.index + 1),
            depth: Cell::new(0),
        });
        WORKER.with(|w| {
            let _ = w.set(ctx.clone());
        });
        ctx.run_until(&|| false, true, None);
    }
}

thread_local! {
    /// The parker of a non-engine thread that waits.
    static EXTERNAL_PARKER: Parker = Parker::new();
}

#[cfg(not(loom))]
thread_local! {
    /// This thread's engine context, if it is an engine (`const`: no lazy-init check on the
    /// hot path of every call).
    static WORKER: OnceCell<Rc<WorkerCtx>> = const { OnceCell::new() };
}

#[cfg(loom)]
thread_local! {
    /// This thread's engine context, if it is an engine. (loom's `thread_local!` takes
    /// expressions only.)
    static WORKER: OnceCell<Rc<WorkerCtx>> = OnceCell::new();
}

/// What an engine thread knows about itself.
struct WorkerCtx {
    index: usize,
    reg: Arc<Registry>,
    local: Worker<Job>,
    parker: Parker,
    victim: Cell<usize>,
    /// How many waits deep this engine is (0 in its main loop).
    depth: Cell<usize>,
}

impl WorkerCtx {
    /// The current thread's engine context, of whatever pool.
    fn current() -> Option<Rc<WorkerCtx>> {
        WORKER.with(|w| w.get().cloned())
    }

    /// The current thread's engine context if it belongs to `reg`'s pool.
    fn current_in(reg: &Registry) -> Option<Rc<WorkerCtx>> {
        WORKER.with(|w| w.get().filter(|c| c.reg.id == reg.id).cloned())
    }

    /// The next job: mailbox first, then (with `shared`) own deque, injector, other deques.
    fn find_work(&self, shared: bool) -> Option<Job> {
        let reg = &*self.reg;
        loop {
            let mut retry = false;
            match reg.mailboxes[self.index].steal() {
                Steal::Success(j) => return Some(j),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            if shared {
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
            }
            if !retry {
                return None;
            }
        }
    }

    /// Runs one job. Nothing a job does can unwind into the engine loop: maps contain their
    /// items' panics themselves, and this guard catches the rest (a panicking `Drop` of a value
    /// an engine releases, e.g. the last reference to a map whose owner went away).
    fn execute(&self, job: Job) {
        let index = self.index;
        let r = crate::unwind::catch(move || match job {
            Job::Ticket(p) => p.join(index),
            Job::Directed(p, slot) => p.run_slot(index, slot),
            Job::Task(f) => f(),
        });
        if let Err(m) = r {
            crate::unwind::report_orphan("a job's value", &m);
        }
    }

    /// Run jobs until `done()` (true), or until `deadline` passes (false); sleep when idle.
    /// `main`: the engine's main loop, which also returns once the pool is shutting down and no
    /// work is left.
    fn run_until(&self, done: &dyn Fn() -> bool, main: bool, deadline: Option<Instant>) -> bool {
        let reg = &*self.reg;
        let me = self.index;
        let shared = self.depth.get() < HELP_DEPTH;
        let finished = || {
            done() || (main && reg.terminating.load(Ordering::Acquire) && !reg.has_work(me, true))
        };
        let expired = || deadline.is_some_and(|d| Instant::now() >= d);
        'outer: loop {
            if done() {
                return true;
            }
            if let Some(job) = self.find_work(shared) {
                self.execute(job);
                continue;
            }
            if finished() {
                return true;
            }
            if expired() {
                return false;
            }
            // Spin phase.
            let start = Instant::now();
            let backoff = Backoff::new();
            loop {
                if reg.has_work(me, shared) {
                    continue 'outer;
                }
                if finished() {
                    return true;
                }
                if expired() {
                    return false;
                }
                if start.elapsed() >= reg.spin {
                    break;
                }
                backoff.snooze();
            }
            // Sleep phase (see crate::sleep for why this loses no wake-up).
            reg.sleep.prepare(me, shared);
            if reg.has_work(me, shared) || finished() {
                reg.sleep.cancel(me);
                continue;
            }
            match deadline {
                Some(d) => self.parker.park_deadline(d),
                None => self.parker.park(),
            }
            reg.sleep.cancel(me);
        }
    }
}

/// Wakes a thread that waits in [`wait_until`], whichever kind of thread it is: an engine
/// through the sleep protocol (so an engine that announced itself asleep is taken out of the
/// count), any other thread through its own parker.
pub(crate) enum Waker {
    /// Engine `w` of this registry.
    Engine(Arc<Registry>, usize),
    /// A thread that is no engine.
    Thread(Unparker),
}

impl Waker {
    /// The waker of the current thread.
    pub(crate) fn current() -> Waker {
        match WorkerCtx::current() {
            Some(ctx) => Waker::Engine(ctx.reg.clone(), ctx.index),
            None => Waker::Thread(EXTERNAL_PARKER.with(|p| p.unparker().clone())),
        }
    }

    /// Wake the waiting thread (spurious wake-ups are harmless).
    pub(crate) fn wake(&self) {
        match self {
            Waker::Engine(reg, w) => reg.sleep.notify_one(*w),
            Waker::Thread(u) => u.unpark(),
        }
    }
}

/// Whether the current thread is an engine (of any pool).
pub(crate) fn on_engine() -> bool {
    WorkerCtx::current().is_some()
}

/// The message of a blocking call made on engine `ctx` at or past [`MAX_NESTED_WAITS`].
fn too_deep(ctx: &WorkerCtx) -> String {
    format!(
        "parview: engine {} is {} blocking calls deep (the limit is MAX_NESTED_WAITS = \
         {MAX_NESTED_WAITS}): a job waits on work that waits on work ... Restructure the \
         recursion, or make the inner calls from outside the pool",
        ctx.index,
        ctx.depth.get()
    )
}

/// `Err(message)` if a blocking call made now would be [`MAX_NESTED_WAITS`] deep or more.
pub(crate) fn check_nesting() -> Result<(), String> {
    match WorkerCtx::current() {
        Some(ctx) if ctx.depth.get() >= MAX_NESTED_WAITS => Err(too_deep(&ctx)),
        _ => Ok(()),
    }
}

/// One more level of nested waiting on the current engine, until dropped (nothing off engines).
pub(crate) struct Nested(Option<Rc<WorkerCtx>>);

impl Drop for Nested {
    fn drop(&mut self) {
        if let Some(ctx) = &self.0 {
            ctx.depth.set(ctx.depth.get() - 1);
        }
    }
}

/// Enters one more level of nested waiting, or `Err(message)` on an engine already
/// [`MAX_NESTED_WAITS`] deep (nothing changed then). Call this before anything is shared with
/// other threads.
pub(crate) fn enter_nested() -> Result<Nested, String> {
    match WorkerCtx::current() {
        Some(ctx) if ctx.depth.get() >= MAX_NESTED_WAITS => Err(too_deep(&ctx)),
        Some(ctx) => {
            ctx.depth.set(ctx.depth.get() + 1);
            Ok(Nested(Some(ctx)))
        }
        None => Ok(Nested(None)),
    }
}

/// Runs `f` as one more level of nested waiting on the current engine (see [`enter_nested`]).
///
/// # Panics
/// On an engine already [`MAX_NESTED_WAITS`] deep, before `f` runs, with a message naming the
/// limit.
pub(crate) fn nested<T>(f: impl FnOnce() -> T) -> T {
    let _level = enter_nested().unwrap_or_else(|m| panic!("{m}"));
    f()
}

/// Blocks the current thread until `done()` holds (true) or `deadline` passes (false). On an
/// engine of any pool, runs that engine's work meanwhile (see the module docs); elsewhere spins
/// for `spin`, then parks. The event behind `done` must wake the thread through
/// [`Waker::current`] taken before `done` was first checked.
pub(crate) fn wait_until(
    done: &dyn Fn() -> bool,
    deadline: Option<Instant>,
    spin: Duration,
) -> bool {
    if let Some(ctx) = WorkerCtx::current() {
        return ctx.run_until(done, false, deadline);
    }
    let start = Instant::now();
    let backoff = Backoff::new();
    while !done() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        if start.elapsed() >= spin {
            return EXTERNAL_PARKER.with(|p| {
                while !done() {
                    match deadline {
                        Some(d) => {
                            if Instant::now() >= d {
                                return false;
                            }
                            p.park_deadline(d);
                        }
                        None => p.park(),
                    }
                }
                true
            });
        }
        backoff.snooze();
    }
    true
}

/// Loom models of the wake protocol through the engine loop that ships: `Registry`'s queues
/// and mailboxes (crossbeam-deque swapped for loom queues by `crate::sync`), `run_until`,
/// `find_work`, `Sleep`. Every job must run: a lost wake-up leaves an engine parked with work
/// and the waiting main thread parked forever, which loom reports as a deadlock.
///
/// Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_model`.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::AtomicUsize as LoomUsize;

    /// Starts `n` engines on loom threads, lets `produce` queue jobs (each must call the given
    /// `done` closure), waits until `expect` jobs ran, shuts the pool down.
    fn model(n: usize, expect: usize, produce: fn(&Arc<Registry>, &Arc<dyn Fn() + Send + Sync>)) {
        loom::model(move || {
            let (reg, seeds) = Registry::new(n, Duration::ZERO);
            let mut threads = Vec::new();
            for seed in seeds {
                let reg = reg.clone();
                threads.push(loom::thread::spawn(move || reg.run_engine(seed)));
            }
            let ran = Arc::new(LoomUsize::new(0));
            let waker = Waker::current();
            let done: Arc<dyn Fn() + Send + Sync> = {
                let ran = ran.clone();
                Arc::new(move || {
                    ran.fetch_add(1, Ordering::AcqRel);
                    waker.wake();
                })
            };
            produce(&reg, &done);
            let ok = wait_until(
                &|| ran.load(Ordering::Acquire) == expect,
                None,
                Duration::ZERO,
            );
            assert!(ok);
            reg.terminate();
            for t in threads {
                t.join().unwrap();
            }
        });
    }

    fn task(done: &Arc<dyn Fn() + Send + Sync>) -> Job {
        let done = done.clone();
        Job::Task(Box::new(move || done()))
    }

    /// One engine; a shared job races the engine's way to sleep.
    #[test]
    fn loom_model_shared_one_engine() {
        model(1, 1, |reg, done| {
            reg.push_shared(std::iter::once(task(done)))
        });
    }

    /// Two engines, one shared job: the producer must wake an engine that really sleeps.
    #[test]
    fn loom_model_shared_two_engines() {
        model(2, 1, |reg, done| {
            reg.push_shared(std::iter::once(task(done)))
        });
    }

    /// One engine, a mailbox job: the directed path.
    #[test]
    fn loom_model_mailbox_one_engine() {
        model(1, 1, |reg, done| reg.push_directed(0, task(done)));
    }

    /// The lost wake-up of issue "never hangs": a shared job may borrow the sleeper count (claim
    /// engine 0 between its flag and its count), so a mailbox job for engine 1 queued right
    /// after must not trust the count.
    #[test]
    fn loom_model_mailbox_after_shared() {
        model(2, 2, |reg, done| {
            reg.push_shared(std::iter::once(task(done)));
            reg.push_directed(1, task(done));
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting for work this thread queued itself (`join`'s second half, a scope's tasks)

/// One more level of nested waiting on the current engine whatever the depth: for a wait that
/// cannot be refused because its work is already shared (a join or scope waiting for a thief).
/// Past [`HELP_DEPTH`] such a wait still serves the engine's mailbox and its own deque only.
pub(crate) fn enter_nested_anyway() -> Nested {
    let ctx = WorkerCtx::current();
    if let Some(c) = &ctx {
        c.depth.set(c.depth.get() + 1);
    }
    Nested(ctx)
}

/// On one of `reg`'s engines: pops the engine's own deque, newest first, until a job for which
/// `mine` holds (returned, not run), the deque is empty, or `stop()` holds. Jobs popped on the
/// way were queued after the one sought, by work this engine ran since; they are run here.
/// `None` at once on any other thread.
pub(crate) fn take_own(
    reg: &Registry,
    mine: &dyn Fn(&Job) -> bool,
    stop: &dyn Fn() -> bool,
) -> Option<Job> {
    let ctx = WorkerCtx::current_in(reg)?;
    while !stop() {
        let job = ctx.local.pop()?;
        if mine(&job) {
            return Some(job);
        }
        ctx.execute(job);
    }
    None
}

/// Waits until `done()` for work the current thread queued on `reg` itself (a join's second
/// half, a scope's tasks). On one of `reg`'s engines, the jobs of its own deque run first, at
/// any nesting depth — they may be the very work `done` waits for, and no other engine may be
/// free to steal them (a one-engine pool) — then it waits one level deeper as [`wait_until`]
/// does (helping), coming back whenever its own deque gets work again. Elsewhere it is
/// [`wait_until`]. Whoever makes `done` true must wake a [`Waker::current`] taken on this
/// thread before the work was queued.
pub(crate) fn wait_own(reg: &Registry, done: &dyn Fn() -> bool) {
    let Some(ctx) = WorkerCtx::current_in(reg) else {
        let _level = enter_nested_anyway();
        wait_until(done, None, reg.spin);
        return;
    };
    let own = &reg.stealers[ctx.index];
    loop {
        while !done() {
            match ctx.local.pop() {
                Some(job) => ctx.execute(job),
                None => break,
            }
        }
        if done() {
            return;
        }
        let _level = enter_nested_anyway();
        // Only this thread pushes to its own deque, so `!own.is_empty()` cannot become true
        // while it sleeps: no wake-up is needed for it.
        ctx.run_until(&|| done() || !own.is_empty(), false, None);
    }
}

/// Wakes engine `w` of the pool the current thread is an engine of (a thief telling the
/// engine it stole from that its job is done; no reference count is touched). Nothing on
/// other threads.
pub(crate) fn wake_sibling(w: usize) {
    if let Some(ctx) = WorkerCtx::current() {
        ctx.reg.sleep.notify_one(w);
    }
}
