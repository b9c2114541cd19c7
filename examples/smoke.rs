use parview::{Pool, Schedule};
use std::time::Instant;
fn main() {
    let pool = Pool::builder().workers(2).build().unwrap();
    for s in [
        Schedule::Static,
        Schedule::StaticChunked(7),
        Schedule::Dynamic(3),
        Schedule::Guided(2),
        Schedule::Adaptive,
    ] {
        let v = pool.par_map_with(s, 0..100_000u64, |i| 2 * i + 1);
        assert!(
            v.iter().enumerate().all(|(i, &x)| x == 2 * i as u64 + 1),
            "{s}"
        );
    }
    let reps = 200_000;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(pool.par_map(&[1u64, 2], |x| x + 1));
    }
    println!(
        "2 trivial items: {:.0} ns/call",
        t.elapsed().as_nanos() as f64 / reps as f64
    );
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(pool.par_map(0..16u64, |x| std::hint::black_box(x) * 2 + 1));
    }
    println!(
        "16 trivial items: {:.0} ns/call",
        t.elapsed().as_nanos() as f64 / reps as f64
    );
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(
            (0..16u64)
                .map(|x| std::hint::black_box(x) * 2 + 1)
                .collect::<Vec<_>>(),
        );
    }
    println!(
        "16 trivial serial: {:.0} ns/call",
        t.elapsed().as_nanos() as f64 / reps as f64
    );
    let busy = |_: &u64| {
        let t = Instant::now();
        while t.elapsed().as_nanos() < 5000 {}
    };
    let t = Instant::now();
    for _ in 0..20_000 {
        pool.par_map(&[1u64, 2], busy);
    }
    println!(
        "2 x 5us items: {:.2} us/call",
        t.elapsed().as_secs_f64() * 1e6 / 20_000.0
    );
}
