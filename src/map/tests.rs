//! Unit tests of the pipeline's unsafe bookkeeping — sinks, holes, stop, untaken input, async
//! outputs — small enough to run under Miri (`.ci/miri.sh`). Each counts every value it
//! creates and checks that each is dropped exactly once, whatever the map did.

use crate::{MapError, Pool, Schedule};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A value that counts its drops (and may panic in its own `Drop`).
struct Counted {
    id: usize,
    drops: Arc<AtomicUsize>,
    bomb: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.bomb {
            panic!("Drop of {} panicked", self.id);
        }
    }
}

fn counted(n: usize, drops: &Arc<AtomicUsize>, bomb: impl Fn(usize) -> bool) -> Vec<Counted> {
    (0..n)
        .map(|id| Counted {
            id,
            drops: drops.clone(),
            bomb: bomb(id),
        })
        .collect()
}

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .spin(Duration::ZERO)
        .build()
        .unwrap()
}

const N: usize = 24;

#[test]
fn owned_input_and_results_are_dropped_once_when_items_panic() {
    let pool = pool(2);
    for s in [Schedule::Static, Schedule::Dynamic(3), Schedule::Adaptive] {
        let (ins, outs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let input = counted(N, &ins, |_| false);
        let r = pool.schedule(s).try_map(input, |c| {
            assert!(c.id % 7 != 3, "item {} fails", c.id);
            Ok::<_, ()>(Counted {
                id: c.id,
                drops: outs.clone(),
                bomb: false,
            })
        });
        assert!(matches!(r, Err(MapError::Panicked { index: 3, .. })), "{s}");
        assert_eq!(ins.load(Ordering::SeqCst), N, "{s}: inputs");
        // Every result but the failing items' was written, then dropped by parview.
        let failing = (0..N).filter(|i| i % 7 == 3).count();
        assert_eq!(outs.load(Ordering::SeqCst), N - failing, "{s}: results");
    }
}

#[test]
fn an_err_stops_the_map_and_drops_written_and_untaken_values_once() {
    let pool = pool(2);
    for s in [
        Schedule::StaticChunked(2),
        Schedule::Dynamic(1),
        Schedule::Guided(1),
    ] {
        let (ins, outs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let made = AtomicUsize::new(0);
        let input = counted(N, &ins, |_| false);
        let r = pool.schedule(s).try_map(input, |c| {
            if c.id == 5 {
                return Err("five");
            }
            made.fetch_add(1, Ordering::SeqCst);
            Ok(Counted {
                id: c.id,
                drops: outs.clone(),
                bomb: false,
            })
        });
        assert!(matches!(r, Err(MapError::Failed { index: 5, .. })), "{s}");
        assert_eq!(
            ins.load(Ordering::SeqCst),
            N,
            "{s}: every input dropped once"
        );
        assert_eq!(
            outs.load(Ordering::SeqCst),
            made.into_inner(),
            "{s}: results"
        );
    }
}

#[test]
fn a_panicking_drop_of_a_written_result_spares_the_others() {
    let pool = pool(2);
    let outs = Arc::new(AtomicUsize::new(0));
    let r = pool.try_par_map(0..N, |i| {
        if i == N - 1 {
            return Err(());
        }
        Ok(Counted {
            id: i,
            drops: outs.clone(),
            bomb: i == 2 || i == 4,
        })
    });
    assert!(r.is_err());
    assert_eq!(outs.load(Ordering::SeqCst), N - 1);
}

#[test]
fn unequal_zip_of_owned_vecs_drops_the_longer_tail() {
    let pool = pool(2);
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let out = pool.par_map(
        (counted(5, &a, |_| false), counted(9, &b, |_| false)),
        |(x, y)| x.id + y.id,
    );
    assert_eq!(out, vec![0, 2, 4, 6, 8]);
    assert_eq!(a.load(Ordering::SeqCst), 5);
    assert_eq!(b.load(Ordering::SeqCst), 9);
    let dv = pool.direct();
    let st = dv.init(|_| 0usize);
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let v = dv.map_with_state(
        &st,
        (counted(7, &a, |_| false), counted(3, &b, |_| false)),
        |k, (x, y)| {
            *k += 1;
            x.id * y.id
        },
    );
    assert_eq!(v, vec![0, 1, 4]);
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (7, 3));
    assert_eq!(dv.pull(&st).iter().sum::<usize>(), 3);
}

#[test]
fn a_panicking_drop_of_an_untaken_input_is_reported_and_the_rest_dropped() {
    let pool = pool(1);
    let a = Arc::new(AtomicUsize::new(0));
    let b = Arc::new(AtomicUsize::new(0));
    // Zip of 2 and 6: items 2..6 of the longer side are never taken; two of them panic.
    let r = pool.try_par_map(
        (
            counted(2, &a, |_| false),
            counted(6, &b, |i| i == 3 || i == 5),
        ),
        |(x, _y)| Ok::<_, ()>(x.id),
    );
    match r {
        Err(MapError::Panicked { index, failed, .. }) => assert_eq!((index, failed), (3, 2)),
        other => panic!("expected the Drop panic to be reported, got {other:?}"),
    }
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (2, 6));
}

