//! Issue "views": DirectView, per-engine state, LoadBalancedView streaming, AsyncResult.

mod common;

use common::{SCHEDULES, panic_message_of, pool, within};

use parview::{ItemError, MapError, Pool, Schedule};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// DirectView placement

#[test]
fn direct_apply_runs_exactly_once_on_each_targeted_engine() {
    within(60, || {
        for p in [1usize, 2, 3, 8] {
            let pool = pool(p);
            for _ in 0..50 {
                let runs: Vec<AtomicUsize> = (0..p).map(|_| AtomicUsize::new(0)).collect();
                let got = pool.direct().apply(|e| {
                    runs[e].fetch_add(1, Ordering::SeqCst);
                    (e, pool.current_engine())
                });
                let want: Vec<_> = (0..p).map(|e| (e, Some(e))).collect();
                assert_eq!(got, want, "P={p}");
                assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1), "P={p}");
            }
        }
        let pool = pool(4);
        for _ in 0..50 {
            let seen = Mutex::new(Vec::new());
            let got = pool.direct_to(&[0, 2]).unwrap().apply(|e| {
                seen.lock().unwrap().push((e, pool.current_engine()));
                e * 100
            });
            assert_eq!(got, vec![0, 200]);
            let mut seen = seen.into_inner().unwrap();
            seen.sort();
            assert_eq!(
                seen,
                vec![(0, Some(0)), (2, Some(2))],
                "engines 1 and 3 must not run"
            );
        }
        // View order is kept.
        assert_eq!(
            pool.direct_to(&[3, 1, 2]).unwrap().apply(|e| e),
            vec![3, 1, 2]
        );
    });
}

