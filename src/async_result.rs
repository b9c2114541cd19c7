//! [`AsyncResult`]: a map or task running in the background, with ready/wait/get, progress,
//! abort and ipyparallel's timings.
//!
//! # Invariants
//! * The result is produced exactly once, by the last participant to leave the map's gate, and
//!   is visible to every thread that sees [`AsyncResult::ready`] return true.
//! * [`AsyncResult::progress`] comes from lock-free counters bumped once per finished chunk: it
//!   never decreases and reaches `total` unless the map was aborted.
//! * [`AsyncResult::abort`]: once it returns, no new chunk starts (a chunk whose claim was made
//!   before may still begin); running chunks finish; [`AsyncResult::get`] then returns
//!   [`MapError::Aborted`] with the number of items done, unless everything had already finished.
//! * **Dropping** an `AsyncResult` that is not ready aborts the map (Rust's drop-cancels rule):
//!   nothing blocks, no thread leaks, and the engines drop the remaining work. Call
//!   [`AsyncResult::wait`] first to let it finish.

use crate::error::{ItemError, MapError};
use crate::latch::Gate;
use crate::map::{
    Body, ChannelSink, IntoMapInput, Participate, Report, ResultSink, Sink, Timings, Tracker,
    VecSink, Work, collect,
};
use crate::pool::{Job, Pool};
use crate::schedule::{Claimer, Dispenser, Schedule};
use crate::timeline::{Lane, Timeline};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A one-shot completion flag that many threads can wait on.
pub(crate) struct Completion {
    done: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Completion {
    fn new() -> Self {
        Completion {
            done: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    fn set(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.done.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_set() {
            match deadline {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

/// How the results of a background map are kept and finally handed out.
pub(crate) trait AsyncOutput: Send + Sync + Sized + 'static {
    type R: Send;
    type Sink: Sink<Self::R> + Send + 'static;
    type T: Send + 'static;
    fn new(n: usize) -> (Self, Self::Sink);
    fn finish(&self, rep: Report<Infallible>, n: usize, done: usize) -> Result<Self::T, MapError>;
}

/// Results in a `Vec<R>`, in input order.
pub(crate) struct VecOut<R>(Mutex<Vec<R>>);

impl<R: Send + 'static> AsyncOutput for VecOut<R> {
    type R = R;
    type Sink = VecSink<R>;
    type T = Vec<R>;
    fn new(n: usize) -> (Self, VecSink<R>) {
        let mut v = Vec::with_capacity(n);
        let sink = VecSink(v.as_mut_ptr());
        (VecOut(Mutex::new(v)), sink)
    }
    fn finish(&self, rep: Report<Infallible>, n: usize, _done: usize) -> Result<Vec<R>, MapError> {
        let v = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        // SAFETY: called once, by the last participant, after the gate closed; the sink wrote
        // exactly the slots outside the report's holes.
        unsafe { collect(v, n, rep) }
    }
}

/// `Result<R, ItemError>` per item (`return_exceptions`).
pub(crate) struct ResultsOut<R>(Mutex<Vec<Result<R, ItemError>>>);

impl<R: Send + 'static> AsyncOutput for ResultsOut<R> {
    type R = R;
    type Sink = ResultSink<R>;
    type T = Vec<Result<R, ItemError>>;
    fn new(n: usize) -> (Self, ResultSink<R>) {
        let mut v = Vec::with_capacity(n);
        let sink = ResultSink(VecSink(v.as_mut_ptr()));
        (ResultsOut(Mutex::new(v)), sink)
    }
    fn finish(
        &self,
        mut rep: Report<Infallible>,
        n: usize,
        _done: usize,
    ) -> Result<Self::T, MapError> {
        let v = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        rep.panic = None; // absorbed: each panicked item holds its ItemError
        // SAFETY: as for `VecOut`: the last participant, once, after the gate closed.
        unsafe { collect(v, n, rep) }
    }
}

/// Streams `(index, result)` to an iterator as items finish (`imap`).
pub(crate) struct ChannelOut<R>(std::marker::PhantomData<fn() -> R>);

type Msg<R> = (usize, Result<R, ItemError>);

impl<R: Send + 'static> ChannelOut<R> {
    fn with_sender(tx: std::sync::mpsc::Sender<Msg<R>>) -> (Self, ChannelSink<R>) {
        (ChannelOut(std::marker::PhantomData), ChannelSink(tx))
    }
}

impl<R: Send + 'static> AsyncOutput for ChannelOut<R> {
    type R = R;
    type Sink = ChannelSink<R>;
    type T = ();
    fn new(_n: usize) -> (Self, ChannelSink<R>) {
        unreachable!("ChannelOut is built with a sender")
    }
    fn finish(&self, _rep: Report<Infallible>, _n: usize, _done: usize) -> Result<(), MapError> {
        Ok(())
    }
}

/// A background map: gate, body and the place its result goes.
struct AsyncMap<In, F, O: AsyncOutput> {
    gate: Gate,
    body: Body<In, F, O::Sink, O::R, Infallible>,
    out: O,
    completion: Completion,
    result: Mutex<Option<Result<O::T, MapError>>>,
    n: usize,
    label: String,
    engines: usize,
    timeline: bool,
    timeline_taken: AtomicBool,
}

impl<In, F, O> AsyncMap<In, F, O>
where
    In: crate::map::input::MapInput + Send + 'static,
    F: Fn(In::Item) -> Result<O::R, Infallible> + Send + Sync + 'static,
    O: AsyncOutput,
{
    fn tracker(&self) -> &Tracker {
        self.body
            .tracker
            .as_deref()
            .expect("async maps always track")
    }

    fn finish(&self) {
        if self.gate.finish() {
            let rep = self.body.conclude();
            let res = self.out.finish(rep, self.n, self.tracker().done());
            *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(res);
            self.tracker().mark_finished();
            self.completion.set();
        }
    }
}

impl<In, F, O> Participate for AsyncMap<In, F, O>
where
    In: crate::map::input::MapInput + Send + 'static,
    F: Fn(In::Item) -> Result<O::R, Infallible> + Send + Sync + 'static,
    O: AsyncOutput,
{
    fn join(&self, lane: Lane) {
        if self.gate.enter() {
            self.body.work(lane, true, &mut Claimer::default(), None);
            self.finish();
        }
    }

    fn run_slot(&self, lane: Lane, slot: usize) {
        self.body.run_slot(lane, slot);
        self.finish();
    }
}

/// What an [`AsyncResult`] needs from the map behind it.
pub(crate) trait AsyncCore<T>: Send + Sync {
    fn completion(&self) -> &Completion;
    fn take(&self) -> Option<Result<T, MapError>>;
    fn tracker(&self) -> &Arc<Tracker>;
    fn stop(&self);
    fn timeline(&self) -> Option<Timeline>;
}

impl<In, F, O> AsyncCore<O::T> for AsyncMap<In, F, O>
where
    In: crate::map::input::MapInput + Send + 'static,
    F: Fn(In::Item) -> Result<O::R, Infallible> + Send + Sync + 'static,
    O: AsyncOutput,
{
    fn completion(&self) -> &Completion {
        &self.completion
    }
    fn take(&self) -> Option<Result<O::T, MapError>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
    fn tracker(&self) -> &Arc<Tracker> {
        self.body.tracker.as_ref().expect("async maps always track")
    }
    fn stop(&self) {
        self.body.stop();
    }
    fn timeline(&self) -> Option<Timeline> {
        if !self.timeline
            || !self.completion.is_set()
            || self.timeline_taken.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        let (records, wall) = self.tracker().take_records();
        Some(Timeline::new(
            self.label.clone(),
            self.engines,
            wall,
            records,
        ))
    }
}

/// A map or task running in the background (ipyparallel's `AsyncResult`,
/// `concurrent.futures.Future`).
///
/// # Examples
/// ```
/// use parview::Pool;
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let ar = pool.load_balanced().map_async((0..1000u64).collect::<Vec<_>>(), |x| x * x);
/// ar.wait();
/// assert!(ar.ready());
/// assert_eq!(ar.progress(), (1000, 1000));
/// assert!(ar.serial_time() > std::time::Duration::ZERO);
/// let v = ar.get().unwrap();
/// assert_eq!(v[999], 999 * 999);
/// ```
pub struct AsyncResult<T> {
    core: Arc<dyn AsyncCore<T>>,
    /// Whether dropping this handle aborts an unfinished map.
    armed: bool,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (d, t) = self.progress();
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .field("progress", &format_args!("{d}/{t}"))
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// Whether the result is available (the map finished, failed or was aborted).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| 1 + 1);
    /// ar.wait();
    /// assert!(ar.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.core.completion().is_set()
    }

    /// Blocks until the result is available. The waiting thread sleeps; it does not help.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(vec![1, 2, 3], |x| x + 1);
    /// ar.wait();
    /// assert_eq!(ar.progress(), (3, 3));
    /// ```
    pub fn wait(&self) {
        self.core.completion().wait_deadline(None);
    }

    /// Waits at most `timeout`; true if the result is available.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| std::thread::sleep(Duration::from_millis(200)));
    /// assert!(!ar.wait_timeout(Duration::from_millis(1)));
    /// assert!(ar.wait_timeout(Duration::from_secs(10)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.core
            .completion()
            .wait_deadline(Some(Instant::now() + timeout))
    }

