//! Streaming input: maps over any iterator, read lazily by the calling thread with a bound on
//! the items in flight (ipyparallel's `imap(max_outstanding=)`, rayon's `par_bridge`).
//!
//! # How it works
//! The thread that asks for results also reads the input. It pulls items in *batches*, and each
//! batch is one background map of the pipeline ([`start`]) over an owned `Vec` — the same gate,
//! tickets, stop and drop handling as `map_async`, one `Result` per item (a panic becomes that
//! item's [`ItemError`], as in `return_exceptions`). The last participant of a batch's map
//! pushes the whole batch of results onto one [`Stream`], so a hand-off costs one lock per
//! batch, not per item. The reader keeps the batches in flight in a window, in input order:
//! [`ImapIter`] yields from the oldest batch once it is complete (a reorder window),
//! [`ImapUnorderedIter`] from whichever batch completed first. While it waits, the reader works
//! on the unfinished batches itself, like a blocking map's caller.
//!
//! # Invariants
//! * **Bound:** at most `max_in_flight` items have been read from the input and not yet
//!   yielded as results. A batch is read only when it fits under the bound, so memory is
//!   O(`max_in_flight`) items, results and batch records, whatever the input's length.
//! * Batches grow 1, 2, 4, ... items up to `min(1024, max_in_flight / 4)` (at least 1): the
//!   first result comes after one item's work, and tiny items are handed over a thousand at a
//!   time. With the default bound every engine has about four batches queued.
//! * Every item read runs at most once — exactly once unless the stream is dropped or the input
//!   panics — and every item and result is dropped exactly once, one by one (a panicking `Drop`
//!   is reported on stderr and cannot abort the process or harm an engine).
//! * Dropping a stream stops reading, aborts the batches in flight (no new chunk starts; their
//!   untaken items are dropped by the engines) and drops queued results. Nothing waits.
//! * [`LoadBalancedView::for_each_iter`] borrows its closure: it does not return (or unwind)
//!   before every batch's map has concluded, so no engine can call the closure afterwards.

use super::body::Report;
use super::input::VecInput;
use super::run::{AsyncOutput, ResultsOut, Spec, start};
use super::sink::{ResultSink, Stream};
use crate::async_result::AsyncResult;
use crate::error::{ItemError, MapError};
use crate::pool::Pool;
use crate::schedule::Schedule;
use crate::views::LoadBalancedView;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// The largest batch a streaming map reads at once.
pub(crate) const MAX_BATCH: usize = 1024;

/// Default bound on items in flight, per engine: four full batches.
pub(crate) const DEFAULT_IN_FLIGHT_PER_ENGINE: usize = 4 * MAX_BATCH;

/// One batch's results. Dropped value by value, so that a panicking `Drop` of one result
/// cannot abort the process by panicking again during another's.
pub(crate) struct Batch<R>(Vec<Result<R, ItemError>>);

impl<R> Drop for Batch<R> {
    fn drop(&mut self) {
        drop_results(self.0.drain(..));
    }
}

/// Drops results one by one; a panicking `Drop` is reported, the others still run.
fn drop_results<R>(results: impl Iterator<Item = Result<R, ItemError>>) {
    for r in results {
        if let Err(m) = crate::unwind::drop_caught(r) {
            crate::unwind::report_orphan("a streamed result", &m);
        }
    }
}

/// Drops a value that parview owns where nobody can be told of a panic.
fn drop_quietly<T>(v: T, what: &str) {
    if let Err(m) = crate::unwind::drop_caught(v) {
        crate::unwind::report_orphan(what, &m);
    }
}

/// Where a batch's map puts its results: one `Result` per item (as `return_exceptions`), and,
/// once the map concludes, the whole batch onto the stream as message `seq`.
struct BatchOut<R> {
    results: ResultsOut<R>,
    stream: Arc<Stream<Batch<R>>>,
    seq: usize,
}

