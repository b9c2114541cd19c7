//! The price of reproducibility: parview's deterministic sum (fixed tree over `default_leaf(n)`-item leaves,
//! bitwise identical for any worker count and schedule) against plain parallel sums whose
//! rounding depends on how the work was split, on 10M f64 with 2 workers.
//!
//! Target (reproducibility issue): deterministic within 10% of a plain parallel sum.
//! Run: `cargo bench --bench reduce`.

use criterion::{Criterion, criterion_group, criterion_main};
use rayon::prelude::*;
use std::hint::black_box;

fn sums(c: &mut Criterion) {
    let n = 10_000_000;
    let xs: Vec<f64> = (0..n as u64).map(parview_demo::hash_unif).collect();
    let pool = parview::Pool::builder().workers(2).build().unwrap();
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();

    let mut g = c.benchmark_group("sum_10M_f64");
    g.sample_size(20);
    g.bench_function("serial", |b| b.iter(|| black_box(&xs).iter().sum::<f64>()));
    g.bench_function("parview/deterministic_par_sum", |b| {
        b.iter(|| pool.par_sum::<_, f64>(black_box(&xs)))
    });
    g.bench_function("parview/plain_scatter_gather", |b| {
        b.iter(|| {
            pool.scatter_gather(black_box(&xs), |_, piece| piece.iter().sum::<f64>())
                .into_iter()
                .sum::<f64>()
        })
    });
    g.bench_function("rayon/plain_par_iter_sum", |b| {
        b.iter(|| rayon.install(|| black_box(&xs).par_iter().sum::<f64>()))
    });
    g.finish();
}

criterion_group!(benches, sums);
criterion_main!(benches);
