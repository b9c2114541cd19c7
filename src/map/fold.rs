//! A fold with one accumulator per participant: [`LoadBalancedView::fold`], [`Pool::par_fold`]
//! and the free [`par_fold`] (rayon's `fold(identity, f).reduce(identity, r)`, OpenMP's
//! `reduction` clause with a user-defined combiner).
//!
//! It is the one pipeline with a per-participant state: the map's slot state
//! ([`SlotState`]) gives each participant's run over the map (a caller's, or an engine's
//! ticket) an empty accumulator, which the first item it takes fills with `identity()` and every
//! item folds into; when the participant leaves, its accumulator goes to a list. After the map,
//! the caller combines the list with `reduce_op`. So there are at most `P + 1` accumulators
//! (the caller may take part twice: alone first, then with the engines), however many chunks
//! the schedule cut, and `identity` runs once per participant that took an item.
//!
//! Which items end up in which accumulator, and in which order the accumulators are combined,
//! depends on the schedule and on timing: the result is reproducible only if `fold_op` and
//! `reduce_op` do not care about grouping and order (integer sums, counts, set and map
//! unions, min/max). The deterministic reductions in [`crate::reduce`] are the ones to use
//! for floats.

use super::body::SlotState;
use super::sink::NoSink;
use super::{IntoMapInput, MapInput, Spec, raise};
use crate::pool::Pool;
use crate::views::LoadBalancedView;
use std::convert::Infallible;
use std::sync::Mutex;

/// Each participant's accumulator, and the list they go to when it leaves.
struct Accumulators<A> {
    done: Mutex<Vec<A>>,
}

impl<A: Send> SlotState for Accumulators<A> {
    type S = Option<A>;
    fn with<T>(&self, _slot: Option<usize>, f: impl FnOnce(&mut Option<A>) -> T) -> T {
        let mut acc = None;
        let t = f(&mut acc);
        if let Some(a) = acc {
            self.done.lock().unwrap_or_else(|e| e.into_inner()).push(a);
        }
        t
    }
}

/// Drops values one by one after a failure; a panicking `Drop` is reported on stderr (the
/// call is about to panic with the failure it is reporting).
fn drop_all<A>(v: Vec<A>, what: &str) {
    for a in v {
        if let Err(m) = crate::unwind::drop_caught(a) {
            crate::unwind::report_orphan(what, &m);
        }
    }
}

impl LoadBalancedView<'_> {
    /// Folds every item into per-participant accumulators, then combines them: like rayon's
    /// `fold(identity, fold_op).reduce(identity, reduce_op)`, with the view's schedule.
    ///
    /// Each participant (the calling thread, each engine that joins) starts from `identity()`
    /// when it takes its first item and folds every item it runs into its own accumulator with
    /// `fold_op` — no lock, no per-item allocation. When all items ran, the calling thread
    /// combines the (at most `P + 1`) accumulators with `reduce_op`. Empty input gives
    /// `identity()`.
    ///
    /// **Not bitwise reproducible.** Which items share an accumulator and the order in which
    /// accumulators are combined depend on the worker count, the schedule and timing. The
    /// result is well defined when `identity()` is neutral and `fold_op`/`reduce_op` are
    /// associative and commutative (counts, integer sums, unions of maps or sets, min/max);
    /// float sums differ in the last bits from run to run. For results that are the same bits
    /// for every worker count and schedule, use [`map_reduce`](Self::map_reduce) /
    /// [`Pool::par_map_reduce`] (a fixed tree, one value per item).
    ///
    /// # Panics
    /// If the schedule is invalid (the message names `chunk`). If `fold_op` (or `identity`,
    /// called inside the item that needs it) panics, every other item still runs, then this
    /// call panics as [`Pool::par_map`] does, naming the lowest failing index and the count.
    /// If `reduce_op` panics, or `identity` on empty input, the call panics with a message
    /// naming it. Accumulators left over are dropped; the engines survive.
    ///
    /// # Examples
    /// ```
    /// use std::collections::HashMap;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lines = vec!["a b a", "b c", "a"];
    /// let counts = pool.load_balanced().fold(
    ///     &lines,
    ///     HashMap::<&str, usize>::new,
    ///     |mut m, line| {
    ///         for w in line.split_whitespace() {
    ///             *m.entry(w).or_default() += 1;
    ///         }
    ///         m
    ///     },
    ///     |mut a, b| {
    ///         for (w, c) in b {
    ///             *a.entry(w).or_default() += c;
    ///         }
    ///         a
    ///     },
    /// );
    /// assert_eq!(counts["a"], 3);
    /// assert_eq!(counts["b"], 2);
    /// assert_eq!(counts["c"], 1);
    /// ```
    pub fn fold<I, A, ID, F, RD>(&self, input: I, identity: ID, fold_op: F, reduce_op: RD) -> A
    where
        I: IntoMapInput,
        A: Send,
        ID: Fn() -> A + Sync,
        F: Fn(A, I::Item) -> A + Sync,
        RD: Fn(A, A) -> A + Sync,
    {
        let schedule = self.get_schedule();
        if let Err(e) = schedule.validate() {
            panic!("parview: {e}");
        }
        let input = input.into_map_input();
        let n = input.len();
        let state = Accumulators {
            done: Mutex::new(Vec::new()),
        };
        let rep = super::run::run(
            &self.view_pool().reg,
            &Spec::shared(schedule),
            input,
            &state,
            |acc: &mut Option<A>, x| {
                let a = match acc.take() {
                    Some(a) => a,
                    None => identity(),
                };
                *acc = Some(fold_op(a, x));
                Ok::<(), Infallible>(())
            },
            NoSink,
        );
        let mut accs = state.done.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = rep.error(n) {
            drop_all(accs, "a fold's accumulator");
            raise(e, n);
        }
        let Some(mut acc) = accs.pop() else {
            return crate::unwind::catch(identity)
                .unwrap_or_else(|m| panic!("parview: fold's `identity` panicked: {m}"));
        };
        while let Some(b) = accs.pop() {
            match crate::unwind::catch(|| reduce_op(acc, b)) {
                Ok(v) => acc = v,
                Err(m) => {
                    drop_all(accs, "a fold's accumulator");
                    panic!("parview: fold's `reduce_op` panicked: {m}");
                }
            }
        }
        acc
    }
}

