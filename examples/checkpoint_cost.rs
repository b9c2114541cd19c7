//! What checkpointing costs: the same map with and without a checkpoint log, ratios taken in
//! one run (medians of interleaved repetitions), and the time to resume from a 1M-item log.
//!
//! ```text
//! cargo run --release --example checkpoint_cost            # ~10-20 s on 2 cores
//! PARVIEW_CKPT_DIR=/some/disk cargo run --release --example checkpoint_cost
//! PARVIEW_CKPT_REPS=21 cargo run --release --example checkpoint_cost   # more floor rounds
//! ```
//!
//! Logs go to `PARVIEW_CKPT_DIR` (default: the system temp dir) and are removed afterwards.
//! Workloads: 100k 5x5 inversions and the 64 uneven primes of `parview_demo` (adaptive
//! schedule, default sync policy: fsync at most every second, and at the end only if a second
//! passed since the last one), a trivial map with fixed chunks to get the cost per record, and
//! a rerun over a complete 1M-item log.
//!
//! The inversions also get the **floor**: what any crash-safe log of the same results must
//! pay, measured in the same run, interleaved with the plain and checkpointed maps — (a) the
//! plain map, then its results serialized with postcard into buffers on the pool (blocks of
//! 1,024 results), (b) that plus one `write_all` per buffer to a fresh file, (c) that plus one
//! `fsync`. The checkpoint's own cost is what it pays above (b) (its default policy syncs no
//! map shorter than a second): the input fingerprint, crc32 per record, and its bookkeeping.

use parview::{Pool, Schedule};
use parview_demo as demo;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// Median times of `plain` and `checkpointed` (a fresh log each time), interleaved.
fn compare<T: PartialEq + std::fmt::Debug>(
    reps: usize,
    log: &Path,
    mut plain: impl FnMut() -> T,
    mut checkpointed: impl FnMut(&Path) -> T,
) -> (Duration, Duration) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (t, x) = time(&mut plain);
        a.push(t);
        let _ = std::fs::remove_file(log);
        let (t, y) = time(|| checkpointed(log));
        b.push(t);
        assert_eq!(x, y, "checkpointed result differs");
    }
    let _ = std::fs::remove_file(log);
    (median(a), median(b))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs every variant once per round, `reps` rounds (so all see the same machine), and
/// returns each one's median. A variant times itself (its untimed setup excluded).
fn interleaved(reps: usize, variants: &mut [&mut dyn FnMut() -> Duration]) -> Vec<Duration> {
    let mut times: Vec<Vec<Duration>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps {
        for (v, t) in variants.iter_mut().zip(&mut times) {
            t.push(v());
        }
    }
    times.into_iter().map(median).collect()
}

