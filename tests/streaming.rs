//! Streaming input (`imap_iter`, `imap_unordered_iter`, `for_each_iter`): order, every item
//! exactly once, the bound on items in flight (also over inputs far too large to collect),
//! panics in the closure and in the input, early drop, one engine, more engines than cores,
//! nesting. Every test runs under a watchdog.

mod common;

use common::{SCHEDULES, WORKERS, f, panic_message_of, pool, spin_for, within};
use parview::ItemError;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// An input iterator that is not `Send` (it holds an `Rc`): streaming reads it on the caller.
fn local_iter(n: u64) -> impl Iterator<Item = u64> {
    let rc = Rc::new(Cell::new(0u64));
    (0..n).inspect(move |_| rc.set(rc.get() + 1))
}

#[test]
fn imap_iter_yields_in_input_order_on_every_schedule_pool_size_and_bound() {
    within(240, || {
        for &w in &WORKERS {
            let pool = pool(w);
            for &s in &SCHEDULES {
                for (bound, n) in [(None, 3000u64), (Some(1), 200), (Some(7), 1000)] {
                    let mut lb = pool.load_balanced().schedule(s);
                    if let Some(b) = bound {
                        lb = lb.max_in_flight(b);
                    }
                    let got: Vec<u64> = lb
                        .imap_iter(local_iter(n), f)
                        .map(|r| r.expect("no item panicked"))
                        .collect();
                    let want: Vec<u64> = (0..n).map(f).collect();
                    assert_eq!(got, want, "workers {w}, {s:?}, bound {bound:?}");
                }
            }
        }
    });
}

#[test]
fn imap_unordered_iter_yields_every_item_exactly_once() {
    within(240, || {
        for &w in &WORKERS {
            let pool = pool(w);
            for &s in &SCHEDULES {
                for (bound, n) in [(None, 3000u64), (Some(1), 200), (Some(5), 1000)] {
                    let mut lb = pool.load_balanced().schedule(s);
                    if let Some(b) = bound {
                        lb = lb.max_in_flight(b);
                    }
                    let mut seen = vec![0u32; n as usize];
                    for (i, r) in lb.imap_unordered_iter(local_iter(n), f) {
                        assert_eq!(r, Ok(f(i as u64)), "index {i} paired with another result");
                        seen[i] += 1;
                    }
                    assert!(
                        seen.iter().all(|&c| c == 1),
                        "workers {w}, {s:?}, bound {bound:?}: an index missing or repeated"
                    );
                }
            }
        }
    });
}

#[test]
fn unordered_results_of_a_fast_batch_pass_a_slow_one() {
    within(60, || {
        let pool = pool(2);
        // Bound 4: batches of one item. Item 0 is slow; later ones must come out first.
        let it = pool
            .load_balanced()
            .max_in_flight(4)
            .imap_unordered_iter(0..12u64, |i| {
                if i == 0 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                i
            });
        let order: Vec<usize> = it.map(|(i, _)| i).collect();
        assert_eq!(order.len(), 12);
        assert_ne!(order[0], 0, "the slow item came first: {order:?}");
    });
}

/// Consumes `n` items one by one and checks, after each result, that the items pulled from the
/// input minus the results taken never exceed `bound`; returns the largest gap seen.
fn max_gap(ordered: bool, workers: usize, bound: usize, n: u64, slow: bool) -> usize {
    let pool = pool(workers);
    let pulled = Rc::new(Cell::new(0usize));
    let p2 = pulled.clone();
    let input = (0..n).inspect(move |_| p2.set(p2.get() + 1));
    let work = move |i: u64| {
        if slow && i % 7 == 0 {
            spin_for(Duration::from_micros(50));
        }
        i
    };
    let lb = pool.load_balanced().max_in_flight(bound);
    let mut gap = 0;
    let mut check = |taken: usize, in_flight: usize| {
        let g = pulled.get() - taken;
        assert!(
            g <= bound,
            "bound {bound}: {} items pulled, {taken} results taken",
            pulled.get()
        );
        assert_eq!(in_flight, g, "in_flight() disagrees with the count");
        gap = gap.max(g);
    };
    let mut taken = 0;
    if ordered {
        let mut it = lb.imap_iter(input, work);
        check(0, it.in_flight());
        while let Some(r) = it.next() {
            assert_eq!(r, Ok(taken as u64));
            taken += 1;
            check(taken, it.in_flight());
        }
    } else {
        let mut it = lb.imap_unordered_iter(input, work);
        check(0, it.in_flight());
        while it.next().is_some() {
            taken += 1;
            check(taken, it.in_flight());
        }
    }
    assert_eq!(taken as u64, n);
    gap
}

