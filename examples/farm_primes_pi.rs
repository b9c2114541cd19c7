//! One program for the laptop and the cluster: the uneven primes list and Ray's π, on a
//! root-driven [`Farm`] (Ray's `Pool`, `mpi4py.futures`).
//!
//! ```text
//! cargo build --release --features mpi --example farm_primes_pi
//! target/release/examples/farm_primes_pi                # local pool, no MPI
//! mpirun -n 3 target/release/examples/farm_primes_pi    # rank 0 runs main, ranks 1, 2 serve
//! ```
//!
//! Both print the same lines: which numbers of `parview_demo`'s uneven list are prime, and π
//! estimated from `--pi-n` random points (default 2e7) as in Ray's blog post (one chunk of
//! 1e6 points per task, one seeded stream per chunk, summed with a deterministic reduction,
//! so the estimate has the same bits on any layout).
//!
//! `--measure` adds timings (they differ between runs): the round trip of one task call
//! rank 0 → rank 1 → rank 0 and of a one-item map, the cost per chunk of a `Dynamic(1)` map of
//! trivial items, the uneven primes against the ideal `max(Σ/P, longest item)`, and the cost
//! of checkpointing (`FarmView::checkpoint`: plain and checkpointed maps interleaved, a fresh
//! log each time, then the resume of a finished log):
//!
//! ```text
//! mpirun -n 2 -x PARVIEW_WORKERS=1 target/release/examples/farm_primes_pi --measure
//! ```

use std::time::{Duration, Instant};

use parview::Schedule;
use parview::cluster::Farm;
use parview_demo::{ideal_time, pi_chunk_hits, primes_inputs};

const PI_CHUNK: u64 = 1_000_000;

parview::task! {
    /// Whether `n` is prime (trial division: the costs are very uneven).
    fn is_prime(n: u64) -> bool { parview_demo::is_prime(n) }
}

parview::task! {
    /// Hits of chunk `k` of the `n` points (`n` is the context, sent once per rank).
    fn pi_hits(n: &u64, k: usize) -> u64 {
        let start = k as u64 * PI_CHUNK;
        pi_chunk_hits(k as u64, PI_CHUNK.min(n - start))
    }
}

parview::task! {
    /// Returns its item: the round-trip probe.
    fn echo(x: usize) -> usize { x }
}

struct Args {
    pi_n: u64,
    measure: bool,
}

fn args() -> Args {
    let mut a = Args {
        pi_n: 20_000_000,
        measure: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--measure" => a.measure = true,
            "--pi-n" => {
                a.pi_n = it
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|&v| v >= 1.0)
                    .unwrap_or_else(|| usage()) as u64;
            }
            _ => usage(),
        }
    }
    a
}

fn usage() -> ! {
    eprintln!("usage: farm_primes_pi [--pi-n N] [--measure]");
    std::process::exit(2)
}

