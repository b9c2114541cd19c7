//! A tour of parview on the five demo workloads, timed against the serial drivers of
//! `parview_demo` and against rayon, with a correctness check on every run.
//!
//! ```text
//! cargo run --release --example tour                  # defaults, well under 2 minutes on 2 cores
//! cargo run --release --example tour -- --quick       # seconds-long smoke run, tiny sizes
//! cargo run --release --example tour -- --workers 4   # pool size (default: parview::default_workers())
//! cargo run --release --example tour -- --pi-n 1e9    # Monte-Carlo pi at 1e9 samples (~2 more minutes)
//! cargo run --release --example tour -- --only pi,primes   # a subset (prefixes: pi gauss inv primes avg corr)
//! ```
//!
//! What it measures: for every workload (Monte-Carlo pi, Gaussian kernel, 5x5 inversions,
//! uneven primes, averaging random matrices, a correlation matrix) the serial driver, the
//! parview variants (schedules and views) and rayon (a `ThreadPool` of the same size, used
//! through `install`) on the same inputs. Repetitions are interleaved (rep 0 of every
//! variant, then rep 1, rotating the order) so that ratios are taken under the same machine
//! conditions; each time is the median of the reps. Every rep's result is checked against
//! the serial one (bit for bit unless the table says otherwise); the process exits with
//! status 1 if any check fails.
//!
//! Columns: `vs serial` is the serial time of the same output style (into a caller's buffer
//! or a freshly collected `Vec`) divided by the variant's time; `vs rayon` is the variant's
//! time divided by rayon's time for the same workload and output style (below 1.00x:
//! faster than rayon).
//!
//! Besides the table it prints the pi reproducibility line (estimate bits across pool sizes
//! and schedules), the ideal time of the primes workload, the paths of the primes timelines
//! (`target/parview/primes-*.svg` / `.json`), and a target summary with PASS/MISS.

use parview::{Pool, Schedule};
use parview_demo::{self as demo, Mat5, Mat10, Station};
use rayon::prelude::*;
use std::any::Any;
use std::cell::RefCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------- options

struct Opts {
    quick: bool,
    workers: usize,
    pi_n: u64,
    only: Option<String>,
}

impl Opts {
    /// Whether workload `name` runs (`--only` takes a comma-separated list of prefixes).
    fn runs(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|w| name.starts_with(w.trim())))
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: tour [--quick] [--workers N] [--pi-n N] [--only pi,gauss,inv,primes,avg,corr]   (N may be written 1e9)"
    );
    std::process::exit(2)
}

fn parse_count(s: &str) -> u64 {
    if let Ok(v) = s.parse::<u64>() {
        return v;
    }
    match s.parse::<f64>() {
        Ok(v) if v >= 1.0 && v.is_finite() && v.fract() == 0.0 => v as u64,
        _ => {
            eprintln!("tour: not a whole number >= 1: {s:?}");
            usage()
        }
    }
}

fn parse_opts() -> Opts {
    let mut quick = false;
    let mut workers = None;
    let mut pi_n = None;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--workers" => workers = Some(parse_count(&args.next().unwrap_or_else(|| usage()))),
            "--pi-n" => pi_n = Some(parse_count(&args.next().unwrap_or_else(|| usage()))),
            "--only" => only = Some(args.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("tour: unknown argument {other:?}");
                usage()
            }
        }
    }
    let workers = match workers {
        Some(w) => w as usize,
        None => parview::default_workers().unwrap_or_else(|e| {
            eprintln!("tour: {e}");
            std::process::exit(2)
        }),
    };
    let pi_n = pi_n.unwrap_or(if quick { 8_000_000 } else { 100_000_000 });
    Opts {
        quick,
        workers,
        pi_n,
        only,
    }
}

// ------------------------------------------------------------------------- harness

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Serial,
    Parview,
    Rayon,
}

/// Output style of a variant: speedups and rayon ratios compare within one style.
const INTO: &str = "into";
const COLLECT: &str = "collect";
const ANY: &str = "";

type CheckResult = Result<String, String>;

struct Variant<'a> {
    name: String,
    kind: Kind,
    class: &'static str,
    run: Box<dyn FnMut() -> Box<dyn Any> + 'a>,
    check: Box<dyn Fn() -> CheckResult + 'a>,
}

/// A variant whose closure returns a fresh value (kept until the next rep, dropped untimed).
fn fresh<'a, T: 'static>(
    name: impl Into<String>,
    kind: Kind,
    class: &'static str,
    mut f: impl FnMut() -> T + 'a,
    check: impl Fn(&T) -> CheckResult + 'a,
) -> Variant<'a> {
    let slot: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let s2 = slot.clone();
    Variant {
        name: name.into(),
        kind,
        class,
        run: Box::new(move || {
            let v = f();
            let old = s2.borrow_mut().replace(v);
            Box::new(old) as Box<dyn Any>
        }),
        check: Box::new(move || match &*slot.borrow() {
            Some(v) => check(v),
            None => Err("no result".into()),
        }),
    }
}

