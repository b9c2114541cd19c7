//! Panics and errors in user code: a panicking item never kills an engine; blocking maps
//! re-raise after every other item ran, naming the lowest failing index and the count; `try_`
//! forms return the lowest failing index among the items that ran and start no new chunk after
//! an error; `return_exceptions` gives one `Result` per item; the pool keeps working afterwards.

mod common;

use common::{SCHEDULES, WORKERS, f, panic_message_of, pool, within};
use parview::{MapError, Schedule};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

// ---------------------------------------------------------------------------------------------
// Panicking items

const N_PANIC: usize = 10_000;

fn is_bad(i: usize) -> bool {
    i % 100 == 37
}

fn counters(n: usize) -> Arc<Vec<AtomicU8>> {
    Arc::new((0..n).map(|_| AtomicU8::new(0)).collect())
}

#[test]
fn panicking_items_every_item_runs_once_and_the_lowest_index_is_reported() {
    within(120, || {
        for (p, s) in [
            (3usize, Schedule::Adaptive),
            (2, Schedule::Dynamic(1)),
            (8, Schedule::Static),
            (3, Schedule::StaticChunked(7)),
            (1, Schedule::Guided(5)),
        ] {
            let pool = pool(p);
            let runs = counters(N_PANIC);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.schedule(s).map(0..N_PANIC, |i| {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    if is_bad(i) {
                        panic!("boom at {i}");
                    }
                    i * 2
                })
            }));
            let payload = r.expect_err("par_map must re-raise the items' panics");
            let msg = payload
                .downcast_ref::<String>()
                .unwrap_or_else(|| panic!("payload is not a String (P={p} {s:?})"))
                .clone();
            assert!(msg.contains("item 37"), "message must name index 37: {msg}");
            assert!(
                msg.contains("100"),
                "message must name the count 100: {msg}"
            );
            assert!(
                msg.contains("boom at 37"),
                "message must carry the item's message: {msg}"
            );
            for (i, c) in runs.iter().enumerate() {
                assert_eq!(
                    c.load(Ordering::Relaxed),
                    1,
                    "item {i} ran a wrong number of times (P={p} {s:?})"
                );
            }

            // try_par_map reports it as a value.
            let runs2 = counters(N_PANIC);
            let r = pool.schedule(s).try_map(0..N_PANIC, |i| {
                runs2[i].fetch_add(1, Ordering::Relaxed);
                if is_bad(i) {
                    panic!("boom at {i}");
                }
                Ok::<_, String>(i)
            });
            match r {
                Err(MapError::Panicked {
                    index,
                    failed,
                    message,
                }) => {
                    assert_eq!((index, failed), (37, 100), "P={p} {s:?}");
                    assert!(message.contains("boom at 37"), "{message}");
                }
                other => panic!("expected Panicked, got {:?}", other.map(|v| v.len())),
            }
            assert!(
                runs2.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "P={p} {s:?}"
            );

            // The same pool keeps working.
            for k in 0..100u64 {
                let v = pool.schedule(s).map(0..(k + 50), |i| i + k);
                assert_eq!(v, (0..(k + 50)).map(|i| i + k).collect::<Vec<_>>());
            }
        }
    });
}

#[test]
fn par_map_into_and_for_each_reraise_panics_after_every_item() {
    within(60, || {
        let pool = pool(3);
        let runs = counters(2000);
        let mut out = vec![7usize; 2000];
        let msg = panic_message_of(|| {
            pool.par_map_into(0..2000usize, &mut out, |i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
                assert!(!is_bad(i), "into {i}");
                i
            })
        });
        assert!(msg.contains("item 37") && msg.contains("20"), "{msg}");
        assert!(runs.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        for (i, &o) in out.iter().enumerate() {
            let want = if is_bad(i) { 7 } else { i };
            assert_eq!(o, want, "slot {i}: panicked slots keep their old value");
        }
        let ran = AtomicUsize::new(0);
        let msg = panic_message_of(|| {
            pool.par_for_each(0..1000usize, |i| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(!is_bad(i), "each {i}");
            })
        });
        assert!(msg.contains("item 37"), "{msg}");
        assert_eq!(ran.load(Ordering::Relaxed), 1000);
        assert_eq!(pool.par_map(0..10u8, |i| i), (0..10u8).collect::<Vec<_>>());
    });
}

