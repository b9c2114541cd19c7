//! The two ways to address the pool, named after IPython Parallel's views.
//!
//! * [`DirectView`] (`rc[:]`, `rc[[0, 2]]`): work for engine *i* runs on engine *i* — it goes to
//!   that engine's mailbox and is never stolen. Static splits, one result per engine, and
//!   typed per-engine state ([`EngineState`]) that lives across calls.
//! * [`LoadBalancedView`] (`rc.load_balanced_view()`, `multiprocessing.Pool`): chunks go to
//!   whichever engine is idle, per the view's [`Schedule`]; ordered and unordered streaming
//!   (`imap`, `imap_unordered`), background maps and single tasks ([`AsyncResult`]).
//!
//! # Invariants
//! * `DirectView::apply` runs its closure exactly once on each targeted engine, on that engine.
//! * Every map returns results in input order; `imap_unordered` yields each index exactly once.
//! * [`EngineState`] values are only touched by their own engine while a call runs (`pull` and
//!   `gather` read them from the caller between calls).

use crate::async_result::{AsyncResult, Imap, ImapUnordered};
use crate::error::{ItemError, MapError, Partial};
use crate::map::body::{NoState, SlotState};
use crate::map::run::{Refused, ResultSink, ResultsOut, VecOut};
use crate::map::sink::{VecSink, collect};
use crate::map::{IntoMapInput, MapInput, Passthrough, Spec, Tracker, raise, with_timeline};
use crate::pool::Pool;
use crate::schedule::{Schedule, static_block};
use crate::timeline::Timeline;
use crossbeam_utils::CachePadded;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// A bad engine selection for a [`DirectView`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// `direct_to(&[])`.
    #[error("invalid argument `targets`: a DirectView needs at least one engine, got none")]
    NoTargets,
    /// An engine index past the pool's size.
    #[error(
        "invalid argument `targets`: engine {engine} does not exist (the pool has engines 0..{workers})"
    )]
    NoSuchEngine {
        /// The index asked for.
        engine: usize,
        /// The pool's size.
        workers: usize,
    },
    /// The same engine twice.
    #[error("invalid argument `targets`: engine {engine} is named more than once")]
    Duplicate {
        /// The repeated index.
        engine: usize,
    },
    /// An engine the view targets, or whose [`EngineState`] value is asked for, was removed
    /// by [`Pool::resize`] (its state was dropped with it; an engine added back later at the
    /// same index is a fresh one, without that value).
    #[error("engine {engine} was removed from the pool (Pool::resize); its state was dropped")]
    EngineRemoved {
        /// The removed engine.
        engine: usize,
    },
}

// ---------------------------------------------------------------------------------------------

/// Addresses engines explicitly: work for engine *i* runs on engine *i*.
///
/// The calling thread does not work on DirectView calls; it waits (spinning briefly, then
/// sleeping), or — when it is itself an engine — runs other queued work meanwhile.
///
/// # Engines removed by a resize
/// A view keeps the engine indices it was made with. Once [`Pool::resize`] has removed one of
/// them, every call of the view panics before anything runs, with a message naming the engine
/// (`try_apply` and `try_pull` return [`ViewError::EngineRemoved`] instead); an async call
/// fails the same way through its [`AsyncResult`]. A call that reaches an engine at the very
/// moment it leaves either runs there (it was queued before the engine closed its mailbox) or
/// fails as a panic of its items whose message names the engine: it never waits for an
/// engine that is gone. [`Pool::direct`] made after the resize targets the engines left.
///
/// # Examples
/// ```
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let dv = pool.direct();
/// let on = dv.apply(|_| parview::Pool::global().current_engine().is_none());
/// assert_eq!(on, vec![true, true]); // they are engines of `pool`, not of the global pool
/// ```
#[derive(Debug, Clone)]
pub struct DirectView<'p> {
    pool: &'p Pool,
    targets: Vec<usize>,
    timeline: bool,
}

/// Typed per-engine values that live across calls (ipyparallel's push/pull/scatter without
/// string keys). Created by [`DirectView::init`] or [`DirectView::scatter`].
///
/// # Examples
/// ```
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let dv = pool.direct();
/// let counters = dv.init(|_engine| 0u64);
/// for _ in 0..5 {
///     dv.apply_with_state(&counters, |_, c| *c += 1);
/// }
/// assert_eq!(dv.pull(&counters), vec![5, 5]);
/// ```
///
/// # Engines removed by a resize
/// When [`Pool::resize`] removes an engine, the engine drops its value of every live
/// `EngineState` as it leaves (after running the calls already queued for it). A later
/// access to that value panics with a message naming the engine, or is a
/// [`ViewError::EngineRemoved`] from [`DirectView::try_pull`] and [`DirectView::try_apply`].
/// (Edge case: resizes made from inside jobs do not wait, so an engine can be removed and
/// added back before it has left; a value created on it in that window is dropped too when it
/// leaves, and shows in [`removed`](EngineState::removed).)
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// static DROPPED: AtomicUsize = AtomicUsize::new(0);
/// struct Buf;
/// impl Drop for Buf { fn drop(&mut self) { DROPPED.fetch_add(1, SeqCst); } }
/// let pool = parview::Pool::builder().workers(3).build().unwrap();
/// let bufs = pool.direct().init(|_| Buf);
/// pool.resize(1).unwrap(); // engines 1 and 2 leave and drop their `Buf`
/// assert_eq!(DROPPED.load(SeqCst), 2);
/// let e = pool.direct_to(&[0]).unwrap().try_apply(|e| e).unwrap();
/// assert_eq!(e, vec![0]);
/// assert_eq!(bufs.removed(), vec![1, 2]);
/// ```
pub struct EngineState<S> {
    inner: Arc<StateInner<S>>,
}

