//! Retries (`LoadBalancedView::retries`): a panicked item runs again up to `n` times, each
//! failed attempt in the timeline; the random streams are the same on each attempt.

mod common;
use common::{SCHEDULES, WORKERS, pool, within};
use parview::MapError;
use parview::rand::{Rng, RngExt};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Attempts per index, counted by the closure.
fn counter(n: usize) -> Vec<AtomicUsize> {
    (0..n).map(|_| AtomicUsize::new(0)).collect()
}

#[test]
fn flaky_items_succeed_within_their_retries() {
    within(120, || {
        for w in WORKERS {
            let p = pool(w);
            for s in SCHEDULES {
                let tries = counter(300);
                // Item i fails its first i % 4 attempts.
                let v = p.schedule(s).retries(3).map(0..300usize, |i| {
                    let k = tries[i].fetch_add(1, Ordering::SeqCst);
                    assert!(k >= i % 4, "flaky {i}");
                    i * 2
                });
                assert_eq!(v, (0..300).map(|i| i * 2).collect::<Vec<_>>(), "{s} w={w}");
                for (i, t) in tries.iter().enumerate() {
                    assert_eq!(t.load(Ordering::SeqCst), i % 4 + 1, "{s} item {i}");
                }
            }
        }
    });
}

#[test]
fn an_item_that_always_panics_is_reported_after_n_plus_one_attempts() {
    within(60, || {
        let p = pool(3);
        for s in SCHEDULES {
            let tries = counter(100);
            let r = p.schedule(s).retries(2).try_map(0..100usize, |i| {
                tries[i].fetch_add(1, Ordering::SeqCst);
                assert!(i != 42 && i != 77, "always {i}");
                Ok::<_, ()>(i)
            });
            match r {
                Err(MapError::Panicked {
                    index: 42,
                    failed: 2,
                    message,
                }) => assert!(message.contains("always 42")),
                other => panic!("{s}: {other:?}"),
            }
            for (i, t) in tries.iter().enumerate() {
                let want = if i == 42 || i == 77 { 3 } else { 1 };
                assert_eq!(t.load(Ordering::SeqCst), want, "{s} item {i}");
            }
        }
        // Blocking `map` re-raises as a map without retries does.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.load_balanced().retries(1).map(0..5u32, |i| {
                assert!(i != 2, "two");
                i
            })
        }))
        .unwrap_err();
        let msg = caught.downcast_ref::<String>().expect("parview's message");
        assert!(
            msg.contains("item 2 panicked") && msg.contains("two"),
            "{msg}"
        );
    });
}

#[test]
fn errs_are_not_retried() {
    within(30, || {
        let tries = counter(10);
        let r = pool(2).load_balanced().retries(5).try_map(0..10usize, |i| {
            tries[i].fetch_add(1, Ordering::SeqCst);
            if i == 3 { Err("no") } else { Ok(i) }
        });
        assert!(matches!(
            r,
            Err(MapError::Failed {
                index: 3,
                error: "no"
            })
        ));
        assert_eq!(tries[3].load(Ordering::SeqCst), 1);
    });
}

#[test]
fn every_failed_attempt_is_in_the_timeline() {
    within(60, || {
        for w in [1, 2, 4] {
            let tries = counter(200);
            let (v, tl) = pool(w)
                .load_balanced()
                .retries(4)
                .map_timed(0..200usize, |i| {
                    let k = tries[i].fetch_add(1, Ordering::SeqCst);
                    assert!(i % 50 != 3 || k >= 2, "flaky {i} attempt {k}");
                    i
                });
            assert_eq!(v, (0..200).collect::<Vec<_>>());
            assert_eq!(tl.items(), 200);
            let mut seen: Vec<(usize, usize)> =
                tl.attempts().iter().map(|a| (a.index, a.attempt)).collect();
            seen.sort();
            assert_eq!(
                seen,
                vec![
                    (3, 0),
                    (3, 1),
                    (53, 0),
                    (53, 1),
                    (103, 0),
                    (103, 1),
                    (153, 0),
                    (153, 1)
                ],
                "w={w}"
            );
            for a in tl.attempts() {
                assert!(a.began <= a.ended);
                assert!(a.message.contains("flaky"), "{}", a.message);
                if let parview::timeline::Lane::Engine(e) = a.lane {
                    assert!(e < w);
                }
                // The attempt lies inside a chunk that covers its item.
                assert!(
                    tl.records()
                        .iter()
                        .any(|r| r.start <= a.index && a.index < r.end),
                    "no chunk holds item {}",
                    a.index
                );
            }
        }
    });
}

