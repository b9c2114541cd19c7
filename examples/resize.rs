//! `Pool::resize` while work runs: how long a grow and a shrink take, and whether a pool that
//! was resized runs maps as fast as a fresh one of the same size (ratios from this one run).
//!
//! Run: `cargo run --release --example resize`

use parview::Pool;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of a map of `n` cheap items on `pool` (after a warm-up).
fn map_time(pool: &Pool, n: u64) -> Duration {
    let f = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7);
    for _ in 0..20 {
        std::hint::black_box(pool.par_map(0..n, f));
    }
    median(
        (0..51)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(pool.par_map(0..n, f));
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{cores} cores");

    // Latency of resizing an idle pool (threads reused after the first grow).
    let pool = Pool::builder().workers(2).build().unwrap();
    pool.resize(8).unwrap();
    pool.resize(2).unwrap();
    let (mut grow, mut shrink) = (Vec::new(), Vec::new());
    for _ in 0..51 {
        let t = Instant::now();
        pool.resize(8).unwrap();
        grow.push(t.elapsed());
        let t = Instant::now();
        pool.resize(2).unwrap();
        shrink.push(t.elapsed());
    }
    println!(
        "resize 2 -> 8 (parked threads reused): median {:?}; 8 -> 2 (waits until the 6 left): median {:?}",
        median(grow),
        median(shrink)
    );

    // A map while the pool is resized under it: every item once, same result as serial.
    let pool = Arc::new(Pool::builder().workers(2).build().unwrap());
    let p = pool.clone();
    let t = Instant::now();
    let h = std::thread::spawn(move || {
        p.par_map(0..2_000_000u64, |i| {
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 3
        })
    });
    for n in [4, 1, 8, 2, 6, 2] {
        pool.resize(n).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let v = h.join().unwrap();
    assert!(
        v.iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 3)
    );
    println!(
        "2M-item map with 6 resizes under it: {:?}, results equal serial",
        t.elapsed()
    );

    // Same size, fresh vs after 100 resizes: the engine loop pays nothing for having been
    // resized (ratio of medians, same run).
    let fresh = Pool::builder().workers(cores).build().unwrap();
    let resized = Pool::builder().workers(1).build().unwrap();
    for k in 0..100 {
        resized.resize(1 + k % (2 * cores + 2)).unwrap();
    }
    resized.resize(cores).unwrap();
    for n in [1_000u64, 100_000] {
        let a = map_time(&fresh, n);
        let b = map_time(&resized, n);
        println!(
            "par_map of {n} cheap items on {cores} engines: fresh {a:?}, after 100 resizes {b:?} (ratio {:.2})",
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}
