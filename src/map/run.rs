//! Running a map: the one pipeline. Blocking maps ([`run`]) and background maps ([`start`])
//! share everything but who keeps the body alive: the caller's stack, or an `Arc`.

use super::body::{Body, NoState, Report, SlotState, Work};
use super::input::MapInput;
use super::sink::{Sink, Stream, StreamSink, VecSink, alloc_output, collect, collect_partial};
use super::track::Tracker;
use crate::error::{ItemError, MapError};
use crate::latch::{Gate, Latch, Signal};
use crate::registry::{self, Job, Participate, Registry, Waker};
use crate::schedule::{Claimer, Dispenser, Schedule};
use crate::timeline::{Lane, Timeline};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a map runs.
#[derive(Clone, Copy)]
pub(crate) enum Placement<'t> {
    /// Load-balanced: the caller (blocking maps) and up to `P` engines take chunks.
    Shared,
    /// Static slot `k` runs on engine `targets[k]`; the caller only waits.
    Directed(&'t [usize]),
}

/// How one map is run: its schedule, placement and (optional) tracker.
pub(crate) struct Spec<'t> {
    pub(crate) schedule: Schedule,
    pub(crate) placement: Placement<'t>,
    pub(crate) tracker: Option<Arc<Tracker>>,
}

impl<'t> Spec<'t> {
    /// A load-balanced map with `schedule`.
    pub(crate) fn shared(schedule: Schedule) -> Self {
        Spec {
            schedule,
            placement: Placement::Shared,
            tracker: None,
        }
    }

    /// A static map pinned to `targets`.
    pub(crate) fn directed(targets: &'t [usize]) -> Self {
        Spec {
            schedule: Schedule::Static,
            placement: Placement::Directed(targets),
            tracker: None,
        }
    }

    /// With a tracker (progress, timings, timeline).
    pub(crate) fn tracked(mut self, tracker: Option<Arc<Tracker>>) -> Self {
        self.tracker = tracker;
        self
    }

    fn dispenser(&self, n: usize, reg: &Registry) -> (Dispenser, bool) {
        match self.placement {
            Placement::Shared => (Dispenser::new(self.schedule, n, reg.workers()), false),
            Placement::Directed(t) => (Dispenser::new(Schedule::Static, n, t.len()), true),
        }
    }
}

