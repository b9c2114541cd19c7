//! Measurements of the load-balanced cluster maps, printed as ratios taken in one run.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_primes
//! # 2 ranks x 1 worker (Open MPI binds each rank to one core at -n 2)
//! mpirun -n 2 -x PARVIEW_WORKERS=1 target/release/examples/mpi_primes
//! # 1 rank x 2 workers (unbind, or both workers share a core)
//! mpirun -n 1 --bind-to none -x PARVIEW_WORKERS=2 target/release/examples/mpi_primes
//! # the same programs on a local pool, no MPI
//! PARVIEW_WORKERS=2 target/release/examples/mpi_primes --local
//! ```
//!
//! Sections (each prints `name: numbers`):
//!
//! 1. **uneven primes**: the 64-number list of `parview_demo` (all heavy work in the first
//!    half); each item is timed once serially on the root to get the ideal
//!    `max(Σ/P, longest item)` for `P` = all engines of the job, then mapped with
//!    `Dynamic(1)` and `Adaptive`; prints wall / ideal.
//! 2. **chunk cost**: `Dynamic(1)` over 20 000 trivial items: wall time per dispensed chunk
//!    (every chunk is one message each way for the other ranks).
//! 3. **Gaussian 1M**: `exp(-(x-y)^2)` over 1e6 pairs, scatter → map → gather, once with the
//!    `Equivalence` fast path (`scatter`/`gather` of `f64`) and once as a load-balanced map of
//!    `(f64, f64)` pairs sent as postcard bytes (`Static`).
//! 4. **pi** (`--pi-n`, default 1e9): `Cluster::map_reduce` over chunks of 1e6 samples.
//!
//! `--skip-pi` leaves out section 4.

use std::time::{Duration, Instant};

use parview::cluster::{Cluster, map_reduce_local};
use parview::{Pool, Schedule};
use parview_demo::{gauss, gauss_inputs, ideal_time, is_prime, pi_chunk_hits, primes_inputs};

const PI_CHUNK: u64 = 1_000_000;
const GAUSS_N: usize = 1_000_000;
const REPS: usize = 5;

struct Args {
    local: bool,
    pi_n: u64,
    skip_pi: bool,
}

fn args() -> Args {
    let mut a = Args {
        local: false,
        pi_n: 1_000_000_000,
        skip_pi: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--local" => a.local = true,
            "--skip-pi" => a.skip_pi = true,
            "--pi-n" => {
                a.pi_n = it
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|&v| v >= 1.0)
                    .unwrap_or_else(|| usage()) as u64;
            }
            _ => usage(),
        }
    }
    a
}

fn usage() -> ! {
    eprintln!("usage: mpi_primes [--local] [--pi-n N] [--skip-pi]");
    std::process::exit(2)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Best of `REPS` runs of `f` (the first result is kept).
fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let t = Instant::now();
    let first = f();
    let mut best = t.elapsed();
    for _ in 1..REPS {
        let t = Instant::now();
        let _ = f();
        best = best.min(t.elapsed());
    }
    (best, first)
}

fn pi_hits(k: usize, n: u64) -> u64 {
    let start = k as u64 * PI_CHUNK;
    pi_chunk_hits(k as u64, PI_CHUNK.min(n - start))
}

fn serial_durations(nums: &[u64]) -> Vec<Duration> {
    nums.iter()
        .map(|&x| {
            let t = Instant::now();
            std::hint::black_box(is_prime(std::hint::black_box(x)));
            t.elapsed()
        })
        .collect()
}

fn local(a: &Args) {
    let pool = Pool::new();
    let p = pool.workers();
    println!("layout: local pool, {p} worker(s), no MPI");
    let nums = primes_inputs();
    let ideal = ideal_time(&serial_durations(&nums), p);
    for s in [Schedule::Dynamic(1), Schedule::Adaptive] {
        let t = Instant::now();
        let (v, tl) = pool.schedule(s).map_timed(&nums, |&x| is_prime(x));
        let wall = t.elapsed();
        assert_eq!(v.iter().filter(|&&b| b).count(), 32);
        let chunk_busy: Vec<Duration> = tl.records().iter().map(|r| r.busy()).collect();
        let ideal_run = ideal_time(&chunk_busy, p);
        println!(
            "uneven primes ({s}): wall {:.3} s, ideal {:.3} s, wall/ideal {:.3}; \
             wall/ideal-of-this-run {:.3}",
            secs(wall),
            secs(ideal),
            secs(wall) / secs(ideal),
            secs(tl.wall_time()) / secs(ideal_run)
        );
    }
    let (x, y) = gauss_inputs(GAUSS_N);
    let (d, z) = best(|| pool.par_map((&x, &y), |(a, b)| gauss(*a, *b, 1.0)));
    println!(
        "gauss 1M (local map, best of {REPS}): {:.2} ms, checksum {:.6e}",
        secs(d) * 1e3,
        z.iter().sum::<f64>()
    );
    if !a.skip_pi {
        let chunks = a.pi_n.div_ceil(PI_CHUNK) as usize;
        let t = Instant::now();
        let hits = map_reduce_local(&pool, 0..chunks, 1, |k| pi_hits(k, a.pi_n), |x, y| x + y);
        let wall = t.elapsed();
        let pi = 4.0 * hits.unwrap() as f64 / a.pi_n as f64;
        println!(
            "pi n={:.0e} (local): {:.3} s, {:.0} Msamples/s, pi ~ {pi:.10}",
            a.pi_n as f64,
            secs(wall),
            a.pi_n as f64 / secs(wall) / 1e6
        );
    }
}

