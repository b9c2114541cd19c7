//! The map engine: how one parallel call runs, whatever view started it.
//!
//! A map is a [`Body`] (input, closure, output sink, the schedule's dispenser, failure report)
//! worked on by *participants*. A blocking call from outside the pool makes the calling thread
//! a participant at once and queues at most `P − 1` *tickets* (so a call uses `P` threads, like
//! an OpenMP team); engines that pick a ticket up enter the map's [`Gate`](crate::latch) and
//! take chunks until none are left. A map whose work is tiny is finished by the caller before
//! any engine arrives; late tickets find the gate closed and leave without touching the map.
//! Directed work (DirectView) is pre-entered and sent to the named engines' mailboxes.
//!
//! # Invariants
//! * Each index is *taken* (the closure called on it) at most once, and exactly once unless the
//!   map was stopped (abort, or an `Err` in a `try_` map). Output slot `i` is written iff item
//!   `i` ran and returned a value.
//! * Panics are caught per item: the item's slot becomes a hole, the chunk goes on with the next
//!   item, the engine survives.
//! * The per-chunk path takes no lock and allocates nothing. Locks are taken only on failure paths
//!   and, when a timeline is recorded, once per participant.
//! * Holes (unwritten outputs) are known exactly at the end — failed items, the rest of a chunk
//!   cut short by an `Err`, static slots cut short by a stop, and the never-claimed tail — so
//!   outputs that were written are dropped exactly once and inputs that were not taken (owned
//!   `Vec` input) are dropped too.

use crate::error::{ItemError, MapError};
use crate::latch::{Gate, Latch};
use crate::pool::{Job, Pool, Registry};
use crate::schedule::{Claimer, Dispenser, Schedule, static_block};
use crate::timeline::{ChunkRecord, Lane};
use std::any::Any;
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Inputs

/// What a map can run over: a slice or `&Vec<T>` (items `&T`), an owned `Vec<T>` (items `T`),
/// or a range of integers (items are the integers).
///
/// # Examples
/// ```
/// let v = vec![1, 2, 3];
/// assert_eq!(parview::par_map(&v, |x| x + 1), vec![2, 3, 4]);      // &Vec<T>
/// assert_eq!(parview::par_map(&v[1..], |x| x * 2), vec![4, 6]);    // &[T]
/// assert_eq!(parview::par_map(0..3u64, |i| i * i), vec![0, 1, 4]); // Range
/// assert_eq!(parview::par_map(vec![String::from("a")], |s| s + "!"), vec!["a!"]); // Vec<T>
/// ```
pub trait IntoMapInput {
    /// The item the closure receives.
    type Item;
    /// The input as the engine reads it.
    #[doc(hidden)]
    type Input: input::MapInput<Item = Self::Item>;
    /// Converts into the engine's input.
    #[doc(hidden)]
    fn into_map_input(self) -> Self::Input;
}

pub(crate) mod input {
    use std::ops::Range;

    /// Random access to a map's items by index (sealed: only parview implements it).
    pub trait MapInput: Sync {
        /// Item type.
        type Item;
        /// Number of items.
        fn len(&self) -> usize;
        /// Item `i`.
        ///
        /// # Safety
        /// `i < self.len()`, and each `i` is taken at most once over the input's life.
        unsafe fn take(&self, i: usize) -> Self::Item;
        /// Drops the items in `untaken` (never taken). Default: nothing to drop.
        ///
        /// # Safety
        /// Called at most once, after all takes, with ranges that were never taken.
        unsafe fn release(&self, _untaken: &[Range<usize>]) {}
    }

