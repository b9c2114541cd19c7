//! Early exit: `any`, `all`, `find_any`, `find_map_any` and `find_first`, which stop
//! dispatching chunks once the answer is known.
//!
//! # How it works
//! * `any`, `all`, `find_any`, `find_map_any` are one blocking map of the pipeline whose
//!   closure returns `Err(found)` on a match: the pipeline's stop (the one `try_` maps use)
//!   then keeps every participant from claiming another chunk, and cuts running chunks short
//!   at the next [`STOP_CHECK`](super::body::STOP_CHECK) boundary. Which match is returned when
//!   several ran is the lowest index among those that ran.
//! * `find_first` must still finish every item below a match, so it cannot stop the map (a stop
//!   cuts chunks below the match too). It runs the input as *windows* of growing size
//!   (`4P`, `8P`, `16P`, ... items), each a blocking map whose closure skips, without calling
//!   the predicate, every item above the best match found so far. No window starts after one
//!   that found a match, so the items dispatched are at most about twice the match's index
//!   plus `4P`, and the predicate runs on every item below the match and, at most, on the
//!   items in flight when it was found.
//!
//! # Invariants
//! * Every input item is taken at most once and every owned item is dropped exactly once
//!   (items nobody took are released once, at the end, through the input).
//! * A panic in the predicate never kills an engine; it is re-raised on the caller after the
//!   map (or, for `find_first`, the window it fell in), naming the lowest failing index.

use super::body::NoState;
use super::input::MapInput;
use super::run::{Spec, run};
use super::sink::NoSink;
use crate::error::MapError;
use crate::map::{IntoMapInput, raise};
use crate::pool::Pool;
use crate::views::LoadBalancedView;
use std::convert::Infallible;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Items `start..start + len` of a shared input, paired with their input index: one window of
/// `find_first`. Releases are collected (shifted to input indices) and passed to the input
/// once, at the end.
struct Window<'a, In> {
    inner: &'a In,
    start: usize,
    len: usize,
    untaken: &'a Mutex<Vec<Range<usize>>>,
}

impl<In: MapInput> MapInput for Window<'_, In> {
    type Item = (In::Item, usize);
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    #[inline]
    unsafe fn take(&self, i: usize) -> Self::Item {
        // SAFETY: `i < len` (caller contract) and the window lies within the input, so
        // `start + i` is in bounds; windows are disjoint and each index of a window is taken
        // at most once (caller contract), so `start + i` is taken at most once in all.
        (unsafe { self.inner.take(self.start + i) }, self.start + i)
    }
    unsafe fn release(&self, untaken: &[Range<usize>], _on_panic: &mut dyn FnMut(usize, String)) {
        let s = self.start;
        self.untaken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(untaken.iter().map(|r| r.start + s..r.end + s));
    }
}

/// The lowest-index panic seen so far, and how many items panicked.
#[derive(Default)]
struct Panics {
    first: Option<(usize, String)>,
    count: usize,
}

impl Panics {
    fn note(&mut self, i: usize, m: String, count: usize) {
        self.count += count;
        if self.first.as_ref().is_none_or(|(j, _)| i < *j) {
            self.first = Some((i, m));
        }
    }

    /// Re-raises the lowest panic (there must be one), naming it and the count.
    fn raise(self, n: usize) -> ! {
        let (index, message) = self.first.expect("a panic was noted");
        raise(
            MapError::<Infallible>::Panicked {
                index,
                message,
                failed: self.count,
            },
            n,
        )
    }
}

/// Drops a found value before a panic is re-raised (its own `Drop` may panic).
fn drop_found<T>(v: Option<T>) {
    if let Err(m) = crate::unwind::drop_caught(v) {
        crate::unwind::report_orphan("a found item", &m);
    }
}

/// A match on its way through the pipeline's report. The pipeline drops every match but the
/// lowest-index one itself, under its report lock, where a panicking `Drop` must not unwind:
/// this wrapper drops its value under `catch_unwind` (reporting a panic on stderr).
struct Found<T>(Option<T>);

impl<T> Drop for Found<T> {
    fn drop(&mut self) {
        drop_found(self.0.take());
    }
}

