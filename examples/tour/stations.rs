//! 6. A correlation matrix: the hourly series of `n` weather stations, standardised once, and
//!    the `n x n` matrix of their correlations — row by row, or entry by entry into one
//!    buffer. Checked bit for bit against the serial matrix.

use crate::opts::Opts;
use crate::timing::{ANY, CheckResult, Kind, Row, Variant, fresh, into_buf, run_group, same_bits};
use parview::Pool;
use parview_demo::{self as demo, Station};
use rayon::prelude::*;

pub fn run(o: &Opts, pool: &Pool, rp: &rayon::ThreadPool, rows: &mut Vec<Row>) {
    let n = if o.quick { 200 } else { demo::STATIONS_N };
    let data: Vec<Station> = demo::stations(n, 7);
    let want = demo::correlation_serial(&data);
    let want = &want;
    let chk = move |got: &Vec<f64>| -> CheckResult {
        same_bits(got, want)?;
        Ok(format!("{n}x{n}, symmetric (bitwise)"))
    };
    let data = &data[..];
    let mut vs = vec![fresh(
        "serial (demo::correlation_serial)",
        Kind::Serial,
        ANY,
        move || demo::correlation_serial(data),
        chk,
    )];
    vs.extend(parview_variants(data, pool, chk));
    vs.push(into_buf(
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
    ));
    let reps = if o.quick { 3 } else { 11 };
    rows.extend(run_group(&format!("correlation n={n}"), 1, reps, vs));
}

fn parview_variants<'a>(
    data: &'a [Station],
    pool: &'a Pool,
    chk: impl Fn(&Vec<f64>) -> CheckResult + Copy + 'a,
) -> Vec<Variant<'a>> {
    let n = data.len();
    vec![
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
    ]
}
