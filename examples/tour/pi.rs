//! 1. Monte-Carlo pi: `n` samples in chunks of `demo::PI_CHUNK`, each chunk with its own
//!    random stream, hits summed as integers — so every variant must match the serial count
//!    exactly. Then the reproducibility lines: the same estimate bits from pools of 1, 2, 3
//!    and 8 workers under five schedules, and the float way (`parview::rng` block streams and
//!    a deterministic f64 reduction).

use crate::opts::Opts;
use crate::timing::{ANY, CheckResult, Kind, Row, Variant, fresh, run_group};
use parview::{Pool, Schedule};
use parview_demo as demo;
use parview_demo::omp::{self, OmpSchedule};
use rayon::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// The schedules the reproducibility lines compare.
const SCHEDULES: [Schedule; 5] = [
    Schedule::Static,
    Schedule::StaticChunked(3),
    Schedule::Dynamic(1),
    Schedule::Guided(1),
    Schedule::Adaptive,
];

/// The pool sizes the reproducibility lines compare.
const WORKERS: [usize; 4] = [1, 2, 3, 8];

/// What the pi workload reports besides its rows.
pub struct PiReport {
    /// Every pool size and schedule gave the same bits.
    pub reproducible: bool,
    /// The two reproducibility lines.
    pub detail: String,
}

/// The serial hit count: the reference, recorded by the first serial rep.
type Reference = Rc<RefCell<Option<u64>>>;

/// Hits of chunk `c` of an `n`-sample run.
fn chunk_hits(n: u64, c: u64) -> u64 {
    demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c))
}

/// Total hits, the chunks mapped on a load-balanced view with schedule `s`.
fn pi_hits_lb(pool: &Pool, s: Schedule, n: u64) -> u64 {
    pool.load_balanced()
        .schedule(s)
        .map(0..demo::pi_chunks(n), |c| chunk_hits(n, c))
        .iter()
        .sum()
}

/// Checks a hit count against the serial reference.
fn check(reference: &Reference, n: u64) -> impl Fn(&u64) -> CheckResult + 'static {
    let reference = reference.clone();
    move |h: &u64| -> CheckResult {
        match *reference.borrow() {
            Some(w) if w == *h => Ok(format!("pi = {:.8}", demo::pi_from_hits(*h, n))),
            Some(w) => Err(format!("hits {h} != serial {w}")),
            None => Err("no serial reference".into()),
        }
    }
}

/// Times the variants (serial, parview, rayon, OpenMP) and checks the reproducibility.
pub fn run(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) -> PiReport {
    let n = o.pi_n;
    let reps = if o.quick {
        2
    } else if n > 200_000_000 {
        3
    } else {
        5
    };
    let reference = Reference::default();
    let mut vs = vec![serial(n, &reference)];
    vs.extend(parview_variants(pool, n, &reference));
    vs.push(rayon_variant(rp, n, &reference));
    if o.openmp {
        vs.extend(omp_variants(n, &reference));
    }
    // the serial variant must run first in rep 0 so the others have a reference: rotation
    // starts with index 0 in round 0, which is the serial one.
    rows.extend(run_group(&format!("pi n={n:.0e}"), 0, reps, vs));

    eprintln!("  pi: reproducibility across workers 1,2,3,8 x 5 schedules");
    let want = reference.borrow().expect("serial ran");
    reproducibility(o, n, want)
}

/// The serial driver; its first rep records the reference.
fn serial(n: u64, reference: &Reference) -> Variant<'static> {
    let r0 = reference.clone();
    let run = move || {
        let h = demo::pi_serial(n).0;
        r0.borrow_mut().get_or_insert(h);
        h
    };
    fresh(
        "serial (demo::pi_serial)",
        Kind::Serial,
        ANY,
        run,
        check(reference, n),
    )
}