#[test]
fn items_read_but_not_yielded_never_exceed_the_bound() {
    within(240, || {
        for ordered in [true, false] {
            for &w in &[1, 2, 8] {
                for bound in [1, 2, 3, 16, 100, 5000] {
                    let gap = max_gap(ordered, w, bound, 3000, bound <= 100);
                    // The reader reads ahead: right after the start the gap is at least half the
                    // bound (all of it for bounds below 4).
                    assert!(
                        gap >= bound.min(3000) / 2,
                        "ordered {ordered}, workers {w}, bound {bound}: gap only {gap}"
                    );
                }
            }
        }
    });
}

#[test]
fn a_100m_item_input_is_read_only_as_far_as_the_consumer_goes() {
    within(120, || {
        let pool = pool(2);
        for ordered in [true, false] {
            let pulled = Rc::new(Cell::new(0usize));
            let p2 = pulled.clone();
            let input = (0..100_000_000u64).inspect(move |_| p2.set(p2.get() + 1));
            let lb = pool.load_balanced();
            let bound = lb.get_max_in_flight();
            let taken = if ordered {
                let v: Vec<u64> = lb
                    .imap_iter(input, |x| x * 2)
                    .take(10_000)
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(v[9_999], 19_998);
                v.len()
            } else {
                lb.imap_unordered_iter(input, |x| x * 2)
                    .take(10_000)
                    .count()
            };
            assert_eq!(taken, 10_000);
            // The iterator was dropped with the results: nothing more can be read.
            assert!(
                pulled.get() <= taken + bound,
                "read {} of 100M items for {taken} results (bound {bound})",
                pulled.get()
            );
        }
    });
}

#[test]
fn for_each_iter_over_millions_of_items_keeps_the_gap_bounded() {
    within(240, || {
        let pool = pool(2);
        let bound = 4096;
        let n = 2_000_000u64;
        let finished = AtomicUsize::new(0);
        let sum = AtomicUsize::new(0);
        let pulled = Cell::new(0usize);
        let worst = Cell::new(0usize);
        // Checked on the caller as each item is read: read minus finished never exceeds the
        // bound (finished only grows, so this is exact at that moment).
        let input = (0..n).inspect(|_| {
            pulled.set(pulled.get() + 1);
            let gap = pulled.get() - finished.load(Ordering::SeqCst);
            worst.set(worst.get().max(gap));
        });
        pool.load_balanced()
            .max_in_flight(bound)
            .for_each_iter(input, |i| {
                sum.fetch_add(i as usize & 0xff, Ordering::Relaxed);
                finished.fetch_add(1, Ordering::SeqCst);
            });
        assert_eq!(finished.load(Ordering::SeqCst), n as usize);
        let want: usize = (0..n).map(|i| i as usize & 0xff).sum();
        assert_eq!(sum.load(Ordering::Relaxed), want);
        assert!(
            worst.get() <= bound,
            "up to {} items in flight, bound {bound}",
            worst.get()
        );
    });
}

#[test]
fn for_each_iter_runs_every_item_once_with_a_borrowed_closure() {
    within(240, || {
        for &w in &WORKERS {
            let pool = pool(w);
            for &s in &SCHEDULES {
                let hits: Vec<AtomicUsize> = (0..2000).map(|_| AtomicUsize::new(0)).collect();
                pool.load_balanced()
                    .schedule(s)
                    .max_in_flight(64)
                    .for_each_iter(local_iter(2000), |i| {
                        hits[i as usize].fetch_add(1, Ordering::Relaxed);
                    });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "workers {w}, {s:?}"
                );
            }
        }
    });
}

