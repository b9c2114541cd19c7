//! OpenMP versions of the workloads (`c/omp.c`, built by `build.rs` with
//! `gcc -O3 -march=native -fopenmp -ffp-contract=off`: no fused multiply-adds, so the
//! floating-point results are bit-identical to the Rust kernels'), so that benches and the tour run OpenMP in the same
//! process, on the same inputs and in the same minute as parview and rayon: timings never
//! carry across machines, ratios taken in one run do.
//!
//! Each loop is compiled once per schedule kind with the chunk size a run-time value, as a
//! hand-written `#pragma omp parallel for schedule(kind, chunk)` would be. Call [`available`]
//! first: a machine without an OpenMP-capable C compiler builds this crate without them.
//!
//! ```
//! use parview_demo::omp::{self, OmpSchedule};
//! if omp::available().is_ok() {
//!     omp::set_threads(2);
//!     let nums = parview_demo::primes_inputs();
//!     assert_eq!(omp::primes(&nums[..8], OmpSchedule::Dynamic(1)), 8);
//! }
//! ```

use crate::Mat5;
use std::time::Duration;

/// An OpenMP loop schedule (`schedule(static)`, `schedule(static, c)`, `schedule(dynamic, c)`,
/// `schedule(guided, c)`).
///
/// ```
/// use parview_demo::omp::OmpSchedule;
/// assert_eq!(OmpSchedule::Dynamic(1).to_string(), "dynamic,1");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OmpSchedule {
    /// One contiguous block per thread.
    Static,
    /// Blocks of `c` dealt round-robin.
    StaticChunk(usize),
    /// Chunks of `c` taken on demand.
    Dynamic(usize),
    /// Shrinking chunks, at least `c`.
    Guided(usize),
}

impl std::fmt::Display for OmpSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OmpSchedule::Static => write!(f, "static"),
            OmpSchedule::StaticChunk(c) => write!(f, "static,{c}"),
            OmpSchedule::Dynamic(c) => write!(f, "dynamic,{c}"),
            OmpSchedule::Guided(c) => write!(f, "guided,{c}"),
        }
    }
}

impl OmpSchedule {
    fn code(self) -> (i32, i64) {
        let c = |c: usize| i64::try_from(c.max(1)).unwrap_or(i64::MAX);
        match self {
            OmpSchedule::Static => (0, 1),
            OmpSchedule::StaticChunk(n) => (1, c(n)),
            OmpSchedule::Dynamic(n) => (2, c(n)),
            OmpSchedule::Guided(n) => (3, c(n)),
        }
    }
}

#[cfg(not(parview_no_openmp))]
mod ffi {
    unsafe extern "C" {
        pub fn pv_omp_set_threads(n: i32);
        pub fn pv_omp_max_threads() -> i32;
        pub fn pv_omp_pi(n: u64, chunk_len: u64, sched: i32, chunk: i64) -> u64;
        pub fn pv_omp_gauss_into(
            x: *const f64,
            y: *const f64,
            z: *mut f64,
            n: usize,
            gamma: f64,
            sched: i32,
            chunk: i64,
        );
        pub fn pv_omp_inv(mats: *const f64, out: *mut f64, n: usize, sched: i32, chunk: i64);
        pub fn pv_omp_primes(nums: *const u64, n: usize, sched: i32, chunk: i64) -> usize;
        pub fn pv_omp_affine_into(inp: *const u64, out: *mut u64, n: usize, sched: i32, chunk: i64);
        pub fn pv_omp_busy(n: usize, ns_per_item: f64, sched: i32, chunk: i64);
        pub fn pv_omp_busy_into(
            inp: *const u64,
            out: *mut u64,
            n: usize,
            ns_per_item: f64,
            sched: i32,
            chunk: i64,
        );
    }
}

/// `Ok(())` when the OpenMP baselines were built, else why not.
///
/// ```
/// let _ = parview_demo::omp::available();
/// ```
pub fn available() -> Result<(), &'static str> {
    if cfg!(parview_no_openmp) {
        Err("OpenMP baselines not built: no OpenMP-capable C compiler (see the build warning)")
    } else {
        Ok(())
    }
}

