//! Issue "core": ordering, nesting, panics, early stop, drop bookkeeping, stress, shutdown,
//! bad arguments, scatter_gather and idle sleeping — through the public API only.

mod common;

use common::{SCHEDULES, WORKERS, panic_message_of, pool, within};
use parview::{BuildError, MapError, Pool, Schedule, ScheduleError, ViewError};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Output order

const SIZES: [usize; 5] = [0, 1, 7, 100, 1003];

fn f(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 3)
}

#[test]
fn output_order_equals_input_order_for_every_schedule_pool_and_input_kind() {
    within(120, || {
        for &p in &WORKERS {
            let pool = pool(p);
            for &s in &SCHEDULES {
                for &n in &SIZES {
                    let ctx = format!("P={p} schedule={s:?} n={n}");
                    let data: Vec<u64> = (0..n as u64).collect();
                    let want: Vec<u64> = data.iter().map(|&i| f(i)).collect();

                    // &[T]
                    assert_eq!(
                        pool.schedule(s).map(&data[..], |&x| f(x)),
                        want,
                        "slice {ctx}"
                    );
                    // &Vec<T>
                    assert_eq!(pool.schedule(s).map(&data, |&x| f(x)), want, "&Vec {ctx}");
                    // Vec<String> (owned, non-Copy items)
                    let strings: Vec<String> = data.iter().map(|i| format!("s{i}")).collect();
                    let got = pool.schedule(s).map(strings, |st| st + "!");
                    let want_s: Vec<String> = data.iter().map(|i| format!("s{i}!")).collect();
                    assert_eq!(got, want_s, "Vec<String> {ctx}");
                    // Range
                    assert_eq!(pool.schedule(s).map(0..n as u64, f), want, "range {ctx}");
                    // RangeInclusive (an empty one for n = 0)
                    let ri = if n == 0 {
                        assert!(
                            pool.schedule(s)
                                .map(std::hint::black_box(5u64)..=4, f)
                                .is_empty(),
                            "{ctx}"
                        );
                        Vec::new()
                    } else {
                        pool.schedule(s).map(0..=(n as u64 - 1), f)
                    };
                    assert_eq!(ri, want, "range inclusive {ctx}");
                    // Offset signed range
                    let signed = pool.schedule(s).map(-3i32..(n as i32 - 3), |i| i * 2);
                    let want_signed: Vec<i32> = (-3i32..(n as i32 - 3)).map(|i| i * 2).collect();
                    assert_eq!(signed, want_signed, "signed range {ctx}");
                    // par_map_into
                    let mut out = vec![u64::MAX; n];
                    pool.schedule(s).map_into(&data, &mut out, |&x| f(x));
                    assert_eq!(out, want, "par_map_into {ctx}");
                    // try_par_map (all Ok)
                    let t = pool
                        .schedule(s)
                        .try_map(0..n as u64, |i| Ok::<_, String>(f(i)));
                    assert_eq!(t, Ok(want.clone()), "try_par_map {ctx}");
                }
            }
            // default-schedule entry points and &[T; N]
            let arr = [3u32, 1, 4, 1, 5, 9, 2, 6];
            assert_eq!(
                pool.par_map(&arr, |x| x * 10),
                vec![30, 10, 40, 10, 50, 90, 20, 60]
            );
            let mut out = [0u32; 8];
            pool.par_map_into(&arr, &mut out, |x| x + 1);
            assert_eq!(out, [4, 2, 5, 2, 6, 10, 3, 7]);
            assert_eq!(
                pool.try_par_map(&arr, |&x| Ok::<_, ()>(x)),
                Ok(arr.to_vec())
            );
            let v = pool.load_balanced().map(0..500u64, f);
            assert_eq!(v, (0..500u64).map(f).collect::<Vec<_>>());
            let v = pool.direct().map(0..500u64, f);
            assert_eq!(v, (0..500u64).map(f).collect::<Vec<_>>());
        }
    });
}

