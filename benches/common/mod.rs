//! Shared by the criterion benches: one parview pool and one rayon pool of the same size.

use parview::Pool;

/// A parview pool and a rayon pool with `PARVIEW_WORKERS` (default: all CPUs) threads each.
pub fn pools() -> (Pool, rayon::ThreadPool) {
    let w = parview::default_workers().expect("PARVIEW_WORKERS");
    let pool = Pool::builder().workers(w).build().expect("parview pool");
    let rp = rayon::ThreadPoolBuilder::new()
        .num_threads(w)
        .build()
        .expect("rayon pool");
    (pool, rp)
}
