//! `Pool::resize`: engines added and removed while maps, async maps, imap and DirectView
//! calls run. Every item runs exactly once and results equal the serial ones; removed engines'
//! `EngineState` values are dropped and a later access is a typed error naming the engine;
//! resizing from inside a job does not deadlock. Every test runs under a watchdog.

mod common;

use common::{SCHEDULES, f, spin_for, within};
use parview::{MapError, Pool, ResizeError, Schedule, ViewError};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn pool(n: usize) -> Arc<Pool> {
    Arc::new(Pool::builder().workers(n).build().expect("pool builds"))
}

/// A small deterministic generator for the stress tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs a map over `n` items that counts how often each item ran and checks exactly once and
/// the serial results.
fn counted_map(pool: &Pool, schedule: Schedule, n: usize, slow: bool) {
    let seen: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(0)).collect();
    let out = pool.schedule(schedule).map(0..n as u64, |i| {
        seen[i as usize].fetch_add(1, SeqCst);
        if slow && i % 64 == 0 {
            spin_for(Duration::from_micros(50));
        }
        f(i)
    });
    let expect: Vec<u64> = (0..n as u64).map(f).collect();
    assert_eq!(out, expect, "{schedule}: results differ from serial");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s.load(SeqCst),
            1,
            "{schedule}: item {i} ran {} times",
            s.load(SeqCst)
        );
    }
}

#[test]
fn bad_sizes_are_typed_errors_naming_the_argument() {
    within(30, || {
        let pool = pool(2);
        let e = pool.resize(0).unwrap_err();
        assert!(matches!(e, ResizeError::Zero));
        assert!(e.to_string().contains("`n`"), "{e}");
        let e = pool.resize(parview::MAX_WORKERS + 1).unwrap_err();
        assert!(
            matches!(e, ResizeError::TooMany { requested, .. } if requested == parview::MAX_WORKERS + 1)
        );
        assert!(e.to_string().contains("`n`"), "{e}");
        assert_eq!(pool.workers(), 2, "a refused resize changes nothing");
        pool.resize(2).unwrap(); // same size: a no-op
        assert_eq!(
            pool.par_map(0..100u64, f),
            (0..100u64).map(f).collect::<Vec<_>>()
        );
    });
}

#[test]
fn grow_and_shrink_with_blocking_maps_in_flight() {
    within(180, || {
        let pool = pool(2);
        let stop = Arc::new(AtomicBool::new(false));
        let mut mappers = Vec::new();
        for (t, &schedule) in SCHEDULES.iter().enumerate().take(6) {
            let (pool, stop) = (pool.clone(), stop.clone());
            mappers.push(std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(SeqCst) || runs < 2 {
                    counted_map(&pool, schedule, 2_000 + 37 * t, true);
                    runs += 1;
                }
                runs
            }));
        }
        for &n in &[4, 1, 6, 2, 8, 3, 1, 5] {
            pool.resize(n).unwrap();
            assert_eq!(pool.workers(), n);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, SeqCst);
        for m in mappers {
            assert!(m.join().expect("no map panicked") >= 2);
        }
        // After all that, every engine still works.
        assert_eq!(pool.direct().apply(|e| e), (0..5).collect::<Vec<_>>());
    });
}

#[test]
fn a_map_started_before_a_resize_runs_every_item_once() {
    within(120, || {
        for schedule in SCHEDULES {
            for &(from, to) in &[(1usize, 4usize), (4, 1), (3, 2), (2, 7)] {
                let pool = pool(from);
                let started = Arc::new(Barrier::new(2));
                let (p, s) = (pool.clone(), started.clone());
                let h = std::thread::spawn(move || {
                    let n = 3_000usize;
                    let seen: Vec<AtomicU8> = (0..n).map(|_| AtomicU8::new(0)).collect();
                    let first = AtomicBool::new(true);
                    let out = p.schedule(schedule).map(0..n as u64, |i| {
                        if first.swap(false, SeqCst) {
                            s.wait(); // the resize happens while this map runs
                        }
                        seen[i as usize].fetch_add(1, SeqCst);
                        if i % 100 == 0 {
                            spin_for(Duration::from_micros(100));
                        }
                        f(i)
                    });
                    assert_eq!(out, (0..n as u64).map(f).collect::<Vec<_>>());
                    assert!(seen.iter().all(|s| s.load(SeqCst) == 1), "{schedule}");
                });
                started.wait();
                pool.resize(to).unwrap();
                h.join().expect("map ok");
                assert_eq!(pool.workers(), to);
            }
        }
    });
}

