//! `join` and `scope`: results, panics on either side with both sides finished, deep and
//! nested recursion on every pool size (more engines than cores included), tasks spawned by
//! tasks, borrowing, and calls from outside and inside the pool.

mod common;

use common::{WORKERS, panic_message_of, payload_message, pool, within};
use parview::Pool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// Quicksort with `join`, down to `cutoff` items per leaf.
fn quicksort(pool: &Pool, v: &mut [i64], cutoff: usize) {
    if v.len() <= cutoff.max(1) {
        v.sort_unstable();
        return;
    }
    let mid = partition(v);
    let (lo, hi) = v.split_at_mut(mid);
    pool.join(
        || quicksort(pool, lo, cutoff),
        || quicksort(pool, &mut hi[1..], cutoff),
    );
}

/// Lomuto partition around the middle element; returns the pivot's final index.
fn partition(v: &mut [i64]) -> usize {
    let last = v.len() - 1;
    v.swap(v.len() / 2, last);
    let mut store = 0;
    for i in 0..last {
        if v[i] < v[last] {
            v.swap(i, store);
            store += 1;
        }
    }
    v.swap(store, last);
    store
}

/// A pseudo-random vector (deterministic).
fn scrambled(n: usize) -> Vec<i64> {
    (0..n as u64)
        .map(|i| common::f(i) as i64 % 1_000_000)
        .collect()
}

fn sorted_copy(v: &[i64]) -> Vec<i64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s
}

#[test]
fn join_returns_both_results_on_every_pool_size() {
    for p in WORKERS {
        let (a, b) = within(30, move || {
            let pool = pool(p);
            pool.join(|| "left".to_string(), || vec![1, 2, 3])
        });
        assert_eq!((a.as_str(), b), ("left", vec![1, 2, 3]), "P={p}");
    }
}

#[test]
fn quicksort_of_a_million_with_fine_leaves_on_every_pool_size() {
    let v = scrambled(1_000_000);
    let want = sorted_copy(&v);
    for p in WORKERS {
        let (v, want) = (v.clone(), want.clone());
        within(120, move || {
            let pool = pool(p);
            let mut v = v;
            quicksort(&pool, &mut v, 16);
            assert!(v == want, "P={p}: not sorted");
        });
    }
}

#[test]
fn quicksort_inside_the_pool_and_with_the_free_function() {
    within(120, || {
        let pool = pool(2);
        let v = scrambled(200_000);
        let want = sorted_copy(&v);
        // From inside an engine (the deque path).
        let got = pool.direct_to(&[1]).unwrap().apply(|_| {
            let mut v = v.clone();
            quicksort(&pool, &mut v, 8);
            v
        });
        assert!(got[0] == want);
        // The free function, on the global pool.
        fn qs(v: &mut [i64]) {
            if v.len() <= 32 {
                v.sort_unstable();
                return;
            }
            let mid = partition(v);
            let (lo, hi) = v.split_at_mut(mid);
            parview::join(|| qs(lo), || qs(&mut hi[1..]));
        }
        let mut w = v.clone();
        qs(&mut w);
        assert!(w == want);
    });
}

/// A chain of joins `depth` deep whose second halves are trivial: the worst case for the
/// stack (every level waits or takes `b` back).
fn chain(pool: &Pool, depth: usize) -> usize {
    if depth == 0 {
        return 0;
    }
    let (a, b) = pool.join(|| chain(pool, depth - 1), || 1);
    a + b
}

#[test]
fn deep_join_chains_finish_on_engines_of_every_pool_size() {
    for p in WORKERS {
        let got = within(60, move || {
            let pool = pool(p);
            // Deeper than MAX_NESTED_WAITS, on each engine at once (32 MiB stacks).
            pool.direct().apply(|_| chain(&pool, 2_000))
        });
        assert!(got.iter().all(|&d| d == 2_000), "P={p}: {got:?}");
    }
}

#[test]
fn a_panic_on_either_side_is_raised_after_both_sides_finished() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            let finished = AtomicUsize::new(0);
            let slow = || {
                std::thread::sleep(Duration::from_millis(20));
                finished.fetch_add(1, Ordering::SeqCst);
            };
            // Left panics: the right half still runs to its end first.
            let m = panic_message_of(|| pool.join(|| panic!("left side"), slow));
            assert_eq!(m, "left side", "P={p}");
            assert_eq!(finished.swap(0, Ordering::SeqCst), 1, "P={p}");
            // Right panics: the left half finished too.
            let m = panic_message_of(|| pool.join(slow, || panic!("right side")));
            assert_eq!(m, "right side", "P={p}");
            assert_eq!(finished.swap(0, Ordering::SeqCst), 1, "P={p}");
            // Both: the left payload wins; the same inside an engine.
            let m = panic_message_of(|| pool.join(|| panic!("a"), || panic!("b")));
            assert_eq!(m, "a");
            let inner = pool.direct().apply(|_| {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.join(slow, || panic!("inner right"))
                }));
                payload_message(&*r.unwrap_err())
            });
            assert!(inner.iter().all(|m| m == "inner right"), "P={p}");
            assert_eq!(finished.swap(0, Ordering::SeqCst), p, "P={p}");
            // The pool still works.
            assert_eq!(pool.join(|| 1, || 2), (1, 2));
        });
    }
}

