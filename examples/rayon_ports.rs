//! Everyday rayon code ported to parview, each run beside rayon and the serial loop on 2
//! workers: a quicksort with `join`, a word count with a per-worker fold, and a matrix filled
//! by rows in place (`par_chunks_mut`). Prints the speed-ups over serial and the ratio to
//! rayon (best of 3 runs each; small sizes, about a second in all). The criterion version with
//! the sizes is `cargo bench --bench rayon_ports`.
//!
//! `cargo run --release --example rayon_ports`

#[path = "../benches/common/ports.rs"]
mod ports;

use std::time::{Duration, Instant};

/// The best of 3 runs of `f` (each gets a fresh input from `setup`, not timed).
fn best<T, R>(mut setup: impl FnMut() -> T, mut f: impl FnMut(&mut T) -> R) -> (Duration, R) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let mut input = setup();
        let t = Instant::now();
        let r = f(&mut input);
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("ran"))
}

fn report(name: &str, serial: Duration, rayon: Duration, parview: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<28} serial {:>7.2} ms | rayon {:>7.2} ms ({:.2}x serial) | parview {:>7.2} ms ({:.2}x serial, {:.2}x rayon's speed)",
        ms(serial),
        ms(rayon),
        ms(serial) / ms(rayon),
        ms(parview),
        ms(serial) / ms(parview),
        ms(rayon) / ms(parview),
    );
}

fn main() {
    let pool = parview::Pool::builder().workers(2).build().expect("pool");
    let rp = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool");
    println!("2 workers each; speed-ups are best-of-3 times, > 1x rayon means faster than rayon");

    // Quicksort of 1M i64 with join.
    let data = ports::random_i64(1_000_000, 7);
    let mut want = data.clone();
    want.sort_unstable();
    let (s, a) = best(
        || data.clone(),
        |v| {
            ports::quicksort_serial(v);
            v.clone()
        },
    );
    let (r, b) = best(
        || data.clone(),
        |v| {
            rp.install(|| ports::quicksort_rayon(v));
            v.clone()
        },
    );
    let (p, c) = best(
        || data.clone(),
        |v| {
            ports::quicksort_parview(&pool, v);
            v.clone()
        },
    );
    assert!(a == want && b == want && c == want, "every version sorts");
    report("quicksort 1M i64 (join)", s, r, p);

    // Word count over 60k lines with a fold.
    let lines = ports::text_lines(60_000);
    let (s, a) = best(|| (), |_| ports::count_serial(&lines));
    let (r, b) = best(|| (), |_| rp.install(|| ports::count_rayon(&lines)));
    let (p, c) = best(|| (), |_| ports::count_parview(&pool, &lines));
    assert!(a == b && a == c, "every version counts the same");
    report("word count 60k lines (fold)", s, r, p);

    // A 1,000 x 1,000 matrix filled by rows in place.
    let cols = 1_000;
    let fresh = || vec![1.0f64; 1_000 * cols]; // written: no page faults in the timed fill
    let (s, a) = best(fresh, |m| {
        ports::fill_serial(m, cols);
        m[m.len() - 1]
    });
    let (r, b) = best(fresh, |m| {
        rp.install(|| ports::fill_rayon(m, cols));
        m[m.len() - 1]
    });
    let (p, c) = best(fresh, |m| {
        ports::fill_parview(&pool, m, cols);
        m[m.len() - 1]
    });
    assert!(a == b && a == c, "every version fills the same");
    report("fill 1000x1000 by rows", s, r, p);
}
