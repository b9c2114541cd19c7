//! A tour of parview on the demo workloads, timed against the serial drivers of
//! `parview_demo`, against rayon and against OpenMP, with a correctness check on every run.
//!
//! ```text
//! cargo run --release --example tour                  # defaults, well under 2 minutes on 2 cores
//! cargo run --release --example tour -- --quick       # seconds-long smoke run, tiny sizes
//! cargo run --release --example tour -- --workers 4   # pool size (default: parview::default_workers())
//! cargo run --release --example tour -- --pi-n 1e9    # Monte-Carlo pi at 1e9 samples (~2 more minutes)
//! cargo run --release --example tour -- --only pi,primes   # a subset (prefixes: pi gauss inv primes avg corr)
//! cargo run --release --example tour -- --no-openmp   # without the OpenMP rows
//! ```
//!
//! What it measures: for every workload (Monte-Carlo pi, Gaussian kernel, 5x5 inversions,
//! uneven primes, averaging random matrices, a correlation matrix) the serial driver, the
//! parview variants (schedules and views), rayon (a `ThreadPool` of the same size, used
//! through `install`) and, for pi, gauss, inversions and primes, OpenMP on the same inputs.
//! Repetitions are interleaved (rep 0 of every variant, then rep 1, rotating the order) so
//! that ratios are taken under the same machine conditions; each time is the median of the
//! reps. Every rep's result is checked against the serial one (bit for bit unless the table
//! says otherwise); the process exits with status 1 if any check fails.
//!
//! The OpenMP rows are the C loops of `parview_demo::omp` (`demo/c/omp.c`, compiled by
//! `demo/build.rs` with `-O3 -march=native -fopenmp -ffp-contract=off`), run in this process
//! with `--workers` threads and interleaved with the other variants like any of them: no
//! timing is carried over from another run or machine. After each OpenMP rep the harness
//! waits 20 ms, untimed, for libgomp's spinning idle threads to sleep, so that their spinning
//! is not charged to the next variant. Where the demo crate was built without an
//! OpenMP-capable C compiler, the tour says why and runs without those rows.
//!
//! Columns: `vs serial` is the serial time of the same output style (into a caller's buffer
//! or a freshly collected `Vec`) divided by the variant's time; `vs rayon` is the variant's
//! time divided by rayon's time for the same workload and output style (below 1.00x:
//! faster than rayon); `vs OpenMP` is the variant's time divided by the best OpenMP row's
//! time for the same workload and output style (`-` where OpenMP has no row of that style:
//! its rows write into a buffer, they do not collect).
//!
//! Besides the table it prints the pi reproducibility line (estimate bits across pool sizes
//! and schedules), the ideal time of the primes workload, the paths of the primes timelines
//! (`target/parview/primes-*.svg` / `.json`), and a target summary with PASS/MISS.
//!
//! Where things are: one module per workload — [`pi`], [`gauss`], [`inversions`],
//! [`primes`], [`matrices`], [`stations`] — each building its variants (closures over the
//! same inputs) and its check; [`timing`] runs and times them; [`table`] prints the rows;
//! [`targets`] judges them; [`opts`] reads the command line.

mod gauss;
mod inversions;
mod matrices;
mod opts;
mod pi;
mod primes;
mod stations;
mod table;
mod targets;
mod timing;

use opts::Opts;
use parview::Pool;
use parview_demo::omp::{self, OmpSchedule};
use pi::PiReport;
use primes::PrimesReport;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;
use timing::Row;

