//! Measures the CPU time an idle parview pool burns: builds a pool, runs a few maps, waits
//! past the engines' spin window, then reads this process's CPU time (utime + stime from
//! `/proc/self/stat`, in clock ticks) before and after one second of idleness and prints it
//! as a percentage of one CPU. Target: below 1%.
//!
//! ```text
//! cargo run --release --example idle_cpu                 # default pool size
//! cargo run --release --example idle_cpu -- --workers 8  # more engines than cores
//! cargo run --release --example idle_cpu -- --secs 10    # longer window, finer resolution
//! ```
//!
//! Linux only (it reads `/proc`); exits with status 1 when the idle CPU use is 1% or more.

use parview::{Pool, Schedule};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every mainstream
/// Linux configuration; not readable without libc's `sysconf`).
const CLOCK_TICKS: f64 = 100.0;

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat (Linux)");
    // the command name (field 2) is in parentheses and may contain spaces
    let rest = &stat[stat.rfind(')').expect("malformed /proc/self/stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields 14 (utime) and 15 (stime) of stat(5) are 11 and 12 after field 3 (state)
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Context switches (voluntary + involuntary) summed over this process's threads: how often
/// threads were scheduled in or out, an exact count where CPU ticks are coarse.
fn context_switches() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn main() {
    let mut workers = None;
    let mut secs = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--workers", Some(n)) => workers = n.parse::<usize>().ok(),
            ("--secs", Some(n)) => secs = n.parse::<f64>().unwrap_or(1.0),
            _ => {
                eprintln!("usage: idle_cpu [--workers N] [--secs S]");
                std::process::exit(2);
            }
        }
    }
    let mut builder = Pool::builder();
    if let Some(w) = workers {
        builder = builder.workers(w);
    }
    let pool = builder.build().unwrap_or_else(|e| {
        eprintln!("idle_cpu: {e}");
        std::process::exit(2)
    });

    // some work first, so every engine has run, stolen and gone idle at least once
    for s in [Schedule::Static, Schedule::Dynamic(64), Schedule::Adaptive] {
        for _ in 0..200 {
            black_box(
                pool.schedule(s)
                    .map(0..100_000u64, |i| i.wrapping_mul(i) ^ 7),
            );
        }
    }
    black_box(pool.direct().apply(|e| e * 2));
    black_box(pool.load_balanced().map(0..64u32, |i| i + 1));

    // well past the spin window (parview::DEFAULT_SPIN = 200 µs)
    std::thread::sleep(Duration::from_millis(200));

    let window = Duration::from_secs_f64(secs);
    let x0 = context_switches();
    let c0 = cpu_ticks();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let wall = t0.elapsed().as_secs_f64();
    let c1 = cpu_ticks();
    let x1 = context_switches();
    let cpu_s = (c1 - c0) as f64 / CLOCK_TICKS;
    let pct = 100.0 * cpu_s / wall;
    println!(
        "idle pool of {} engines: {:.3} s CPU over {:.3} s idle = {pct:.2}% of one CPU \
         (resolution {:.1}%; target < 1%): {}",
        pool.workers(),
        cpu_s,
        wall,
        100.0 / CLOCK_TICKS / wall,
        if pct < 1.0 { "PASS" } else { "MISS" }
    );

    println!(
        "context switches of all threads while idle: {} ({:.1}/s; the main thread's own sleep accounts for 1 or 2)",
        x1 - x0,
        (x1 - x0) as f64 / wall
    );

    // the pool still answers after sleeping
    let t = Instant::now();
    let v = pool.par_map(0..1000u64, |i| i + 1);
    assert_eq!(v[999], 1000);
    println!(
        "first map after idling: {:.1} µs (engines woken from sleep)",
        t.elapsed().as_secs_f64() * 1e6
    );
    if pct >= 1.0 {
        std::process::exit(1);
    }
}