#[test]
fn the_original_payload_type_is_kept() {
    let pool = pool(2);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.join(|| (), || std::panic::panic_any(42u32))
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<u32>(), Some(&42));
}

#[test]
fn an_engine_takes_the_second_half_while_the_caller_runs_the_first() {
    // The left half waits until the right half has started: it must run elsewhere.
    for p in [2usize, 3, 8] {
        within(30, move || {
            let pool = pool(p);
            let (tx, rx) = mpsc::channel();
            let pr = &pool;
            let (_, on) = pool.join(
                move || rx.recv().unwrap(),
                move || {
                    tx.send(()).unwrap();
                    pr.current_engine().is_some()
                },
            );
            assert!(on, "P={p}: the right half ran on an engine");
        });
    }
}

#[test]
fn joins_and_maps_nest_in_each_other() {
    for p in WORKERS {
        within(60, move || {
            let pool = pool(p);
            let sums = pool.par_map(0..16u64, |i| {
                let (a, b) = pool.join(
                    || pool.par_map(0..100u64, |j| i * j).iter().sum::<u64>(),
                    || chain(&pool, 50) as u64,
                );
                a + b
            });
            for (i, s) in sums.iter().enumerate() {
                assert_eq!(*s, i as u64 * 4950 + 50, "P={p}");
            }
        });
    }
}

#[test]
fn scope_waits_for_tasks_spawned_by_tasks() {
    fn tree<'s>(s: &parview::Scope<'s>, depth: u32, count: &'s AtomicUsize) {
        count.fetch_add(1, Ordering::SeqCst);
        if depth > 0 {
            s.spawn(move |s| tree(s, depth - 1, count));
            s.spawn(move |s| tree(s, depth - 1, count));
        }
    }
    for p in WORKERS {
        let n = within(60, move || {
            let pool = pool(p);
            let count = AtomicUsize::new(0);
            pool.scope(|s| tree(s, 10, &count));
            // From inside an engine, too.
            let inner = pool.direct().apply(|_| {
                let c = AtomicUsize::new(0);
                pool.scope(|s| tree(s, 6, &c));
                c.into_inner()
            });
            assert!(inner.iter().all(|&c| c == 127), "P={p}: {inner:?}");
            count.into_inner()
        });
        assert_eq!(n, 2047, "P={p}");
    }
}

#[test]
fn scope_tasks_borrow_and_mutate_locals() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            let base = 1000;
            let mut out = vec![0usize; 100];
            let r = pool.scope(|s| {
                for (chunk_no, chunk) in out.chunks_mut(7).enumerate() {
                    s.spawn(move |_| {
                        for (j, x) in chunk.iter_mut().enumerate() {
                            *x = base + chunk_no * 7 + j;
                        }
                    });
                }
                "op's result"
            });
            assert_eq!(r, "op's result");
            assert!(out.iter().enumerate().all(|(i, &x)| x == 1000 + i), "P={p}");
        });
    }
}

#[test]
fn scope_panics_are_raised_after_every_task_finished() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            let ran = AtomicUsize::new(0);
            let slow = |_: &parview::Scope<'_>| {
                std::thread::sleep(Duration::from_millis(2));
                ran.fetch_add(1, Ordering::SeqCst);
            };
            // A task panics: the other tasks (and tasks they spawn) all finish first.
            let m = panic_message_of(|| {
                pool.scope(|s| {
                    s.spawn(|_| panic!("task failed"));
                    for _ in 0..8 {
                        s.spawn(|s| {
                            slow(s);
                            s.spawn(slow);
                        });
                    }
                })
            });
            assert_eq!(m, "task failed", "P={p}");
            assert_eq!(ran.swap(0, Ordering::SeqCst), 16, "P={p}");
            // The op panics after spawning: its tasks still run, the op's payload wins.
            let m = panic_message_of(|| {
                pool.scope(|s| {
                    for _ in 0..4 {
                        s.spawn(slow);
                    }
                    s.spawn(|_| panic!("task"));
                    panic!("op failed");
                })
            });
            assert_eq!(m, "op failed", "P={p}");
            assert_eq!(ran.swap(0, Ordering::SeqCst), 4, "P={p}");
        });
    }
}