/// A variant that writes into a buffer it owns across reps.
fn into_buf<'a, B: 'static>(
    name: impl Into<String>,
    kind: Kind,
    class: &'static str,
    buf: B,
    mut f: impl FnMut(&mut B) + 'a,
    check: impl Fn(&B) -> CheckResult + 'a,
) -> Variant<'a> {
    let slot = Rc::new(RefCell::new(buf));
    let s2 = slot.clone();
    Variant {
        name: name.into(),
        kind,
        class,
        run: Box::new(move || {
            f(&mut s2.borrow_mut());
            Box::new(()) as Box<dyn Any>
        }),
        check: Box::new(move || check(&slot.borrow())),
    }
}

struct Row {
    workload: String,
    variant: String,
    kind: Kind,
    class: &'static str,
    median: Duration,
    bg: f64,
    ok: bool,
    note: String,
    speedup: Option<f64>,
    vs_rayon: Option<f64>,
}

/// `(busy jiffies of all CPUs, user+system jiffies of this process)`, from `/proc`; zeros
/// where `/proc` is not available.
fn jiffies() -> (u64, u64) {
    let all = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let l = s.lines().next()?.to_string();
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
            Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields 14 and 15 (utime, stime) are 11 and 12 after the state field
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (all, own)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// Runs `warmup + reps` interleaved rounds of all variants (rotating the order), checks every
/// result, and returns one row per variant with the median of the timed reps.
fn run_group(workload: &str, warmup: usize, reps: usize, mut vs: Vec<Variant<'_>>) -> Vec<Row> {
    eprintln!(
        "  {workload}: {} variants x {reps} reps (+{warmup} warm-up)",
        vs.len()
    );
    let k = vs.len();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); k];
    let mut status: Vec<CheckResult> = vec![Ok(String::new()); k];
    let mut other = vec![0u64; k]; // jiffies used by other processes while a variant ran
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for r in 0..warmup + reps {
        for j in 0..k {
            let idx = (j + r) % k;
            let v = &mut vs[idx];
            let (a0, s0) = jiffies();
            let t0 = Instant::now();
            let garbage = black_box((v.run)());
            let dt = t0.elapsed();
            let (a1, s1) = jiffies();
            drop(garbage);
            if r >= warmup {
                times[idx].push(dt);
                other[idx] += a1.saturating_sub(a0).saturating_sub(s1.saturating_sub(s0));
            }
            let c = (v.check)();
            // keep the first failure; otherwise the latest note
            if status[idx].is_ok() {
                status[idx] = c;
            }
        }
    }
    let mut rows: Vec<Row> = vs
        .iter()
        .zip(times)
        .zip(status)
        .zip(other)
        .map(|(((v, t), st), other)| {
            // jiffies are 1/100 s (USER_HZ): coarse when the variant's total time is short
            let total: f64 = t.iter().map(Duration::as_secs_f64).sum();
            let bg = (other as f64 / 100.0 / (ncpu * total.max(1e-9))).min(1.0);
            let (ok, note) = match st {
                Ok(n) => (true, n),
                Err(e) => (false, e),
            };
            Row {
                workload: workload.to_string(),
                variant: v.name.clone(),
                kind: v.kind,
                class: v.class,
                median: median(t),
                bg,
                ok,
                note,
                speedup: None,
                vs_rayon: None,
            }
        })
        .collect();
    // reference times per output style: the serial / fastest rayon row of the same style,
    // falling back to any serial / rayon row of the workload
    let best = |rows: &[Row], kind: Kind, class: &str| {
        let pick = |same: bool| {
            rows.iter()
                .filter(|r| r.kind == kind && (!same || r.class == class))
                .map(|r| r.median)
                .min()
        };
        pick(true).or_else(|| pick(false))
    };
    for i in 0..rows.len() {
        let class = rows[i].class;
        let s = best(&rows, Kind::Serial, class);
        let ry = best(&rows, Kind::Rayon, class);
        let t = rows[i].median.as_secs_f64();
        rows[i].speedup = s.map(|s| s.as_secs_f64() / t);
        rows[i].vs_rayon = ry.map(|ry| t / ry.as_secs_f64());
    }
    rows
}

fn find<'r>(rows: &'r [Row], workload: &str, variant: &str) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.variant == variant)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_table(rows: &[Row]) {
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
        "{:<wl$}  {:<vl$}  {:>10}  {:>9}  {:>8}  {:>4}  {:<8}  note",
        "workload", "variant", "median ms", "vs serial", "vs rayon", "bg", "check"
    );
    println!("{}", "-".repeat(wl + vl + 66));
    let mut last = "";
    for r in rows {
        if !last.is_empty() && last != r.workload {
            println!();
        }
        last = &r.workload;
        let sp = r.speedup.map_or("-".into(), |s| format!("{s:.2}x"));
        let ry = r.vs_rayon.map_or("-".into(), |s| format!("{s:.2}x"));
        println!(
            "{:<wl$}  {:<vl$}  {:>10.2}  {:>9}  {:>8}  {:>4.2}  {:<8}  {}",
            r.workload,
            r.variant,
            ms(r.median),
            sp,
            ry,
            r.bg,
            if r.ok { "ok" } else { "MISMATCH" },
            r.note
        );
    }
}