    /// A borrowed slice.
    pub struct SliceInput<'a, T>(pub(crate) &'a [T]);

    impl<'a, T: Sync> MapInput for SliceInput<'a, T> {
        type Item = &'a T;
        #[inline]
        fn len(&self) -> usize {
            self.0.len()
        }
        #[inline]
        unsafe fn take(&self, i: usize) -> &'a T {
            // SAFETY: the caller guarantees `i < len` (see `MapInput::take`).
            unsafe { self.0.get_unchecked(i) }
        }
    }

    /// An integer range.
    pub struct RangeInput<T> {
        pub(crate) start: T,
        pub(crate) len: usize,
    }

    /// An owned vector whose items are moved out one by one.
    pub struct VecInput<T> {
        ptr: *mut T,
        len: usize,
        cap: usize,
    }

    impl<T> VecInput<T> {
        pub(crate) fn new(v: Vec<T>) -> Self {
            let mut v = std::mem::ManuallyDrop::new(v);
            VecInput {
                ptr: v.as_mut_ptr(),
                len: v.len(),
                cap: v.capacity(),
            }
        }
    }

    // SAFETY: items are moved out to whichever thread takes them (so `T: Send`), and distinct
    // threads take distinct indices (the `take` contract), so shared access never aliases an item.
    unsafe impl<T: Send> Sync for VecInput<T> {}
    // SAFETY: owning a buffer of `T: Send` values may move between threads.
    unsafe impl<T: Send> Send for VecInput<T> {}

    impl<T: Send> MapInput for VecInput<T> {
        type Item = T;
        #[inline]
        fn len(&self) -> usize {
            self.len
        }
        #[inline]
        unsafe fn take(&self, i: usize) -> T {
            // SAFETY: `i < len` and each index is read once (caller contract), so this moves a
            // live value out exactly once; `Drop` below never drops items again.
            unsafe { self.ptr.add(i).read() }
        }
        unsafe fn release(&self, untaken: &[Range<usize>]) {
            for r in untaken {
                // SAFETY: these items were never taken (caller contract) and are dropped once.
                unsafe {
                    std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                        self.ptr.add(r.start),
                        r.len(),
                    ))
                };
            }
        }
    }

    /// Two inputs walked in step (`Iterator::zip`): item `i` is `(a[i], b[i])`; the length is
    /// the shorter one's.
    pub struct ZipInput<A, B> {
        pub(crate) a: A,
        pub(crate) b: B,
    }

    impl<A: MapInput, B: MapInput> MapInput for ZipInput<A, B> {
        type Item = (A::Item, B::Item);
        #[inline]
        fn len(&self) -> usize {
            self.a.len().min(self.b.len())
        }
        #[inline]
        unsafe fn take(&self, i: usize) -> Self::Item {
            // SAFETY: `i < min(len a, len b)` and taken once (caller contract), which is the
            // contract of each side.
            unsafe { (self.a.take(i), self.b.take(i)) }
        }
        unsafe fn release(&self, untaken: &[Range<usize>]) {
            let n = self.len();
            // The longer side's items past the shorter length were never taken either.
            let with_tail = |side_len: usize| {
                let mut ranges = untaken.to_vec();
                if side_len > n {
                    ranges.push(n..side_len);
                }
                ranges
            };
            // SAFETY: forwarded contract: once, after all takes, and these ranges were taken
            // from neither side.
            unsafe {
                self.a.release(&with_tail(self.a.len()));
                self.b.release(&with_tail(self.b.len()));
            }
        }
    }

    impl<T> Drop for VecInput<T> {
        fn drop(&mut self) {
            // SAFETY: ptr/cap come from a Vec we own; length 0 frees the buffer without
            // dropping items (they were taken or released by the map).
            unsafe { drop(Vec::from_raw_parts(self.ptr, 0, self.cap)) };
        }
    }
}

use input::{MapInput, RangeInput, SliceInput, VecInput, ZipInput};

impl<'a, T: Sync> IntoMapInput for &'a [T] {
    type Item = &'a T;
    type Input = SliceInput<'a, T>;
    fn into_map_input(self) -> Self::Input {
        SliceInput(self)
    }
}

impl<'a, T: Sync> IntoMapInput for &'a Vec<T> {
    type Item = &'a T;
    type Input = SliceInput<'a, T>;
    fn into_map_input(self) -> Self::Input {
        SliceInput(self.as_slice())
    }
}

impl<'a, T: Sync, const N: usize> IntoMapInput for &'a [T; N] {
    type Item = &'a T;
    type Input = SliceInput<'a, T>;
    fn into_map_input(self) -> Self::Input {
        SliceInput(self.as_slice())
    }
}

impl<T: Send> IntoMapInput for Vec<T> {
    type Item = T;
    type Input = VecInput<T>;
    fn into_map_input(self) -> Self::Input {
        VecInput::new(self)
    }
}

/// Two inputs in step, like `Iterator::zip`: item `i` is `(a_i, b_i)`, and the map has as
/// many items as the shorter input.
///
/// # Examples
/// ```
/// let x = [1.0, 2.0, 3.0];
/// let y = vec![0.5, 0.5, 0.5];
/// assert_eq!(parview::par_map((&x, &y), |(a, b)| a * b), vec![0.5, 1.0, 1.5]);
/// ```
impl<A: IntoMapInput, B: IntoMapInput> IntoMapInput for (A, B) {
    type Item = (A::Item, B::Item);
    type Input = ZipInput<A::Input, B::Input>;
    fn into_map_input(self) -> Self::Input {
        ZipInput {
            a: self.0.into_map_input(),
            b: self.1.into_map_input(),
        }
    }
}

