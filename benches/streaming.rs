//! Streaming a 1M-line input that is never collected: parview's `imap_iter` (ordered) and
//! `for_each_iter`, against the serial loop and rayon's `par_bridge`, all reading the same
//! generated lines on the calling thread and running the same per-line function (words, a sum
//! of the numeric fields, a hash of the rest). `examples/stream_lines.rs` prints the same
//! comparison with peak memory.
//!
//! Two inputs: `String` lines (each allocated by the reading thread and freed by whichever
//! thread runs the function: parview's engines, so the allocator's cross-thread free is part of
//! the cost), and the same lines as fixed-size records (`[u8; 96]` and a length: no heap
//! memory crosses threads), which shows the pipeline's own hand-off cost.
//!
//! Run: `cargo bench --bench streaming`.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use parview_demo::text_line as line;
use rayon::prelude::*;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

const LINES: u64 = 1_000_000;

/// The per-line work ([`parview_demo::line_stats`]) folded to one number.
fn per_line(l: String) -> u64 {
    let (words, sum, hash) = parview_demo::line_stats(l);
    words.wrapping_add(sum) ^ hash
}

/// A line as a fixed-size record: no heap allocation travels with it.
type Record = ([u8; 96], usize);

fn record(i: u64) -> Record {
    let l = line(i);
    let mut a = [0u8; 96];
    a[..l.len()].copy_from_slice(l.as_bytes());
    (a, l.len())
}

fn per_record((a, len): Record) -> u64 {
    per_line(String::from_utf8(a[..len].to_vec()).expect("ASCII"))
}

fn records(c: &mut Criterion) {
    let (pool, rp) = common::pools();
    let lb = pool.load_balanced();
    let mut g = c.benchmark_group("stream_1M_records");
    g.sample_size(10);
    g.bench_function("serial", |b| {
        b.iter(|| {
            (0..black_box(LINES))
                .map(record)
                .map(per_record)
                .fold(0, u64::wrapping_add)
        })
    });
    g.bench_function("parview/imap_iter", |b| {
        b.iter(|| {
            lb.imap_iter((0..black_box(LINES)).map(record), per_record)
                .map(Result::unwrap)
                .fold(0, u64::wrapping_add)
        })
    });
    g.bench_function("rayon/par_bridge", |b| {
        b.iter(|| {
            rp.install(|| {
                (0..black_box(LINES))
                    .map(record)
                    .par_bridge()
                    .map(per_record)
                    .reduce(|| 0, u64::wrapping_add)
            })
        })
    });
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let (pool, rp) = common::pools();
    let lb = pool.load_balanced();
    let mut g = c.benchmark_group("stream_1M_lines");
    g.sample_size(10);
    g.bench_function("serial", |b| {
        b.iter(|| {
            (0..black_box(LINES))
                .map(line)
                .map(per_line)
                .fold(0, u64::wrapping_add)
        })
    });
    g.bench_function("parview/imap_iter", |b| {
        b.iter(|| {
            lb.imap_iter((0..black_box(LINES)).map(line), per_line)
                .map(Result::unwrap)
                .fold(0, u64::wrapping_add)
        })
    });
    g.bench_function("parview/for_each_iter", |b| {
        b.iter(|| {
            let acc = AtomicU64::new(0);
            lb.for_each_iter((0..black_box(LINES)).map(line), |l| {
                acc.fetch_add(per_line(l), Ordering::Relaxed);
            });
            acc.into_inner()
        })
    });
    g.bench_function("rayon/par_bridge", |b| {
        b.iter(|| {
            rp.install(|| {
                (0..black_box(LINES))
                    .map(line)
                    .par_bridge()
                    .map(per_line)
                    .reduce(|| 0, u64::wrapping_add)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, streaming, records);
criterion_main!(benches);
