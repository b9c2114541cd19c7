//! Monte-Carlo estimate of pi over MPI ranks × local workers.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_pi
//! mpirun -n 2 target/release/examples/mpi_pi --n 1e8
//! srun -n 2 --mpi=pmix target/release/examples/mpi_pi
//! ```
//!
//! The samples are cut into chunks of 1e6; chunk `k` draws from its own
//! Xoshiro256++ stream seeded `k + 1`, so the estimate does not depend on
//! the number of ranks or workers. The hit counts are combined with the
//! deterministic `Cluster::map_reduce` (same bits on any layout).
//!
//! `--local` runs the same reduction on a local pool (`PARVIEW_WORKERS`
//! engines, `map_reduce_local`, no MPI) for comparison. Both modes print the
//! CPU time the process used during the compute (`/proc/self/stat`, Linux),
//! so samples per CPU-second can be compared on a loaded machine, where
//! wall times mostly measure the share of the CPUs a process gets.

use std::time::Instant;

use parview::cluster::{Cluster, map_reduce_local};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const CHUNK: u64 = 1_000_000;

fn parse_n() -> (u64, bool) {
    let mut n = 100_000_000u64;
    let mut local = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--local" {
            local = true;
            continue;
        }
        let v = match a.as_str() {
            "--n" => args.next(),
            _ => a.strip_prefix("--n=").map(str::to_string),
        };
        match v.map(|v| v.parse::<f64>()) {
            Some(Ok(x)) if x >= 1.0 => n = x as u64,
            _ => {
                eprintln!("usage: mpi_pi [--n SAMPLES] [--local]   (e.g. --n 1e8)");
                std::process::exit(2);
            }
        }
    }
    (n, local)
}

/// CPU seconds (user + system) this process has used so far; 0 where `/proc` is missing.
fn cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime (fields 14, 15), at USER_HZ = 100
}

/// The same reduction on a local pool, without MPI.
fn local(n: u64, chunks: usize) {
    let pool = parview::Pool::new();
    let (t, c0) = (Instant::now(), cpu_s());
    let hits =
        map_reduce_local(&pool, 0..chunks, 1, |k| chunk_hits(k, n), |a, b| a + b).expect("n >= 1");
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c0);
    let pi = 4.0 * hits / n as f64;
    println!(
        "mpi_pi --local: workers={} n={n} chunks={chunks}",
        pool.workers()
    );
    println!("pi ~ {pi:.10} bits={:#018x}", pi.to_bits());
    println!(
        "time: {wall:.3} s, {:.1} Msamples/s; cpu {cpu:.2} s, {:.1} Msamples per cpu-second",
        n as f64 / wall / 1e6,
        n as f64 / cpu.max(1e-9) / 1e6
    );
}

/// Points of chunk `k` (of `n` samples in all) inside the unit quarter circle.
fn chunk_hits(k: usize, n: u64) -> f64 {
    let start = k as u64 * CHUNK;
    let len = CHUNK.min(n - start);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(k as u64 + 1);
    let mut hits = 0u64;
    for _ in 0..len {
        let x = rng.random::<f64>();
        let y = rng.random::<f64>();
        hits += u64::from(x * x + y * y < 1.0);
    }
    hits as f64
}

fn main() {
    let (n, local_only) = parse_n();
    if local_only {
        local(
            n,
            usize::try_from(n.div_ceil(CHUNK)).expect("chunk count fits usize"),
        );
        return;
    }
    let t_init = Instant::now();
    let cluster = match Cluster::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpi_pi: {e}");
            std::process::exit(1);
        }
    };
    let init_s = t_init.elapsed().as_secs_f64();
    let chunks = usize::try_from(n.div_ceil(CHUNK)).expect("chunk count fits usize");

    cluster.barrier();
    let (t, c0) = (Instant::now(), cpu_s());
    // One leaf per chunk: leaves (chunks) are divided among the ranks.
    let hits = cluster.map_reduce(0..chunks, 1, |k| chunk_hits(k, n), |a, b| a + b);
    let mine = t.elapsed().as_secs_f64();
    let cpu = cluster.gather(&[cpu_s() - c0]);
    let per_rank = cluster.gather(&[mine]);
    let wall = t.elapsed().as_secs_f64();

    if let (Some(hits), Some(per_rank), Some(cpu)) = (hits, per_rank, cpu) {
        let pi = 4.0 * hits / n as f64;
        println!(
            "mpi_pi: size={} workers/rank={} n={n} chunks={chunks}",
            cluster.size(),
            cluster.workers()
        );
        for (r, s) in per_rank.iter().enumerate() {
            println!("  rank {r}: compute {s:.3} s");
        }
        println!(
            "pi ~ {pi:.10} (error {:+.2e}) hits={hits} bits={:#018x}",
            pi - std::f64::consts::PI,
            pi.to_bits()
        );
        println!(
            "time: {wall:.3} s compute+reduce, {:.1} Msamples/s; MPI init {init_s:.3} s",
            n as f64 / wall / 1e6
        );
        let cpu: f64 = cpu.iter().sum();
        println!(
            "cpu {cpu:.2} s over all ranks, {:.1} Msamples per cpu-second",
            n as f64 / cpu.max(1e-9) / 1e6
        );
    }
}
