//! Fork-join on a pool: [`Pool::join`] and [`Pool::scope`] (rayon's `join` and `scope`,
//! OpenMP's `task`/`taskwait`), and the free functions [`join`] and [`scope`] on the global
//! pool.
//!
//! # Design
//! * **join(a, b)** on an engine of the pool pushes `b` as a ticket on the engine's own deque
//!   (LIFO) and runs `a` itself. Then it takes `b` back: it pops its own deque (running whatever `a` left above `b`) until
//!   it finds `b`'s ticket. Whoever *claims* `b` first (one atomic swap) runs it: the caller
//!   inline, or an engine that stole the ticket. If a thief has it, the caller waits for `b`'s
//!   `done` flag through [`registry::wait_own`]: it runs its own deque's jobs (at any depth), then
//!   other work as every wait does. The closure and its result stay on the caller's stack; the
//!   ticket (one small `Arc` per join) holds a pointer to them that only the claimer uses.
//!   From any other thread the whole join is queued as one such ticket (on the injector) for
//!   an engine to run, and the caller waits: like rayon, the pool's engines are the team.
//! * **scope(op)** runs `op` on the caller; each [`Scope::spawn`] boxes its closure and queues
//!   it (own deque on an engine, else the injector). A counter of pending tasks (the `op`
//!   itself counts as one) is decremented by every task as its very last action; the thread
//!   that brings it to zero sets the scope's latch. The caller waits like join's caller.
//!
//! # Guarantees
//! * Both halves of a join, and every task of a scope (including tasks spawned by tasks), have
//!   finished before the call returns or unwinds: a panic is caught, kept, and re-raised
//!   with its original payload only then. `a`'s panic wins over `b`'s; `op`'s over its
//!   tasks'; between tasks, the first caught wins. Other payloads are dropped safely.
//! * No deadlock when nested, on any pool size: a join's caller can always run `b` itself (it
//!   claims `b` when it finds it on its own deque, or when no thief has claimed it yet), a
//!   waiting engine runs its own deque's jobs at any depth, and a task a thief holds does not
//!   depend on the waiting engine. Waits count as nested waits ([`HELP_DEPTH`]); they are never
//!   refused (the work is already shared), so a join never panics for depth.
//!
//! [`HELP_DEPTH`]: crate::HELP_DEPTH

use crate::latch::Latch;
use crate::pool::Pool;
use crate::registry::{self, Job, Participate, Registry, Waker};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use std::any::Any;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// A panic's payload, kept until it is re-raised.
type Payload = Box<dyn Any + Send>;

// ---------------------------------------------------------------------------------------------
// join

/// The second half of a join, on the caller's stack: the closure until it runs, then its
/// outcome.
struct StackJob<B, RB> {
    func: UnsafeCell<Option<B>>,
    result: UnsafeCell<Option<Result<RB, Payload>>>,
}

/// A [`StackJob`] with its types erased.
trait RunOnce: Sync {
    /// Runs the closure (a panic is caught and kept as the outcome).
    ///
    /// # Safety
    /// Called at most once, by the one thread that claimed the job, while the job is alive;
    /// nobody reads the outcome until this call has returned and its writes are visible.
    unsafe fn run(&self);
}

// SAFETY: the cells are accessed by one thread at a time: the claimer (exclusive through the
// ticket's claim swap) while it runs, then the owner after the run is published (by `done`,
// or on its own thread). `B` is moved to and run on the claimer's thread, `RB` moved back: both
// `Send`.
unsafe impl<B: Send, RB: Send> Sync for StackJob<B, RB> {}

impl<B: FnOnce() -> RB + Send, RB: Send> RunOnce for StackJob<B, RB> {
    unsafe fn run(&self) {
        // SAFETY: the claimer is the only thread touching the cells (function contract).
        let f = unsafe { (*self.func.get()).take() };
        if let Some(f) = f {
            let r = panic::catch_unwind(AssertUnwindSafe(f));
            // SAFETY: as above; the previous value is `None` (nothing to drop).
            unsafe { *self.result.get() = Some(r) };
        }
    }
}