#[cfg(parview_no_openmp)]
mod ffi {
    fn missing() -> ! {
        panic!("{}", super::available().unwrap_err())
    }
    pub unsafe fn pv_omp_set_threads(_: i32) {
        missing()
    }
    pub unsafe fn pv_omp_max_threads() -> i32 {
        missing()
    }
    pub unsafe fn pv_omp_pi(_: u64, _: u64, _: i32, _: i64) -> u64 {
        missing()
    }
    pub unsafe fn pv_omp_gauss_into(
        _: *const f64,
        _: *const f64,
        _: *mut f64,
        _: usize,
        _: f64,
        _: i32,
        _: i64,
    ) {
        missing()
    }
    pub unsafe fn pv_omp_inv(_: *const f64, _: *mut f64, _: usize, _: i32, _: i64) {
        missing()
    }
    pub unsafe fn pv_omp_primes(_: *const u64, _: usize, _: i32, _: i64) -> usize {
        missing()
    }
    pub unsafe fn pv_omp_affine_into(_: *const u64, _: *mut u64, _: usize, _: i32, _: i64) {
        missing()
    }
    pub unsafe fn pv_omp_busy(_: usize, _: f64, _: i32, _: i64) {
        missing()
    }
    pub unsafe fn pv_omp_busy_into(_: *const u64, _: *mut u64, _: usize, _: f64, _: i32, _: i64) {
        missing()
    }
}

/// Sets the number of OpenMP threads of later loops (`omp_set_num_threads`).
///
/// # Panics
/// If `n` is 0 or does not fit an `i32`, or OpenMP is not [`available`].
///
/// ```
/// if parview_demo::omp::available().is_ok() {
///     parview_demo::omp::set_threads(2);
///     assert_eq!(parview_demo::omp::threads(), 2);
/// }
/// ```
pub fn set_threads(n: usize) {
    assert!(n > 0, "OpenMP thread count `n` must be at least 1");
    let n = i32::try_from(n).expect("OpenMP thread count `n` must fit an i32");
    // SAFETY: a plain call into libgomp with a positive count.
    unsafe { ffi::pv_omp_set_threads(n) }
}

/// The number of threads the next loop will use (`omp_get_max_threads`).
///
/// ```
/// if parview_demo::omp::available().is_ok() {
///     assert!(parview_demo::omp::threads() >= 1);
/// }
/// ```
pub fn threads() -> usize {
    // SAFETY: a plain query of libgomp.
    unsafe { ffi::pv_omp_max_threads() as usize }
}

/// Monte-Carlo pi hits over `n` samples in chunks of [`PI_CHUNK`](crate::PI_CHUNK), the
/// loop over chunks scheduled with `sched` — the same streams as [`pi_serial`](crate::pi_serial),
/// so the same hits.
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// if omp::available().is_ok() {
///     let n = 3_000_123;
///     assert_eq!(omp::pi_hits(n, OmpSchedule::Static), parview_demo::pi_serial(n).0);
/// }
/// ```
pub fn pi_hits(n: u64, sched: OmpSchedule) -> u64 {
    let (s, c) = sched.code();
    // SAFETY: no pointers; `PI_CHUNK` > 0.
    unsafe { ffi::pv_omp_pi(n, crate::PI_CHUNK, s, c) }
}

/// `z[i] = exp(-gamma (x[i] - y[i])^2)`.
///
/// # Panics
/// If the slices differ in length.
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// if omp::available().is_ok() {
///     let (x, y) = parview_demo::gauss_inputs(1000);
///     let mut z = vec![0.0; 1000];
///     omp::gauss_into(&x, &y, 1.0, &mut z, OmpSchedule::Static);
///     assert_eq!(z[7], parview_demo::gauss(x[7], y[7], 1.0));
/// }
/// ```
pub fn gauss_into(x: &[f64], y: &[f64], gamma: f64, z: &mut [f64], sched: OmpSchedule) {
    assert!(
        x.len() == y.len() && y.len() == z.len(),
        "gauss_into: x, y and z differ in length"
    );
    let (s, c) = sched.code();
    // SAFETY: three slices of the same length `n`; the loop reads x, y and writes z below n.
    unsafe { ffi::pv_omp_gauss_into(x.as_ptr(), y.as_ptr(), z.as_mut_ptr(), z.len(), gamma, s, c) }
}