#[test]
fn into_a_slice_replaces_old_values_once() {
    let pool = pool(2);
    let (old, new) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut buf = counted(N, &old, |_| false);
    pool.par_map_into(0..N, &mut buf, |i| Counted {
        id: i + 100,
        drops: new.clone(),
        bomb: false,
    });
    assert_eq!(old.load(Ordering::SeqCst), N);
    assert!(buf.iter().enumerate().all(|(i, c)| c.id == i + 100));
    drop(buf);
    assert_eq!(new.load(Ordering::SeqCst), N);
}

#[test]
fn async_abort_drops_untaken_input_and_written_results_once() {
    let pool = pool(2);
    let (ins, outs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let made = Arc::new(AtomicUsize::new(0));
    let (o, m) = (outs.clone(), made.clone());
    let ar = pool
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_async(counted(N, &ins, |_| false), move |c| {
            m.fetch_add(1, Ordering::SeqCst);
            Counted {
                id: c.id,
                drops: o.clone(),
                bomb: false,
            }
        });
    ar.abort();
    match ar.get() {
        Ok(v) => {
            assert_eq!(v.len(), N);
            drop(v);
        }
        Err(e) => assert!(matches!(e, MapError::Aborted { .. }), "{e}"),
    }
    assert_eq!(ins.load(Ordering::SeqCst), N);
    assert_eq!(outs.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
}

#[test]
fn async_abort_hands_back_written_results_once_with_get_partial() {
    let pool = pool(2);
    let (ins, outs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let made = Arc::new(AtomicUsize::new(0));
    let (o, m) = (outs.clone(), made.clone());
    let ar = pool
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_async(counted(N, &ins, |_| false), move |c| {
            m.fetch_add(1, Ordering::SeqCst);
            Counted {
                id: c.id,
                drops: o.clone(),
                bomb: c.id == 3, // a result whose Drop panics, among those kept
            }
        });
    ar.abort();
    match ar.get_partial() {
        Ok(v) => {
            assert_eq!(v.len(), N);
            drop(crate::unwind::drop_caught(v));
        }
        Err(p) => {
            assert!(matches!(p.error, MapError::Aborted { .. }), "{}", p.error);
            assert_eq!(p.results.len(), N);
            assert_eq!(p.done(), made.load(Ordering::SeqCst));
            for (i, r) in p.results.iter().enumerate() {
                assert!(r.as_ref().is_none_or(|c| c.id == i));
            }
            assert_eq!(outs.load(Ordering::SeqCst), 0);
            let mut results = p.results;
            for r in results.iter_mut().flatten() {
                r.bomb = false;
            }
            drop(results);
        }
    }
    assert_eq!(ins.load(Ordering::SeqCst), N);
    assert_eq!(outs.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
    // A failed map's kept results that nobody asks for (a panicking Drop among them) are
    // dropped with the handle; the engines survive.
    let outs = Arc::new(AtomicUsize::new(0));
    let o = outs.clone();
    let ar = pool.load_balanced().map_async(0..N, move |i| {
        assert!(i != 5, "item 5");
        Counted {
            id: i,
            drops: o.clone(),
            bomb: i == 1,
        }
    });
    assert!(ar.wait_timeout(Duration::MAX));
    drop(ar);
    assert_eq!(pool.direct().apply(|e| e), vec![0, 1]);
    drop(pool);
    assert_eq!(outs.load(Ordering::SeqCst), N - 1);
}

#[test]
fn async_results_dropped_unread_are_dropped_once_even_if_some_panic() {
    let pool = pool(2);
    let outs = Arc::new(AtomicUsize::new(0));
    let o = outs.clone();
    let ar = pool.load_balanced().map_async(0..N, move |i| Counted {
        id: i,
        drops: o.clone(),
        bomb: i % 5 == 1,
    });
    assert!(ar.wait_timeout(Duration::MAX));
    drop(ar);
    // The engines survived (the last reference, and with it the results, may be an engine's).
    assert_eq!(pool.direct().apply(|e| e), vec![0, 1]);
    drop(pool);
    assert_eq!(outs.load(Ordering::SeqCst), N);
}

#[test]
fn return_exceptions_keep_each_panic_in_its_slot() {
    let pool = pool(2);
    let out = pool
        .load_balanced()
        .return_exceptions()
        .map(0..N, |i| if i % 4 == 0 { panic!("no {i}") } else { i });
    for (i, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i),
            Err(e) => assert_eq!((e.index, e.message.clone()), (i, format!("no {i}"))),
        }
    }
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), N.div_ceil(4));
}