macro_rules! range_input {
    ($($t:ty),*) => {$(
        impl MapInput for RangeInput<$t> {
            type Item = $t;
            #[inline]
            fn len(&self) -> usize {
                self.len
            }
            #[inline]
            unsafe fn take(&self, i: usize) -> $t {
                // Two's complement: correct for every index of the range, also for narrow signed types.
                self.start.wrapping_add(i as $t)
            }
        }
        impl IntoMapInput for Range<$t> {
            type Item = $t;
            type Input = RangeInput<$t>;
            fn into_map_input(self) -> Self::Input {
                let len = if self.end > self.start {
                    usize::try_from(self.end.abs_diff(self.start))
                        .expect("range too long for this platform's usize")
                } else {
                    0
                };
                RangeInput { start: self.start, len }
            }
        }
        impl IntoMapInput for std::ops::RangeInclusive<$t> {
            type Item = $t;
            type Input = RangeInput<$t>;
            fn into_map_input(self) -> Self::Input {
                let (start, end) = (*self.start(), *self.end());
                let len = if self.is_empty() {
                    0
                } else {
                    usize::try_from(end.abs_diff(start))
                        .ok()
                        .and_then(|d| d.checked_add(1))
                        .expect("range too long for this platform's usize")
                };
                RangeInput { start, len }
            }
        }
    )*};
}
range_input!(usize, u64, u32, u16, u8, isize, i64, i32, i16, i8);

// ---------------------------------------------------------------------------------------------
// Outputs

/// Where results go. `put(i, r)` is called at most once per index, from any thread.
pub(crate) trait Sink<R>: Sync {
    /// Stores result `i`.
    ///
    /// # Safety
    /// `i` is in bounds and no other call uses the same `i`.
    unsafe fn put(&self, i: usize, r: R);
    /// Offered an item's panic; true if the sink stored it in slot `i` (no hole then).
    fn absorb(&self, _i: usize, _e: ItemError) -> bool {
        false
    }
}

/// The spare capacity of a `Vec<R>` (uninitialised until written).
pub(crate) struct VecSink<R>(pub(crate) *mut R);
// SAFETY: distinct indices are written by distinct threads (the `put` contract) and `R: Send`
// values are moved into them, so sharing the base pointer is sound.
unsafe impl<R: Send> Sync for VecSink<R> {}
// SAFETY: as above; the pointer is only a base address.
unsafe impl<R: Send> Send for VecSink<R> {}

impl<R: Send> Sink<R> for VecSink<R> {
    #[inline]
    unsafe fn put(&self, i: usize, r: R) {
        // SAFETY: in bounds of the reserved capacity and written once (caller contract).
        unsafe { self.0.add(i).write(r) }
    }
}

/// An initialised slice (`par_map_into`): results replace the old values.
pub(crate) struct SliceSink<R>(*mut R);
// SAFETY: as for `VecSink`: disjoint indices per thread, `R: Send`.
unsafe impl<R: Send> Sync for SliceSink<R> {}

impl<R: Send> Sink<R> for SliceSink<R> {
    #[inline]
    unsafe fn put(&self, i: usize, r: R) {
        // SAFETY: in bounds of the caller's slice, which we borrow mutably for the whole map,
        // and no other thread touches index `i`.
        unsafe { *self.0.add(i) = r }
    }
}

/// `Result<R, ItemError>` per slot (`return_exceptions`): a panic becomes `Err` in its slot.
pub(crate) struct ResultSink<R>(pub(crate) VecSink<Result<R, ItemError>>);

impl<R: Send> Sink<R> for ResultSink<R> {
    #[inline]
    unsafe fn put(&self, i: usize, r: R) {
        // SAFETY: forwarded contract.
        unsafe { self.0.put(i, Ok(r)) }
    }
    fn absorb(&self, i: usize, e: ItemError) -> bool {
        // SAFETY: item `i` panicked, so its slot was not written and will not be.
        unsafe { self.0.put(i, Err(e)) };
        true
    }
}

/// Sends `(index, result)` to a channel as items finish (`imap`, `imap_unordered`).
pub(crate) struct ChannelSink<R>(pub(crate) std::sync::mpsc::Sender<(usize, Result<R, ItemError>)>);

impl<R: Send> Sink<R> for ChannelSink<R> {
    #[inline]
    unsafe fn put(&self, i: usize, r: R) {
        let _ = self.0.send((i, Ok(r))); // a dropped receiver just discards results
    }
    fn absorb(&self, i: usize, e: ItemError) -> bool {
        let _ = self.0.send((i, Err(e)));
        true
    }
}

/// Discards results (`R = ()`).
pub(crate) struct NoSink;
impl Sink<()> for NoSink {
    #[inline]
    unsafe fn put(&self, _i: usize, _r: ()) {}
}

