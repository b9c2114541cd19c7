//! The five calls to start with: `cargo run --release --example quickstart`.
//! A parallel map, a DirectView apply, a load-balanced map with a schedule, an async map and
//! a reproducible sum.

use parview::{Pool, Schedule};

/// Trial division: slow for large primes, instant for most composites (uneven work).
fn is_prime(n: u64) -> bool {
    n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn main() {
    let pool = Pool::new(); // PARVIEW_WORKERS, or one engine per CPU
    println!("a pool of {} engines", pool.workers());

    // 1. par_map: iter().map().collect() in parallel; results in input order.
    let squares = pool.par_map(0..1_000u64, |i| i * i);
    println!("par_map: squares[999] = {}", squares[999]);

    // 2. DirectView: engine i runs the closure once, with its own index (ipyparallel's rc[:]).
    let hello = pool.direct().apply(|engine| format!("engine {engine}"));
    println!("direct apply: hello from {hello:?}");

    // 3. LoadBalancedView: idle engines take the next chunk of `Dynamic(1)`: one item each.
    let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
    let nums: Vec<u64> = (999_999_999_900..1_000_000_000_000).collect();
    let found = lb.map(&nums, |&n| is_prime(n).then_some(n));
    let primes: Vec<u64> = found.into_iter().flatten().collect();
    println!("load-balanced map: the primes among the last 100 below 1e12: {primes:?}");

    // 4. An async map: returns at once; progress() counts, get() waits for the results.
    let ar = lb.map_async(0..1_000_000u64, |x| x.count_ones());
    println!(
        "async map submitted: progress (done, total) = {:?}",
        ar.progress()
    );
    let ones: u32 = ar.get().expect("no item panicked").iter().sum();
    println!("async map done: {ones} one-bits in 0..1e6");

    // 5. A reproducible sum: the same bits for any worker count and any schedule.
    let xs: Vec<f64> = (1..=1_000_000).map(|i| 1.0 / i as f64).collect();
    let here = pool.par_sum::<_, f64>(&xs);
    let three = Pool::builder().workers(3).build().expect("a pool of 3");
    let there: f64 = three.schedule(Schedule::Guided(1)).sum(&xs);
    println!("par_sum of 1/i: {here} here, {there} on 3 engines with guided");
    assert_eq!(here.to_bits(), there.to_bits(), "bitwise identical");
    println!("same bits: yes");
}