impl<R: Send + 'static> AsyncOutput for BatchOut<R> {
    type R = R;
    type E = Infallible;
    type Sink = ResultSink<R>;
    type T = ();
    fn finish(&self, rep: Report<Infallible>, n: usize) -> Result<(), MapError> {
        let msg = match self.results.finish(rep, n) {
            Ok(v) => Ok(Batch(v)),
            Err(e) => {
                // Items' panics are kept per item, so an error means the batch was aborted
                // (the stream is gone) — and a panic here came from dropping an untaken input.
                if let MapError::Panicked { message, .. } = &e {
                    crate::unwind::report_orphan("an input item of a streaming map", message);
                }
                Err(ItemError {
                    index: 0,
                    message: e.to_string(),
                })
            }
        };
        // Cannot panic: a closed stream drops the batch, and `Batch` drops value by value.
        self.stream.push((self.seq, msg));
        Ok(())
    }
    fn drop_value(_v: ()) {}
}

/// One batch in flight.
struct Slot<R> {
    /// Index of its first item in the input.
    base: usize,
    len: usize,
    /// Its map, until its results arrived.
    ar: Option<AsyncResult<()>>,
    /// Its results, once arrived and until they are opened.
    got: Option<Result<Batch<R>, ItemError>>,
    /// Opened: its results moved to `Current` (or were dropped).
    opened: bool,
}

/// The batch whose results are being yielded.
struct Current<R> {
    base: usize,
    pos: usize,
    it: std::vec::IntoIter<Result<R, ItemError>>,
}

/// The reader: input, the batches in flight and their results. Shared by both iterators and
/// `for_each_iter`.
struct Feed<'p, I: Iterator, R> {
    pool: &'p Pool,
    schedule: Schedule,
    /// `None` once exhausted (or after it panicked).
    source: Option<I>,
    f: Arc<dyn Fn(I::Item) -> R + Send + Sync>,
    stream: Arc<Stream<Batch<R>>>,
    /// Batches in flight, by sequence number: `slots[k]` is batch `first_seq + k`.
    slots: VecDeque<Slot<R>>,
    first_seq: usize,
    /// Unordered: batches whose results arrived, in arrival order.
    arrived: VecDeque<usize>,
    ordered: bool,
    /// `for_each_iter`: dropping waits until every batch's map has concluded.
    scoped: bool,
    bound: usize,
    batch: usize,
    cap: usize,
    /// Items read so far (the next batch's base).
    read: usize,
    /// Items read and not yet yielded.
    in_flight: usize,
    cur: Option<Current<R>>,
}