// ---------------------------------------------------------------------------------------------
// Tracking: progress, timings, timeline

/// Lock-free progress and timing counters of one map (only when asked for).
pub(crate) struct Tracker {
    origin: Instant,
    pub(crate) total: usize,
    done: AtomicUsize,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    busy_ns: AtomicU64,
    records: Option<Mutex<Vec<ChunkRecord>>>,
    finished: std::sync::atomic::AtomicBool,
}

/// Runs `run` with a tracker that records a timeline for a map of `n` items, and returns its
/// result with the [`Timeline`](crate::Timeline) (`label`, `engines` rows).
pub(crate) fn with_timeline<T>(
    n: usize,
    label: String,
    engines: usize,
    run: impl FnOnce(Arc<Tracker>) -> T,
) -> (T, crate::Timeline) {
    let tracker = Arc::new(Tracker::new(n, true));
    let out = run(tracker.clone());
    let (records, wall) = tracker.take_records();
    (out, crate::Timeline::new(label, engines, wall, records))
}

/// Timings of a map, as ipyparallel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// First chunk start to last chunk finish.
    pub wall_time: Duration,
    /// Sum of the busy time of all chunks (what a serial run would roughly take).
    pub serial_time: Duration,
}

impl Tracker {
    pub(crate) fn new(total: usize, timeline: bool) -> Self {
        Tracker {
            origin: Instant::now(),
            total,
            done: AtomicUsize::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            records: timeline.then(|| Mutex::new(Vec::new())),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks the map as over (finished, failed or aborted).
    pub(crate) fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Whether [`mark_finished`](Self::mark_finished) was called.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    #[inline]
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn chunk(
        &self,
        lane: Lane,
        r: Range<usize>,
        t0: Instant,
        t1: Instant,
        items: usize,
        stolen: bool,
        local: &mut Vec<ChunkRecord>,
    ) {
        let (b, e) = (self.ns(t0), self.ns(t1));
        self.first_ns.fetch_min(b, Ordering::Relaxed);
        self.last_ns.fetch_max(e, Ordering::Relaxed);
        self.busy_ns.fetch_add(e - b, Ordering::Relaxed);
        self.done.fetch_add(items, Ordering::Release);
        if self.records.is_some() {
            local.push(ChunkRecord {
                lane,
                start: r.start,
                end: r.end,
                began: Duration::from_nanos(b),
                ended: Duration::from_nanos(e),
                stolen,
            });
        }
    }

    fn flush(&self, local: Vec<ChunkRecord>) {
        if let Some(m) = &self.records {
            if !local.is_empty() {
                m.lock().unwrap_or_else(|e| e.into_inner()).extend(local);
            }
        }
    }

    /// Items finished so far (failed ones included).
    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Acquire)
    }