/// Who waits for a join's second half.
enum Waiter {
    /// Engine `w` of the pool the ticket was queued on: only that pool's engines can steal
    /// the ticket, so the thief wakes `w` through its own pool (no reference count to touch
    /// per join).
    Sibling(usize),
    /// Any other thread.
    Other(Waker),
}

/// The shared face of a join's second half: queued as a ticket, claimed by exactly one thread.
struct JoinTicket {
    claimed: AtomicBool,
    /// Set (Release) by a thief after it ran the job; the caller's wait ends on it.
    done: AtomicBool,
    waiter: Waiter,
    /// Lifetime-erased pointer to the caller's [`StackJob`].
    job: *const (dyn RunOnce + 'static),
}

// SAFETY: `job` points to a `dyn RunOnce`, which is `Sync`; it is dereferenced only by the
// thread that won `claim`, and the caller does not return (the job stays alive) until that
// thread has set `done` — or it won the claim itself. The other fields are atomics and a
// waker.
unsafe impl Send for JoinTicket {}
// SAFETY: as above.
unsafe impl Sync for JoinTicket {}

impl JoinTicket {
    /// A ticket for `job`, with `job`'s lifetime erased.
    ///
    /// # Safety
    /// `job` stays alive (its owner does not return or unwind past it) until the ticket's
    /// claimer is done with it: the owner either claims the ticket itself or waits for `done`.
    unsafe fn new(job: &(dyn RunOnce + '_), waiter: Waiter) -> Arc<JoinTicket> {
        let job: *const (dyn RunOnce + '_) = job;
        // SAFETY: only the lifetime is erased; the pointer is dereferenced by the claimer only,
        // while `job` is alive (function contract).
        let job: *const (dyn RunOnce + 'static) = unsafe { std::mem::transmute(job) };
        Arc::new(JoinTicket {
            claimed: AtomicBool::new(false),
            done: AtomicBool::new(false),
            waiter,
            job,
        })
    }

    /// True for exactly one caller: the thread that runs the job.
    fn claim(&self) -> bool {
        !self.claimed.load(Ordering::Relaxed) && !self.claimed.swap(true, Ordering::AcqRel)
    }
}

impl Participate for JoinTicket {
    fn join(&self, _engine: usize) {
        if self.claim() {
            // SAFETY: we won the claim, so the caller waits for `done` and the job is alive.
            unsafe { (*self.job).run() };
            self.done.store(true, Ordering::Release);
            // The caller may return as soon as it sees `done`; the ticket itself stays alive
            // (this job holds an `Arc` of it), and the waker was copied out of nothing it owns.
            match &self.waiter {
                Waiter::Sibling(w) => registry::wake_sibling(*w),
                Waiter::Other(waker) => waker.wake(),
            }
        }
    }

    fn run_slot(&self, engine: usize, _slot: usize) {
        self.join(engine);
    }

    fn abandon(&self, engine: usize, _slot: usize) {
        // Join tickets are shareable, never mail; were one refused, any thread may run it.
        self.join(engine);
    }
}

/// A join called from outside the pool: the whole join is queued as one job for an engine
/// (where its halves can be stolen and taken back cheaply) and this thread waits, so the
/// pool's `P` engines do the work with no `P + 1`-th thread competing for their cores — the
/// team-of-`P` rule of maps. Measured on 2 cores (quicksort of 1M and 5M i64, medians of 15,
/// six runs): this path 1.00x rayon's time on average; the caller running `a` itself with
/// `b` on the injector 0.99x, with single runs down to 0.94x.
fn join_cold<A, B, RA, RB>(reg: &Registry, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job = StackJob {
        func: UnsafeCell::new(Some(move || join_in(reg, a, b))),
        result: UnsafeCell::new(None),
    };
    // SAFETY: the ticket is claimed and run by an engine (this thread never claims it) and
    // this function waits for its `done` before `job` is dropped.
    let ticket = unsafe { JoinTicket::new(&job, Waiter::Other(Waker::current())) };
    let shared: Arc<dyn Participate> = ticket.clone();
    reg.push_shared(std::iter::once(Job::Ticket(shared)));
    registry::wait_own(reg, &|| ticket.done.load(Ordering::Acquire));
    match job.result.into_inner().expect("an engine ran the join") {
        Ok(v) => v,
        Err(p) => panic::resume_unwind(p),
    }
}

/// `join` on `reg`: see the module docs.
fn join_in<A, B, RA, RB>(reg: &Registry, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job = StackJob {
        func: UnsafeCell::new(Some(b)),
        result: UnsafeCell::new(None),
    };
    let waiter = match reg.current_engine() {
        Some(w) => Waiter::Sibling(w),
        None => Waiter::Other(Waker::current()),
    };
    // SAFETY: this function does not return (so `job` is not dropped) before the claimer is
    // done: it either claims the job itself or waits for the thief's `done`. Nothing between
    // the push and the wait can unwind: `a` runs under `catch_unwind`, and jobs run while
    // taking `b` back are contained by the engine's `execute`.
    let ticket = unsafe { JoinTicket::new(&job, waiter) };
    let shared: Arc<dyn Participate> = ticket.clone();
    reg.push_shared(std::iter::once(Job::Ticket(shared)));

    let ra = panic::catch_unwind(AssertUnwindSafe(a));

    // Take `b` back from our own deque if nobody stole it.
    let key = Arc::as_ptr(&ticket).cast::<()>();
    let mine = |j: &Job| matches!(j, Job::Ticket(p) if Arc::as_ptr(p).cast::<()>() == key);
    let found = registry::take_own(reg, &mine, &|| ticket.claimed.load(Ordering::Acquire));
    if ticket.claim() {
        // SAFETY: we won the claim; `job` lives on this stack.
        unsafe { job.run() };
    } else {
        registry::wait_own(reg, &|| ticket.done.load(Ordering::Acquire));
    }
    drop(found);
    let rb = job
        .result
        .into_inner()
        .expect("the claimer ran the job to its end");
    match (ra, rb) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(p), rb) => {
            match rb {
                Ok(v) => drop_quietly(v, "join's second result"),
                Err(q) => crate::unwind::drop_payload(q),
            }
            panic::resume_unwind(p)
        }
        (Ok(ra), Err(q)) => {
            drop_quietly(ra, "join's first result");
            panic::resume_unwind(q)
        }
    }
}

/// Drops a value whose owner is about to re-raise another panic; a panicking `Drop` is
/// reported on stderr (a second unwind would abort).
fn drop_quietly<T>(v: T, what: &str) {
    if let Err(m) = crate::unwind::drop_caught(v) {
        crate::unwind::report_orphan(what, &m);
    }
}

impl Pool {
    /// Runs `a` and `b`, potentially in parallel, and returns both results (rayon's `join`).
    ///
    /// On an engine of this pool (inside a map, a task, another join), the engine runs `a`
    /// itself while `b` waits on its own deque to be stolen by an idle engine; then it takes
    /// `b` back and runs it, or — if a thief has it — runs other work until `b` is done.
    /// Recursive joins are work-stealing divide and conquer, and nested joins never
    /// deadlock, on any pool size. From any other thread, the whole join is handed to an
    /// engine and the caller waits (parks) until it is done, as with rayon: the pool's
    /// engines are the team, and no extra thread competes with them for cores.
    ///
    /// `a` and `b` *may* run in parallel, never must: they can run one after the other on one
    /// thread (on a one-engine pool they always do), so neither may wait for the other.
    ///
    /// # Panics
    /// If `a` or `b` panics, the other one still runs to its end; then the panic is re-raised
    /// with its original payload (`a`'s if both panicked; the other payload and result are
    /// dropped). The engines survive.
    ///
    /// # Examples
    /// ```
    /// fn sum(pool: &parview::Pool, v: &[u64]) -> u64 {
    ///     if v.len() <= 1024 {
    ///         return v.iter().sum();
    ///     }
    ///     let (l, r) = v.split_at(v.len() / 2);
    ///     let (a, b) = pool.join(|| sum(pool, l), || sum(pool, r));
    ///     a + b
    /// }
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let v: Vec<u64> = (0..100_000).collect();
    /// assert_eq!(sum(&pool, &v), 100_000 * 99_999 / 2);
    /// ```
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        if self.reg.current_engine().is_none() {
            return join_cold(&self.reg, a, b);
        }
        join_in(&self.reg, a, b)
    }

