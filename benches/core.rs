//! Criterion benchmarks of parview's fixed costs: what one parallel call costs on tiny and
//! large trivial inputs, next to a serial loop, rayon and OpenMP (`parview_demo::omp`, C
//! compiled with `-O3 -march=native -fopenmp`, called in the same process) on the same input.
//!
//! ```text
//! cargo bench --bench core                 # all groups (~1.5 min)
//! cargo bench --bench core -- map2         # one group
//! PARVIEW_WORKERS=4 cargo bench --bench core
//! ```
//!
//! Both pools have `parview::default_workers()` engines (2 on the project machine); every
//! call is made back to back from the benchmark thread, i.e. from *outside* the pool (rayon
//! through `ThreadPool::install`, which is how a program that does not live inside rayon
//! calls it). Groups and their targets (2 workers):
//!
//! | group | input | target |
//! | --- | --- | --- |
//! | `map2_trivial` | 2 items `2x + 1` | default schedule <= 1.1x the best parview schedule, <= OpenMP's best |
//! | `map16_trivial` | 16 items `2x + 1` | as above |
//! | `map1000_trivial` | 1,000 items `2x + 1` | as above |
//! | `map2_busy5us` | 2 items of ~5 µs busy-wait | as above (serial 10 µs) |
//! | `dynamic1_2M` | `Dynamic(1)` over 2M items `2x + 1` into a buffer | parview <= OpenMP `dynamic,1` |
//! | `overhead_into` / `overhead_collect` | `2x + 1` over 10M `u64`, into a buffer / collected | parview <= rayon, OpenMP static |
//! | `scatter_gather` | sum of 4,096 `u64` split one piece per engine | (call cost) |
//! | `direct_apply` | `DirectView::apply(|e| e)` vs rayon `broadcast` | (call cost) |
//!
//! rayon's tiny-map entries use `with_max_len(1)` so that the 2 (16) items really are split
//! into parallel tasks, as parview's maps do; otherwise rayon may run them inline. Entries end
//! in `collect` (a fresh `Vec` per call; OpenMP: a fresh buffer first touched in the loop) or
//! `into` (a buffer reused across calls).

use criterion::{Criterion, criterion_group, criterion_main};
use parview::Schedule;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;
use common::{omp, pools};
use parview_demo::omp::{self as c_omp, OmpSchedule};

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

#[inline]
fn trivial(x: u64) -> u64 {
    black_box(x) * 2 + 1
}

fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Tiny maps: the cost of dispatching to the pool and joining.
fn tiny_maps(c: &mut Criterion) {
    let (pool, rp) = pools();
    for (name, n) in [
        ("map2_trivial", 2u64),
        ("map16_trivial", 16),
        ("map1000_trivial", 1000),
    ] {
        let input: Vec<u64> = (0..n).collect();
        let mut g = c.benchmark_group(name);
        g.bench_function("serial", |b| {
            b.iter(|| {
                black_box(&input)
                    .iter()
                    .map(|&x| trivial(x))
                    .collect::<Vec<u64>>()
            })
        });
        let mut out = vec![0u64; input.len()];
        for (label, s) in [
            ("parview", Schedule::default()),
            ("parview_static", Schedule::Static),
            ("parview_dynamic1", Schedule::Dynamic(1)),
        ] {
            let lb = pool.schedule(s);
            g.bench_function(format!("{label}/collect"), |b| {
                b.iter(|| lb.map(black_box(&input), |&x| trivial(x)))
            });
            g.bench_function(format!("{label}/into"), |b| {
                b.iter(|| lb.map_into(black_box(&input), &mut out, |&x| trivial(x)))
            });
        }
        if omp() {
            for (label, s) in [
                ("omp_static", OmpSchedule::Static),
                ("omp_dynamic1", OmpSchedule::Dynamic(1)),
            ] {
                g.bench_function(format!("{label}/collect"), |b| {
                    b.iter(|| c_omp::affine_collect(black_box(&input), s))
                });
                g.bench_function(format!("{label}/into"), |b| {
                    b.iter(|| c_omp::affine_into(black_box(&input), &mut out, s))
                });
            }
        }
        g.bench_function("rayon/collect", |b| {
            b.iter(|| {
                rp.install(|| {
                    let it = black_box(&input).par_iter();
                    // split tiny inputs into per-item tasks (rayon would run 2 items inline)
                    if n <= 16 {
                        it.with_max_len(1)
                            .map(|&x| trivial(x))
                            .collect::<Vec<u64>>()
                    } else {
                        it.map(|&x| trivial(x)).collect::<Vec<u64>>()
                    }
                })
            })
        });
        g.finish();
    }

    let five = Duration::from_micros(5);
    let input = [1u64, 2];
    let mut g = c.benchmark_group("map2_busy5us");
    g.bench_function("serial", |b| {
        b.iter(|| {
            black_box(&input)
                .iter()
                .map(|&x| {
                    busy(five);
                    x
                })
                .collect::<Vec<u64>>()
        })
    });
    for (label, s) in [
        ("parview", Schedule::default()),
        ("parview_static", Schedule::Static),
        ("parview_dynamic1", Schedule::Dynamic(1)),
    ] {
        let lb = pool.schedule(s);
        g.bench_function(format!("{label}/collect"), |b| {
            b.iter(|| {
                lb.map(black_box(&input), |&x| {
                    busy(five);
                    x
                })
            })
        });
        let mut out = [0u64; 2];
        g.bench_function(format!("{label}/into"), |b| {
            b.iter(|| {
                lb.map_into(black_box(&input), &mut out, |&x| {
                    busy(five);
                    x
                });
                black_box(&out);
            })
        });
    }
    if omp() {
        // The same work: each item busy-waits, then writes its value (a fresh buffer, or one
        // reused across calls).
        for (label, s) in [
            ("omp_static", OmpSchedule::Static),
            ("omp_dynamic1", OmpSchedule::Dynamic(1)),
        ] {
            g.bench_function(format!("{label}/collect"), |b| {
                b.iter(|| c_omp::busy_collect(black_box(&input), five, s))
            });
            let mut out = [0u64; 2];
            g.bench_function(format!("{label}/into"), |b| {
                b.iter(|| {
                    c_omp::busy_into(black_box(&input), &mut out, five, s);
                    black_box(&out);
                })
            });
        }
    }
    g.bench_function("rayon", |b| {
        b.iter(|| {
            rp.install(|| {
                black_box(&input)
                    .par_iter()
                    .with_max_len(1)
                    .map(|&x| {
                        busy(five);
                        x
                    })
                    .collect::<Vec<u64>>()
            })
        })
    });
    g.finish();

    // One item per chunk: the per-chunk cost of dynamic dispensing.
    let input: Vec<u64> = (0..2_000_000).collect();
    let mut out = vec![0u64; input.len()];
    let mut g = c.benchmark_group("dynamic1_2M");
    g.bench_function("parview_dynamic1/into", |b| {
        b.iter(|| {
            pool.schedule(Schedule::Dynamic(1))
                .map_into(&input, &mut out, |&x| trivial(x))
        })
    });
    if omp() {
        g.bench_function("omp_dynamic1/into", |b| {
            b.iter(|| c_omp::affine_into(&input, &mut out, OmpSchedule::Dynamic(1)))
        });
    }
    g.finish();
}

