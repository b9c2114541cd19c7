//! Reproducible reductions: `map_reduce_leaves`, `par_map_reduce` and `par_sum` give bitwise
//! identical results for every pool size and schedule (Monte-Carlo pi, a million `f64` of wildly
//! different magnitudes), and a non-commutative reduction keeps input order.

mod common;

use common::{SCHEDULES, pool, within};
use parview::Schedule;
use parview::reduce::{default_leaf, serial_map_reduce};
use parview_demo::{hash_unif, pi_chunk_hits};

// ---------------------------------------------------------------------------------------------
// Monte-Carlo pi

const PI_SAMPLES: u64 = 10_000_000;

const PI_BLOCK: u64 = 100_000;

const PI_BLOCKS: usize = (PI_SAMPLES / PI_BLOCK) as usize;

/// Block `b`'s estimate of pi/4 as an `f64` fraction: summing these is order-sensitive.
fn block_fraction(b: usize) -> f64 {
    pi_chunk_hits(b as u64, PI_BLOCK) as f64 / PI_BLOCK as f64
}

#[test]
fn monte_carlo_pi_is_bitwise_identical_for_every_pool_size_and_schedule() {
    within(300, || {
        // Reference: the serial evaluation of the same tree (leaf 3 and 7 make a real tree of
        // the 100 block values).
        let fractions: Vec<f64> = (0..PI_BLOCKS).map(block_fraction).collect();
        for leaf in [3usize, 7] {
            let want = serial_map_reduce(leaf, &fractions, |x| *x, |a, b| a + b).unwrap();
            let pi = 4.0 * want / PI_BLOCKS as f64;
            assert!((pi - std::f64::consts::PI).abs() < 0.01, "pi estimate {pi}");
            for p in [1usize, 2, 3, 8] {
                let pool = pool(p);
                for &s in &SCHEDULES {
                    // The reduction of the 1e7-sample blocks' values, for every P and schedule.
                    let got = pool
                        .schedule(s)
                        .map_reduce_leaves(leaf, &fractions, |x| *x, |a, b| a + b)
                        .unwrap();
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "leaf={leaf} P={p} {s:?}: {got:e} vs {want:e}"
                    );
                }
            }
        }
        // The whole pipeline (1e7 samples drawn inside the parallel map) for a few pool sizes
        // and schedules (each run draws all 1e7 samples, so not the full matrix in debug builds).
        let want = serial_map_reduce(3, &fractions, |x| *x, |a, b| a + b).unwrap();
        for (p, s) in [
            (1usize, Schedule::Static),
            (2, Schedule::Guided(1)),
            (3, Schedule::Dynamic(1)),
            (8, Schedule::Adaptive),
        ] {
            let pool = pool(p);
            let got = pool
                .schedule(s)
                .map_reduce_leaves(3, 0..PI_BLOCKS, block_fraction, |a, b| a + b)
                .unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "pipeline P={p} {s:?}");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Deterministic reduction of random f64

/// Random values of wildly different magnitudes, so that the association order matters.
fn value(i: usize) -> f64 {
    let u = hash_unif(i as u64) - 0.5;
    let e = (parview_demo::splitmix64(i as u64 ^ 0xABCD) % 24) as i32 - 12;
    u * 10f64.powi(e)
}

#[test]
fn par_map_reduce_of_a_million_f64_is_bitwise_identical() {
    within(300, || {
        let n = 1_000_000usize;
        let xs: Vec<f64> = (0..n).map(value).collect();
        // Sensitivity check: the order of additions does change the bits for this data, so the
        // equalities below are not vacuous.
        let fwd: f64 = xs.iter().sum();
        let rev: f64 = xs.iter().rev().sum();
        assert_ne!(
            fwd.to_bits(),
            rev.to_bits(),
            "data not order-sensitive; test would be vacuous"
        );

        let default = default_leaf(xs.len());
        for leaf in [default, 777] {
            let want = serial_map_reduce(leaf, &xs, |x| *x, |a, b| a + b).unwrap();
            let sizes: Vec<usize> = if leaf == default {
                (1..=8).collect()
            } else {
                vec![1, 3, 8]
            };
            for p in sizes {
                let pool = pool(p);
                for &s in &SCHEDULES {
                    let got = pool
                        .schedule(s)
                        .map_reduce_leaves(leaf, &xs, |x| *x, |a, b| a + b)
                        .unwrap();
                    assert_eq!(got.to_bits(), want.to_bits(), "leaf={leaf} P={p} {s:?}");
                }
                if leaf == default {
                    let got = pool.par_map_reduce(&xs, |x| *x, |a, b| a + b).unwrap();
                    assert_eq!(got.to_bits(), want.to_bits(), "par_map_reduce P={p}");
                    let sum: f64 = pool.par_sum(&xs);
                    assert_eq!(sum.to_bits(), want.to_bits(), "par_sum P={p}");
                    // A map that is not the identity, over a range input.
                    let sq = pool
                        .par_map_reduce(0..n, |i| value(i) * value(i), |a, b| a + b)
                        .unwrap();
                    let sq_want =
                        serial_map_reduce(default, 0..n, |i| value(i) * value(i), |a, b| a + b)
                            .unwrap();
                    assert_eq!(sq.to_bits(), sq_want.to_bits(), "range map P={p}");
                }
            }
        }
        // Free functions on the global pool agree too.
        let want = serial_map_reduce(default, &xs, |x| *x, |a, b| a + b).unwrap();
        let s: f64 = parview::par_sum(&xs);
        assert_eq!(s.to_bits(), want.to_bits());
        let s = parview::par_map_reduce(&xs, |x| *x, |a, b| a + b).unwrap();
        assert_eq!(s.to_bits(), want.to_bits());
    });
}

#[test]
fn non_commutative_reduction_keeps_input_order() {
    within(60, || {
        let want = serial_map_reduce(
            5,
            0..200usize,
            |i| i.to_string(),
            |a, b| format!("({a},{b})"),
        )
        .unwrap();
        for p in [1usize, 3, 8] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let got = pool
                    .schedule(s)
                    .map_reduce_leaves(
                        5,
                        0..200usize,
                        |i| i.to_string(),
                        |a, b| format!("({a},{b})"),
                    )
                    .unwrap();
                assert_eq!(got, want, "P={p} {s:?}");
            }
            assert_eq!(pool.par_map_reduce(0..0usize, |i| i, |a, b| a + b), None);
            let e: f64 = pool.par_sum(Vec::<f64>::new());
            assert_eq!(e, 0.0);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Small inputs: a leaf per item, every engine used, the same bits for every pool

/// Waits (up to 10 s) until `parties` items are inside at once; true when they met. Items
/// that run one after another never meet.
fn meet(arrived: &std::sync::atomic::AtomicUsize, parties: usize) -> bool {
    use std::sync::atomic::Ordering;
    arrived.fetch_add(1, Ordering::SeqCst);
    let t = std::time::Instant::now();
    while arrived.load(Ordering::SeqCst) < parties {
        if t.elapsed() > std::time::Duration::from_secs(10) {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

#[test]
fn a_reduction_over_two_items_runs_them_on_two_engines_at_once() {
    within(60, || {
        use std::sync::atomic::AtomicUsize;
        for p in [2, 3, 8] {
            let pool = pool(p);
            // The schedules whose chunks can hold a single item (a chunk of 7 or 13 holds both:
            // that is what those schedules ask for).
            for s in [
                Schedule::Static,
                Schedule::StaticChunked(1),
                Schedule::Dynamic(1),
                Schedule::Guided(1),
                Schedule::Adaptive,
            ] {
                let arrived = AtomicUsize::new(0);
                let met =
                    pool.schedule(s)
                        .map_reduce(0..2u32, |_| meet(&arrived, 2), |a, b| a && b);
                // Static with 2 items on a bigger pool still gives each item its own block.
                assert_eq!(
                    met,
                    Some(true),
                    "P={p} {s:?}: the two leaves ran one after the other"
                );
            }
            // The free functions' path: every engine of the pool takes one of P items.
            let arrived = AtomicUsize::new(0);
            let all = pool.par_map_reduce(0..p, |_| u32::from(meet(&arrived, p)), |a, b| a + b);
            assert_eq!(all, Some(p as u32), "P={p}: par_map_reduce over P items");
        }
    });
}

#[test]
fn leaves_depend_on_the_length_only() {
    within(120, || {
        for n in [1usize, 2, 3, 64, 100, 2047, 2048, 5000, 70_001] {
            let xs: Vec<f64> = (0..n).map(value).collect();
            let leaf = default_leaf(n);
            assert_eq!(leaf, (n / 1024).clamp(1, 4096), "n={n}");
            let want = serial_map_reduce(leaf, &xs, |x| *x, |a, b| a + b).unwrap();
            for p in [1, 2, 3, 5, 8] {
                let pool = pool(p);
                for &s in &SCHEDULES {
                    let got = pool
                        .schedule(s)
                        .map_reduce(&xs, |x| *x, |a, b| a + b)
                        .unwrap();
                    assert_eq!(got.to_bits(), want.to_bits(), "n={n} P={p} {s:?}");
                }
                let sum: f64 = pool.par_sum(&xs);
                assert_eq!(sum.to_bits(), want.to_bits(), "par_sum n={n} P={p}");
            }
        }
        // Up to 2047 items the tree is the one over single items.
        let xs: Vec<f64> = (0..2047).map(value).collect();
        let by_item = serial_map_reduce(1, &xs, |x| *x, |a, b| a + b).unwrap();
        assert_eq!(parview::par_sum::<_, f64>(&xs).to_bits(), by_item.to_bits());
    });
}