impl<'p, I, R> Feed<'p, I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    fn new(
        view: &LoadBalancedView<'p>,
        source: I,
        f: Arc<dyn Fn(I::Item) -> R + Send + Sync>,
        ordered: bool,
        scoped: bool,
    ) -> Self {
        if let Err(e) = view.schedule.validate() {
            panic!("parview: {e}");
        }
        let bound = view.get_max_in_flight();
        Feed {
            pool: view.pool,
            schedule: view.schedule,
            source: Some(source),
            f,
            stream: Arc::new(Stream::new()),
            slots: VecDeque::new(),
            first_seq: 0,
            arrived: VecDeque::new(),
            ordered,
            scoped,
            bound,
            batch: 1,
            cap: (bound / 4).clamp(1, MAX_BATCH),
            read: 0,
            in_flight: 0,
            cur: None,
        }
    }

    /// Reads batches while one more fits under the bound.
    fn fill(&mut self) {
        while self.source.is_some() && self.in_flight + self.batch <= self.bound {
            self.read_batch();
        }
    }

    /// Reads up to one batch from the input and starts its map. A panic of the input's
    /// `next()` abandons everything in flight, then propagates.
    fn read_batch(&mut self) {
        let Some(src) = self.source.as_mut() else {
            return;
        };
        let want = self.batch;
        let mut items = Vec::with_capacity(want);
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
            while items.len() < want {
                match src.next() {
                    Some(x) => items.push(x),
                    None => return true,
                }
            }
            false
        }));
        match read {
            Ok(exhausted) => {
                if exhausted {
                    self.source = None;
                }
                self.batch = (self.batch * 2).min(self.cap);
                if !items.is_empty() {
                    self.submit(items);
                }
            }
            Err(payload) => {
                if let Some(s) = self.source.take() {
                    drop_quietly(s, "the input iterator of a streaming map");
                }
                for x in items {
                    drop_quietly(x, "an input item of a streaming map");
                }
                self.abandon();
                std::panic::resume_unwind(payload);
            }
        }
    }

    /// Starts the map of one batch.
    fn submit(&mut self, items: Vec<I::Item>) {
        let n = items.len();
        let base = self.read;
        self.read += n;
        self.in_flight += n;
        let seq = self.first_seq + self.slots.len();
        let ar = match ResultsOut::new(n) {
            Ok((results, sink)) => {
                let f = self.f.clone();
                let out = BatchOut {
                    results,
                    stream: self.stream.clone(),
                    seq,
                };
                let map = start(
                    &self.pool.reg,
                    &Spec::shared(self.schedule),
                    VecInput::new(items),
                    move |_: &mut (), x| Ok(f(x)),
                    (out, sink),
                    "streaming map",
                    false,
                );
                Some(AsyncResult::from_core(map))
            }
            Err(e) => {
                // The results of this batch cannot be allocated: every item fails with it.
                for x in items {
                    drop_quietly(x, "an input item of a streaming map");
                }
                let e = ItemError {
                    index: 0,
                    message: e.to_string(),
                };
                self.stream.push((seq, Err(e)));
                None
            }
        };
        self.slots.push_back(Slot {
            base,
            len: n,
            ar,
            got: None,
            opened: false,
        });
    }

    /// Moves every message waiting on the stream into its slot; false if there was none.
    fn drain_queue(&mut self) -> bool {
        let mut any = false;
        while let Some((seq, msg)) = self.stream.pop() {
            any = true;
            let Some(slot) = self.slots.get_mut(seq.wrapping_sub(self.first_seq)) else {
                continue; // a batch abandoned earlier: dropped (value by value)
            };
            slot.got = Some(msg);
            // Its map concluded (the message is sent by its last participant).
            slot.ar = None;
            if !self.ordered {
                self.arrived.push_back(seq);
            }
        }
        any
    }

    /// Waits for at least one batch's results (there must be a batch in flight), working on
    /// the unfinished batches meanwhile.
    ///
    /// # Panics
    /// On an engine nested [`MAX_NESTED_WAITS`](crate::MAX_NESTED_WAITS) waits deep.
    fn receive(&mut self) {
        if self.drain_queue() {
            return;
        }
        crate::registry::nested(|| {
            let stream = &self.stream;
            for s in &self.slots {
                if stream.has_message() {
                    break;
                }
                if let Some(ar) = s.ar.as_ref().filter(|ar| !ar.ready()) {
                    ar.core.help();
                }
            }
            stream
                .bell
                .wait(&|| stream.has_message(), None, self.pool.reg.spin);
        });
        self.drain_queue();
    }

    /// Makes batch `seq` (whose results arrived) the current one.
    fn open(&mut self, seq: usize) {
        let slot = &mut self.slots[seq - self.first_seq];
        let (base, len) = (slot.base, slot.len);
        let msg = slot.got.take().expect("opened batches have arrived");
        slot.opened = true;
        while self.slots.front().is_some_and(|s| s.opened) {
            self.slots.pop_front();
            self.first_seq += 1;
        }
        let results = match msg {
            Ok(mut b) => std::mem::take(&mut b.0),
            Err(e) => (0..len)
                .map(|k| {
                    Err(ItemError {
                        index: k,
                        message: e.message.clone(),
                    })
                })
                .collect(),
        };
        self.cur = Some(Current {
            base,
            pos: 0,
            it: results.into_iter(),
        });
    }

    /// The next result of the current batch, with its input index.
    fn take_current(&mut self) -> Option<(usize, Result<R, ItemError>)> {
        let c = self.cur.as_mut()?;
        match c.it.next() {
            Some(mut r) => {
                let i = c.base + c.pos;
                c.pos += 1;
                if let Err(e) = &mut r {
                    e.index = i;
                }
                self.in_flight -= 1;
                Some((i, r))
            }
            None => {
                self.cur = None;
                None
            }
        }
    }

    /// The next result in input order.
    fn next_ordered(&mut self) -> Option<(usize, Result<R, ItemError>)> {
        loop {
            if let Some(x) = self.take_current() {
                return Some(x);
            }
            self.fill();
            if self.slots.front()?.got.is_some() {
                self.open(self.first_seq);
                continue;
            }
            self.receive();
        }
    }

    /// The next result of whichever batch completed first.
    fn next_unordered(&mut self) -> Option<(usize, Result<R, ItemError>)> {
        loop {
            if let Some(x) = self.take_current() {
                return Some(x);
            }
            self.fill();
            if let Some(seq) = self.arrived.pop_front() {
                self.open(seq);
                continue;
            }
            if self.slots.is_empty() {
                return None;
            }
            self.receive();
        }
    }
}