#[test]
fn panics_with_and_without_return_exceptions() {
    within(60, || {
        let pool = pool(3);
        let bad = |i: usize| i % 50 == 7;
        for &s in &SCHEDULES {
            let lb = pool.load_balanced().schedule(s);
            let f = move |i: usize| {
                assert!(!bad(i), "bad item {i}");
                i * 2
            };
            // return_exceptions, blocking
            let out = lb.return_exceptions().map(0..1000usize, f);
            assert_eq!(out.len(), 1000);
            for (i, r) in out.iter().enumerate() {
                if bad(i) {
                    let e = r.as_ref().expect_err("panicking slot must be Err");
                    assert_eq!(e.index, i);
                    assert!(
                        e.message.contains(&format!("bad item {i}")),
                        "{}",
                        e.message
                    );
                } else {
                    assert_eq!(r, &Ok(i * 2), "{s:?} slot {i}");
                }
            }
            // return_exceptions, async
            let out2 = lb
                .return_exceptions()
                .map_async(0..1000usize, f)
                .get()
                .unwrap();
            assert_eq!(out2, out, "{s:?}");
            // without: blocking map panics naming the lowest index and the count
            let msg = panic_message_of(|| lb.map(0..1000usize, f));
            assert!(msg.contains("item 7") && msg.contains("20"), "{msg}");
            // without: async get returns Panicked
            match lb.map_async(0..1000usize, f).get() {
                Err(MapError::Panicked {
                    index,
                    failed,
                    message,
                }) => {
                    assert_eq!((index, failed), (7, 20), "{s:?}");
                    assert!(message.contains("bad item 7"));
                }
                other => panic!("{s:?}: expected Panicked, got {:?}", other.map(|v| v.len())),
            }
            // submit with a panic
            let r = lb.submit(|| -> u8 { panic!("task boom") }).get();
            assert!(
                matches!(
                    r,
                    Err(MapError::Panicked {
                        index: 0,
                        failed: 1,
                        ..
                    })
                ),
                "{r:?}"
            );
            // DirectView paths
            let msg = panic_message_of(|| pool.direct().apply(|e| assert!(e != 1, "engine boom")));
            assert!(msg.contains("engine boom"), "{msg}");
            let r = pool
                .direct()
                .apply_async(|e| assert!(e != 2, "async engine boom"))
                .get();
            assert!(
                matches!(
                    r,
                    Err(MapError::Panicked {
                        index: 2,
                        failed: 1,
                        ..
                    })
                ),
                "{r:?}"
            );
        }
        // Still works.
        assert_eq!(
            pool.load_balanced().map(0..100u32, |i| i),
            (0..100u32).collect::<Vec<_>>()
        );
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1, 2]);
    });
}

// ---------------------------------------------------------------------------------------------
// try_ maps: first error by index, no new chunk after an error

#[test]
fn try_par_map_returns_lowest_failing_index_among_those_that_ran() {
    within(120, || {
        let bad = [300usize, 700, 4321, 9000];
        for &p in &WORKERS {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let runs = counters(10_000);
                let r = pool.schedule(s).try_map(0..10_000usize, |i| {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    if bad.contains(&i) { Err(i * 3) } else { Ok(i) }
                });
                let ran_bad: Vec<usize> = bad
                    .iter()
                    .copied()
                    .filter(|&b| runs[b].load(Ordering::Relaxed) > 0)
                    .collect();
                assert!(
                    runs.iter().all(|c| c.load(Ordering::Relaxed) <= 1),
                    "an item ran twice"
                );
                let lowest = *ran_bad.first().expect("some failing item must have run");
                assert_eq!(
                    r,
                    Err(MapError::Failed {
                        index: lowest,
                        error: lowest * 3
                    }),
                    "P={p} {s:?}, failing items that ran: {ran_bad:?}"
                );
            }
        }
    });
}

#[test]
fn try_par_map_starts_no_new_chunk_after_an_error() {
    within(60, || {
        // One worker: the caller runs alone, item by item.
        let pool1 = pool(1);
        let runs = counters(10_000);
        let r = pool1
            .schedule(Schedule::Dynamic(1))
            .try_map(0..10_000usize, |i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
                if i == 500 { Err("stop") } else { Ok(i) }
            });
        assert_eq!(
            r,
            Err(MapError::Failed {
                index: 500,
                error: "stop"
            })
        );
        let after: usize = runs[501..]
            .iter()
            .map(|c| c.load(Ordering::Relaxed) as usize)
            .sum();
        assert!(after <= 2, "{after} items after the error ran on 1 worker");
        assert!(runs[..=500].iter().all(|c| c.load(Ordering::Relaxed) == 1));

        // Two and three workers: at most one in-flight chunk per participant may finish.
        // Items after 500 wait until item 500 has failed and then sleep, so the participant that
        // ran item 500 always gets a core to stop the map: the bound does not depend on how
        // the OS schedules threads (a preempted participant could otherwise let the others run
        // thousands of legitimately claimed items).
        for p in [2usize, 3] {
            let pool = pool(p);
            let runs = counters(10_000);
            let failed = std::sync::atomic::AtomicBool::new(false);
            let r = pool
                .schedule(Schedule::Dynamic(1))
                .try_map(0..10_000usize, |i| {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    if i > 500 {
                        while !failed.load(Ordering::Acquire) {
                            std::thread::yield_now();
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    if i == 500 {
                        failed.store(true, Ordering::Release);
                        Err("stop")
                    } else {
                        Ok(i)
                    }
                });
            assert!(
                matches!(r, Err(MapError::Failed { index: 500, .. })),
                "P={p}"
            );
            let after = runs[501..]
                .iter()
                .filter(|c| c.load(Ordering::Relaxed) > 0)
                .count();
            assert!(after <= 4 * p, "P={p}: {after} items after index 500 ran");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// After failures

#[test]
fn pool_is_usable_after_many_failures_of_every_kind() {
    // A mix of failure paths back to back on one pool, then normal work.
    within(60, || {
        let pool = pool(3);
        for k in 0..20usize {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.par_map(0..200usize, |i| assert!(i != k * 7, "mix {i}"))
            }));
            let _ = pool.try_par_map(0..200usize, |i| if i == k { Err(()) } else { Ok(i) });
        }
        for &s in &SCHEDULES {
            assert_eq!(
                pool.schedule(s).map(0..1000u64, f),
                (0..1000u64).map(f).collect::<Vec<_>>()
            );
        }
    });
}
