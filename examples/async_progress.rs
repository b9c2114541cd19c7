//! Watching and stopping a background map: `map_async`, `progress()`, `wait_timeout`, `abort`,
//! what `get` returns after an abort, and the timings: `cargo run --release --example async_progress`.

use parview::{MapError, Pool, Schedule};
use std::time::Duration;

/// One item of "work": a sleep, so the example runs the same on any machine.
fn work(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() {
    let pool = Pool::builder().workers(4).build().expect("a pool of 4");
    let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));

    // 1. 200 items of 5 ms: poll the progress every 100 ms until the map is done.
    let ar = lb.map_async(vec![5u64; 200], work);
    while !ar.wait_timeout(Duration::from_millis(100)) {
        let (done, total) = ar.progress();
        println!("  progress: {done:>3} of {total} items done");
    }
    let (wall, serial) = (ar.wall_time(), ar.serial_time());
    let out = ar.get().expect("no item panicked");
    println!(
        "done: {} results; wall {wall:.2?}, serial {serial:.2?}: parallelism {:.2}x on 4 engines",
        out.len(),
        serial.as_secs_f64() / wall.as_secs_f64()
    );

    // 2. 10,000 items of 2 ms (5 s of work on 4 engines), aborted after 200 ms.
    let ar = lb.map_async(vec![2u64; 10_000], work);
    let finished = ar.wait_timeout(Duration::from_millis(200));
    let progress = ar.progress();
    println!("after 200 ms: finished {finished}, progress {progress:?}; abort()");
    ar.abort(); // no new chunk starts; running ones finish
    match ar.get() {
        Err(MapError::Aborted { done, total }) => {
            println!("get() after abort: Err(Aborted): {done} of {total} done, no results");
        }
        other => println!("get() after abort: {:?}", other.map(|v| v.len())),
    }

    // 3. Aborting a map that already finished changes nothing: get() returns the results.
    let ar = lb.map_async(vec![1u64; 8], work);
    ar.wait();
    ar.abort();
    let late = ar.get().map(|v| v.len());
    println!("abort() after the map finished: get() -> {late:?}");
}