/// Releases every item of an input that will not run (a map refused before it started).
pub(crate) fn release_all<In: MapInput>(input: &In) {
    let n = input.len();
    let mut bad = None;
    // SAFETY: nothing was taken from `input`, and this is its one release.
    unsafe {
        #[allow(clippy::single_range_in_vec_init)] // one range: the whole input
        input.release(&[0..n], &mut |i, m| {
            bad.get_or_insert((i, m));
        })
    };
    if let Some((i, m)) = bad {
        crate::unwind::report_orphan(&format!("input item {i}"), &m);
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking maps

/// Runs `input` through `f` into `sink` and returns the map's concluded report once every
/// participant has left. Every blocking entry point goes through here; the schedule must be
/// valid.
///
/// # Panics
/// When called on an engine already [`MAX_NESTED_WAITS`](crate::MAX_NESTED_WAITS)
/// deep (before anything runs; the input is released).
pub(crate) fn run<In, St, F, S, R, E>(
    reg: &Registry,
    spec: &Spec<'_>,
    input: In,
    state: St,
    f: F,
    sink: S,
) -> Report<E>
where
    In: MapInput,
    St: SlotState,
    F: Fn(&mut St::S, In::Item) -> Result<R, E> + Sync,
    S: Sink<R>,
    E: Send,
{
    let _level = match registry::enter_nested() {
        Ok(level) => level,
        Err(m) => {
            release_all(&input);
            panic!("{m}");
        }
    };
    let n = input.len();
    let (disp, directed) = spec.dispenser(n, reg);
    let units = disp.max_units();
    let body = Body::new(input, state, f, sink, disp, directed, spec.tracker.clone());
    if n > 0 {
        run_borrowed(reg, &body, units, spec.placement);
    }
    body.conclude()
}

/// A blocking map into a fresh `Vec`: [`run`] with the output reserved first (a size that
/// cannot be allocated is [`MapError::TooLarge`] before anything runs).
pub(crate) fn map_vec<In, St, F, R, E>(
    reg: &Registry,
    spec: &Spec<'_>,
    input: In,
    state: St,
    f: F,
) -> Result<Vec<R>, MapError<E>>
where
    In: MapInput,
    St: SlotState,
    F: Fn(&mut St::S, In::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    let n = input.len();
    let mut out = match alloc_output::<R, E>(n) {
        Ok(v) => v,
        Err(e) => {
            release_all(&input);
            return Err(e);
        }
    };
    let rep = run(reg, spec, input, state, f, VecSink(out.as_mut_ptr()));
    // SAFETY: `run` returned, so every participant has left; the VecSink wrote exactly the
    // slots the report does not list as holes.
    unsafe { collect(out, n, rep) }
}

/// [`map_vec`] that hands back what finished when the map fails or is stopped
/// ([`Partial`](crate::Partial)).
pub(crate) fn map_vec_partial<In, F, R, E>(
    reg: &Registry,
    spec: &Spec<'_>,
    input: In,
    f: F,
) -> Result<Vec<R>, crate::error::Partial<R, E>>
where
    In: MapInput,
    F: Fn(&mut (), In::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    let n = input.len();
    let mut out = match alloc_output::<R, E>(n) {
        Ok(v) => v,
        Err(error) => {
            release_all(&input);
            return Err(crate::error::Partial {
                results: Vec::new(),
                error,
            });
        }
    };
    let rep = run(reg, spec, input, NoState, f, VecSink(out.as_mut_ptr()));
    // SAFETY: `run` returned, so every participant has left; the VecSink wrote exactly the
    // slots the report does not list as holes.
    unsafe { collect_partial(out, n, rep) }
}

/// How long the caller of an adaptive map works alone before it offers work to engines:
/// about the cost of sharing (a few cache-line transfers and an engine's reaction time).
pub(crate) const INLINE_BUDGET: Duration = Duration::from_micros(1);

/// An adaptive map works alone first when it has more than this many items per engine (or when
/// it was cheap last time: [`alone_first`]).
/// Alone, the caller sizes each chunk to fill what is left of [`INLINE_BUDGET`] at the rate the
/// previous chunk ran (starting with one item), so sharing is delayed by at most the first item,
/// or by the budget times how much costlier later items turn out to be. With more than 256 items
/// per engine one item is under 0.4% of an engine's share. Smaller maps (64 primes, 100 pi
/// chunks) are shared at once: measured, working alone first cost them 6% (primes) and 19%
/// (pi 1e7) on 2 engines — unless their items were cheap last time ([`recall`]).
pub(crate) const INLINE_MIN_ITEMS_PER_ENGINE: usize = 256;

/// [`INLINE_BUDGET`] in nanoseconds.
const INLINE_BUDGET_NS: u64 = INLINE_BUDGET.as_nanos() as u64;

/// Whether an adaptive map of `n` items on `workers` engines starts on the caller alone: when
/// it has more than [`INLINE_MIN_ITEMS_PER_ENGINE`] items per engine, or when it has more than
/// `2P` items and, at the cost per item the caller `recalled` from its last map with the same
/// body, would take at most [`INLINE_BUDGET`]. (Maps of up to `2P` items are always shared at
/// once: one item per engine is what a caller of such a map may count on.)
pub(crate) fn alone_first(n: usize, workers: usize, recalled: Option<u64>) -> bool {
    n > INLINE_MIN_ITEMS_PER_ENGINE.saturating_mul(workers)
        || (n > 2 * workers
            && recalled.is_some_and(|ns| (n as u64).saturating_mul(ns) <= INLINE_BUDGET_NS))
}

/// How many body types a thread remembers the item cost of (see [`recall`]).
const RECALL_SLOTS: usize = 8;

thread_local! {
    /// Per calling thread: `(body type key, ns per item)` of its last adaptive maps, in a
    /// small direct-mapped table.
    static RECENT: [std::cell::Cell<(usize, u64)>; RECALL_SLOTS] =
        const { [const { std::cell::Cell::new((0, 0)) }; RECALL_SLOTS] };
}

/// What the calling thread's last adaptive map with body type `key` cost per item, if it
/// measured it. A small adaptive map whose items were cheap last time (the whole map would
/// take under [`INLINE_BUDGET`] at that rate) is run alone first, like a large one: a map of
/// 16 trivial items called in a loop then never pays for sharing. If the items became costly,
/// the first one shows it and the map is shared after it (and remembered as costly).
pub(crate) fn recall(key: usize) -> Option<u64> {
    RECENT
        .try_with(|t| {
            let (k, ns) = t[(key >> 4) % RECALL_SLOTS].get();
            (k == key && ns > 0).then_some(ns)
        })
        .ok()
        .flatten()
}

/// Records the calling thread's measured cost per item for body type `key` (0: not measured,
/// nothing recorded).
fn remember(key: usize, ns: u64) {
    if ns > 0 {
        let _ = RECENT.try_with(|t| t[(key >> 4) % RECALL_SLOTS].set((key, ns)));
    }
}

/// The shared header of a blocking map whose body lives on the caller's stack.
struct Borrowed {
    gate: Gate,
    latch: Latch,
    /// Lifetime-erased pointer to the caller's `Body`.
    body: *const (dyn Work + 'static),
}

// SAFETY: `body` points to a `dyn Work`, which is `Sync`; it is dereferenced only between a
// successful `gate.enter()` (or a pre-entered slot) and `gate.finish()`, and the caller keeps
// the body alive until the gate is closed and empty (see `run_borrowed`).
unsafe impl Send for Borrowed {}
// SAFETY: as above; all other fields are atomics and a waker.
unsafe impl Sync for Borrowed {}

impl Borrowed {
    fn finish(&self) {
        if self.gate.finish() {
            self.latch.set();
        }
    }
}

impl Participate for Borrowed {
    fn join(&self, engine: usize) {
        if self.gate.enter() {
            // SAFETY: we entered the gate, so the caller is still waiting and the body is alive.
            unsafe { &*self.body }.work(Lane::Engine(engine), true, &mut Claimer::default(), None);
            self.finish();
        }
    }

    fn run_slot(&self, engine: usize, slot: usize) {
        // SAFETY: directed slots are pre-entered, so the caller waits for this finish.
        unsafe { &*self.body }.run_slot(Lane::Engine(engine), slot);
        self.finish();
    }

    fn abandon(&self, engine: usize, slot: usize) {
        // SAFETY: as in `run_slot`: the slot is pre-entered.
        unsafe { &*self.body }.abandon_slot(slot, &registry::removed_message(engine));
        self.finish();
    }
}

/// How many map headers a thread keeps for reuse (see [`header`]).
const SPARE_HEADERS: usize = 4;

thread_local! {
    /// The headers of this thread's last blocking maps, kept for the next ones.
    static HEADERS: std::cell::RefCell<Vec<Arc<Borrowed>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The shared header of a new blocking map: one of this thread's spare headers that nobody
/// else holds any more (`Arc::get_mut`: every ticket of its last map has been dropped), reset,
/// or a new one, kept as a spare while the thread has fewer than [`SPARE_HEADERS`].
///
/// Why: a ticket often outlives its map (the caller finished alone and an engine pops the
/// ticket later, or an engine drops its ticket last), so the engine freed the header the caller
/// had allocated — one cross-thread `free` per map, which in glibc's malloc ends in the arena's
/// lock, contended by the caller's next `malloc` (`futex` calls in the profile). 2 trivial items
/// into a buffer: that was 1 allocation per map, freed by an engine 98% of the time.
fn header(pre: usize, body: *const (dyn Work + 'static)) -> Arc<Borrowed> {
    let fresh = || Borrowed {
        gate: Gate::new(pre),
        latch: Latch::new(Waker::current()),
        body,
    };
    HEADERS
        .try_with(|spare| {
            let mut spare = spare.try_borrow_mut().ok()?;
            for h in spare.iter_mut() {
                if let Some(b) = Arc::get_mut(h) {
                    // No ticket of its last map is left (get_mut synchronised with their drops),
                    // so nobody can look at the old gate, latch or body any more.
                    b.gate = Gate::new(pre);
                    // The latch's waker is this thread's: re-created only if the thread became
                    // or stopped being an engine. Re-creating it costs a clone and a drop of an
                    // `Arc` whose line the last map's engine wrote (its wake-up).
                    if b.latch.wakes_current() {
                        b.latch.reset();
                    } else {
                        b.latch = Latch::new(Waker::current());
                    }
                    // A map called in a loop has its body at the same place each time: then the
                    // header's line with the body pointer stays shared with the engines.
                    #[allow(ambiguous_wide_pointer_comparisons)]
                    if b.body != body {
                        b.body = body;
                    }
                    return Some(h.clone());
                }
            }
            let h = Arc::new(fresh());
            if spare.len() < SPARE_HEADERS {
                spare.push(h.clone());
            }
            Some(h)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::new(fresh()))
}

/// Runs `body` to completion on `reg` and returns when every participant has left.
fn run_borrowed<W: Work>(reg: &Registry, body: &W, units: usize, placement: Placement<'_>) {
    let lane = match reg.current_engine() {
        Some(i) => Lane::Engine(i),
        None => Lane::Caller,
    };
    let helpers = match placement {
        Placement::Shared => (reg.workers() - 1).min(units.saturating_sub(1)),
        Placement::Directed(t) => t.len(),
    };
    let mut cl = Claimer::default();
    if let Placement::Shared = placement {
        // Alone first (heartbeat idea): a large adaptive map is not shared until it has run for
        // INLINE_BUDGET, so a tiny one is done before anyone hears of it. Explicit schedules and
        // maps of few items (where one item may be a large share of the work) are shared at once.
        cl.alone = true;
        if helpers == 0 {
            body.work(lane, false, &mut cl, None);
            return;
        }
        // One key per body type (each map closure has its own): the address of this
        // function's instance for it.
        let key = run_borrowed::<W> as fn(&Registry, &W, usize, Placement<'_>) as usize;
        let recalled = recall(key);
        if body.inline_first(reg.workers(), recalled)
            && body.work(lane, false, &mut cl, Some(INLINE_BUDGET))
        {
            remember(key, cl.mean_item_ns());
            return;
        }
        cl.alone = false;
        shared_run(reg, body, placement, lane, helpers, &mut cl);
        remember(key, cl.mean_item_ns());
        return;
    }
    shared_run(reg, body, placement, lane, helpers, &mut cl);
}

/// The part of [`run_borrowed`] after the caller's solo start: share the body and wait.
fn shared_run<W: Work>(
    reg: &Registry,
    body: &W,
    placement: Placement<'_>,
    lane: Lane,
    helpers: usize,
    cl: &mut Claimer,
) {
    let erased: *const (dyn Work + '_) = body;
    // SAFETY: only the lifetime is erased. The pointer is used by participants between enter and
    // finish; this function does not return (and `body` is not dropped) until the gate is
    // closed and empty — also when unwinding, thanks to `WaitOnDrop`.
    let erased: *const (dyn Work + 'static) = unsafe { std::mem::transmute(erased) };
    let pre = match placement {
        Placement::Shared => 1,
        Placement::Directed(t) => t.len(),
    };
    let shared = header(pre, erased);

    struct WaitOnDrop<'a> {
        shared: &'a Borrowed,
        spin: Duration,
        caller_inside: bool,
    }
    impl Drop for WaitOnDrop<'_> {
        fn drop(&mut self) {
            if self.caller_inside && self.shared.gate.finish() {
                return;
            }
            registry::wait_until(&|| self.shared.latch.probe(), None, self.spin);
        }
    }
    let guard = WaitOnDrop {
        shared: &shared,
        spin: reg.spin,
        caller_inside: matches!(placement, Placement::Shared),
    };
    match placement {
        Placement::Shared => {
            reg.push_shared((0..helpers).map(|_| Job::Ticket(shared.clone())));
            body.work(lane, false, cl, None);
        }
        Placement::Directed(targets) => {
            for (slot, &engine) in targets.iter().enumerate() {
                if reg
                    .push_directed(engine, Job::Directed(shared.clone(), slot))
                    .is_err()
                {
                    shared.abandon(engine, slot);
                }
            }
        }
    }
    // The guard finishes the caller's participation and waits for the others.
    drop(guard);
}

// ---------------------------------------------------------------------------------------------
// Background maps

/// How the results of a background map are kept and finally handed out.
pub(crate) trait AsyncOutput: Send + Sync + Sized + 'static {
    type R: Send;
    /// The error of the map's closure (`Infallible` but for checkpointed `try_` maps, whose
    /// `Err` ends up inside [`T`](AsyncOutput::T)).
    type E: Send;
    type Sink: Sink<Self::R> + Send + 'static;
    type T: Send + 'static;
    /// Builds the result; called once, by the last participant, after the body concluded.
    fn finish(&self, rep: Report<Self::E>, n: usize) -> Result<Self::T, MapError>;
    /// Drops a result nobody took, value by value (a panicking `Drop` is reported, the rest are
    /// still dropped).
    fn drop_value(v: Self::T);
    /// What finished of a failed map (a `Vec<Option<R>>`), once; `None` where not kept. Nobody
    /// will ask again: a map that concludes later drops its results at once.
    fn take_partial(&self) -> Option<Box<dyn std::any::Any + Send>> {
        None
    }
    /// Nobody will ask for what finished: drop it now (value by value, a panicking `Drop`
    /// reported), and a map that concludes later drops its results at once.
    fn discard_partial(&self) {}
}

/// Drops the items of a vector one by one, reporting panicking `Drop`s.
pub(crate) fn drop_vec<T>(mut v: Vec<T>) {
    let n = v.len();
    // SAFETY: the first `n` slots are initialised; with the length set to 0 first, the vector
    // frees only its buffer, and each item is dropped exactly once by `drop_each`.
    unsafe {
        v.set_len(0);
        crate::unwind::drop_each(v.as_mut_ptr(), 0..n, &mut |i, m| {
            crate::unwind::report_orphan(&format!("unclaimed result {i}"), &m)
        });
    }
}

/// Results in a `Vec<R>`, in input order; a failed map keeps what finished
/// ([`AsyncResult::get_partial`](crate::AsyncResult::get_partial)) until the handle says it
/// does not want it (`get`, or dropping the handle): then it is dropped at once, as before
/// partial results existed.
pub(crate) struct VecOut<R> {
    out: Mutex<Vec<R>>,
    partial: Mutex<PartialSlot<R>>,
}

/// What a failed map kept, and whether anyone may still ask for it.
struct PartialSlot<R> {
    wanted: bool,
    results: Option<Vec<Option<R>>>,
}

impl<R: Send + 'static> VecOut<R> {
    /// The output of `n` results and its sink; an error if it cannot be allocated.
    pub(crate) fn new(n: usize) -> Result<(Self, VecSink<R>), MapError> {
        Ok(Self::with_buffer(alloc_output(n)?))
    }

    /// The output in `v`'s spare capacity (empty, with room for the map's results; slots may
    /// be written through the sink before the map starts), and its sink.
    pub(crate) fn with_buffer(mut v: Vec<R>) -> (Self, VecSink<R>) {
        let sink = VecSink(v.as_mut_ptr());
        (
            VecOut {
                out: Mutex::new(v),
                partial: Mutex::new(PartialSlot {
                    wanted: true,
                    results: None,
                }),
            },
            sink,
        )
    }

    /// [`AsyncOutput::finish`] for any error type: the results, or the error with what
    /// finished kept for [`AsyncOutput::take_partial`]. `keep_all`: keep the results as
    /// partial even when the map itself succeeded (its caller fails it for another reason).
    ///
    /// # Safety
    /// Called once, after every participant left; the sink wrote exactly the slots outside
    /// `rep.holes`.
    pub(crate) unsafe fn finish_vec<E>(
        &self,
        rep: Report<E>,
        n: usize,
        keep_all: bool,
    ) -> Result<Vec<R>, MapError<E>> {
        let v = std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()));
        let mut slot = self.slot();
        if !slot.wanted {
            drop(slot);
            // SAFETY: function contract.
            return unsafe { collect(v, n, rep) };
        }
        // SAFETY: function contract. Under the slot's lock, so a handle that gives the results
        // up meanwhile (`discard_partial`) finds them there.
        match unsafe { collect_partial(v, n, rep) } {
            Ok(v) => {
                if keep_all {
                    let mut p: Vec<Option<R>> = Vec::new();
                    if p.try_reserve_exact(v.len()).is_ok() {
                        p.extend(v.into_iter().map(Some));
                        slot.results = Some(p);
                    } else {
                        drop(slot);
                        drop_vec(v); // no room to keep them as partial results
                    }
                    return Ok(Vec::new());
                }
                Ok(v)
            }
            Err(p) => {
                slot.results = Some(p.results);
                Err(p.error)
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, PartialSlot<R>> {
        self.partial.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R> Drop for VecOut<R> {
    fn drop(&mut self) {
        // Results kept for `get_partial` that nobody took: dropped one by one, so a panicking
        // `Drop` is reported instead of unwinding through whichever thread drops the map.
        let slot = self.partial.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.results.take() {
            drop_vec(p);
        }
    }
}

impl<R: Send + 'static> AsyncOutput for VecOut<R> {
    type R = R;
    type E = Infallible;
    type Sink = VecSink<R>;
    type T = Vec<R>;
    fn finish(&self, rep: Report<Infallible>, n: usize) -> Result<Vec<R>, MapError> {
        // SAFETY: called once, by the last participant, after the gate closed; the sink wrote
        // exactly the slots outside the report's holes.
        unsafe { self.finish_vec(rep, n, false) }
    }
    fn drop_value(v: Vec<R>) {
        drop_vec(v);
    }
    fn take_partial(&self) -> Option<Box<dyn std::any::Any + Send>> {
        let mut slot = self.slot();
        slot.wanted = false;
        let p = slot.results.take()?;
        Some(Box::new(p))
    }
    fn discard_partial(&self) {
        let mut slot = self.slot();
        slot.wanted = false;
        let p = slot.results.take();
        drop(slot);
        if let Some(p) = p {
            drop_vec(p);
        }
    }
}

/// `Result<R, ItemError>` per item (`return_exceptions`).
pub(crate) struct ResultsOut<R>(VecOut<Result<R, ItemError>>);

impl<R: Send + 'static> ResultsOut<R> {
    /// The output of `n` results and its sink; an error if it cannot be allocated.
    pub(crate) fn new(n: usize) -> Result<(Self, ResultSink<R>), MapError> {
        let (out, sink) = VecOut::new(n)?;
        Ok((ResultsOut(out), ResultSink(sink)))
    }
}

impl<R: Send + 'static> AsyncOutput for ResultsOut<R> {
    type R = R;
    type E = Infallible;
    type Sink = ResultSink<R>;
    type T = Vec<Result<R, ItemError>>;
    fn finish(&self, rep: Report<Infallible>, n: usize) -> Result<Self::T, MapError> {
        let v = std::mem::take(&mut *self.0.out.lock().unwrap_or_else(|e| e.into_inner()));
        // SAFETY: as for `VecOut::finish`.
        unsafe { collect(v, n, rep) }
    }
    fn drop_value(v: Self::T) {
        drop_vec(v);
    }
}

/// `Ok(r)` or the item's panic in each slot.
pub(crate) use super::sink::ResultSink;

/// Streams results into a [`Stream`] (`imap`): the map's own value is `()`.
pub(crate) struct StreamOut<R>(std::marker::PhantomData<fn() -> R>);

impl<R: Send + 'static> AsyncOutput for StreamOut<R> {
    type R = R;
    type E = Infallible;
    type Sink = StreamSink<R>;
    type T = ();
    fn finish(&self, rep: Report<Infallible>, _n: usize) -> Result<(), MapError> {
        // Items' panics went down the stream; what is left (a panicking `Drop` of an input
        // nobody took) has no one to go to.
        if let Some((i, m)) = rep.panic {
            crate::unwind::report_orphan(&format!("input item {i} of an imap"), &m);
        }
        Ok(())
    }
    fn drop_value(_v: ()) {}
}

/// A background map: gate, body and the place its result goes.
pub(crate) struct AsyncMap<
    In,
    F,
    O: AsyncOutput,
    S = <O as AsyncOutput>::Sink,
    R = <O as AsyncOutput>::R,
> {
    gate: Gate,
    body: Body<In, NoState, F, S, R, O::E>,
    out: O,
    signal: Signal,
    result: Mutex<Option<Result<O::T, MapError>>>,
    n: usize,
    label: String,
    engines: usize,
    timeline: bool,
    timeline_taken: AtomicBool,
    shared: bool,
    spin: Duration,
}

/// What an [`AsyncResult`](crate::AsyncResult) needs from the map behind it.
pub(crate) trait AsyncCore<T>: Send + Sync {
    /// Set once the result is there.
    fn signal(&self) -> &Signal;
    /// The result (once).
    fn take(&self) -> Option<Result<T, MapError>>;
    fn tracker(&self) -> Option<&Arc<Tracker>>;
    fn stop(&self);
    fn timeline(&self) -> Option<Timeline>;
    /// Work on the map from the waiting thread (shared maps; a no-op when nothing is left).
    fn help(&self);
    /// The pool's spin window, for waiting.
    fn spin(&self) -> Duration;
    /// What finished of a failed map, once (see [`AsyncOutput::take_partial`]).
    fn take_partial(&self) -> Option<Box<dyn std::any::Any + Send>> {
        None
    }
    /// See [`AsyncOutput::discard_partial`].
    fn discard_partial(&self) {}
}

impl<In, F, S, R, O> AsyncMap<In, F, O, S, R>
where
    In: MapInput + Send + 'static,
    F: Fn(&mut (), In::Item) -> Result<R, O::E> + Send + Sync + 'static,
    O: AsyncOutput<Sink = S, R = R>,
    S: Sink<R> + Send + 'static,
    R: Send,
{
    fn finish(&self) {
        if self.gate.finish() {
            self.conclude();
        }
    }

    fn conclude(&self) {
        let rep = self.body.conclude();
        let res = self.out.finish(rep, self.n);
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(res);
        if let Some(t) = &self.body.tracker {
            t.mark_finished();
        }
        self.signal.set();
    }
}

impl<In, F, O: AsyncOutput, S, R> Drop for AsyncMap<In, F, O, S, R> {
    fn drop(&mut self) {
        let r = self
            .result
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(Ok(v)) = r {
            O::drop_value(v);
        }
    }
}

impl<In, F, S, R, O> Participate for AsyncMap<In, F, O, S, R>
where
    In: MapInput + Send + 'static,
    F: Fn(&mut (), In::Item) -> Result<R, O::E> + Send + Sync + 'static,
    O: AsyncOutput<Sink = S, R = R>,
    S: Sink<R> + Send + 'static,
    R: Send,
{
    fn join(&self, engine: usize) {
        if self.gate.enter() {
            self.body
                .work(Lane::Engine(engine), true, &mut Claimer::default(), None);
            self.finish();
        }
    }

    fn run_slot(&self, engine: usize, slot: usize) {
        self.body.run_slot(Lane::Engine(engine), slot);
        self.finish();
    }

    fn abandon(&self, engine: usize, slot: usize) {
        self.body
            .abandon_slot(slot, &registry::removed_message(engine));
        self.finish();
    }
}

impl<In, F, S, R, O> AsyncCore<O::T> for AsyncMap<In, F, O, S, R>
where
    In: MapInput + Send + 'static,
    F: Fn(&mut (), In::Item) -> Result<R, O::E> + Send + Sync + 'static,
    O: AsyncOutput<Sink = S, R = R>,
    S: Sink<R> + Send + 'static,
    R: Send,
{
    fn signal(&self) -> &Signal {
        &self.signal
    }
    fn take(&self) -> Option<Result<O::T, MapError>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
    fn tracker(&self) -> Option<&Arc<Tracker>> {
        self.body.tracker.as_ref()
    }
    fn stop(&self) {
        self.body.stop();
    }
    fn timeline(&self) -> Option<Timeline> {
        if !self.timeline
            || !self.signal.is_set()
            || self.timeline_taken.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        let tracker = self.body.tracker.as_ref()?;
        let (records, wall) = tracker.take_records();
        Some(
            Timeline::new(self.label.clone(), self.engines, wall, records)
                .with_attempts(tracker.take_attempts()),
        )
    }
    fn help(&self) {
        if self.shared && self.gate.enter() {
            self.body
                .work(Lane::Caller, true, &mut Claimer::default(), None);
            self.finish();
        }
    }
    fn spin(&self) -> Duration {
        self.spin
    }
    fn take_partial(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.out.take_partial()
    }
    fn discard_partial(&self) {
        self.out.discard_partial()
    }
}

/// Starts a background map of `input` with `f`, its results kept in `out` (written through
/// `sink`); every background entry point goes through here. The schedule must be valid.
pub(crate) fn start<In, F, O>(
    reg: &Registry,
    spec: &Spec<'_>,
    input: In,
    f: F,
    (out, sink): (O, O::Sink),
    label: &str,
    timeline: bool,
) -> Arc<AsyncMap<In, F, O>>
where
    In: MapInput + Send + 'static,
    F: Fn(&mut (), In::Item) -> Result<O::R, O::E> + Send + Sync + 'static,
    O: AsyncOutput,
{
    let n = input.len();
    let (disp, directed) = spec.dispenser(n, reg);
    let units = disp.max_units();
    let tracker = spec
        .tracker
        .clone()
        .unwrap_or_else(|| Arc::new(Tracker::new(n, timeline)));
    let pre = match spec.placement {
        Placement::Directed(t) if n > 0 => t.len(),
        _ => 0,
    };
    let map = Arc::new(AsyncMap {
        gate: Gate::new(pre),
        body: Body::new(input, NoState, f, sink, disp, directed, Some(tracker)),
        out,
        signal: Signal::new(),
        result: Mutex::new(None),
        n,
        label: label.to_string(),
        engines: reg.workers(),
        timeline,
        timeline_taken: AtomicBool::new(false),
        shared: !directed,
        spin: reg.spin,
    });
    if n == 0 {
        map.conclude();
        return map;
    }
    match spec.placement {
        Placement::Shared => {
            let tickets = reg.workers().min(units);
            reg.push_shared((0..tickets).map(|_| Job::Ticket(map.clone())));
        }
        Placement::Directed(targets) => {
            for (slot, &e) in targets.iter().enumerate() {
                if reg
                    .push_directed(e, Job::Directed(map.clone(), slot))
                    .is_err()
                {
                    map.abandon(e, slot);
                }
            }
        }
    }
    map
}

/// A background map that failed before it started (its output could not be allocated): ready
/// at once with its error.
pub(crate) struct Refused<T> {
    signal: Signal,
    result: Mutex<Option<Result<T, MapError>>>,
}

impl<T> Refused<T> {
    pub(crate) fn new(e: MapError) -> Self {
        Self::with_result(Err(e))
    }

    /// A result that is there at once (a map that never had to start).
    pub(crate) fn with_result(r: Result<T, MapError>) -> Self {
        let signal = Signal::new();
        signal.set();
        Refused {
            signal,
            result: Mutex::new(Some(r)),
        }
    }
}

impl<T: Send> AsyncCore<T> for Refused<T> {
    fn signal(&self) -> &Signal {
        &self.signal
    }
    fn take(&self) -> Option<Result<T, MapError>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
    fn tracker(&self) -> Option<&Arc<Tracker>> {
        None
    }
    fn stop(&self) {}
    fn timeline(&self) -> Option<Timeline> {
        None
    }
    fn help(&self) {}
    fn spin(&self) -> Duration {
        Duration::ZERO
    }
}

/// Starts a streaming map (imap): results go to the returned [`Stream`] as items finish.
#[allow(clippy::type_complexity)]
pub(crate) fn start_stream<In, F, R>(
    reg: &Registry,
    schedule: Schedule,
    input: In,
    f: F,
) -> (Arc<dyn AsyncCore<()>>, Arc<Stream<R>>, usize)
where
    In: MapInput + Send + 'static,
    F: Fn(In::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    let n = input.len();
    let stream = Arc::new(Stream::new());
    let out = (
        StreamOut(std::marker::PhantomData),
        StreamSink(stream.clone()),
    );
    let map = start(
        reg,
        &Spec::shared(schedule),
        input,
        move |_: &mut (), x| Ok(f(x)),
        out,
        "imap",
        false,
    );
    (map, stream, n)
}

#[cfg(test)]
mod alone_first_tests {
    use super::*;

    #[test]
    fn small_maps_start_alone_only_when_they_were_cheap_last_time() {
        // More than 256 items per engine: always alone first.
        assert!(alone_first(513, 2, None));
        assert!(!alone_first(512, 2, None));
        // Small maps: shared at once unless the recalled cost says the map is under 1 µs.
        assert!(!alone_first(16, 2, None));
        assert!(alone_first(16, 2, Some(62))); // 992 ns
        assert!(!alone_first(16, 2, Some(63))); // 1008 ns
        // Up to 2P items: shared at once whatever was recalled (one item per engine).
        assert!(!alone_first(4, 2, Some(1)));
        assert!(alone_first(5, 2, Some(1)));
        assert!(!alone_first(16, 8, Some(1)));
        // No overflow for huge costs.
        assert!(!alone_first(100, 2, Some(u64::MAX)));
    }

    #[test]
    fn the_recall_table_remembers_per_key_and_evicts_on_collision() {
        std::thread::spawn(|| {
            let a = 0x1000;
            let b = a + (RECALL_SLOTS << 4); // same slot as `a`
            let c = a + (1 << 4); // the next slot
            assert_eq!(recall(a), None);
            remember(a, 40);
            remember(c, 7);
            assert_eq!(recall(a), Some(40));
            assert_eq!(recall(c), Some(7));
            remember(a, 0); // nothing measured: kept
            assert_eq!(recall(a), Some(40));
            remember(b, 9); // evicts `a`
            assert_eq!(recall(a), None);
            assert_eq!(recall(b), Some(9));
            assert_eq!(recall(c), Some(7));
        })
        .join()
        .unwrap();
        // Per thread: this thread never remembered anything.
        assert_eq!(recall(0x1000 + (RECALL_SLOTS << 4)), None);
    }
}
