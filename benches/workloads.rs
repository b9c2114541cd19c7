//! Criterion benchmarks of the demo workloads (`parview_demo`): one group per workload with
//! the serial driver, parview's schedules / views, rayon and OpenMP (`parview_demo::omp`, C with
//! `-O3 -march=native -fopenmp`, in the same process) on the same inputs.
//!
//! ```text
//! cargo bench --bench workloads            # all groups (~2.5 min; primes alone ~1 min)
//! cargo bench --bench workloads -- gauss   # one group
//! ```
//!
//! | group | input | entries |
//! | --- | --- | --- |
//! | `pi_1e7` | Monte-Carlo pi, 1e7 samples in chunks of `demo::PI_CHUNK` | serial, parview/lb_adaptive, lb_dynamic1, direct, rayon, omp_static, omp_dynamic1 |
//! | `reduce_small` | `par_map_reduce` over 100 pi chunks (1e8 samples) and over the 64 primes | serial, parview, omp (a `reduction(+:x)` loop) |
//! | `gauss_10M` | `exp(-(x-y)^2)` over 10M f64 | serial, parview/into_static, into_adaptive, collect_adaptive, rayon/into, rayon/collect, omp_static/into |
//! | `inv_100k` | 100k 5x5 Gauss-Jordan inversions (collected) | serial, parview/adaptive, static, dynamic1024, rayon, omp_static/into |
//! | `primes_64` | 64 uneven trial divisions (all work in the first half) | serial, parview/direct, lb_dynamic1, lb_adaptive, rayon, omp_static, omp_dynamic1 |
//! | `avg_matrices` | 64 tasks x 4,000 random 10x10 `A^T A` | serial, parview/lb_adaptive, direct, rayon |
//! | `correlation_1200` | 1200x1200 Pearson matrix, rows into a buffer | serial, parview/rows_adaptive, rows_static, rayon |
//!
//! The pools have `parview::default_workers()` engines (2 on the project machine); calls are
//! made from outside the pools. Sample counts and times are small (10 samples, 2-3 s) to keep
//! the whole run moderate; `tour` (`cargo run --release --example tour`) is the place for the
//! interleaved, checked comparison.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use parview::Schedule;
use parview_demo::{self as demo, Mat5, Mat10};
use rayon::prelude::*;
use std::time::Duration;

mod common;
use common::{omp, pools};
use parview_demo::omp::{self as c_omp, OmpSchedule};

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn pi(c: &mut Criterion) {
    let (pool, rp) = pools();
    let n = 10_000_000u64;
    let nch = demo::pi_chunks(n);
    let chunk = |c: u64| demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c));
    let want = demo::pi_serial(n).0;
    let mut g = c.benchmark_group("pi_1e7");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("serial", |b| b.iter(|| demo::pi_serial(n).0));
    for (name, s) in [
        ("parview/lb_adaptive", Schedule::Adaptive),
        ("parview/lb_dynamic1", Schedule::Dynamic(1)),
    ] {
        let lb = pool.load_balanced().schedule(s);
        assert_eq!(lb.map(0..nch, chunk).iter().sum::<u64>(), want);
        g.bench_function(name, |b| {
            b.iter(|| lb.map(0..nch, chunk).iter().sum::<u64>())
        });
    }
    g.bench_function("parview/direct", |b| {
        b.iter(|| pool.direct().map(0..nch, chunk).iter().sum::<u64>())
    });
    g.bench_function("rayon", |b| {
        b.iter(|| rp.install(|| (0..nch).into_par_iter().map(chunk).sum::<u64>()))
    });
    if omp() {
        for (name, s) in [
            ("omp_static", OmpSchedule::Static),
            ("omp_dynamic1", OmpSchedule::Dynamic(1)),
        ] {
            assert_eq!(c_omp::pi_hits(n, s), want);
            g.bench_function(name, |b| b.iter(|| c_omp::pi_hits(n, s)));
        }
    }
    g.finish();
}