/// `x` as overhead over `base`, in percent.
fn over(x: Duration, base: Duration) -> f64 {
    (x.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0
}

fn main() {
    let dir: PathBuf = std::env::var_os("PARVIEW_CKPT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let log = dir.join(format!(
        "parview-checkpoint-cost-{}.ckpt",
        std::process::id()
    ));
    let pool = Pool::builder().build().expect("pool");
    let lb = pool.load_balanced();
    println!(
        "checkpoint cost on {} engines, logs in {}",
        pool.workers(),
        dir.display()
    );

    // 100k 5x5 inversions.
    let mats = demo::inv_inputs(demo::INV_N);
    let inv = |a: &demo::Mat5| {
        let mut o = [[0.0; 5]; 5];
        demo::invert5_into(a, &mut o);
        o
    };
    let (p, c) = compare(
        9,
        &log,
        || lb.map(&mats, inv),
        |l| {
            lb.checkpoint(l)
                .map(&mats, inv)
                .expect("checkpointed inversions")
        },
    );
    println!(
        "inv 100k (adaptive): plain {:.2} ms, checkpointed {:.2} ms, ratio {:.3} ({:+.1}%)",
        ms(p),
        ms(c),
        c.as_secs_f64() / p.as_secs_f64(),
        (c.as_secs_f64() / p.as_secs_f64() - 1.0) * 100.0
    );
    // The same without any fsync (records still written per chunk), and the parts: the input
    // fingerprint plus reading a complete log (a rerun that computes nothing).
    let (p, c) = compare(
        9,
        &log,
        || lb.map(&mats, inv),
        |l| {
            lb.checkpoint(l)
                .sync_every(Duration::MAX)
                .map(&mats, inv)
                .expect("checkpointed inversions")
        },
    );
    println!(
        "inv 100k, no fsync: plain {:.2} ms, checkpointed {:.2} ms, ratio {:.3} ({:+.1}%)",
        ms(p),
        ms(c),
        c.as_secs_f64() / p.as_secs_f64(),
        (c.as_secs_f64() / p.as_secs_f64() - 1.0) * 100.0
    );
    // The floor, interleaved with the plain and checkpointed maps.
    let want = lb.map(&mats, inv);
    let floor_file = dir.join(format!(
        "parview-checkpoint-floor-{}.bin",
        std::process::id()
    ));
    let serialize = |v: &[demo::Mat5]| -> Vec<Vec<u8>> {
        let blocks: Vec<&[demo::Mat5]> = v.chunks(1024).collect();
        lb.map(&blocks, |b| postcard::to_allocvec(b).expect("serialize"))
    };
    let floor = |write: bool, sync: bool| -> Duration {
        let _ = std::fs::remove_file(&floor_file);
        let (t, v) = time(|| {
            let v = lb.map(&mats, inv);
            let bufs = serialize(&v);
            if write {
                let mut f = std::fs::File::create(&floor_file).expect("floor file");
                for b in &bufs {
                    f.write_all(b).expect("write");
                }
                if sync {
                    f.sync_data().expect("fsync");
                }
            }
            v
        });
        assert_eq!(v, want);
        t
    };
    // More rounds for A/B comparisons of two builds: PARVIEW_CKPT_REPS (default 9).
    let reps = std::env::var("PARVIEW_CKPT_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    let t = interleaved(
        reps,
        &mut [
            &mut || {
                let (t, v) = time(|| lb.map(&mats, inv));
                assert_eq!(v, want);
                t
            },
            &mut || floor(false, false),
            &mut || floor(true, false),
            &mut || floor(true, true),
            &mut || {
                let _ = std::fs::remove_file(&log);
                let (t, v) = time(|| lb.checkpoint(&log).map(&mats, inv).expect("ckpt"));
                assert_eq!(v, want);
                t
            },
            &mut || {
                let _ = std::fs::remove_file(&log);
                let (t, v) = time(|| {
                    lb.checkpoint(&log)
                        .sync_every(Duration::MAX)
                        .map(&mats, inv)
                        .expect("ckpt")
                });
                assert_eq!(v, want);
                t
            },
        ],
    );
    let _ = std::fs::remove_file(&floor_file);
    let (plain, fa, fb, fc, ck, ck_max) = (t[0], t[1], t[2], t[3], t[4], t[5]);
    println!(
        "inv 100k floor, over the plain map ({:.2} ms): (a) serialize {:+.1}%, (b) + write {:+.1}%, (c) + fsync {:+.1}%",
        ms(plain),
        over(fa, plain),
        over(fb, plain),
        over(fc, plain)
    );
    println!(
        "inv 100k checkpointed, same rounds: default policy {:+.1}%, sync_every(MAX) {:+.1}%; default / floor (b) {:.3} ({:+.2} ms above it)",
        over(ck, plain),
        over(ck_max, plain),
        ck.as_secs_f64() / fb.as_secs_f64(),
        ms(ck) - ms(fb)
    );

    let _ = lb.checkpoint(&log).map(&mats, inv).expect("full log");
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let reread = median(
        (0..5)
            .map(|_| {
                time(|| {
                    lb.checkpoint(&log)
                        .map(&mats, |_| -> demo::Mat5 { unreachable!() })
                        .expect("reread")
                })
                .0
            })
            .collect(),
    );
    let _ = std::fs::remove_file(&log);
    let empty: Vec<demo::Mat5> = Vec::new();
    let fp_only = median(
        (0..5)
            .map(|_| {
                // Fingerprint only: a log written for 0 items refuses this map (wrong
                // length) right after hashing its input.
                let _ = std::fs::remove_file(&log);
                let _ = lb.checkpoint(&log).map(&empty, inv);
                time(|| lb.checkpoint(&log).map(&mats, inv).err()).0
            })
            .collect(),
    );
    let _ = std::fs::remove_file(&log);
    println!(
        "inv 100k parts: log {:.1} MB; fingerprint + refusal {:.2} ms; rerun from the complete log {:.2} ms",
        size as f64 / 1e6,
        ms(fp_only),
        ms(reread)
    );

    // 64 uneven primes.
    let nums = demo::primes_inputs();
    let (p, c) = compare(
        5,
        &log,
        || lb.map(&nums, |&n| demo::is_prime(n)),
        |l| {
            lb.checkpoint(l)
                .map(&nums, |&n| demo::is_prime(n))
                .expect("checkpointed primes")
        },
    );
    println!(
        "primes 64 (adaptive): plain {:.2} ms, checkpointed {:.2} ms, ratio {:.3} ({:+.1}%)",
        ms(p),
        ms(c),
        c.as_secs_f64() / p.as_secs_f64(),
        (c.as_secs_f64() / p.as_secs_f64() - 1.0) * 100.0
    );

    // Cost per record: a cheap map over 100k u64 with chunks of 100 (1,000 records).
    let xs: Vec<u64> = (0..100_000).collect();
    let chunk = 100;
    let records = xs.len() / chunk;
    let cheap = |x: &u64| x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let lbc = pool.schedule(Schedule::Dynamic(chunk));
    for (name, every) in [
        ("fsync <= 1/s", Duration::from_secs(1)),
        ("fsync per chunk", Duration::ZERO),
    ] {
        let (p, c) = compare(
            5,
            &log,
            || lbc.map(&xs, cheap),
            |l| {
                lbc.checkpoint(l)
                    .sync_every(every)
                    .map(&xs, cheap)
                    .expect("checkpointed cheap map")
            },
        );
        println!(
            "per record ({name}): {records} records of {chunk} u64: plain {:.2} ms, checkpointed {:.2} ms, {:.1} us per record",
            ms(p),
            ms(c),
            (c.saturating_sub(p)).as_secs_f64() * 1e6 / records as f64
        );
    }

    // Resume from a complete 1M-item log: every result is read back, nothing runs.
    let big: Vec<u64> = (0..1_000_000).collect();
    let _ = std::fs::remove_file(&log);
    let (t_write, full) = time(|| {
        lb.checkpoint(&log)
            .map(&big, |x| x ^ 0xABCD)
            .expect("1M log")
    });
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut resumes = Vec::new();
    for _ in 0..3 {
        let (t, v) = time(|| {
            lb.checkpoint(&log)
                .map(&big, |_| -> u64 { unreachable!("all in the log") })
                .expect("resume 1M")
        });
        assert_eq!(v, full);
        resumes.push(t);
    }
    let (t_plain, _) = time(|| lb.map(&big, |x| x ^ 0xABCD));
    println!(
        "resume 1M u64 (log {:.1} MB, written in {:.1} ms; plain map {:.2} ms): {:.1} ms",
        size as f64 / 1e6,
        ms(t_write),
        ms(t_plain),
        ms(median(resumes))
    );
    let _ = std::fs::remove_file(&log);
}