    /// Waits, then returns the result.
    ///
    /// # Errors
    /// [`MapError::Panicked`] (lowest index, message, count) if items panicked,
    /// [`MapError::Aborted`] if [`abort`](Self::abort) stopped the map first.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(vec![1, 0, 3], |x| 6 / x);
    /// let e = ar.get().unwrap_err();
    /// assert!(matches!(e, parview::MapError::Panicked { index: 1, failed: 1, .. }));
    /// ```
    pub fn get(self) -> Result<T, MapError> {
        self.wait();
        self.core
            .take()
            .expect("the result is taken once, by `get`")
    }

    /// `(done, total)` items, from lock-free counters updated once per finished chunk. Never
    /// decreases; reaches `total` unless aborted.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async((0..10u32).collect::<Vec<_>>(), |x| x);
    /// let (done, total) = ar.progress();
    /// assert!(done <= total && total == 10);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        let t = self.core.tracker();
        (t.done(), t.total)
    }

    /// Stops the map: once this returns, no new chunk starts; running chunks finish. `get`
    /// then returns [`MapError::Aborted`] unless everything was already done.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced().schedule(parview::Schedule::Dynamic(1));
    /// let ar = lb.map_async((0..1000u64).collect::<Vec<_>>(), |_| std::thread::sleep(Duration::from_millis(1)));
    /// ar.abort();
    /// assert!(matches!(ar.get(), Err(parview::MapError::Aborted { .. })));
    /// ```
    pub fn abort(&self) {
        self.core.stop();
    }

    /// Time since the map was submitted (ipyparallel's `elapsed`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| ());
    /// ar.wait();
    /// assert!(ar.elapsed() > std::time::Duration::ZERO);
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.core.tracker().elapsed()
    }

    /// First chunk start to last chunk finish so far.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async((0..100u32).collect::<Vec<_>>(), |x| x);
    /// ar.wait();
    /// assert!(ar.wall_time() <= ar.elapsed());
    /// ```
    pub fn wall_time(&self) -> Duration {
        self.core.tracker().timings().wall_time
    }

    /// Sum of the busy time of all chunks so far; `serial_time / wall_time` is the achieved
    /// parallelism.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async((0..100u32).collect::<Vec<_>>(), |x| x);
    /// ar.wait();
    /// let t = ar.timings();
    /// assert_eq!(t.serial_time, ar.serial_time());
    /// ```
    pub fn serial_time(&self) -> Duration {
        self.core.tracker().timings().serial_time
    }

    /// Wall and serial time together.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(1).build().unwrap();
    /// let ar = pool.load_balanced().submit(|| 3);
    /// ar.wait();
    /// let _ = ar.timings().wall_time;
    /// ```
    pub fn timings(&self) -> Timings {
        self.core.tracker().timings()
    }

    /// The per-chunk timeline, if the view recorded one
    /// ([`LoadBalancedView::record_timeline`](crate::LoadBalancedView::record_timeline)) and the
    /// map has finished. Taken once: later calls return `None`.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().record_timeline().map_async((0..100u32).collect::<Vec<_>>(), |x| x);
    /// ar.wait();
    /// let tl = ar.timeline().unwrap();
    /// assert_eq!(tl.items(), 100);
    /// ```
    pub fn timeline(&self) -> Option<Timeline> {
        self.core.timeline()
    }
}