/// Bitwise equality of two f64 slices; Err names the first differing index.
fn same_bits(got: &[f64], want: &[f64]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("length {} != {}", got.len(), want.len()));
    }
    match got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "first difference at {i}: {} != {}",
            got[i], want[i]
        )),
    }
}

fn flat5(m: &[Mat5]) -> &[f64] {
    m.as_flattened().as_flattened()
}

fn flat10(m: &Mat10) -> &[f64] {
    m.as_flattened()
}

// ------------------------------------------------------------------------- 1. pi

struct PiReport {
    reproducible: bool,
    detail: String,
}

fn pi_hits_lb(pool: &Pool, s: Schedule, n: u64) -> u64 {
    pool.load_balanced()
        .schedule(s)
        .map(0..demo::pi_chunks(n), |c| {
            demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c))
        })
        .iter()
        .sum()
}

fn w_pi(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) -> PiReport {
    let n = o.pi_n;
    let nch = demo::pi_chunks(n);
    let reps = if o.quick {
        2
    } else if n > 200_000_000 {
        3
    } else {
        5
    };
    // the serial result is the reference; computed inside the first serial rep
    let reference: Rc<RefCell<Option<u64>>> = Rc::new(RefCell::new(None));
    let chk = |reference: Rc<RefCell<Option<u64>>>| {
        move |h: &u64| -> CheckResult {
            match *reference.borrow() {
                Some(w) if w == *h => Ok(format!("pi = {:.8}", demo::pi_from_hits(*h, n))),
                Some(w) => Err(format!("hits {h} != serial {w}")),
                None => Err("no serial reference".into()),
            }
        }
    };
    let r0 = reference.clone();
    let name = format!("pi n={n:.0e}");
    let vs = vec![
        fresh(
            "serial (demo::pi_serial)",
            Kind::Serial,
            ANY,
            move || {
                let h = demo::pi_serial(n).0;
                r0.borrow_mut().get_or_insert(h);
                h
            },
            chk(reference.clone()),
        ),
        fresh(
            "parview load-balanced adaptive",
            Kind::Parview,
            ANY,
            || pi_hits_lb(pool, Schedule::Adaptive, n),
            chk(reference.clone()),
        ),
        fresh(
            "parview load-balanced dynamic,1",
            Kind::Parview,
            ANY,
            || pi_hits_lb(pool, Schedule::Dynamic(1), n),
            chk(reference.clone()),
        ),
        fresh(
            "parview direct (static)",
            Kind::Parview,
            ANY,
            || {
                pool.direct()
                    .map(0..nch, |c| demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c)))
                    .iter()
                    .sum::<u64>()
            },
            chk(reference.clone()),
        ),
        fresh(
            "parview par_map_reduce dynamic,1",
            Kind::Parview,
            ANY,
            || {
                pool.schedule(Schedule::Dynamic(1))
                    .map_reduce_leaves(
                        1,
                        0..nch,
                        |c| demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c)),
                        |a, b| a + b,
                    )
                    .unwrap_or(0)
            },
            chk(reference.clone()),
        ),
        fresh(
            "rayon par_iter over chunks",
            Kind::Rayon,
            ANY,
            || {
                rp.install(|| {
                    (0..nch)
                        .into_par_iter()
                        .map(|c| demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c)))
                        .sum::<u64>()
                })
            },
            chk(reference.clone()),
        ),
    ];
    // the serial variant must run first in rep 0 so the others have a reference: rotation
    // starts with index 0 in round 0, which is the serial one.
    rows.extend(run_group(&name, 0, reps, vs));

    // reproducibility: estimate bits across pool sizes and all five schedules
    eprintln!("  pi: reproducibility across workers 1,2,3,8 x 5 schedules");
    let want = reference.borrow().expect("serial ran");
    let want_bits = demo::pi_from_hits(want, n).to_bits();
    let schedules = [
        Schedule::Static,
        Schedule::StaticChunked(3),
        Schedule::Dynamic(1),
        Schedule::Guided(1),
        Schedule::Adaptive,
    ];
    let mut bad = Vec::new();
    for w in [1usize, 2, 3, 8] {
        let p = Pool::builder().workers(w).build().expect("pool");
        for s in schedules {
            let est = demo::pi_from_hits(pi_hits_lb(&p, s, n), n);
            if est.to_bits() != want_bits {
                bad.push(format!("workers {w} {s}: {est}"));
            }
        }
    }
    // The float way: one parview::rng stream per block, per-block estimates summed in f64 by
    // the deterministic tree (a plain parallel float sum would depend on the split).
    let (blocks, per_block) = if o.quick {
        (20usize, 10_000u64)
    } else {
        (100, 100_000)
    };
    let one = Pool::builder().workers(1).build().expect("pool");
    let float_bits = pi_streams(&one, Schedule::Static, blocks, per_block).to_bits();
    let mut bad_float = Vec::new();
    for w in [1usize, 2, 3, 8] {
        let p = Pool::builder().workers(w).build().expect("pool");
        for s in schedules {
            let est = pi_streams(&p, s, blocks, per_block);
            if est.to_bits() != float_bits {
                bad_float.push(format!("workers {w} {s}: {est}"));
            }
        }
    }
    let float_line = if bad_float.is_empty() {
        format!(
            "pi from parview::rng block streams (seed 2017, {} samples) + deterministic f64 reduction: bit-identical across workers 1,2,3,8 and 5 schedules: yes (estimate {:.8}, bits {float_bits:#018x})",
            blocks as u64 * per_block,
            f64::from_bits(float_bits)
        )
    } else {
        format!(
            "pi from parview::rng block streams + deterministic f64 reduction: NOT bit-identical ({})",
            bad_float.join("; ")
        )
    };
    bad.extend(bad_float);
    PiReport {
        reproducible: bad.is_empty(),
        detail: format!(
            "{}\n{float_line}",
            if bad.is_empty() {
                format!(
                    "pi reproducible across workers 1,2,3,8 and 5 schedules: yes (estimate {:.8}, bits {:#018x}, n={n:.0e})",
                    f64::from_bits(want_bits),
                    want_bits
                )
            } else {
                format!(
                    "pi reproducible across workers 1,2,3,8 and 5 schedules: NO ({})",
                    bad.join("; ")
                )
            }
        ),
    }
}