/// The values behind an [`EngineState`]; the pool keeps a weak reference to drop the values
/// of engines that leave.
struct StateInner<S> {
    pool_id: usize,
    engines: Vec<usize>,
    slots: Box<[CachePadded<Mutex<Value<S>>>]>,
}

/// One engine's value.
enum Value<S> {
    /// Not created (yet).
    Empty,
    Here(S),
    /// Dropped with its engine.
    Removed,
}

impl<S> Value<S> {
    /// The value of engine `e`; panics naming the engine if it was removed.
    fn get(&mut self, e: usize) -> &mut S {
        match self {
            Value::Here(s) => s,
            Value::Removed => panic!("parview: {}", ViewError::EngineRemoved { engine: e }),
            Value::Empty => panic!(
                "parview: invalid argument `state`: engine {e} has no value (it was not created there)"
            ),
        }
    }
}

impl<S: Send> crate::registry::EngineValues for StateInner<S> {
    fn drop_engine(&self, w: usize) -> Result<(), String> {
        let Some(slot) = self.slots.get(w) else {
            return Ok(());
        };
        let old = {
            let mut v = slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*v {
                Value::Here(_) => std::mem::replace(&mut *v, Value::Removed),
                _ => return Ok(()),
            }
        };
        crate::unwind::catch(move || drop(old)).map_err(|m| m.to_string())
    }
}

impl<S> std::fmt::Debug for EngineState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineState")
            .field("engines", &self.inner.engines)
            .finish()
    }
}

impl<S> EngineState<S> {
    /// The engines holding a value, in the order they were created for.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(3).build().unwrap();
    /// let st = pool.direct_to(&[2, 0]).unwrap().init(|e| e);
    /// assert_eq!(st.engines(), &[2, 0]);
    /// ```
    pub fn engines(&self) -> &[usize] {
        &self.inner.engines
    }

    /// The engines of [`engines`](Self::engines) whose value was dropped because
    /// [`Pool::resize`] removed them, in that order.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let st = pool.direct().init(|e| e);
    /// assert!(st.removed().is_empty());
    /// pool.resize(1).unwrap();
    /// assert_eq!(st.removed(), vec![1]);
    /// ```
    pub fn removed(&self) -> Vec<usize> {
        self.inner
            .engines
            .iter()
            .copied()
            .filter(|&e| matches!(*self.slot(e), Value::Removed))
            .collect()
    }

    /// The values, in [`engines`](Self::engines) order.
    ///
    /// # Panics
    /// If an engine's value was dropped because [`Pool::resize`] removed it (the message
    /// names the engine; [`removed`](Self::removed) tells beforehand).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let st = pool.direct().init(|e| format!("engine {e}"));
    /// assert_eq!(st.into_values(), vec!["engine 0", "engine 1"]);
    /// ```
    pub fn into_values(self) -> Vec<S> {
        // The pool holds only a weak reference (upgraded for a moment while an engine
        // leaves), so the values are taken through their locks rather than by unwrapping.
        if let Some(e) = self.removed().first() {
            panic!("parview: {}", ViewError::EngineRemoved { engine: *e });
        }
        let engines = self.inner.engines.clone();
        engines
            .iter()
            .map(
                |&e| match std::mem::replace(&mut *self.slot(e), Value::Empty) {
                    Value::Here(s) => s,
                    _ => panic!("parview: {}", ViewError::EngineRemoved { engine: e }),
                },
            )
            .collect()
    }

    fn slot(&self, engine: usize) -> std::sync::MutexGuard<'_, Value<S>> {
        self.inner.slots[engine]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl<'p> DirectView<'p> {
    /// A view on `targets` (already checked by the caller).
    pub(crate) fn new(pool: &'p Pool, targets: Vec<usize>) -> Self {
        DirectView {
            pool,
            targets,
            timeline: false,
        }
    }

    /// The targeted engines, in view order.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.direct().targets(), &[0, 1]);
    /// ```
    pub fn targets(&self) -> &[usize] {
        &self.targets
    }

    /// Record a [`Timeline`] for [`map_timed`](Self::map_timed) and async maps.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let (v, tl) = pool.direct().record_timeline().map_timed(&[1, 2, 3, 4], |x| x + 1);
    /// assert_eq!(v, vec![2, 3, 4, 5]);
    /// assert_eq!(tl.chunks(), 2);
    /// ```
    pub fn record_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }

    /// Runs `f(engine)` once on each targeted engine; results in view order.
    ///
    /// # Panics
    /// After all engines ran, if `f` panicked on some (the message names the first failing
    /// position in view order and the count).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let names = pool.direct().apply(|e| format!("engine {e}"));
    /// assert_eq!(names, vec!["engine 0", "engine 1"]);
    /// ```
    pub fn apply<R, F>(&self, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(usize) -> R + Sync,
    {
        self.live_or_panic();
        let t = &self.targets;
        self.run(0..t.len(), |k| f(t[k]), None)
            .unwrap_or_else(|e| raise(e, t.len()))
    }

    /// Static map over the targeted engines: engine `targets[k]` runs block `k` of the input
    /// (sizes differing by at most one); results in input order.
    ///
    /// # Panics
    /// As [`Pool::par_map`]: after all other items ran, naming the lowest failing index.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.direct().map(0..6u32, |i| i * 2), vec![0, 2, 4, 6, 8, 10]);
    /// ```
    pub fn map<I, R, F>(&self, input: I, f: F) -> Vec<R>
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        self.live_or_panic();
        let input = input.into_map_input();
        let n = input.len();
        self.run(Passthrough(input), f, None)
            .unwrap_or_else(|e| raise(e, n))
    }