/// Panics with a message naming `chunk` if the view's schedule is invalid.
fn check_schedule(view: &LoadBalancedView<'_>) {
    if let Err(e) = view.schedule.validate() {
        panic!("parview: {e}");
    }
}

impl<'p> LoadBalancedView<'p> {
    /// Applies `f` to items in parallel until one returns `Some`, and returns that value
    /// (rayon's `find_map_any`): no new chunk starts once a value is found. Which value, when
    /// several items would give one, is not specified (the lowest index among the items that
    /// ran). `None` if no item gives a value, or the input is empty.
    ///
    /// # Panics
    /// If `f` panics on an item that ran: after the map stopped or finished, naming the lowest
    /// such index and the count (no engine dies). Also if the view's schedule is invalid (the
    /// message names `chunk`).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let words = ["12", "x", "7"];
    /// let n = pool.load_balanced().find_map_any(&words, |w| w.parse::<u32>().ok());
    /// assert!(matches!(n, Some(12 | 7)));
    /// ```
    pub fn find_map_any<I, T, F>(&self, input: I, f: F) -> Option<T>
    where
        I: IntoMapInput,
        T: Send,
        F: Fn(I::Item) -> Option<T> + Sync,
    {
        check_schedule(self);
        let input = input.into_map_input();
        let n = input.len();
        let mut rep = run(
            &self.pool.reg,
            &Spec::shared(self.schedule),
            input,
            NoState,
            |_: &mut (), x| match f(x) {
                Some(t) => Err(Found(Some(t))),
                None => Ok(()),
            },
            NoSink,
        );
        let found = rep.error.take().and_then(|(_, mut t)| t.0.take());
        if let Some((index, message)) = rep.panic.take() {
            drop_found(found);
            let failed = rep.panicked;
            raise(
                MapError::<Infallible>::Panicked {
                    index,
                    message,
                    failed,
                },
                n,
            );
        }
        found
    }

    /// Whether `pred` holds for some item (rayon's `any`); no new chunk starts once one
    /// does. `false` for empty input.
    ///
    /// # Panics
    /// As [`find_map_any`](Self::find_map_any), if `pred` panics.
    ///
    /// # Examples
    /// ```
    /// use parview::Schedule;
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.schedule(Schedule::Dynamic(64));
    /// assert!(lb.any(0..1_000_000_000u64, |x| x * x > 10_000)); // stops after ~100 items
    /// assert!(!lb.any(0..0u64, |_| true));
    /// ```
    pub fn any<I, P>(&self, input: I, pred: P) -> bool
    where
        I: IntoMapInput,
        P: Fn(I::Item) -> bool + Sync,
    {
        self.find_map_any(input, |x| pred(x).then_some(()))
            .is_some()
    }

    /// Whether `pred` holds for every item (rayon's `all`); no new chunk starts once one
    /// fails it. `true` for empty input.
    ///
    /// # Panics
    /// As [`find_map_any`](Self::find_map_any), if `pred` panics.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let v = vec![2u32, 4, 6, 7];
    /// assert!(!pool.load_balanced().all(&v, |x| x % 2 == 0));
    /// assert!(pool.load_balanced().all(&v[..3], |x| x % 2 == 0));
    /// ```
    pub fn all<I, P>(&self, input: I, pred: P) -> bool
    where
        I: IntoMapInput,
        P: Fn(I::Item) -> bool + Sync,
    {
        !self.any(input, |x| !pred(x))
    }

    /// Some item for which `pred` holds — the item itself, as the map's closure would receive
    /// it (`&T` for borrowed input, `T` for owned, the integer for a range) — or `None`
    /// (rayon's `find_any`). No new chunk starts once one is found; which match is returned
    /// when there are several is not specified. For the lowest-index match use
    /// [`find_first`](Self::find_first).
    ///
    /// # Panics
    /// As [`find_map_any`](Self::find_map_any), if `pred` panics.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let x = pool.load_balanced().find_any(0..1_000_000u64, |x| x % 1000 == 999);
    /// assert_eq!(x.map(|x| x % 1000), Some(999));
    /// let names = vec!["ada".to_string(), "bob".to_string()];
    /// assert_eq!(pool.load_balanced().find_any(&names, |s| s.starts_with('b')), Some(&names[1]));
    /// ```
    pub fn find_any<I, P>(&self, input: I, pred: P) -> Option<I::Item>
    where
        I: IntoMapInput,
        I::Item: Send,
        P: Fn(&I::Item) -> bool + Sync,
    {
        self.find_map_any(input, |x| if pred(&x) { Some(x) } else { None })
    }