/// Inverts every matrix of `mats` into `out` (Gauss-Jordan with partial pivoting, as
/// [`invert5_into`](crate::invert5_into); a singular matrix gives NaNs).
///
/// # Panics
/// If the slices differ in length.
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// if omp::available().is_ok() {
///     let mats = parview_demo::inv_inputs(50);
///     let mut out = vec![[[0.0; 5]; 5]; 50];
///     omp::inv_into(&mats, &mut out, OmpSchedule::Dynamic(8));
///     assert!(parview_demo::inv_max_residual(&mats, &out, 1) < 1e-6);
/// }
/// ```
pub fn inv_into(mats: &[Mat5], out: &mut [Mat5], sched: OmpSchedule) {
    assert_eq!(
        mats.len(),
        out.len(),
        "inv_into: mats and out differ in length"
    );
    let (s, c) = sched.code();
    // SAFETY: `Mat5` is 25 contiguous f64 (arrays have no padding); both slices hold `n`
    // matrices; the loop touches matrices below n only.
    unsafe {
        ffi::pv_omp_inv(
            mats.as_ptr().cast(),
            out.as_mut_ptr().cast(),
            out.len(),
            s,
            c,
        )
    }
}

/// How many of `nums` are prime (trial division, as [`is_prime`](crate::is_prime)).
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// if omp::available().is_ok() {
///     assert_eq!(omp::primes(&[2, 3, 4, 97], OmpSchedule::Static), 3);
/// }
/// ```
pub fn primes(nums: &[u64], sched: OmpSchedule) -> usize {
    let (s, c) = sched.code();
    // SAFETY: the loop reads `nums` below its length.
    unsafe { ffi::pv_omp_primes(nums.as_ptr(), nums.len(), s, c) }
}

/// `out[i] = 2 input[i] + 1` (wrapping): the trivial map of the fixed-cost benches.
///
/// # Panics
/// If the slices differ in length.
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// if omp::available().is_ok() {
///     let mut out = [0u64; 3];
///     omp::affine_into(&[1, 2, 3], &mut out, OmpSchedule::Static);
///     assert_eq!(out, [3, 5, 7]);
/// }
/// ```
pub fn affine_into(input: &[u64], out: &mut [u64], sched: OmpSchedule) {
    assert_eq!(
        input.len(),
        out.len(),
        "affine_into: input and out differ in length"
    );
    let (s, c) = sched.code();
    // SAFETY: both slices hold `n` items; the loop touches indices below n only.
    unsafe { ffi::pv_omp_affine_into(input.as_ptr(), out.as_mut_ptr(), out.len(), s, c) }
}

/// [`affine_into`] into a fresh vector whose pages are first touched inside the parallel
/// loop (as `malloc` then `parallel for` in C): the counterpart of a collected map.
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// if omp::available().is_ok() {
///     assert_eq!(omp::affine_collect(&[0, 5], OmpSchedule::Static), vec![1, 11]);
/// }
/// ```
pub fn affine_collect(input: &[u64], sched: OmpSchedule) -> Vec<u64> {
    let n = input.len();
    let mut out: Vec<u64> = Vec::with_capacity(n);
    let (s, c) = sched.code();
    // SAFETY: the buffer has capacity `n`; the loop writes every index below n exactly once
    // (an OpenMP worksharing loop covers its whole iteration space), so all `n` are
    // initialised before the length is set.
    unsafe {
        ffi::pv_omp_affine_into(input.as_ptr(), out.as_mut_ptr(), n, s, c);
        out.set_len(n);
    }
    out
}

/// `n` items that each busy-wait `per_item` (on the monotonic clock).
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// use std::time::{Duration, Instant};
/// if omp::available().is_ok() {
///     let t = Instant::now();
///     omp::busy(2, Duration::from_micros(50), OmpSchedule::Static);
///     assert!(t.elapsed() >= Duration::from_micros(50));
/// }
/// ```
pub fn busy(n: usize, per_item: Duration, sched: OmpSchedule) {
    let (s, c) = sched.code();
    // SAFETY: no pointers.
    unsafe { ffi::pv_omp_busy(n, per_item.as_nanos() as f64, s, c) }
}

/// Items that each busy-wait `per_item`, then write their input to `out` (`out[i] =
/// input[i]`): the counterpart of a map whose items return a value, written into a buffer.
///
/// # Panics
/// If `input` and `out` differ in length, or OpenMP is not [`available`].
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// use std::time::Duration;
/// if omp::available().is_ok() {
///     let mut out = [0u64; 2];
///     omp::busy_into(&[3, 4], &mut out, Duration::from_micros(5), OmpSchedule::Static);
///     assert_eq!(out, [3, 4]);
/// }
/// ```
pub fn busy_into(input: &[u64], out: &mut [u64], per_item: Duration, sched: OmpSchedule) {
    assert_eq!(
        input.len(),
        out.len(),
        "busy_into: input and out differ in length"
    );
    let (s, c) = sched.code();
    let ns = per_item.as_nanos() as f64;
    // SAFETY: both slices hold `n` items; the loop touches indices below n only.
    unsafe { ffi::pv_omp_busy_into(input.as_ptr(), out.as_mut_ptr(), out.len(), ns, s, c) }
}