    /// [`map`](Self::map) that also returns the per-chunk [`Timeline`] (one chunk per engine).
    ///
    /// # Panics
    /// As [`map`](Self::map).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let (_, tl) = pool.direct().map_timed(0..100u32, |i| i);
    /// assert_eq!(tl.items(), 100);
    /// ```
    pub fn map_timed<I, R, F>(&self, input: I, f: F) -> (Vec<R>, Timeline)
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        self.live_or_panic();
        let input = input.into_map_input();
        let n = input.len();
        with_timeline(
            n,
            "direct (static)".into(),
            self.pool.workers(),
            |tracker| {
                self.run(Passthrough(input), f, Some(tracker))
                    .unwrap_or_else(|e| raise(e, n))
            },
        )
    }

    fn run<I, R, F>(
        &self,
        input: I,
        f: F,
        tracker: Option<Arc<Tracker>>,
    ) -> Result<Vec<R>, MapError>
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        crate::map::map_vec(
            &self.pool.reg,
            &Spec::directed(&self.targets).tracked(tracker),
            input.into_map_input(),
            NoState,
            |_: &mut (), x| Ok::<R, Infallible>(f(x)),
        )
    }

    /// One contiguous slice of `data` per targeted engine, `f(engine, piece)` run on that engine,
    /// results in view order (ipyparallel's scatter + apply + gather). No copies.
    ///
    /// # Panics
    /// As [`apply`](Self::apply).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let data = [1, 2, 3, 4, 5];
    /// let lens = pool.direct().scatter_gather(&data, |_, piece| piece.len());
    /// assert_eq!(lens, vec![3, 2]);
    /// ```
    pub fn scatter_gather<T, R, F>(&self, data: &[T], f: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(usize, &[T]) -> R + Sync,
    {
        self.live_or_panic();
        let (n, p, t) = (data.len(), self.targets.len(), &self.targets);
        self.run(0..p, |k| f(t[k], &data[static_block(n, p, k)]), None)
            .unwrap_or_else(|e| raise(e, p))
    }

    /// Creates per-engine state: `init(engine)` runs once on each targeted engine, and the value
    /// stays there across calls.
    ///
    /// # Panics
    /// As [`apply`](Self::apply), if `init` panics.
    ///
    /// # Examples
    /// ```
    /// use rand::RngExt;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// let rngs = dv.init(|e| parview::rng::stream(2017, e as u64));
    /// let draws = dv.apply_with_state(&rngs, |_, rng| rng.random::<f64>());
    /// assert_eq!(draws.len(), 2);
    /// ```
    pub fn init<S, F>(&self, init: F) -> EngineState<S>
    where
        S: Send + 'static,
        F: Fn(usize) -> S + Sync,
    {
        self.live_or_panic();
        let size = self.targets.iter().max().map_or(0, |m| m + 1);
        let slots: Box<[CachePadded<Mutex<Value<S>>>]> = (0..size)
            .map(|_| CachePadded::new(Mutex::new(Value::Empty)))
            .collect();
        let state = EngineState {
            inner: Arc::new(StateInner {
                pool_id: self.pool.reg.id(),
                engines: self.targets.clone(),
                slots,
            }),
        };
        let weak: std::sync::Weak<StateInner<S>> = Arc::downgrade(&state.inner);
        self.pool.reg.track_values(weak);
        self.apply(|e| *state.slot(e) = Value::Here(init(e)));
        state
    }

    /// `Err(EngineRemoved)` for the first target that is no longer an engine of the pool.
    fn live(&self) -> Result<(), ViewError> {
        match self.targets.iter().find(|&&e| !self.pool.reg.is_member(e)) {
            Some(&engine) => Err(ViewError::EngineRemoved { engine }),
            None => Ok(()),
        }
    }

    fn live_or_panic(&self) {
        if let Err(e) = self.live() {
            panic!("parview: invalid argument `self`: {e}");
        }
    }

    /// Checks that `state` fits the view: `Err` for a removed engine's value.
    ///
    /// # Panics
    /// If `state` belongs to another pool or lacks a targeted engine (naming `state`).
    fn try_check_state<S>(&self, state: &EngineState<S>) -> Result<(), ViewError> {
        assert_eq!(
            state.inner.pool_id,
            self.pool.reg.id(),
            "parview: invalid argument `state`: it belongs to another pool"
        );
        for &e in &self.targets {
            assert!(
                state.inner.engines.contains(&e),
                "parview: invalid argument `state`: engine {e} has no value (the state lives on engines {:?})",
                state.inner.engines
            );
            if matches!(*state.slot(e), Value::Removed) {
                return Err(ViewError::EngineRemoved { engine: e });
            }
        }
        Ok(())
    }

    fn check_state<S>(&self, state: &EngineState<S>) {
        if let Err(e) = self.try_check_state(state) {
            panic!("parview: invalid argument `state`: {e}");
        }
    }

    /// [`apply`](Self::apply), or `Err` naming the first targeted engine that a
    /// [`Pool::resize`] removed (then nothing runs).
    ///
    /// # Errors
    /// [`ViewError::EngineRemoved`].
    ///
    /// # Panics
    /// As [`apply`](Self::apply); also if an engine is removed between the check and the call
    /// reaching it (the message names the engine).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// assert_eq!(dv.try_apply(|e| e + 1).unwrap(), vec![1, 2]);
    /// pool.resize(1).unwrap();
    /// let e = dv.try_apply(|e| e + 1).unwrap_err();
    /// assert_eq!(e, parview::ViewError::EngineRemoved { engine: 1 });
    /// ```
    pub fn try_apply<R, F>(&self, f: F) -> Result<Vec<R>, ViewError>
    where
        R: Send,
        F: Fn(usize) -> R + Sync,
    {
        self.live()?;
        Ok(self.apply(f))
    }

    /// [`pull`](Self::pull), or `Err` naming the first targeted engine whose value was dropped
    /// because a [`Pool::resize`] removed it.
    ///
    /// # Errors
    /// [`ViewError::EngineRemoved`].
    ///
    /// # Panics
    /// As [`pull`](Self::pull) for a `state` of another pool or without a targeted engine.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(3).build().unwrap();
    /// let dv = pool.direct();
    /// let st = dv.init(|e| e * 2);
    /// assert_eq!(dv.try_pull(&st).unwrap(), vec![0, 2, 4]);
    /// pool.resize(2).unwrap();
    /// assert_eq!(dv.try_pull(&st), Err(parview::ViewError::EngineRemoved { engine: 2 }));
    /// ```
    pub fn try_pull<S: Clone>(&self, state: &EngineState<S>) -> Result<Vec<S>, ViewError> {
        self.try_check_state(state)?;
        self.targets
            .iter()
            .map(|&e| match &*state.slot(e) {
                Value::Here(s) => Ok(s.clone()),
                _ => Err(ViewError::EngineRemoved { engine: e }),
            })
            .collect()
    }

    /// Runs `f(engine, &mut value)` on each targeted engine with that engine's own value.
    ///
    /// # Panics
    /// If `state` belongs to another pool or lacks a targeted engine (the message names
    /// `state`), or as [`apply`](Self::apply) if `f` panics.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// let buf = dv.init(|_| Vec::<u32>::new());
    /// dv.apply_with_state(&buf, |e, v| v.push(e as u32));
    /// assert_eq!(dv.pull(&buf), vec![vec![0], vec![1]]);
    /// ```
    pub fn apply_with_state<S, R, F>(&self, state: &EngineState<S>, f: F) -> Vec<R>
    where
        S: Send,
        R: Send,
        F: Fn(usize, &mut S) -> R + Sync,
    {
        self.check_state(state);
        self.live_or_panic();
        self.apply(|e| f(e, state.slot(e).get(e)))
    }

    /// Static map where engine `targets[k]` runs block `k` with `&mut` its own value.
    ///
    /// # Panics
    /// As [`apply_with_state`](Self::apply_with_state); a panicking item is reported by its input index
    /// after all other items ran.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// let seen = dv.init(|_| 0usize);
    /// let v = dv.map_with_state(&seen, 0..10u32, |count, i| { *count += 1; i * 3 });
    /// assert_eq!(v[9], 27);
    /// assert_eq!(dv.pull(&seen).iter().sum::<usize>(), 10);
    /// ```
    pub fn map_with_state<S, I, R, F>(&self, state: &EngineState<S>, input: I, f: F) -> Vec<R>
    where
        S: Send,
        I: IntoMapInput,
        R: Send,
        F: Fn(&mut S, I::Item) -> R + Sync,
    {
        self.check_state(state);
        self.live_or_panic();
        let input = input.into_map_input();
        let n = input.len();
        let slots = EngineSlots {
            state,
            targets: &self.targets,
        };
        crate::map::map_vec(
            &self.pool.reg,
            &Spec::directed(&self.targets),
            input,
            slots,
            |s: &mut S, x| Ok::<R, Infallible>(f(s, x)),
        )
        .unwrap_or_else(|e| raise(e, n))
    }

    /// The values of per-engine state, in view order (ipyparallel's `pull`).
    ///
    /// # Panics
    /// As [`apply_with_state`](Self::apply_with_state) for a `state` that does not fit the view.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// let st = dv.init(|e| e * e);
    /// assert_eq!(dv.pull(&st), vec![0, 1]);
    /// ```
    pub fn pull<S: Clone>(&self, state: &EngineState<S>) -> Vec<S> {
        self.try_pull(state)
            .unwrap_or_else(|e| panic!("parview: invalid argument `state`: {e}"))
    }

    /// Splits `data` into one contiguous piece per targeted engine (sizes differing by at most
    /// one) and stores piece `k` on engine `targets[k]` (ipyparallel's `scatter`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// let pieces = dv.scatter(&[1, 2, 3]);
    /// assert_eq!(dv.pull(&pieces), vec![vec![1, 2], vec![3]]);
    /// assert_eq!(dv.gather(&pieces), vec![1, 2, 3]);
    /// ```
    pub fn scatter<T: Clone + Send + Sync + 'static>(&self, data: &[T]) -> EngineState<Vec<T>> {
        let (n, p) = (data.len(), self.targets.len());
        let t = &self.targets;
        self.init(|e| {
            let k = t.iter().position(|&x| x == e).expect("targeted");
            data[static_block(n, p, k)].to_vec()
        })
    }

    /// Concatenates per-engine vectors in view order (ipyparallel's `gather`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let dv = pool.direct();
    /// let pieces = dv.scatter(&[1.0, 2.0, 3.0, 4.0]);
    /// dv.apply_with_state(&pieces, |_, v| v.iter_mut().for_each(|x| *x *= 10.0));
    /// assert_eq!(dv.gather(&pieces), vec![10.0, 20.0, 30.0, 40.0]);
    /// ```
    pub fn gather<T: Clone>(&self, state: &EngineState<Vec<T>>) -> Vec<T> {
        self.pull(state).into_iter().flatten().collect()
    }

    /// [`apply`](Self::apply) in the background: returns at once with an [`AsyncResult`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.direct().apply_async(|e| e + 100);
    /// assert_eq!(ar.get().unwrap(), vec![100, 101]);
    /// ```
    pub fn apply_async<R, F>(&self, f: F) -> AsyncResult<Vec<R>>
    where
        R: Send + 'static,
        F: Fn(usize) -> R + Send + Sync + 'static,
    {
        let t = self.targets.clone();
        start_vec(
            self.pool,
            &Spec::directed(&self.targets),
            0..t.len(),
            move |k| f(t[k]),
            "direct apply",
            self.timeline,
        )
    }

    /// [`map`](Self::map) in the background, for owned input and a `'static` closure.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.direct().map_async(vec![1, 2, 3], |x| x * 2);
    /// assert_eq!(ar.get().unwrap(), vec![2, 4, 6]);
    /// ```
    pub fn map_async<I, R, F>(&self, input: I, f: F) -> AsyncResult<Vec<R>>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        start_vec(
            self.pool,
            &Spec::directed(&self.targets),
            input,
            f,
            "direct (static)",
            self.timeline,
        )
    }
}

