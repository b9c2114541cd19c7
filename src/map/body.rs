//! The body of a map: what every participant runs, and the one place where stop, holes,
//! panics and drops are handled.

use super::input::MapInput;
use super::sink::Sink;
use super::track::Tracker;
use crate::error::{ItemError, MapError};
use crate::schedule::{Claimer, Dispenser};
use crate::timeline::{ChunkRecord, Lane};
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What went wrong, gathered under a lock on failure paths only.
pub(crate) struct Report<E> {
    pub(crate) error: Option<(usize, E)>,
    /// The lowest index whose user code panicked (the closure, unless the sink kept the panic
    /// as the item's value; or a `Drop` parview ran), and the message.
    pub(crate) panic: Option<(usize, String)>,
    pub(crate) panicked: usize,
    /// Output slots never written.
    pub(crate) holes: Vec<Range<usize>>,
    /// Input items never taken (a subset of `holes`).
    pub(crate) untaken: Vec<Range<usize>>,
    pub(crate) stopped: bool,
}

impl<E> Default for Report<E> {
    fn default() -> Self {
        Report {
            error: None,
            panic: None,
            panicked: 0,
            holes: Vec::new(),
            untaken: Vec::new(),
            stopped: false,
        }
    }
}

impl<E> Report<E> {
    /// Records a panic of user code attributed to item `i`.
    pub(crate) fn note_panic(&mut self, i: usize, message: String) {
        self.panicked += 1;
        if self.panic.as_ref().is_none_or(|(j, _)| i < *j) {
            self.panic = Some((i, message));
        }
    }

    /// Items that produced a result (or their error) — `n` minus the holes.
    pub(crate) fn done(&self, n: usize) -> usize {
        n - self.holes.iter().map(|h| h.len()).sum::<usize>()
    }

    /// The error to return for this report, if any. A failure (`Err` or panic) wins over a
    /// stop; between an `Err` and a panic the lower index wins.
    pub(crate) fn error(self, n: usize) -> Option<MapError<E>> {
        let done = self.done(n);
        let err = self
            .error
            .map(|(index, error)| (index, MapError::Failed { index, error }));
        let pan = self.panic.map(|(index, message)| {
            (
                index,
                MapError::Panicked {
                    index,
                    message,
                    failed: self.panicked,
                },
            )
        });
        match (err, pan) {
            (Some((a, ea)), Some((b, eb))) => Some(if a <= b { ea } else { eb }),
            (Some((_, e)), None) | (None, Some((_, e))) => Some(e),
            (None, None) if !self.holes.is_empty() => Some(MapError::Aborted { done, total: n }),
            (None, None) => None,
        }
    }
}

/// A running chunk looks at the stop flag every this many items, so that `abort` (or an `Err`
/// elsewhere) also cuts a long chunk short — a DirectView's or `Static` map's one block per
/// engine included. One relaxed-cost load per 4096 items.
pub(crate) const STOP_CHECK: usize = 4096;

/// The hot loop: items `*i..end` through `f` into `sink`, `*i` advanced past each finished
/// item (so after a panic it names the item that panicked); `Some(e)` when item `*i` returned
/// `Err(e)`.
///
/// A function of its own, never inlined, with input and sink as separate reference
/// arguments: they carry no `UnsafeCell`, so the compiler may assume (`noalias`) that a write
/// through the sink cannot change the input's or the sink's own pointers, keeps them in
/// registers and can vectorise a trivial map. Inlined into `Body` (whose report lock is an
/// `UnsafeCell`) every write made it reload them: 2.2x the serial loop's time per item on
/// `2x + 1`. One call per segment of up to [`STOP_CHECK`] items.
///
/// # Safety
/// Every index in `*i..end` is within `input` and `sink`, and no other participant takes or
/// writes any of them.
#[inline(never)]
unsafe fn run_items<In: MapInput, S: Sink<R>, St, R, E>(
    input: &In,
    sink: &S,
    f: &impl Fn(&mut St, In::Item) -> Result<R, E>,
    st: &mut St,
    i: &mut usize,
    end: usize,
) -> Option<E> {
    // The index lives in a local (a register) and reaches `*i` when the loop ends, returns an
    // error or unwinds (the guard's drop): a store through `i` per item cost 0.2 ns of a
    // trivial item's 0.7 ns.
    struct Index<'a> {
        at: usize,
        out: &'a mut usize,
    }
    impl Drop for Index<'_> {
        #[inline]
        fn drop(&mut self) {
            *self.out = self.at;
        }
    }
    let mut ix = Index { at: *i, out: i };
    while ix.at < end {
        // SAFETY: `ix.at` is in the caller's exclusive, in-bounds range (function contract).
        let item = unsafe { input.take(ix.at) };
        match f(st, item) {
            // SAFETY: same argument: index `ix.at` is ours alone, in bounds.
            Ok(v) => unsafe { sink.put(ix.at, v) },
            Err(e) => return Some(e),
        }
        ix.at += 1;
    }
    None
}

