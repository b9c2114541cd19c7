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

use std::time::Instant;

use parview::cluster::Cluster;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const CHUNK: u64 = 1_000_000;

fn parse_n() -> u64 {
    let mut n = 100_000_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = match a.as_str() {
            "--n" => args.next(),
            _ => a.strip_prefix("--n=").map(str::to_string),
        };
        match v.map(|v| v.parse::<f64>()) {
            Some(Ok(x)) if x >= 1.0 => n = x as u64,
            _ => {
                eprintln!("usage: mpi_pi [--n SAMPLES]   (e.g. --n 1e8)");
                std::process::exit(2);
            }
        }
    }
    n
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
    let n = parse_n();
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
    let t = Instant::now();
    // One leaf per chunk: leaves (chunks) are divided among the ranks.
    let hits = cluster.map_reduce(0..chunks, 1, |k| chunk_hits(k, n), |a, b| a + b);
    let mine = t.elapsed().as_secs_f64();
    let per_rank = cluster.gather(&[mine]);
    let wall = t.elapsed().as_secs_f64();

    if let (Some(hits), Some(per_rank)) = (hits, per_rank) {
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
    }
}