/// Pi the way parview makes floats reproducible: one ChaCha8 stream per block from
/// `parview::rng` (keyed by the block, not by the thread) and a deterministic f64 reduction of
/// the per-block estimates (a fixed tree over leaves of 4 blocks).
fn pi_streams(pool: &Pool, s: Schedule, blocks: usize, per_block: u64) -> f64 {
    use rand::RngExt;
    let streams = parview::rng::Streams::new(2017);
    let sum = pool
        .schedule(s)
        .map_reduce_leaves(
            4,
            0..blocks,
            |b| {
                let mut rng = streams.for_block(b);
                let mut hits = 0u64;
                for _ in 0..per_block {
                    let x: f64 = rng.random();
                    let y: f64 = rng.random();
                    hits += u64::from(x * x + y * y <= 1.0);
                }
                4.0 * hits as f64 / per_block as f64
            },
            |a, b| a + b,
        )
        .expect("at least one block");
    sum / blocks as f64
}

// ------------------------------------------------------------------------- 2. gauss

fn w_gauss(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let n = if o.quick { 200_000 } else { demo::GAUSS_N };
    let g = demo::GAUSS_GAMMA;
    let (x, y) = demo::gauss_inputs(n);
    let mut want = vec![0.0; n];
    demo::gauss_serial_into(&x, &y, g, &mut want);
    let want_sum = demo::checksum(&want);
    let (x, y, want) = (&x, &y, &want);
    let chk = move |z: &Vec<f64>| -> CheckResult {
        same_bits(z, want)?;
        let s = demo::checksum(z);
        if s.to_bits() != want_sum.to_bits() {
            return Err(format!("checksum {s:.12e} != {want_sum:.12e}"));
        }
        Ok(format!("checksum {s:.12e} (bitwise)"))
    };
    let vs = vec![
        into_buf(
            "serial into buffer (demo::gauss_serial_into)",
            Kind::Serial,
            INTO,
            vec![0.0; n],
            move |z| demo::gauss_serial_into(x, y, g, z),
            chk,
        ),
        fresh(
            "serial collect",
            Kind::Serial,
            COLLECT,
            move || {
                x.iter()
                    .zip(y)
                    .map(|(&a, &b)| demo::gauss(a, b, g))
                    .collect::<Vec<f64>>()
            },
            chk,
        ),
        into_buf(
            "parview par_map_into static",
            Kind::Parview,
            INTO,
            vec![0.0; n],
            move |z| {
                pool.schedule(Schedule::Static)
                    .map_into((x, y), z, |(a, b)| demo::gauss(*a, *b, g))
            },
            chk,
        ),
        into_buf(
            "parview par_map_into adaptive",
            Kind::Parview,
            INTO,
            vec![0.0; n],
            move |z| pool.par_map_into((x, y), z, |(a, b)| demo::gauss(*a, *b, g)),
            chk,
        ),
        into_buf(
            "rayon par_iter_mut zip into buffer",
            Kind::Rayon,
            INTO,
            vec![0.0; n],
            move |z| {
                rp.install(|| {
                    z.par_iter_mut()
                        .zip(x.par_iter())
                        .zip(y.par_iter())
                        .for_each(|((z, &a), &b)| *z = demo::gauss(a, b, g))
                })
            },
            chk,
        ),
        fresh(
            "parview par_map adaptive (collect)",
            Kind::Parview,
            COLLECT,
            move || pool.par_map((x, y), |(a, b)| demo::gauss(*a, *b, g)),
            chk,
        ),
        fresh(
            "parview par_map static (collect)",
            Kind::Parview,
            COLLECT,
            move || {
                pool.schedule(Schedule::Static)
                    .map((x, y), |(a, b)| demo::gauss(*a, *b, g))
            },
            chk,
        ),
        fresh(
            "rayon collect",
            Kind::Rayon,
            COLLECT,
            move || {
                rp.install(|| {
                    x.par_iter()
                        .zip(y.par_iter())
                        .map(|(&a, &b)| demo::gauss(a, b, g))
                        .collect::<Vec<f64>>()
                })
            },
            chk,
        ),
    ];
    let reps = if o.quick { 2 } else { 7 };
    rows.extend(run_group(&format!("gauss n={n:.0e}"), 1, reps, vs));
}

