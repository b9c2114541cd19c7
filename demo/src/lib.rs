//! (The `parview-demo` crate: benchmark and example support, not part of parview's API;
//! `publish = false`, like rayon's `rayon-demo`.)
//!
//! Serial reference kernels, deterministic input generators and correctness checks
//! for the workloads parview is benchmarked on.
//!
//! Every workload is split into a **per-item or per-chunk kernel** that can be called
//! on any index independently (so a parallel map can hand indices to any engine in any
//! order), plus a **serial driver** that simply loops over all of them. The parallel
//! versions are `map`s over the same kernels, so a parallel result must equal the
//! serial one bit for bit (up to the reduction order, which the checks below fix).
//!
//! The inputs reproduce those of the reference programs in `anchors/` (rayon and
//! OpenMP), so the checksums can be compared with theirs:
//!
//! | workload | kernel | serial driver | check |
//! | --- | --- | --- | --- |
//! | Monte-Carlo pi | [`pi_chunk_hits`] | [`pi_serial`] | [`pi_from_hits`] |
//! | Gaussian kernel | [`gauss`] | [`gauss_serial_into`] | [`checksum`] |
//! | 5x5 inversions | [`invert5`], [`invert5_into`] | [`inv_serial`] | [`inv_checksum`], [`inv_max_residual`] |
//! | uneven primes | [`is_prime`] | [`primes_serial`] | count = 32, [`ideal_time`] |
//! | random matrices | [`avg_random_matrices`] | [`avg_random_matrices_serial`] | mean -> (10/3) I |
//! | station correlations | [`correlation_row`], [`Standardized::row_into`] | [`correlation_serial`] | symmetric, unit diagonal |
//! | streamed text lines | [`line_stats`] over [`text_line`] | a fold of [`line_stats`] | equal tuples |
//!
//! [`omp`] has OpenMP versions of the same kernels (C, built by `build.rs`), for runs side by
//! side with parview and rayon in one process.
//!
//! Nothing here allocates per item; kernels that produce more than a scalar have an
//! `_into` variant writing into a caller-provided slot.

pub mod omp;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::time::Duration;

// ------------------------------------------------------------------ shared hash