    /// Creates a scope in which tasks that borrow from outside it can be spawned
    /// ([`Scope::spawn`]); returns `op`'s result once every task — including tasks spawned by
    /// tasks — has finished (rayon's `scope`, `std::thread::scope` on the pool's engines).
    ///
    /// The calling thread runs `op`; tasks go to the pool. On an engine of this pool, the
    /// waiting caller runs tasks it spawned itself first, then any other work; from outside
    /// the pool it parks until the engines are done.
    ///
    /// # Panics
    /// After every task has finished, if `op` or a task panicked: the panic is re-raised with
    /// its original payload (`op`'s first, else the first task panic caught; the others are
    /// dropped). The engines survive.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let words = vec!["a", "bb", "ccc"];
    /// let total = AtomicUsize::new(0);
    /// pool.scope(|s| {
    ///     for w in &words {
    ///         let total = &total;
    ///         s.spawn(move |_| { total.fetch_add(w.len(), Ordering::Relaxed); });
    ///     }
    /// });
    /// assert_eq!(total.into_inner(), 6);
    /// ```
    pub fn scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'scope>) -> R + Send,
        R: Send,
    {
        let scope = Scope {
            reg: self.reg.clone(),
            shared: Arc::new(ScopeShared {
                pending: AtomicUsize::new(1),
                latch: Latch::new(Waker::current()),
                panic: Mutex::new(None),
            }),
            _marker: PhantomData,
        };
        let r = panic::catch_unwind(AssertUnwindSafe(|| op(&scope)));
        // `op`'s own count; the last one out sets the latch.
        if scope.shared.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            registry::wait_own(&self.reg, &|| scope.shared.latch.probe());
        }
        let task_panic = scope
            .shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match (r, task_panic) {
            (Ok(v), None) => v,
            (Err(p), q) => {
                if let Some(q) = q {
                    crate::unwind::drop_payload(q);
                }
                panic::resume_unwind(p)
            }
            (Ok(v), Some(q)) => {
                drop_quietly(v, "a scope's result");
                panic::resume_unwind(q)
            }
        }
    }
}