// ---------------------------------------------------------------------------------------------

/// Hands chunks to whichever engine is idle, cut by the view's [`Schedule`].
///
/// Blocking maps put the calling thread to work too. Every schedule is accepted: `Static` and
/// `StaticChunked` still cut OpenMP's static blocks, but here an idle engine takes any block
/// not yet started, so they are balanced over `P` blocks; use a [`DirectView`] for a static
/// split pinned to engines.
///
/// # Examples
/// ```
/// use parview::{Pool, Schedule};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
/// let costs = [30u64, 1, 1, 1];
/// let out = lb.map(&costs, |&ms| { std::thread::sleep(std::time::Duration::from_millis(ms)); ms });
/// assert_eq!(out, costs);
/// ```
#[derive(Debug, Clone)]
pub struct LoadBalancedView<'p> {
    pub(crate) pool: &'p Pool,
    pub(crate) schedule: Schedule,
    pub(crate) timeline: bool,
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    progress: Option<Arc<str>>,
    /// Streaming maps' bound on items in flight (`None`: the default; see `map/stream.rs`).
    pub(crate) max_in_flight: Option<usize>,
}

/// A [`LoadBalancedView`] whose maps return one `Result<R, ItemError>` per item instead of
/// failing as a whole (ipyparallel's `return_exceptions=True`).
///
/// # Examples
/// ```
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let out = pool.load_balanced().return_exceptions().map(&[2, 0], |&x| 8 / x);
/// assert_eq!(out[0], Ok(4));
/// assert!(out[1].as_ref().unwrap_err().message.contains("divide by zero"));
/// ```
#[derive(Debug, Clone)]
pub struct ReturnExceptions<'p> {
    view: LoadBalancedView<'p>,
}

