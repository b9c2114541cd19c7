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
//! * Idle engines spin (with [`Spin`], which yields the CPU after 64 `pause`s) for the
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
//! # Engines added and removed (`Pool::resize`)
//! Design: **slots up to a capacity, a member count, and a door per mailbox.** The registry
//! has room for [`MAX_WORKERS`](crate::MAX_WORKERS) engine slots (`OnceLock`s, 16 bytes each
//! while unused); a slot — deque, mailbox, sleep slot, thread — is created the first time the
//! pool has that many engines and then kept for the registry's life, so every index ever used
//! stays valid and the engine loop still indexes plain slots. `active` (an atomic) is the
//! number of members `0..active`: what maps size their plans and tickets with, what thieves
//! scan, what shared producers wake, what `Pool::direct` targets. Indices stay dense: growing
//! adds `active..n`, shrinking removes `n..active`.
//!
//! Each slot has a `life` and a `door` (the mailbox takes mail only while the door is open;
//! both change only with the door's lock held, and a push checks the door under the same
//! lock, so a push is either queued before the door closes or refused — never queued after):
//!
//! | life | door | the engine thread | who moves it on |
//! |---|---|---|---|
//! | `EMPTY` | closed | none yet (its seed waits in the slot) | grow: open, `RUNNING`, spawn |
//! | `RUNNING` | open | main loop | shrink: `RETIRING`, `notify_one` |
//! | `RETIRING` | open, then closed by the engine | finishes its current job, then *leaves* | grow: `REBORN`; the engine: `VACANT` |
//! | `REBORN` | open | leaves, then runs again (fresh, without old state) | shrink: `RETIRING`; the engine: `RUNNING` |
//! | `VACANT` | closed | parked (no CPU), kept for a later grow | grow: open, `RUNNING`, unpark |
//!
//! **Leaving** (`WorkerCtx::leave`, on the engine itself, at depth 0 between jobs): close the
//! door unless `REBORN`; run every job in the mailbox *here* (it was addressed to this engine
//! and queued before the door closed); move its own deque to the injector and wake members for
//! it; repeat until both are empty (running mail may queue more); drop its values of every
//! live [`EngineState`](crate::EngineState) (tracked weakly by the registry); then, under the
//! door lock, `REBORN` becomes `RUNNING` (door reopened) and a closed, empty `RETIRING` becomes
//! `VACANT`; a `RETIRING` whose door is open (it was `REBORN` when it looked, removed again
//! since) goes round again. So no job is lost: shared work reaches a member, mail runs on its
//! engine or is refused at the push (the DirectView caller then fails that slot with a message
//! naming the engine instead of waiting), and values die on their own engine after the last
//! call that could use them.
//!
//! **Why the engine notices, and the fast path.** The main loop's `done` is
//! `life != RUNNING`: one load per job and per idle check, nothing else on the hot path
//! (`find_work` reads `active` instead of a slice length). A sleeping engine is woken by the
//! shrink's `notify_one(w)` after the `RETIRING` store: the same argument as for mailbox work
//! in [`crate::sleep`] (the store happens before the RMW on `state[w]`; either the engine's
//! announce comes first and the producer unparks it, or it comes after and its step 3 sees
//! `RETIRING`). A leaving engine may also have *taken* a wake-up meant for shared work it
//! will not run — claimed by a producer that still counted it a member, or by borrowing the
//! sleeper count (see [`crate::sleep`]) — so when it starts to leave and sees shared work, it
//! wakes one member in its place (the loom model `shrink_then_shared` found this lost
//! wake-up). A parked `VACANT` engine waits outside the protocol for `life != VACANT` (or
//! shutdown) with the token parker; grow stores first, then unparks.
//!
//! **Maps in flight.** A map keeps the plan it was cut with (the dispenser hands out every
//! index once whoever participates), so a resize changes *who* runs chunks, never *what*:
//! added engines take queued tickets of maps in flight and all later work; a removed engine's
//! tickets go to the injector. An engine told to leave while a job of its own waits keeps
//! helping as usual until that job returns (nested waits do not look at `life`).
//!
//! **Waiting for removals.** `Pool::resize` from outside waits (polling, helping if it is an
//! engine of another pool) until the removed engines are no longer `RETIRING`/`REBORN`; from
//! inside a job of the pool it does not wait, since the caller may be one of them.
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
    AtomicBool, AtomicUsize, Injector, Mutex, Ordering, Parker, Steal, Stealer, Unparker, Worker,
    thread_local,
};
use crossbeam_utils::CachePadded;
use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::{Arc, OnceLock, Weak};
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
    /// Static slot `slot` (pre-entered) will not run because `engine`, which it was sent to,
    /// has left the pool: fail its items with a message naming the engine, then finish.
    fn abandon(&self, engine: usize, slot: usize);
}

