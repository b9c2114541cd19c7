//! Schedules: every schedule of the shared [`common::SCHEDULES`] list, on every pool size, keeps
//! input order on every map entry point and input kind; a schedule with a zero chunk is a named
//! error from `try_` and async maps and a panic naming `chunk` from the others.

mod common;

use common::{SCHEDULES, WORKERS, f, panic_message_of, pool, within};
use parview::{MapError, Schedule, ScheduleError};

// ---------------------------------------------------------------------------------------------
// Output order

const SIZES: [usize; 5] = [0, 1, 7, 100, 1003];

#[test]
fn output_order_equals_input_order_for_every_schedule_pool_and_input_kind() {
    within(120, || {
        for &p in &WORKERS {
            let pool = pool(p);
            for &s in &SCHEDULES {
                for &n in &SIZES {
                    let ctx = format!("P={p} schedule={s:?} n={n}");
                    let data: Vec<u64> = (0..n as u64).collect();
                    let want: Vec<u64> = data.iter().map(|&i| f(i)).collect();

                    // &[T]
                    assert_eq!(
                        pool.schedule(s).map(&data[..], |&x| f(x)),
                        want,
                        "slice {ctx}"
                    );
                    // &Vec<T>
                    assert_eq!(pool.schedule(s).map(&data, |&x| f(x)), want, "&Vec {ctx}");
                    // Vec<String> (owned, non-Copy items)
                    let strings: Vec<String> = data.iter().map(|i| format!("s{i}")).collect();
                    let got = pool.schedule(s).map(strings, |st| st + "!");
                    let want_s: Vec<String> = data.iter().map(|i| format!("s{i}!")).collect();
                    assert_eq!(got, want_s, "Vec<String> {ctx}");
                    // Range
                    assert_eq!(pool.schedule(s).map(0..n as u64, f), want, "range {ctx}");
                    // RangeInclusive (an empty one for n = 0)
                    let ri = if n == 0 {
                        assert!(
                            pool.schedule(s)
                                .map(std::hint::black_box(5u64)..=4, f)
                                .is_empty(),
                            "{ctx}"
                        );
                        Vec::new()
                    } else {
                        pool.schedule(s).map(0..=(n as u64 - 1), f)
                    };
                    assert_eq!(ri, want, "range inclusive {ctx}");
                    // Offset signed range
                    let signed = pool.schedule(s).map(-3i32..(n as i32 - 3), |i| i * 2);
                    let want_signed: Vec<i32> = (-3i32..(n as i32 - 3)).map(|i| i * 2).collect();
                    assert_eq!(signed, want_signed, "signed range {ctx}");
                    // par_map_into
                    let mut out = vec![u64::MAX; n];
                    pool.schedule(s).map_into(&data, &mut out, |&x| f(x));
                    assert_eq!(out, want, "par_map_into {ctx}");
                    // try_par_map (all Ok)
                    let t = pool
                        .schedule(s)
                        .try_map(0..n as u64, |i| Ok::<_, String>(f(i)));
                    assert_eq!(t, Ok(want.clone()), "try_par_map {ctx}");
                }
            }
            // default-schedule entry points and &[T; N]
            let arr = [3u32, 1, 4, 1, 5, 9, 2, 6];
            assert_eq!(
                pool.par_map(&arr, |x| x * 10),
                vec![30, 10, 40, 10, 50, 90, 20, 60]
            );
            let mut out = [0u32; 8];
            pool.par_map_into(&arr, &mut out, |x| x + 1);
            assert_eq!(out, [4, 2, 5, 2, 6, 10, 3, 7]);
            assert_eq!(
                pool.try_par_map(&arr, |&x| Ok::<_, ()>(x)),
                Ok(arr.to_vec())
            );
            let v = pool.load_balanced().map(0..500u64, f);
            assert_eq!(v, (0..500u64).map(f).collect::<Vec<_>>());
            let v = pool.direct().map(0..500u64, f);
            assert_eq!(v, (0..500u64).map(f).collect::<Vec<_>>());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Invalid schedules

#[test]
fn zero_chunk_schedules_are_named_errors_or_panics() {
    let pool = pool(2);
    for s in [
        Schedule::Dynamic(0),
        Schedule::StaticChunked(0),
        Schedule::Guided(0),
    ] {
        let r = pool.schedule(s).try_map(0..10u32, Ok::<_, String>);
        match r {
            Err(MapError::Schedule(ScheduleError::ZeroChunk { .. })) => {}
            other => panic!("{s:?}: expected MapError::Schedule, got {other:?}"),
        }
        let e = r.unwrap_err();
        assert!(e.to_string().contains("chunk"), "{e}");
        // Also on empty input.
        let r = pool.schedule(s).try_map(0..0u32, Ok::<_, ()>);
        assert!(
            matches!(r, Err(MapError::Schedule(_))),
            "{s:?} on empty input: {r:?}"
        );

        let msg = panic_message_of(|| pool.schedule(s).map(0..10u32, |i| i));
        assert!(msg.contains("chunk"), "{s:?}: {msg}");
        let msg = panic_message_of(|| pool.schedule(s).map(0..0u32, |i| i));
        assert!(msg.contains("chunk"), "{s:?} empty: {msg}");
        let msg = panic_message_of(|| {
            let mut out = vec![0u32; 10];
            pool.schedule(s).map_into(0..10u32, &mut out, |i| i)
        });
        assert!(msg.contains("chunk"), "{s:?} into: {msg}");
        // Async maps report it through their result, before anything runs.
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r2 = ran.clone();
        let ar = pool.schedule(s).map_async(0..10u32, move |i| {
            r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            i
        });
        assert!(
            matches!(ar.get(), Err(MapError::Schedule(_))),
            "{s:?} async"
        );
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
    assert_eq!(pool.par_map(0..3u8, |i| i), vec![0, 1, 2]);
}

// ---------------------------------------------------------------------------------------------
// Adaptive: a small map that was cheap last time starts on the caller alone

#[test]
fn an_adaptive_map_whose_cheap_items_turn_costly_is_shared_after_its_first_item() {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    within(120, || {
        let pool = pool(2);
        let lb = pool.load_balanced();
        let data: Vec<u64> = (0..16).collect(); // more than 2P items
        let want: Vec<u64> = data.iter().map(|&x| f(x)).collect();
        let costly = AtomicBool::new(false);
        let threads = Mutex::new(HashSet::new());
        // Costly: item 0 sleeps; every later item waits (up to 2 s) until items have run on
        // two threads, which happens only if the map is shared.
        let item = |&x: &u64| {
            if costly.load(Ordering::Relaxed) {
                threads.lock().unwrap().insert(std::thread::current().id());
                if x == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                } else {
                    let t = Instant::now();
                    while threads.lock().unwrap().len() < 2 && t.elapsed() < Duration::from_secs(2)
                    {
                        std::thread::yield_now();
                    }
                }
            }
            f(x)
        };
        // Cheap calls first: the caller remembers the cost per item of this closure's map, and
        // a later call (same closure, same thread) may start alone.
        for _ in 0..50 {
            assert_eq!(lb.map(&data, item), want);
        }
        costly.store(true, Ordering::Relaxed);
        assert_eq!(lb.map(&data, item), want);
        assert_eq!(
            threads.lock().unwrap().len(),
            2,
            "the costly call ran on one thread: it was never shared"
        );
        // And back: cheap again, still every result in order.
        costly.store(false, Ordering::Relaxed);
        for _ in 0..10 {
            assert_eq!(lb.map(&data, item), want);
        }
    });
}
