//! DirectView (ipyparallel's `rc[:]`): `apply` runs once on each targeted engine and `map` runs
//! block k on engine k; per-engine state (`init`, `apply_with_state`, `map_with_state`, `pull`);
//! `scatter`/`gather` and `scatter_gather`; `direct_to` rejects bad targets.

mod common;

use common::{panic_message_of, pool, within};
use parview::{Pool, Schedule, ViewError};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------------------------
// Placement

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

// ---------------------------------------------------------------------------------------------
// Scatter and gather

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