/// Per-slot state of a directed map (a DirectView's [`EngineState`](crate::EngineState)): what
/// the closure gets as its first argument.
pub(crate) trait SlotState: Sync {
    /// The value the closure works with.
    type S;
    /// Runs `f` with the value of static slot `slot` (`None`: a shared map's participant).
    fn with<T>(&self, slot: Option<usize>, f: impl FnOnce(&mut Self::S) -> T) -> T;
}

/// No per-slot state (every map but `DirectView::map_with_state`).
pub(crate) struct NoState;

impl SlotState for NoState {
    type S = ();
    #[inline]
    fn with<T>(&self, _slot: Option<usize>, f: impl FnOnce(&mut ()) -> T) -> T {
        f(&mut ())
    }
}

/// Everything a participant needs to work on one map.
///
/// `repr(C)`: the body is built on the caller's stack for each map, so every line of it is in
/// the caller's cache when an engine joins, and each line the engine reads is one transfer
/// on its way to its first item. The fields are in the order that keeps those lines few:
/// the dispenser first (its cursor's line, then the line with the stop flag and the plan, see
/// [`Dispenser`]), then everything else a participant reads on every map (input, closure,
/// sink, tracker) on one line; what only failures and the end of a map touch comes last.
/// Before, the same fields spread over five lines: 2 items of 5 µs went from 1.04x to 1.02x
/// OpenMP (BENCHMARKS §14).
#[repr(C)]
pub(crate) struct Body<In, St, F, S, R, E> {
    pub(crate) disp: Dispenser,
    pub(crate) input: In,
    f: F,
    pub(crate) sink: S,
    pub(crate) tracker: Option<Arc<Tracker>>,
    state: St,
    report: Mutex<Report<E>>,
    /// Set before anything is written to `report`, so a clean map never takes the lock.
    reported: AtomicBool,
    directed: bool,
    _r: PhantomData<fn() -> R>,
}

/// The type-erased face of a [`Body`].
pub(crate) trait Work: Sync {
    /// Take chunks until none are left, or — with a `budget` — until this call has worked that
    /// long. Returns true when no work is left.
    fn work(&self, lane: Lane, stolen: bool, cl: &mut Claimer, budget: Option<Duration>) -> bool;
    /// Whether the caller should first work alone for [`INLINE_BUDGET`](super::run::INLINE_BUDGET)
    /// before sharing, given what its last map with this body type cost per item (`recalled`,
    /// see [`super::run::recall`]).
    fn inline_first(&self, workers: usize, recalled: Option<u64>) -> bool;
    /// Run static slot `slot` (directed work).
    fn run_slot(&self, lane: Lane, slot: usize);
    /// Static slot `slot` will not run (its engine left the pool): its items become holes
    /// that fail with `message`.
    fn abandon_slot(&self, slot: usize, message: &str);
    /// Stop: no new chunk starts.
    fn stop(&self);
}