// ------------------------------------------------------------------------- 3. inversions

fn inv_one(a: &Mat5) -> Mat5 {
    let mut o = [[0.0; 5]; 5];
    demo::invert5_into(a, &mut o);
    o
}

fn w_inv(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let n = if o.quick { 5_000 } else { demo::INV_N };
    let mats = demo::inv_inputs(n);
    let want = demo::inv_serial(&mats);
    let (mats, want) = (&mats, &want);
    let chk = move |got: &Vec<Mat5>| -> CheckResult {
        same_bits(flat5(got), flat5(want))?;
        let r = demo::inv_max_residual(mats, got, demo::INV_RESID_STRIDE);
        if r.is_nan() || r > 1e-9 {
            return Err(format!("max residual {r:.1e}"));
        }
        Ok(format!(
            "checksum {:.9e}, max resid {r:.1e} (every {}th)",
            demo::inv_checksum(got),
            demo::INV_RESID_STRIDE
        ))
    };
    let zero: Vec<Mat5> = vec![[[0.0; 5]; 5]; n];
    let vs = vec![
        fresh(
            "serial (demo::inv_serial)",
            Kind::Serial,
            COLLECT,
            move || demo::inv_serial(mats),
            chk,
        ),
        into_buf(
            "serial into buffer",
            Kind::Serial,
            INTO,
            zero.clone(),
            move |z| {
                for (a, o) in mats.iter().zip(z.iter_mut()) {
                    demo::invert5_into(a, o);
                }
            },
            chk,
        ),
        fresh(
            "parview par_map adaptive",
            Kind::Parview,
            COLLECT,
            move || pool.par_map(mats, inv_one),
            chk,
        ),
        fresh(
            "parview par_map static",
            Kind::Parview,
            COLLECT,
            move || pool.schedule(Schedule::Static).map(mats, inv_one),
            chk,
        ),
        fresh(
            "parview par_map dynamic,1024",
            Kind::Parview,
            COLLECT,
            move || pool.schedule(Schedule::Dynamic(1024)).map(mats, inv_one),
            chk,
        ),
        fresh(
            "rayon collect",
            Kind::Rayon,
            COLLECT,
            move || rp.install(|| mats.par_iter().map(inv_one).collect::<Vec<Mat5>>()),
            chk,
        ),
        into_buf(
            "parview par_map_into adaptive",
            Kind::Parview,
            INTO,
            zero.clone(),
            move |z| pool.par_map_into(mats, z, inv_one),
            chk,
        ),
        into_buf(
            "rayon zip into buffer",
            Kind::Rayon,
            INTO,
            zero,
            move |z| {
                rp.install(|| {
                    mats.par_iter().zip(z.par_iter_mut()).for_each(|(a, o)| {
                        demo::invert5_into(a, o);
                    })
                })
            },
            chk,
        ),
    ];
    let reps = if o.quick { 3 } else { 15 };
    rows.extend(run_group(&format!("inv 5x5 n={n:.0e}"), 2, reps, vs));
}

// ------------------------------------------------------------------------- 4. primes

struct PrimesReport {
    ideal: Duration,
    files: Vec<PathBuf>,
    write_error: Option<String>,
}