fn main() {
    let a = args();
    if a.local {
        return local(&a);
    }
    let c = match Cluster::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpi_primes: {e}");
            std::process::exit(1);
        }
    };
    let root = c.is_root();
    let engines: usize = c.rank_workers().iter().sum();
    if root {
        println!(
            "layout: {} rank(s) x workers {:?} = {engines} engine(s)",
            c.size(),
            c.rank_workers()
        );
    }

    // 1. Uneven primes.
    let nums = if root { primes_inputs() } else { Vec::new() };
    let ideal = root.then(|| ideal_time(&serial_durations(&nums), engines));
    for s in [Schedule::Dynamic(1), Schedule::Adaptive] {
        c.barrier();
        let t = Instant::now();
        let rep = c
            .load_balanced()
            .schedule(s)
            .map_report(&nums, |&x| is_prime(x))
            .expect("no item panics");
        let wall = t.elapsed();
        if let (Some(rep), Some(ideal)) = (rep, ideal) {
            assert_eq!(rep.results.iter().filter(|&&b| b).count(), 32);
            let busy: Vec<String> = rep
                .loads
                .iter()
                .map(|l| format!("rank {} {:.3} s/{} items", l.rank, secs(l.busy), l.items))
                .collect();
            // The same bound from this run's own chunk times (items slowed by other load on
            // the machine count): max(Σ busy / P, longest chunk).
            let chunk_busy: Vec<Duration> =
                rep.timeline.records().iter().map(|r| r.busy()).collect();
            let ideal_run = ideal_time(&chunk_busy, engines);
            println!(
                "uneven primes ({s}): wall {:.3} s, ideal {:.3} s, wall/ideal {:.3}; \
                 wall/ideal-of-this-run {:.3}; busy: {}",
                secs(wall),
                secs(ideal),
                secs(wall) / secs(ideal),
                secs(rep.wall) / secs(ideal_run),
                busy.join(", ")
            );
        }
    }

    // 2. Cost of one dispensed chunk.
    c.barrier();
    let n = 20_000;
    let t = Instant::now();
    let rep = c
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_range_report(0..n, |i| i as u64)
        .expect("no item panics");
    let wall = t.elapsed();
    if let Some(rep) = rep {
        let remote: usize = rep.loads.iter().skip(1).map(|l| l.chunks).sum();
        let per_remote = if remote > 0 {
            format!(
                "; a rank other than the root took one chunk every {:.1} us",
                secs(rep.wall) * 1e6 / (remote as f64 / (c.size() - 1) as f64)
            )
        } else {
            String::new()
        };
        println!(
            "chunk cost: {n} chunks of 1 trivial item in {:.1} ms = {:.2} us per chunk \
             ({remote} of them to other ranks{per_remote})",
            secs(wall) * 1e3,
            secs(wall) * 1e6 / n as f64
        );
    }

    // 3. Gaussian 1M: Equivalence fast path vs serde.
    let (x, y) = if root {
        gauss_inputs(GAUSS_N)
    } else {
        (Vec::new(), Vec::new())
    };
    c.barrier();
    let (d_eq, z_eq) = best(|| {
        let xs = c.scatter(&x);
        let ys = c.scatter(&y);
        let z = c.pool().par_map((&xs, &ys), |(a, b)| gauss(*a, *b, 1.0));
        c.gather(&z)
    });
    let pairs: Vec<(f64, f64)> = x.iter().copied().zip(y.iter().copied()).collect();
    c.barrier();
    let (d_serde, z_serde) = best(|| {
        c.load_balanced()
            .schedule(Schedule::Static)
            .map(&pairs, |&(a, b)| gauss(a, b, 1.0))
            .expect("no item panics")
    });
    if let (Some(z1), Some(z2)) = (z_eq, z_serde) {
        assert_eq!(z1, z2);
        println!(
            "gauss 1M scatter->map->gather (best of {REPS}): Equivalence {:.2} ms, serde/postcard \
             {:.2} ms, serde/Equivalence {:.2}x, checksum {:.6e}",
            secs(d_eq) * 1e3,
            secs(d_serde) * 1e3,
            secs(d_serde) / secs(d_eq),
            z1.iter().sum::<f64>()
        );
    }

    // 4. pi.
    if !a.skip_pi {
        let chunks = a.pi_n.div_ceil(PI_CHUNK) as usize;
        c.barrier();
        let t = Instant::now();
        let hits = c.map_reduce(0..chunks, 1, |k| pi_hits(k, a.pi_n), |x, y| x + y);
        let wall = t.elapsed();
        if let Some(h) = hits {
            let pi = 4.0 * h as f64 / a.pi_n as f64;
            println!(
                "pi n={:.0e} (cluster map_reduce): {:.3} s, {:.0} Msamples/s, pi ~ {pi:.10}",
                a.pi_n as f64,
                secs(wall),
                a.pi_n as f64 / secs(wall) / 1e6
            );
        }
    }
}