impl<In, St, F, S, R, E> Body<In, St, F, S, R, E>
where
    In: MapInput,
    St: SlotState,
    F: Fn(&mut St::S, In::Item) -> Result<R, E> + Sync,
    S: Sink<R>,
    E: Send,
{
    pub(crate) fn new(
        input: In,
        state: St,
        f: F,
        sink: S,
        disp: Dispenser,
        directed: bool,
        tracker: Option<Arc<Tracker>>,
    ) -> Self {
        Body {
            input,
            state,
            f,
            sink,
            disp,
            report: Mutex::new(Report::default()),
            reported: AtomicBool::new(false),
            directed,
            tracker,
            _r: PhantomData,
        }
    }

    /// The failure report, for writing (marks the map as having something to report).
    fn report(&self) -> std::sync::MutexGuard<'_, Report<E>> {
        self.reported.store(true, Ordering::Release);
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hole(&self, r: Range<usize>, taken: bool) {
        if r.is_empty() {
            return;
        }
        let mut rep = self.report();
        if !taken {
            rep.untaken.push(r.clone());
        }
        rep.holes.push(r);
    }

    /// Runs items `r` with the slot's state `st`, in segments of [`STOP_CHECK`] items with a
    /// look at the stop flag between them (a stopped map leaves the rest of a long chunk
    /// untaken); returns how many items finished (failed ones included).
    #[inline]
    fn run_chunk(&self, r: Range<usize>, st: &mut St::S) -> usize {
        let mut at = r.start;
        while at < r.end {
            let seg_end = r.end.min(at.saturating_add(STOP_CHECK));
            if at > r.start && self.disp.stopped() {
                self.hole(at..r.end, false);
                return at - r.start;
            }
            if let Some(done_to) = self.run_segment(at..seg_end, st) {
                // An `Err` stopped the map inside this segment.
                self.hole(done_to..r.end, false);
                return done_to - r.start;
            }
            at = seg_end;
        }
        r.len()
    }

    /// Runs items `r`; `Some(end)` if an `Err` stopped the map after item `end - 1` (the rest
    /// of `r` is the caller's to report), `None` when every item ran.
    #[inline]
    fn run_segment(&self, r: Range<usize>, st: &mut St::S) -> Option<usize> {
        let end = r.end;
        let mut i = r.start;
        while i < end {
            let res = panic::catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `i..end` lies in a chunk this participant claimed, and the dispenser
                // hands every index out at most once.
                unsafe { run_items(&self.input, &self.sink, &self.f, st, &mut i, end) }
            }));
            match res {
                Ok(None) => break,
                Ok(Some(e)) => {
                    // Stop first: from here on no participant can claim a new chunk.
                    self.disp.stop();
                    let mut rep = self.report();
                    if rep.error.as_ref().is_none_or(|(j, _)| i < *j) {
                        rep.error = Some((i, e));
                    }
                    rep.holes.push(i..i + 1);
                    rep.stopped = true;
                    return Some(i + 1);
                }
                Err(payload) => {
                    let message = crate::unwind::panic_message(&*payload);
                    crate::unwind::drop_payload(payload);
                    let err = ItemError { index: i, message };
                    if let Err(err) = self.sink.absorb(i, err) {
                        let mut rep = self.report();
                        rep.note_panic(i, err.message);
                        rep.holes.push(i..i + 1);
                    }
                    i += 1;
                }
            }
        }
        None
    }

    /// After every participant has left: adds the never-claimed ranges, drops untaken input
    /// (a panicking `Drop` of input item `i` is reported as a panic of item `i`).
    pub(crate) fn conclude(&self) -> Report<E> {
        let mut rep = if self.reported.load(Ordering::Acquire) {
            std::mem::take(&mut *self.report())
        } else {
            Report::default()
        };
        self.disp.unclaimed(self.directed, |r| {
            rep.untaken.push(r.clone());
            rep.holes.push(r);
        });
        rep.stopped |= self.disp.stopped();
        let untaken = std::mem::take(&mut rep.untaken);
        let mut dropped_badly = Vec::new();
        // SAFETY: no participant is active any more (the gate is closed and empty), and
        // `untaken` lists exactly the items nobody took; conclude runs once per map.
        unsafe {
            self.input.release(&untaken, &mut |i, m| {
                dropped_badly.push((i, format!("Drop of input item {i} panicked: {m}")))
            })
        };
        for (i, m) in dropped_badly {
            rep.note_panic(i, m);
        }
        rep.untaken = untaken;
        rep
    }
}