fn w_primes(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) -> PrimesReport {
    let all = demo::primes_inputs();
    let nums: Vec<u64> = if o.quick {
        // 4 primes then 4 composites: same shape (all work in the first half), ~40 ms serial
        all[..4].iter().chain(&all[32..36]).copied().collect()
    } else {
        all
    };
    let p = pool.workers();
    // reference results (one untimed pass)
    let want: Vec<bool> = nums.iter().map(|&v| demo::is_prime(v)).collect();
    // per-item serial times, recorded by a timed variant of its own inside the interleaved
    // reps, so that the ideal is measured under the same machine conditions as the maps
    let per_item: Rc<RefCell<Vec<Vec<Duration>>>> =
        Rc::new(RefCell::new(vec![Vec::new(); nums.len()]));
    let per_item_w = per_item.clone();
    let want_count = want.iter().filter(|&&b| b).count();
    let (nums, want) = (&nums, &want);
    let chk = move |got: &Vec<bool>| -> CheckResult {
        if got != want {
            return Err("per-item results differ".into());
        }
        Ok(format!("{} primes", got.iter().filter(|&&b| b).count()))
    };
    let vs = vec![
        fresh(
            "serial (demo::primes_serial)",
            Kind::Serial,
            ANY,
            move || demo::primes_serial(nums),
            move |&c: &usize| {
                if c == want_count {
                    Ok(format!("{c} primes"))
                } else {
                    Err(format!("{c} primes, want {want_count}"))
                }
            },
        ),
        fresh(
            "serial, each item timed (-> ideal)",
            Kind::Serial,
            "per-item",
            move || {
                let mut rec = per_item_w.borrow_mut();
                nums.iter()
                    .zip(rec.iter_mut())
                    .map(|(&v, d)| {
                        let t0 = Instant::now();
                        let r = demo::is_prime(black_box(v));
                        d.push(t0.elapsed());
                        r
                    })
                    .collect::<Vec<bool>>()
            },
            chk,
        ),
        fresh(
            "parview direct (static)",
            Kind::Parview,
            ANY,
            move || pool.direct().map(nums, |&v| demo::is_prime(v)),
            chk,
        ),
        fresh(
            "parview load-balanced dynamic,1",
            Kind::Parview,
            ANY,
            move || {
                pool.load_balanced()
                    .schedule(Schedule::Dynamic(1))
                    .map(nums, |&v| demo::is_prime(v))
            },
            chk,
        ),
        fresh(
            "parview load-balanced adaptive",
            Kind::Parview,
            ANY,
            move || pool.load_balanced().map(nums, |&v| demo::is_prime(v)),
            chk,
        ),
        fresh(
            "rayon par_iter map collect",
            Kind::Rayon,
            ANY,
            move || {
                rp.install(|| {
                    nums.par_iter()
                        .map(|&v| demo::is_prime(v))
                        .collect::<Vec<bool>>()
                })
            },
            chk,
        ),
    ];
    let reps = if o.quick { 2 } else { 5 };
    let mut group = run_group(&format!("primes n={}", nums.len()), 0, reps, vs);
    // ideal from the per-item medians over the reps
    let durs: Vec<Duration> = per_item
        .borrow()
        .iter()
        .map(|d| median(d.clone()))
        .collect();
    let ideal = demo::ideal_time(&durs, p);
    for r in &mut group {
        let over = (r.median.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0;
        r.note = format!("{}; {over:+.1}% vs ideal", r.note);
    }
    rows.extend(group);

    // timelines of the static and the load-balanced split
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
    PrimesReport {
        ideal,
        files,
        write_error,
    }
}

// ------------------------------------------------------------------------- 5. matrices

fn mean_in_task_order(ms: &[Mat10]) -> Mat10 {
    // exactly demo::avg_random_matrices_serial's arithmetic: sum in task order, then scale
    let mut acc = [[0.0f64; demo::D10]; demo::D10];
    for m in ms {
        for (a, v) in acc.iter_mut().flatten().zip(m.iter().flatten()) {
            *a += v;
        }
    }
    let inv = 1.0 / ms.len() as f64;
    for v in acc.iter_mut().flatten() {
        *v *= inv;
    }
    acc
}

fn add10(mut a: Mat10, b: Mat10) -> Mat10 {
    for (x, y) in a.iter_mut().flatten().zip(b.iter().flatten()) {
        *x += y;
    }
    a
}

fn w_avg(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let (tasks, count) = if o.quick {
        (8u64, 500usize)
    } else {
        (64u64, 4_000usize)
    };
    let want = demo::avg_random_matrices_serial(tasks, count);
    let want = &want;
    let exact = move |got: &Mat10| -> CheckResult {
        same_bits(flat10(got), flat10(want))?;
        Ok(format!("m[0][0] = {:.6} (bitwise)", got[0][0]))
    };
    let near = move |got: &Mat10| -> CheckResult {
        let d = flat10(got)
            .iter()
            .zip(flat10(want))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if d <= 1e-12 {
            Ok(format!("max |diff| {d:.1e} (tree order, tol 1e-12)"))
        } else {
            Err(format!("max |diff| {d:.1e} > 1e-12"))
        }
    };
    let task = move |t: u64| demo::avg_random_matrices(t, count);
    let vs = vec![
        fresh(
            "serial (demo::avg_random_matrices_serial)",
            Kind::Serial,
            ANY,
            move || demo::avg_random_matrices_serial(tasks, count),
            exact,
        ),
        fresh(
            "parview load-balanced adaptive",
            Kind::Parview,
            ANY,
            move || mean_in_task_order(&pool.load_balanced().map(0..tasks, task)),
            exact,
        ),
        fresh(
            "parview load-balanced dynamic,1",
            Kind::Parview,
            ANY,
            move || {
                mean_in_task_order(
                    &pool
                        .load_balanced()
                        .schedule(Schedule::Dynamic(1))
                        .map(0..tasks, task),
                )
            },
            exact,
        ),
        fresh(
            "parview direct (static)",
            Kind::Parview,
            ANY,
            move || mean_in_task_order(&pool.direct().map(0..tasks, task)),
            exact,
        ),
        fresh(
            "parview par_map_reduce (leaf 1)",
            Kind::Parview,
            ANY,
            move || {
                let mut s = pool
                    .schedule(Schedule::Dynamic(1))
                    .map_reduce_leaves(1, 0..tasks, task, add10)
                    .expect("tasks > 0");
                let inv = 1.0 / tasks as f64;
                s.iter_mut().flatten().for_each(|v| *v *= inv);
                s
            },
            near,
        ),
        fresh(
            "rayon par_iter map collect",
            Kind::Rayon,
            ANY,
            move || {
                mean_in_task_order(
                    &rp.install(|| (0..tasks).into_par_iter().map(task).collect::<Vec<_>>()),
                )
            },
            exact,
        ),
    ];
    let reps = if o.quick { 2 } else { 5 };
    rows.extend(run_group(
        &format!("avg matrices {tasks}x{count}"),
        0,
        reps,
        vs,
    ));
}

fn w_corr(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let n = if o.quick { 200 } else { demo::STATIONS_N };
    let data: Vec<Station> = demo::stations(n, 7);
    let want = demo::correlation_serial(&data);
    let (data, want) = (&data, &want);
    let chk = move |got: &Vec<f64>| -> CheckResult {
        same_bits(got, want)?;
        Ok(format!("{n}x{n}, symmetric (bitwise)"))
    };
    let vs = vec![
        fresh(
            "serial (demo::correlation_serial)",
            Kind::Serial,
            ANY,
            move || demo::correlation_serial(data),
            chk,
        ),
        fresh(
            "parview par_map rows + concat",
            Kind::Parview,
            ANY,
            move || {
                let s = demo::Standardized::new(data);
                pool.par_map(0..n, |i| demo::correlation_row(&s, i))
                    .concat()
            },
            chk,
        ),
        into_buf(
            "parview par_map over row slices (into)",
            Kind::Parview,
            ANY,
            vec![0.0; n * n],
            move |m| {
                let s = demo::Standardized::new(data);
                let rows: Vec<(usize, &mut [f64])> = m.chunks_exact_mut(n).enumerate().collect();
                pool.par_map(rows, |(i, row)| s.row_into(i, row));
            },
            chk,
        ),
        into_buf(
            "parview par_map_into over entries (adaptive)",
            Kind::Parview,
            ANY,
            vec![0.0; n * n],
            move |m| {
                let s = demo::Standardized::new(data);
                pool.par_map_into(0..n * n, m, |k| s.corr(k / n, k % n));
            },
            chk,
        ),
        into_buf(
            "rayon par_chunks_mut rows (into)",
            Kind::Rayon,
            ANY,
            vec![0.0; n * n],
            move |m| {
                let s = demo::Standardized::new(data);
                rp.install(|| {
                    m.par_chunks_mut(n)
                        .enumerate()
                        .for_each(|(i, row)| s.row_into(i, row))
                });
            },
            chk,
        ),
    ];
    let reps = if o.quick { 3 } else { 11 };
    rows.extend(run_group(&format!("correlation n={n}"), 1, reps, vs));
}

// ------------------------------------------------------------------------- targets

struct Target {
    what: String,
    measured: String,
    pass: Option<bool>,
    why: String,
}

/// The OpenMP static, 2-thread median of the gauss workload from the anchors' summary.
const OMP_GAUSS_STATIC_2T_MS: f64 = 28.00;

fn targets(rows: &[Row], o: &Opts, pi_name: &str, primes: Option<&PrimesReport>) -> Vec<Target> {
    let mut t = Vec::new();
    let primes_wl = rows
        .iter()
        .find(|r| r.workload.starts_with("primes"))
        .map(|r| r.workload.clone())
        .unwrap_or_default();
    let gauss_wl = rows
        .iter()
        .find(|r| r.workload.starts_with("gauss"))
        .map(|r| r.workload.clone())
        .unwrap_or_default();
    let inv_wl = rows
        .iter()
        .find(|r| r.workload.starts_with("inv"))
        .map(|r| r.workload.clone())
        .unwrap_or_default();
    let pi_note = if o.pi_n == 1_000_000_000 {
        String::new()
    } else {
        format!(
            "measured at n={:.0e}; the target is for 1e9 (--pi-n 1e9)",
            o.pi_n
        )
    };
    for (wl, v, extra) in [
        (pi_name, "parview load-balanced adaptive", pi_note.clone()),
        (pi_name, "parview load-balanced dynamic,1", pi_note.clone()),
        (
            primes_wl.as_str(),
            "parview load-balanced adaptive",
            String::new(),
        ),
        (
            primes_wl.as_str(),
            "parview load-balanced dynamic,1",
            String::new(),
        ),
    ] {
        let label = wl.split_whitespace().next().unwrap_or(wl);
        if let Some(r) = find(rows, wl, v) {
            let sp = r.speedup.unwrap_or(0.0);
            t.push(Target {
                what: format!("{label} {v} >= 1.97x serial"),
                measured: format!("{sp:.2}x"),
                pass: Some(sp >= 1.97),
                why: extra.clone(),
            });
            let ry = r.vs_rayon.unwrap_or(f64::INFINITY);
            t.push(Target {
                what: format!("{label} {v} <= rayon"),
                measured: format!("{ry:.3}x rayon"),
                pass: Some(ry <= 1.0),
                why: extra.clone(),
            });
        }
    }
    for v in [
        "parview load-balanced adaptive",
        "parview load-balanced dynamic,1",
    ] {
        if let (Some(r), Some(primes)) = (find(rows, &primes_wl, v), primes) {
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
    for v in [
        "parview par_map_into static",
        "parview par_map_into adaptive",
    ] {
        if let Some(r) = find(rows, &gauss_wl, v) {
            let ratio = ms(r.median) / OMP_GAUSS_STATIC_2T_MS;
            t.push(Target {
                what: format!("gauss {v} <= 1.03x OpenMP static"),
                measured: format!(
                    "{:.2} ms = {ratio:.3}x the anchors' omp-static 2-thread {OMP_GAUSS_STATIC_2T_MS:.2} ms",
                    ms(r.median)
                ),
                pass: (gauss_wl.contains("1e7")).then_some(ratio <= 1.03),
                why: "OpenMP is not run here: figure from anchors/results/summary.txt (gcc -O3 -march=native)"
                    .into(),
            });
        }
    }
    if let Some(r) = find(rows, &gauss_wl, "parview par_map adaptive (collect)") {
        let ry = r.vs_rayon.unwrap_or(f64::INFINITY);
        t.push(Target {
            what: "gauss par_map adaptive (collect) <= rayon collect".into(),
            measured: format!("{ry:.3}x rayon ({:.2} ms)", ms(r.median)),
            pass: Some(ry <= 1.0),
            why: String::new(),
        });
    }
    for v in [
        "parview par_map adaptive",
        "parview par_map static",
        "parview par_map dynamic,1024",
    ] {
        if let Some(r) = find(rows, &inv_wl, v) {
            let sp = r.speedup.unwrap_or(0.0);
            t.push(Target {
                what: format!("inv {v} >= 1.9x serial"),
                measured: format!("{sp:.2}x"),
                pass: Some(sp >= 1.9),
                why: String::new(),
            });
        }
    }
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

// ------------------------------------------------------------------------- main

fn main() {
    let o = parse_opts();
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
    // warm up both pools (thread start-up, first steals)
    for _ in 0..100 {
        black_box(pool.par_map(0..10_000u64, |i| i * 2 + 1));
        black_box(rp.install(|| {
            (0..10_000u64)
                .into_par_iter()
                .map(|i| i * 2 + 1)
                .sum::<u64>()
        }));
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let started = Instant::now();
    eprintln!(
        "parview tour: {} workers (rayon {}), {} logical CPUs ({cpu}){}",
        pool.workers(),
        rp.current_num_threads(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if o.quick { ", --quick" } else { "" }
    );

    let mut rows = Vec::new();
    let pi = o.runs("pi").then(|| w_pi(&o, &pool, &rp, &mut rows));
    let pi_name = rows.first().map(|r| r.workload.clone()).unwrap_or_default();
    if o.runs("gauss") {
        w_gauss(&o, &pool, &rp, &mut rows);
    }
    if o.runs("inv") {
        w_inv(&o, &pool, &rp, &mut rows);
    }
    let primes = o
        .runs("primes")
        .then(|| w_primes(&o, &pool, &rp, &mut rows));
    if o.runs("avg") {
        w_avg(&o, &pool, &rp, &mut rows);
    }
    if o.runs("corr") {
        w_corr(&o, &pool, &rp, &mut rows);
    }

    println!(
        "parview tour: {} workers, rayon {} threads, {cpu}; median of interleaved reps{}",
        pool.workers(),
        rp.current_num_threads(),
        if o.quick {
            " (--quick: tiny sizes, timings meaningless)"
        } else {
            ""
        }
    );
    println!(
        "vs serial = serial time (same output style: into buffer / collect) / time; vs rayon = time / rayon time (same style)"
    );
    println!(
        "bg = share of the machine's CPUs used by other processes while the variant ran (above ~0.05: disturbed)"
    );
    println!();
    print_table(&rows);
    let worst = rows.iter().map(|r| r.bg).fold(0.0, f64::max);
    if worst > 0.05 {
        println!(
            "WARNING: other processes used up to {:.0}% of the CPUs while variants ran (bg column): \
             those timings are disturbed; re-run when `uptime` shows a low load",
            worst * 100.0
        );
    }
    println!();
    if let Some(pi) = &pi {
        println!("{}", pi.detail);
    }
    if let Some(primes) = &primes {
        println!(
            "primes ideal = max(total/{}, longest item) from per-item serial times: {:.1} ms",
            pool.workers(),
            ms(primes.ideal)
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
    println!();
    println!("targets ({} workers):", pool.workers());
    let ts = targets(&rows, &o, &pi_name, primes.as_ref());
    let tw = ts.iter().map(|t| t.what.len()).max().unwrap_or(0);
    let mw = ts.iter().map(|t| t.measured.len()).max().unwrap_or(0);
    for t in &ts {
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
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.ok).collect();
    let reproducible = pi.as_ref().is_none_or(|p| p.reproducible);
    let written = primes.as_ref().is_none_or(|p| p.write_error.is_none());
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
    if !failed.is_empty() || !reproducible || !written {
        for r in failed {
            eprintln!("MISMATCH: {} / {}: {}", r.workload, r.variant, r.note);
        }
        std::process::exit(1);
    }
}