#[test]
fn direct_map_runs_block_k_on_engine_k() {
    within(60, || {
        for p in [1usize, 2, 3, 5] {
            let pool = pool(p);
            for n in [0usize, 1, 3, 10, 101, 1000] {
                let v = pool.direct().map(0..n, |i| (i, pool.current_engine()));
                assert_eq!(v.len(), n);
                for (k, (i, e)) in v.into_iter().enumerate() {
                    assert_eq!(i, k);
                    let owner = (0..p)
                        .find(|&e| Schedule::static_block(n, p, e).contains(&i))
                        .unwrap();
                    assert_eq!(e, Some(owner), "P={p} n={n} item {i}");
                }
            }
            if p >= 3 {
                let targets = [2usize, 0];
                let dv = pool.direct_to(&targets).unwrap();
                let v = dv.map(0..9usize, |_| pool.current_engine().unwrap());
                let want: Vec<usize> = (0..9)
                    .map(|i| {
                        targets[(0..2)
                            .find(|&k| Schedule::static_block(9, 2, k).contains(&i))
                            .unwrap()]
                    })
                    .collect();
                assert_eq!(v, want);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Per-engine state

#[test]
fn engine_state_init_once_values_private_and_persistent() {
    within(60, || {
        for p in [1usize, 2, 4] {
            let pool = pool(p);
            let dv = pool.direct();
            let inits = AtomicUsize::new(0);
            let st = dv.init(|e| {
                inits.fetch_add(1, Ordering::SeqCst);
                assert_eq!(pool.current_engine(), Some(e), "init ran off its engine");
                (e, 0u64)
            });
            assert_eq!(st.engines(), (0..p).collect::<Vec<_>>().as_slice());
            for _ in 0..100 {
                let r = dv.apply_with_state(&st, |e, s| {
                    assert_eq!(s.0, e, "engine {e} saw another engine's value");
                    assert_eq!(pool.current_engine(), Some(e));
                    s.1 += 1;
                    s.1
                });
                assert_eq!(r.len(), p);
            }
            assert_eq!(
                inits.load(Ordering::SeqCst),
                p,
                "init must run exactly once per engine"
            );
            let pulled = dv.pull(&st);
            assert_eq!(pulled, (0..p).map(|e| (e, 100)).collect::<Vec<_>>());

            // map_with: each engine's own state, results in input order.
            let v = dv.map_with_state(&st, 0..1000u64, |s, i| {
                assert_eq!(Some(s.0), pool.current_engine());
                s.1 += 1;
                (i * 2, s.0)
            });
            for (k, (x, e)) in v.iter().enumerate() {
                assert_eq!(*x, 2 * k as u64);
                assert!(
                    Schedule::static_block(1000, p, *e).contains(&k),
                    "item {k} used engine {e}'s state"
                );
            }
            let counts: u64 = dv.pull(&st).iter().map(|s| s.1 - 100).sum();
            assert_eq!(counts, 1000);
            assert_eq!(inits.load(Ordering::SeqCst), p);
            let vals = st.into_values();
            assert_eq!(vals.len(), p);
        }
        // pull follows view order.
        let pool = pool(4);
        let dv = pool.direct_to(&[3, 0, 2]).unwrap();
        let st = dv.init(|e| e * 11);
        assert_eq!(dv.pull(&st), vec![33, 0, 22]);
        assert_eq!(st.engines(), &[3, 0, 2]);
    });
}

#[test]
fn init_runs_once_per_engine_not_once_per_split() {
    // rayon's map_init runs `init` once per split; DirectView::init runs it once per engine.
    within(60, || {
        for p in [1usize, 2, 3, 8] {
            let pool = pool(p);
            let dv = pool.direct();
            let inits = AtomicUsize::new(0);
            let st = dv.init(|_| {
                inits.fetch_add(1, Ordering::SeqCst);
                0usize
            });
            let v = dv.map_with_state(&st, 0..4000usize, |c, i| {
                *c += 1;
                i + 1
            });
            assert_eq!(v, (1..=4000).collect::<Vec<_>>());
            assert_eq!(inits.load(Ordering::SeqCst), p, "P={p}");
            assert_eq!(dv.pull(&st).iter().sum::<usize>(), 4000);
        }
    });
}

#[test]
fn state_of_another_pool_or_engine_is_rejected() {
    let a = pool(2);
    let b = pool(2);
    let st = a.direct().init(|e| e);
    let msg = panic_message_of(|| b.direct().apply_with_state(&st, |_, _| ()));
    assert!(msg.contains("state"), "{msg}");
    let part = a.direct_to(&[1]).unwrap().init(|e| e);
    let msg = panic_message_of(|| a.direct().pull(&part));
    assert!(msg.contains("state"), "{msg}");
    assert_eq!(a.direct_to(&[1]).unwrap().pull(&part), vec![1]);
}

#[test]
fn scatter_apply_gather_round_trips() {
    within(120, || {
        for p in 1..9usize {
            let pool = pool(p);
            let dv = pool.direct();
            for n in (0..1000usize).step_by(37) {
                let data: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
                let pieces = dv.scatter(&data);
                let lens = dv.apply_with_state(&pieces, |e, piece| {
                    assert_eq!(pool.current_engine(), Some(e));
                    for s in piece.iter_mut() {
                        s.push('!');
                    }
                    piece.len()
                });
                let want_lens: Vec<usize> = (0..p)
                    .map(|k| Schedule::static_block(n, p, k).len())
                    .collect();
                assert_eq!(lens, want_lens, "P={p} n={n}");
                let back = dv.gather(&pieces);
                let want: Vec<String> = data.iter().map(|s| format!("{s}!")).collect();
                assert_eq!(back, want, "P={p} n={n}");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[test]
fn imap_yields_in_input_order_while_items_finish_out_of_order() {
    within(60, || {
        let pool = Arc::new(pool(2));
        let seq = Arc::new(AtomicUsize::new(0));
        let finished_at: Arc<Vec<AtomicUsize>> =
            Arc::new((0..20).map(|_| AtomicUsize::new(0)).collect());
        let (s2, f2) = (seq.clone(), finished_at.clone());
        let it = pool
            .load_balanced()
            .imap((0..20u64).collect::<Vec<_>>(), move |i| {
                if i == 0 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                f2[i as usize].store(s2.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                i * 3
            });
        let got: Vec<u64> = it.map(|r| r.expect("no item panicked")).collect();
        assert_eq!(got, (0..20u64).map(|i| i * 3).collect::<Vec<_>>());
        assert!(
            finished_at[0].load(Ordering::SeqCst) > 0,
            "item 0 was expected to finish after some later item (the test needs out-of-order completion)"
        );
    });
}

#[test]
fn imap_unordered_yields_fast_items_first() {
    within(60, || {
        let pool = pool(2);
        let it = pool
            .load_balanced()
            .imap_unordered((0..20u64).collect::<Vec<_>>(), |i| {
                if i == 0 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                i + 1
            });
        let got: Vec<(usize, u64)> = it.map(|(i, r)| (i, r.unwrap())).collect();
        assert_eq!(got.len(), 20);
        let first: Vec<usize> = got.iter().take(5).map(|(i, _)| *i).collect();
        assert!(
            !first.contains(&0),
            "the slow item 0 was among the first yielded: {first:?}"
        );
        let mut idx: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        idx.sort();
        assert_eq!(idx, (0..20).collect::<Vec<_>>(), "each index exactly once");
        assert!(got.iter().all(|&(i, v)| v == i as u64 + 1));
    });
}

#[test]
fn imap_reports_panics_per_item_and_empty_input() {
    within(60, || {
        let pool = pool(3);
        let v: Vec<Result<u32, ItemError>> = pool
            .load_balanced()
            .imap(vec![1u32, 0, 4, 0], |x| 8 / x)
            .collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], Ok(8));
        assert_eq!(v[1].as_ref().unwrap_err().index, 1);
        assert_eq!(v[2], Ok(2));
        assert_eq!(v[3].as_ref().unwrap_err().index, 3);
        let mut u: Vec<(usize, bool)> = pool
            .load_balanced()
            .imap_unordered(vec![1u32, 0, 4, 0], |x| 8 / x)
            .map(|(i, r)| (i, r.is_ok()))
            .collect();
        u.sort();
        assert_eq!(u, vec![(0, true), (1, false), (2, true), (3, false)]);
        assert_eq!(
            pool.load_balanced().imap(Vec::<u8>::new(), |x| x).count(),
            0
        );
        assert_eq!(
            pool.load_balanced()
                .imap_unordered(Vec::<u8>::new(), |x| x)
                .count(),
            0
        );
        // Other schedules are honoured and still ordered.
        for &s in &SCHEDULES {
            let v: Vec<u64> = pool
                .load_balanced()
                .schedule(s)
                .imap(0..300u64, |i| i * i)
                .map(Result::unwrap)
                .collect();
            assert_eq!(v, (0..300u64).map(|i| i * i).collect::<Vec<_>>(), "{s:?}");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// AsyncResult: progress, wait_timeout, abort

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn progress_is_monotone_and_reaches_total() {
    within(60, || {
        let pool = pool(2);
        let ar = pool
            .load_balanced()
            .map_async((0..2000u32).collect::<Vec<_>>(), |x| {
                spin_for(Duration::from_micros(200));
                x
            });
        assert!(
            !ar.wait_timeout(Duration::from_millis(1)),
            "finished implausibly fast"
        );
        assert!(!ar.ready());
        let mut last = 0;
        let mut samples = 0;
        while !ar.ready() {
            let (d, t) = ar.progress();
            assert_eq!(t, 2000);
            assert!(d >= last, "progress went backwards: {last} -> {d}");
            assert!(d <= t);
            last = d;
            samples += 1;
            std::thread::sleep(Duration::from_micros(300));
        }
        assert!(samples > 1);
        assert!(ar.wait_timeout(Duration::from_secs(30)));
        assert_eq!(ar.progress(), (2000, 2000));
        assert_eq!(ar.get().unwrap(), (0..2000u32).collect::<Vec<_>>());
    });
}

#[test]
fn abort_half_way_stops_promptly() {
    within(60, || {
        let pool = pool(2);
        let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
        let aborted = Arc::new(AtomicBool::new(false));
        let after = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (a2, af2, r2) = (aborted.clone(), after.clone(), ran.clone());
        let ar = lb.map_async((0..10_000u32).collect::<Vec<_>>(), move |x| {
            if a2.load(Ordering::SeqCst) {
                af2.fetch_add(1, Ordering::SeqCst);
            }
            r2.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            x
        });
        let t = Instant::now();
        while ar.progress().0 < 100 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "map makes no progress"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        ar.abort();
        aborted.store(true, Ordering::SeqCst);
        let engines = 2;
        let chunk = 1;
        let r = ar.get();
        let late = after.load(Ordering::SeqCst);
        assert!(
            late <= engines * chunk + 2,
            "{late} items started after abort() returned"
        );
        match r {
            Err(MapError::Aborted { done, total }) => {
                assert_eq!(total, 10_000);
                assert!(done < 10_000);
                assert_eq!(
                    done,
                    ran.load(Ordering::SeqCst),
                    "done must count the items that ran"
                );
            }
            other => panic!("expected Aborted, got {:?}", other.map(|v| v.len())),
        }
        // The pool still works.
        assert_eq!(pool.par_map(0..10u8, |i| i), (0..10u8).collect::<Vec<_>>());
    });
}

#[test]
fn empty_async_maps_complete_at_once() {
    within(30, || {
        let pool = pool(3);
        let ar = pool.load_balanced().map_async(Vec::<u8>::new(), |x| x);
        assert!(ar.ready());
        assert_eq!(ar.progress(), (0, 0));
        assert_eq!(ar.get().unwrap(), Vec::<u8>::new());
        let ar = pool.direct().map_async(0..0u32, |x| x);
        assert_eq!(ar.get().unwrap(), Vec::<u32>::new());
        let ar = pool
            .load_balanced()
            .return_exceptions()
            .map_async(0..0u32, |x| x);
        assert_eq!(ar.get().unwrap(), vec![]);
        assert_eq!(pool.direct().map(0..0u32, |x| x), Vec::<u32>::new());
        assert!(
            pool.load_balanced()
                .return_exceptions()
                .map(0..0u32, |x| x)
                .is_empty()
        );
    });
}

#[test]
fn abort_after_completion_keeps_the_value() {
    let pool = pool(2);
    let ar = pool.load_balanced().map_async(0..100u32, |x| x + 1);
    ar.wait();
    ar.abort();
    assert_eq!(ar.get().unwrap(), (1..=100u32).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Panics in views

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
// Many AsyncResults, dropping things

#[test]
fn a_thousand_async_results_from_eight_threads() {
    within(120, || {
        let pool = Arc::new(pool(3));
        let mut hs = Vec::new();
        for t in 0..8u64 {
            let pool = pool.clone();
            hs.push(std::thread::spawn(move || {
                let lb = pool.load_balanced();
                let mut maps = Vec::new();
                let mut tasks = Vec::new();
                for k in 0..125u64 {
                    if k % 2 == 0 {
                        maps.push((k, lb.map_async(0..(k + 1), move |i| i * t + k)));
                    } else {
                        tasks.push((k, lb.submit(move || t * 1000 + k)));
                    }
                }
                for (k, ar) in maps {
                    let v = ar.get().unwrap();
                    assert_eq!(v, (0..(k + 1)).map(|i| i * t + k).collect::<Vec<_>>());
                }
                for (k, ar) in tasks {
                    assert_eq!(ar.get().unwrap(), t * 1000 + k);
                }
            }));
        }
        for h in hs {
            h.join().expect("submitter failed");
        }
        // DirectView async too.
        let ars: Vec<_> = (0..100usize)
            .map(|k| pool.direct().apply_async(move |e| e + k))
            .collect();
        for (k, ar) in ars.into_iter().enumerate() {
            assert_eq!(ar.get().unwrap(), vec![k, k + 1, k + 2]);
        }
        let ars: Vec<_> = (0..50u32)
            .map(|k| pool.direct().map_async(0..(k * 3), move |i| i + k))
            .collect();
        for (k, ar) in ars.into_iter().enumerate() {
            let k = k as u32;
            assert_eq!(
                ar.get().unwrap(),
                (0..(k * 3)).map(|i| i + k).collect::<Vec<_>>()
            );
        }
    });
}

#[test]
fn dropping_the_pool_while_async_results_are_pending() {
    within(60, || {
        for round in 0..10u64 {
            let pool = pool(2);
            let ars: Vec<_> = (0..8u64)
                .map(|k| {
                    pool.load_balanced().map_async(0..200u64, move |i| {
                        if i % 50 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        i + k
                    })
                })
                .collect();
            let dar = pool.direct().map_async(0..100u64, |i| i * 2);
            let sub = pool.load_balanced().submit(move || round);
            drop(pool);
            for (k, ar) in ars.into_iter().enumerate() {
                match ar.get() {
                    Ok(v) => assert_eq!(v, (0..200u64).map(|i| i + k as u64).collect::<Vec<_>>()),
                    Err(e) => println!("round {round}: pending map ended with {e}"),
                }
            }
            if let Ok(v) = dar.get() {
                assert_eq!(v, (0..100u64).map(|i| i * 2).collect::<Vec<_>>());
            }
            if let Ok(v) = sub.get() {
                assert_eq!(v, round);
            }
        }
        // Pool dropped on another thread while this one waits in get().
        let pool = pool(2);
        let ar = pool.load_balanced().map_async(0..50u64, |i| {
            std::thread::sleep(Duration::from_millis(2));
            i
        });
        let h = std::thread::spawn(move || drop(pool));
        let r = ar.get();
        h.join().unwrap();
        if let Ok(v) = r {
            assert_eq!(v, (0..50u64).collect::<Vec<_>>());
        }
    });
}

#[test]
fn dropping_an_unfinished_async_result_returns_promptly_and_stops_the_work() {
    within(60, || {
        let pool = pool(2);
        let dropped = Arc::new(AtomicBool::new(false));
        let late = Arc::new(AtomicUsize::new(0));
        let (d2, l2) = (dropped.clone(), late.clone());
        let ar = pool
            .load_balanced()
            .schedule(Schedule::Dynamic(1))
            .map_async(0..10_000u32, move |x| {
                if d2.load(Ordering::SeqCst) {
                    l2.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(1));
                x
            });
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        drop(ar);
        dropped.store(true, Ordering::SeqCst);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "dropping took {:?}",
            t.elapsed()
        );
        // Later maps work, and the dropped map's remaining ~10 s of work is not run.
        let t = Instant::now();
        assert_eq!(
            pool.par_map(0..1000u32, |i| i + 1),
            (1..=1000u32).collect::<Vec<_>>()
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "next map waited {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
        let l = late.load(Ordering::SeqCst);
        assert!(
            l <= 2 + 2,
            "{l} items of the dropped map started after the drop"
        );

        // Also for a DirectView async map and for imap iterators.
        let dar = pool.direct().map_async(0..2000u32, |x| {
            std::thread::sleep(Duration::from_millis(1));
            x
        });
        drop(dar);
        let mut it = pool.load_balanced().imap(0..5000u32, |x| {
            std::thread::sleep(Duration::from_millis(1));
            x
        });
        assert_eq!(it.next(), Some(Ok(0)));
        drop(it);
        let t = Instant::now();
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1]);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "apply after drops waited {:?}",
            t.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Timings

#[test]
fn timings_are_consistent() {
    within(60, || {
        for p in [1usize, 2, 3] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let ar = pool.load_balanced().schedule(s).map_async(0..400u32, |x| {
                    spin_for(Duration::from_micros(50));
                    x
                });
                ar.wait();
                let t = ar.timings();
                let slack = Duration::from_millis(2);
                assert_eq!(t.serial_time, ar.serial_time());
                assert_eq!(t.wall_time, ar.wall_time());
                assert!(
                    t.serial_time <= t.wall_time * p as u32 + slack,
                    "P={p} {s:?}: serial {:?} > wall {:?} x {p}",
                    t.serial_time,
                    t.wall_time
                );
                assert!(
                    t.wall_time <= ar.elapsed(),
                    "wall {:?} > elapsed {:?}",
                    t.wall_time,
                    ar.elapsed()
                );
                // 400 items of 50 µs: at least 20 ms of busy time.
                assert!(
                    t.serial_time >= Duration::from_millis(19),
                    "serial {:?}",
                    t.serial_time
                );
                assert!(t.wall_time > Duration::ZERO);
                let e1 = ar.elapsed();
                std::thread::sleep(Duration::from_millis(2));
                assert!(ar.elapsed() > e1, "elapsed must keep running");
                assert_eq!(ar.timings(), t, "timings of a finished map must not change");
            }
            // Submitted task and direct async.
            let ar = pool
                .load_balanced()
                .submit(|| spin_for(Duration::from_millis(5)));
            ar.wait();
            assert!(ar.serial_time() >= Duration::from_millis(5));
            assert!(ar.wall_time() <= ar.elapsed());
            let ar = pool
                .direct()
                .apply_async(|_| spin_for(Duration::from_millis(3)));
            ar.wait();
            assert!(ar.serial_time() <= ar.wall_time() * p as u32 + Duration::from_millis(2));
            assert!(ar.serial_time() >= Duration::from_millis(3) * p as u32);
            assert!(ar.wall_time() <= ar.elapsed());
        }
    });
}

#[test]
fn engine_of_pool_is_not_engine_of_global() {
    let pool = pool(2);
    let v = pool.direct().apply(|_| {
        (
            Pool::global().current_engine(),
            pool.current_engine().is_some(),
        )
    });
    assert!(v.iter().all(|&(g, mine)| g.is_none() && mine));
    let seen: HashSet<Option<usize>> = pool
        .direct()
        .apply(|_| pool.current_engine())
        .into_iter()
        .collect();
    assert_eq!(seen.len(), 2);
}
