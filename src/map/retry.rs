//! Retries: a load-balanced map that runs an item again when it panics
//! ([`LoadBalancedView::retries`]).
//!
//! The retry loop wraps the item's closure inside the one pipeline: an attempt that panics is
//! caught, noted (in the timeline when one is recorded) and run again on the same thread, with
//! a fresh clone of the item, up to `n` times; the last attempt's panic is reported as a map
//! without retries reports it ([`MapError::Panicked`], or re-raised by the blocking maps).

use super::run::{Refused, VecOut};
use super::{IntoMapInput, MapInput, Passthrough, Spec, Tracker, raise, with_timeline};
use crate::AsyncResult;
use crate::error::MapError;
use crate::timeline::{Attempt, Lane, Timeline};
use crate::views::LoadBalancedView;
use std::convert::Infallible;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// A [`LoadBalancedView`] whose maps run an item that panicked again, up to `n` more times
/// (ipyparallel's `retries`, Ray's task retries). Created by [`LoadBalancedView::retries`].
///
/// Each attempt gets a clone of the item (so items must be `Clone`: the `&T` of a slice and
/// integers of a range are; an owned `Vec<T>` needs `T: Clone`). Only panics are retried: an
/// `Err` of a [`try_map`](Self::try_map) is a result, not a failure to run. Failed attempts are
/// in [`Timeline::attempts`] when the timeline is recorded ([`map_timed`](Self::map_timed)).
/// The random streams of [`map_rng`](Self::map_rng) are derived from `(seed, index)` on each
/// attempt, so a retried item sees the same numbers.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let failures = AtomicUsize::new(0);
/// let v = pool.load_balanced().retries(3).map(0..10u32, |i| {
///     // A flaky item: fails twice, then works.
///     if i == 4 && failures.fetch_add(1, Ordering::Relaxed) < 2 { panic!("flaky"); }
///     i * 2
/// });
/// assert_eq!(v[4], 8);
/// assert_eq!(failures.load(Ordering::Relaxed), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Retries<'p> {
    view: LoadBalancedView<'p>,
    retries: usize,
}

impl<'p> LoadBalancedView<'p> {
    /// This view's maps with up to `n` retries of an item that panicked: see [`Retries`].
    /// `retries(0)` behaves as the view itself.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().retries(2).get_retries(), 2);
    /// ```
    pub fn retries(&self, n: usize) -> Retries<'p> {
        Retries {
            view: self.clone(),
            retries: n,
        }
    }
}

impl<'p> Retries<'p> {
    /// How many times a panicked item is run again.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().retries(5).get_retries(), 5);
    /// ```
    pub fn get_retries(&self) -> usize {
        self.retries
    }