/// SplitMix64 finalizer applied to `(k + 1) * 0x9E37_79B9_7F4A_7C15`: a counter-based
/// hash, the shared input generator of the anchor programs (Rust, C and Python).
///
/// ```
/// use parview_demo::splitmix64;
/// assert_eq!(splitmix64(7), splitmix64(7));
/// assert_ne!(splitmix64(0), splitmix64(1));
/// ```
#[inline]
pub fn splitmix64(k: u64) -> u64 {
    let mut z = k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform `f64` in `[0, 1)` from the top 53 bits of [`splitmix64`]`(k)`.
///
/// ```
/// use parview_demo::hash_unif;
/// let u = hash_unif(42);
/// assert!((0.0..1.0).contains(&u));
/// ```
#[inline]
pub fn hash_unif(k: u64) -> f64 {
    (splitmix64(k) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

// ------------------------------------------------------------------ 1. Monte-Carlo pi

/// Samples per Monte-Carlo pi chunk; chunk `c` owns samples `c*PI_CHUNK ..`.
///
/// ```
/// assert_eq!(parview_demo::PI_CHUNK, 1_000_000);
/// ```
pub const PI_CHUNK: u64 = 1_000_000;

/// Number of chunks for `n` samples (`ceil(n / PI_CHUNK)`; the last one may be short).
///
/// ```
/// use parview_demo::{pi_chunks, PI_CHUNK};
/// assert_eq!(pi_chunks(0), 0);
/// assert_eq!(pi_chunks(PI_CHUNK), 1);
/// assert_eq!(pi_chunks(PI_CHUNK + 1), 2);
/// ```
#[inline]
pub fn pi_chunks(n: u64) -> u64 {
    n.div_ceil(PI_CHUNK)
}

/// Number of samples in chunk `chunk` of an `n`-sample run (0 past the end).
///
/// ```
/// use parview_demo::{pi_chunk_len, PI_CHUNK};
/// assert_eq!(pi_chunk_len(2 * PI_CHUNK + 5, 0), PI_CHUNK);
/// assert_eq!(pi_chunk_len(2 * PI_CHUNK + 5, 2), 5);
/// assert_eq!(pi_chunk_len(2 * PI_CHUNK + 5, 3), 0);
/// ```
#[inline]
pub fn pi_chunk_len(n: u64, chunk: u64) -> u64 {
    n.saturating_sub(chunk.saturating_mul(PI_CHUNK))
        .min(PI_CHUNK)
}

/// Per-chunk kernel: draws `samples` points `(x, y)` in the unit square from the
/// chunk's own Xoshiro256++ stream, seeded `seed_from_u64(chunk + 1)` (as the anchors
/// do; `x` is drawn before `y`), and counts those with `x^2 + y^2 <= 1`.
///
/// Chunks are independent, so any chunk can run on any engine in any order.
///
/// ```
/// use parview_demo::pi_chunk_hits;
/// let h = pi_chunk_hits(0, 1000);
/// assert!(h > 700 && h < 870);
/// assert_eq!(h, pi_chunk_hits(0, 1000)); // deterministic
/// ```
#[inline]
pub fn pi_chunk_hits(chunk: u64, samples: u64) -> u64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(chunk.wrapping_add(1));
    let mut hits = 0u64;
    for _ in 0..samples {
        let x: f64 = rng.random();
        let y: f64 = rng.random();
        hits += u64::from(x * x + y * y <= 1.0);
    }
    hits
}

/// The pi estimate `4 * hits / n` (NaN when `n == 0`).
///
/// ```
/// assert_eq!(parview_demo::pi_from_hits(785, 1000), 3.14);
/// ```
#[inline]
pub fn pi_from_hits(hits: u64, n: u64) -> f64 {
    4.0 * hits as f64 / n as f64
}

/// Serial driver: sums [`pi_chunk_hits`] over all [`pi_chunks`]`(n)` chunks and returns
/// `(hits, estimate)`. For `n = 1e8` the estimate is `3.14120520` (as the anchors').
///
/// ```
/// use parview_demo::pi_serial;
/// let (hits, est) = pi_serial(20_000);
/// assert!(hits <= 20_000);
/// assert!((est - std::f64::consts::PI).abs() < 0.05);
/// ```
pub fn pi_serial(n: u64) -> (u64, f64) {
    let hits: u64 = (0..pi_chunks(n))
        .map(|c| pi_chunk_hits(c, pi_chunk_len(n, c)))
        .sum();
    (hits, pi_from_hits(hits, n))
}

// ------------------------------------------------------------------ 2. Gaussian kernel

/// Default problem size of the Gaussian-kernel workload (10M `f64` per array).
///
/// ```
/// assert_eq!(parview_demo::GAUSS_N, 10_000_000);
/// ```
pub const GAUSS_N: usize = 10_000_000;

/// Default `gamma` of the Gaussian kernel.
///
/// ```
/// assert_eq!(parview_demo::GAUSS_GAMMA, 1.0);
/// ```
pub const GAUSS_GAMMA: f64 = 1.0;

/// Inputs of item `i`: `(x[i], y[i]) = (hash_unif(2i), hash_unif(2i + 1))`, the anchors'
/// generator. Lets a parallel map generate inputs itself.
///
/// ```
/// use parview_demo::{gauss_input, hash_unif};
/// assert_eq!(gauss_input(3), (hash_unif(6), hash_unif(7)));
/// ```
#[inline]
pub fn gauss_input(i: u64) -> (f64, f64) {
    (hash_unif(2 * i), hash_unif(2 * i + 1))
}

/// The `n` input pairs as two vectors `(x, y)`, see [`gauss_input`].
///
/// ```
/// use parview_demo::{gauss_input, gauss_inputs};
/// let (x, y) = gauss_inputs(4);
/// assert_eq!((x[2], y[2]), gauss_input(2));
/// ```
pub fn gauss_inputs(n: usize) -> (Vec<f64>, Vec<f64>) {
    (0..n as u64).map(gauss_input).unzip()
}

/// Per-item kernel: `exp(-gamma * (x - y)^2)`.
///
/// ```
/// use parview_demo::gauss;
/// assert_eq!(gauss(0.5, 0.5, 1.0), 1.0);
/// assert!((gauss(1.0, 0.0, 2.0) - (-2.0f64).exp()).abs() < 1e-15);
/// ```
#[inline]
pub fn gauss(x: f64, y: f64, gamma: f64) -> f64 {
    let d = x - y;
    (-gamma * d * d).exp()
}

/// Serial driver (also the per-chunk kernel, called on sub-slices):
/// `z[i] = gauss(x[i], y[i], gamma)`.
///
/// # Panics
/// If the three slices do not have the same length.
///
/// ```
/// use parview_demo::{gauss, gauss_serial_into};
/// let (x, y) = ([0.0, 1.0], [0.0, 0.0]);
/// let mut z = [0.0; 2];
/// gauss_serial_into(&x, &y, 1.0, &mut z);
/// assert_eq!(z, [1.0, gauss(1.0, 0.0, 1.0)]);
/// ```
pub fn gauss_serial_into(x: &[f64], y: &[f64], gamma: f64, z: &mut [f64]) {
    assert!(
        x.len() == y.len() && x.len() == z.len(),
        "gauss_serial_into: lengths differ (x {}, y {}, z {})",
        x.len(),
        y.len(),
        z.len()
    );
    for ((zi, &xi), &yi) in z.iter_mut().zip(x).zip(y) {
        *zi = gauss(xi, yi, gamma);
    }
}

/// Checksum of an `f64` result: the **plain left-to-right sum in index order**
/// (`((z[0] + z[1]) + z[2]) + ...`), no pairwise or compensated summation, so it is
/// reproducible bit for bit. Compute it on the collected output, not per engine.
/// For the full Gaussian workload it prints as `8.614541715730e6` with `{:.12e}`.
///
/// ```
/// assert_eq!(parview_demo::checksum(&[1.0, 2.5, -0.5]), 3.0);
/// ```
pub fn checksum(z: &[f64]) -> f64 {
    z.iter().fold(0.0, |acc, &v| acc + v)
}

// ------------------------------------------------------------------ 3. 5x5 inversions

/// Matrix size of the inversion workload.
///
/// ```
/// assert_eq!(parview_demo::D5, 5);
/// ```
pub const D5: usize = 5;

/// A 5x5 matrix, row-major (`m[row][col]`).
///
/// ```
/// let m: parview_demo::Mat5 = [[0.0; 5]; 5];
/// assert_eq!(m[4].len(), 5);
/// ```
pub type Mat5 = [[f64; D5]; D5];

/// Default number of matrices of the inversion workload.
///
/// ```
/// assert_eq!(parview_demo::INV_N, 100_000);
/// ```
pub const INV_N: usize = 100_000;

/// The anchors check the residual on every `INV_RESID_STRIDE`-th matrix.
///
/// ```
/// assert_eq!(parview_demo::INV_RESID_STRIDE, 97);
/// ```
pub const INV_RESID_STRIDE: usize = 97;

/// Hash-counter offset of the matrix entries (keeps them apart from the Gaussian inputs).
const INV_HASH_OFFSET: u64 = 1_000_000_000;

/// Matrix `m` of the inversion workload: entry `(i, j)` is
/// `2 * hash_unif(1e9 + 25m + 5i + j) - 1`, in `[-1, 1)` (the anchors' inputs).
///
/// ```
/// use parview_demo::inv_input;
/// let a = inv_input(9);
/// assert!(a.iter().flatten().all(|v| (-1.0..1.0).contains(v)));
/// ```
#[inline]
pub fn inv_input(m: usize) -> Mat5 {
    let base = INV_HASH_OFFSET + (m * D5 * D5) as u64;
    let mut a = [[0.0; D5]; D5];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = 2.0 * hash_unif(base + (i * D5 + j) as u64) - 1.0;
        }
    }
    a
}

/// The first `n` matrices, see [`inv_input`].
///
/// ```
/// use parview_demo::{inv_input, inv_inputs};
/// assert_eq!(inv_inputs(3)[2], inv_input(2));
/// ```
pub fn inv_inputs(n: usize) -> Vec<Mat5> {
    (0..n).map(inv_input).collect()
}

