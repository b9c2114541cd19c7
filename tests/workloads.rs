//! Each workload our users bring, at a small size, computed in parallel through parview's
//! calls (free functions, both views, the shared schedules, 3 workers on purpose) and checked
//! against its serial version from `parview_demo`: bit for bit where the computation per item
//! is the same, which is everywhere here (results are assembled in input order).

mod common;

use common::SCHEDULES;
use parview::{Pool, Schedule};
use parview_demo as demo;

fn pool() -> Pool {
    Pool::builder().workers(3).build().unwrap()
}

#[test]
fn monte_carlo_pi_matches_serial() {
    let pool = pool();
    let n = 3 * demo::PI_CHUNK + 12_345; // a short last chunk
    let (hits, est) = demo::pi_serial(n);
    let chunks = demo::pi_chunks(n);
    for s in SCHEDULES {
        let par: u64 = pool
            .schedule(s)
            .map(0..chunks, |c| {
                demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c))
            })
            .iter()
            .sum();
        assert_eq!(par, hits, "{s}");
    }
    let lb: u64 = pool
        .load_balanced()
        .map(0..chunks, |c| {
            demo::pi_chunk_hits(c, demo::pi_chunk_len(n, c))
        })
        .iter()
        .sum();
    assert_eq!(demo::pi_from_hits(lb, n).to_bits(), est.to_bits());
    assert!((est - std::f64::consts::PI).abs() < 0.01);
}

#[test]
fn gaussian_kernel_matches_serial_bitwise() {
    let pool = pool();
    let n = 100_003;
    let (x, y) = demo::gauss_inputs(n);
    let mut want = vec![0.0; n];
    demo::gauss_serial_into(&x, &y, demo::GAUSS_GAMMA, &mut want);
    let g = demo::GAUSS_GAMMA;
    for s in SCHEDULES {
        let mut z = vec![f64::NAN; n];
        pool.schedule(s)
            .map_into((&x, &y), &mut z, |(a, b)| demo::gauss(*a, *b, g));
        assert!(
            z.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{s}"
        );
    }
    let collected = parview::par_map((&x, &y), |(a, b)| demo::gauss(*a, *b, g));
    assert_eq!(
        demo::checksum(&collected).to_bits(),
        demo::checksum(&want).to_bits()
    );
    let direct = pool.direct().map(0..n, |i| demo::gauss(x[i], y[i], g));
    assert_eq!(direct, want);
}

#[test]
fn small_inversions_match_serial_bitwise() {
    let pool = pool();
    let mats = demo::inv_inputs(2_000);
    let want = demo::inv_serial(&mats);
    for s in SCHEDULES {
        let got = pool.schedule(s).map(&mats, |m| {
            let mut out = [[0.0; 5]; 5];
            demo::invert5_into(m, &mut out);
            out
        });
        assert!(
            got.iter()
                .flatten()
                .flatten()
                .zip(want.iter().flatten().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{s}"
        );
    }
    assert!(demo::inv_max_residual(&mats, &want, 7) < 1e-9);
}

#[test]
fn uneven_primes_match_serial_on_every_view() {
    let pool = pool();
    // The full table takes ~0.3 s serial in release; in debug use a slice of primes and
    // composites (still uneven: the primes cost far more than the composites).
    let all = demo::primes_inputs();
    let nums: Vec<u64> = all[..4].iter().chain(&all[32..44]).copied().collect();
    let want: Vec<bool> = nums.iter().map(|&n| demo::is_prime(n)).collect();
    assert_eq!(want.iter().filter(|&&p| p).count(), 4);
    assert_eq!(pool.direct().map(&nums, |&n| demo::is_prime(n)), want);
    for s in [Schedule::Dynamic(1), Schedule::Adaptive] {
        let lb = pool.load_balanced().schedule(s);
        assert_eq!(lb.map(&nums, |&n| demo::is_prime(n)), want, "{s}");
    }
    assert_eq!(demo::primes_serial(&nums), 4);
}

#[test]
fn averaged_random_matrices_match_serial_bitwise() {
    let pool = pool();
    let (tasks, count) = (12u64, 50usize);
    let want = demo::avg_random_matrices_serial(tasks, count);
    // Combine the per-task means in task order exactly as the serial driver does (sum, then
    // scale by 1/tasks): the parallel part is the per-task work, so the bits must agree.
    let per_task = pool
        .load_balanced()
        .map(0..tasks, |t| demo::avg_random_matrices(t, count));
    let mut acc = [[0.0f64; 10]; 10];
    for m in &per_task {
        for (a, v) in acc.iter_mut().flatten().zip(m.iter().flatten()) {
            *a += v;
        }
    }
    let inv = 1.0 / tasks as f64;
    acc.iter_mut().flatten().for_each(|v| *v *= inv);
    assert!(
        acc.iter()
            .flatten()
            .zip(want.iter().flatten())
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "parallel {acc:?} vs serial {want:?}"
    );
}

#[test]
fn correlation_matrix_matches_serial_bitwise() {
    let pool = pool();
    let data = demo::stations(150, 7);
    let want = demo::correlation_serial(&data);
    let std = demo::Standardized::new(&data);
    let rows = pool.par_map(0..data.len(), |i| demo::correlation_row(&std, i));
    let got: Vec<f64> = rows.into_iter().flatten().collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    // Per engine: rows scattered over a DirectView.
    let n = data.len();
    let pieces = pool
        .direct()
        .scatter_gather(&(0..n).collect::<Vec<_>>(), |_, rows| {
            rows.iter()
                .flat_map(|&i| demo::correlation_row(&std, i))
                .collect::<Vec<_>>()
        });
    let got: Vec<f64> = pieces.into_iter().flatten().collect();
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