#[test]
fn free_functions_keep_input_order() {
    within(60, || {
        let v = parview::par_map(0..2000u64, f);
        assert_eq!(v, (0..2000u64).map(f).collect::<Vec<_>>());
        let v = parview::Pool::global()
            .schedule(Schedule::Guided(3))
            .map(vec![5u8; 300], |x| x as u32 + 1);
        assert_eq!(v, vec![6u32; 300]);
        let mut out = vec![0u64; 1000];
        parview::par_map_into(0..1000u64, &mut out, f);
        assert_eq!(out, (0..1000u64).map(f).collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------------------------
// Nesting

fn nested_three_deep(pool: &Pool) -> u64 {
    let outer = pool.par_map(0..4u64, |a| {
        let mid = pool.par_map(0..4u64, |b| {
            let inner = pool.par_map(0..8u64, |c| a * 100 + b * 10 + c);
            inner.iter().sum::<u64>()
        });
        mid.iter().sum::<u64>()
    });
    outer.iter().sum()
}

fn nested_expected() -> u64 {
    let mut s = 0;
    for a in 0..4u64 {
        for b in 0..4u64 {
            for c in 0..8u64 {
                s += a * 100 + b * 10 + c;
            }
        }
    }
    s
}

#[test]
fn nested_par_map_three_deep_on_same_pool_completes() {
    for p in [1usize, 2] {
        let got = within(60, move || {
            let pool = pool(p);
            // Several schedules at every level, on the same pool.
            let mut sums = vec![nested_three_deep(&pool)];
            for &s in &SCHEDULES {
                let v = pool.schedule(s).map(0..3u64, |a| {
                    pool.schedule(s)
                        .map(0..5u64, |b| {
                            pool.schedule(s)
                                .map(0..6u64, |c| a + b + c)
                                .iter()
                                .sum::<u64>()
                        })
                        .iter()
                        .sum::<u64>()
                });
                sums.push(v.iter().sum());
            }
            sums
        });
        assert_eq!(got[0], nested_expected(), "P={p}");
        let mut want = 0;
        for a in 0..3u64 {
            for b in 0..5u64 {
                for c in 0..6u64 {
                    want += a + b + c;
                }
            }
        }
        assert!(
            got[1..].iter().all(|&s| s == want),
            "P={p}: {got:?} want {want}"
        );
    }
}

#[test]
fn nested_par_map_with_arc_pool_completes() {
    for p in [1usize, 2] {
        let got = within(60, move || {
            let pool = Arc::new(pool(p));
            let p2 = pool.clone();
            let v = pool.par_map(0..4u64, move |a| {
                let p3 = p2.clone();
                p2.par_map(0..4u64, move |b| {
                    p3.par_map(0..8u64, |c| a * 100 + b * 10 + c)
                })
                .into_iter()
                .flatten()
                .sum::<u64>()
            });
            v.iter().sum::<u64>()
        });
        assert_eq!(got, nested_expected(), "P={p}");
    }
}

#[test]
fn nested_free_function_par_map_completes() {
    let got = within(60, || {
        let outer = parview::par_map(0..4u64, |a| {
            parview::par_map(0..4u64, |b| {
                parview::par_map(0..8u64, |c| a * 100 + b * 10 + c)
                    .iter()
                    .sum::<u64>()
            })
            .iter()
            .sum::<u64>()
        });
        outer.iter().sum::<u64>()
    });
    assert_eq!(got, nested_expected());
    // The free function called from inside an engine of another pool.
    for p in [1usize, 2] {
        let got = within(60, move || {
            let pool = pool(p);
            pool.par_map(0..4u64, |a| {
                parview::par_map(0..4u64, |b| {
                    pool.par_map(0..8u64, |c| a * 100 + b * 10 + c)
                        .iter()
                        .sum::<u64>()
                })
                .iter()
                .sum::<u64>()
            })
            .iter()
            .sum::<u64>()
        });
        assert_eq!(got, nested_expected(), "P={p}");
    }
}

#[test]
fn nested_direct_apply_from_inside_an_engine_completes() {
    for p in [1usize, 2, 3] {
        let got = within(60, move || {
            let pool = pool(p);
            // DirectView inside DirectView.
            let a = pool.direct().apply(|e| {
                assert_eq!(pool.current_engine(), Some(e));
                let inner = pool.direct().apply(|e2| {
                    assert_eq!(pool.current_engine(), Some(e2));
                    e2 * 10
                });
                (e, inner)
            });
            // DirectView inside a par_map item, and par_map inside DirectView.
            let b = pool.par_map(0..6usize, |i| {
                pool.direct().apply(|e| e + i).iter().sum::<usize>()
            });
            let c = pool
                .direct()
                .apply(|e| pool.par_map(0..50usize, |i| i + e).iter().sum::<usize>());
            (a, b, c)
        });
        let (a, b, c) = got;
        let inner: Vec<usize> = (0..p).map(|e| e * 10).collect();
        assert_eq!(
            a,
            (0..p).map(|e| (e, inner.clone())).collect::<Vec<_>>(),
            "P={p}"
        );
        let base: usize = (0..p).sum();
        assert_eq!(b, (0..6).map(|i| base + i * p).collect::<Vec<_>>(), "P={p}");
        assert_eq!(
            c,
            (0..p).map(|e| 1225 + 50 * e).collect::<Vec<_>>(),
            "P={p}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Panics

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

// ---------------------------------------------------------------------------------------------
// try_par_map: first error by index, no new chunk after an error

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
// Drop bookkeeping (holes)

struct Log {
    in_drops: Vec<AtomicU8>,
    out_drops: Vec<AtomicU8>,
    produced: Vec<AtomicU8>,
}

impl Log {
    fn new(n: usize) -> Arc<Log> {
        let z = || (0..n).map(|_| AtomicU8::new(0)).collect();
        Arc::new(Log {
            in_drops: z(),
            out_drops: z(),
            produced: z(),
        })
    }

    fn check(&self, ctx: &str) {
        for i in 0..self.in_drops.len() {
            assert_eq!(
                self.in_drops[i].load(Ordering::SeqCst),
                1,
                "{ctx}: input {i} dropped a wrong number of times"
            );
            let p = self.produced[i].load(Ordering::SeqCst);
            assert!(p <= 1, "{ctx}: item {i} produced {p} outputs");
            assert_eq!(
                self.out_drops[i].load(Ordering::SeqCst),
                p,
                "{ctx}: output {i} (produced {p}x) dropped a wrong number of times"
            );
        }
    }
}

struct In {
    i: usize,
    log: Arc<Log>,
}
impl Drop for In {
    fn drop(&mut self) {
        self.log.in_drops[self.i].fetch_add(1, Ordering::SeqCst);
    }
}

struct Out {
    i: usize,
    log: Arc<Log>,
}
impl Drop for Out {
    fn drop(&mut self) {
        self.log.out_drops[self.i].fetch_add(1, Ordering::SeqCst);
    }
}

fn inputs(log: &Arc<Log>, n: usize) -> Vec<In> {
    (0..n)
        .map(|i| In {
            i,
            log: log.clone(),
        })
        .collect()
}

fn produce(x: In) -> Out {
    x.log.produced[x.i].fetch_add(1, Ordering::SeqCst);
    Out {
        i: x.i,
        log: x.log.clone(),
    }
}

#[test]
fn owned_input_and_outputs_are_dropped_exactly_once() {
    within(120, || {
        let n = 3000;
        for &p in &[1usize, 3, 8] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let ctx = format!("P={p} {s:?}");
                // Normal map.
                let log = Log::new(n);
                let v = pool.schedule(s).map(inputs(&log, n), produce);
                assert_eq!(v.len(), n);
                assert!(v.iter().enumerate().all(|(k, o)| o.i == k));
                drop(v);
                log.check(&format!("normal {ctx}"));

                // Panicking map.
                let log = Log::new(n);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.schedule(s).map(inputs(&log, n), |x| {
                        if x.i % 97 == 5 {
                            panic!("drop-test {}", x.i);
                        }
                        produce(x)
                    })
                }));
                assert!(r.is_err());
                log.check(&format!("panicking {ctx}"));

                // try_ map stopped early by an Err.
                let log = Log::new(n);
                let r = pool.schedule(s).try_map(inputs(&log, n), |x| {
                    if x.i == n / 3 || x.i == n - 2 {
                        Err(x.i)
                    } else {
                        Ok(produce(x))
                    }
                });
                assert!(matches!(r, Err(MapError::Failed { .. })), "{ctx}");
                drop(r);
                log.check(&format!("try-stopped {ctx}"));

                // try_ map with a panic and an error.
                let log = Log::new(n);
                let r = pool.schedule(s).try_map(inputs(&log, n), |x| {
                    if x.i == 10 {
                        panic!("p10");
                    }
                    if x.i == 2000 { Err(()) } else { Ok(produce(x)) }
                });
                assert!(r.is_err(), "{ctx}");
                log.check(&format!("try-panic {ctx}"));
            }

            // Other paths with owned input.
            let ctx = format!("P={p}");
            let log = Log::new(n);
            let v = pool.direct().map(inputs(&log, n), produce);
            drop(v);
            log.check(&format!("direct map {ctx}"));

            let log = Log::new(n);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.direct().map(inputs(&log, n), |x| {
                    assert!(x.i % 500 != 3, "direct {}", x.i);
                    produce(x)
                })
            }));
            assert!(r.is_err());
            log.check(&format!("direct map panicking {ctx}"));

            let log = Log::new(n);
            let dv = pool.direct();
            let st = dv.init(|_| 0usize);
            let v = dv.map_with_state(&st, inputs(&log, n), |c, x| {
                *c += 1;
                produce(x)
            });
            assert_eq!(v.len(), n);
            drop(v);
            log.check(&format!("direct map_with {ctx}"));

            let log = Log::new(n);
            let v = pool
                .load_balanced()
                .return_exceptions()
                .map(inputs(&log, n), |x| {
                    assert!(x.i % 300 != 1, "re {}", x.i);
                    produce(x)
                });
            assert_eq!(v.iter().filter(|r| r.is_err()).count(), n / 300);
            drop(v);
            log.check(&format!("return_exceptions {ctx}"));

            let log = Log::new(n);
            let mut slots: Vec<Option<Out>> = (0..n).map(|_| None).collect();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.par_map_into(inputs(&log, n), &mut slots, |x| {
                    assert!(x.i != 77, "into 77");
                    Some(produce(x))
                })
            }));
            assert!(r.is_err());
            assert!(slots[77].is_none());
            drop(slots);
            log.check(&format!("par_map_into {ctx}"));

            let log = Log::new(n);
            let v = pool
                .load_balanced()
                .map_async(inputs(&log, n), produce)
                .get()
                .unwrap();
            drop(v);
            log.check(&format!("map_async {ctx}"));
        }
    });
}