/// Per-item kernel, allocation-free: inverts `a` into `out` by Gauss-Jordan elimination
/// with partial pivoting on `[A | I]` and returns `true`; the operations on the inverse
/// half are the anchors' ones, so results are bit-identical to theirs.
///
/// `a` is treated as singular, `out` is filled with NaN and `false` returned, when a
/// pivot is not larger than `5 * f64::EPSILON * max|a_ij|` (this includes a zero or
/// non-finite matrix).
///
/// ```
/// use parview_demo::{invert5_into, Mat5};
/// let mut a: Mat5 = [[0.0; 5]; 5];
/// for i in 0..5 { a[i][i] = 2.0; }
/// let mut inv = [[0.0; 5]; 5];
/// assert!(invert5_into(&a, &mut inv));
/// assert_eq!(inv[3][3], 0.5);
/// assert!(!invert5_into(&[[1.0; 5]; 5], &mut inv));
/// assert!(inv[0][0].is_nan());
/// ```
#[inline]
pub fn invert5_into(a: &Mat5, out: &mut Mat5) -> bool {
    const W: usize = 2 * D5;
    let mut scale = 0.0f64;
    let mut finite = true;
    let mut g = [[0.0f64; W]; D5];
    for (i, (gi, ai)) in g.iter_mut().zip(a).enumerate() {
        gi[..D5].copy_from_slice(ai);
        gi[D5 + i] = 1.0;
        for &v in ai {
            scale = scale.max(v.abs());
            finite &= v.is_finite();
        }
    }
    if !finite {
        *out = [[f64::NAN; D5]; D5];
        return false;
    }
    let tol = D5 as f64 * f64::EPSILON * scale;
    for c in 0..D5 {
        let mut p = c;
        let mut best = g[c][c].abs();
        for (r, gr) in g.iter().enumerate().skip(c + 1) {
            let v = gr[c].abs();
            if v > best {
                best = v;
                p = r;
            }
        }
        // `!= Greater` also catches a NaN pivot
        if best.partial_cmp(&tol) != Some(std::cmp::Ordering::Greater) {
            *out = [[f64::NAN; D5]; D5];
            return false;
        }
        g.swap(p, c);
        let s = 1.0 / g[c][c];
        for v in g[c].iter_mut() {
            *v *= s;
        }
        let pr = g[c];
        for (r, gr) in g.iter_mut().enumerate() {
            if r != c {
                let f = gr[c];
                // fixed trip count over all columns: vectorizes; columns < c are dead.
                for (v, &pv) in gr.iter_mut().zip(&pr) {
                    *v -= f * pv;
                }
            }
        }
    }
    for (o, gi) in out.iter_mut().zip(&g) {
        o.copy_from_slice(&gi[D5..]);
    }
    true
}

/// Per-item kernel: the inverse of `a`, or `None` if it is singular (see
/// [`invert5_into`] for the criterion).
///
/// ```
/// use parview_demo::{inv_input, inv_residual, invert5};
/// let a = inv_input(0);
/// let ai = invert5(&a).unwrap();
/// assert!(inv_residual(&a, &ai) < 1e-9);
/// assert!(invert5(&[[0.0; 5]; 5]).is_none());
/// ```
#[inline]
pub fn invert5(a: &Mat5) -> Option<Mat5> {
    let mut out = [[0.0; D5]; D5];
    invert5_into(a, &mut out).then_some(out)
}

/// `max_ij |(A * Ainv)_ij - I_ij|` (each product summed over `l` in order).
///
/// ```
/// use parview_demo::inv_residual;
/// let mut id = [[0.0; 5]; 5];
/// for i in 0..5 { id[i][i] = 1.0; }
/// assert_eq!(inv_residual(&id, &id), 0.0);
/// ```
pub fn inv_residual(a: &Mat5, ainv: &Mat5) -> f64 {
    let mut r = 0.0f64;
    for (i, ai) in a.iter().enumerate() {
        for j in 0..D5 {
            let s = ai.iter().zip(ainv).fold(0.0, |s, (&x, row)| s + x * row[j]);
            let e = if i == j { 1.0 } else { 0.0 };
            r = r.max((s - e).abs());
        }
    }
    r
}

/// Serial driver: the inverse of every matrix; singular ones give a matrix of NaN
/// (use [`invert5`] to tell them apart).
///
/// ```
/// use parview_demo::{inv_inputs, inv_serial, invert5};
/// let mats = inv_inputs(4);
/// let inv = inv_serial(&mats);
/// assert_eq!(inv[1], invert5(&mats[1]).unwrap());
/// ```
pub fn inv_serial(mats: &[Mat5]) -> Vec<Mat5> {
    let mut out = vec![[[0.0; D5]; D5]; mats.len()];
    for (a, o) in mats.iter().zip(out.iter_mut()) {
        invert5_into(a, o);
    }
    out
}

/// Checksum of the inverses: plain sum of all entries, matrix by matrix, row-major,
/// in index order (the anchors': `-1.545029344e5` with `{:.9e}` for the full workload).
///
/// ```
/// use parview_demo::inv_checksum;
/// assert_eq!(inv_checksum(&[[[1.0; 5]; 5], [[0.5; 5]; 5]]), 37.5);
/// ```
pub fn inv_checksum(invs: &[Mat5]) -> f64 {
    invs.iter()
        .flat_map(|m| m.iter().flatten())
        .fold(0.0, |acc, &v| acc + v)
}

/// Largest [`inv_residual`] over matrices `0, stride, 2*stride, ...` (the anchors use
/// `stride = INV_RESID_STRIDE`; `stride = 1` checks all).
///
/// # Panics
/// If `stride == 0` or the slices have different lengths.
///
/// ```
/// use parview_demo::{inv_inputs, inv_max_residual, inv_serial};
/// let mats = inv_inputs(10);
/// assert!(inv_max_residual(&mats, &inv_serial(&mats), 1) < 1e-9);
/// ```
pub fn inv_max_residual(mats: &[Mat5], invs: &[Mat5], stride: usize) -> f64 {
    assert_eq!(mats.len(), invs.len(), "inv_max_residual: lengths differ");
    mats.iter()
        .zip(invs)
        .step_by(stride)
        .map(|(a, b)| inv_residual(a, b))
        .fold(0.0, f64::max)
}

// ------------------------------------------------------------------ 4. uneven primes