impl<I: Iterator, R> Feed<'_, I, R> {
    /// Aborts every batch in flight and forgets them: no new chunk starts, queued and later
    /// results are dropped, and the stream ends (`next` returns `None`, never waits). Scoped
    /// (`for_each_iter`): first waits until every batch's map has concluded.
    fn abandon(&mut self) {
        for s in &self.slots {
            if let Some(ar) = &s.ar {
                ar.abort();
            }
        }
        self.stream.close();
        if self.scoped {
            // `for_each_iter`'s closure is borrowed: wait until no participant of any batch can
            // call it. `Signal::wait` cannot panic (nesting was checked on entry), so this wait
            // happens on every path out of `for_each_iter`, unwinding included.
            let _level = crate::registry::enter_nested().ok();
            for s in &self.slots {
                if let Some(ar) = &s.ar {
                    let sig = ar.core.signal();
                    sig.wait(&|| sig.is_set(), None, self.pool.reg.spin);
                }
            }
        }
        // Dropping a handle whose map is not finished aborts it (again); nothing blocks.
        self.slots.clear();
        self.arrived.clear();
        if let Some(c) = self.cur.take() {
            drop_results(c.it);
        }
        self.in_flight = 0;
    }
}

impl<I: Iterator, R> Drop for Feed<'_, I, R> {
    fn drop(&mut self) {
        self.abandon();
        if let Some(s) = self.source.take() {
            drop_quietly(s, "the input iterator of a streaming map");
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Results of [`LoadBalancedView::imap_iter`] in input order, each as soon as it and all before
/// it are done. Reading the input happens in [`next`](Iterator::next), on the thread that
/// iterates. Dropping it stops reading and aborts the work in flight.
pub struct ImapIter<'p, I: Iterator, R> {
    feed: Feed<'p, I, R>,
}

/// `(index, result)` pairs of [`LoadBalancedView::imap_unordered_iter`], a batch at a time in
/// the order batches complete. Dropping it stops reading and aborts the work in flight.
pub struct ImapUnorderedIter<'p, I: Iterator, R> {
    feed: Feed<'p, I, R>,
}

impl<I: Iterator, R> std::fmt::Debug for ImapIter<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapIter")
            .field("read", &self.feed.read)
            .field("in_flight", &self.feed.in_flight)
            .field("max_in_flight", &self.feed.bound)
            .finish()
    }
}

impl<I: Iterator, R> std::fmt::Debug for ImapUnorderedIter<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUnorderedIter")
            .field("read", &self.feed.read)
            .field("in_flight", &self.feed.in_flight)
            .field("max_in_flight", &self.feed.bound)
            .finish()
    }
}

impl<I, R> Iterator for ImapIter<'_, I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = Result<R, ItemError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.feed.next_ordered().map(|(_, r)| r)
    }
}

impl<I, R> Iterator for ImapUnorderedIter<'_, I, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    R: Send + 'static,
{
    type Item = (usize, Result<R, ItemError>);
    fn next(&mut self) -> Option<Self::Item> {
        self.feed.next_unordered()
    }
}