impl<'p> LoadBalancedView<'p> {
    /// A view with the default schedule.
    pub(crate) fn new(pool: &'p Pool) -> Self {
        LoadBalancedView {
            pool,
            schedule: Schedule::default(),
            timeline: false,
            progress: None,
            max_in_flight: None,
        }
    }

    /// Sets the schedule (default [`Schedule::Adaptive`]) for every map of this view.
    ///
    /// An invalid schedule (a chunk of 0) is reported by the call that uses it, before anything
    /// runs: [`try_map`](Self::try_map) and the async maps give [`MapError::Schedule`], the
    /// other maps panic with a message naming `chunk`.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced().schedule(parview::Schedule::Guided(2));
    /// assert_eq!(lb.get_schedule(), parview::Schedule::Guided(2));
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The view's schedule.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().get_schedule(), parview::Schedule::Adaptive);
    /// ```
    pub fn get_schedule(&self) -> Schedule {
        self.schedule
    }

    /// Record a [`Timeline`] for [`map_timed`](Self::map_timed) and async maps.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().record_timeline().map_async(vec![1, 2], |x| x);
    /// ar.wait();
    /// assert!(ar.timeline().is_some());
    /// ```
    pub fn record_timeline(mut self) -> Self {
        self.timeline = true;
        self
    }

    /// Show a progress bar (counting finished items, with rate and ETA) on stderr for this
    /// view's `map` and `map_async` calls; hidden when stderr is not a terminal.
    /// Feature `progress`.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let v = pool.load_balanced().progress_bar("squares").map(0..10_000u64, |i| i * i);
    /// assert_eq!(v[9_999], 9_999 * 9_999);
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_bar(mut self, label: &str) -> Self {
        self.progress = Some(Arc::from(label));
        self
    }

