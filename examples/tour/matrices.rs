//! 5. Averaging random matrices: each task draws `count` random 10x10 matrices from its own
//!    seed and averages them; the tasks' averages are averaged in task order — bit for bit the
//!    serial arithmetic. The `par_map_reduce` variant adds in a tree instead, so it is checked
//!    to a tolerance.

use crate::opts::Opts;
use crate::timing::{ANY, CheckResult, Kind, Row, Variant, fresh, run_group, same_bits};
use parview::{Pool, Schedule};
use parview_demo::{self as demo, Mat10};
use rayon::prelude::*;

fn flat10(m: &Mat10) -> &[f64] {
    m.as_flattened()
}

/// Exactly `demo::avg_random_matrices_serial`'s arithmetic: sum in task order, then scale.
fn mean_in_task_order(ms: &[Mat10]) -> Mat10 {
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

/// Bit for bit the serial result.
fn exact(want: &Mat10) -> impl Fn(&Mat10) -> CheckResult + Copy + '_ {
    move |got: &Mat10| -> CheckResult {
        same_bits(flat10(got), flat10(want))?;
        Ok(format!("m[0][0] = {:.6} (bitwise)", got[0][0]))
    }
}

/// Within 1e-12 of the serial result (a different order of additions).
fn near(want: &Mat10) -> impl Fn(&Mat10) -> CheckResult + Copy + '_ {
    move |got: &Mat10| -> CheckResult {
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
    }
}

pub fn run(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let (tasks, count) = if o.quick {
        (8u64, 500usize)
    } else {
        (64u64, 4_000usize)
    };
    let want = demo::avg_random_matrices_serial(tasks, count);
    let mut vs = vec![fresh(
        "serial (demo::avg_random_matrices_serial)",
        Kind::Serial,
        ANY,
        move || demo::avg_random_matrices_serial(tasks, count),
        exact(&want),
    )];
    vs.extend(map_variants(tasks, count, pool, &want));
    vs.push(reduce_variant(tasks, count, pool, &want));
    vs.push(rayon_variant(tasks, count, rp, &want));
    let reps = if o.quick { 2 } else { 5 };
    rows.extend(run_group(
        &format!("avg matrices {tasks}x{count}"),
        0,
        reps,
        vs,
    ));
}

/// The three maps whose results are averaged in task order: bit for bit the serial result.
fn map_variants<'a>(tasks: u64, count: usize, pool: &'a Pool, want: &'a Mat10) -> Vec<Variant<'a>> {
    let task = move |t: u64| demo::avg_random_matrices(t, count);
    let adaptive = move || mean_in_task_order(&pool.load_balanced().map(0..tasks, task));
    let dynamic = move || {
        let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
        mean_in_task_order(&lb.map(0..tasks, task))
    };
    let direct = move || mean_in_task_order(&pool.direct().map(0..tasks, task));
    vec![
        fresh(
            "parview load-balanced adaptive",
            Kind::Parview,
            ANY,
            adaptive,
            exact(want),
        ),
        fresh(
            "parview load-balanced dynamic,1",
            Kind::Parview,
            ANY,
            dynamic,
            exact(want),
        ),
        fresh(
            "parview direct (static)",
            Kind::Parview,
            ANY,
            direct,
            exact(want),
        ),
    ]
}

/// A tree reduction of the task matrices, then scaled: another order of additions.
fn reduce_variant<'a>(tasks: u64, count: usize, pool: &'a Pool, want: &'a Mat10) -> Variant<'a> {
    let task = move |t: u64| demo::avg_random_matrices(t, count);
    let reduce = move || {
        let mut s = pool
            .schedule(Schedule::Dynamic(1))
            .map_reduce_leaves(1, 0..tasks, task, add10)
            .expect("tasks > 0");
        let inv = 1.0 / tasks as f64;
        s.iter_mut().flatten().for_each(|v| *v *= inv);
        s
    };
    fresh(
        "parview par_map_reduce (leaf 1)",
        Kind::Parview,
        ANY,
        reduce,
        near(want),
    )
}

fn rayon_variant<'a>(
    tasks: u64,
    count: usize,
    rp: &'a rayon::ThreadPool,
    want: &'a Mat10,
) -> Variant<'a> {
    let task = move |t: u64| demo::avg_random_matrices(t, count);
    let rayon = move || {
        mean_in_task_order(&rp.install(|| (0..tasks).into_par_iter().map(task).collect::<Vec<_>>()))
    };
    fresh(
        "rayon par_iter map collect",
        Kind::Rayon,
        ANY,
        rayon,
        exact(want),
    )
}