    /// Ordered map; an item that panics is run again up to `n` times.
    ///
    /// # Panics
    /// As [`LoadBalancedView::map`], when an item still panics on its last attempt (after every
    /// other item ran), or the schedule is invalid.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.load_balanced().retries(1).map(&[1, 2], |x| x + 1), vec![2, 3]);
    /// ```
    pub fn map<I, R, F>(&self, input: I, f: F) -> Vec<R>
    where
        I: IntoMapInput,
        I::Item: Clone,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        let input = input.into_map_input();
        let n = input.len();
        self.check();
        self.run(input, |x| Ok::<R, Infallible>(f(x)), None)
            .unwrap_or_else(|e| raise(e, n))
    }

    /// Fallible map with retries of panics (an `Err` is not retried: it stops the map as in
    /// [`LoadBalancedView::try_map`]).
    ///
    /// # Errors
    /// As [`LoadBalancedView::try_map`]; [`MapError::Panicked`] counts the items whose last
    /// attempt panicked.
    ///
    /// # Examples
    /// ```
    /// use parview::MapError;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let r = pool.load_balanced().retries(2).try_map(0..4u32, |i| -> Result<u32, ()> {
    ///     assert!(i != 3, "always fails");
    ///     Ok(i)
    /// });
    /// assert!(matches!(r, Err(MapError::Panicked { index: 3, failed: 1, .. })));
    /// ```
    pub fn try_map<I, R, E, F>(&self, input: I, f: F) -> Result<Vec<R>, MapError<E>>
    where
        I: IntoMapInput,
        I::Item: Clone,
        F: Fn(I::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        let input = input.into_map_input();
        if let Err(e) = self.view.schedule.validate() {
            super::run::release_all(&input);
            return Err(e.into());
        }
        self.run(input, f, None)
    }

    /// [`map`](Self::map) with the per-chunk [`Timeline`], whose
    /// [`attempts`](Timeline::attempts) list every failed attempt.
    ///
    /// # Panics
    /// As [`map`](Self::map).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let (v, tl) = pool.load_balanced().retries(1).map_timed(0..100u32, |i| i);
    /// assert_eq!((v.len(), tl.items(), tl.attempts().len()), (100, 100, 0));
    /// ```
    pub fn map_timed<I, R, F>(&self, input: I, f: F) -> (Vec<R>, Timeline)
    where
        I: IntoMapInput,
        I::Item: Clone,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        let input = input.into_map_input();
        let n = input.len();
        self.check();
        let label = format!(
            "load-balanced ({}), retries {}",
            self.view.schedule, self.retries
        );
        let (v, tl) = with_timeline(n, label, self.view.pool.workers(), |tracker| {
            self.run(input, |x| Ok::<R, Infallible>(f(x)), Some(tracker))
        });
        (v.unwrap_or_else(|e| raise(e, n)), tl)
    }

    /// [`LoadBalancedView::map_async`] with retries. With
    /// [`record_timeline`](LoadBalancedView::record_timeline) on the view, the
    /// [`AsyncResult::timeline`] lists every failed attempt.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let failed = AtomicBool::new(false);
    /// let ar = pool.load_balanced().record_timeline().retries(1).map_async(0..8u32, move |i| {
    ///     if i == 5 && !failed.swap(true, Ordering::Relaxed) { panic!("once"); }
    ///     i
    /// });
    /// ar.wait();
    /// assert_eq!(ar.timeline().unwrap().attempts().len(), 1);
    /// assert_eq!(ar.get().unwrap()[5], 5);
    /// ```
    pub fn map_async<I, R, F>(&self, input: I, f: F) -> AsyncResult<Vec<R>>
    where
        I: IntoMapInput,
        I::Input: Send + 'static,
        I::Item: Clone + 'static,
        R: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
    {
        let input = input.into_map_input();
        let view = &self.view;
        if let Err(e) = view.schedule.validate() {
            super::run::release_all(&input);
            return AsyncResult::from_core(Arc::new(Refused::new(e.into())));
        }
        let n = input.len();
        let out = match VecOut::new(n) {
            Ok(out) => out,
            Err(e) => {
                super::run::release_all(&input);
                return AsyncResult::from_core(Arc::new(Refused::new(e)));
            }
        };
        let tracker = Arc::new(Tracker::new(n, view.timeline));
        let g = retrying(
            self.retries,
            view.pool.reg.clone(),
            Some(tracker.clone()),
            move |x| Ok::<R, Infallible>(f(x)),
        );
        let label = format!(
            "load-balanced ({}), retries {}",
            view.schedule, self.retries
        );
        AsyncResult::from_core(super::run::start(
            &view.pool.reg,
            &Spec::shared(view.schedule).tracked(Some(tracker)),
            (Passthrough(input), 0..n).into_map_input(),
            move |_: &mut (), x| g(x),
            out,
            &label,
            view.timeline,
        ))
    }

    /// [`LoadBalancedView::map_rng`] with retries: a retried item gets its stream
    /// `Streams::new(seed).for_item(i)` afresh, so every attempt sees the same numbers and the
    /// output does not depend on how many attempts an item took.
    ///
    /// # Panics
    /// As [`map`](Self::map).
    ///
    /// # Examples
    /// ```
    /// use parview::rand::RngExt;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let a = pool.load_balanced().retries(2).map_rng(7, 4, |rng, _| rng.random::<u8>());
    /// assert_eq!(a, pool.par_map_rng(7, 4, |rng, _| rng.random::<u8>()));
    /// ```
    pub fn map_rng<F, R>(&self, seed: u64, n: usize, f: F) -> Vec<R>
    where
        F: Fn(&mut rand_chacha::ChaCha8Rng, usize) -> R + Sync,
        R: Send,
    {
        let streams = crate::rng::Streams::new(seed);
        self.map(0..n, |i| f(&mut streams.for_item(i), i))
    }

    fn check(&self) {
        if let Err(e) = self.view.schedule.validate() {
            panic!("parview: {e}");
        }
    }

    /// The pipeline's map over `input` zipped with its indices, each item's closure wrapped in
    /// the retry loop. The schedule must be valid.
    fn run<In, R, E, F>(
        &self,
        input: In,
        f: F,
        tracker: Option<Arc<Tracker>>,
    ) -> Result<Vec<R>, MapError<E>>
    where
        In: MapInput,
        In::Item: Clone,
        F: Fn(In::Item) -> Result<R, E> + Sync,
        R: Send,
        E: Send,
    {
        let n = input.len();
        let g = retrying(self.retries, self.view.pool.reg.clone(), tracker.clone(), f);
        self.view
            .pool
            .map_vec(self.view.schedule, (Passthrough(input), 0..n), g, tracker)
    }
}

/// `f` wrapped in the retry loop, for items zipped with their index: an attempt that panics
/// is noted in `tracker` (when it records a timeline) and run again with a clone of the item,
/// up to `retries` times; the last attempt runs unguarded, so its panic is the map's.
pub(crate) fn retrying<T: Clone, R, E>(
    retries: usize,
    reg: Arc<crate::registry::Registry>,
    tracker: Option<Arc<Tracker>>,
    f: impl Fn(T) -> Result<R, E>,
) -> impl Fn((T, usize)) -> Result<R, E> {
    move |(x, i)| {
        let mut attempt = 0;
        loop {
            if attempt == retries {
                return f(x);
            }
            let t0 = Instant::now();
            match panic::catch_unwind(AssertUnwindSafe(|| f(x.clone()))) {
                Ok(r) => return r,
                Err(payload) => {
                    let message = crate::unwind::panic_message(&*payload);
                    crate::unwind::drop_payload(payload);
                    if let Some(t) = &tracker {
                        t.attempt(Attempt {
                            index: i,
                            attempt,
                            lane: reg.current_engine().map_or(Lane::Caller, Lane::Engine),
                            began: t.since_start(t0),
                            ended: t.since_start(Instant::now()),
                            message,
                        });
                    }
                    attempt += 1;
                }
            }
        }
    }
}