#[test]
fn async_maps_and_imap_survive_resizes() {
    within(180, || {
        let pool = pool(3);
        let n = 4_000u64;
        let serial: Vec<u64> = (0..n).map(f).collect();
        for round in 0..6 {
            let slow = |i: u64| {
                if i % 50 == 0 {
                    spin_for(Duration::from_micros(100));
                }
                f(i)
            };
            let lb = pool
                .load_balanced()
                .schedule(SCHEDULES[round % SCHEDULES.len()]);
            let a = lb.map_async((0..n).collect::<Vec<_>>(), slow);
            let b = pool.load_balanced().imap((0..n).collect::<Vec<_>>(), slow);
            let c = pool.load_balanced().imap_unordered(0..n, slow);
            let d = pool.direct_to(&[0]).unwrap().map_async(0..n, f);
            pool.resize([1, 6, 2, 5, 1, 4][round]).unwrap();
            assert_eq!(a.get().unwrap(), serial);
            let got: Vec<u64> = b.map(Result::unwrap).collect();
            assert_eq!(got, serial);
            let mut seen = vec![0u8; n as usize];
            for r in c {
                let (i, v) = r;
                assert_eq!(v.unwrap(), serial[i]);
                seen[i] += 1;
            }
            assert!(seen.iter().all(|&s| s == 1));
            assert_eq!(d.get().unwrap(), serial);
        }
    });
}