#[test]
fn map_rng_gives_the_same_stream_on_each_attempt() {
    within(60, || {
        let p = pool(3);
        let clean = p.par_map_rng(11, 64, |rng, _| rng.random::<u64>());
        for s in SCHEDULES {
            let draws: Mutex<HashMap<usize, Vec<Vec<u64>>>> = Mutex::new(HashMap::new());
            let v = p.schedule(s).retries(2).map_rng(11, 64, |rng, i| {
                let d: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
                let mut m = draws.lock().unwrap();
                let seen = m.entry(i).or_default();
                seen.push(d);
                let attempts = seen.len();
                drop(m);
                assert!(i % 3 != 0 || attempts > 2, "flaky {i}");
                // Output: the first number of a fresh stream of this item.
                parview::rng::Streams::new(11).for_item(i).random::<u64>()
            });
            assert_eq!(v, clean, "{s}");
            let m = draws.into_inner().unwrap();
            for (i, attempts) in m {
                let want = if i % 3 == 0 { 3 } else { 1 };
                assert_eq!(attempts.len(), want, "{s} item {i}");
                assert!(attempts.windows(2).all(|w| w[0] == w[1]), "{s} item {i}");
            }
        }
    });
}

#[test]
fn owned_clone_items_and_zero_retries() {
    within(30, || {
        let p = pool(2);
        let tries = AtomicUsize::new(0);
        let v = p
            .load_balanced()
            .retries(1)
            .map(vec![String::from("a"), String::from("b")], |s| {
                assert!(
                    s != "b" || tries.fetch_add(1, Ordering::SeqCst) > 0,
                    "b once"
                );
                s + "!"
            });
        assert_eq!(v, vec!["a!", "b!"]);
        let r = p.load_balanced().retries(0).try_map(0..3u8, |i| {
            assert!(i != 1);
            Ok::<_, ()>(i)
        });
        assert!(matches!(
            r,
            Err(MapError::Panicked {
                index: 1,
                failed: 1,
                ..
            })
        ));
    });
}

#[test]
fn async_map_with_retries_records_attempts_and_reports_the_last_panic() {
    within(60, || {
        let p = pool(2);
        let tries = std::sync::Arc::new(counter(50));
        let t = tries.clone();
        let ar = p
            .load_balanced()
            .record_timeline()
            .retries(2)
            .map_async(0..50usize, move |i| {
                let k = t[i].fetch_add(1, Ordering::SeqCst);
                assert!(i != 9 || k >= 1, "flaky 9");
                assert!(i != 30, "always 30");
                i
            });
        ar.wait();
        let tl = ar.timeline().expect("recorded");
        let mut seen: Vec<(usize, usize)> =
            tl.attempts().iter().map(|a| (a.index, a.attempt)).collect();
        seen.sort();
        assert_eq!(seen, vec![(9, 0), (30, 0), (30, 1)]);
        let part = ar.get_partial().unwrap_err();
        assert!(matches!(
            part.error,
            MapError::Panicked {
                index: 30,
                failed: 1,
                ..
            }
        ));
        assert_eq!(part.done(), 49);
        assert_eq!(part.results[9], Some(9));
        assert_eq!(tries[30].load(Ordering::SeqCst), 3);
    });
}
