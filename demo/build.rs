//! Compiles `c/omp.c` (OpenMP versions of the workloads) with
//! `-O3 -march=native -fopenmp -ffp-contract=off`
//! and links libgomp. Without an OpenMP-capable C compiler the crate still builds: the
//! `omp` module then reports itself unavailable (cfg `parview_no_openmp`) and the benches and
//! the tour print why their OpenMP rows are missing.
fn main() {
    println!("cargo::rerun-if-changed=c/omp.c");
    println!("cargo::rustc-check-cfg=cfg(parview_no_openmp)");
    let mut build = cc::Build::new();
    build
        .file("c/omp.c")
        .opt_level(3)
        .flag("-fopenmp")
        // No fused multiply-adds: results stay bit-identical to the Rust kernels.
        .flag("-ffp-contract=off")
        .flag_if_supported("-march=native")
        .warnings(true);
    match build.try_compile("parview_demo_omp") {
        Ok(()) => println!("cargo::rustc-link-lib=gomp"),
        Err(e) => {
            println!("cargo::warning=OpenMP baselines disabled: {e}");
            println!("cargo::rustc-cfg=parview_no_openmp");
        }
    }
}