fn main() {
    let a = args();
    // On every rank but 0 this call serves tasks and exits when rank 0 is done.
    let farm = match Farm::start() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("farm_primes_pi: {e}");
            std::process::exit(1);
        }
    };

    let nums = primes_inputs();
    let flags = farm
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map(is_prime, &nums)
        .expect("no task panics");
    let primes: Vec<u64> = nums
        .iter()
        .zip(&flags)
        .filter(|&(_, &p)| p)
        .map(|(&n, _)| n)
        .collect();
    println!(
        "uneven list: {} numbers, {} primes",
        nums.len(),
        primes.len()
    );
    println!("first primes: {:?}", &primes[..4.min(primes.len())]);
    println!("last prime: {:?}", primes.last());

    let chunks = a.pi_n.div_ceil(PI_CHUNK) as usize;
    let hits = farm
        .map_reduce_with(pi_hits, &a.pi_n, 0..chunks, 1, |x, y| x + y)
        .expect("no task panics")
        .unwrap_or(0);
    let pi = 4.0 * hits as f64 / a.pi_n as f64;
    println!(
        "pi from {:.0e} points: {pi:.10} ({hits} hits)",
        a.pi_n as f64
    );

    if a.measure {
        measure(&farm, &nums);
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn measure(farm: &Farm, nums: &[u64]) {
    let engines: usize = farm.rank_workers().iter().sum();
    println!(
        "layout: {} rank(s) x workers {:?} = {engines} engine(s){}",
        farm.ranks(),
        farm.rank_workers(),
        if farm.is_local() { ", local" } else { "" }
    );
    // Round trips: one call on the last rank (rank 0 itself when local), and one-item maps.
    let last = farm.ranks() - 1;
    let reps = 2000;
    let direct = farm.direct().targets(&[last]);
    let _ = direct.apply(echo);
    let t = Instant::now();
    for _ in 0..reps {
        direct.apply(echo).expect("echo");
    }
    let call = t.elapsed() / reps;
    // A one-item map: command, chunk, result and stop (the item may run on rank 0).
    let t = Instant::now();
    for i in 0..reps as usize {
        farm.load_balanced().map(echo, &[i]).expect("echo");
    }
    let one = t.elapsed() / reps;
    println!(
        "round trip: one task called on rank {last} {:.1} us; a one-item map {:.1} us",
        secs(call) * 1e6,
        secs(one) * 1e6
    );
    let n = 20_000;
    let rep = farm
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_range_report_with(echo, &(), 0..n)
        .expect("echo");
    println!(
        "Dynamic(1) over {n} trivial items: {:.2} us per chunk (wall / chunks, all ranks)",
        secs(rep.wall) * 1e6 / n as f64
    );
    // Uneven primes against the ideal from this machine's serial item times.
    let durs: Vec<Duration> = nums
        .iter()
        .map(|&x| {
            let t = Instant::now();
            std::hint::black_box(parview_demo::is_prime(std::hint::black_box(x)));
            t.elapsed()
        })
        .collect();
    let ideal = ideal_time(&durs, engines);
    for s in [Schedule::Dynamic(1), Schedule::Adaptive] {
        let t = Instant::now();
        let rep = farm
            .load_balanced()
            .schedule(s)
            .map_report_with(is_prime, &(), nums)
            .expect("no task panics");
        let wall = t.elapsed();
        let chunk_busy: Vec<Duration> = rep.timeline.records().iter().map(|r| r.busy()).collect();
        let ideal_run = ideal_time(&chunk_busy, engines);
        let busy: Vec<String> = rep
            .loads
            .iter()
            .map(|l| format!("rank {} {:.3} s/{} items", l.rank, secs(l.busy), l.items))
            .collect();
        println!(
            "uneven primes ({s}): wall {:.3} s, ideal {:.3} s, wall/ideal {:.3}; \
             wall/ideal-of-this-run {:.3}; busy: {}",
            secs(wall),
            secs(ideal),
            secs(wall) / secs(ideal),
            secs(rep.wall) / secs(ideal_run),
            busy.join(", ")
        );
    }
    checkpoint_cost(farm, nums);
}

/// Median of `xs`.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Checkpointed against plain farm maps, interleaved (a fresh log for each checkpointed run;
/// default sync policy: `fsync` at most every second and at the end).
fn checkpoint_cost(farm: &Farm, nums: &[u64]) {
    let log = std::env::temp_dir().join(format!("parview-farm-ckpt-{}.log", std::process::id()));
    let fresh = || {
        let _ = std::fs::remove_file(&log);
    };
    let reps = 5;
    let trivial: Vec<usize> = (0..20_000).collect();
    for (what, s) in [
        ("uneven primes (Adaptive)", Schedule::Adaptive),
        ("uneven primes (Dynamic(1))", Schedule::Dynamic(1)),
    ] {
        let (mut plain, mut ck) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            let a = farm.load_balanced().schedule(s).map(is_prime, nums);
            plain.push(secs(t.elapsed()));
            fresh();
            let t = Instant::now();
            let b = farm
                .load_balanced()
                .schedule(s)
                .checkpoint(&log)
                .map(is_prime, nums);
            ck.push(secs(t.elapsed()));
            assert_eq!(a.expect("no task panics"), b.expect("the log works"));
        }
        let ratio = median(ck.iter().zip(&plain).map(|(c, p)| c / p).collect());
        println!(
            "checkpoint, {what}: plain {:.3} s, checkpointed {:.3} s (medians of {reps}), \
             checkpointed/plain {ratio:.3} (median of the interleaved pairs)",
            median(plain),
            median(ck)
        );
    }
    let (mut plain, mut ck) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let _ = farm
            .load_balanced()
            .schedule(Schedule::Dynamic(1))
            .map(echo, &trivial);
        plain.push(secs(t.elapsed()));
        fresh();
        let t = Instant::now();
        let _ = farm
            .load_balanced()
            .schedule(Schedule::Dynamic(1))
            .checkpoint(&log)
            .map(echo, &trivial);
        ck.push(secs(t.elapsed()));
    }
    let n = trivial.len() as f64;
    let per = median(ck.iter().zip(&plain).map(|(c, p)| (c - p) / n).collect());
    println!(
        "checkpoint, Dynamic(1) over {n} trivial items: plain {:.2} us per chunk, \
         checkpointed {:.2} us per chunk, a record costs {:.2} us (median of {reps} pairs)",
        median(plain) / n * 1e6,
        median(ck) / n * 1e6,
        per * 1e6
    );
    // Resume: every result read from the log, nothing sent.
    let t = Instant::now();
    let v = farm
        .load_balanced()
        .checkpoint(&log)
        .map(echo, &trivial)
        .expect("the log works");
    assert_eq!(v, trivial);
    println!(
        "checkpoint, resume of a finished {n}-item log: {:.2} ms",
        secs(t.elapsed()) * 1e3
    );
    fresh();
}