impl<In, St, F, S, R, E> Work for Body<In, St, F, S, R, E>
where
    In: MapInput,
    St: SlotState,
    F: Fn(&mut St::S, In::Item) -> Result<R, E> + Sync,
    S: Sink<R>,
    E: Send,
{
    fn work(&self, lane: Lane, stolen: bool, cl: &mut Claimer, budget: Option<Duration>) -> bool {
        // A tracker and a budget need every chunk's times; an adaptive map only those that can
        // still change a later claim (`worth_timing`): a clock read costs 20-60 ns, as much as
        // a tiny map's items.
        let always = budget.is_some() || self.tracker.is_some();
        let adaptive = self.disp.needs_timing();
        let wanted = || always || (adaptive && self.disp.worth_timing());
        let began = budget.is_some().then(Instant::now);
        let mut t0 = if always {
            began.or_else(|| Some(Instant::now()))
        } else {
            None
        };
        let mut local: Vec<ChunkRecord> = Vec::new();
        let mut on_hole = |r: Range<usize>| self.hole(r, false);
        let mut finished = true;
        self.state.with(None, |st| {
            while let Some((_, r)) = self.disp.next(cl, Some(&mut on_hole)) {
                if t0.is_none() && wanted() {
                    t0 = Some(Instant::now());
                }
                let items = self.run_chunk(r.clone(), st);
                if !self.sink.chunk_done(r.clone()) {
                    self.disp.stop();
                }
                let Some(start) = t0 else { continue };
                if !wanted() {
                    t0 = None;
                    continue;
                }
                let t1 = Instant::now();
                if let Some(t) = &self.tracker {
                    t.chunk(lane, r, start, t1, items, stolen, &mut local);
                }
                cl.measured(t1 - start, items);
                if let (Some(b), Some(b0)) = (budget, began) {
                    let spent = t1 - b0;
                    if spent >= b {
                        finished = false;
                        break;
                    }
                    cl.fit(t1 - start, items, b - spent);
                } else {
                    cl.grow(t1 - start);
                }
                t0 = Some(t1);
            }
        });
        if let Some(t) = &self.tracker {
            t.flush(local);
        }
        finished
    }

    fn inline_first(&self, workers: usize, recalled: Option<u64>) -> bool {
        self.disp.needs_timing() && super::run::alone_first(self.input.len(), workers, recalled)
    }

    fn run_slot(&self, lane: Lane, slot: usize) {
        let r = self.disp.block(slot);
        if r.is_empty() {
            return; // fewer items than engines: nothing to run, nothing to record
        }
        if self.disp.stopped() {
            self.hole(r, false);
            return;
        }
        let t0 = Instant::now();
        // `with` itself panics only before the closure runs (the slot's engine state was
        // dropped with its engine, `views.rs`): then no item ran and the slot is abandoned.
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            self.state
                .with(Some(slot), |st| self.run_chunk(r.clone(), st))
        }));
        let items = match run {
            Ok(items) => items,
            Err(payload) => {
                let message = crate::unwind::panic_message(&*payload);
                crate::unwind::drop_payload(payload);
                self.abandon_slot(slot, &message);
                return;
            }
        };
        if !self.sink.chunk_done(r.clone()) {
            self.disp.stop();
        }
        if let Some(t) = &self.tracker {
            let mut local = Vec::new();
            t.chunk(lane, r, t0, Instant::now(), items, false, &mut local);
            t.flush(local);
        }
    }

    fn abandon_slot(&self, slot: usize, message: &str) {
        let r = self.disp.block(slot);
        if r.is_empty() {
            return;
        }
        let mut rep = self.report();
        rep.note_panic(r.start, message.to_string());
        rep.panicked += r.len() - 1;
        rep.untaken.push(r.clone());
        rep.holes.push(r);
    }

    fn stop(&self) {
        self.disp.stop();
    }
}