    /// Per-item results instead of whole-map failure (`return_exceptions=True`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let r = pool.load_balanced().return_exceptions().map(&[1], |x| *x);
    /// assert_eq!(r, vec![Ok(1)]);
    /// ```
    pub fn return_exceptions(&self) -> ReturnExceptions<'p> {
        ReturnExceptions { view: self.clone() }
    }

    /// Ordered map; results in input order.
    ///
    /// # Panics
    /// As [`Pool::par_map`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().map(0..4u8, |i| i + 1), vec![1, 2, 3, 4]);
    /// ```
    pub fn map<I, R, F>(&self, input: I, f: F) -> Vec<R>
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        #[cfg(feature = "progress")]
        if let Some(label) = &self.progress {
            let input = input.into_map_input();
            let n = input.len();
            let tracker = Arc::new(Tracker::new(n, false));
            let bar = crate::progress::Bar::start(label, tracker.clone());
            let v = self.pool.map_vec(
                self.schedule,
                Passthrough(input),
                |x| Ok::<R, Infallible>(f(x)),
                Some(tracker),
            );
            bar.finish();
            return v.unwrap_or_else(|e| raise(e, n));
        }
        self.pool.sched_map(self.schedule, input, f)
    }

    /// [`map`](Self::map) that also returns the per-chunk [`Timeline`].
    ///
    /// # Panics
    /// As [`map`](Self::map).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let (v, tl) = pool.load_balanced().map_timed(0..1000u32, |i| i);
    /// assert_eq!(v.len(), 1000);
    /// assert_eq!(tl.items(), 1000);
    /// ```
    pub fn map_timed<I, R, F>(&self, input: I, f: F) -> (Vec<R>, Timeline)
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        let input = input.into_map_input();
        let n = input.len();
        let label = format!("load-balanced ({})", self.schedule);
        with_timeline(n, label, self.pool.workers(), |tracker| {
            self.pool
                .map_vec(
                    self.schedule,
                    Passthrough(input),
                    |x| Ok::<R, Infallible>(f(x)),
                    Some(tracker),
                )
                .unwrap_or_else(|e| raise(e, n))
        })
    }

    /// A fallible map with the view's schedule: the first error by index is returned and no new
    /// chunk starts after an error; panics come back as [`MapError::Panicked`].
    ///
    /// # Errors
    /// As [`Pool::try_par_map`].
    ///
    /// # Examples
    /// ```
    /// use parview::{MapError, Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.schedule(Schedule::Dynamic(1));
    /// let r = lb.try_map(0..10u32, |i| if i == 7 { Err("seven") } else { Ok(i) });
    /// assert!(matches!(r, Err(MapError::Failed { index: 7, .. })));
    /// ```
    pub fn try_map<I, R, E, F>(&self, input: I, f: F) -> Result<Vec<R>, MapError<E>>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        self.pool.sched_try_map(self.schedule, input, f)
    }

    /// [`try_map`](Self::try_map) that hands back what finished when the map fails: a
    /// [`Partial`] with `Some(result)` for every item that produced its value. Panics are caught
    /// per item as in `try_map` (every other item still runs); after an `Err` no new chunk
    /// starts, so later items are `None`.
    ///
    /// # Errors
    /// As [`try_map`](Self::try_map), inside a [`Partial`].
    ///
    /// # Examples
    /// ```
    /// use parview::{MapError, Pool};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let p = pool.load_balanced().try_map_partial(&[1, 0, 4], |&x| Ok::<_, ()>(8 / x)).unwrap_err();
    /// assert!(matches!(p.error, MapError::Panicked { index: 1, .. }));
    /// assert_eq!(p.results, vec![Some(8), None, Some(2)]);
    /// ```
    pub fn try_map_partial<I, R, E, F>(&self, input: I, f: F) -> Result<Vec<R>, Partial<R, E>>
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        let input = input.into_map_input();
        if let Err(e) = self.schedule.validate() {
            crate::map::run::release_all(&input);
            return Err(Partial {
                results: Vec::new(),
                error: e.into(),
            });
        }
        crate::map::run::map_vec_partial(
            &self.pool.reg,
            &Spec::shared(self.schedule),
            input,
            |_: &mut (), x| f(x),
        )
    }

    /// Writes `f(item i)` into `out[i]` with the view's schedule (as [`Pool::par_map_into`]).
    ///
    /// # Panics
    /// As [`Pool::par_map_into`].
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let mut out = vec![0u64; 1000];
    /// pool.schedule(Schedule::Static).map_into(0..1000u64, &mut out, |i| 2 * i + 1);
    /// assert_eq!(out[999], 1999);
    /// ```
    pub fn map_into<I, R, F>(&self, input: I, out: &mut [R], f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) -> R + Sync,
        R: Send,
    {
        self.pool.sched_map_into(self.schedule, input, out, f)
    }

    /// Runs `f` on every item for its side effects, with the view's schedule.
    ///
    /// # Panics
    /// As [`Pool::par_for_each`].
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let sum = AtomicU64::new(0);
    /// pool.schedule(parview::Schedule::Guided(8))
    ///     .for_each(1..=100u64, |i| { sum.fetch_add(i, Ordering::Relaxed); });
    /// assert_eq!(sum.into_inner(), 5050);
    /// ```
    pub fn for_each<I, F>(&self, input: I, f: F)
    where
        I: IntoMapInput,
        F: Fn(I::Item) + Sync,
    {
        self.pool.sched_for_each(self.schedule, input, f)
    }

    /// Deterministic map-reduce with the view's schedule (see [`Pool::par_map_reduce`]): the
    /// schedule decides who computes a leaf, never the result.
    ///
    /// # Panics
    /// As [`Pool::par_map_reduce`].
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let xs: Vec<f64> = (0..10_000).map(|i| 1.0 / (1.0 + i as f64)).collect();
    /// let a = pool.schedule(Schedule::Static).map_reduce(&xs, |x| x * x, |a, b| a + b);
    /// let b = pool.schedule(Schedule::Dynamic(1)).map_reduce(&xs, |x| x * x, |a, b| a + b);
    /// assert_eq!(a.unwrap().to_bits(), b.unwrap().to_bits());
    /// ```
    pub fn map_reduce<I, M, O, R>(&self, input: I, map: M, op: O) -> Option<R>
    where
        I: IntoMapInput,
        M: Fn(I::Item) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
        R: Send,
    {
        crate::reduce::map_reduce(self.pool, self.schedule, None, input, map, op)
    }

    /// [`map_reduce`](Self::map_reduce) with leaves of `leaf` items instead of
    /// [`default_leaf`](crate::reduce::default_leaf)`(n)`: the leaf size is part of the tree, so it
    /// changes float results; the result equals
    /// [`serial_map_reduce`](crate::reduce::serial_map_reduce)`(leaf, ..)` bit for bit.
    ///
    /// # Panics
    /// If `leaf == 0` (the message names `leaf`), or as [`Pool::par_map_reduce`].
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let concat = |a, b| format!("({a}{b})");
    /// let shape = pool.schedule(Schedule::Static).map_reduce_leaves(2, 0..5usize, |i| i.to_string(), concat);
    /// assert_eq!(shape.as_deref(), Some("(((01)(23))4)"));
    /// ```
    pub fn map_reduce_leaves<I, M, O, R>(&self, leaf: usize, input: I, map: M, op: O) -> Option<R>
    where
        I: IntoMapInput,
        M: Fn(I::Item) -> R + Sync,
        O: Fn(R, R) -> R + Sync,
        R: Send,
    {
        crate::reduce::map_reduce(self.pool, self.schedule, Some(leaf), input, map, op)
    }

    /// Deterministic reduction of the items themselves, with the view's schedule (see
    /// [`Pool::par_reduce`]).
    ///
    /// # Panics
    /// As [`Pool::par_reduce`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().reduce(3..9usize, usize::min), Some(3));
    /// ```
    pub fn reduce<I, T, O>(&self, input: I, op: O) -> Option<T>
    where
        I: IntoMapInput,
        I::Item: std::borrow::Borrow<T>,
        T: Clone + Send,
        O: Fn(T, T) -> T + Sync,
    {
        use std::borrow::Borrow;
        self.map_reduce(input, |x| x.borrow().clone(), op)
    }

    /// Deterministic sum with the view's schedule (see [`Pool::par_sum`]).
    ///
    /// # Panics
    /// As [`Pool::par_sum`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let s: f64 = pool.schedule(parview::Schedule::Static).sum(&vec![0.1; 1000]);
    /// assert_eq!(s, pool.par_sum::<_, f64>(&vec![0.1; 1000]));
    /// ```
    pub fn sum<I, T>(&self, input: I) -> T
    where
        I: IntoMapInput,
        I::Item: std::borrow::Borrow<T>,
        T: crate::reduce::Summable,
    {
        use std::borrow::Borrow;
        self.map_reduce(input, |x| x.borrow().clone(), |a, b| a + b)
            .unwrap_or(T::ZERO)
    }

    /// [`Pool::par_map_rng`] with the view's schedule (the output does not depend on it).
    ///
    /// # Panics
    /// As [`Pool::par_map_rng`].
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule, rand::RngExt};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let a = pool.schedule(Schedule::Dynamic(1)).map_rng(7, 4, |rng, _| rng.random::<u8>());
    /// assert_eq!(a, pool.par_map_rng(7, 4, |rng, _| rng.random::<u8>()));
    /// ```
    pub fn map_rng<F, R>(&self, seed: u64, n: usize, f: F) -> Vec<R>
    where
        F: Fn(&mut rand_chacha::ChaCha8Rng, usize) -> R + Sync,
        R: Send,
    {
        crate::rng::map_rng(self.pool, self.schedule, seed, n, f)
    }

    /// [`Pool::par_blocks_rng`] with the view's schedule (the output does not depend on it).
    ///
    /// # Panics
    /// As [`Pool::par_blocks_rng`].
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule, rand::RngExt};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let a = pool.schedule(Schedule::Static).blocks_rng(7, 3, |rng, _| rng.random::<u8>());
    /// assert_eq!(a, pool.par_blocks_rng(7, 3, |rng, _| rng.random::<u8>()));
    /// ```
    pub fn blocks_rng<F, R>(&self, seed: u64, n_blocks: usize, f: F) -> Vec<R>
    where
        F: Fn(&mut rand_chacha::ChaCha8Rng, usize) -> R + Sync,
        R: Send,
    {
        crate::rng::blocks_rng(self.pool, self.schedule, seed, n_blocks, f)
    }

    /// Runs one task and returns its result (the calling thread runs it: it would wait anyway).
    ///
    /// # Panics
    /// If `f` panics (re-raised with parview's message).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().apply(|| 6 * 7), 42);
    /// ```
    pub fn apply<R, F>(&self, f: F) -> R
    where
        R: Send,
        F: FnOnce() -> R + Send,
    {
        let f = Mutex::new(Some(f));
        let mut v = self.pool.sched_map(Schedule::Dynamic(1), 0..1usize, |_| {
            (f.lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("runs once"))()
        });
        v.pop().expect("one result")
    }

    /// Submits one task to run on an engine; returns at once (`concurrent.futures`' `submit`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let fut = pool.load_balanced().submit(|| "done");
    /// assert_eq!(fut.get().unwrap(), "done");
    /// ```
    pub fn submit<R, F>(&self, f: F) -> AsyncResult<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let f = Mutex::new(Some(f));
        let ar = start_vec(
            self.pool,
            &Spec::shared(Schedule::Dynamic(1)),
            0..1usize,
            move |_| {
                (f.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .expect("runs once"))()
            },
            "submit",
            self.timeline,
        );
        ar.map_value(|mut v: Vec<R>| v.pop().expect("one result"))
    }

    /// A background map over owned input with a `'static` closure.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().map_async(0..100u64, |i| i * 2);
    /// assert_eq!(ar.get().unwrap()[50], 100);
    /// ```
    pub fn map_async<I, R, F>(&self, input: I, f: F) -> AsyncResult<Vec<R>>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let label = format!("load-balanced ({})", self.schedule);
        start_vec(
            self.pool,
            &Spec::shared(self.schedule),
            input,
            f,
            &label,
            self.timeline,
        )
    }

    /// Results in input order, each yielded as soon as it and all before it are done
    /// (`multiprocessing.Pool.imap`). Uses `Dynamic(1)` unless the view's schedule was set to
    /// something other than the default; a panicked item yields its [`ItemError`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let v: Vec<_> = pool.load_balanced().imap(vec![3, 1, 2], |x| x * 10).map(Result::unwrap).collect();
    /// assert_eq!(v, vec![30, 10, 20]);
    /// ```
    pub fn imap<I, R, F>(&self, input: I, f: F) -> Imap<R>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let (core, rx, n) = crate::map::run::start_stream(
            &self.pool.reg,
            self.stream_schedule(),
            input.into_map_input(),
            f,
        );
        Imap::new(AsyncResult::from_core(core), rx, n)
    }

    /// `(index, result)` pairs in completion order (`imap_unordered`). Schedule as for
    /// [`imap`](Self::imap).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut got: Vec<_> = pool.load_balanced().imap_unordered(vec![5, 6], |x| x).map(|(i, r)| (i, r.unwrap())).collect();
    /// got.sort();
    /// assert_eq!(got, vec![(0, 5), (1, 6)]);
    /// ```
    pub fn imap_unordered<I, R, F>(&self, input: I, f: F) -> ImapUnordered<R>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let (core, rx, n) = crate::map::run::start_stream(
            &self.pool.reg,
            self.stream_schedule(),
            input.into_map_input(),
            f,
        );
        ImapUnordered::new(AsyncResult::from_core(core), rx, n)
    }

    fn stream_schedule(&self) -> Schedule {
        if let Err(e) = self.schedule.validate() {
            panic!("parview: {e}");
        }
        if self.schedule == Schedule::default() {
            Schedule::Dynamic(1)
        } else {
            self.schedule
        }
    }
}

