//! Early exit (`any`, `all`, `find_any`, `find_map_any`, `find_first`, and `Pool::par_*`):
//! correct answers on every schedule and pool size, empty inputs, evaluation stops early on
//! huge inputs, `find_first` finishes lower items before answering, panics are re-raised and
//! kill no engine, and owned items are dropped exactly once.

mod common;

use common::{SCHEDULES, WORKERS, f, panic_message_of, pool, spin_for, within};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A named predicate over the test data.
type Pred = Box<dyn Fn(&u64) -> bool + Sync>;

#[test]
fn answers_match_the_serial_ones_on_every_schedule() {
    within(240, || {
        let data: Vec<u64> = (0..5000).map(f).collect();
        // Match nowhere, only at the first item, only at the last, in the middle, often.
        let preds: Vec<(&str, Pred)> = vec![
            ("none", Box::new(|_| false)),
            ("first", Box::new(move |x| *x == f(0))),
            ("last", Box::new(move |x| *x == f(4999))),
            ("middle", Box::new(move |x| *x == f(2500) || *x == f(4000))),
            ("often", Box::new(|x| x % 3 == 0)),
        ];
        for &w in &WORKERS {
            let pool = pool(w);
            for &s in &SCHEDULES {
                let lb = pool.schedule(s);
                for (name, p) in &preds {
                    let ctx = format!("workers {w}, {s:?}, {name}");
                    let want_first = data.iter().find(|&x| p(x));
                    assert_eq!(lb.find_first(&data, |x| p(x)), want_first, "{ctx}");
                    assert_eq!(lb.any(&data, p), want_first.is_some(), "{ctx}");
                    assert_eq!(lb.all(&data, |x| !p(x)), want_first.is_none(), "{ctx}");
                    match lb.find_any(&data, |x| p(x)) {
                        Some(x) => assert!(p(x), "{ctx}: find_any returned a non-match"),
                        None => assert!(want_first.is_none(), "{ctx}: find_any missed"),
                    }
                    let idx = lb.find_map_any(0..data.len(), |i| p(&data[i]).then_some(i));
                    assert_eq!(idx.is_some(), want_first.is_some(), "{ctx}");
                    if let Some(i) = idx {
                        assert!(p(&data[i]), "{ctx}");
                    }
                }
                // Ranges: the item is the integer itself.
                assert_eq!(lb.find_first(7..5000u32, |x| x % 100 == 0), Some(100));
                assert_eq!(lb.find_first(0..5000u32, |x| *x == 4999), Some(4999));
            }
        }
    });
}

#[test]
fn empty_inputs() {
    within(30, || {
        let pool = pool(2);
        for &s in &SCHEDULES {
            let lb = pool.schedule(s);
            assert!(!lb.any(0..0u32, |_| true));
            assert!(lb.all(0..0u32, |_| false));
            assert_eq!(lb.find_any(Vec::<String>::new(), |_| true), None);
            assert_eq!(lb.find_first(&[] as &[u8; 0], |_| true), None);
            assert_eq!(lb.find_map_any(0..0u8, Some), None);
        }
        assert!(!pool.par_any(0..0u8, |_| true));
        assert!(pool.par_all(0..0u8, |_| false));
        assert_eq!(pool.par_find_any(0..0u8, |_| true), None);
        assert_eq!(pool.par_find_first(0..0u8, |_| true), None);
    });
}

/// 2^40 items: far too many to evaluate, so a result proves the search stopped early.
const HUGE: u64 = 1 << 40;

#[test]
fn they_stop_soon_after_an_early_match_on_a_huge_range() {
    within(240, || {
        for &w in &WORKERS {
            let pool = pool(w);
            for &s in &SCHEDULES {
                let lb = pool.schedule(s);
                let evals = AtomicUsize::new(0);
                let ev = &evals;
                let at = |target: u64| {
                    move |x: u64| {
                        ev.fetch_add(1, Ordering::Relaxed);
                        x == target
                    }
                };
                let ctx = format!("workers {w}, {s:?}");
                let limit = 200_000_000; // ≪ 2^40 ≈ 1.1e12 (generous: 8 engines share 2 cores)
                assert!(lb.any(0..HUGE, at(1000)), "{ctx}");
                assert!(evals.swap(0, Ordering::Relaxed) < limit, "{ctx}: any");
                assert!(!lb.all(0..HUGE, |x| !at(1000)(x)), "{ctx}");
                assert!(evals.swap(0, Ordering::Relaxed) < limit, "{ctx}: all");
                assert_eq!(lb.find_any(0..HUGE, |x| at(1000)(*x)), Some(1000), "{ctx}");
                assert!(evals.swap(0, Ordering::Relaxed) < limit, "{ctx}: find_any");
                assert_eq!(
                    lb.find_first(0..HUGE, |x| at(1000)(*x)),
                    Some(1000),
                    "{ctx}"
                );
                let e = evals.swap(0, Ordering::Relaxed);
                assert!(e < limit, "{ctx}: find_first evaluated {e}");
                // find_first calls the predicate on every item below the match.
                assert!(e >= 1001, "{ctx}: find_first skipped items below the match");
            }
            // The Pool forms, with the default schedule.
            let evals = AtomicUsize::new(0);
            let pred = |x: &u64| {
                evals.fetch_add(1, Ordering::Relaxed);
                *x == 77
            };
            assert!(pool.par_any(0..HUGE, |x| pred(&x)));
            assert!(!pool.par_all(0..HUGE, |x| !pred(&x)));
            assert_eq!(pool.par_find_any(0..HUGE, pred), Some(77));
            assert_eq!(pool.par_find_first(0..HUGE, pred), Some(77));
            assert!(evals.load(Ordering::Relaxed) < 4 * 200_000_000);
        }
    });
}