/// [`Pool::join`] on the global pool ([`Pool::global`]): runs `a` and `b`, potentially in
/// parallel, and returns both results.
///
/// # Panics
/// As [`Pool::join`]: after both ran, with the original payload (`a`'s first).
///
/// # Examples
/// ```
/// fn fib(n: u32) -> u64 {
///     if n < 20 {
///         return (1..=n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0;
///     }
///     let (a, b) = parview::join(|| fib(n - 1), || fib(n - 2));
///     a + b
/// }
/// assert_eq!(fib(25), 75_025);
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    Pool::global().join(a, b)
}

/// [`Pool::scope`] on the global pool ([`Pool::global`]).
///
/// # Panics
/// As [`Pool::scope`]: after every task finished, with the original payload.
///
/// # Examples
/// ```
/// let mut halves = [vec![3, 1, 2], vec![9, 7, 8]];
/// let (left, right) = halves.split_at_mut(1);
/// parview::scope(|s| {
///     s.spawn(|_| left[0].sort());
///     s.spawn(|_| right[0].sort());
/// });
/// assert_eq!(halves, [vec![1, 2, 3], vec![7, 8, 9]]);
/// ```
pub fn scope<'scope, OP, R>(op: OP) -> R
where
    OP: FnOnce(&Scope<'scope>) -> R + Send,
    R: Send,
{
    Pool::global().scope(op)
}

// ---------------------------------------------------------------------------------------------
// scope

/// What a scope's caller and tasks share: the pending count, the latch, the first task panic.
struct ScopeShared {
    /// Tasks not finished yet, plus one for `op` until it returns.
    pending: AtomicUsize,
    latch: Latch,
    panic: Mutex<Option<Payload>>,
}

impl ScopeShared {
    /// One task (or `op`) is done; the last one out wakes the caller.
    fn complete(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.latch.set();
        }
    }

    /// Keeps the first task panic; later ones are dropped.
    fn panicked(&self, p: Payload) {
        let extra = {
            let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(p);
                None
            } else {
                Some(p)
            }
        };
        if let Some(p) = extra {
            crate::unwind::drop_payload(p);
        }
    }
}