/// The primes of the uneven workload are the first 32 primes above this number.
///
/// ```
/// assert!(parview_demo::PRIMES_TABLE[0] > parview_demo::PRIMES_ABOVE);
/// ```
pub const PRIMES_ABOVE: u64 = 112_272_535_095_293;

/// The composites of the uneven workload are the first 32 odd numbers from this one
/// on that have a factor below [`COMPOSITE_FACTOR_BELOW`].
///
/// ```
/// assert_eq!(parview_demo::PRIMES_TABLE[32], parview_demo::COMPOSITES_FROM);
/// ```
pub const COMPOSITES_FROM: u64 = 115_000_000_000_001;

/// Bound on the smallest factor of the composites (they are rejected almost at once).
///
/// ```
/// assert_eq!(parview_demo::COMPOSITE_FACTOR_BELOW, 1000);
/// ```
pub const COMPOSITE_FACTOR_BELOW: u64 = 1000;

/// The 64 inputs of the uneven-tasks workload, as in the anchors: the first 32 primes
/// above [`PRIMES_ABOVE`] (each ~5.3M trial divisions), then the first 32 odd
/// composites from [`COMPOSITES_FROM`] on with a factor below 1000 (almost free).
/// All the work sits in the first half. Validated by the unit tests with [`is_prime`].
///
/// ```
/// use parview_demo::{is_prime, PRIMES_TABLE};
/// assert_eq!(PRIMES_TABLE.len(), 64);
/// assert!(!is_prime(PRIMES_TABLE[40])); // composites are cheap to test
/// ```
pub const PRIMES_TABLE: [u64; 64] = [
    112_272_535_095_311,
    112_272_535_095_313,
    112_272_535_095_319,
    112_272_535_095_433,
    112_272_535_095_439,
    112_272_535_095_463,
    112_272_535_095_467,
    112_272_535_095_473,
    112_272_535_095_493,
    112_272_535_095_601,
    112_272_535_095_629,
    112_272_535_095_649,
    112_272_535_095_719,
    112_272_535_095_737,
    112_272_535_095_767,
    112_272_535_095_829,
    112_272_535_095_863,
    112_272_535_095_871,
    112_272_535_095_883,
    112_272_535_095_943,
    112_272_535_095_977,
    112_272_535_095_979,
    112_272_535_096_061,
    112_272_535_096_093,
    112_272_535_096_129,
    112_272_535_096_133,
    112_272_535_096_147,
    112_272_535_096_153,
    112_272_535_096_159,
    112_272_535_096_199,
    112_272_535_096_201,
    112_272_535_096_219,
    115_000_000_000_001,
    115_000_000_000_005,
    115_000_000_000_007,
    115_000_000_000_009,
    115_000_000_000_011,
    115_000_000_000_013,
    115_000_000_000_015,
    115_000_000_000_017,
    115_000_000_000_021,
    115_000_000_000_023,
    115_000_000_000_025,
    115_000_000_000_029,
    115_000_000_000_031,
    115_000_000_000_033,
    115_000_000_000_035,
    115_000_000_000_039,
    115_000_000_000_041,
    115_000_000_000_045,
    115_000_000_000_047,
    115_000_000_000_049,
    115_000_000_000_053,
    115_000_000_000_055,
    115_000_000_000_059,
    115_000_000_000_061,
    115_000_000_000_065,
    115_000_000_000_067,
    115_000_000_000_069,
    115_000_000_000_071,
    115_000_000_000_075,
    115_000_000_000_077,
    115_000_000_000_079,
    115_000_000_000_081,
];

/// The inputs of the uneven-tasks workload as a vector ([`PRIMES_TABLE`]).
///
/// ```
/// let v = parview_demo::primes_inputs();
/// assert_eq!(v.len(), 64);
/// ```
pub fn primes_inputs() -> Vec<u64> {
    PRIMES_TABLE.to_vec()
}

/// Smallest factor `d > 1` of `n` by trial division (2, then odd `d` while
/// `d <= n / d`); `None` if `n` is prime or `n < 2`. Cost grows with the answer.
///
/// ```
/// use parview_demo::smallest_factor;
/// assert_eq!(smallest_factor(91), Some(7));
/// assert_eq!(smallest_factor(97), None);
/// assert_eq!(smallest_factor(1), None);
/// ```
#[inline]
pub fn smallest_factor(n: u64) -> Option<u64> {
    if n < 4 {
        return None;
    }
    if n.is_multiple_of(2) {
        return Some(2);
    }
    let mut d = 3u64;
    // `d <= n / d` instead of `d * d <= n`: no overflow near u64::MAX, and the
    // division shares its instruction with `n % d`.
    while d <= n / d {
        if n.is_multiple_of(d) {
            return Some(d);
        }
        d += 2;
    }
    None
}

/// Per-item kernel: primality by trial division with odd divisors up to `sqrt(n)`
/// (~5.3M divisions for each prime of [`PRIMES_TABLE`]).
///
/// ```
/// use parview_demo::is_prime;
/// assert!(is_prime(2) && is_prime(13) && !is_prime(1) && !is_prime(15));
/// ```
#[inline]
pub fn is_prime(n: u64) -> bool {
    n >= 2 && smallest_factor(n).is_none()
}

/// Serial driver: how many of `nums` are prime (32 for [`primes_inputs`]).
///
/// ```
/// assert_eq!(parview_demo::primes_serial(&[2, 3, 4, 5, 9]), 3);
/// ```
pub fn primes_serial(nums: &[u64]) -> usize {
    nums.iter().filter(|&&n| is_prime(n)).count()
}

/// Lower bound on the wall time of running items with the given durations on `p`
/// engines: `max(total / p, longest item)`. `p = 0` is treated as 1.
///
/// ```
/// use parview_demo::ideal_time;
/// use std::time::Duration;
/// let ms = Duration::from_millis;
/// assert_eq!(ideal_time(&[ms(4), ms(2), ms(2)], 2), ms(4));
/// assert_eq!(ideal_time(&[ms(9), ms(1)], 4), ms(9));
/// assert_eq!(ideal_time(&[ms(3); 4], 2), ms(6));
/// ```
pub fn ideal_time(durations: &[Duration], p: usize) -> Duration {
    let total: Duration = durations.iter().sum();
    let longest = durations.iter().copied().max().unwrap_or(Duration::ZERO);
    let share = total / u32::try_from(p.max(1)).unwrap_or(u32::MAX);
    share.max(longest)
}