impl<A: Send> SlotState for &Accumulators<A> {
    type S = Option<A>;
    #[inline]
    fn with<T>(&self, slot: Option<usize>, f: impl FnOnce(&mut Option<A>) -> T) -> T {
        (**self).with(slot, f)
    }
}

impl Pool {
    /// [`LoadBalancedView::fold`] with the default schedule: per-participant accumulators
    /// combined at the end (rayon's `fold().reduce()`). **Not bitwise reproducible**; see
    /// [`par_map_reduce`](Self::par_map_reduce) for that.
    ///
    /// # Panics
    /// As [`LoadBalancedView::fold`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// // Count of multiples of 3, folded into a u64 per participant.
    /// let c = pool.par_fold(0..1000u32, || 0u64, |c, i| c + u64::from(i % 3 == 0), |a, b| a + b);
    /// assert_eq!(c, 334);
    /// ```
    pub fn par_fold<I, A, ID, F, RD>(&self, input: I, identity: ID, fold_op: F, reduce_op: RD) -> A
    where
        I: IntoMapInput,
        A: Send,
        ID: Fn() -> A + Sync,
        F: Fn(A, I::Item) -> A + Sync,
        RD: Fn(A, A) -> A + Sync,
    {
        self.load_balanced()
            .fold(input, identity, fold_op, reduce_op)
    }
}

/// [`Pool::par_fold`] on the global pool: per-participant accumulators combined at the end.
/// **Not bitwise reproducible**; [`par_map_reduce`](crate::par_map_reduce) is.
///
/// # Panics
/// As [`LoadBalancedView::fold`].
///
/// # Examples
/// ```
/// use std::collections::BTreeSet;
/// let letters = parview::par_fold(
///     &["pear", "plum"],
///     BTreeSet::new,
///     |mut s, w| { s.extend(w.chars()); s },
///     |mut a, b| { a.extend(b); a },
/// );
/// assert_eq!(letters.into_iter().collect::<String>(), "aelmpru");
/// ```
pub fn par_fold<I, A, ID, F, RD>(input: I, identity: ID, fold_op: F, reduce_op: RD) -> A
where
    I: IntoMapInput,
    A: Send,
    ID: Fn() -> A + Sync,
    F: Fn(A, I::Item) -> A + Sync,
    RD: Fn(A, A) -> A + Sync,
{
    Pool::global().par_fold(input, identity, fold_op, reduce_op)
}

#[cfg(test)]
mod tests {
    use crate::{Pool, Schedule};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn accumulators_are_few_and_each_dropped_once() {
        let pool = Pool::builder().workers(2).build().unwrap();
        for s in [Schedule::Dynamic(1), Schedule::Static, Schedule::Adaptive] {
            let made = Arc::new(AtomicUsize::new(0));
            let drops = Arc::new(AtomicUsize::new(0));
            let (sum, accs) = pool.schedule(s).fold(
                0..500u64,
                || {
                    made.fetch_add(1, Ordering::SeqCst);
                    (0u64, vec![Counted(drops.clone())])
                },
                |(s, v), i| (s + i, v),
                |(a, mut va), (b, vb)| {
                    va.extend(vb);
                    (a + b, va)
                },
            );
            assert_eq!(sum, 499 * 500 / 2, "{s}");
            let m = made.load(Ordering::SeqCst);
            assert!((1..=3).contains(&m), "{s}: {m} accumulators for P=2");
            assert_eq!(accs.len(), m, "{s}");
            drop(accs);
            assert_eq!(drops.load(Ordering::SeqCst), m, "{s}");
        }
    }

    #[test]
    fn a_panicking_fold_drops_the_accumulators_and_reports_the_item() {
        let pool = Pool::builder().workers(2).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.schedule(Schedule::Dynamic(2)).fold(
                0..50u32,
                || {
                    made.fetch_add(1, Ordering::SeqCst);
                    Counted(drops.clone())
                },
                |c, i| {
                    assert!(i != 17, "bad item");
                    c
                },
                |a, _b| a,
            )
        }));
        let msg = crate::unwind::panic_message(&*r.unwrap_err());
        assert!(msg.contains("item 17 panicked: bad item"), "{msg}");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            made.load(Ordering::SeqCst),
            "every accumulator dropped once"
        );
    }
}