fn parview_variants<'a>(pool: &'a Pool, n: u64, reference: &Reference) -> Vec<Variant<'a>> {
    let nch = demo::pi_chunks(n);
    let lb = |name: &str, s: Schedule| {
        let run = move || pi_hits_lb(pool, s, n);
        fresh(name, Kind::Parview, ANY, run, check(reference, n))
    };
    let direct = move || {
        pool.direct()
            .map(0..nch, |c| chunk_hits(n, c))
            .iter()
            .sum::<u64>()
    };
    let reduce = move || {
        pool.schedule(Schedule::Dynamic(1))
            .map_reduce_leaves(1, 0..nch, |c| chunk_hits(n, c), |a, b| a + b)
            .unwrap_or(0)
    };
    vec![
        lb("parview load-balanced adaptive", Schedule::Adaptive),
        lb("parview load-balanced dynamic,1", Schedule::Dynamic(1)),
        fresh(
            "parview direct (static)",
            Kind::Parview,
            ANY,
            direct,
            check(reference, n),
        ),
        fresh(
            "parview par_map_reduce dynamic,1",
            Kind::Parview,
            ANY,
            reduce,
            check(reference, n),
        ),
    ]
}

fn rayon_variant<'a>(rp: &'a rayon::ThreadPool, n: u64, reference: &Reference) -> Variant<'a> {
    let nch = demo::pi_chunks(n);
    let run = move || {
        rp.install(|| {
            (0..nch)
                .into_par_iter()
                .map(|c| chunk_hits(n, c))
                .sum::<u64>()
        })
    };
    fresh(
        "rayon par_iter over chunks",
        Kind::Rayon,
        ANY,
        run,
        check(reference, n),
    )
}

/// OpenMP's loop over the same chunks (`demo/c/omp.c`), with a static and a dynamic,1
/// schedule.
fn omp_variants(n: u64, reference: &Reference) -> Vec<Variant<'static>> {
    [OmpSchedule::Static, OmpSchedule::Dynamic(1)]
        .into_iter()
        .map(|s| {
            fresh(
                format!("OpenMP for over chunks {s}"),
                Kind::OpenMp,
                ANY,
                move || omp::pi_hits(n, s),
                check(reference, n),
            )
        })
        .collect()
}

/// The estimate from integer hits on every pool size and schedule, against `want_bits`.
fn hit_mismatches(n: u64, want_bits: u64) -> Vec<String> {
    let mut bad = Vec::new();
    for w in WORKERS {
        let p = Pool::builder().workers(w).build().expect("pool");
        for s in SCHEDULES {
            let est = demo::pi_from_hits(pi_hits_lb(&p, s, n), n);
            if est.to_bits() != want_bits {
                bad.push(format!("workers {w} {s}: {est}"));
            }
        }
    }
    bad
}

/// The estimate from [`pi_streams`] on every pool size and schedule, against `float_bits`.
fn float_mismatches(blocks: usize, per_block: u64, float_bits: u64) -> Vec<String> {
    let mut bad = Vec::new();
    for w in WORKERS {
        let p = Pool::builder().workers(w).build().expect("pool");
        for s in SCHEDULES {
            let est = pi_streams(&p, s, blocks, per_block);
            if est.to_bits() != float_bits {
                bad.push(format!("workers {w} {s}: {est}"));
            }
        }
    }
    bad
}

/// Both reproducibility checks, and their two lines.
fn reproducibility(o: &Opts, n: u64, want: u64) -> PiReport {
    let want_bits = demo::pi_from_hits(want, n).to_bits();
    let mut bad = hit_mismatches(n, want_bits);
    // The float way: one parview::rng stream per block, per-block estimates summed in f64 by
    // the deterministic tree (a plain parallel float sum would depend on the split).
    let (blocks, per_block) = if o.quick {
        (20usize, 10_000u64)
    } else {
        (100, 100_000)
    };
    let one = Pool::builder().workers(1).build().expect("pool");
    let float_bits = pi_streams(&one, Schedule::Static, blocks, per_block).to_bits();
    let bad_float = float_mismatches(blocks, per_block, float_bits);
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
    let hits_line = if bad.is_empty() {
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
    };
    PiReport {
        reproducible: bad.is_empty(),
        detail: format!("{hits_line}\n{float_line}"),
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