impl<'p> ReturnExceptions<'p> {
    /// Ordered map with one `Result` per item; a panicking item gives its [`ItemError`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let out = pool.load_balanced().return_exceptions().map(0..3u32, |i| { assert!(i != 1); i });
    /// assert!(out[0].is_ok() && out[1].is_err() && out[2].is_ok());
    /// ```
    pub fn map<I, R, F>(&self, input: I, f: F) -> Vec<Result<R, ItemError>>
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        let v = &self.view;
        if let Err(e) = v.schedule.validate() {
            panic!("parview: {e}");
        }
        let input = input.into_map_input();
        let n = input.len();
        let mut out = match crate::map::sink::alloc_output::<Result<R, ItemError>, Infallible>(n) {
            Ok(out) => out,
            Err(e) => {
                crate::map::run::release_all(&input);
                raise(e, n);
            }
        };
        let rep = crate::map::run::run(
            &v.pool.reg,
            &Spec::shared(v.schedule),
            input,
            NoState,
            |_: &mut (), x| Ok::<R, Infallible>(f(x)),
            ResultSink(VecSink(out.as_mut_ptr())),
        );
        // SAFETY: `run` returned, so every participant has left; every slot holds Ok or the
        // Err of its panic, and a map that is never stopped leaves no other holes.
        unsafe { collect(out, n, rep) }.unwrap_or_else(|e| raise(e, n))
    }

    /// [`map`](Self::map) in the background.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let ar = pool.load_balanced().return_exceptions().map_async(vec![1, 0], |x| 2 / x);
    /// let out = ar.get().unwrap();
    /// assert_eq!(out[0], Ok(2));
    /// assert_eq!(out[1].as_ref().unwrap_err().index, 1);
    /// ```
    pub fn map_async<I, R, F>(&self, input: I, f: F) -> AsyncResult<Vec<Result<R, ItemError>>>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let v = &self.view;
        if let Err(e) = v.schedule.validate() {
            return AsyncResult::from_core(Arc::new(Refused::new(e.into())));
        }
        let input = input.into_map_input();
        match ResultsOut::new(input.len()) {
            Ok(out) => AsyncResult::from_core(crate::map::run::start(
                &v.pool.reg,
                &Spec::shared(v.schedule),
                input,
                move |_: &mut (), x| Ok(f(x)),
                out,
                "return_exceptions",
                v.timeline,
            )),
            Err(e) => {
                crate::map::run::release_all(&input);
                AsyncResult::from_core(Arc::new(Refused::new(e)))
            }
        }
    }
}