// ------------------------------------------------------------------ 5a. random matrices

/// Size of the random matrices of [`avg_random_matrices`].
///
/// ```
/// assert_eq!(parview_demo::D10, 10);
/// ```
pub const D10: usize = 10;

/// A 10x10 matrix, row-major.
///
/// ```
/// let m: parview_demo::Mat10 = [[0.0; 10]; 10];
/// assert_eq!(m.len(), 10);
/// ```
pub type Mat10 = [[f64; D10]; D10];

/// Per-task kernel (compute-heavy, little data): the average of `A_k^T A_k` over
/// `count` random 10x10 matrices `A_k` whose entries are `2u - 1`, `u` uniform in
/// `[0, 1)`, drawn row by row from one Xoshiro256++ stream seeded
/// `seed_from_u64(task_seed)`. Each matrix costs 100 draws and 1,000 multiply-adds.
///
/// Since `E[a^2] = 1/3`, the expectation is `(10/3) I`; the deviation shrinks like
/// `1/sqrt(count)`. Deterministic in `(task_seed, count)`; `count = 0` gives NaN.
///
/// ```
/// use parview_demo::avg_random_matrices;
/// let m = avg_random_matrices(1, 2000);
/// assert!((m[4][4] - 10.0 / 3.0).abs() < 0.2);
/// assert!(m[1][7].abs() < 0.2);
/// assert_eq!(m[1][7], m[7][1]);
/// ```
pub fn avg_random_matrices(task_seed: u64, count: usize) -> Mat10 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(task_seed);
    let mut sum = [[0.0f64; D10]; D10];
    let mut a = [[0.0f64; D10]; D10];
    for _ in 0..count {
        for v in a.iter_mut().flatten() {
            *v = 2.0 * rng.random::<f64>() - 1.0;
        }
        // sum += A^T A, accumulated one row of A at a time: sum[i][j] += a[l][i] a[l][j]
        for row in &a {
            for (si, &ai) in sum.iter_mut().zip(row) {
                for (s, &aj) in si.iter_mut().zip(row) {
                    *s += ai * aj;
                }
            }
        }
    }
    let inv = 1.0 / count as f64;
    for v in sum.iter_mut().flatten() {
        *v *= inv;
    }
    sum
}

/// Serial driver: the mean over tasks `0..tasks` of
/// [`avg_random_matrices`]`(task, count)` (summed in task order, then divided).
///
/// ```
/// use parview_demo::{avg_random_matrices, avg_random_matrices_serial};
/// let m = avg_random_matrices_serial(1, 10);
/// assert_eq!(m, avg_random_matrices(0, 10));
/// ```
pub fn avg_random_matrices_serial(tasks: u64, count: usize) -> Mat10 {
    let mut acc = [[0.0f64; D10]; D10];
    for t in 0..tasks {
        let m = avg_random_matrices(t, count);
        for (a, v) in acc.iter_mut().flatten().zip(m.iter().flatten()) {
            *a += v;
        }
    }
    let inv = 1.0 / tasks as f64;
    for v in acc.iter_mut().flatten() {
        *v *= inv;
    }
    acc
}

// ------------------------------------------------------------------ 5b. station correlations

/// Hours per station vector.
///
/// ```
/// assert_eq!(parview_demo::HOURS, 24);
/// ```
pub const HOURS: usize = 24;

/// Default number of stations of the correlation workload.
///
/// ```
/// assert_eq!(parview_demo::STATIONS_N, 1_200);
/// ```
pub const STATIONS_N: usize = 1_200;

/// One station's mean trips per hour of the day (index = hour, 0..24).
///
/// ```
/// let s: parview_demo::Station = [1.0; parview_demo::HOURS];
/// assert_eq!(s.len(), 24);
/// ```
pub type Station = [f64; HOURS];

/// Standard normal deviate by Box-Muller (cosine branch) from two uniforms.
#[inline]
fn normal<R: RngExt>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Bump of height 1 centred at `mu` hours with width `sigma`.
#[inline]
fn bump(h: f64, mu: f64, sigma: f64) -> f64 {
    let d = (h - mu) / sigma;
    (-0.5 * d * d).exp()
}

/// Station `i` of the synthetic bike-share data set with seed `seed` (a per-item
/// generator, so a parallel map can build the data set itself).
///
/// Model, per station, from its own Xoshiro256++ stream seeded
/// `seed_from_u64(splitmix64(seed) ^ i)`:
/// * popularity `s = 20 * exp(0.5 * N(0,1))` trips per hour at peak;
/// * a commuter mix `w` uniform in `[0, 1]`: residential stations (`w` near 1) peak
///   at 8:00, business ones at 17:30, all share a midday plateau and a quiet night;
/// * hour `h`: `s * (0.05 + w * bump(8, 1.5) + (1-w) * bump(17.5, 2) + 0.3 * bump(13, 3))`
///   times `(1 + 0.15 N(0,1))`, plus `N(0,1)` noise, clipped at 0.
///
/// ```
/// use parview_demo::station;
/// let s = station(7, 3);
/// assert!(s.iter().all(|&v| v >= 0.0));
/// assert_eq!(s, station(7, 3));
/// assert_ne!(s, station(7, 4));
/// ```
pub fn station(seed: u64, i: usize) -> Station {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed) ^ i as u64);
    let scale = 20.0 * (0.5 * normal(&mut rng)).exp();
    let w: f64 = rng.random();
    let mut out = [0.0; HOURS];
    for (h, v) in out.iter_mut().enumerate() {
        let hf = h as f64;
        let profile = 0.05
            + w * bump(hf, 8.0, 1.5)
            + (1.0 - w) * bump(hf, 17.5, 2.0)
            + 0.3 * bump(hf, 13.0, 3.0);
        let mult = 1.0 + 0.15 * normal(&mut rng);
        *v = (scale * profile * mult + normal(&mut rng)).max(0.0);
    }
    out
}

/// The synthetic data set: `stations(n, seed)[i] == station(seed, i)`.
///
/// ```
/// use parview_demo::{station, stations};
/// let d = stations(5, 1);
/// assert_eq!(d.len(), 5);
/// assert_eq!(d[4], station(1, 4));
/// ```
pub fn stations(n_stations: usize, seed: u64) -> Vec<Station> {
    (0..n_stations).map(|i| station(seed, i)).collect()
}

