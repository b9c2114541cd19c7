//! The project's performance targets, judged from the table's rows: PASS, MISS, or n/a where
//! the run cannot judge them (`--quick`, not 2 workers, or no OpenMP rows for an OpenMP
//! target). Every comparison is between rows of this run: OpenMP included, nothing is a
//! figure stored from another run or machine.

use crate::opts::Opts;
use crate::primes::PrimesReport;
use crate::table::{find, ms};
use crate::timing::Row;

/// One target and how this run did.
pub struct Target {
    what: String,
    measured: String,
    /// `None`: this run cannot judge it.
    pass: Option<bool>,
    why: String,
}

/// The gauss workload's OpenMP `schedule(static)` row (see `gauss.rs`).
const OMP_GAUSS_STATIC: &str = "OpenMP for static into buffer";

/// Why an OpenMP target has no verdict.
const NO_OMP: &str = "no OpenMP row in this run";

/// The load-balanced variants the speed targets are about.
const LOAD_BALANCED: [&str; 2] = [
    "parview load-balanced adaptive",
    "parview load-balanced dynamic,1",
];

/// The name of the first workload whose name starts with `prefix` ("" if it did not run).
fn workload(rows: &[Row], prefix: &str) -> String {
    rows.iter()
        .find(|r| r.workload.starts_with(prefix))
        .map(|r| r.workload.clone())
        .unwrap_or_default()
}

/// Every target whose workload ran, judged.
pub fn targets(
    rows: &[Row],
    o: &Opts,
    pi_name: &str,
    primes: Option<&PrimesReport>,
) -> Vec<Target> {
    let primes_wl = workload(rows, "primes");
    let pi_note = if o.pi_n == 1_000_000_000 {
        String::new()
    } else {
        format!(
            "measured at n={:.0e}; the target is for 1e9 (--pi-n 1e9)",
            o.pi_n
        )
    };
    let mut t = Vec::new();
    for v in LOAD_BALANCED {
        speed_targets(rows, pi_name, v, &pi_note, &mut t);
    }
    for v in LOAD_BALANCED {
        speed_targets(rows, &primes_wl, v, "", &mut t);
    }
    if let Some(primes) = primes {
        ideal_targets(rows, &primes_wl, primes, &mut t);
    }
    gauss_targets(rows, &workload(rows, "gauss"), &mut t);
    inv_targets(rows, &workload(rows, "inv"), &mut t);
    for t in &mut t {
        if o.quick {
            t.pass = None;
            t.why = "--quick: sizes too small to judge".into();
        } else if o.workers != 2 {
            t.pass = None;
            t.why = format!("targets are for 2 workers, ran {}", o.workers);
        }
    }
    t
}

/// Variant `v` of workload `wl`: at least 1.97x serial, no slower than rayon, and within 3% of
/// the best OpenMP row (two rows of one run differ by about that much from noise alone).
fn speed_targets(rows: &[Row], wl: &str, v: &str, extra: &str, t: &mut Vec<Target>) {
    let label = wl.split_whitespace().next().unwrap_or(wl);
    if let Some(r) = find(rows, wl, v) {
        let sp = r.speedup.unwrap_or(0.0);
        t.push(Target {
            what: format!("{label} {v} >= 1.97x serial"),
            measured: format!("{sp:.2}x"),
            pass: Some(sp >= 1.97),
            why: extra.to_string(),
        });
        let ry = r.vs_rayon.unwrap_or(f64::INFINITY);
        t.push(Target {
            what: format!("{label} {v} <= rayon"),
            measured: format!("{ry:.3}x rayon"),
            pass: Some(ry <= 1.0),
            why: extra.to_string(),
        });
        t.push(Target {
            what: format!("{label} {v} <= 1.03x OpenMP best (same run)"),
            measured: r.vs_omp.map_or("-".into(), |om| format!("{om:.3}x OpenMP")),
            pass: r.vs_omp.map(|om| om <= 1.03),
            why: if r.vs_omp.is_some() { extra } else { NO_OMP }.to_string(),
        });
    }
}

/// The load-balanced primes within 3% of the ideal time.
fn ideal_targets(rows: &[Row], primes_wl: &str, primes: &PrimesReport, t: &mut Vec<Target>) {
    for v in LOAD_BALANCED {
        if let Some(r) = find(rows, primes_wl, v) {
            let over = (r.median.as_secs_f64() / primes.ideal.as_secs_f64() - 1.0) * 100.0;
            t.push(Target {
                what: format!("primes {v} within 3% of ideal"),
                measured: format!(
                    "{over:+.1}% ({:.1} ms vs ideal {:.1} ms)",
                    ms(r.median),
                    ms(primes.ideal)
                ),
                pass: Some(over <= 3.0),
                why: String::new(),
            });
        }
    }
}

/// Gauss into a buffer within 3% of OpenMP's static loop into a buffer, both timed in this
/// run; collected, no slower than rayon.
fn gauss_targets(rows: &[Row], gauss_wl: &str, t: &mut Vec<Target>) {
    let omp = find(rows, gauss_wl, OMP_GAUSS_STATIC);
    for v in [
        "parview par_map_into static",
        "parview par_map_into adaptive",
    ] {
        if let Some(r) = find(rows, gauss_wl, v) {
            let what = format!("gauss {v} <= 1.03x OpenMP static into (same run)");
            t.push(match omp {
                Some(om) => {
                    let ratio = r.median.as_secs_f64() / om.median.as_secs_f64();
                    Target {
                        what,
                        measured: format!(
                            "{ratio:.3}x ({:.2} ms vs OpenMP static {:.2} ms)",
                            ms(r.median),
                            ms(om.median)
                        ),
                        pass: Some(ratio <= 1.03),
                        why: String::new(),
                    }
                }
                None => Target {
                    what,
                    measured: format!("{:.2} ms", ms(r.median)),
                    pass: None,
                    why: NO_OMP.into(),
                },
            });
        }
    }
    if let Some(r) = find(rows, gauss_wl, "parview par_map adaptive (collect)") {
        let ry = r.vs_rayon.unwrap_or(f64::INFINITY);
        t.push(Target {
            what: "gauss par_map adaptive (collect) <= rayon collect".into(),
            measured: format!("{ry:.3}x rayon ({:.2} ms)", ms(r.median)),
            pass: Some(ry <= 1.0),
            why: String::new(),
        });
    }
}

/// Inversions at least 1.9x serial.
fn inv_targets(rows: &[Row], inv_wl: &str, t: &mut Vec<Target>) {
    for v in [
        "parview par_map adaptive",
        "parview par_map static",
        "parview par_map dynamic,1024",
    ] {
        if let Some(r) = find(rows, inv_wl, v) {
            let sp = r.speedup.unwrap_or(0.0);
            t.push(Target {
                what: format!("inv {v} >= 1.9x serial"),
                measured: format!("{sp:.2}x"),
                pass: Some(sp >= 1.9),
                why: String::new(),
            });
        }
    }
}

/// The targets, aligned, one a line.
pub fn print(ts: &[Target], workers: usize) {
    println!("targets ({workers} workers):");
    let tw = ts.iter().map(|t| t.what.len()).max().unwrap_or(0);
    let mw = ts.iter().map(|t| t.measured.len()).max().unwrap_or(0);
    for t in ts {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        };
        println!(
            "  {:<tw$}  {:<mw$}  {verdict}{}",
            t.what,
            t.measured,
            if t.why.is_empty() {
                String::new()
            } else {
                format!("  ({})", t.why)
            }
        );
    }
}