impl<I: Iterator, R> ImapIter<'_, I, R> {
    /// Items read from the input and not yet yielded (never more than the view's
    /// [`max_in_flight`](LoadBalancedView::max_in_flight)).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut it = pool.load_balanced().max_in_flight(8).imap_iter(0..1_000_000u64, |x| x + 1);
    /// assert_eq!(it.next(), Some(Ok(1)));
    /// assert!(it.in_flight() <= 8);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.feed.in_flight
    }
}

impl<I: Iterator, R> ImapUnorderedIter<'_, I, R> {
    /// Items read from the input and not yet yielded (never more than the view's
    /// [`max_in_flight`](LoadBalancedView::max_in_flight)).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut it = pool.load_balanced().max_in_flight(8).imap_unordered_iter(0..1_000u64, |x| x);
    /// assert!(it.next().is_some());
    /// assert!(it.in_flight() <= 8);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.feed.in_flight
    }
}

/// A borrowed closure with its lifetime erased, for [`LoadBalancedView::for_each_iter`].
struct ErasedFn<T>(*const (dyn Fn(T) + Sync + 'static));

// SAFETY: the pointee is `Sync`, so it may be called from any thread through a shared
// reference; the pointer is only dereferenced while it is alive (see `call`).
unsafe impl<T> Send for ErasedFn<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for ErasedFn<T> {}

impl<T> ErasedFn<T> {
    /// # Safety
    /// The closure this was made from is still alive.
    unsafe fn call(&self, x: T) {
        // SAFETY: alive (caller contract) and `Sync`.
        unsafe { (*self.0)(x) }
    }
}

impl<'p> LoadBalancedView<'p> {
    /// Bounds the items a streaming map ([`imap_iter`](Self::imap_iter),
    /// [`imap_unordered_iter`](Self::imap_unordered_iter),
    /// [`for_each_iter`](Self::for_each_iter)) has read from its input and not yet yielded
    /// (ipyparallel's `imap(max_outstanding=)`): memory stays O(`n`) however long the input.
    /// Default: 4,096 per engine (four batches of 1,024 items each). Batches hold up to
    /// `min(1024, n / 4)` items, so a small bound also means small batches (less amortised
    /// hand-off per item); `n` below the number of engines leaves engines idle.
    ///
    /// # Panics
    /// If `n == 0` (the message names `max_in_flight`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced().max_in_flight(64);
    /// assert_eq!(lb.get_max_in_flight(), 64);
    /// let v: Vec<u64> = lb.imap_iter(0..1000u64, |x| x * 2).map(Result::unwrap).collect();
    /// assert_eq!(v[999], 1998);
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        assert!(
            n > 0,
            "parview: invalid argument `max_in_flight`: must be at least 1, got 0"
        );
        self.max_in_flight = Some(n);
        self
    }

    /// The bound of [`max_in_flight`](Self::max_in_flight): the one set, or the default of
    /// 4,096 items per engine.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().get_max_in_flight(), 2 * 4096);
    /// ```
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
            .unwrap_or_else(|| DEFAULT_IN_FLIGHT_PER_ENGINE.saturating_mul(self.pool.workers()))
    }

    /// Maps any iterator (a file's lines, a generator, a channel's receiver) with results in
    /// input order, reading it lazily on the thread that iterates the results, with at most
    /// [`max_in_flight`](Self::max_in_flight) items read and not yet yielded
    /// (`multiprocessing.Pool.imap` over a generator, ipyparallel's `imap(max_outstanding=)`,
    /// rayon's `par_bridge` with order kept). The iterator itself never leaves the calling
    /// thread, so it need not be `Send`; its items must be.
    ///
    /// Items are read in batches (1, 2, 4, ... up to 1,024), and each batch runs as a map with
    /// the view's schedule, so handing over a tiny item costs nanoseconds. Results come a batch
    /// at a time: item `i`'s once its whole batch and every earlier one are done. Reading
    /// starts at once (up to the bound); while the caller waits for results it works on the
    /// batches in flight.
    ///
    /// Cost to know: reading is serial, and an item that owns heap memory (a `String` line) is
    /// allocated by the reading thread and freed by an engine. With glibc's allocator such a
    /// cross-thread free cost about 100 ns per item on our 2-core test machine (BENCHMARKS.md),
    /// as much as a light per-line function: streaming pays off when the per-item work is
    /// well above that, or when items are plain data.
    ///
    /// # Panics
    /// A panic in `f` does not unwind: that item yields `Err(`[`ItemError`]`)` (its index in
    /// the input and the message), every other item still runs, and no engine dies. A panic in
    /// the input iterator's `next()` propagates from this call or from `next()` on the result
    /// (on the calling thread), after the work in flight is aborted: no new chunk starts, the
    /// engines drop the items nobody took, and the stream then ends. Also panics if the view's
    /// schedule is invalid (the message names `chunk`), or on an engine nested too deep.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lines = (0..10_000).map(|i| format!("line {i} has words"));
    /// let words: Vec<usize> = pool
    ///     .load_balanced()
    ///     .imap_iter(lines, |l| l.split_whitespace().count())
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(words.len(), 10_000);
    /// assert!(words.iter().all(|&w| w == 4));
    ///
    /// // An endless input: only a prefix (plus at most the bound) is ever read.
    /// let first: Vec<u64> = pool.load_balanced().imap_iter(0u64.., |x| x * x)
    ///     .take(3).map(Result::unwrap).collect();
    /// assert_eq!(first, vec![0, 1, 4]);
    /// ```
    pub fn imap_iter<I, R, F>(&self, input: I, f: F) -> ImapIter<'p, I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let mut feed = Feed::new(self, input.into_iter(), Arc::new(f), true, false);
        feed.fill();
        ImapIter { feed }
    }

    /// [`imap_iter`](Self::imap_iter) with `(index, result)` pairs as batches complete, not in
    /// input order (`imap_unordered`): a slow item holds back only its own batch. Every item
    /// read is yielded exactly once.
    ///
    /// # Panics
    /// As [`imap_iter`](Self::imap_iter): a panic in `f` yields `(index, Err(ItemError))` and
    /// kills no engine; a panic in the input's `next()` propagates after the work in flight
    /// is aborted.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut got: Vec<(usize, u32)> = pool
    ///     .load_balanced()
    ///     .imap_unordered_iter((0..100u32).rev(), |x| x + 1)
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// got.sort();
    /// assert_eq!(got[0], (0, 100)); // index 0 is the first item read: 99
    /// assert_eq!(got.len(), 100);
    /// ```
    pub fn imap_unordered_iter<I, R, F>(
        &self,
        input: I,
        f: F,
    ) -> ImapUnorderedIter<'p, I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let mut feed = Feed::new(self, input.into_iter(), Arc::new(f), false, false);
        feed.fill();
        ImapUnorderedIter { feed }
    }

    /// Runs `f` on every item of any iterator, read lazily on the calling thread with at most
    /// [`max_in_flight`](Self::max_in_flight) items in flight (rayon's
    /// `par_bridge().for_each`). Blocks until every item ran. Unlike the `imap_iter` forms, `f`
    /// may borrow from the caller's stack (it need not be `'static`): this call returns only
    /// after no engine can run it any more, also when it panics.
    ///
    /// # Panics
    /// If `f` panics on some items, every other item still runs (no engine dies), then this
    /// call panics naming the lowest failing input index and how many items failed, like
    /// [`Pool::par_for_each`]. A panic in the input iterator's `next()` propagates once the work
    /// in flight is aborted and every engine has left it (items already read and not started
    /// are dropped). Also panics if the view's schedule is invalid (the message names `chunk`),
    /// or on an engine nested [`MAX_NESTED_WAITS`](crate::MAX_NESTED_WAITS) waits deep.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let total = AtomicU64::new(0); // borrowed, not 'static
    /// let lines = (0..50_000u64).map(|i| i.to_string());
    /// pool.load_balanced().max_in_flight(1024).for_each_iter(lines, |l| {
    ///     total.fetch_add(l.len() as u64, Ordering::Relaxed);
    /// });
    /// let serial: u64 = (0..50_000u64).map(|i| i.to_string().len() as u64).sum();
    /// assert_eq!(total.into_inner(), serial);
    /// ```
    pub fn for_each_iter<I, F>(&self, input: I, f: F)
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) + Sync,
    {
        // Checked before anything is shared, so that the waits below cannot panic.
        if let Err(m) = crate::registry::check_nesting() {
            panic!("{m}");
        }
        let local: &(dyn Fn(I::Item) + Sync + '_) = &f;
        let local: *const (dyn Fn(I::Item) + Sync + '_) = local;
        // SAFETY: only the lifetime is erased. The pointer is called by the participants of
        // the batch maps started by `feed`; `feed` is a local of this function, so it is
        // dropped before the parameter `f`, on every path out (unwinding included), and its
        // `Drop` (scoped) does not return until every batch's map has concluded, after which
        // no participant touches the closure again.
        let erased: ErasedFn<I::Item> = ErasedFn(unsafe {
            std::mem::transmute::<
                *const (dyn Fn(I::Item) + Sync + '_),
                *const (dyn Fn(I::Item) + Sync + 'static),
            >(local)
        });
        let g = move |x: I::Item| {
            // SAFETY: see above: `f` outlives every call made through `erased`.
            unsafe { erased.call(x) }
        };
        let mut feed = Feed::new(self, input.into_iter(), Arc::new(g), false, true);
        let mut failed: Option<(usize, String)> = None;
        let mut count = 0usize;
        while let Some((i, r)) = feed.next_unordered() {
            if let Err(e) = r {
                count += 1;
                if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                    failed = Some((i, e.message));
                }
            }
        }
        let n = feed.read;
        drop(feed);
        if let Some((index, message)) = failed {
            crate::map::raise(
                MapError::<Infallible>::Panicked {
                    index,
                    message,
                    failed: count,
                },
                n,
            );
        }
    }
}

/// Small cases of the unsafe paths (the erased closure of `for_each_iter`, batches of owned
/// items dropped on abort), sized for Miri (`.ci/miri.sh`: `map::stream::tests`).
#[cfg(test)]
mod tests {
    use crate::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn for_each_iter_calls_a_borrowed_closure_once_per_item() {
        let pool = Pool::builder().workers(2).build().unwrap();
        let hits: Vec<AtomicUsize> = (0..40).map(|_| AtomicUsize::new(0)).collect();
        pool.load_balanced().max_in_flight(6).for_each_iter(
            (0..40usize).map(|i| vec![i; 2]),
            |v| {
                hits[v[0]].fetch_add(1, Ordering::Relaxed);
            },
        );
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn a_failing_input_stops_for_each_iter_after_the_engines_left() {
        let pool = Pool::builder().workers(2).build().unwrap();
        let calls = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.load_balanced().max_in_flight(4).for_each_iter(
                (0..30usize).map(|i| {
                    assert!(i != 20, "input broke");
                    String::from("item")
                }),
                |s| {
                    calls.fetch_add(s.len(), Ordering::SeqCst);
                },
            )
        }));
        assert!(r.is_err());
        let after = calls.load(Ordering::SeqCst);
        assert!(after <= 20 * 4);
        assert_eq!(pool.par_map(0..3u8, |x| x), vec![0, 1, 2]);
        assert_eq!(calls.load(Ordering::SeqCst), after);
    }

    #[test]
    fn dropping_an_unfinished_stream_of_owned_items_is_clean() {
        let pool = Pool::builder().workers(2).build().unwrap();
        let mut it = pool
            .load_balanced()
            .max_in_flight(8)
            .imap_iter((0..1000usize).map(|i| vec![i]), |v| v[0] * 2);
        assert_eq!(it.next(), Some(Ok(0)));
        drop(it);
        let mut un = pool
            .load_balanced()
            .max_in_flight(8)
            .imap_unordered_iter((0..1000usize).map(|i| vec![i]), |v| vec![v[0]]);
        assert!(un.next().is_some());
    }
}