/// The failure of a directed slot whose engine left the pool before it ran.
pub(crate) fn removed_message(engine: usize) -> String {
    format!(
        "parview: engine {engine} was removed from the pool (Pool::resize, or the pool is \
         shutting down) before it ran this call"
    )
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

static NEXT_POOL_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// `Engine::life`: never started (its seed waits in `Engine::seed`).
pub(crate) const EMPTY: usize = 0;
/// `Engine::life`: a member of the pool, running its loop.
pub(crate) const RUNNING: usize = 1;
/// `Engine::life`: told to leave (finishes its job, runs its mail, hands its deque over).
pub(crate) const RETIRING: usize = 2;
/// `Engine::life`: told to leave and then added back before it left: it leaves (its state is
/// dropped), then runs again as a fresh engine on the same thread.
pub(crate) const REBORN: usize = 3;
/// `Engine::life`: left; its thread is parked until a resize adds it back or the pool drops.
pub(crate) const VACANT: usize = 4;

/// One engine slot: created the first time a pool has that many engines, kept (with its
/// thread) for the registry's life.
pub(crate) struct Engine {
    stealer: Stealer<Job>,
    mailbox: CachePadded<Injector<Job>>,
    /// One of [`EMPTY`], [`RUNNING`], [`RETIRING`], [`REBORN`], [`VACANT`]; written only with
    /// `door` held.
    life: AtomicUsize,
    /// Whether the mailbox takes mail. Closed by the engine itself as it leaves (then it runs
    /// what is queued); a push to a closed mailbox is refused, never queued.
    door: Mutex<bool>,
    /// The owning ends of an engine not started yet (`EMPTY`).
    seed: std::sync::Mutex<Option<EngineSeed>>,
}

/// Type-erased per-engine values ([`EngineState`](crate::EngineState)) that an engine drops
/// when it leaves the pool.
pub(crate) trait EngineValues: Send + Sync {
    /// Drops engine `w`'s value and marks it removed; `Err(message)` if its `Drop` panicked.
    fn drop_engine(&self, w: usize) -> Result<(), String>;
}

/// The state shared by a pool's handle, its engines and its pending work.
pub(crate) struct Registry {
    id: usize,
    injector: Injector<Job>,
    /// Engine slots up to [`MAX_WORKERS`](crate::MAX_WORKERS); the first `active` are the
    /// pool's members, every slot below the highest index ever started exists.
    engines: Box<[OnceLock<Box<Engine>>]>,
    /// Number of member engines (`0..active`).
    active: CachePadded<AtomicUsize>,
    pub(crate) sleep: Sleep,
    terminating: AtomicBool,
    pub(crate) spin: Duration,
    /// Live per-engine values, dropped engine by engine as engines leave.
    values: std::sync::Mutex<Vec<Weak<dyn EngineValues>>>,
}

/// What an engine thread takes with it when it starts (its deque's owning end and its parker
/// are `Send` but not `Sync`).
pub(crate) struct EngineSeed {
    pub(crate) index: usize,
    local: Worker<Job>,
    parker: Parker,
}

impl Registry {
    /// A registry for `n >= 1` engines, with room for `capacity >= n`, and the seeds of the
    /// first `n` (one per engine thread to start).
    pub(crate) fn new(
        n: usize,
        capacity: usize,
        spin: Duration,
    ) -> (Arc<Registry>, Vec<EngineSeed>) {
        let reg = Arc::new(Registry {
            id: NEXT_POOL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            injector: Injector::new(),
            engines: (0..capacity).map(|_| OnceLock::new()).collect(),
            active: CachePadded::new(AtomicUsize::new(0)),
            sleep: Sleep::new(capacity),
            terminating: AtomicBool::new(false),
            spin,
            values: std::sync::Mutex::new(Vec::new()),
        });
        let seeds = (0..n)
            .map(|w| {
                reg.create(w, RUNNING);
                reg.take_seed(w).expect("fresh slot")
            })
            .collect();
        reg.active.store(n, Ordering::Release);
        (reg, seeds)
    }

    /// Creates slot `w` (if it does not exist yet) with life `life`, its seed kept in it.
    fn create(&self, w: usize, life: usize) {
        if self.engines[w].get().is_some() {
            return;
        }
        let local = Worker::new_lifo();
        let parker = Parker::new();
        self.sleep.add(w, parker.unparker().clone());
        let engine = Engine {
            stealer: local.stealer(),
            mailbox: CachePadded::new(Injector::new()),
            life: AtomicUsize::new(life),
            door: Mutex::new(life == RUNNING),
            seed: std::sync::Mutex::new(Some(EngineSeed {
                index: w,
                local,
                parker,
            })),
        };
        let _ = self.engines[w].set(Box::new(engine));
    }

    fn take_seed(&self, w: usize) -> Option<EngineSeed> {
        self.engine(w)
            .seed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Slot `w`, which must exist (every index below `active`, and every engine started).
    #[inline]
    fn engine(&self, w: usize) -> &Engine {
        self.engines[w]
            .get()
            .expect("parview: engine slot never created")
    }

    /// This pool's unique id.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Number of engines (the members now; a resize changes it).
    #[inline]
    pub(crate) fn workers(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Whether engine `w` is a member of the pool now: below the count, and running or coming
    /// back (`REBORN`: its mailbox is open, it serves its mail once it has left).
    pub(crate) fn is_member(&self, w: usize) -> bool {
        w < self.workers()
            && self.engines[w]
                .get()
                .is_some_and(|e| matches!(e.life.load(Ordering::Acquire), RUNNING | REBORN))
    }

    /// Is there anything engine `w` could run (a cheap peek, no pop)? With `shared` false, only
    /// its mailbox counts.
    fn has_work(&self, w: usize, shared: bool) -> bool {
        !self.engine(w).mailbox.is_empty() || (shared && self.has_shared_work())
    }

    /// Is there shareable work (injector or a member's deque)?
    fn has_shared_work(&self) -> bool {
        !self.injector.is_empty() || (0..self.workers()).any(|v| !self.engine(v).stealer.is_empty())
    }

    /// Queue `jobs` shareable jobs: on the current engine's own deque when called from one of
    /// this pool's member engines, else on the injector; then wake as many sleepers.
    pub(crate) fn push_shared(&self, jobs: impl Iterator<Item = Job>) {
        let mut count = 0;
        match WorkerCtx::current_in(self).filter(|c| !c.leaving()) {
            Some(ctx) => jobs.for_each(|j| {
                ctx.local.push(j);
                count += 1;
            }),
            None => jobs.for_each(|j| {
                self.injector.push(j);
                count += 1;
            }),
        }
        self.sleep.notify(count, self.workers());
    }

    /// Put a job in engine `w`'s mailbox and wake it if it sleeps; `Err(job)` (not queued) if
    /// `w` never existed or has left the pool (its mailbox is closed).
    pub(crate) fn push_directed(&self, w: usize, job: Job) -> Result<(), Job> {
        let Some(engine) = self.engines.get(w).and_then(|e| e.get()) else {
            return Err(job);
        };
        {
            let open = engine.door.lock().unwrap();
            if !*open {
                return Err(job);
            }
            engine.mailbox.push(job);
        }
        self.sleep.notify_one(w);
        Ok(())
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

    /// Registers per-engine values to be dropped engine by engine as engines leave.
    pub(crate) fn track_values(&self, values: Weak<dyn EngineValues>) {
        let mut list = self.values.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|v| v.strong_count() > 0);
        list.push(values);
    }

    /// Drops engine `w`'s per-engine values (on `w`, as it leaves). A panicking `Drop` is
    /// reported; the other values are still dropped.
    fn drop_values_of(&self, w: usize) {
        let live: Vec<Arc<dyn EngineValues>> = {
            let mut list = self.values.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|v| v.strong_count() > 0);
            list.iter().filter_map(|v| v.upgrade()).collect()
        };
        for v in live {
            if let Err(m) = v.drop_engine(w) {
                crate::unwind::report_orphan(&format!("the EngineState value of engine {w}"), &m);
            }
            // The owner may have let go meanwhile: then this is the last reference, and the
            // other engines' values are dropped here — a panicking `Drop` must not end the
            // engine either.
            if let Err(m) = crate::unwind::catch(move || drop(v)) {
                crate::unwind::report_orphan("an EngineState released by a leaving engine", &m);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Resizing (called by `Pool::resize` with its lock held: one resize at a time)

    /// Readies engines `workers()..n` to be added; [`set_active`](Self::set_active) then makes
    /// them members. Engines that left are woken (`VACANT`) or told to come back (`REBORN`);
    /// slots never started are created and marked running, and their seeds returned: the
    /// caller starts a thread on each (or hands it back to [`unspawned`](Self::unspawned)).
    /// `n` must not exceed the capacity given to [`new`](Self::new).
    pub(crate) fn grow(&self, n: usize) -> Vec<EngineSeed> {
        let old = self.workers();
        let mut seeds = Vec::new();
        for w in old..n {
            self.create(w, EMPTY);
            let engine = self.engine(w);
            let mut open = engine.door.lock().unwrap();
            match engine.life.load(Ordering::Acquire) {
                EMPTY => {
                    *open = true;
                    engine.life.store(RUNNING, Ordering::Release);
                    drop(open);
                    seeds.extend(self.take_seed(w));
                }
                VACANT => {
                    *open = true;
                    engine.life.store(RUNNING, Ordering::Release);
                    drop(open);
                    self.sleep.unpark(w);
                }
                RETIRING | REBORN => {
                    *open = true;
                    engine.life.store(REBORN, Ordering::Release);
                }
                _ => {} // RUNNING: cannot be, slots at or past the count are not members
            }
        }
        seeds
    }

    /// Hands back the seed of an engine whose thread could not be spawned: it is `EMPTY`
    /// again. Anything sent to it meanwhile is refused (mail) or shared.
    pub(crate) fn unspawned(&self, seed: EngineSeed) {
        let w = seed.index;
        let engine = self.engine(w);
        *engine.seed.lock().unwrap_or_else(|e| e.into_inner()) = Some(seed);
        {
            let mut open = engine.door.lock().unwrap();
            *open = false;
            engine.life.store(EMPTY, Ordering::Release);
        }
        loop {
            match engine.mailbox.steal() {
                Steal::Success(Job::Directed(p, slot)) => p.abandon(w, slot),
                Steal::Success(job) => self.push_shared(std::iter::once(job)),
                Steal::Retry => {}
                Steal::Empty => break,
            }
        }
    }

    /// Sets the member count to `n` (after [`grow`](Self::grow) readied engines up to `n`),
    /// then makes each new member look at the queues once: one that went to sleep before it
    /// was a member was not in the range shared producers wake.
    pub(crate) fn set_active(&self, n: usize) {
        let old = self.active.swap(n, Ordering::AcqRel);
        for w in old..n {
            self.sleep.notify_one(w);
        }
    }

    /// Removes engines `n..workers()`: they leave as described in the module docs. Returns the
    /// removed indices.
    pub(crate) fn shrink(&self, n: usize) -> std::ops::Range<usize> {
        let old = self.workers();
        if n >= old {
            return old..old;
        }
        self.active.store(n, Ordering::Release);
        for w in n..old {
            let engine = self.engine(w);
            {
                let _open = engine.door.lock().unwrap();
                if matches!(engine.life.load(Ordering::Acquire), RUNNING | REBORN) {
                    engine.life.store(RETIRING, Ordering::Release);
                }
            }
            // Wakes `w` if it sleeps: its step 3 sees RETIRING (see the module docs).
            self.sleep.notify_one(w);
        }
        n..old
    }

    /// Whether engine `w` is still on its way out (`RETIRING` or `REBORN`).
    pub(crate) fn leaving(&self, w: usize) -> bool {
        matches!(
            self.engine(w).life.load(Ordering::Acquire),
            RETIRING | REBORN
        )
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
        let engine = self.engine(ctx.index);
        loop {
            ctx.run_until(
                &|| engine.life.load(Ordering::Acquire) != RUNNING,
                true,
                None,
            );
            if engine.life.load(Ordering::Acquire) == RUNNING {
                // The pool shut down: close the door, so that a job still draining elsewhere
                // that addresses this engine is refused instead of waiting forever, and run
                // the mail that got in before it closed.
                *engine.door.lock().unwrap() = false;
                loop {
                    match engine.mailbox.steal() {
                        Steal::Success(job) => ctx.execute(job),
                        Steal::Retry => {}
                        Steal::Empty => return,
                    }
                }
            }
            if !ctx.leave(engine) {
                return; // the pool shut down while this engine had left
            }
        }
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
            match reg.engine(self.index).mailbox.steal() {
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
                let p = reg.workers();
                let start = self.victim.get() % p;
                for k in 0..p {
                    let v = (start + k) % p;
                    if v == self.index {
                        continue;
                    }
                    match reg.engine(v).stealer.steal() {
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

    /// Whether this engine has been told to leave the pool (it takes no new shareable work
    /// onto its own deque then).
    fn leaving(&self) -> bool {
        self.reg.leaving(self.index)
    }

    /// Leaves the pool (the engine's main loop saw `life != RUNNING`): closes the mailbox,
    /// runs the mail queued before, hands its own deque to the injector, drops its per-engine
    /// values, then either runs again (`REBORN`: true) or parks as `VACANT` until a resize
    /// adds it back (true) or the pool shuts down (false). See the module docs.
    fn leave(&self, engine: &Engine) -> bool {
        let reg = &*self.reg;
        let me = self.index;
        // This engine may have taken a wake-up meant for shared work that it will not run: a
        // producer that still counted it a member claimed it, or it borrowed the sleeper count
        // (`crate::sleep`). Whatever it can see now, a member must see: wake one in its place.
        if reg.has_shared_work() {
            reg.sleep.notify(1, reg.workers());
        }
        loop {
            {
                let mut open = engine.door.lock().unwrap();
                if engine.life.load(Ordering::Acquire) == RETIRING {
                    *open = false;
                }
            }
            // Mail queued before the door closed runs here, on its engine; shareable work
            // goes back to the injector for the members. Running mail may queue more of both.
            loop {
                let mut any = false;
                loop {
                    match engine.mailbox.steal() {
                        Steal::Success(job) => {
                            self.execute(job);
                            any = true;
                        }
                        Steal::Retry => {}
                        Steal::Empty => break,
                    }
                }
                let mut moved = 0;
                while let Some(job) = self.local.pop() {
                    reg.injector.push(job);
                    moved += 1;
                }
                if moved > 0 {
                    reg.sleep.notify(moved, reg.workers());
                    any = true;
                }
                if !any {
                    break;
                }
            }
            reg.drop_values_of(me);
            let mut open = engine.door.lock().unwrap();
            match engine.life.load(Ordering::Acquire) {
                REBORN => {
                    *open = true;
                    engine.life.store(RUNNING, Ordering::Release);
                    return true;
                }
                RETIRING if !*open && engine.mailbox.is_empty() => {
                    engine.life.store(VACANT, Ordering::Release);
                    break;
                }
                _ => {} // the door was open (REBORN, then removed again): close and drain
            }
        }
        reg.sleep.cancel(me);
        // Parked outside the sleep protocol: nothing shareable is for it now; `grow` stores
        // RUNNING and then unparks it, `terminate` unparks every engine. A grow and a shrink
        // may both happen before it wakes: any life but VACANT sends it back to the loop
        // (which leaves again at once when it is RETIRING).
        loop {
            if engine.life.load(Ordering::Acquire) != VACANT {
                return true;
            }
            if reg.terminating.load(Ordering::Acquire) {
                return false;
            }
            self.parker.park();
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
            let mut pace = Spin::new();
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
                pace.snooze();
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

    /// Whether this waker, taken by [`Waker::current`] on the current thread, is still what
    /// `current` would give: the same engine, or still no engine (a thread's parker is its own
    /// for its whole life, so a `Thread` waker taken on this thread is this thread's).
    pub(crate) fn is_current(&self) -> bool {
        match (self, WorkerCtx::current()) {
            (Waker::Engine(reg, w), Some(ctx)) => Arc::ptr_eq(reg, &ctx.reg) && *w == ctx.index,
            (Waker::Thread(_), None) => true,
            _ => false,
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

/// How idle engines and waiting threads poll between checks: [`Spin::FINE_CHECKS`] checks
/// [`Spin::FINE_PAUSES`] `pause`s apart, then a `yield_now` before each check.
///
/// It replaces crossbeam's `Backoff` (1, 2, 4 … 64 `pause`s between checks, then `yield_now`),
/// whose doubling checked last after 63 and 127 `pause`s: a ticket or a result that arrived
/// ~0.5 µs into a wait (one side of a 2-item map starts that much later than the other) was
/// seen up to ~0.5 µs late, on both sides of the map. Here a check comes every 4 `pause`s and
/// the thread yields after 64 (half `Backoff`'s 127): with a caller from outside the pool there
/// are P + 1 threads on P cores, and a thread that has finished its part should give its core
/// to one that has not soon (`DirectView::apply` 5.0 → 4.4 µs; spinning 4 µs without a yield
/// doubled it). Measured in BENCHMARKS.md §14.
pub(crate) struct Spin {
    checks: u32,
}

impl Spin {
    /// Checks at the fine pace before yielding.
    pub(crate) const FINE_CHECKS: u32 = 16;
    /// `pause`s between two fine checks.
    pub(crate) const FINE_PAUSES: u32 = 4;

    pub(crate) fn new() -> Self {
        Spin { checks: 0 }
    }

    /// Wait before the next check.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if self.checks < Self::FINE_CHECKS {
            self.checks += 1;
            for _ in 0..Self::FINE_PAUSES {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
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
    let mut pace = Spin::new();
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
        pace.snooze();
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
        model_some(n, usize::MAX, expect, produce)
    }

    /// [`model`] with only engine `only` started (all of them for `usize::MAX`): a model about
    /// one engine's removal stays small enough to check.
    fn model_some(
        n: usize,
        only: usize,
        expect: usize,
        produce: fn(&Arc<Registry>, &Arc<dyn Fn() + Send + Sync>),
    ) {
        loom::model(move || {
            let (reg, seeds) = Registry::new(n, n, Duration::ZERO);
            let mut threads = Vec::new();
            for seed in seeds {
                if only != usize::MAX && seed.index != only {
                    continue;
                }
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
        model(1, 1, |reg, done| {
            reg.push_directed(0, task(done)).ok().unwrap()
        });
    }

    /// Engine 1 is removed while it may sleep; a shared job queued after must still run (on
    /// engine 0, the member left), and engine 1 must leave (the pool's shutdown joins it).
    #[test]
    fn loom_model_shrink_then_shared() {
        model(2, 1, |reg, done| {
            reg.shrink(1);
            reg.push_shared(std::iter::once(task(done)));
        });
    }

    /// Mail for engine 1 races its removal: the push is either queued before the door closes
    /// (engine 1 runs it as it leaves) or refused (the sender fails it: here, runs `done`
    /// itself) — never queued into a closed mailbox, which loom would report as a deadlock.
    /// Only engine 1 runs (engine 0 would add nothing to this race but states).
    #[test]
    fn loom_model_mail_races_removal() {
        model_some(2, 1, 1, |reg, done| {
            let sender = {
                let (reg, done) = (reg.clone(), done.clone());
                loom::thread::spawn(move || {
                    if reg.push_directed(1, task(&done)).is_err() {
                        done();
                    }
                })
            };
            reg.shrink(1);
            sender.join().unwrap();
        });
    }

    /// Engine 1 is removed and added back at once (it may still be leaving: `REBORN`, or
    /// already parked: `VACANT`); mail sent to it afterwards must run.
    #[test]
    fn loom_model_shrink_grow_then_mail() {
        model_some(2, 1, 1, |reg, done| {
            reg.shrink(1);
            assert!(reg.grow(2).is_empty());
            reg.set_active(2);
            assert!(reg.push_directed(1, task(done)).is_ok());
        });
    }

    /// The lost wake-up of issue "never hangs": a shared job may borrow the sleeper count (claim
    /// engine 0 between its flag and its count), so a mailbox job for engine 1 queued right
    /// after must not trust the count.
    #[test]
    fn loom_model_mailbox_after_shared() {
        model(2, 2, |reg, done| {
            reg.push_shared(std::iter::once(task(done)));
            assert!(reg.push_directed(1, task(done)).is_ok());
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
    let own = &reg.engine(ctx.index).stealer;
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