/// Stations standardized once, so that a Pearson correlation is a 24-term dot product:
/// station `i` is stored as `z_i = (x_i - mean_i) / sqrt(sum_h (x_ih - mean_i)^2)`.
///
/// Rows can then be computed independently ([`Standardized::row_into`]). A constant
/// station (zero variance) has undefined correlations: all its entries, diagonal
/// included, are NaN.
///
/// ```
/// use parview_demo::{stations, Standardized};
/// let s = Standardized::new(&stations(3, 0));
/// assert_eq!(s.len(), 3);
/// assert_eq!(s.corr(1, 1), 1.0);
/// assert_eq!(s.corr(0, 2), s.corr(2, 0));
/// ```
#[derive(Clone, Debug)]
pub struct Standardized {
    z: Vec<Station>,
}

impl Standardized {
    /// Standardizes every station (two passes each: mean, then centred sum of squares).
    ///
    /// ```
    /// use parview_demo::{Standardized, HOURS};
    /// let s = Standardized::new(&[[3.0; HOURS]]); // constant station
    /// assert!(s.corr(0, 0).is_nan());
    /// ```
    pub fn new(data: &[Station]) -> Self {
        let z = data
            .iter()
            .map(|x| {
                let mean = x.iter().sum::<f64>() / HOURS as f64;
                let ss: f64 = x.iter().map(|&v| (v - mean) * (v - mean)).sum();
                let norm = ss.sqrt();
                if norm > 0.0 && norm.is_finite() {
                    x.map(|v| (v - mean) / norm)
                } else {
                    [f64::NAN; HOURS]
                }
            })
            .collect();
        Standardized { z }
    }

    /// Number of stations.
    ///
    /// ```
    /// assert_eq!(parview_demo::Standardized::new(&[]).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.z.len()
    }

    /// Whether there are no stations.
    ///
    /// ```
    /// assert!(parview_demo::Standardized::new(&[]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.z.is_empty()
    }

    /// Pearson correlation of stations `i` and `j`: exactly 1 on the diagonal,
    /// exactly symmetric, clamped to `[-1, 1]` (NaN for a constant station).
    ///
    /// # Panics
    /// If `i` or `j` is out of range.
    ///
    /// ```
    /// use parview_demo::{Standardized, HOURS};
    /// let up: [f64; HOURS] = std::array::from_fn(|h| h as f64);
    /// let down = up.map(|v| 100.0 - 2.0 * v);
    /// let s = Standardized::new(&[up, down]);
    /// assert_eq!(s.corr(0, 1), -1.0);
    /// ```
    #[inline]
    pub fn corr(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (&self.z[i], &self.z[j]);
        if i == j {
            return if a[0].is_nan() { f64::NAN } else { 1.0 };
        }
        // same summation order for (i, j) and (j, i): the matrix is exactly symmetric
        let dot = a.iter().zip(b).fold(0.0, |acc, (&x, &y)| acc + x * y);
        dot.clamp(-1.0, 1.0)
    }

    /// Per-row kernel, allocation-free: `out[j] = corr(i, j)` for every station `j`.
    ///
    /// # Panics
    /// If `i` is out of range or `out.len() != self.len()`.
    ///
    /// ```
    /// use parview_demo::{stations, Standardized};
    /// let s = Standardized::new(&stations(4, 2));
    /// let mut row = [0.0; 4];
    /// s.row_into(2, &mut row);
    /// assert_eq!(row[2], 1.0);
    /// assert_eq!(row[0], s.corr(2, 0));
    /// ```
    pub fn row_into(&self, i: usize, out: &mut [f64]) {
        assert_eq!(out.len(), self.len(), "row_into: output length");
        for (j, o) in out.iter_mut().enumerate() {
            *o = self.corr(i, j);
        }
    }
}

/// Per-row kernel: row `i` of the Pearson correlation matrix (allocates the row; see
/// [`Standardized::row_into`] to write into a slice of a preallocated matrix).
///
/// ```
/// use parview_demo::{correlation_row, stations, Standardized};
/// let s = Standardized::new(&stations(6, 3));
/// let r = correlation_row(&s, 5);
/// assert_eq!(r.len(), 6);
/// assert_eq!(r[5], 1.0);
/// ```
pub fn correlation_row(data: &Standardized, i: usize) -> Vec<f64> {
    let mut row = vec![0.0; data.len()];
    data.row_into(i, &mut row);
    row
}

/// Serial driver: the full `n x n` Pearson correlation matrix, row-major
/// (`m[i * n + j] = corr(i, j)`), standardizing the stations once.
///
/// ```
/// use parview_demo::{correlation_serial, stations};
/// let m = correlation_serial(&stations(3, 0));
/// assert_eq!(m.len(), 9);
/// assert_eq!(m[1 * 3 + 2], m[2 * 3 + 1]);
/// ```
pub fn correlation_serial(data: &[Station]) -> Vec<f64> {
    let s = Standardized::new(data);
    let n = s.len();
    let mut m = vec![0.0; n * n];
    if n > 0 {
        for (i, row) in m.chunks_exact_mut(n).enumerate() {
            s.row_into(i, row);
        }
    }
    m
}

/// Line `i` of a generated text input (what a large file's `lines()` would give): a record
/// number, two numeric fields and words. Allocated anew for every call, as read lines are.
///
/// ```
/// let l = parview_demo::text_line(3);
/// assert!(l.starts_with("3 record "));
/// ```
pub fn text_line(i: u64) -> String {
    format!(
        "{i} record {} status {} lorem ipsum dolor sit amet consectetur {}",
        i.wrapping_mul(2654435761) % 100_000,
        if i.is_multiple_of(3) { "ok" } else { "retry" },
        i % 977
    )
}