#[test]
fn nested_scopes_deeper_than_help_depth_finish_on_one_engine() {
    // Each level waits for a task it spawned: past HELP_DEPTH an engine that waits runs only
    // its mailbox and its own deque — the one-engine pool must still run the tasks.
    fn nest(pool: &Pool, depth: usize, count: &AtomicUsize) {
        if depth == 0 {
            return;
        }
        pool.scope(|s| {
            s.spawn(|_| nest(pool, depth - 1, count));
            s.spawn(|_| {
                count.fetch_add(1, Ordering::SeqCst);
            });
        });
    }
    for p in [1usize, 2, 8] {
        let n = within(60, move || {
            let pool = pool(p);
            let depth = 3 * parview::HELP_DEPTH;
            let got = pool.direct_to(&[0]).unwrap().apply(|_| {
                let count = AtomicUsize::new(0);
                nest(&pool, depth, &count);
                count.into_inner()
            });
            (got[0], depth)
        });
        assert_eq!(n.0, n.1, "P={p}");
    }
}

#[test]
fn scope_and_join_past_help_depth_on_one_engine_run_their_own_work() {
    // A chain of submit().get() puts the engine 2 * HELP_DEPTH waits deep, where waiting
    // serves only the mailbox; the scope's tasks and the join's second half sit on the
    // engine's own deque, which it must still run.
    fn deep(pool: &Arc<Pool>, d: usize) -> usize {
        if d == 0 {
            let count = AtomicUsize::new(0);
            pool.scope(|s| {
                for _ in 0..10 {
                    s.spawn(|_| {
                        count.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
            let (a, b) = pool.join(|| 1, || 2);
            return count.into_inner() + a + b;
        }
        let p = pool.clone();
        pool.load_balanced()
            .submit(move || deep(&p, d - 1))
            .get()
            .unwrap()
    }
    let got = within(60, || {
        let pool = Arc::new(pool(1));
        let p = pool.clone();
        pool.direct()
            .apply(move |_| deep(&p, 2 * parview::HELP_DEPTH))
    });
    assert_eq!(got, vec![13]);
}

#[test]
fn scope_and_join_through_the_free_functions() {
    within(30, || {
        let data: Vec<u64> = (1..=1000).collect();
        let (lo, hi) = data.split_at(500);
        let total = AtomicUsize::new(0);
        parview::scope(|s| {
            s.spawn(|_| {
                let (a, b) = parview::join(|| lo.iter().sum::<u64>(), || hi.iter().sum::<u64>());
                total.fetch_add((a + b) as usize, Ordering::SeqCst);
            });
        });
        assert_eq!(total.into_inner(), 500_500);
    });
}

#[test]
fn the_pool_can_be_shared_through_an_arc_and_joined_from_many_threads() {
    within(60, || {
        let pool = Arc::new(pool(2));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut v = scrambled(50_000 + t);
                    let want = sorted_copy(&v);
                    quicksort(&pool, &mut v, 32);
                    v == want
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap());
        }
    });
}

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_surviving_sides_results_and_moved_values_are_dropped_once() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            let drops = Arc::new(AtomicUsize::new(0));
            // `a` returns a value, `b` panics: the value is dropped, once.
            let (d1, d2) = (drops.clone(), drops.clone());
            let moved = Counted(drops.clone());
            let m = panic_message_of(|| {
                pool.join(
                    move || Counted(d1),
                    move || {
                        let _keep = moved; // dropped while `b` unwinds
                        panic!("b failed")
                    },
                )
            });
            assert_eq!(m, "b failed");
            assert_eq!(drops.swap(0, Ordering::SeqCst), 2, "P={p}");
            // A scope's result is dropped when a task panics; captured values once each.
            let captured = Counted(drops.clone());
            let m = panic_message_of(|| {
                pool.scope(|s| {
                    s.spawn(move |_| {
                        let _c = captured;
                        panic!("task failed");
                    });
                    Counted(d2)
                })
            });
            assert_eq!(m, "task failed");
            assert_eq!(drops.load(Ordering::SeqCst), 2, "P={p}");
        });
    }
}

#[test]
fn scopes_and_joins_nest_in_each_other() {
    for p in WORKERS {
        within(60, move || {
            let pool = pool(p);
            let total = AtomicUsize::new(0);
            pool.scope(|s| {
                for i in 0..8usize {
                    let (pool, total) = (&pool, &total);
                    s.spawn(move |_| {
                        let (a, b) = pool.join(
                            || {
                                let inner = AtomicUsize::new(0);
                                pool.scope(|s| {
                                    for j in 0..4 {
                                        let inner = &inner;
                                        s.spawn(move |_| {
                                            inner.fetch_add(i * j, Ordering::SeqCst);
                                        });
                                    }
                                });
                                inner.into_inner()
                            },
                            || chain(pool, 20),
                        );
                        total.fetch_add(a + b, Ordering::SeqCst);
                    });
                }
            });
            // sum over i of (i * (0 + 1 + 2 + 3) + 20)
            assert_eq!(total.into_inner(), 6 * 28 + 8 * 20, "P={p}");
        });
    }
}
