//! 4. Uneven work: primality of 64 numbers near 1.1e14 by trial division — the primes take
//!    ~10 ms each, the composites (all in the second half) almost nothing. A static split
//!    leaves one engine with all the work; a load-balanced one should come within a few
//!    percent of the ideal time, which is measured here from per-item serial times. Also
//!    writes the timelines of both splits (`target/parview/primes-*.svg` / `.json`). OpenMP
//!    (`demo/c/omp.c`) returns the count only, checked against the serial one.

use crate::opts::Opts;
use crate::timing::{ANY, CheckResult, Kind, Row, Variant, fresh, median, run_group};
use parview::{Pool, Schedule};
use parview_demo as demo;
use parview_demo::omp::{self, OmpSchedule};
use rayon::prelude::*;
use std::cell::RefCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What the primes workload reports besides its rows.
pub struct PrimesReport {
    /// max(total / workers, longest item), from per-item serial times.
    pub ideal: Duration,
    /// The timeline files (SVG and Chrome/Perfetto trace of each split).
    pub files: Vec<PathBuf>,
    pub write_error: Option<String>,
}

/// Per-item serial times, one list of reps per item.
type PerItem = Rc<RefCell<Vec<Vec<Duration>>>>;

pub fn run(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) -> PrimesReport {
    let all = demo::primes_inputs();
    let nums: Vec<u64> = if o.quick {
        // 4 primes then 4 composites: same shape (all work in the first half), ~40 ms serial
        all[..4].iter().chain(&all[32..36]).copied().collect()
    } else {
        all
    };
    // reference results (one untimed pass)
    let want: Vec<bool> = nums.iter().map(|&v| demo::is_prime(v)).collect();
    // per-item serial times, recorded by a timed variant of its own inside the interleaved
    // reps, so that the ideal is measured under the same machine conditions as the maps
    let per_item: PerItem = Rc::new(RefCell::new(vec![Vec::new(); nums.len()]));
    let mut vs = serial_variants(&nums, &want, &per_item);
    vs.extend(parallel_variants(&nums, &want, pool, rp));
    if o.openmp {
        vs.extend(omp_variants(&nums, &want));
    }
    let reps = if o.quick { 2 } else { 5 };
    let mut group = run_group(&format!("primes n={}", nums.len()), 0, reps, vs);
    // ideal from the per-item medians over the reps
    let durs: Vec<Duration> = per_item
        .borrow()
        .iter()
        .map(|d| median(d.clone()))
        .collect();
    let ideal = demo::ideal_time(&durs, pool.workers());
    for r in &mut group {
        let over = (r.median.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0;
        r.note = format!("{}; {over:+.1}% vs ideal", r.note);
    }
    rows.extend(group);
    let (files, write_error) = write_timelines(pool, &nums);
    PrimesReport {
        ideal,
        files,
        write_error,
    }
}

/// Checks the per-item results.
fn check(want: &[bool]) -> impl Fn(&Vec<bool>) -> CheckResult + Copy + '_ {
    move |got: &Vec<bool>| -> CheckResult {
        if got != want {
            return Err("per-item results differ".into());
        }
        Ok(format!("{} primes", got.iter().filter(|&&b| b).count()))
    }
}

/// Checks a count of primes.
fn check_count(want: &[bool]) -> impl Fn(&usize) -> CheckResult + Copy + 'static {
    let want_count = want.iter().filter(|&&b| b).count();
    move |&c: &usize| -> CheckResult {
        if c == want_count {
            Ok(format!("{c} primes"))
        } else {
            Err(format!("{c} primes, want {want_count}"))
        }
    }
}

/// The serial driver (checked by its count), and a serial loop that times every item.
fn serial_variants<'a>(nums: &'a [u64], want: &'a [bool], per_item: &PerItem) -> Vec<Variant<'a>> {
    let per_item = per_item.clone();
    let each_timed = move || {
        let mut rec = per_item.borrow_mut();
        nums.iter()
            .zip(rec.iter_mut())
            .map(|(&v, d)| {
                let t0 = Instant::now();
                let r = demo::is_prime(black_box(v));
                d.push(t0.elapsed());
                r
            })
            .collect::<Vec<bool>>()
    };
    vec![
        fresh(
            "serial (demo::primes_serial)",
            Kind::Serial,
            ANY,
            move || demo::primes_serial(nums),
            check_count(want),
        ),
        fresh(
            "serial, each item timed (-> ideal)",
            Kind::Serial,
            "per-item",
            each_timed,
            check(want),
        ),
    ]
}

fn parallel_variants<'a>(
    nums: &'a [u64],
    want: &'a [bool],
    pool: &'a Pool,
    rp: &'a rayon::ThreadPool,
) -> Vec<Variant<'a>> {
    let chk = check(want);
    let prime = |&v: &u64| demo::is_prime(v);
    let dynamic = move || {
        pool.load_balanced()
            .schedule(Schedule::Dynamic(1))
            .map(nums, prime)
    };
    let rayon = move || rp.install(|| nums.par_iter().map(prime).collect::<Vec<bool>>());
    vec![
        fresh(
            "parview direct (static)",
            Kind::Parview,
            ANY,
            move || pool.direct().map(nums, prime),
            chk,
        ),
        fresh(
            "parview load-balanced dynamic,1",
            Kind::Parview,
            ANY,
            dynamic,
            chk,
        ),
        fresh(
            "parview load-balanced adaptive",
            Kind::Parview,
            ANY,
            move || pool.load_balanced().map(nums, prime),
            chk,
        ),
        fresh("rayon par_iter map collect", Kind::Rayon, ANY, rayon, chk),
    ]
}

/// OpenMP's loop (a count), static and dynamic,1.
fn omp_variants<'a>(nums: &'a [u64], want: &[bool]) -> Vec<Variant<'a>> {
    [OmpSchedule::Static, OmpSchedule::Dynamic(1)]
        .into_iter()
        .map(|s| {
            fresh(
                format!("OpenMP for {s} (count)"),
                Kind::OpenMp,
                ANY,
                move || omp::primes(nums, s),
                check_count(want),
            )
        })
        .collect()
}

/// Timelines of the static and the load-balanced split, as SVG and Chrome/Perfetto trace.
fn write_timelines(pool: &Pool, nums: &[u64]) -> (Vec<PathBuf>, Option<String>) {
    eprintln!("  primes: timelines");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/parview");
    let (_, tl_direct) = pool.direct().map_timed(nums, |&v| demo::is_prime(v));
    let (_, tl_lb) = pool.load_balanced().map_timed(nums, |&v| demo::is_prime(v));
    let mut files = Vec::new();
    let mut write_error = None;
    for (stem, tl) in [
        ("primes-direct", &tl_direct),
        ("primes-load-balanced", &tl_lb),
    ] {
        let svg = dir.join(format!("{stem}.svg"));
        let json = dir.join(format!("{stem}.json"));
        if let Err(e) = tl
            .write_svg(&svg)
            .and_then(|_| tl.write_chrome_trace(&json))
        {
            write_error = Some(format!("{}: {e}", svg.display()));
        }
        files.push(svg);
        files.push(json);
    }
    (files, write_error)
}