impl<T: Send + 'static> AsyncResult<T> {
    /// Applies `f` to the value once it is there (the map behind stays the same).
    pub(crate) fn map_value<U: Send + 'static>(
        self,
        f: impl FnOnce(T) -> U + Send + Sync + 'static,
    ) -> AsyncResult<U> {
        let f = Mutex::new(Some(f));
        let mut me = self;
        me.armed = false; // the new handle takes over; dropping `me` must not abort
        AsyncResult {
            core: Arc::new(Mapped {
                inner: me.core.clone(),
                f,
            }),
            armed: true,
        }
    }
}

struct Mapped<T, U, F: FnOnce(T) -> U> {
    inner: Arc<dyn AsyncCore<T>>,
    f: Mutex<Option<F>>,
}

impl<T, U, F> AsyncCore<U> for Mapped<T, U, F>
where
    F: FnOnce(T) -> U + Send + Sync,
    T: Send,
{
    fn completion(&self) -> &Completion {
        self.inner.completion()
    }
    fn take(&self) -> Option<Result<U, MapError>> {
        let r = self.inner.take()?;
        let f = self.f.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(r.map(f))
    }
    fn tracker(&self) -> &Arc<Tracker> {
        self.inner.tracker()
    }
    fn stop(&self) {
        self.inner.stop()
    }
    fn timeline(&self) -> Option<Timeline> {
        self.inner.timeline()
    }
}