    /// The match of `pred` with the lowest index — the item itself, as for
    /// [`find_any`](Self::find_any) — or `None` (rayon's `find_first`). The input runs in
    /// windows of growing size (`4P`, `8P`, ... items for `P` engines, each with the view's
    /// schedule); items above the best match found so far are skipped without calling
    /// `pred`, and no window starts after a match: work is about proportional to the match's
    /// index, not the input's length.
    ///
    /// # Panics
    /// If `pred` panics on an item it was called on: after the window it fell in finished (no
    /// later window starts), naming the lowest such index and the count; no engine dies. Also
    /// if the view's schedule is invalid (the message names `chunk`), or on an engine nested
    /// [`MAX_NESTED_WAITS`](crate::MAX_NESTED_WAITS) waits deep.
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let lb = pool.load_balanced();
    /// assert_eq!(lb.find_first(0..u64::MAX, |x| x % 1000 == 999 && *x > 5000), Some(5999));
    /// let v = vec![1, 8, 3, 8];
    /// let first = lb.find_first(&v, |x| **x == 8).unwrap();
    /// assert!(std::ptr::eq(first, &v[1]));
    /// ```
    pub fn find_first<I, P>(&self, input: I, pred: P) -> Option<I::Item>
    where
        I: IntoMapInput,
        I::Item: Send,
        P: Fn(&I::Item) -> bool + Sync,
    {
        check_schedule(self);
        let input = input.into_map_input();
        let n = input.len();
        // Every later window runs at this depth too, so none of them can refuse to start
        // (which would leave the rest of the input unreleased).
        if let Err(m) = crate::registry::check_nesting() {
            crate::map::run::release_all(&input);
            panic!("{m}");
        }
        let best = AtomicUsize::new(usize::MAX);
        let found: Mutex<Option<(usize, I::Item)>> = Mutex::new(None);
        let untaken = Mutex::new(Vec::new());
        let mut panics = Panics::default();
        let mut start = 0;
        let mut w = self.pool.workers().saturating_mul(4).max(1);
        while start < n && best.load(Ordering::Acquire) == usize::MAX && panics.first.is_none() {
            let len = w.min(n - start);
            let window = Window {
                inner: &input,
                start,
                len,
                untaken: &untaken,
            };
            let rep = run(
                &self.pool.reg,
                &Spec::shared(self.schedule),
                window,
                NoState,
                |_: &mut (), (x, i): (I::Item, usize)| {
                    if i < best.load(Ordering::Relaxed) && pred(&x) {
                        let mut g = found.lock().unwrap_or_else(|e| e.into_inner());
                        if g.as_ref().is_none_or(|(j, _)| i < *j) {
                            best.fetch_min(i, Ordering::Relaxed);
                            let old = g.replace((i, x));
                            drop(g);
                            drop(old); // outside the lock: a `Drop` may panic (this item's)
                        }
                    }
                    Ok::<(), Infallible>(())
                },
                NoSink,
            );
            if let Some((i, m)) = rep.panic {
                panics.note(start + i, m, rep.panicked);
            }
            start += len;
            w = w.saturating_mul(2);
        }
        // Release, once, what no window took: the windows' holes and the rest of the input.
        let mut rest = std::mem::take(&mut *untaken.lock().unwrap_or_else(|e| e.into_inner()));
        if start < n {
            rest.push(start..n);
        }
        let mut bad = Vec::new();
        // SAFETY: every window's map has concluded (no take is running or will run), `rest`
        // lists exactly the indices no window took, and this is the input's one release.
        unsafe {
            input.release(&rest, &mut |i, m| {
                bad.push((i, format!("Drop of input item {i} panicked: {m}")))
            })
        };
        for (i, m) in bad {
            panics.note(i, m, 1);
        }
        let found = found
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(_, x)| x);
        if panics.first.is_some() {
            drop_found(found);
            panics.raise(n);
        }
        found
    }
}