/// A scope of [`Pool::scope`] (or [`scope`]): spawn tasks that may borrow anything that
/// outlives the scope; the scope returns only when all of them have finished.
///
/// # Examples
/// ```
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let mut v = vec![0u32; 8];
/// pool.scope(|s| {
///     for (i, x) in v.iter_mut().enumerate() {
///         s.spawn(move |_| *x = i as u32 * 10);
///     }
/// });
/// assert_eq!(v[7], 70);
/// ```
pub struct Scope<'scope> {
    reg: Arc<Registry>,
    shared: Arc<ScopeShared>,
    /// Invariant in `'scope` (as rayon's and std's scopes): tasks must outlive exactly the
    /// scope's lifetime, which spans the whole `scope` call.
    _marker: PhantomData<fn(&'scope ()) -> &'scope ()>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .finish()
    }
}

/// A pointer to a [`Scope`] that a task carries to the thread that runs it.
struct ScopePtr<'scope>(*const Scope<'scope>);

// SAFETY: `Scope` is `Sync` (an `Arc<Registry>`, an `Arc` of atomics, a latch and a mutex), so
// a shared reference to it may be used on any thread; validity is argued where it is used.
unsafe impl Send for ScopePtr<'_> {}

impl<'scope> ScopePtr<'scope> {
    /// The scope.
    ///
    /// # Safety
    /// The scope's task count includes the caller's task, so the `scope` call that owns the
    /// `Scope` is still waiting and the `Scope` is alive.
    unsafe fn get(&self) -> &Scope<'scope> {
        // SAFETY: function contract.
        unsafe { &*self.0 }
    }
}

impl<'scope> Scope<'scope> {
    /// Spawns `body` into the scope: it runs on the pool (possibly on the calling thread, when
    /// the calling engine or the scope's caller gets to it first) and may spawn more tasks
    /// through the `&Scope` it receives. The scope waits for it.
    ///
    /// A panic in `body` is caught and re-raised by the scope after every task has finished
    /// (see [`Pool::scope`]).
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// let count = AtomicUsize::new(0);
    /// parview::scope(|s| {
    ///     s.spawn(|s| {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///         s.spawn(|_| { count.fetch_add(1, Ordering::Relaxed); });
    ///     });
    /// });
    /// assert_eq!(count.into_inner(), 2);
    /// ```
    pub fn spawn<BODY>(&self, body: BODY)
    where
        BODY: FnOnce(&Scope<'scope>) + Send + 'scope,
    {
        // The spawner holds a count itself (`op`, or the running task), so the total cannot
        // reach zero before this increment.
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        let ptr = ScopePtr(self as *const Scope<'scope>);
        let shared = self.shared.clone();
        let task = move || {
            // SAFETY: this task's count is still pending (it is released by `complete` below,
            // the last use of the scope), so the scope call is waiting and `Scope` is alive.
            let scope = unsafe { ptr.get() };
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| body(scope))) {
                shared.panicked(p);
            }
            // `shared` is this task's own `Arc`: the latch stays alive while it is set, even if
            // the scope call returns at once.
            shared.complete();
        };
        let task: Box<dyn FnOnce() + Send + 'scope> = Box::new(task);
        // SAFETY: only the lifetime is erased. The task borrows data that lives for 'scope,
        // which spans the whole `scope` call, and that call does not return before the task's
        // count is released — the task's last action. If the task were never run, the count
        // would never drop and the scope would wait, never return: pools run (drain) every
        // queued job, also when dropped.
        let task: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(task) };
        self.reg.push_shared(std::iter::once(Job::Task(task)));
    }
}

#[cfg(test)]
mod tests {
    use crate::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn pool(n: usize) -> Pool {
        Pool::builder()
            .workers(n)
            .spin(Duration::ZERO)
            .build()
            .unwrap()
    }