#[test]
fn find_first_finishes_lower_items_when_a_higher_match_is_found_first() {
    within(240, || {
        for &w in &[2, 3, 8] {
            let pool = pool(w);
            for &s in &SCHEDULES {
                // Items 500..620 are slow, so the match at 700 (in the same window as 600 for
                // 2, 3 and 8 engines) is found long before the one at 600.
                let got = pool.schedule(s).find_first(0..4000u32, |&x| {
                    if (500..620).contains(&x) {
                        spin_for(Duration::from_micros(100));
                    }
                    x == 600 || x == 700 || x == 3999
                });
                assert_eq!(got, Some(600), "workers {w}, {s:?}");
            }
        }
    });
}

#[test]
fn predicate_panics_are_reraised_and_no_engine_dies() {
    within(120, || {
        for &w in &WORKERS {
            let pool = pool(w);
            for &s in &SCHEDULES {
                let lb = pool.schedule(s);
                let msg = panic_message_of(|| {
                    lb.any(0..10_000u32, |x| {
                        assert!(x != 7, "bad item {x}");
                        false
                    })
                });
                assert!(msg.contains("item 7 panicked: bad item 7"), "{s:?}: {msg}");
                // find_first: the panic below the match wins over the match.
                let msg = panic_message_of(|| {
                    lb.find_first(0..10_000u32, |&x| {
                        assert!(x != 3, "bad item {x}");
                        x == 10
                    })
                });
                assert!(msg.contains("item 3 panicked"), "{s:?}: {msg}");
                let msg = panic_message_of(|| {
                    lb.find_any(vec![String::from("a"); 100], |s| {
                        assert!(s.is_empty(), "not empty");
                        false
                    })
                });
                assert!(msg.contains("100 of 100 items panicked"), "{s:?}: {msg}");
            }
            assert_eq!(pool.direct().apply(|e| e), (0..w).collect::<Vec<_>>());
        }
    });
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counted(u32);
impl Counted {
    fn new(i: u32) -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted(i)
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn owned_items_are_dropped_once_and_the_found_one_is_returned() {
    within(120, || {
        for &w in &[1, 2, 8] {
            let pool = pool(w);
            for &s in &SCHEDULES {
                let lb = pool.schedule(s);
                let items = || (0..20_000).map(Counted::new).collect::<Vec<_>>();
                let first = lb.find_first(items(), |c| c.0 % 5000 == 4999);
                assert_eq!(first.as_ref().map(|c| c.0), Some(4999), "{s:?}");
                assert_eq!(LIVE.load(Ordering::SeqCst), 1, "{s:?}: find_first");
                drop(first);
                let any = lb.find_any(items(), |c| c.0 % 5000 == 4999);
                assert_eq!(any.as_ref().map(|c| c.0 % 5000), Some(4999), "{s:?}");
                assert_eq!(LIVE.load(Ordering::SeqCst), 1, "{s:?}: find_any");
                drop(any);
                assert!(lb.any(items(), |c| c.0 == 3));
                assert!(!lb.all(items(), |c| c.0 < 10));
                assert!(lb.find_first(items(), |_| false).is_none());
                assert_eq!(LIVE.load(Ordering::SeqCst), 0, "{s:?}: any/all/none");
            }
        }
    });
}

/// An item whose `Drop` always panics.
struct Bomb(#[allow(dead_code)] u32);
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb dropped");
    }
}

#[test]
fn matches_whose_drop_panics_neither_hang_nor_abort() {
    within(60, || {
        let pool = pool(2);
        for &s in &SCHEDULES {
            // Every item matches: the pipeline drops all matches but one itself.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.schedule(s)
                    .find_any((0..64).map(Bomb).collect::<Vec<_>>(), |_| true)
            }));
            match r {
                Ok(found) => std::mem::forget(found),
                Err(p) => {
                    let m = common::payload_message(&*p);
                    assert!(m.contains("bomb dropped"), "{s:?}: {m}");
                }
            }
        }
        assert_eq!(pool.par_map(0..3u8, |x| x), vec![0, 1, 2]);
    });
}
