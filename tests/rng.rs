//! Random streams: `rng::Streams` are reproducible and distinct per block, item and seed, and
//! `map_rng`/`blocks_rng` give the same numbers on every pool size and schedule.

mod common;

use common::{SCHEDULES, pool, within};
use parview::rng::{BLOCK, Streams, block_range, stream};
use parview::{Pool, Schedule};
use rand::{Rng, RngExt};

fn draw(mut r: impl Rng, k: usize) -> Vec<u64> {
    (0..k).map(|_| r.next_u64()).collect()
}

#[test]
fn rng_streams_are_reproducible_and_distinct() {
    let s = Streams::new(42);
    // Same (seed, block): same sequence.
    for b in [0usize, 1, 7, 1000] {
        assert_eq!(
            draw(s.for_block(b), 64),
            draw(Streams::new(42).for_block(b), 64)
        );
        assert_eq!(draw(s.for_item(b), 64), draw(stream(42, b as u64), 64));
    }
    // Different blocks / items / seeds: different sequences (and no shared prefix).
    let blocks: Vec<Vec<u64>> = (0..64).map(|b| draw(s.for_block(b), 16)).collect();
    for i in 0..blocks.len() {
        for j in i + 1..blocks.len() {
            assert_ne!(blocks[i], blocks[j], "blocks {i} and {j} share a sequence");
            assert_ne!(blocks[i][0], blocks[j][0], "blocks {i} and {j} start alike");
        }
    }
    let items: Vec<Vec<u64>> = (0..64).map(|i| draw(s.for_item(i), 16)).collect();
    for i in 0..64 {
        assert_ne!(items[i], blocks[i], "item and block streams collide at {i}");
        for j in i + 1..64 {
            assert_ne!(items[i], items[j]);
        }
    }
    assert_ne!(
        draw(Streams::new(43).for_block(0), 16),
        blocks[0],
        "seed must matter"
    );
    // A stream is not a shifted copy of its neighbour.
    let long0 = draw(s.for_block(0), 256);
    let long1 = draw(s.for_block(1), 256);
    assert!(long1.iter().all(|x| !long0[..8].contains(x)));
}

#[test]
fn par_map_rng_and_par_blocks_rng_identical_across_pools_and_schedules() {
    within(120, || {
        let n = 3000usize;
        let want: Vec<(u64, f64)> = (0..n)
            .map(|i| {
                let mut r = Streams::new(7).for_item(i);
                (r.next_u64(), r.random::<f64>())
            })
            .collect();
        let nb = (3 * BLOCK + 17).div_ceil(BLOCK);
        let total = 3 * BLOCK + 17;
        let want_blocks: Vec<f64> = (0..nb)
            .map(|b| {
                let mut r = Streams::new(9).for_block(b);
                block_range(b, total).map(|_| r.random::<f64>()).sum()
            })
            .collect();
        for p in [1usize, 2, 3, 8] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let got = pool
                    .schedule(s)
                    .map_rng(7, n, |r, _| (r.next_u64(), r.random::<f64>()));
                assert_eq!(got.len(), n);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        a.0 == b.0 && a.1.to_bits() == b.1.to_bits(),
                        "P={p} {s:?} item {i}"
                    );
                }
                let blocks = pool.schedule(s).blocks_rng(9, nb, |r, b| {
                    block_range(b, total)
                        .map(|_| r.random::<f64>())
                        .sum::<f64>()
                });
                let bits: Vec<u64> = blocks.iter().map(|x| x.to_bits()).collect();
                let want_bits: Vec<u64> = want_blocks.iter().map(|x| x.to_bits()).collect();
                assert_eq!(bits, want_bits, "P={p} {s:?}");
            }
        }
        // The global pool gives the same as well.
        let g = Pool::global()
            .schedule(Schedule::Adaptive)
            .map_rng(7, n, |r, _| r.next_u64());
        assert_eq!(g, want.iter().map(|w| w.0).collect::<Vec<_>>());
    });
}