/// `x -> 2x + 1` over 10M u64: per-item overhead and memory bandwidth.
fn overhead(c: &mut Criterion) {
    let (pool, rp) = pools();
    let n = 10_000_000usize;
    let x: Vec<u64> = (0..n as u64).collect();
    let mut z = vec![0u64; n];

    let mut g = c.benchmark_group("overhead_into");
    g.bench_function("serial", |b| {
        b.iter(|| {
            for (z, &v) in z.iter_mut().zip(&x) {
                *z = v * 2 + 1;
            }
        })
    });
    g.bench_function("parview", |b| {
        b.iter(|| pool.par_map_into(&x, &mut z, |&v| v * 2 + 1))
    });
    g.bench_function("parview_static", |b| {
        b.iter(|| {
            pool.schedule(Schedule::Static)
                .map_into(&x, &mut z, |&v| v * 2 + 1)
        })
    });
    g.bench_function("rayon", |b| {
        b.iter(|| {
            rp.install(|| {
                z.par_iter_mut()
                    .zip(x.par_iter())
                    .for_each(|(z, &v)| *z = v * 2 + 1)
            })
        })
    });
    if omp() {
        g.bench_function("omp_static", |b| {
            b.iter(|| c_omp::affine_into(&x, &mut z, OmpSchedule::Static))
        });
    }
    g.finish();
    // Untouched when a filter (`cargo bench --bench core -- direct_apply`) skipped this group.
    assert!(z.iter().all(|&v| v == 0) || z.iter().enumerate().all(|(i, &v)| v == 2 * i as u64 + 1));

    let mut g = c.benchmark_group("overhead_collect");
    g.bench_function("serial", |b| {
        b.iter(|| x.iter().map(|&v| v * 2 + 1).collect::<Vec<u64>>())
    });
    g.bench_function("parview", |b| b.iter(|| pool.par_map(&x, |&v| v * 2 + 1)));
    g.bench_function("parview_static", |b| {
        b.iter(|| pool.schedule(Schedule::Static).map(&x, |&v| v * 2 + 1))
    });
    g.bench_function("rayon", |b| {
        b.iter(|| rp.install(|| x.par_iter().map(|&v| v * 2 + 1).collect::<Vec<u64>>()))
    });
    if omp() {
        g.bench_function("omp_static", |b| {
            b.iter(|| c_omp::affine_collect(&x, OmpSchedule::Static))
        });
    }
    g.finish();
}

/// Call cost of scatter_gather and DirectView::apply.
fn views(c: &mut Criterion) {
    let (pool, rp) = pools();
    let p = pool.workers();
    let data: Vec<u64> = (0..4096).collect();

    let mut g = c.benchmark_group("scatter_gather");
    g.bench_function("serial", |b| {
        b.iter(|| {
            black_box(&data)
                .chunks(data.len().div_ceil(p))
                .map(|piece| piece.iter().sum::<u64>())
                .collect::<Vec<u64>>()
        })
    });
    g.bench_function("parview", |b| {
        b.iter(|| pool.scatter_gather(black_box(&data), |_, piece| piece.iter().sum::<u64>()))
    });
    g.bench_function("parview_direct", |b| {
        b.iter(|| {
            pool.direct()
                .scatter_gather(black_box(&data), |_, piece| piece.iter().sum::<u64>())
        })
    });
    g.bench_function("rayon", |b| {
        b.iter(|| {
            rp.install(|| {
                black_box(&data)
                    .par_chunks(data.len().div_ceil(p))
                    .map(|piece| piece.iter().sum::<u64>())
                    .collect::<Vec<u64>>()
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("direct_apply");
    g.bench_function("parview", |b| b.iter(|| pool.direct().apply(black_box)));
    g.bench_function("rayon_broadcast", |b| {
        b.iter(|| rp.broadcast(|ctx| black_box(ctx.index())))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = tiny_maps, overhead, views
}
criterion_main!(benches);