/// Reductions over few, costly items: the leaves must reach every engine.
fn reduce_small(c: &mut Criterion) {
    let (pool, _rp) = pools();
    let n = 100 * demo::PI_CHUNK;
    let nch = demo::pi_chunks(n);
    let chunk = |c: u64| demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c));
    let want = demo::pi_serial(n).0;
    let mut g = c.benchmark_group("reduce_small");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("pi100/serial", |b| b.iter(|| demo::pi_serial(n).0));
    assert_eq!(pool.par_map_reduce(0..nch, chunk, |a, b| a + b), Some(want));
    g.bench_function("pi100/parview", |b| {
        b.iter(|| pool.par_map_reduce(0..nch, chunk, |a, b| a + b))
    });
    if omp() {
        g.bench_function("pi100/omp_static", |b| {
            b.iter(|| c_omp::pi_hits(n, OmpSchedule::Static))
        });
    }
    let nums = demo::primes_inputs();
    let nums = &nums;
    let prime = |&v: &u64| usize::from(demo::is_prime(v));
    g.bench_function("primes64/serial", |b| b.iter(|| demo::primes_serial(nums)));
    assert_eq!(pool.par_map_reduce(nums, prime, |a, b| a + b), Some(32));
    g.bench_function("primes64/parview", |b| {
        b.iter(|| pool.par_map_reduce(nums, prime, |a, b| a + b))
    });
    if omp() {
        g.bench_function("primes64/omp_dynamic1", |b| {
            b.iter(|| c_omp::primes(nums, OmpSchedule::Dynamic(1)))
        });
    }
    g.finish();
}

fn gauss(c: &mut Criterion) {
    let (pool, rp) = pools();
    let n = demo::GAUSS_N;
    let gm = demo::GAUSS_GAMMA;
    let (x, y) = demo::gauss_inputs(n);
    let (x, y) = (&x, &y);
    let mut z = vec![0.0f64; n];
    let mut g = c.benchmark_group("gauss_10M");
    g.bench_function("serial", |b| {
        b.iter(|| demo::gauss_serial_into(x, y, gm, &mut z))
    });
    let want = demo::checksum(&z);
    g.bench_function("parview/into_static", |b| {
        b.iter(|| {
            pool.schedule(Schedule::Static)
                .map_into((x, y), &mut z, |(a, b)| demo::gauss(*a, *b, gm))
        })
    });
    g.bench_function("parview/into_adaptive", |b| {
        b.iter(|| pool.par_map_into((x, y), &mut z, |(a, b)| demo::gauss(*a, *b, gm)))
    });
    assert_eq!(demo::checksum(&z).to_bits(), want.to_bits());
    g.bench_function("rayon/into", |b| {
        b.iter(|| {
            rp.install(|| {
                z.par_iter_mut()
                    .zip(x.par_iter())
                    .zip(y.par_iter())
                    .for_each(|((z, &a), &b)| *z = demo::gauss(a, b, gm))
            })
        })
    });
    if omp() {
        g.bench_function("omp_static/into", |b| {
            b.iter(|| c_omp::gauss_into(x, y, gm, &mut z, OmpSchedule::Static))
        });
        assert_eq!(demo::checksum(&z).to_bits(), want.to_bits());
    }
    g.bench_function("serial/collect", |b| {
        b.iter(|| {
            x.iter()
                .zip(y)
                .map(|(&a, &b)| demo::gauss(a, b, gm))
                .collect::<Vec<f64>>()
        })
    });
    g.bench_function("parview/collect_adaptive", |b| {
        b.iter(|| pool.par_map((x, y), |(a, b)| demo::gauss(*a, *b, gm)))
    });
    g.bench_function("rayon/collect", |b| {
        b.iter(|| {
            rp.install(|| {
                x.par_iter()
                    .zip(y.par_iter())
                    .map(|(&a, &b)| demo::gauss(a, b, gm))
                    .collect::<Vec<f64>>()
            })
        })
    });
    g.finish();
}

fn inv_one(a: &Mat5) -> Mat5 {
    let mut o = [[0.0; 5]; 5];
    demo::invert5_into(a, &mut o);
    o
}

fn inv(c: &mut Criterion) {
    let (pool, rp) = pools();
    let mats = demo::inv_inputs(demo::INV_N);
    let mats = &mats;
    let mut g = c.benchmark_group("inv_100k");
    g.bench_function("serial", |b| b.iter(|| demo::inv_serial(mats)));
    for (name, s) in [
        ("parview/adaptive", Schedule::Adaptive),
        ("parview/static", Schedule::Static),
        ("parview/dynamic1024", Schedule::Dynamic(1024)),
    ] {
        g.bench_function(name, |b| b.iter(|| pool.schedule(s).map(mats, inv_one)));
    }
    g.bench_function("rayon", |b| {
        b.iter(|| rp.install(|| mats.par_iter().map(inv_one).collect::<Vec<Mat5>>()))
    });
    if omp() {
        let mut out = vec![[[0.0; 5]; 5]; mats.len()];
        g.bench_function("omp_static/into", |b| {
            b.iter(|| c_omp::inv_into(mats, &mut out, OmpSchedule::Static))
        });
    }
    g.finish();
}