#[test]
fn panics_in_the_closure_become_item_errors_and_no_engine_dies() {
    within(120, || {
        for &w in &WORKERS {
            let pool = pool(w);
            let lb = pool.load_balanced().max_in_flight(16);
            let v: Vec<Result<u32, ItemError>> = lb
                .imap_iter((0..100u32).map(|i| i % 10), |x| 100 / x)
                .collect();
            assert_eq!(v.len(), 100);
            for (i, r) in v.iter().enumerate() {
                if i % 10 == 0 {
                    let e = r.as_ref().unwrap_err();
                    assert_eq!(e.index, i, "the error names the input index");
                    assert!(e.message.contains("divide by zero"), "{}", e.message);
                } else {
                    assert_eq!(*r, Ok(100 / (i as u32 % 10)));
                }
            }
            let mut bad: Vec<usize> = lb
                .imap_unordered_iter((0..100u32).map(|i| i % 10), |x| 100 / x)
                .filter_map(|(i, r)| r.is_err().then_some(i))
                .collect();
            bad.sort();
            assert_eq!(bad, (0..100).step_by(10).collect::<Vec<_>>());
            // for_each_iter re-raises after every other item ran.
            let ran = AtomicUsize::new(0);
            let msg = panic_message_of(|| {
                lb.for_each_iter(0..100u32, |i| {
                    assert!(i != 37 && i != 73, "bad item {i}");
                    ran.fetch_add(1, Ordering::Relaxed);
                })
            });
            assert!(msg.contains("item 37 panicked"), "{msg}");
            assert!(msg.contains("2 of 100 items panicked"), "{msg}");
            assert_eq!(ran.load(Ordering::Relaxed), 98);
            // Every engine still works.
            assert_eq!(pool.direct().apply(|e| e), (0..w).collect::<Vec<_>>());
        }
    });
}

/// An input that panics when asked for item `at`.
fn failing_input(at: u64, pulled: Rc<Cell<u64>>) -> impl Iterator<Item = u64> {
    (0..u64::MAX).inspect(move |&i| {
        pulled.set(i + 1);
        assert!(i != at, "input broke at {i}");
    })
}

#[test]
fn a_panicking_input_propagates_and_the_stream_then_ends() {
    within(120, || {
        let pool = pool(2);
        let lb = pool.load_balanced().max_in_flight(32);
        // At the start (while priming): the call itself panics.
        let msg = panic_message_of(|| lb.imap_iter(failing_input(5, Default::default()), |x| x));
        assert!(msg.contains("input broke at 5"), "{msg}");
        // Later: `next` panics, then the stream ends; nothing hangs, the input is not asked again.
        for ordered in [true, false] {
            let pulled = Rc::new(Cell::new(0));
            let input = failing_input(500, pulled.clone());
            let mut results = 0;
            let mut panicked = None;
            if ordered {
                let mut it = lb.imap_iter(input, |x| x + 1);
                loop {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next())) {
                        Ok(Some(r)) => {
                            assert_eq!(r, Ok(results + 1));
                            results += 1;
                        }
                        Ok(None) => break,
                        Err(p) => panicked = Some(common::payload_message(&*p)),
                    }
                }
            } else {
                let mut it = lb.imap_unordered_iter(input, |x| x + 1);
                loop {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next())) {
                        Ok(Some((i, r))) => {
                            assert_eq!(r, Ok(i as u64 + 1));
                            results += 1;
                        }
                        Ok(None) => break,
                        Err(p) => panicked = Some(common::payload_message(&*p)),
                    }
                }
            }
            let m = panicked.expect("the input's panic reached the consumer");
            assert!(m.contains("input broke at 500"), "{m}");
            assert!(results < 500, "items after the failure were yielded");
            assert_eq!(
                pulled.get(),
                501,
                "the input was asked again after it panicked"
            );
        }
        // for_each_iter: propagates, and the borrowed closure is never called afterwards.
        let calls = AtomicUsize::new(0);
        let msg = panic_message_of(|| {
            lb.for_each_iter(failing_input(300, Default::default()), |_| {
                spin_for(Duration::from_micros(20));
                calls.fetch_add(1, Ordering::SeqCst);
            })
        });
        assert!(msg.contains("input broke at 300"), "{msg}");
        let after = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(calls.load(Ordering::SeqCst), after, "called after return");
        assert!(after <= 300, "only items read before the failure run");
        assert_eq!(pool.par_map(0..4u8, |x| x), vec![0, 1, 2, 3]);
    });
}

