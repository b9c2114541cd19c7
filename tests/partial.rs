//! Partial results: a failed or aborted map hands back what finished
//! (`LoadBalancedView::try_map_partial`, `AsyncResult::get_partial`).

mod common;
use common::{SCHEDULES, WORKERS, pool, within};
use parview::{MapError, Schedule};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts its drops, so a kept result is never dropped twice or lost.
struct Counted(u64, Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn try_map_partial_keeps_every_finished_result() {
    within(60, || {
        for w in WORKERS {
            let p = pool(w);
            for s in SCHEDULES {
                let made = Arc::new(AtomicUsize::new(0));
                let dropped = Arc::new(AtomicUsize::new(0));
                let (m, d) = (made.clone(), dropped.clone());
                let r = p.schedule(s).try_map_partial(0..500u64, |i| {
                    if i == 321 {
                        return Err(i);
                    }
                    m.fetch_add(1, Ordering::SeqCst);
                    Ok(Counted(i * 3, d.clone()))
                });
                let part = r.err().expect("item 321 fails");
                assert!(matches!(
                    part.error,
                    MapError::Failed {
                        index: 321,
                        error: 321
                    }
                ));
                assert_eq!(part.results.len(), 500);
                assert!(part.results[321].is_none());
                for (i, r) in part.results.iter().enumerate() {
                    if let Some(c) = r {
                        assert_eq!(c.0, i as u64 * 3, "{s} slot {i}");
                    }
                }
                // Every result produced is either kept or (none here) dropped: nothing lost.
                assert_eq!(part.done(), made.load(Ordering::SeqCst), "{s} w={w}");
                assert_eq!(dropped.load(Ordering::SeqCst), 0);
                drop(part);
                assert_eq!(dropped.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
            }
        }
    });
}

#[test]
fn try_map_partial_with_panics_keeps_all_others() {
    within(60, || {
        let p = pool(3);
        for s in SCHEDULES {
            let part = p
                .schedule(s)
                .try_map_partial(0..200u32, |i| {
                    assert!(i % 50 != 7, "boom {i}");
                    Ok::<_, ()>(i)
                })
                .unwrap_err();
            assert!(matches!(
                part.error,
                MapError::Panicked {
                    index: 7,
                    failed: 4,
                    ..
                }
            ));
            for (i, r) in part.results.iter().enumerate() {
                let i = i as u32;
                assert_eq!(*r, (i % 50 != 7).then_some(i), "{s}");
            }
        }
    });
}

#[test]
fn try_map_partial_ok_and_refused() {
    within(30, || {
        let p = pool(2);
        let v = p
            .load_balanced()
            .try_map_partial(0..10u8, Ok::<_, ()>)
            .unwrap();
        assert_eq!(v, (0..10).collect::<Vec<_>>());
        let bad = p
            .schedule(Schedule::Dynamic(0))
            .try_map_partial(0..10u8, Ok::<_, ()>)
            .unwrap_err();
        assert!(matches!(bad.error, MapError::Schedule(_)));
        assert!(bad.results.is_empty());
    });
}

#[test]
fn aborted_async_map_hands_back_what_finished() {
    within(60, || {
        let p = pool(2);
        let made = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (m, d) = (made.clone(), dropped.clone());
        let ar = p
            .schedule(Schedule::Dynamic(1))
            .map_async(0..400u64, move |i| {
                std::thread::sleep(Duration::from_millis(1));
                m.fetch_add(1, Ordering::SeqCst);
                Counted(i, d.clone())
            });
        while ar.progress().0 < 6 {
            std::thread::sleep(Duration::from_millis(1));
        }
        ar.abort();
        let part = ar.get_partial().err().expect("aborted before 400 items");
        let MapError::Aborted { done, total } = part.error else {
            panic!("{:?}", part.error)
        };
        assert_eq!(total, 400);
        assert!(done >= 6);
        assert_eq!(part.done(), done);
        assert_eq!(part.done(), made.load(Ordering::SeqCst));
        for (i, r) in part.results.iter().enumerate() {
            if let Some(c) = r {
                assert_eq!(c.0, i as u64);
            }
        }
        drop(part);
        assert_eq!(dropped.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
    });
}

#[test]
fn get_partial_of_a_clean_map_is_ok_and_unclaimed_partials_are_dropped_once() {
    within(30, || {
        let p = pool(2);
        let ar = p.load_balanced().map_async(0..100u32, |i| i + 1);
        assert_eq!(ar.get_partial().unwrap()[99], 100);
        // A failed map whose partial results nobody takes: dropped with the map, once.
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let ar = p
            .schedule(Schedule::Dynamic(1))
            .map_async(0..10u64, move |i| {
                assert!(i != 3, "three");
                Counted(i, d.clone())
            });
        assert!(matches!(ar.get(), Err(MapError::Panicked { index: 3, .. })));
        assert_eq!(dropped.load(Ordering::SeqCst), 9);
    });
}
