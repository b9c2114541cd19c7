//! Printing: the table of rows, and the lines around it.

use crate::timing::Row;
use std::time::Duration;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The row of `variant` in `workload`, if both ran.
pub fn find<'r>(rows: &'r [Row], workload: &str, variant: &str) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.variant == variant)
}

/// The lines above the table: what ran, and what the columns mean. `omp`: OpenMP's thread
/// count, or why there are no OpenMP rows.
pub fn print_header(
    workers: usize,
    rayon_threads: usize,
    omp: &Result<usize, String>,
    cpu: &str,
    quick: bool,
) {
    println!(
        "parview tour: {workers} workers, rayon {rayon_threads} threads, {cpu}; median of interleaved reps{}",
        if quick {
            " (--quick: tiny sizes, timings meaningless)"
        } else {
            ""
        }
    );
    match omp {
        Ok(t) => println!(
            "OpenMP rows: C loops (demo/c/omp.c) compiled with -O3 -march=native -fopenmp -ffp-contract=off, \
             run in this process with {t} threads, on the same inputs and interleaved with the other variants"
        ),
        Err(why) => println!("OpenMP rows: none ({why})"),
    }
    println!(
        "vs serial = serial time (same output style: into buffer / collect) / time; vs rayon = time / rayon time (same style)"
    );
    if omp.is_ok() {
        println!(
            "vs OpenMP = time / best OpenMP time (same style; OpenMP writes into a buffer, so collecting rows show -)"
        );
    }
    println!(
        "bg = share of the machine's CPUs used by other processes while the variant ran (above ~0.05: disturbed)"
    );
    println!();
}

/// One line per row, a blank line between workloads; the `vs OpenMP` column only where some
/// row has an OpenMP ratio.
pub fn print_table(rows: &[Row]) {
    let omp_col = rows.iter().any(|r| r.vs_omp.is_some());
    let omp = |s: &str| {
        if omp_col {
            format!("  {s:>9}")
        } else {
            String::new()
        }
    };
    let wl = rows
        .iter()
        .map(|r| r.workload.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let vl = rows
        .iter()
        .map(|r| r.variant.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<wl$}  {:<vl$}  {:>10}  {:>9}  {:>8}{}  {:>4}  {:<8}  note",
        "workload",
        "variant",
        "median ms",
        "vs serial",
        "vs rayon",
        omp("vs OpenMP"),
        "bg",
        "check"
    );
    println!(
        "{}",
        "-".repeat(wl + vl + 66 + if omp_col { 11 } else { 0 })
    );
    let mut last = "";
    for r in rows {
        if !last.is_empty() && last != r.workload {
            println!();
        }
        last = &r.workload;
        let sp = r.speedup.map_or("-".into(), |s| format!("{s:.2}x"));
        let ry = r.vs_rayon.map_or("-".into(), |s| format!("{s:.2}x"));
        let om = omp(&r.vs_omp.map_or("-".into(), |s| format!("{s:.2}x")));
        println!(
            "{:<wl$}  {:<vl$}  {:>10.2}  {:>9}  {:>8}{}  {:>4.2}  {:<8}  {}",
            r.workload,
            r.variant,
            ms(r.median),
            sp,
            ry,
            om,
            r.bg,
            if r.ok { "ok" } else { "MISMATCH" },
            r.note
        );
    }
}

/// A warning when other processes took more than 5% of the CPUs while some variant ran.
pub fn warn_if_disturbed(rows: &[Row]) {
    let worst = rows.iter().map(|r| r.bg).fold(0.0, f64::max);
    if worst > 0.05 {
        println!(
            "WARNING: other processes used up to {:.0}% of the CPUs while variants ran (bg column): \
             those timings are disturbed; re-run when `uptime` shows a low load",
            worst * 100.0
        );
    }
}