/// The per-line work of the streaming workload: the number of words, the sum of the numeric
/// fields, and an FNV-1a hash of the other words. Takes the line by value, so the thread that
/// runs it also frees it.
///
/// ```
/// let (words, sum, _hash) = parview_demo::line_stats("7 apples 5".to_string());
/// assert_eq!((words, sum), (3, 12));
/// ```
pub fn line_stats(l: String) -> (u64, u64, u64) {
    let (mut words, mut sum, mut hash) = (0u64, 0u64, 0xcbf2_9ce4_8422_2325u64);
    for w in l.split_whitespace() {
        words += 1;
        match w.parse::<u64>() {
            Ok(v) => sum += v,
            Err(_) => {
                for b in w.bytes() {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
    }
    (words, sum, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pi_chunks_and_lengths() {
        let n = 3 * PI_CHUNK + 17;
        assert_eq!(pi_chunks(n), 4);
        let total: u64 = (0..pi_chunks(n)).map(|c| pi_chunk_len(n, c)).sum();
        assert_eq!(total, n);
        assert_eq!(pi_chunk_len(n, 3), 17);
    }

    #[test]
    fn pi_estimate_close_for_1e6() {
        let (hits, est) = pi_serial(1_000_000);
        assert_eq!(hits, pi_chunk_hits(0, 1_000_000));
        assert!((est - std::f64::consts::PI).abs() < 0.01, "{est}");
    }

    #[test]
    fn pi_chunk_streams_differ_and_split_consistently() {
        let a = pi_chunk_hits(0, 10_000);
        let b = pi_chunk_hits(1, 10_000);
        let c = pi_chunk_hits(2, 10_000);
        assert!(a != b || b != c, "streams look identical: {a} {b} {c}");
        // a short chunk is a prefix of the full one
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let mut h = 0;
        for _ in 0..500 {
            let (x, y): (f64, f64) = (rng.random(), rng.random());
            h += u64::from(x * x + y * y <= 1.0);
        }
        assert_eq!(h, pi_chunk_hits(1, 500));
        // the serial driver sums the chunks
        let n = 2 * PI_CHUNK + 1000;
        let want = pi_chunk_hits(0, PI_CHUNK) + pi_chunk_hits(1, PI_CHUNK) + pi_chunk_hits(2, 1000);
        assert_eq!(pi_serial(n).0, want);
    }

    #[test]
    fn splitmix_known_value() {
        // first output of the reference SplitMix64 generator seeded with 0 is
        // splitmix64(0) here (its state is advanced by phi before mixing)
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let u = hash_unif(0);
        assert_eq!(
            u,
            (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / (1u64 << 53) as f64
        );
    }

    #[test]
    fn gauss_small_checksum_by_hand() {
        let (x, y) = gauss_inputs(3);
        let mut z = vec![0.0; 3];
        gauss_serial_into(&x, &y, GAUSS_GAMMA, &mut z);
        let by_hand: f64 = (0..3u64)
            .map(|i| {
                let d = hash_unif(2 * i) - hash_unif(2 * i + 1);
                (-(d * d)).exp()
            })
            .fold(0.0, |a, v| a + v);
        assert_eq!(checksum(&z), by_hand);
        assert!(z.iter().all(|&v| v > 0.0 && v <= 1.0));
        // gamma matters
        let mut z2 = vec![0.0; 3];
        gauss_serial_into(&x, &y, 2.0, &mut z2);
        assert!(checksum(&z2) < checksum(&z));
    }

    #[test]
    fn checksum_is_index_order_sum() {
        // 1e16 + 1 + 1 - 1e16 = 0 left to right (each +1 is lost), 2 if pairwise-ish
        assert_eq!(checksum(&[1e16, 1.0, 1.0, -1e16]), 0.0);
        assert_eq!(checksum(&[]), 0.0);
    }

    #[test]
    #[should_panic]
    fn gauss_length_mismatch_panics() {
        gauss_serial_into(&[1.0], &[1.0, 2.0], 1.0, &mut [0.0]);
    }

    #[test]
    fn invert5_residual_on_1000_random() {
        let mats = inv_inputs(1000);
        for (k, a) in mats.iter().enumerate() {
            let ai = invert5(a).unwrap_or_else(|| panic!("matrix {k} reported singular"));
            let r = inv_residual(a, &ai);
            assert!(r < 1e-9, "matrix {k}: residual {r}");
        }
        let inv = inv_serial(&mats);
        assert!(inv_max_residual(&mats, &inv, 1) < 1e-9);
        assert!(inv_checksum(&inv).is_finite());
    }

    #[test]
    fn invert5_singular_is_none() {
        let mut a = inv_input(5);
        a[3] = a[1]; // duplicate row
        assert!(invert5(&a).is_none());
        let mut b = inv_input(6);
        for r in &mut b {
            r[4] = 2.0 * r[0] - r[2]; // dependent column
        }
        assert!(invert5(&b).is_none());
        assert!(invert5(&[[0.0; 5]; 5]).is_none());
        let mut c = inv_input(7);
        c[2][2] = f64::NAN;
        assert!(invert5(&c).is_none());
        c[2][2] = f64::INFINITY;
        assert!(invert5(&c).is_none());
        // badly scaled but regular: the tolerance is relative to max|a_ij|
        let tiny = inv_input(8).map(|r| r.map(|v| v * 1e-200));
        assert!(invert5(&tiny).is_some());
        let mut out = [[0.0; 5]; 5];
        assert!(!invert5_into(&a, &mut out));
        assert!(out.iter().flatten().all(|v| v.is_nan()));
        assert!(inv_serial(&[a])[0][0][0].is_nan());
    }

    #[test]
    fn invert5_needs_pivoting_and_is_exact_on_permutation() {
        // zero in the (0,0) position: fails without row exchange
        let mut p = [[0.0; 5]; 5];
        let perm = [3, 0, 4, 1, 2];
        for (i, &j) in perm.iter().enumerate() {
            p[i][j] = 1.0;
        }
        let pi = invert5(&p).unwrap();
        for i in 0..5 {
            for j in 0..5 {
                assert_eq!(pi[i][j], p[j][i]); // inverse of a permutation is its transpose
            }
        }
    }

    #[test]
    fn inv_inputs_in_range_and_distinct() {
        let m = inv_inputs(50);
        assert!(
            m.iter()
                .flatten()
                .flatten()
                .all(|v| (-1.0..1.0).contains(v))
        );
        assert_ne!(m[0], m[1]);
        assert_eq!(m[0][0][0], 2.0 * hash_unif(1_000_000_000) - 1.0);
        assert_eq!(m[1][0][1], 2.0 * hash_unif(1_000_000_026) - 1.0);
    }

    fn sieve(n: usize) -> Vec<bool> {
        let mut p = vec![true; n];
        p[0] = false;
        if n > 1 {
            p[1] = false;
        }
        let mut i = 2;
        while i * i < n {
            if p[i] {
                let mut k = i * i;
                while k < n {
                    p[k] = false;
                    k += i;
                }
            }
            i += 1;
        }
        p
    }

    #[test]
    fn is_prime_matches_sieve_below_10000() {
        let s = sieve(10_000);
        for (n, &p) in s.iter().enumerate() {
            assert_eq!(is_prime(n as u64), p, "n = {n}");
        }
        assert!(!is_prime(u64::MAX)); // divisible by 3; the bound `d <= n / d` cannot overflow
        assert_eq!(smallest_factor(65_521 * 65_519), Some(65_519));
        assert!(is_prime(4_294_967_291)); // largest 32-bit prime
    }

    #[test]
    fn composites_table_recomputed() {
        let mut want = Vec::new();
        let mut n = COMPOSITES_FROM;
        while want.len() < 32 {
            if smallest_factor(n).is_some_and(|d| d < COMPOSITE_FACTOR_BELOW) {
                want.push(n);
            }
            n += 2;
        }
        assert_eq!(&PRIMES_TABLE[32..], &want[..]);
        assert!(
            PRIMES_TABLE[32..]
                .iter()
                .all(|&v| v % 2 == 1 && !is_prime(v))
        );
    }

    /// Recomputes the 32 primes: every odd number between PRIMES_ABOVE and the last
    /// table entry is tested with `is_prime` (~1 s in a debug build).
    #[test]
    fn primes_table_recomputed() {
        let table: HashSet<u64> = PRIMES_TABLE[..32].iter().copied().collect();
        let last = PRIMES_TABLE[31];
        let mut found = Vec::new();
        let mut n = PRIMES_ABOVE + 1;
        if n.is_multiple_of(2) {
            n += 1;
        }
        while n <= last {
            // cheap pre-filter by small factors; only survivors pay a full trial division
            let small = (3..1000).step_by(2).any(|d| n.is_multiple_of(d));
            if !small && is_prime(n) {
                found.push(n);
            } else {
                assert!(!table.contains(&n), "{n} in the table but composite");
            }
            n += 2;
        }
        assert_eq!(found, PRIMES_TABLE[..32].to_vec());
        assert_eq!(primes_inputs(), PRIMES_TABLE.to_vec());
    }

    #[test]
    fn ideal_time_cases() {
        let ms = Duration::from_millis;
        assert_eq!(ideal_time(&[], 2), Duration::ZERO);
        assert_eq!(ideal_time(&[ms(10)], 0), ms(10));
        assert_eq!(ideal_time(&[ms(1), ms(2), ms(3), ms(6)], 3), ms(6));
        assert_eq!(ideal_time(&[ms(5); 6], 2), ms(15));
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn avg_random_matrices_converges_and_is_deterministic() {
        let m = avg_random_matrices(11, 20_000);
        for i in 0..D10 {
            for j in 0..D10 {
                let want = if i == j { 10.0 / 3.0 } else { 0.0 };
                assert!((m[i][j] - want).abs() < 0.1, "({i},{j}) = {}", m[i][j]);
                assert_eq!(m[i][j], m[j][i]);
            }
        }
        assert_eq!(avg_random_matrices(3, 50), avg_random_matrices(3, 50));
        assert_ne!(avg_random_matrices(3, 50), avg_random_matrices(4, 50));
        assert!(avg_random_matrices(0, 0)[0][0].is_nan());
        let s = avg_random_matrices_serial(3, 20);
        let want = (avg_random_matrices(0, 20)[2][5]
            + avg_random_matrices(1, 20)[2][5]
            + avg_random_matrices(2, 20)[2][5])
            * (1.0 / 3.0);
        assert_eq!(s[2][5], want);
    }

    /// Two-pass textbook Pearson correlation, for comparison.
    fn pearson(a: &Station, b: &Station) -> f64 {
        let n = HOURS as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let mut sab = 0.0;
        let mut saa = 0.0;
        let mut sbb = 0.0;
        for h in 0..HOURS {
            sab += (a[h] - ma) * (b[h] - mb);
            saa += (a[h] - ma) * (a[h] - ma);
            sbb += (b[h] - mb) * (b[h] - mb);
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn correlation_properties() {
        let n = 60;
        let data = stations(n, 42);
        let m = correlation_serial(&data);
        assert_eq!(m.len(), n * n);
        let s = Standardized::new(&data);
        for i in 0..n {
            assert_eq!(m[i * n + i], 1.0);
            for j in 0..n {
                let v = m[i * n + j];
                assert!((-1.0..=1.0).contains(&v), "({i},{j}) = {v}");
                assert_eq!(v, m[j * n + i], "asymmetric at ({i},{j})");
                assert!((v - pearson(&data[i], &data[j])).abs() < 1e-12);
            }
            assert_eq!(correlation_row(&s, i), m[i * n..(i + 1) * n].to_vec());
        }
        // realistic structure: both positive and negative correlations occur
        assert!(m.iter().any(|&v| v > 0.9) && m.iter().any(|&v| v < 0.0));
    }

    #[test]
    fn stations_deterministic_and_seeded() {
        let a = stations(20, 5);
        assert_eq!(a, stations(20, 5));
        assert_ne!(a, stations(20, 6));
        assert!(a.iter().flatten().all(|&v| v.is_finite() && v >= 0.0));
        // night (3:00) is quieter than the busiest hour on average
        let night: f64 = a.iter().map(|s| s[3]).sum();
        let peak: f64 = a
            .iter()
            .map(|s| s.iter().cloned().fold(0.0, f64::max))
            .sum();
        assert!(night < 0.3 * peak, "night {night} peak {peak}");
    }

    #[test]
    fn correlation_constant_station_is_nan() {
        let mut data = stations(3, 1);
        data[1] = [4.0; HOURS];
        let m = correlation_serial(&data);
        assert!(m[4].is_nan() && m[3].is_nan() && m[5].is_nan());
        assert_eq!(m[0], 1.0);
        assert!(correlation_serial(&[]).is_empty());
    }
}