impl Pool {
    /// Whether `pred` holds for some item, with the default schedule (rayon's `any`); no new
    /// chunk starts once one does. See [`LoadBalancedView::any`] (`pool.schedule(s).any(..)`
    /// picks a schedule).
    ///
    /// # Panics
    /// As [`LoadBalancedView::any`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert!(pool.par_any(&[1, 5, 9], |x| *x > 8));
    /// ```
    pub fn par_any<I, P>(&self, input: I, pred: P) -> bool
    where
        I: IntoMapInput,
        P: Fn(I::Item) -> bool + Sync,
    {
        self.load_balanced().any(input, pred)
    }

    /// Whether `pred` holds for every item (rayon's `all`); see [`LoadBalancedView::all`].
    ///
    /// # Panics
    /// As [`LoadBalancedView::all`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert!(pool.par_all(1..100u32, |x| x > 0));
    /// ```
    pub fn par_all<I, P>(&self, input: I, pred: P) -> bool
    where
        I: IntoMapInput,
        P: Fn(I::Item) -> bool + Sync,
    {
        self.load_balanced().all(input, pred)
    }

    /// Some item matching `pred` (rayon's `find_any`); see [`LoadBalancedView::find_any`].
    ///
    /// # Panics
    /// As [`LoadBalancedView::find_any`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.par_find_any(vec![3, 4, 5], |x| x % 2 == 0), Some(4));
    /// ```
    pub fn par_find_any<I, P>(&self, input: I, pred: P) -> Option<I::Item>
    where
        I: IntoMapInput,
        I::Item: Send,
        P: Fn(&I::Item) -> bool + Sync,
    {
        self.load_balanced().find_any(input, pred)
    }

    /// The lowest-index item matching `pred` (rayon's `find_first`); see
    /// [`LoadBalancedView::find_first`].
    ///
    /// # Panics
    /// As [`LoadBalancedView::find_first`].
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// assert_eq!(pool.par_find_first(10..1_000_000u32, |x| x % 7 == 0), Some(14));
    /// ```
    pub fn par_find_first<I, P>(&self, input: I, pred: P) -> Option<I::Item>
    where
        I: IntoMapInput,
        I::Item: Send,
        P: Fn(&I::Item) -> bool + Sync,
    {
        self.load_balanced().find_first(input, pred)
    }
}

/// Small cases of the windows' unsafe bookkeeping (each index taken once, the rest released
/// once), sized for Miri (`.ci/miri.sh`: `map::early::tests`).
#[cfg(test)]
mod tests {
    use crate::{Pool, Schedule};

    #[test]
    fn find_first_over_owned_items_takes_and_releases_each_once() {
        let pool = Pool::builder().workers(2).build().unwrap();
        for s in [Schedule::Dynamic(1), Schedule::Static, Schedule::Adaptive] {
            let items: Vec<String> = (0..60).map(|i| i.to_string()).collect();
            let got = pool.schedule(s).find_first(items, |x| x.ends_with('7'));
            assert_eq!(got.as_deref(), Some("7"));
            let zipped = (vec![String::from("a"); 50], vec![1u8; 40]);
            assert_eq!(pool.schedule(s).find_first(zipped, |(_, b)| *b == 2), None);
        }
    }

    #[test]
    fn find_any_stops_and_drops_the_rest_once() {
        let pool = Pool::builder().workers(2).build().unwrap();
        let items: Vec<Vec<u8>> = (0..50).map(|i| vec![i]).collect();
        let got = pool.par_find_any(items, |v| v[0] % 10 == 3);
        assert_eq!(got.map(|v| v[0] % 10), Some(3));
        assert!(pool.par_any(vec![vec![1u8]; 30], |v| v[0] == 1));
    }
}