fn primes(c: &mut Criterion) {
    let (pool, rp) = pools();
    let nums = demo::primes_inputs();
    let nums = &nums;
    let mut g = c.benchmark_group("primes_64");
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(100));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("serial", |b| b.iter(|| demo::primes_serial(nums)));
    g.bench_function("parview/direct", |b| {
        b.iter(|| pool.direct().map(nums, |&v| demo::is_prime(v)))
    });
    g.bench_function("parview/lb_dynamic1", |b| {
        let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
        b.iter(|| lb.map(nums, |&v| demo::is_prime(v)))
    });
    g.bench_function("parview/lb_adaptive", |b| {
        b.iter(|| pool.load_balanced().map(nums, |&v| demo::is_prime(v)))
    });
    g.bench_function("rayon", |b| {
        b.iter(|| {
            rp.install(|| {
                nums.par_iter()
                    .map(|&v| demo::is_prime(v))
                    .collect::<Vec<bool>>()
            })
        })
    });
    if omp() {
        for (name, s) in [
            ("omp_static", OmpSchedule::Static),
            ("omp_dynamic1", OmpSchedule::Dynamic(1)),
        ] {
            g.bench_function(name, |b| b.iter(|| c_omp::primes(nums, s)));
        }
    }
    g.finish();
}

fn mean(ms: &[Mat10]) -> Mat10 {
    let mut acc = [[0.0f64; demo::D10]; demo::D10];
    for m in ms {
        for (a, v) in acc.iter_mut().flatten().zip(m.iter().flatten()) {
            *a += v;
        }
    }
    let inv = 1.0 / ms.len() as f64;
    acc.iter_mut().flatten().for_each(|v| *v *= inv);
    acc
}

fn avg_matrices(c: &mut Criterion) {
    let (pool, rp) = pools();
    let (tasks, count) = (64u64, 4_000usize);
    let task = move |t: u64| demo::avg_random_matrices(t, count);
    let mut g = c.benchmark_group("avg_matrices");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("serial", |b| {
        b.iter(|| demo::avg_random_matrices_serial(tasks, count))
    });
    g.bench_function("parview/lb_adaptive", |b| {
        b.iter(|| mean(&pool.load_balanced().map(0..tasks, task)))
    });
    g.bench_function("parview/direct", |b| {
        b.iter(|| mean(&pool.direct().map(0..tasks, task)))
    });
    g.bench_function("rayon", |b| {
        b.iter(|| mean(&rp.install(|| (0..tasks).into_par_iter().map(task).collect::<Vec<_>>())))
    });
    g.finish();
}

fn correlation(c: &mut Criterion) {
    let (pool, rp) = pools();
    let n = demo::STATIONS_N;
    let data = demo::stations(n, 7);
    let data = &data;
    let mut m = vec![0.0f64; n * n];
    let mut g = c.benchmark_group("correlation_1200");
    g.bench_function("serial", |b| b.iter(|| demo::correlation_serial(data)));
    for (name, s) in [
        ("parview/rows_adaptive", Schedule::Adaptive),
        ("parview/rows_static", Schedule::Static),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let st = demo::Standardized::new(data);
                let rows: Vec<(usize, &mut [f64])> = m.chunks_exact_mut(n).enumerate().collect();
                pool.schedule(s).map(rows, |(i, row)| st.row_into(i, row));
            })
        });
    }
    g.bench_function("rayon", |b| {
        b.iter(|| {
            let st = demo::Standardized::new(data);
            rp.install(|| {
                m.par_chunks_mut(n)
                    .enumerate()
                    .for_each(|(i, row)| st.row_into(i, row))
            })
        })
    });
    g.finish();
    assert_eq!(m, demo::correlation_serial(data));
}

criterion_group! {
    name = benches;
    config = config();
    targets = pi, reduce_small, gauss, inv, primes, avg_matrices, correlation
}
criterion_main!(benches);