#[test]
fn direct_view_calls_in_flight_on_engines_that_stay() {
    within(120, || {
        let pool = pool(2);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (pool.clone(), stop.clone());
        let caller = std::thread::spawn(move || {
            let dv = p.direct_to(&[0, 1]).unwrap();
            let st = dv.init(|_| 0usize);
            let mut calls = 0usize;
            while !s.load(SeqCst) || calls < 10 {
                assert_eq!(dv.apply(|e| e * 3), vec![0, 3]);
                assert_eq!(dv.map(0..100u64, f), (0..100u64).map(f).collect::<Vec<_>>());
                dv.apply_with_state(&st, |_, c| *c += 1);
                calls += 1;
            }
            assert_eq!(dv.pull(&st), vec![calls, calls]);
        });
        for &n in &[5, 2, 8, 3, 2, 6, 2] {
            pool.resize(n).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        stop.store(true, SeqCst);
        caller.join().expect("calls on engines 0 and 1 never fail");
    });
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn state_on_removed_engines_is_dropped_and_access_is_a_typed_error() {
    within(60, || {
        let pool = pool(4);
        let drops = Arc::new(AtomicUsize::new(0));
        let dv = pool.direct();
        let d = drops.clone();
        let st = dv.init(move |_| Counted(d.clone()));
        let nums = dv.init(|e| e * 10);
        pool.resize(2).unwrap();
        // resize from outside returns once the removed engines have left: their values are gone.
        assert_eq!(drops.load(SeqCst), 2);
        assert_eq!(st.removed(), vec![2, 3]);
        assert_eq!(nums.removed(), vec![2, 3]);
        // The old view targets removed engines: typed errors, and panics naming the engine.
        assert_eq!(
            dv.try_pull(&nums),
            Err(ViewError::EngineRemoved { engine: 2 })
        );
        assert_eq!(
            dv.try_apply(|e| e).unwrap_err(),
            ViewError::EngineRemoved { engine: 2 }
        );
        let msg = panic_message(|| drop(dv.pull(&nums)));
        assert!(msg.contains("engine 2 was removed"), "{msg}");
        let msg = panic_message(|| drop(dv.apply(|e| e)));
        assert!(msg.contains("engine 2 was removed"), "{msg}");
        // A view on the engines left works with the values left.
        let left = pool.direct();
        assert_eq!(left.targets(), &[0, 1]);
        assert_eq!(left.pull(&nums), vec![0, 10]);
        left.apply_with_state(&st, |_, _c| ());
        // An async call to a removed engine fails naming it, and does not wait.
        let e = dv.apply_async(|e| e).get().unwrap_err();
        match e {
            MapError::Panicked { message, .. } => {
                assert!(message.contains("engine 2 was removed"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Adding the indices back gives fresh engines, without the old values.
        pool.resize(4).unwrap();
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1, 2, 3]);
        assert_eq!(
            dv.try_pull(&nums),
            Err(ViewError::EngineRemoved { engine: 2 })
        );
        let msg = panic_message(|| drop(dv.apply_with_state(&nums, |_, v| *v)));
        assert!(msg.contains("engine 2 was removed"), "{msg}");
        let msg = panic_message(|| drop(nums.into_values()));
        assert!(msg.contains("engine 2 was removed"), "{msg}");
        assert_eq!(drops.load(SeqCst), 2);
        drop(st);
        assert_eq!(drops.load(SeqCst), 4, "every value dropped exactly once");
    });
}

fn panic_message(f: impl FnOnce()) -> String {
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("panics");
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn mail_queued_before_removal_runs_on_its_engine() {
    within(60, || {
        let pool = pool(4);
        let dv3 = pool.direct_to(&[3]).unwrap();
        let busy = dv3.apply_async(|e| {
            std::thread::sleep(Duration::from_millis(100));
            e
        });
        let queued = dv3.apply_async(|e| (e, Pool::global().current_engine().is_none()));
        pool.resize(1).unwrap();
        assert_eq!(busy.get().unwrap(), vec![3]);
        assert_eq!(queued.get().unwrap(), vec![(3, true)]);
        assert_eq!(pool.workers(), 1);
    });
}

#[test]
fn resize_from_inside_a_job_does_not_deadlock() {
    within(60, || {
        let pool = pool(3);
        // An engine removes itself (and another one).
        let p = pool.clone();
        let r = pool
            .direct_to(&[2])
            .unwrap()
            .apply(move |_| p.resize(1).is_ok());
        assert_eq!(r, vec![true]);
        assert_eq!(pool.workers(), 1);
        // Grow from a load-balanced task, then shrink and grow again at once (engines still
        // leaving are told to come back).
        let p = pool.clone();
        let ok = pool
            .load_balanced()
            .submit(move || {
                p.resize(5).unwrap();
                p.resize(2).unwrap();
                p.resize(4).unwrap();
                p.workers()
            })
            .get()
            .unwrap();
        assert_eq!(ok, 4);
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1, 2, 3]);
        counted_map(&pool, Schedule::Dynamic(3), 5_000, false);
        // A nested map inside a job that resizes.
        let p = pool.clone();
        let v = pool.par_map(0..8u64, move |i| {
            if i == 3 {
                p.resize(2 + (i as usize % 3)).unwrap();
            }
            p.par_map(0..50u64, f).len() as u64 + i
        });
        assert_eq!(v, (0..8u64).map(|i| 50 + i).collect::<Vec<_>>());
        pool.resize(3).unwrap();
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1, 2]);
    });
}

#[test]
fn random_resizes_under_load_with_more_engines_than_cores() {
    within(300, || {
        let pool = pool(3);
        let stop = Arc::new(AtomicBool::new(false));
        let spawned = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for t in 0..4u64 {
            let (pool, stop, spawned) = (pool.clone(), stop.clone(), spawned.clone());
            workers.push(std::thread::spawn(move || {
                let mut rng = XorShift(0x9E37_79B9 + t);
                let mut tasks = 0;
                while !stop.load(SeqCst) {
                    let sched = SCHEDULES[rng.below(SCHEDULES.len() as u64) as usize];
                    match rng.below(5) {
                        0 | 1 => counted_map(&pool, sched, 1 + rng.below(3_000) as usize, false),
                        2 => {
                            let n = rng.below(2_000);
                            let a = pool.load_balanced().schedule(sched).map_async(0..n, f);
                            assert_eq!(a.get().unwrap(), (0..n).map(f).collect::<Vec<_>>());
                        }
                        3 => {
                            // Engine 0 is never removed.
                            let dv = pool.direct_to(&[0]).unwrap();
                            assert_eq!(dv.apply(|e| e + 1), vec![1]);
                        }
                        _ => {
                            let s = spawned.clone();
                            pool.spawn(move || {
                                s.fetch_add(1, SeqCst);
                            });
                            tasks += 1;
                        }
                    }
                }
                tasks
            }));
        }
        let mut rng = XorShift(12345);
        for k in 0..150 {
            let n = 1 + rng.below(12) as usize;
            if k % 10 == 9 {
                // From inside a job (it does not wait for removals).
                let p = pool.clone();
                pool.load_balanced()
                    .submit(move || p.resize(n).unwrap())
                    .get()
                    .unwrap();
            } else {
                pool.resize(n).unwrap();
            }
            if rng.below(3) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        stop.store(true, SeqCst);
        let tasks: usize = workers
            .into_iter()
            .map(|w| w.join().expect("no failure"))
            .sum();
        pool.resize(2).unwrap();
        // Spawned tasks all run (fire and forget: wait for them).
        while spawned.load(SeqCst) < tasks {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(spawned.load(SeqCst), tasks);
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1]);
    });
}

#[test]
fn dropping_a_shrunk_pool_joins_every_thread() {
    within(30, || {
        for _ in 0..20 {
            let pool = pool(4);
            pool.resize(1).unwrap();
            pool.resize(3).unwrap();
            pool.resize(2).unwrap();
            assert_eq!(pool.par_map(0..100u64, f).len(), 100);
            drop(pool);
        }
    });
}

/// Panics when dropped on an engine other than 0.
struct Grumpy(usize);

impl Drop for Grumpy {
    fn drop(&mut self) {
        if self.0 != 0 {
            panic!("Grumpy {} does not want to go", self.0);
        }
    }
}

#[test]
fn a_panicking_state_drop_does_not_end_a_leaving_engine() {
    within(60, || {
        let pool = pool(3);
        let st = pool.direct().init(Grumpy);
        pool.resize(1).unwrap(); // engines 1 and 2 drop their Grumpy: reported, not fatal
        assert_eq!(st.removed(), vec![1, 2]);
        pool.resize(3).unwrap(); // the same threads come back
        assert_eq!(pool.direct().apply(|e| e), vec![0, 1, 2]);
        counted_map(&pool, Schedule::Dynamic(5), 3_000, false);
        // The owner lets go while nothing is left but engine 0's value.
        drop(st);
        pool.resize(1).unwrap();
        assert_eq!(pool.direct().apply(|e| e), vec![0]);
    });
}