    fn tree_sum(pool: &Pool, lo: u64, hi: u64) -> u64 {
        if hi - lo <= 4 {
            return (lo..hi).sum();
        }
        let mid = lo + (hi - lo) / 2;
        let (a, b) = pool.join(|| tree_sum(pool, lo, mid), || tree_sum(pool, mid, hi));
        a + b
    }

    #[test]
    fn join_results_from_outside_and_inside_the_pool() {
        for n in [1, 2, 3] {
            let pool = pool(n);
            assert_eq!(tree_sum(&pool, 0, 200), 199 * 200 / 2, "P={n}");
            let inside = pool.direct().apply(|_| tree_sum(&pool, 0, 100));
            assert!(inside.iter().all(|&s| s == 4950), "P={n}");
        }
    }

    #[test]
    fn join_panics_after_both_sides_finished() {
        let pool = pool(2);
        let done = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.join(
                || panic!("left"),
                || {
                    std::thread::sleep(Duration::from_millis(5));
                    done.fetch_add(1, Ordering::SeqCst);
                },
            )
        }));
        let p = r.unwrap_err();
        assert_eq!(p.downcast_ref::<&str>(), Some(&"left"));
        assert_eq!(done.load(Ordering::SeqCst), 1);
        // Both panic: a's payload wins.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.join(|| panic!("a"), || panic!("b"))
        }));
        assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"a"));
    }

    #[test]
    fn scope_waits_for_nested_tasks_and_borrows() {
        for n in [1, 2] {
            let pool = pool(n);
            let count = AtomicUsize::new(0);
            let mut v = vec![0usize; 6];
            pool.scope(|s| {
                for (i, x) in v.iter_mut().enumerate() {
                    let count = &count;
                    s.spawn(move |s| {
                        *x = i;
                        s.spawn(move |_| {
                            count.fetch_add(1, Ordering::SeqCst);
                        });
                    });
                }
            });
            assert_eq!(v, vec![0, 1, 2, 3, 4, 5]);
            assert_eq!(count.load(Ordering::SeqCst), 6);
        }
    }

    #[test]
    fn scope_reraises_a_task_panic_after_the_others() {
        let pool = pool(2);
        let count = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.scope(|s| {
                s.spawn(|_| panic!("task"));
                for _ in 0..4 {
                    s.spawn(|_| {
                        count.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        }));
        assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"task"));
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }
}

/// Loom models of the join protocol that ships (`join_cold` → `join_in` on an engine: the claim
/// swap, taking `b` back from the engine's own deque, a thief's `done` and wake-up, `wait_own`),
/// through the engine loop and wake protocol of `registry.rs` (see its `loom_model`). A lost
/// wake-up leaves the waiting thread parked forever, which loom reports as a deadlock; a job
/// run twice or not at all fails the counts.
///
/// Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_model`.
#[cfg(all(test, loom))]
mod loom_model {
    use super::join_cold;
    use crate::registry::Registry;
    use crate::sync::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A join from outside a pool of `n` engines: the caller waits while an engine runs `a`
    /// and takes `b` back, or another engine steals `b`.
    fn model(n: usize) {
        loom::model(move || {
            let (reg, seeds) = Registry::new(n, n, Duration::ZERO);
            let mut threads = Vec::new();
            for seed in seeds {
                let reg = reg.clone();
                threads.push(loom::thread::spawn(move || reg.run_engine(seed)));
            }
            let runs = Arc::new(AtomicUsize::new(0));
            let (ra, rb) = {
                let (r1, r2) = (runs.clone(), runs.clone());
                join_cold(
                    &reg,
                    move || {
                        r1.fetch_add(1, Ordering::Relaxed);
                        1u32
                    },
                    move || {
                        r2.fetch_add(1, Ordering::Relaxed);
                        2u32
                    },
                )
            };
            assert_eq!((ra, rb), (1, 2));
            assert_eq!(runs.load(Ordering::Relaxed), 2);
            reg.terminate();
            for t in threads {
                t.join().unwrap();
            }
        });
    }

    #[test]
    fn loom_model_join_one_engine() {
        model(1);
    }

    #[test]
    fn loom_model_join_two_engines() {
        model(2);
    }
}
