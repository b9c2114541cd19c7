//! Where results go: the sinks participants write into, the output buffer of a map that
//! returns a `Vec`, and the queue of a streaming map.

use super::body::Report;
use crate::error::{ItemError, MapError};
use crate::latch::Signal;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------------
// Outputs

/// Where results go. `put(i, r)` is called at most once per index, from any thread.
pub(crate) trait Sink<R>: Sync {
    /// Stores result `i`.
    ///
    /// # Safety
    /// `i` is in bounds and no other call uses the same `i`.
    unsafe fn put(&self, i: usize, r: R);
    /// Offered an item's panic: `Ok` if the sink keeps it as item `i`'s value (no hole, and
    /// not a failure of the map: `return_exceptions`, streams), else the error back.
    fn absorb(&self, _i: usize, e: ItemError) -> Result<(), ItemError> {
        Err(e)
    }
    /// The chunk completion point: the participant that ran chunk `r` (its `put`s, some slots
    /// maybe holes) is done with it. False stops the map (no new chunk starts), e.g. when a
    /// checkpoint log cannot be written. Called on the thread that ran the chunk.
    #[inline]
    fn chunk_done(&self, _r: Range<usize>) -> bool {
        true
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
pub(crate) struct SliceSink<R>(pub(crate) *mut R);
// SAFETY: as for `VecSink`: disjoint indices per thread, `R: Send`.
unsafe impl<R: Send> Sync for SliceSink<R> {}

impl<R: Send> Sink<R> for SliceSink<R> {
    #[inline]
    unsafe fn put(&self, i: usize, r: R) {
        // SAFETY: in bounds of the caller's slice, which we borrow mutably for the whole map,
        // and no other thread touches index `i`. `replace` puts the new value in first, so a
        // panicking `Drop` of the old one (caught as this item's panic by the caller) leaves a
        // valid value in the slot, never a half-dropped one.
        let old = unsafe { std::ptr::replace(self.0.add(i), r) };
        drop(old);
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
    fn absorb(&self, i: usize, e: ItemError) -> Result<(), ItemError> {
        // SAFETY: item `i` panicked, so its slot was not written and will not be.
        unsafe { self.0.put(i, Err(e)) };
        Ok(())
    }
}

/// One message of a streaming map: an item's index and its result or panic.
pub(crate) type Msg<R> = (usize, Result<R, ItemError>);

/// The queue between a streaming map's participants and its iterator (`imap`,
/// `imap_unordered`). Every push rings `bell`, which wakes the iterator's thread wherever it
/// waits (an engine waiting there keeps running its own work).
pub(crate) struct Stream<R> {
    queue: Mutex<VecDeque<Msg<R>>>,
    /// The iterator is gone: results are dropped as they come.
    closed: AtomicBool,
    pub(crate) bell: Signal,
}

impl<R> Stream<R> {
    pub(crate) fn new() -> Self {
        Stream {
            queue: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
            bell: Signal::new(),
        }
    }

    pub(crate) fn push(&self, m: Msg<R>) {
        if self.closed.load(Ordering::Acquire) {
            drop(m); // a panicking Drop here is this item's panic, caught by the map
            return;
        }
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(m);
        self.bell.ring();
    }

    /// The oldest message, if any.
    pub(crate) fn pop(&self) -> Option<Msg<R>> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Whether a message is waiting.
    pub(crate) fn has_message(&self) -> bool {
        !self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The iterator went away: drop what is queued (each value on its own, a panicking `Drop`
    /// reported) and every result that comes later.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let pending = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for m in pending {
            if let Err(e) = crate::unwind::drop_caught(m) {
                crate::unwind::report_orphan("a streamed result", &e);
            }
        }
    }
}

impl<R> Drop for Stream<R> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Pushes `(index, result)` into a [`Stream`] as items finish.
pub(crate) struct StreamSink<R>(pub(crate) Arc<Stream<R>>);

impl<R: Send> Sink<R> for StreamSink<R> {
    #[inline]
    unsafe fn put(&self, i: usize, r: R) {
        self.0.push((i, Ok(r)));
    }
    fn absorb(&self, i: usize, e: ItemError) -> Result<(), ItemError> {
        self.0.push((i, Err(e)));
        Ok(())
    }
}

/// Discards results (`R = ()`).
pub(crate) struct NoSink;
impl Sink<()> for NoSink {
    #[inline]
    unsafe fn put(&self, _i: usize, _r: ()) {}
}

// ---------------------------------------------------------------------------------------------
// The output buffer of a map into a fresh `Vec`

/// Reserves the output of a map over `n` items before anything runs: a size that cannot be
/// allocated is an error naming it, never an abort.
pub(crate) fn alloc_output<R, E>(n: usize) -> Result<Vec<R>, MapError<E>> {
    let mut v = Vec::new();
    match v.try_reserve_exact(n) {
        Ok(()) => Ok(v),
        Err(_) => Err(MapError::TooLarge {
            items: n,
            item_bytes: std::mem::size_of::<R>(),
        }),
    }
}

/// Drops the written outputs of a partly filled buffer of `n` slots (`holes` unwritten), one by
/// one; a panicking `Drop` of result `i` is noted in `rep` as a panic of item `i`.
///
/// # Safety
/// Every slot of `0..n` outside `holes` holds an initialised value that nobody else drops.
pub(crate) unsafe fn drop_written<R, E>(
    base: *mut R,
    n: usize,
    holes: &mut [Range<usize>],
    rep: &mut Report<E>,
) {
    if !std::mem::needs_drop::<R>() {
        return;
    }
    holes.sort_by_key(|r| r.start);
    let mut at = 0;
    let mut bad = Vec::new();
    for h in holes.iter().chain(std::iter::once(&(n..n))) {
        if h.start > at {
            // SAFETY: `at..h.start` lies between holes: written slots (caller contract).
            unsafe {
                crate::unwind::drop_each(base, at..h.start, &mut |i, m| {
                    bad.push((i, format!("Drop of result {i} panicked: {m}")))
                })
            };
        }
        at = at.max(h.end);
    }
    for (i, m) in bad {
        rep.note_panic(i, m);
    }
}

/// Finishes a map whose results went into the spare capacity of `out` (`n` slots): the vector
/// when every slot was written, else the written slots are dropped (once each) and the map's
/// error is returned.
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
    let mut holes = std::mem::take(&mut rep.holes);
    // SAFETY: the slots outside the holes were written (caller contract) and are dropped here,
    // once; `out` keeps length 0, so dropping it frees only the buffer.
    unsafe { drop_written(out.as_mut_ptr(), n, &mut holes, &mut rep) };
    rep.holes = holes;
    let done = rep.done(n);
    Err(rep.error(n).unwrap_or(MapError::Aborted { done, total: n }))
}

/// [`collect`] that keeps what finished: on failure the written slots are moved into a
/// `Vec<Option<R>>` (`None` for the holes) handed back with the error. If that vector cannot be
/// allocated, the written results are dropped as [`collect`] does and `results` is empty.
///
/// # Safety
/// As [`collect`].
pub(crate) unsafe fn collect_partial<R, E>(
    mut out: Vec<R>,
    n: usize,
    mut rep: Report<E>,
) -> Result<Vec<R>, crate::error::Partial<R, E>> {
    if rep.holes.is_empty() && rep.error.is_none() && rep.panic.is_none() {
        // SAFETY: no holes: every slot of 0..n was written exactly once (caller contract).
        unsafe { out.set_len(n) };
        return Ok(out);
    }
    let mut holes = std::mem::take(&mut rep.holes);
    let mut results: Vec<Option<R>> = Vec::new();
    if results.try_reserve_exact(n).is_err() {
        // SAFETY: as in `collect`: the written slots are dropped here, once.
        unsafe { drop_written(out.as_mut_ptr(), n, &mut holes, &mut rep) };
    } else {
        holes.sort_by_key(|r| r.start);
        let base = out.as_mut_ptr();
        let mut at = 0;
        for h in holes.iter().chain(std::iter::once(&(n..n))) {
            while at < h.start {
                // SAFETY: `at` lies between holes, so slot `at` was written (caller contract);
                // it is moved out exactly once (`at` only grows) and `out` keeps length 0, so
                // dropping it frees only the buffer. Pushing into reserved capacity cannot
                // panic, so no slot is left half-moved.
                results.push(Some(unsafe { base.add(at).read() }));
                at += 1;
            }
            while at < h.end {
                results.push(None);
                at += 1;
            }
        }
    }
    rep.holes = holes;
    let done = rep.done(n);
    let error = rep.error(n).unwrap_or(MapError::Aborted { done, total: n });
    Err(crate::error::Partial { results, error })
}