#[test]
fn aborted_async_map_drops_owned_items_exactly_once() {
    within(60, || {
        let n = 5000;
        for p in [1usize, 2, 3] {
            let pool = pool(p);
            for s in [
                Schedule::Dynamic(1),
                Schedule::Static,
                Schedule::StaticChunked(7),
                Schedule::Adaptive,
            ] {
                let log = Log::new(n);
                let lb = pool.load_balanced().schedule(s);
                let ar = lb.map_async(inputs(&log, n), |x| {
                    std::thread::sleep(Duration::from_micros(50));
                    produce(x)
                });
                std::thread::sleep(Duration::from_millis(5));
                ar.abort();
                let r = ar.get();
                drop(r);
                log.check(&format!("aborted async P={p} {s:?}"));

                // Dropping the handle (abort-on-drop) must also release everything.
                let log = Log::new(n);
                let ar = lb.map_async(inputs(&log, n), |x| {
                    std::thread::sleep(Duration::from_micros(50));
                    produce(x)
                });
                std::thread::sleep(Duration::from_millis(3));
                drop(ar);
                // The map concludes asynchronously: wait until every input is accounted for.
                let t = Instant::now();
                while log.in_drops.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "inputs never released after drop"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Outputs written before the abort are dropped when the map concludes.
                let t = Instant::now();
                loop {
                    let pending = (0..n).any(|i| {
                        log.produced[i].load(Ordering::SeqCst)
                            != log.out_drops[i].load(Ordering::SeqCst)
                    });
                    if !pending {
                        break;
                    }
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "outputs never dropped after drop"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                log.check(&format!("dropped async P={p} {s:?}"));
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Stress: many external threads, shared pool

#[test]
fn sixteen_threads_submitting_200_maps_each_to_one_pool() {
    within(120, || {
        for p in [3usize, 8] {
            let pool = pool(p);
            std::thread::scope(|sc| {
                for t in 0..16u64 {
                    let pool = &pool;
                    sc.spawn(move || {
                        for k in 0..200u64 {
                            let s = SCHEDULES[(t + k) as usize % SCHEDULES.len()];
                            let n = (t * 7 + k) % 64 + 1;
                            let v = pool.schedule(s).map(0..n, |i| i * t + k);
                            assert_eq!(
                                v,
                                (0..n).map(|i| i * t + k).collect::<Vec<_>>(),
                                "t={t} k={k}"
                            );
                        }
                    });
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Dropping pools

#[test]
fn build_map_drop_200_times() {
    within(120, || {
        for k in 0..200u64 {
            let pool = pool(1 + (k % 4) as usize);
            let v = pool.par_map(0..(k + 1), |i| i + k);
            assert_eq!(v.len() as u64, k + 1);
            assert_eq!(v[k as usize], 2 * k);
            drop(pool);
        }
    });
}

#[test]
fn dropping_the_main_handle_while_other_threads_submit() {
    within(120, || {
        for round in 0..10u64 {
            let pool = Arc::new(pool(3));
            let results = Arc::new(Mutex::new(Vec::new()));
            let mut hs = Vec::new();
            for t in 0..4u64 {
                let pool = pool.clone();
                let results = results.clone();
                hs.push(std::thread::spawn(move || {
                    for k in 0..50u64 {
                        let v = pool.par_map(0..100u64, |i| i + k + t);
                        assert_eq!(v, (0..100u64).map(|i| i + k + t).collect::<Vec<_>>());
                        results.lock().unwrap().push((t, k));
                    }
                }));
            }
            drop(pool); // the last thread to finish drops the pool
            for h in hs {
                h.join().expect("submitter thread failed");
            }
            assert_eq!(
                results.lock().unwrap().len(),
                200,
                "round {round}: a result was lost"
            );
        }
    });
}

#[test]
fn last_pool_handle_dropped_inside_its_own_engine_does_not_hang() {
    within(60, || {
        for _ in 0..20 {
            let pool = Arc::new(pool(2));
            let (tx, rx) = std::sync::mpsc::channel();
            let inner = pool.clone();
            pool.spawn(move || {
                let v = inner.par_map(0..10u32, |i| i + 1);
                drop(inner); // may be the last handle, dropped on an engine
                tx.send(v).unwrap();
            });
            drop(pool);
            let v = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("spawned task never ran");
            assert_eq!(v, (1..=10u32).collect::<Vec<_>>());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Bad arguments

#[test]
fn zero_workers_is_a_named_build_error() {
    let e = Pool::builder().workers(0).build().unwrap_err();
    assert!(matches!(e, BuildError::ZeroWorkers), "{e:?}");
    assert!(e.to_string().contains("workers"), "{e}");
}

#[test]
fn zero_chunk_schedules_are_named_errors_or_panics() {
    let pool = pool(2);
    for s in [
        Schedule::Dynamic(0),
        Schedule::StaticChunked(0),
        Schedule::Guided(0),
    ] {
        let r = pool.schedule(s).try_map(0..10u32, Ok::<_, String>);
        match r {
            Err(MapError::Schedule(ScheduleError::ZeroChunk { .. })) => {}
            other => panic!("{s:?}: expected MapError::Schedule, got {other:?}"),
        }
        let e = r.unwrap_err();
        assert!(e.to_string().contains("chunk"), "{e}");
        // Also on empty input.
        let r = pool.schedule(s).try_map(0..0u32, Ok::<_, ()>);
        assert!(
            matches!(r, Err(MapError::Schedule(_))),
            "{s:?} on empty input: {r:?}"
        );

        let msg = panic_message_of(|| pool.schedule(s).map(0..10u32, |i| i));
        assert!(msg.contains("chunk"), "{s:?}: {msg}");
        let msg = panic_message_of(|| pool.schedule(s).map(0..0u32, |i| i));
        assert!(msg.contains("chunk"), "{s:?} empty: {msg}");
        let msg = panic_message_of(|| {
            let mut out = vec![0u32; 10];
            pool.schedule(s).map_into(0..10u32, &mut out, |i| i)
        });
        assert!(msg.contains("chunk"), "{s:?} into: {msg}");
        // Async maps report it through their result, before anything runs.
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r2 = ran.clone();
        let ar = pool.schedule(s).map_async(0..10u32, move |i| {
            r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            i
        });
        assert!(
            matches!(ar.get(), Err(MapError::Schedule(_))),
            "{s:?} async"
        );
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
    assert_eq!(pool.par_map(0..3u8, |i| i), vec![0, 1, 2]);
}

#[test]
fn par_map_into_wrong_length_panics_naming_out() {
    let pool = pool(2);
    for (n, len) in [(10usize, 9usize), (10, 11), (0, 1), (3, 0)] {
        let msg = panic_message_of(|| {
            let mut out = vec![0usize; len];
            pool.par_map_into(0..n, &mut out, |i| i);
        });
        assert!(msg.contains("out"), "n={n} len={len}: {msg}");
    }
    assert_eq!(pool.par_map(0..3u8, |i| i), vec![0, 1, 2]);
}

#[test]
fn direct_to_rejects_bad_targets() {
    let pool = pool(4);
    assert_eq!(pool.direct_to(&[]).unwrap_err(), ViewError::NoTargets);
    assert_eq!(
        pool.direct_to(&[9]).unwrap_err(),
        ViewError::NoSuchEngine {
            engine: 9,
            workers: 4
        }
    );
    assert_eq!(
        pool.direct_to(&[0, 4]).unwrap_err(),
        ViewError::NoSuchEngine {
            engine: 4,
            workers: 4
        }
    );
    assert_eq!(
        pool.direct_to(&[1, 1]).unwrap_err(),
        ViewError::Duplicate { engine: 1 }
    );
    assert_eq!(
        pool.direct_to(&[3, 0, 3]).unwrap_err(),
        ViewError::Duplicate { engine: 3 }
    );
    for e in [
        pool.direct_to(&[]).unwrap_err(),
        pool.direct_to(&[9]).unwrap_err(),
        pool.direct_to(&[1, 1]).unwrap_err(),
    ] {
        assert!(e.to_string().contains("targets"), "{e}");
    }
    assert_eq!(pool.direct_to(&[3, 1]).unwrap().apply(|e| e), vec![3, 1]);
}

// PARVIEW_WORKERS is read from the environment, so it is tested in child processes of this very
// test binary (setting it in-process would race the other tests).

const CHILD_ENV: &str = "PARVIEW_TEST_CHILD";

#[test]
fn env_child_probe() {
    let Ok(expect) = std::env::var(CHILD_ENV) else {
        return; // only meaningful inside the child process
    };
    let value = std::env::var("PARVIEW_WORKERS").expect("child runs with PARVIEW_WORKERS set");
    if expect == "err" {
        match Pool::builder().build() {
            Err(BuildError::BadEnv { var, value: v }) => {
                assert_eq!(var, "PARVIEW_WORKERS");
                assert_eq!(v, value);
            }
            other => panic!("expected BadEnv, got {other:?}"),
        }
        let e = Pool::builder().build().unwrap_err().to_string();
        assert!(e.contains("PARVIEW_WORKERS") && e.contains(&value), "{e}");
        assert!(parview::default_workers().is_err());
        let msg = panic_message_of(Pool::new);
        assert!(
            msg.contains("PARVIEW_WORKERS") && msg.contains(&value),
            "{msg}"
        );
        // An explicit count does not read the variable.
        assert_eq!(Pool::builder().workers(2).build().unwrap().workers(), 2);
    } else {
        let want: usize = expect.parse().unwrap();
        assert_eq!(Pool::builder().build().unwrap().workers(), want);
        assert_eq!(parview::default_workers().unwrap(), want);
        assert_eq!(Pool::global().workers(), want);
        assert_eq!(parview::par_map(0..10u32, |i| i).len(), 10);
    }
    println!("ENV-CHILD-RAN expect={expect}");
}

fn run_env_child(value: &str, expect: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "env_child_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, expect)
        .env("PARVIEW_WORKERS", value)
        .output()
        .expect("run child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child with PARVIEW_WORKERS={value:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("ENV-CHILD-RAN expect={expect}")),
        "the child probe did not run:\n{stdout}\n{stderr}"
    );
}

#[test]
fn parview_workers_env_is_validated_and_used() {
    within(120, || {
        run_env_child("abc", "err");
        run_env_child("0", "err");
        run_env_child("-2", "err");
        run_env_child("3", "3");
        run_env_child(" 5 ", "5");
    });
}

// ---------------------------------------------------------------------------------------------
// scatter_gather

#[test]
fn scatter_gather_one_contiguous_piece_per_engine_in_engine_order() {
    within(60, || {
        for &p in &[1usize, 2, 3, 4, 8] {
            let pool = pool(p);
            for n in [0usize, 1, 2, p.saturating_sub(1), p, p + 1, 10, 97, 1000] {
                let data: Vec<usize> = (0..n).collect();
                for direct in [false, true] {
                    let ctx = format!("P={p} n={n} direct={direct}");
                    let pieces: Vec<(usize, Vec<usize>)> = if direct {
                        pool.direct().scatter_gather(&data, |e, piece| {
                            assert_eq!(
                                pool.current_engine(),
                                Some(e),
                                "piece ran on the wrong engine"
                            );
                            (e, piece.to_vec())
                        })
                    } else {
                        pool.scatter_gather(&data, |e, piece| (e, piece.to_vec()))
                    };
                    assert_eq!(pieces.len(), p, "{ctx}");
                    let engines: Vec<usize> = pieces.iter().map(|(e, _)| *e).collect();
                    assert_eq!(engines, (0..p).collect::<Vec<_>>(), "{ctx}");
                    let lens: Vec<usize> = pieces.iter().map(|(_, v)| v.len()).collect();
                    let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                    assert!(hi - lo <= 1, "{ctx}: sizes {lens:?}");
                    let concat: Vec<usize> = pieces.into_iter().flat_map(|(_, v)| v).collect();
                    assert_eq!(concat, data, "{ctx}: concatenation differs from input");
                }
            }
        }
        // The free function on the global pool.
        let data: Vec<u32> = (0..101).collect();
        let sums = parview::scatter_gather(&data, |_, piece| piece.iter().sum::<u32>());
        assert_eq!(sums.len(), Pool::global().workers());
        assert_eq!(sums.iter().sum::<u32>(), 5050);
    });
}

// ---------------------------------------------------------------------------------------------
// Idle pool sleeps

/// CPU time (utime + stime, in clock ticks) of this process's threads whose name starts with
/// `prefix`.
#[cfg(target_os = "linux")]
fn cpu_ticks_of_threads(prefix: &str) -> (u64, usize) {
    let mut total = 0;
    let mut count = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields[11].parse().unwrap();
        let stime: u64 = fields[12].parse().unwrap();
        total += utime + stime;
        count += 1;
    }
    (total, count)
}

#[cfg(target_os = "linux")]
#[test]
fn idle_pool_sleeps() {
    within(60, || {
        let ticks_per_s = 100.0; // USER_HZ on Linux
        let pool = Pool::builder()
            .workers(4)
            .spin(Duration::from_millis(1))
            .thread_name(|i| format!("idlprb-{i}"))
            .build()
            .unwrap();
        // Some work first, so that the engines have been awake.
        assert_eq!(pool.par_map(0..10_000u64, |i| i * 2).len(), 10_000);
        std::thread::sleep(Duration::from_millis(100));
        let (t0, count) = cpu_ticks_of_threads("idlprb-");
        assert_eq!(
            count, 4,
            "could not find the pool's threads in /proc/self/task"
        );
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let (t1, _) = cpu_ticks_of_threads("idlprb-");
        let wall = w0.elapsed().as_secs_f64();
        let cpu = (t1 - t0) as f64 / ticks_per_s;
        assert!(
            cpu < 0.05 * wall,
            "idle engines burned {cpu:.3} s of CPU over {wall:.3} s of wall time"
        );
        // And they still wake up for work.
        assert_eq!(pool.par_map(0..100u64, |i| i + 1)[99], 100);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn idle_process_sleeps_in_child() {
    // The whole-process measurement of the issue, isolated in a child process.
    if std::env::var("PARVIEW_TEST_IDLE_CHILD").is_ok() {
        let pool = Pool::builder()
            .workers(4)
            .spin(Duration::from_millis(1))
            .build()
            .unwrap();
        assert_eq!(pool.par_map(0..1000u64, |i| i).len(), 1000);
        std::thread::sleep(Duration::from_millis(100));
        let read = || {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        };
        let t0 = read();
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let cpu = (read() - t0) as f64 / 100.0;
        let wall = w0.elapsed().as_secs_f64();
        assert!(
            cpu < 0.05 * wall,
            "process burned {cpu:.3} s CPU over {wall:.3} s idle"
        );
        println!("IDLE-CHILD-RAN");
        return;
    }
    within(60, || {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "idle_process_sleeps_in_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PARVIEW_TEST_IDLE_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("IDLE-CHILD-RAN"), "{stdout}");
    });
}

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

#[test]
fn zipped_inputs_walk_in_step_and_drop_every_owned_item_once() {
    use std::sync::atomic::AtomicUsize;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct D(u32);
    impl Drop for D {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    within(60, || {
        let pool = pool(3);
        // Borrowed pair: same as indexing both.
        let x: Vec<f64> = (0..1000).map(f64::from).collect();
        let y: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
        let z = pool.par_map((&x, &y), |(a, b)| a - b);
        assert_eq!(z, (0..1000).map(|i| f64::from(i) * 0.5).collect::<Vec<_>>());
        // Owned pair of unequal lengths: as many items as the shorter; every item of both
        // sides dropped exactly once, also when the map stops early.
        for stop_at in [None, Some(17usize)] {
            DROPS.store(0, Ordering::Relaxed);
            let a: Vec<D> = (0..100).map(D).collect();
            let b: Vec<D> = (0..130).map(D).collect();
            let r = pool
                .schedule(Schedule::Dynamic(4))
                .try_map((a, b), |(p, q)| {
                    if Some(p.0 as usize) == stop_at {
                        Err("stop")
                    } else {
                        Ok(p.0 + q.0)
                    }
                });
            match stop_at {
                None => assert_eq!(r.unwrap(), (0..100).map(|i| 2 * i).collect::<Vec<u32>>()),
                Some(i) => assert!(matches!(r, Err(MapError::Failed { index, .. }) if index == i)),
            }
            assert_eq!(DROPS.load(Ordering::Relaxed), 230, "stop_at {stop_at:?}");
        }
    });
}
