//! Gaussian kernel z = exp(-(x - y)^2) over N f64 pairs: scatter -> map ->
//! gather across MPI ranks, each rank mapping its block on its local pool.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_gauss
//! mpirun -n 2 -x PARVIEW_WORKERS=1 target/release/examples/mpi_gauss --n 1000000
//! PARVIEW_WORKERS=2 mpirun -n 1 target/release/examples/mpi_gauss --n 1000000
//! ```
//!
//! Prints, on the root, the best and median time of each phase over
//! `--reps` repetitions, a checksum (sum of z in input order), and for
//! comparison the same map on the root's local pool alone.

use std::time::Instant;

use parview::Schedule;
use parview::cluster::Cluster;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        let v = if a == name {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{name}=")).map(str::to_string)
        };
        if let Some(v) = v {
            return v.parse().unwrap_or_else(|_| {
                eprintln!("usage: mpi_gauss [--n PAIRS] [--reps R]   (e.g. --n 1e7)");
                std::process::exit(2);
            });
        }
    }
    default
}

/// Deterministic inputs (golden-ratio / sqrt(2) low-discrepancy sequences).
fn inputs(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x = (0..n)
        .map(|i| (i as f64 * 0.618_033_988_749_895).fract() * 4.0)
        .collect();
    let y = (0..n)
        .map(|i| (i as f64 * 0.414_213_562_373_095).fract() * 4.0)
        .collect();
    (x, y)
}

fn kernel(x: f64, y: f64) -> f64 {
    let d = x - y;
    (-d * d).exp()
}

fn best_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn main() {
    let n = arg("--n", 1e6) as usize;
    let reps = (arg("--reps", 7.0) as usize).max(1);
    let cluster = match Cluster::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mpi_gauss: {e}");
            std::process::exit(1);
        }
    };
    let (x, y) = if cluster.is_root() {
        inputs(n)
    } else {
        (Vec::new(), Vec::new())
    };

    let (mut scatter_t, mut map_t, mut gather_t, mut total_t) = (vec![], vec![], vec![], vec![]);
    let mut z = None;
    for _ in 0..reps {
        cluster.barrier();
        let t0 = Instant::now();
        let xs = cluster.scatter(&x);
        let ys = cluster.scatter(&y);
        let t1 = Instant::now();
        let local: Vec<f64> = cluster
            .pool()
            .schedule(Schedule::Static)
            .map(0..xs.len(), |i| kernel(xs[i], ys[i]));
        let t2 = Instant::now();
        z = cluster.gather(&local);
        let t3 = Instant::now();
        scatter_t.push((t1 - t0).as_secs_f64());
        map_t.push((t2 - t1).as_secs_f64());
        gather_t.push((t3 - t2).as_secs_f64());
        total_t.push((t3 - t0).as_secs_f64());
    }

    if let Some(z) = z {
        let checksum: f64 = z.iter().sum();
        // Same map on the root's pool alone (no MPI), for comparison.
        let mut local_t = vec![];
        let mut zl = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            zl = cluster
                .pool()
                .schedule(Schedule::Static)
                .map(0..n, |i| kernel(x[i], y[i]));
            local_t.push(t.elapsed().as_secs_f64());
        }
        assert_eq!(z, zl, "cluster and local results differ");
        println!(
            "mpi_gauss: size={} workers/rank={} n={n} reps={reps}",
            cluster.size(),
            cluster.workers()
        );
        for (name, v) in [
            ("scatter x,y", scatter_t),
            ("map", map_t),
            ("gather z", gather_t),
            ("total", total_t),
            ("root pool only", local_t),
        ] {
            let (best, med) = best_median(v);
            println!(
                "  {name:<15} best {:8.2} ms  median {:8.2} ms",
                best * 1e3,
                med * 1e3
            );
        }
        println!("checksum sum(z) = {checksum:.12e}");
    }
}