#[cfg(feature = "progress")]
impl<T> AsyncResult<T> {
    /// Draws a progress bar for this map on stderr until it finishes (hidden when stderr is not
    /// a terminal). Feature `progress`.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(0..1000u64, |i| i + 1);
    /// ar.show_progress("increment");
    /// assert_eq!(ar.get().unwrap().len(), 1000);
    /// ```
    pub fn show_progress(&self, label: &str) {
        let bar = crate::progress::Bar::start(label, self.core.tracker().clone());
        bar.detach();
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        if self.armed && !self.ready() {
            self.core.stop();
        }
    }
}

/// Where a background map runs.
pub(crate) enum Placement<'t> {
    /// Tickets for up to P engines.
    Shared,
    /// Slot k on engine `targets[k]`.
    Directed(&'t [usize]),
}

impl Pool {
    /// Starts a background map of `input` with `f`, keeping results in `O`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_async<I, F, O>(
        &self,
        schedule: Schedule,
        input: I,
        f: F,
        make_out: impl FnOnce(usize) -> (O, O::Sink),
        placement: Placement<'_>,
        label: &str,
        timeline: bool,
    ) -> AsyncResult<O::T>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        F: Fn(I::Item) -> O::R + Send + Sync + 'static,
        O: AsyncOutput,
    {
        let input = input.into_map_input();
        let n = crate::map::input::MapInput::len(&input);
        let parts = match placement {
            Placement::Shared => self.workers(),
            Placement::Directed(t) => t.len(),
        };
        let disp = Dispenser::new(schedule, n, parts);
        let units = disp.max_units();
        let tracker = Arc::new(Tracker::new(n, timeline));
        let (out, sink) = make_out(n);
        let directed = matches!(placement, Placement::Directed(_));
        let pre = match placement {
            Placement::Directed(t) if n > 0 => t.len(),
            _ => 0,
        };
        let map = Arc::new(AsyncMap {
            gate: Gate::new(pre),
            body: Body::new(
                input,
                move |x| Ok::<_, Infallible>(f(x)),
                sink,
                disp,
                directed,
                Some(tracker),
            ),
            out,
            completion: Completion::new(),
            result: Mutex::new(None),
            n,
            label: label.to_string(),
            engines: self.workers(),
            timeline,
            timeline_taken: AtomicBool::new(false),
        });
        if n == 0 {
            let rep = map.body.conclude();
            *map.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(map.out.finish(rep, 0, 0));
            map.completion.set();
        } else {
            match placement {
                Placement::Shared => {
                    let tickets = self.workers().min(units);
                    self.reg
                        .push_shared((0..tickets).map(|_| Job::Ticket(map.clone())));
                }
                Placement::Directed(targets) => {
                    for (slot, &e) in targets.iter().enumerate() {
                        self.reg.push_directed(e, Job::Directed(map.clone(), slot));
                    }
                }
            }
        }
        AsyncResult {
            core: map,
            armed: true,
        }
    }

    /// A background map whose results stream into an iterator (imap).
    pub(crate) fn start_streaming<I, F, R>(
        &self,
        schedule: Schedule,
        input: I,
        f: F,
    ) -> (AsyncResult<()>, std::sync::mpsc::Receiver<Msg<R>>, usize)
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let input = input.into_map_input();
        let n = crate::map::input::MapInput::len(&input);
        let (tx, rx) = std::sync::mpsc::channel();
        let ar = self.start_async(
            schedule,
            crate::map::Passthrough(input),
            f,
            move |_| ChannelOut::with_sender(tx),
            Placement::Shared,
            "imap",
            false,
        );
        (ar, rx, n)
    }
}

