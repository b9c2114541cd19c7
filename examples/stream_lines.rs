//! Streams N generated text lines (default 10,000,000) through a per-line function — split into
//! words, count them, parse the numbers, hash the rest — without ever holding the input in
//! memory: serially, through parview's `imap_iter` (results in input order), and through
//! rayon's `par_bridge` (unordered), in one run. Prints each one's time, the speed-ups, and
//! the peak resident memory of each phase (`VmHWM`, reset between phases through
//! `/proc/self/clear_refs`), which stays flat however large N is.
//!
//! ```text
//! cargo run --release --example stream_lines               # 10M lines
//! cargo run --release --example stream_lines -- 200000     # CI size
//! PARVIEW_WORKERS=4 cargo run --release --example stream_lines
//! ```
//!
//! Exits with status 1 if a parallel result differs from the serial one.

use parview_demo::{line_stats as per_line, text_line as line};
use rayon::prelude::*;
use std::time::{Duration, Instant};

fn combine(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (a.0 + b.0, a.1.wrapping_add(b.1), a.2 ^ b.2)
}

/// Peak resident set size of this process since the last reset, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0; ignored where unsupported).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn phase<T>(name: &str, f: impl FnOnce() -> T) -> (T, Duration, Option<f64>) {
    reset_peak();
    let t = Instant::now();
    let r = f();
    let d = t.elapsed();
    let rss = peak_rss_mib();
    match rss {
        Some(m) => println!("{name:<28} {:>9.1} ms   peak RSS {m:>7.1} MiB", ms(d)),
        None => println!("{name:<28} {:>9.1} ms", ms(d)),
    }
    (r, d, rss)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().unwrap_or_else(|_| {
            eprintln!("usage: stream_lines [LINES]  (a whole number, got {a:?})");
            std::process::exit(2)
        }),
        None => 10_000_000,
    };
    let pool = parview::Pool::new();
    let w = pool.workers();
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(w)
        .build()
        .expect("rayon pool");
    let lb = pool.load_balanced();
    println!(
        "{n} lines, {w} workers, parview max_in_flight {} (default)",
        lb.get_max_in_flight()
    );

    let (serial, ts, _) = phase("serial", || {
        (0..n).map(line).map(per_line).fold((0, 0, 0), combine)
    });
    let (ours, tp, rss_p) = phase("parview imap_iter", || {
        lb.imap_iter((0..n).map(line), per_line)
            .map(|r| r.expect("per_line does not panic"))
            .fold((0, 0, 0), combine)
    });
    let (theirs, tr, _) = phase("rayon par_bridge", || {
        rayon.install(|| {
            (0..n)
                .map(line)
                .par_bridge()
                .map(per_line)
                .reduce(|| (0, 0, 0), combine)
        })
    });
    let rel = |t: Duration| ts.as_secs_f64() / t.as_secs_f64();
    println!(
        "speed-up over serial: parview {:.2}x, rayon {:.2}x; parview / rayon time {:.2}",
        rel(tp),
        rel(tr),
        tp.as_secs_f64() / tr.as_secs_f64()
    );
    if let Some(m) = rss_p {
        // Collecting the input first would need its lines in memory at once.
        let bytes: u64 = (0..n.min(1000)).map(|i| line(i).len() as u64 + 24).sum();
        let est = bytes as f64 * n as f64 / n.clamp(1, 1000) as f64 / (1 << 20) as f64;
        println!(
            "parview peak RSS {m:.1} MiB while streaming; collecting the input first would hold ~{est:.0} MiB of lines"
        );
    }
    if ours != serial || theirs != serial {
        eprintln!("MISMATCH: serial {serial:?}, parview {ours:?}, rayon {theirs:?}");
        std::process::exit(1);
    }
}
