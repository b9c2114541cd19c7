//! Ports of everyday rayon code, measured in one run beside rayon and the serial loop, on 2
//! workers each (issue 15): a quicksort of 5M i64 with `join`, a word count over 300k lines
//! with a per-worker fold, and a 2,000 x 2,000 matrix filled by rows in place.
//!
//! Targets: quicksort speed-up >= rayon's; word count >= rayon's `fold().reduce()`; the
//! matrix fill level with rayon's `par_chunks_mut`. The workloads are in
//! `benches/common/ports.rs` (shared with `examples/rayon_ports.rs`).
//! Run: `cargo bench --bench rayon_ports`.

#[path = "common/ports.rs"]
mod ports;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn rayon_ports(c: &mut Criterion) {
    let pool = parview::Pool::builder().workers(2).build().unwrap();
    let rp = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();

    // Quicksort of 5M i64: a fresh unsorted copy per iteration (the copy is not timed).
    let data = ports::random_i64(5_000_000, 1);
    let mut g = c.benchmark_group("quicksort_5M_i64");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    g.bench_function("serial", |b| {
        b.iter_batched_ref(
            || data.clone(),
            |v| ports::quicksort_serial(v),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("rayon/join", |b| {
        b.iter_batched_ref(
            || data.clone(),
            |v| rp.install(|| ports::quicksort_rayon(v)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("parview/join", |b| {
        b.iter_batched_ref(
            || data.clone(),
            |v| ports::quicksort_parview(&pool, v),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // Word count over 300k lines.
    let lines = ports::text_lines(300_000);
    let mut g = c.benchmark_group("wordcount_300k_lines");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.bench_function("serial", |b| {
        b.iter(|| ports::count_serial(black_box(&lines)).len())
    });
    g.bench_function("rayon/fold_reduce", |b| {
        b.iter(|| rp.install(|| ports::count_rayon(black_box(&lines)).len()))
    });
    g.bench_function("parview/par_fold", |b| {
        b.iter(|| ports::count_parview(&pool, black_box(&lines)).len())
    });
    g.finish();

    // A 2,000 x 2,000 f64 matrix filled by rows in place.
    let (rows, cols) = (2_000, 2_000);
    let mut m = vec![0.0f64; rows * cols];
    let mut g = c.benchmark_group("fill_rows_2000x2000");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("serial", |b| {
        b.iter(|| ports::fill_serial(black_box(&mut m), cols))
    });
    g.bench_function("rayon/par_chunks_mut", |b| {
        b.iter(|| rp.install(|| ports::fill_rayon(black_box(&mut m), cols)))
    });
    g.bench_function("parview/par_chunks_mut", |b| {
        b.iter(|| ports::fill_parview(&pool, black_box(&mut m), cols))
    });
    g.finish();
}

criterion_group!(benches, rayon_ports);
criterion_main!(benches);