    /// Wall and serial time so far.
    pub(crate) fn timings(&self) -> Timings {
        let first = self.first_ns.load(Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        Timings {
            wall_time: if first == u64::MAX {
                Duration::ZERO
            } else {
                Duration::from_nanos(last.saturating_sub(first))
            },
            serial_time: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        }
    }

    /// Time since the map started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The recorded chunks (empty if the timeline was off), and the wall time measured from
    /// the map's start.
    pub(crate) fn take_records(&self) -> (Vec<ChunkRecord>, Duration) {
        let recs = match &self.records {
            Some(m) => std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        };
        (
            recs,
            Duration::from_nanos(self.last_ns.load(Ordering::Relaxed)),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The body of a map

/// What went wrong, gathered under a lock on failure paths only.
pub(crate) struct Report<E> {
    pub(crate) error: Option<(usize, E)>,
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

/// Everything a participant needs to work on one map.
pub(crate) struct Body<In, F, S, R, E> {
    pub(crate) input: In,
    f: F,
    pub(crate) sink: S,
    pub(crate) disp: Dispenser,
    report: Mutex<Report<E>>,
    /// Set before anything is written to `report`, so a clean map never takes the lock.
    reported: std::sync::atomic::AtomicBool,
    directed: bool,
    pub(crate) tracker: Option<Arc<Tracker>>,
    _r: PhantomData<fn() -> R>,
}

/// The type-erased face of a [`Body`].
pub(crate) trait Work: Sync {
    /// Take chunks until none are left, or — with a `budget` — until this call has worked that
    /// long. Returns true when no work is left.
    fn work(&self, lane: Lane, stolen: bool, cl: &mut Claimer, budget: Option<Duration>) -> bool;
    /// Whether the caller should first work alone for [`INLINE_BUDGET`] before sharing.
    fn inline_first(&self, workers: usize) -> bool;
    /// Run static slot `slot` (directed work).
    fn run_slot(&self, lane: Lane, slot: usize);
    /// Stop: no new chunk starts.
    fn stop(&self);
}

/// Extracts the message of a panic payload.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

impl<In, F, S, R, E> Body<In, F, S, R, E>
where
    In: MapInput,
    F: Fn(In::Item) -> Result<R, E> + Sync,
    S: Sink<R>,
    E: Send,
{
    pub(crate) fn new(
        input: In,
        f: F,
        sink: S,
        disp: Dispenser,
        directed: bool,
        tracker: Option<Arc<Tracker>>,
    ) -> Self {
        Body {
            input,
            f,
            sink,
            disp,
            report: Mutex::new(Report::default()),
            reported: std::sync::atomic::AtomicBool::new(false),
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

    /// Runs items `r`; returns how many finished (failed ones included).
    #[inline]
    fn run_chunk(&self, r: Range<usize>) -> usize {
        let end = r.end;
        let mut i = r.start;
        while i < end {
            let res = panic::catch_unwind(AssertUnwindSafe(|| {
                while i < end {
                    // SAFETY: `i` lies in a chunk this participant claimed, and the dispenser
                    // hands every index out at most once.
                    let item = unsafe { self.input.take(i) };
                    match (self.f)(item) {
                        // SAFETY: same argument: index `i` is ours alone, in bounds.
                        Ok(v) => unsafe { self.sink.put(i, v) },
                        Err(e) => return Some(e),
                    }
                    i += 1;
                }
                None
            }));
            match res {
                Ok(None) => break,
                Ok(Some(e)) => {
                    // Stop first: from here on no participant can claim a new chunk.
                    self.disp.stop();
                    {
                        let mut rep = self.report();
                        if rep.error.as_ref().is_none_or(|(j, _)| i < *j) {
                            rep.error = Some((i, e));
                        }
                        rep.holes.push(i..i + 1);
                        rep.stopped = true;
                    }
                    self.hole(i + 1..end, false);
                    return i + 1 - r.start;
                }
                Err(payload) => {
                    let message = panic_message(&*payload);
                    drop(payload);
                    let absorbed = self.sink.absorb(
                        i,
                        ItemError {
                            index: i,
                            message: message.clone(),
                        },
                    );
                    let mut rep = self.report();
                    rep.panicked += 1;
                    if rep.panic.as_ref().is_none_or(|(j, _)| i < *j) {
                        rep.panic = Some((i, message));
                    }
                    if !absorbed {
                        rep.holes.push(i..i + 1);
                    }
                    drop(rep);
                    i += 1;
                }
            }
        }
        r.len()
    }

    /// After every participant has left: adds the never-claimed ranges and drops untaken input.
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
        // SAFETY: no participant is active any more (the gate is closed and empty), and
        // `untaken` lists exactly the items nobody took.
        unsafe { self.input.release(&rep.untaken) };
        rep
    }
}

impl<In, F, S, R, E> Work for Body<In, F, S, R, E>
where
    In: MapInput,
    F: Fn(In::Item) -> Result<R, E> + Sync,
    S: Sink<R>,
    E: Send,
{
    fn work(&self, lane: Lane, stolen: bool, cl: &mut Claimer, budget: Option<Duration>) -> bool {
        let timing = budget.is_some() || self.disp.needs_timing() || self.tracker.is_some();
        let began = timing.then(Instant::now);
        let mut t0 = began;
        let mut local = Vec::new();
        let mut on_hole = |r: Range<usize>| self.hole(r, false);
        let mut finished = true;
        while let Some((_, r)) = self.disp.next(cl, Some(&mut on_hole)) {
            let items = self.run_chunk(r.clone());
            if let Some(start) = t0 {
                let t1 = Instant::now();
                if let Some(t) = &self.tracker {
                    t.chunk(lane, r, start, t1, items, stolen, &mut local);
                }
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
        }
        if let Some(t) = &self.tracker {
            t.flush(local);
        }
        finished
    }

    fn inline_first(&self, workers: usize) -> bool {
        self.disp.needs_timing() && self.input.len() > INLINE_MIN_ITEMS_PER_ENGINE * workers
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
        let items = self.run_chunk(r.clone());
        if let Some(t) = &self.tracker {
            let mut local = Vec::new();
            t.chunk(lane, r, t0, Instant::now(), items, false, &mut local);
            t.flush(local);
        }
    }

    fn stop(&self) {
        self.disp.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Participation

/// Something an engine can join (a ticket) or run a slot of (directed work).
pub(crate) trait Participate: Send + Sync {
    /// Join as a helper: enter, work, finish (a no-op if the map is already finished).
    fn join(&self, lane: Lane);
    /// Run static slot `slot` (pre-entered), then finish.
    fn run_slot(&self, lane: Lane, slot: usize);
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
// SAFETY: as above; all other fields are atomics.
unsafe impl Sync for Borrowed {}

impl Borrowed {
    fn finish(&self) {
        if self.gate.finish() {
            self.latch.set();
        }
    }
}

impl Participate for Borrowed {
    fn join(&self, lane: Lane) {
        if self.gate.enter() {
            // SAFETY: we entered the gate, so the caller is still waiting and the body is alive.
            unsafe { &*self.body }.work(lane, true, &mut Claimer::default(), None);
            self.finish();
        }
    }

    fn run_slot(&self, lane: Lane, slot: usize) {
        // SAFETY: directed slots are pre-entered, so the caller waits for this finish.
        unsafe { &*self.body }.run_slot(lane, slot);
        self.finish();
    }
}

/// How long the caller of an adaptive map works alone before it offers work to engines:
/// about the cost of sharing (a few cache-line transfers and an engine's reaction time).
pub(crate) const INLINE_BUDGET: Duration = Duration::from_micros(1);

/// An adaptive map works alone first only when it has more than this many items per engine.
/// Alone, the caller sizes each chunk to fill what is left of [`INLINE_BUDGET`] at the rate the
/// previous chunk ran (starting with one item), so sharing is delayed by at most the first item,
/// or by the budget times how much costlier later items turn out to be. With more than 256 items
/// per engine one item is under 0.4% of an engine's share. Smaller maps (64 primes, 100 pi
/// chunks) are shared at once: measured, working alone first cost them 6% (primes) and 19%
/// (pi 1e7) on 2 engines.
pub(crate) const INLINE_MIN_ITEMS_PER_ENGINE: usize = 256;

/// How a blocking map is run.
#[derive(Clone, Copy)]
pub(crate) enum Mode<'t> {
    /// The caller works; up to `P − 1` engines join through tickets.
    Shared,
    /// Slot `k` runs on engine `targets[k]`; the caller only waits.
    Directed(&'t [usize]),
}

/// Runs `body` to completion on `reg` and returns when every participant has left.
pub(crate) fn run_borrowed<W: Work>(reg: &Registry, body: &W, units: usize, mode: Mode<'_>) {
    let lane = reg.current_lane();
    let helpers = match mode {
        Mode::Shared => (reg.workers() - 1).min(units.saturating_sub(1)),
        Mode::Directed(t) => t.len(),
    };
    let mut cl = Claimer::default();
    if let Mode::Shared = mode {
        // Alone first (heartbeat idea): a large adaptive map is not shared until it has run for
        // INLINE_BUDGET, so a tiny one is done before anyone hears of it. Explicit schedules and
        // maps of few items (where one item may be a large share of the work) are shared at once.
        cl.alone = true;
        if helpers == 0 {
            body.work(lane, false, &mut cl, None);
            return;
        }
        if body.inline_first(reg.workers()) && body.work(lane, false, &mut cl, Some(INLINE_BUDGET))
        {
            return;
        }
        cl.alone = false;
    } else if helpers == 0 {
        return;
    }
    let erased: *const (dyn Work + '_) = body;
    // SAFETY: only the lifetime is erased. The pointer is used by participants between enter and
    // finish; this function does not return (and `body` is not dropped) until the gate is
    // closed and empty — also when unwinding, thanks to `WaitOnDrop`.
    let erased: *const (dyn Work + 'static) = unsafe { std::mem::transmute(erased) };
    let pre = match mode {
        Mode::Shared => 1,
        Mode::Directed(t) => t.len(),
    };
    let shared = Arc::new(Borrowed {
        gate: Gate::new(pre),
        latch: Latch::new(reg.current_unparker()),
        body: erased,
    });

    struct WaitOnDrop<'a> {
        shared: &'a Borrowed,
        reg: &'a Registry,
        caller_inside: bool,
    }
    impl Drop for WaitOnDrop<'_> {
        fn drop(&mut self) {
            if self.caller_inside && self.shared.gate.finish() {
                return;
            }
            self.reg.wait_until(&|| self.shared.latch.probe());
        }
    }
    let mut guard = WaitOnDrop {
        shared: &shared,
        reg,
        caller_inside: matches!(mode, Mode::Shared),
    };
    match mode {
        Mode::Shared => {
            reg.push_shared((0..helpers).map(|_| Job::Ticket(shared.clone())));
            body.work(lane, false, &mut cl, None);
        }
        Mode::Directed(targets) => {
            for (slot, &engine) in targets.iter().enumerate() {
                reg.push_directed(engine, Job::Directed(shared.clone(), slot));
            }
        }
    }
    // The guard finishes the caller's participation and waits for the others.
    guard.caller_inside = matches!(mode, Mode::Shared);
    drop(guard);
}

/// Drops the written outputs of a partly filled buffer of `n` slots (`holes` unwritten).
///
/// # Safety
/// Every slot of `0..n` outside `holes` holds an initialised value that nobody else drops.
pub(crate) unsafe fn drop_written<R>(base: *mut R, n: usize, holes: &mut [Range<usize>]) {
    if !std::mem::needs_drop::<R>() {
        return;
    }
    holes.sort_by_key(|r| r.start);
    let mut at = 0;
    for h in holes.iter().chain(std::iter::once(&(n..n))) {
        if h.start > at {
            // SAFETY: `at..h.start` lies between holes: written slots (caller contract).
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                    base.add(at),
                    h.start - at,
                ))
            };
        }
        at = at.max(h.end);
    }
}

/// Finishes a map whose results went into the spare capacity of `out` (`n` slots): the vector
/// when every slot was written, else the written slots are dropped (once) and the map's error is
/// returned. Maps whose sink absorbs panics clear `rep.panic` first.
///
/// # Safety
/// Every participant has left, `rep` is the map's concluded report, and exactly the slots of
/// `0..n` outside `rep.holes` were written, once each.
pub(crate) unsafe fn collect<R, E>(
    mut out: Vec<R>,
    n: usize,
    mut rep: Report<E>,
) -> Result<Vec<R>, MapError<E>> {
    if rep.holes.is_empty() && rep.error.is_none() && rep.panic.is_none() {
        // SAFETY: no holes: every slot of 0..n was written exactly once (caller contract).
        unsafe { out.set_len(n) };
        return Ok(out);
    }
    let done = n - rep.holes.iter().map(|h| h.len()).sum::<usize>();
    // SAFETY: the slots outside the holes were written (caller contract) and are dropped here,
    // once; `out` keeps length 0, so dropping it frees only the buffer.
    unsafe { drop_written(out.as_mut_ptr(), n, &mut rep.holes) };
    Err(report_error(rep, done, n).unwrap_or(MapError::Aborted { done, total: n }))
}

/// Turns a finished map's report into the error to return, if any. Panics take precedence over
/// a stop only when they have the lower index.
pub(crate) fn report_error<E>(rep: Report<E>, done: usize, n: usize) -> Option<MapError<E>> {
    let err = rep
        .error
        .map(|(index, error)| (index, MapError::Failed { index, error }));
    let pan = rep.panic.map(|(index, message)| {
        (
            index,
            MapError::Panicked {
                index,
                message,
                failed: rep.panicked,
            },
        )
    });
    match (err, pan) {
        (Some((a, ea)), Some((b, eb))) => Some(if a <= b { ea } else { eb }),
        (Some((_, e)), None) | (None, Some((_, e))) => Some(e),
        (None, None) if rep.stopped && !rep.holes.is_empty() => {
            Some(MapError::Aborted { done, total: n })
        }
        (None, None) => None,
    }
}

/// Re-raises a map's panic on the calling thread, naming the item and the count.
pub(crate) fn raise<E: std::fmt::Display>(e: MapError<E>, n: usize) -> ! {
    let msg = match &e {
        MapError::Panicked {
            index,
            message,
            failed,
        } => format!(
            "parview: item {index} panicked: {message} ({failed} of {n} items panicked; the lowest index is reported, all other items ran)"
        ),
        other => format!("parview: {other}"),
    };
    panic::resume_unwind(Box::new(msg))
}

// ---------------------------------------------------------------------------------------------
// The blocking map calls on Pool

/// Checks `schedule` in a blocking map, panicking with a message that names the argument.
fn check(schedule: Schedule) {
    if let Err(e) = schedule.validate() {
        panic!("parview: {e}");
    }
}

impl Pool {
    /// Runs `body` (already built for `n` items) as a shared (load-balanced) map.
    pub(crate) fn run_shared<W: Work>(&self, body: &W, units: usize) {
        run_borrowed(&self.reg, body, units, Mode::Shared);
    }

    /// The common path of every blocking map into a fresh `Vec`, shared or directed:
    /// `Ok(results)` or the map's error.
    pub(crate) fn map_vec<I, R, E, F>(
        &self,
        schedule: Schedule,
        mode: Mode<'_>,
        input: I,
        f: F,
        tracker: Option<Arc<Tracker>>,
    ) -> Result<Vec<R>, MapError<E>>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        schedule.validate()?;
        let input = input.into_map_input();
        let n = input.len();
        let mut out: Vec<R> = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let (parts, directed) = match mode {
            Mode::Shared => (self.workers(), false),
            Mode::Directed(t) => (t.len(), true),
        };
        let disp = Dispenser::new(schedule, n, parts);
        let units = disp.max_units();
        let body = Body::new(input, f, VecSink(out.as_mut_ptr()), disp, directed, tracker);
        run_borrowed(&self.reg, &body, units, mode);
        let rep = body.conclude();
        // SAFETY: `run_borrowed` returned, so every participant has left; the VecSink wrote
        // exactly the slots the report does not list as holes.
        unsafe { collect(out, n, rep) }
    }

    /// Applies `f` to every item in parallel and returns the results in input order, with the
    /// default schedule ([`Schedule::Adaptive`]).
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
        self.par_map_with(Schedule::default(), input, f)
    }

    /// [`par_map`](Self::par_map) with an explicit [`Schedule`].
    ///
    /// # Panics
    /// As `par_map`; also if the schedule is invalid (a chunk of 0: the message names `chunk`).
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let v = pool.par_map_with(Schedule::Guided(4), 0..100u32, |i| i % 7);
    /// assert_eq!(v[99], 99 % 7);
    /// ```
    pub fn par_map_with<I, R, F>(&self, schedule: Schedule, input: I, f: F) -> Vec<R>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        check(schedule);
        let input = input.into_map_input();
        let n = input.len();
        match self.map_vec(
            schedule,
            Mode::Shared,
            Passthrough(input),
            |x| Ok::<R, std::convert::Infallible>(f(x)),
            None,
        ) {
            Ok(v) => v,
            Err(e) => raise(e, n),
        }
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
        self.try_par_map_with(Schedule::default(), input, f)
    }

    /// [`try_par_map`](Self::try_par_map) with an explicit [`Schedule`].
    ///
    /// # Errors
    /// As `try_par_map`.
    ///
    /// # Examples
    /// ```
    /// use parview::{MapError, Pool, Schedule, ScheduleError};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let r = pool.try_par_map_with(Schedule::Dynamic(0), 0..4u32, |i| Ok::<_, ()>(i));
    /// assert!(matches!(r, Err(MapError::Schedule(ScheduleError::ZeroChunk { .. }))));
    /// ```
    pub fn try_par_map_with<I, R, E, F>(
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
        self.map_vec(schedule, Mode::Shared, input, f, None)
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
        self.par_map_into_with(Schedule::default(), input, out, f)
    }

    /// [`par_map_into`](Self::par_map_into) with an explicit [`Schedule`].
    ///
    /// # Panics
    /// As `par_map_into`.
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let mut out = vec![0u64; 1000];
    /// pool.par_map_into_with(Schedule::Static, 0..1000u64, &mut out, |i| 2 * i + 1);
    /// assert_eq!(out[999], 1999);
    /// ```
    pub fn par_map_into_with<I, R, F>(&self, schedule: Schedule, input: I, out: &mut [R], f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        check(schedule);
        let input = input.into_map_input();
        let n = input.len();
        assert_eq!(
            out.len(),
            n,
            "parview: invalid argument `out`: its length {} differs from the input's length {n}",
            out.len()
        );
        if n == 0 {
            return;
        }
        let disp = Dispenser::new(schedule, n, self.workers());
        let units = disp.max_units();
        let body = Body::new(
            input,
            |x| Ok::<R, std::convert::Infallible>(f(x)),
            SliceSink(out.as_mut_ptr()),
            disp,
            false,
            None,
        );
        self.run_shared(&body, units);
        let rep = body.conclude();
        if let Some(e) = report_error(rep, 0, n) {
            raise(e, n);
        }
    }

    /// Runs `f` on every item for its side effects.
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
        let input = input.into_map_input();
        let n = input.len();
        if n == 0 {
            return;
        }
        let disp = Dispenser::new(Schedule::default(), n, self.workers());
        let units = disp.max_units();
        let body = Body::new(
            input,
            |x| {
                f(x);
                Ok::<(), std::convert::Infallible>(())
            },
            NoSink,
            disp,
            false,
            None,
        );
        self.run_shared(&body, units);
        if let Some(e) = report_error(body.conclude(), 0, n) {
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
        self.par_map_with(Schedule::Static, 0..p, |k| {
            f(k, &data[static_block(n, p, k)])
        })
    }
}

/// Lets an already converted input pass through `IntoMapInput` again.
pub(crate) struct Passthrough<In>(pub(crate) In);

impl<In: MapInput> IntoMapInput for Passthrough<In> {
    type Item = In::Item;
    type Input = In;
    fn into_map_input(self) -> In {
        self.0
    }
}
