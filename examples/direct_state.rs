//! DirectView with per-engine state — ipyparallel's push/pull and scatter/gather:
//! `cargo run --release --example direct_state`.

use parview::Pool;
use parview::rand::RngExt;

fn main() {
    let pool = Pool::builder().workers(4).build().expect("a pool of 4");
    let dv = pool.direct(); // every engine, in order (rc[:])

    // init (push): each engine creates its own value, once, on its own thread.
    let rngs = dv.init(|engine| parview::rng::stream(2017, engine as u64));
    let seen = dv.init(|_engine| 0usize);

    // apply_with_state: every engine runs once with `&mut` its own value.
    let draws = dv.apply_with_state(&rngs, |engine, rng| (engine, rng.random_range(0..100)));
    println!("one draw per engine (engine, draw): {draws:?}");
    // The state stays on the engines: the same streams go on where they stopped.
    let next = dv.apply_with_state(&rngs, |_, rng| rng.random_range(0..100));
    println!("the next draw of each stream:         {next:?}");

    // map_with_state: a static map, engine k runs block k with its own value.
    let doubled = dv.map_with_state(&seen, 0..1_000u32, |count, x| {
        *count += 1;
        x * 2
    });
    // pull: read every engine's value back, in engine order.
    let counts = dv.pull(&seen);
    println!(
        "map_with_state: doubled[999] = {}; items per engine {counts:?}",
        doubled[999]
    );
    assert_eq!(counts.iter().sum::<usize>(), 1_000);

    // scatter: one contiguous piece per engine; change the pieces in place; gather them back.
    let data: Vec<f64> = (1..=10).map(f64::from).collect();
    let pieces = dv.scatter(&data);
    println!("scatter 1..=10: {:?}", dv.pull(&pieces));
    dv.apply_with_state(&pieces, |_, piece| piece.iter_mut().for_each(|x| *x *= *x));
    let squares = dv.gather(&pieces);
    println!("gather after squaring on the engines: {squares:?}");
    assert_eq!(squares, data.iter().map(|x| x * x).collect::<Vec<_>>());

    // A DirectView on some engines only (rc[[0, 2]]): state of those engines.
    let some = pool.direct_to(&[0, 2]).expect("engines 0 and 2 exist");
    let labels = some.init(|engine| format!("I am engine {engine}"));
    println!("direct_to([0, 2]) pull: {:?}", some.pull(&labels));
}