#[test]
fn an_imap_dropped_early_drops_every_result_once() {
    let pool = pool(2);
    let outs = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let (o, m) = (outs.clone(), made.clone());
    let mut it = pool.load_balanced().imap(0..N, move |i| {
        m.fetch_add(1, Ordering::SeqCst);
        Counted {
            id: i,
            drops: o.clone(),
            bomb: false,
        }
    });
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.id, 0);
    drop(first);
    drop(it);
    // Engines may still finish a running item: wait for the pool to go quiet.
    drop(pool);
    assert_eq!(outs.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
}

#[test]
fn zips_of_three_and_four_owned_inputs_drop_every_tail_once() {
    let pool = pool(2);
    let (a, b, c, d) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let out = pool.par_map(
        (
            counted(6, &a, |_| false),
            counted(4, &b, |_| false),
            counted(9, &c, |_| false),
        ),
        |(x, y, z)| x.id + y.id + z.id,
    );
    assert_eq!(out, vec![0, 3, 6, 9]);
    assert_eq!(
        [&a, &b, &c].map(|k| k.load(Ordering::SeqCst)),
        [6, 4, 9],
        "zip3"
    );
    let (a, b, c) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let out = pool.par_map(
        (
            counted(3, &a, |_| false),
            0..10u32,
            counted(5, &b, |_| false),
            counted(7, &c, |_| false),
        ),
        |(w, i, y, z)| w.id + i as usize + y.id + z.id,
    );
    assert_eq!(out, vec![0, 4, 8]);
    assert_eq!(
        [&a, &b, &c].map(|k| k.load(Ordering::SeqCst)),
        [3, 5, 7],
        "zip4"
    );
    let arr: [Counted; 5] = std::array::from_fn(|id| Counted {
        id,
        drops: d.clone(),
        bomb: false,
    });
    let r = pool.try_par_map(arr, |x| if x.id == 2 { Err(()) } else { Ok(x.id) });
    assert!(r.is_err());
    assert_eq!(d.load(Ordering::SeqCst), 5, "owned array");
}
