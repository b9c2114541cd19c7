//! Same bits on any pool size and schedule: `par_sum`, `par_map_reduce` and random streams
//! (`par_map_rng`): `cargo run --release --example reproducible`.

use parview::rand::RngExt;
use parview::{Pool, Schedule};

/// A float sum, a float map-reduce and random numbers, as bits.
fn compute(pool: &Pool, schedule: Option<Schedule>, xs: &[f64]) -> (u64, u64, Vec<u32>) {
    let (sum, norm, draws) = match schedule {
        None => (
            pool.par_sum::<_, f64>(xs),
            pool.par_map_reduce(xs, |x| x * x, |a, b| a + b),
            pool.par_map_rng(2017, 1_000, |rng, _item| rng.random_range(0..1000u32)),
        ),
        Some(s) => {
            let lb = pool.schedule(s); // the same calls on a view with schedule `s`
            (
                lb.sum(xs),
                lb.map_reduce(xs, |x| x * x, |a, b| a + b),
                lb.map_rng(2017, 1_000, |rng, _| rng.random_range(0..1000u32)),
            )
        }
    };
    (sum.to_bits(), norm.expect("not empty").to_bits(), draws)
}

fn main() {
    // Terms of very different sizes: a plain float sum depends on the order of additions.
    let xs: Vec<f64> = (1..=1_000_000)
        .map(|i| (i as f64).sin() / i as f64)
        .collect();
    println!(
        "plain iter().sum() = {:.17} (one order of additions)",
        xs.iter().sum::<f64>()
    );
    let schedules = [
        None,
        Some(Schedule::Static),
        Some(Schedule::Dynamic(7)),
        Some(Schedule::Guided(1)),
    ];
    let mut first = None;
    for workers in [1, 2, 7] {
        let pool = Pool::builder().workers(workers).build().expect("pool");
        for s in schedules {
            let (sum, norm, draws) = compute(&pool, s, &xs);
            let name = s.map_or("default".to_string(), |s| s.to_string());
            println!(
                "{workers} workers, {name:<12} sum {:.17} ({sum:#018x})  sum of squares {norm:#018x}  draws {:?}...",
                f64::from_bits(sum),
                &draws[..4]
            );
            let first = first.get_or_insert((sum, norm, draws.clone()));
            assert_eq!(*first, (sum, norm, draws), "bitwise identical");
        }
    }
    println!("same bits and numbers on every pool size and schedule (a fixed tree of additions)");
}