/// Ordered streaming results of [`LoadBalancedView::imap`](crate::LoadBalancedView::imap):
/// yields item `i`'s result as soon as items `0..=i` are done. Dropping it aborts the rest.
pub struct Imap<R> {
    ar: AsyncResult<()>,
    rx: std::sync::mpsc::Receiver<Msg<R>>,
    pending: Vec<Option<Result<R, ItemError>>>,
    next: usize,
    n: usize,
}

/// Streaming results of [`LoadBalancedView::imap_unordered`](crate::LoadBalancedView::imap_unordered):
/// `(index, result)` in completion order. Dropping it aborts the rest.
pub struct ImapUnordered<R> {
    ar: AsyncResult<()>,
    rx: std::sync::mpsc::Receiver<Msg<R>>,
    yielded: usize,
    n: usize,
}

impl<R> std::fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Imap {{ next: {}, n: {} }}", self.next, self.n)
    }
}

impl<R> std::fmt::Debug for ImapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImapUnordered {{ yielded: {}, n: {} }}",
            self.yielded, self.n
        )
    }
}

/// Next message, or `None` once the map is over and the channel is drained.
fn recv<R>(ar: &AsyncResult<()>, rx: &std::sync::mpsc::Receiver<Msg<R>>) -> Option<Msg<R>> {
    loop {
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(m) => return Some(m),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if ar.ready() {
                    return rx.try_recv().ok();
                }
            }
        }
    }
}

impl<R> Iterator for Imap<R> {
    type Item = Result<R, ItemError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.n {
            return None;
        }
        while self.pending[self.next].is_none() {
            let (i, r) = recv(&self.ar, &self.rx)?;
            self.pending[i] = Some(r);
        }
        let r = self.pending[self.next].take();
        self.next += 1;
        r
    }
}

impl<R> Iterator for ImapUnordered<R> {
    type Item = (usize, Result<R, ItemError>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.yielded >= self.n {
            return None;
        }
        let m = recv(&self.ar, &self.rx)?;
        self.yielded += 1;
        Some(m)
    }
}

impl<R> Imap<R> {
    pub(crate) fn new(
        ar: AsyncResult<()>,
        rx: std::sync::mpsc::Receiver<Msg<R>>,
        n: usize,
    ) -> Self {
        Imap {
            ar,
            rx,
            pending: (0..n).map(|_| None).collect(),
            next: 0,
            n,
        }
    }

    /// `(done, total)` of the underlying map.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut it = pool.load_balanced().imap(vec![1, 2, 3], |x| x * 2);
    /// assert_eq!(it.next(), Some(Ok(2)));
    /// assert_eq!(it.progress().1, 3);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.ar.progress()
    }
}

impl<R> ImapUnordered<R> {
    pub(crate) fn new(
        ar: AsyncResult<()>,
        rx: std::sync::mpsc::Receiver<Msg<R>>,
        n: usize,
    ) -> Self {
        ImapUnordered {
            ar,
            rx,
            yielded: 0,
            n,
        }
    }

    /// `(done, total)` of the underlying map.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let it = pool.load_balanced().imap_unordered(vec![1, 2, 3], |x| x * 2);
    /// assert_eq!(it.progress().1, 3);
    /// ```
    pub fn progress(&self) -> (usize, usize) {
        self.ar.progress()
    }
}
