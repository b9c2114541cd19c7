//! Seeing how the work was shared: `map_timed` on uneven work with two schedules, each
//! timeline's summary, and the SVG and Perfetto files: `cargo run --release --example timeline`.

use parview::{Pool, Schedule};
use std::path::PathBuf;

/// Trial division: ~1e6 divisions for a prime near 1e12, one for an even number.
fn is_prime(n: u64) -> bool {
    n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn main() -> std::io::Result<()> {
    let pool = Pool::builder().workers(2).build().expect("a pool of 2");
    // Uneven: the first 12 items are large primes (slow), the other 36 even numbers (instant).
    let nums: Vec<u64> = (0..48)
        .map(|k| if k < 12 { 999_999_999_989 } else { 2 * k })
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/parview");
    let mut parallelism = Vec::new();
    for (stem, schedule) in [
        ("static", Schedule::Static),
        ("dynamic", Schedule::Dynamic(1)),
    ] {
        let (flags, tl) = pool.schedule(schedule).map_timed(&nums, |&n| is_prime(n));
        assert_eq!(flags.iter().filter(|&&p| p).count(), 12);
        // The summary: wall and serial time, parallelism, imbalance, busy share per engine.
        println!("{schedule}:\n{tl}\n");
        parallelism.push(format!("{schedule} {:.2}x", tl.parallelism()));
        let svg = dir.join(format!("timeline-{stem}.svg"));
        let trace = dir.join(format!("timeline-{stem}.json"));
        tl.write_svg(&svg)?; // a Gantt chart: one row per engine, one bar per chunk
        tl.write_chrome_trace(&trace)?; // Chrome trace format: open in Perfetto
        println!("  wrote {}\n  wrote {}\n", svg.display(), trace.display());
    }
    // Static cuts one block per lane: the first block holds every prime, so one lane works
    // while the others idle. Dynamic(1) hands out one item at a time.
    println!("parallelism: {}", parallelism.join(", "));
    println!("Open the .svg files in a browser; load a .json at https://ui.perfetto.dev");
    Ok(())
}
