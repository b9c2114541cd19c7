//! 2. Gaussian kernel: `z[i] = exp(-gamma * (x[i] - y[i])^2)` over two input vectors — the
//!    cheapest item there is, so this measures the per-item cost of a map. Written into a
//!    caller's buffer (`into`) and collected into a fresh `Vec` (`collect`); both checked bit
//!    for bit against the serial loop. OpenMP (`demo/c/omp.c`) writes into a buffer.

use crate::opts::Opts;
use crate::timing::{COLLECT, CheckResult, INTO, Kind, Row, Variant, fresh, into_buf, run_group};
use parview::{Pool, Schedule};
use parview_demo as demo;
use parview_demo::omp::{self, OmpSchedule};
use rayon::prelude::*;

/// The two input vectors and the kernel's gamma.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    x: &'a [f64],
    y: &'a [f64],
    g: f64,
}

pub fn run(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let n = if o.quick { 200_000 } else { demo::GAUSS_N };
    let g = demo::GAUSS_GAMMA;
    let (x, y) = demo::gauss_inputs(n);
    let mut want = vec![0.0; n];
    demo::gauss_serial_into(&x, &y, g, &mut want);
    let want_sum = demo::checksum(&want);
    let want = &want;
    let chk = move |z: &Vec<f64>| -> CheckResult {
        crate::timing::same_bits(z, want)?;
        let s = demo::checksum(z);
        if s.to_bits() != want_sum.to_bits() {
            return Err(format!("checksum {s:.12e} != {want_sum:.12e}"));
        }
        Ok(format!("checksum {s:.12e} (bitwise)"))
    };
    let inp = Inputs { x: &x, y: &y, g };
    let mut vs = serial_variants(inp, chk);
    vs.extend(into_variants(inp, pool, rp, chk));
    vs.extend(collect_variants(inp, pool, rp, chk));
    if o.openmp {
        vs.extend(omp_variants(inp, chk));
    }
    let reps = if o.quick { 2 } else { 7 };
    rows.extend(run_group(&format!("gauss n={n:.0e}"), 1, reps, vs));
}

fn serial_variants<'a>(
    inp: Inputs<'a>,
    chk: impl Fn(&Vec<f64>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let Inputs { x, y, g } = inp;
    vec![
        into_buf(
            "serial into buffer (demo::gauss_serial_into)",
            Kind::Serial,
            INTO,
            vec![0.0; x.len()],
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
    ]
}

/// Into a buffer the variant owns across reps.
fn into_variants<'a>(
    inp: Inputs<'a>,
    pool: &'a Pool,
    rp: &'a rayon::ThreadPool,
    chk: impl Fn(&Vec<f64>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let Inputs { x, y, g } = inp;
    let n = x.len();
    vec![
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
    ]
}

/// A fresh `Vec` per rep.
fn collect_variants<'a>(
    inp: Inputs<'a>,
    pool: &'a Pool,
    rp: &'a rayon::ThreadPool,
    chk: impl Fn(&Vec<f64>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let Inputs { x, y, g } = inp;
    vec![
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
    ]
}

/// OpenMP's loop into a buffer the variant owns across reps, static and dynamic,1024.
fn omp_variants<'a>(
    inp: Inputs<'a>,
    chk: impl Fn(&Vec<f64>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let Inputs { x, y, g } = inp;
    [OmpSchedule::Static, OmpSchedule::Dynamic(1024)]
        .into_iter()
        .map(|s| {
            into_buf(
                format!("OpenMP for {s} into buffer"),
                Kind::OpenMp,
                INTO,
                vec![0.0; x.len()],
                move |z| omp::gauss_into(x, y, g, z, s),
                chk,
            )
        })
        .collect()
}
