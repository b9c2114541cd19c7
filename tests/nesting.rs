//! Nested calls: maps inside maps three deep on one pool, through an `Arc<Pool>`, through the
//! free functions and across pools, and DirectView calls inside engines — all complete.

mod common;

use common::{SCHEDULES, pool, within};
use parview::Pool;
use std::sync::Arc;

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