static LIVE_ITEMS: AtomicUsize = AtomicUsize::new(0);
static LIVE_RESULTS: AtomicUsize = AtomicUsize::new(0);

struct Item(u64);
impl Item {
    fn new(i: u64) -> Self {
        LIVE_ITEMS.fetch_add(1, Ordering::SeqCst);
        Item(i)
    }
}
impl Drop for Item {
    fn drop(&mut self) {
        LIVE_ITEMS.fetch_sub(1, Ordering::SeqCst);
    }
}
struct Out(#[allow(dead_code)] u64);
impl Out {
    fn new(i: u64) -> Self {
        LIVE_RESULTS.fetch_add(1, Ordering::SeqCst);
        Out(i)
    }
}
impl Drop for Out {
    fn drop(&mut self) {
        LIVE_RESULTS.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn dropping_a_stream_early_stops_reading_and_drops_everything_once() {
    within(120, || {
        for &w in &[1, 2, 8] {
            {
                let pool = pool(w);
                let started = Arc::new(AtomicUsize::new(0));
                for ordered in [true, false] {
                    let pulled = Rc::new(Cell::new(0usize));
                    let p2 = pulled.clone();
                    let input = (0..1_000_000u64).map(move |i| {
                        p2.set(p2.get() + 1);
                        Item::new(i)
                    });
                    let s2 = started.clone();
                    let work = move |x: Item| {
                        s2.fetch_add(1, Ordering::SeqCst);
                        spin_for(Duration::from_micros(200));
                        Out::new(x.0)
                    };
                    let lb = pool.load_balanced().max_in_flight(64);
                    if ordered {
                        let mut it = lb.imap_iter(input, work);
                        for k in 0..3 {
                            assert_eq!(it.next().unwrap().unwrap().0, k);
                        }
                    } else {
                        let mut it = lb.imap_unordered_iter(input, work);
                        for _ in 0..3 {
                            it.next().unwrap().1.unwrap();
                        }
                    }
                    assert!(pulled.get() <= 3 + 64);
                }
                assert!(started.load(Ordering::SeqCst) <= 2 * (3 + 64));
                // Dropping the pool lets the aborted batches finish (engines drop their items).
            }
            assert_eq!(LIVE_ITEMS.load(Ordering::SeqCst), 0, "an input item leaked");
            assert_eq!(LIVE_RESULTS.load(Ordering::SeqCst), 0, "a result leaked");
        }
    });
}

#[test]
fn nested_streams_on_a_one_engine_pool_finish() {
    within(60, || {
        let pool = pool(1);
        let lb = pool.load_balanced().max_in_flight(8);
        let out = pool.direct().apply(|_| {
            let v: u64 = lb.imap_iter(0..500u64, |x| x).map(Result::unwrap).sum();
            let count = AtomicUsize::new(0);
            lb.for_each_iter(0..300u64, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            let n = lb.imap_unordered_iter(0..200u64, |x| x).count();
            (v, count.into_inner(), n)
        });
        assert_eq!(out, vec![(499 * 500 / 2, 300, 200)]);
    });
}

#[test]
fn zero_bound_is_refused_naming_the_argument() {
    let pool = pool(1);
    let msg = panic_message_of(|| pool.load_balanced().max_in_flight(0));
    assert!(msg.contains("max_in_flight"), "{msg}");
    assert_eq!(pool.load_balanced().get_max_in_flight(), 4096);
    let bad = pool.load_balanced().schedule(parview::Schedule::Dynamic(0));
    let msg = panic_message_of(|| bad.imap_iter(0..3u8, |x| x));
    assert!(msg.contains("chunk"), "{msg}");
}

#[test]
fn empty_inputs_yield_nothing() {
    within(30, || {
        let pool = pool(2);
        let lb = pool.load_balanced();
        assert_eq!(lb.imap_iter(std::iter::empty::<u8>(), |x| x).count(), 0);
        assert_eq!(
            lb.imap_unordered_iter(Vec::<String>::new(), |x| x).count(),
            0
        );
        let called = AtomicBool::new(false);
        lb.for_each_iter(0..0u32, |_| called.store(true, Ordering::Relaxed));
        assert!(!called.into_inner());
    });
}