fn main() {
    let mut o = opts::parse_opts();
    let (pool, rp) = pools(&o);
    let omp_threads = openmp(&o);
    o.openmp = omp_threads.is_ok();
    let cpu = cpu_name();
    let started = Instant::now();
    eprintln!(
        "parview tour: {} workers (rayon {}, OpenMP {}), {} logical CPUs ({cpu}){}",
        pool.workers(),
        rp.current_num_threads(),
        omp_threads
            .as_ref()
            .map_or("none".into(), |t| t.to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if o.quick { ", --quick" } else { "" }
    );
    let mut rows = Vec::new();
    let reports = run_workloads(&o, &pool, &rp, &mut rows);

    table::print_header(
        pool.workers(),
        rp.current_num_threads(),
        &omp_threads,
        &cpu,
        o.quick,
    );
    table::print_table(&rows);
    table::warn_if_disturbed(&rows);
    println!();
    reports.print(pool.workers());
    println!();
    let ts = targets::targets(&rows, &o, &reports.pi_name, reports.primes.as_ref());
    targets::print(&ts, pool.workers());
    if !all_checks_pass(&rows, &reports, started) {
        std::process::exit(1);
    }
}

/// A parview pool and a rayon pool of `--workers` threads, both warmed up (thread start-up,
/// first steals).
fn pools(o: &Opts) -> (Pool, rayon::ThreadPool) {
    let pool = Pool::builder()
        .workers(o.workers)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("tour: {e}");
            std::process::exit(2)
        });
    let rp = rayon::ThreadPoolBuilder::new()
        .num_threads(o.workers)
        .build()
        .expect("rayon pool");
    for _ in 0..100 {
        black_box(pool.par_map(0..10_000u64, |i| i * 2 + 1));
        black_box(rp.install(|| {
            (0..10_000u64)
                .into_par_iter()
                .map(|i| i * 2 + 1)
                .sum::<u64>()
        }));
    }
    (pool, rp)
}

/// OpenMP set to `--workers` threads and warmed up (its threads started): `Ok(threads)`, or
/// why the tour runs without OpenMP rows.
fn openmp(o: &Opts) -> Result<usize, String> {
    if !o.openmp {
        return Err("--no-openmp".into());
    }
    omp::available()?;
    omp::set_threads(o.workers);
    let input: Vec<u64> = (0..10_000).collect();
    let mut out = vec![0; input.len()];
    for _ in 0..100 {
        omp::affine_into(&input, &mut out, OmpSchedule::Static);
        black_box(&mut out);
    }
    Ok(omp::threads())
}

/// The CPU's model name from `/proc/cpuinfo`.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// What the workloads report besides their rows.
struct Reports {
    pi: Option<PiReport>,
    /// The pi workload's name in the table ("" if it did not run).
    pi_name: String,
    primes: Option<PrimesReport>,
}

/// Runs the workloads `--only` selects, in the table's order.
fn run_workloads(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) -> Reports {
    let pi = o.runs("pi").then(|| pi::run(o, pool, rp, rows));
    let pi_name = rows.first().map(|r| r.workload.clone()).unwrap_or_default();
    if o.runs("gauss") {
        gauss::run(o, pool, rp, rows);
    }
    if o.runs("inv") {
        inversions::run(o, pool, rp, rows);
    }
    let primes = o.runs("primes").then(|| primes::run(o, pool, rp, rows));
    if o.runs("avg") {
        matrices::run(o, pool, rp, rows);
    }
    if o.runs("corr") {
        stations::run(o, pool, rp, rows);
    }
    Reports {
        pi,
        pi_name,
        primes,
    }
}

impl Reports {
    /// The pi reproducibility lines, the primes ideal and where the timelines went.
    fn print(&self, workers: usize) {
        if let Some(pi) = &self.pi {
            println!("{}", pi.detail);
        }
        let Some(primes) = &self.primes else {
            return;
        };
        println!(
            "primes ideal = max(total/{workers}, longest item) from per-item serial times: {:.1} ms",
            table::ms(primes.ideal)
        );
        match &primes.write_error {
            None => {
                println!("primes timelines written:");
                for f in &primes.files {
                    println!("  {}", f.display());
                }
            }
            Some(e) => println!("primes timelines: could not write ({e})"),
        }
    }
}

/// Prints the checks line; false (after naming every mismatch) if a check failed, pi was not
/// reproducible or the timelines could not be written.
fn all_checks_pass(rows: &[Row], reports: &Reports, started: Instant) -> bool {
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.ok).collect();
    let reproducible = reports.pi.as_ref().is_none_or(|p| p.reproducible);
    let written = reports
        .primes
        .as_ref()
        .is_none_or(|p| p.write_error.is_none());
    println!();
    println!(
        "checks: {} of {} variants ok{}; total run time {:.1} s",
        rows.len() - failed.len(),
        rows.len(),
        if reproducible {
            ""
        } else {
            ", pi NOT reproducible"
        },
        started.elapsed().as_secs_f64()
    );
    for r in &failed {
        eprintln!("MISMATCH: {} / {}: {}", r.workload, r.variant, r.note);
    }
    failed.is_empty() && reproducible && written
}
