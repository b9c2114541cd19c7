//! 3. Inverting many small (5x5) matrices: a short, even item — the classic `par_map`. Every
//!    result is checked bit for bit against the serial loop, and every 97th by its residual.
//!    OpenMP (`demo/c/omp.c`) writes into a buffer.

use crate::opts::Opts;
use crate::timing::{COLLECT, CheckResult, INTO, Kind, Row, Variant, fresh, into_buf, run_group};
use parview::{Pool, Schedule};
use parview_demo::omp::{self, OmpSchedule};
use parview_demo::{self as demo, Mat5};
use rayon::prelude::*;

fn flat5(m: &[Mat5]) -> &[f64] {
    m.as_flattened().as_flattened()
}

fn inv_one(a: &Mat5) -> Mat5 {
    let mut o = [[0.0; 5]; 5];
    demo::invert5_into(a, &mut o);
    o
}

pub fn run(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let n = if o.quick { 5_000 } else { demo::INV_N };
    let mats = demo::inv_inputs(n);
    let want = demo::inv_serial(&mats);
    let (mats, want) = (&mats[..], &want);
    let chk = move |got: &Vec<Mat5>| -> CheckResult {
        crate::timing::same_bits(flat5(got), flat5(want))?;
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
    let mut vs = serial_variants(mats, chk);
    vs.extend(collect_variants(mats, pool, rp, chk));
    vs.extend(into_variants(mats, pool, rp, chk));
    if o.openmp {
        vs.extend(omp_variants(mats, chk));
    }
    let reps = if o.quick { 3 } else { 15 };
    rows.extend(run_group(&format!("inv 5x5 n={n:.0e}"), 2, reps, vs));
}

fn serial_variants<'a>(
    mats: &'a [Mat5],
    chk: impl Fn(&Vec<Mat5>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    vec![
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
            vec![[[0.0; 5]; 5]; mats.len()],
            move |z| {
                for (a, o) in mats.iter().zip(z.iter_mut()) {
                    demo::invert5_into(a, o);
                }
            },
            chk,
        ),
    ]
}

/// A fresh `Vec` per rep.
fn collect_variants<'a>(
    mats: &'a [Mat5],
    pool: &'a Pool,
    rp: &'a rayon::ThreadPool,
    chk: impl Fn(&Vec<Mat5>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let par = |name: &str, s: Schedule| {
        let run = move || pool.schedule(s).map(mats, inv_one);
        fresh(name, Kind::Parview, COLLECT, run, chk)
    };
    vec![
        fresh(
            "parview par_map adaptive",
            Kind::Parview,
            COLLECT,
            move || pool.par_map(mats, inv_one),
            chk,
        ),
        par("parview par_map static", Schedule::Static),
        par("parview par_map dynamic,1024", Schedule::Dynamic(1024)),
        fresh(
            "rayon collect",
            Kind::Rayon,
            COLLECT,
            move || rp.install(|| mats.par_iter().map(inv_one).collect::<Vec<Mat5>>()),
            chk,
        ),
    ]
}

/// Into a buffer the variant owns across reps.
fn into_variants<'a>(
    mats: &'a [Mat5],
    pool: &'a Pool,
    rp: &'a rayon::ThreadPool,
    chk: impl Fn(&Vec<Mat5>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let zero: Vec<Mat5> = vec![[[0.0; 5]; 5]; mats.len()];
    vec![
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
    ]
}

/// OpenMP's loop into a buffer the variant owns across reps, static and dynamic,1024.
fn omp_variants<'a>(
    mats: &'a [Mat5],
    chk: impl Fn(&Vec<Mat5>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    [OmpSchedule::Static, OmpSchedule::Dynamic(1024)]
        .into_iter()
        .map(|s| {
            into_buf(
                format!("OpenMP for {s} into buffer"),
                Kind::OpenMp,
                INTO,
                vec![[[0.0; 5]; 5]; mats.len()],
                move |z| omp::inv_into(mats, z, s),
                chk,
            )
        })
        .collect()
}
