//! Command-line options: `--quick`, `--workers N`, `--pi-n N`, `--only a,b`, `--no-openmp`.

/// What the user asked for.
pub struct Opts {
    /// Tiny sizes, a few seconds in all; timings are meaningless, checks still run.
    pub quick: bool,
    /// Pool size (parview and rayon alike).
    pub workers: usize,
    /// Monte-Carlo pi samples.
    pub pi_n: u64,
    /// Comma-separated workload prefixes to run (all when `None`).
    pub only: Option<String>,
    /// Whether the OpenMP rows run: false with `--no-openmp`, and set false by `main` when
    /// `parview_demo::omp` is not available.
    pub openmp: bool,
}

impl Opts {
    /// Whether workload `name` runs (`--only` takes a comma-separated list of prefixes).
    pub fn runs(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|w| name.starts_with(w.trim())))
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: tour [--quick] [--workers N] [--pi-n N] [--only pi,gauss,inv,primes,avg,corr] [--no-openmp]   (N may be written 1e9)"
    );
    std::process::exit(2)
}

/// A whole number >= 1, written `100000000` or `1e8`.
fn parse_count(s: &str) -> u64 {
    if let Ok(v) = s.parse::<u64>() {
        return v;
    }
    match s.parse::<f64>() {
        Ok(v) if v >= 1.0 && v.is_finite() && v.fract() == 0.0 => v as u64,
        _ => {
            eprintln!("tour: not a whole number >= 1: {s:?}");
            usage()
        }
    }
}

/// Parses `std::env::args()`; prints the usage and exits with status 2 on a bad argument.
pub fn parse_opts() -> Opts {
    let mut quick = false;
    let mut workers = None;
    let mut pi_n = None;
    let mut only = None;
    let mut openmp = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--workers" => workers = Some(parse_count(&args.next().unwrap_or_else(|| usage()))),
            "--pi-n" => pi_n = Some(parse_count(&args.next().unwrap_or_else(|| usage()))),
            "--only" => only = Some(args.next().unwrap_or_else(|| usage())),
            "--no-openmp" => openmp = false,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("tour: unknown argument {other:?}");
                usage()
            }
        }
    }
    let workers = match workers {
        Some(w) => w as usize,
        None => parview::default_workers().unwrap_or_else(|e| {
            eprintln!("tour: {e}");
            std::process::exit(2)
        }),
    };
    let pi_n = pi_n.unwrap_or(if quick { 8_000_000 } else { 100_000_000 });
    Opts {
        quick,
        workers,
        pi_n,
        only,
        openmp,
    }
}
