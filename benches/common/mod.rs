//! Shared by the criterion benches: one parview pool, one rayon pool and OpenMP's team, all of
//! the same size.

use parview::Pool;

/// A parview pool and a rayon pool with `PARVIEW_WORKERS` (default: all CPUs) threads each;
/// OpenMP's loops (`parview_demo::omp`) are set to the same count.
pub fn pools() -> (Pool, rayon::ThreadPool) {
    let w = parview::default_workers().expect("PARVIEW_WORKERS");
    let pool = Pool::builder().workers(w).build().expect("parview pool");
    let rp = rayon::ThreadPoolBuilder::new()
        .num_threads(w)
        .build()
        .expect("rayon pool");
    if omp() {
        parview_demo::omp::set_threads(w);
    }
    (pool, rp)
}

/// Whether the OpenMP rows can run (printing why not, once per group, when they cannot).
#[allow(dead_code)] // not every bench has OpenMP rows
pub fn omp() -> bool {
    match parview_demo::omp::available() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("no OpenMP rows: {why}");
            false
        }
    }
}
