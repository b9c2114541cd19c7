//! AsyncResult: `progress` (monotone, reaches the total), `wait_timeout`, `abort` (prompt; after
//! completion it keeps the value), empty maps, a thousand results from eight threads, dropping
//! the pool or an unfinished result, and the timings (`wall_time`, `serial_time`, `elapsed`).

mod common;

use common::{SCHEDULES, pool, spin_for, within};
use parview::{MapError, Schedule};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Progress, wait_timeout, abort

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
