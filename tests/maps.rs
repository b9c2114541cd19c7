//! Maps: `par_map` and friends (`par_map_into`, `try_par_map`, the free functions on the global
//! pool) keep input order, `par_map_into` checks its buffer's length, and zipped inputs are
//! walked in step with every owned item of both sides dropped once.

mod common;

use common::{f, panic_message_of, pool, within};
use parview::{MapError, Schedule};
use std::sync::atomic::Ordering;

#[test]
fn free_functions_keep_input_order() {
    within(60, || {
        let v = parview::par_map(0..2000u64, f);
        assert_eq!(v, (0..2000u64).map(f).collect::<Vec<_>>());
        let v = parview::Pool::global()
            .schedule(Schedule::Guided(3))
            .map(vec![5u8; 300], |x| x as u32 + 1);
        assert_eq!(v, vec![6u32; 300]);
        let mut out = vec![0u64; 1000];
        parview::par_map_into(0..1000u64, &mut out, f);
        assert_eq!(out, (0..1000u64).map(f).collect::<Vec<_>>());
    });
}

#[test]
fn par_map_into_wrong_length_panics_naming_out() {
    let pool = pool(2);
    for (n, len) in [(10usize, 9usize), (10, 11), (0, 1), (3, 0)] {
        let msg = panic_message_of(|| {
            let mut out = vec![0usize; len];
            pool.par_map_into(0..n, &mut out, |i| i);
        });
        assert!(msg.contains("out"), "n={n} len={len}: {msg}");
    }
    assert_eq!(pool.par_map(0..3u8, |i| i), vec![0, 1, 2]);
}

// ---------------------------------------------------------------------------------------------
// Zipped inputs

#[test]
fn zipped_inputs_walk_in_step_and_drop_every_owned_item_once() {
    use std::sync::atomic::AtomicUsize;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct D(u32);
    impl Drop for D {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    within(60, || {
        let pool = pool(3);
        // Borrowed pair: same as indexing both.
        let x: Vec<f64> = (0..1000).map(f64::from).collect();
        let y: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
        let z = pool.par_map((&x, &y), |(a, b)| a - b);
        assert_eq!(z, (0..1000).map(|i| f64::from(i) * 0.5).collect::<Vec<_>>());
        // Owned pair of unequal lengths: as many items as the shorter; every item of both
        // sides dropped exactly once, also when the map stops early.
        for stop_at in [None, Some(17usize)] {
            DROPS.store(0, Ordering::Relaxed);
            let a: Vec<D> = (0..100).map(D).collect();
            let b: Vec<D> = (0..130).map(D).collect();
            let r = pool
                .schedule(Schedule::Dynamic(4))
                .try_map((a, b), |(p, q)| {
                    if Some(p.0 as usize) == stop_at {
                        Err("stop")
                    } else {
                        Ok(p.0 + q.0)
                    }
                });
            match stop_at {
                None => assert_eq!(r.unwrap(), (0..100).map(|i| 2 * i).collect::<Vec<u32>>()),
                Some(i) => assert!(matches!(r, Err(MapError::Failed { index, .. }) if index == i)),
            }
            assert_eq!(DROPS.load(Ordering::Relaxed), 230, "stop_at {stop_at:?}");
        }
    });
}