/// A background map into a `Vec` on `pool`: the pipeline's [`start`](crate::map::run::start)
/// with a [`VecOut`], or a result that is ready at once with [`MapError::TooLarge`].
fn start_vec<I, R, F>(
    pool: &Pool,
    spec: &Spec<'_>,
    input: I,
    f: F,
    label: &str,
    timeline: bool,
) -> AsyncResult<Vec<R>>
where
    I: IntoMapInput,
    I::Input: Send + 'static,
    R: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
{
    if let Err(e) = spec.schedule.validate() {
        return AsyncResult::from_core(Arc::new(Refused::new(e.into())));
    }
    let input = input.into_map_input();
    match VecOut::new(input.len()) {
        Ok(out) => AsyncResult::from_core(crate::map::run::start(
            &pool.reg,
            spec,
            input,
            move |_: &mut (), x| Ok(f(x)),
            out,
            label,
            timeline,
        )),
        Err(e) => {
            crate::map::run::release_all(&input);
            AsyncResult::from_core(Arc::new(Refused::new(e)))
        }
    }
}

/// A DirectView's engine state as the pipeline's per-slot state: slot `k` works with the value
/// of engine `targets[k]`, locked once per slot.
struct EngineSlots<'a, S> {
    state: &'a EngineState<S>,
    targets: &'a [usize],
}

impl<S: Send> SlotState for EngineSlots<'_, S> {
    type S = S;
    fn with<T>(&self, slot: Option<usize>, f: impl FnOnce(&mut S) -> T) -> T {
        let k = slot.expect("engine state is used by directed maps only");
        let e = self.targets[k];
        let mut guard = self.state.slot(e);
        f(guard.get(e))
    }
}

// Crate-internal access for maps defined next to their machinery (`map/fold.rs`,
// `map/chunks.rs`).
impl<'p> LoadBalancedView<'p> {
    /// The view's pool.
    pub(crate) fn view_pool(&self) -> &'p Pool {
        self.pool
    }
}

impl<'p> DirectView<'p> {
    /// The view's pool.
    pub(crate) fn view_pool(&self) -> &'p Pool {
        self.pool
    }
}