/// [`busy_into`] into a fresh vector (`malloc`, then the parallel loop): the counterpart of a
/// collected map whose items busy-wait.
///
/// # Panics
/// If OpenMP is not [`available`].
///
/// ```
/// use parview_demo::omp::{self, OmpSchedule};
/// use std::time::Duration;
/// if omp::available().is_ok() {
///     let v = omp::busy_collect(&[3, 4], Duration::from_micros(5), OmpSchedule::Static);
///     assert_eq!(v, vec![3, 4]);
/// }
/// ```
pub fn busy_collect(input: &[u64], per_item: Duration, sched: OmpSchedule) -> Vec<u64> {
    let n = input.len();
    let mut out: Vec<u64> = Vec::with_capacity(n);
    let (s, c) = sched.code();
    let ns = per_item.as_nanos() as f64;
    // SAFETY: the buffer has capacity `n`; the loop writes every index below n exactly once
    // (an OpenMP worksharing loop covers its whole iteration space), so all `n` are
    // initialised before the length is set.
    unsafe {
        ffi::pv_omp_busy_into(input.as_ptr(), out.as_mut_ptr(), n, ns, s, c);
        out.set_len(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [OmpSchedule; 4] = [
        OmpSchedule::Static,
        OmpSchedule::StaticChunk(3),
        OmpSchedule::Dynamic(1),
        OmpSchedule::Guided(2),
    ];

    /// The baselines must exist where CI runs (it sets nothing); a machine without OpenMP can
    /// opt out with `PARVIEW_NO_OPENMP=1`.
    fn built() -> bool {
        if std::env::var_os("PARVIEW_NO_OPENMP").is_some() {
            return available().is_ok();
        }
        available().expect("OpenMP baselines");
        true
    }

    #[test]
    fn kernels_match_the_rust_ones_bit_for_bit() {
        if !built() {
            return;
        }
        for threads in [1, 2, 3] {
            set_threads(threads);
            assert_eq!(super::threads(), threads);
            for sched in ALL {
                let n = 2 * crate::PI_CHUNK + 777;
                assert_eq!(pi_hits(n, sched), crate::pi_serial(n).0, "{sched}");

                let (x, y) = crate::gauss_inputs(10_001);
                let mut z = vec![0.0; x.len()];
                let mut want = vec![0.0; x.len()];
                gauss_into(&x, &y, 0.7, &mut z, sched);
                crate::gauss_serial_into(&x, &y, 0.7, &mut want);
                assert!(z.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));

                let mut mats = crate::inv_inputs(301);
                mats[5] = [[1.0; 5]; 5]; // singular
                let mut out = vec![[[0.0; 5]; 5]; mats.len()];
                inv_into(&mats, &mut out, sched);
                for (m, o) in mats.iter().zip(&out) {
                    match crate::invert5(m) {
                        Some(w) => assert_eq!(
                            w.map(|r| r.map(f64::to_bits)),
                            o.map(|r| r.map(f64::to_bits))
                        ),
                        None => assert!(o.iter().flatten().all(|v| v.is_nan())),
                    }
                }

                let nums = crate::primes_inputs();
                let few: Vec<u64> = (0..500).chain(nums[30..34].iter().copied()).collect();
                assert_eq!(primes(&few, sched), crate::primes_serial(&few), "{sched}");

                let input: Vec<u64> = (0..1001).map(|i| i * 7 + u64::MAX / 3).collect();
                let want: Vec<u64> = input
                    .iter()
                    .map(|x| x.wrapping_mul(2).wrapping_add(1))
                    .collect();
                assert_eq!(affine_collect(&input, sched), want);
                let mut out = vec![0; input.len()];
                affine_into(&input, &mut out, sched);
                assert_eq!(out, want);

                let few = &input[..7];
                let t = std::time::Instant::now();
                assert_eq!(busy_collect(few, Duration::from_micros(20), sched), few);
                // 7 items of 20 µs on at most 3 threads: at least 3 rounds of one item.
                assert!(t.elapsed() >= Duration::from_micros(60), "{sched}");
                let mut out = vec![0; few.len()];
                busy_into(few, &mut out, Duration::from_micros(1), sched);
                assert_eq!(out, few);
            }
        }
    }

    #[test]
    #[should_panic(expected = "`n`")]
    fn zero_threads_is_refused() {
        set_threads(0);
    }
}
