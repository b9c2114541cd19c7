//! Allocations: no per-item (or per-chunk) heap allocation in any map path, for timelines
//! "recording off: no allocation per chunk", and no allocation of its own in a blocking call.
//!
//! A counting global allocator makes this its own test binary: keep this test alone in this
//! file. Everything is measured in ONE test function, sequentially, so no other test's threads
//! allocate meanwhile; each measurement is the minimum over a few runs.

mod common;

use common::{SCHEDULES, within};
use parview::{Pool, Schedule};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SMALL: u64 = 1_000;

const LARGE: u64 = 100_000;

/// Allowed difference between the large and the small map: a few queue blocks or wake-ups,
/// never anything proportional to items or chunks (100k items is >= 100 chunks everywhere).
const SLACK: usize = 4;

const RUNS: usize = 7;

fn work(i: u64) -> u64 {
    i.wrapping_mul(31).rotate_left(7) ^ 0x55
}

/// Allocations made (by any thread) while `f` runs, minimum over `RUNS` runs.
fn allocs_of(mut f: impl FnMut()) -> usize {
    f(); // warm-up: lazily created thread locals, queue blocks, ...
    (0..RUNS)
        .map(|_| {
            let before = ALLOCS.load(Ordering::SeqCst);
            f();
            ALLOCS.load(Ordering::SeqCst) - before
        })
        .min()
        .unwrap()
}

fn compare(
    report: &mut Vec<String>,
    failures: &mut Vec<String>,
    name: &str,
    mut f: impl FnMut(u64),
) {
    let small = allocs_of(|| f(SMALL));
    let large = allocs_of(|| f(LARGE));
    let line = format!("{name}: {small} allocations for {SMALL} items, {large} for {LARGE}");
    if large > small + SLACK {
        failures.push(line.clone());
    }
    report.push(line);
}

#[test]
fn allocations_do_not_grow_with_the_number_of_items() {
    within(300, || {
        let mut report = Vec::new();
        let mut failures = Vec::new();
        // Sensitivity check: the counter does see per-item allocations (so the comparisons
        // below can fail).
        {
            let pool = Pool::builder().workers(2).build().unwrap();
            let small = allocs_of(|| drop(pool.par_map(0..SMALL, Box::new)));
            let large = allocs_of(|| drop(pool.par_map(0..LARGE, Box::new)));
            assert!(
                large + SLACK >= small + (LARGE - SMALL) as usize,
                "counter blind: {small} vs {large}"
            );
        }
        for p in [1usize, 2, 3] {
            let pool = Pool::builder().workers(p).build().unwrap();
            for &s in &SCHEDULES {
                compare(
                    &mut report,
                    &mut failures,
                    &format!("P={p} par_map_with {s:?}"),
                    |n| {
                        let v = pool.schedule(s).map(0..n, work);
                        assert_eq!(v.len() as u64, n);
                    },
                );
                let mut out = vec![0u64; LARGE as usize];
                compare(
                    &mut report,
                    &mut failures,
                    &format!("P={p} par_map_into_with {s:?}"),
                    |n| {
                        pool.schedule(s)
                            .map_into(0..n, &mut out[..n as usize], work);
                    },
                );
                compare(
                    &mut report,
                    &mut failures,
                    &format!("P={p} try_par_map_with {s:?}"),
                    |n| {
                        let v = pool
                            .schedule(s)
                            .try_map(0..n, |i| Ok::<u64, ()>(work(i)))
                            .unwrap();
                        assert_eq!(v.len() as u64, n);
                    },
                );
                let lb = pool.load_balanced().schedule(s);
                compare(
                    &mut report,
                    &mut failures,
                    &format!("P={p} LoadBalancedView::map {s:?}"),
                    |n| {
                        assert_eq!(lb.map(0..n, work).len() as u64, n);
                    },
                );
                compare(
                    &mut report,
                    &mut failures,
                    &format!("P={p} return_exceptions().map {s:?}"),
                    |n| {
                        assert_eq!(lb.return_exceptions().map(0..n, work).len() as u64, n);
                    },
                );
                compare(
                    &mut report,
                    &mut failures,
                    &format!("P={p} map_async (recording off) {s:?}"),
                    |n| {
                        assert_eq!(lb.map_async(0..n, work).get().unwrap().len() as u64, n);
                    },
                );
            }
            let input: Vec<u64> = (0..LARGE).collect();
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} par_map (slice)"),
                |n| {
                    assert_eq!(
                        pool.par_map(&input[..n as usize], |&x| work(x)).len() as u64,
                        n
                    );
                },
            );
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} par_map (owned Vec)"),
                |n| {
                    let owned: Vec<u64> = input[..n as usize].to_vec(); // one allocation either way
                    assert_eq!(pool.par_map(owned, work).len() as u64, n);
                },
            );
            let mut out = vec![0u64; LARGE as usize];
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} par_map_into"),
                |n| {
                    pool.par_map_into(0..n, &mut out[..n as usize], work);
                },
            );
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} try_par_map"),
                |n| {
                    assert_eq!(
                        pool.try_par_map(0..n, |i| Ok::<u64, ()>(work(i)))
                            .unwrap()
                            .len() as u64,
                        n
                    );
                },
            );
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} par_for_each"),
                |n| {
                    pool.par_for_each(0..n, |i| {
                        std::hint::black_box(work(i));
                    });
                },
            );
            let dv = pool.direct();
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} DirectView::map"),
                |n| {
                    assert_eq!(dv.map(0..n, work).len() as u64, n);
                },
            );
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} DirectView::map_async"),
                |n| {
                    assert_eq!(dv.map_async(0..n, work).get().unwrap().len() as u64, n);
                },
            );
            let st = dv.init(|_| 0u64);
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} DirectView::map_with"),
                |n| {
                    // Per-engine result pieces are one allocation per engine, not per item.
                    assert_eq!(
                        dv.map_with_state(&st, 0..n, |s, i| {
                            *s += 1;
                            work(i)
                        })
                        .len() as u64,
                        n
                    );
                },
            );
            let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
            compare(
                &mut report,
                &mut failures,
                &format!("P={p} Dynamic(1) map_async (100k chunks)"),
                |n| {
                    assert_eq!(lb.map_async(0..n, work).get().unwrap().len() as u64, n);
                },
            );
        }
        // A blocking call allocates nothing of its own: its shared header is one the calling
        // thread keeps and reuses once no ticket holds it (before: one header per call, freed
        // by an engine). What is left are the queues' blocks, one per 31-63 jobs.
        {
            let pool = Pool::builder().workers(2).build().unwrap();
            let mut out = [0u64; 2];
            // A shared map's ticket can outlive the map (the caller finished alone): the
            // header is reused once an engine has dropped it. Calls 1 ms apart let the engines
            // drain their queue, as they do between calls that are not back to back (back to
            // back on an oversubscribed machine, stale tickets can pile up, and then a call
            // allocates a header as it always did).
            const SPACED: usize = 100;
            for &s in &SCHEDULES {
                let lb = pool.schedule(s);
                let n = allocs_of(|| {
                    for _ in 0..SPACED {
                        lb.map_into(0..2u64, &mut out, work);
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                });
                report.push(format!(
                    "{SPACED} calls 1 ms apart of map_into on 2 items, {s:?}: {n} allocations"
                ));
                // Before: every call allocated (101). Idle machine: 0-1 (a queue block); under
                // a parallel build beside it, 6-24 (engines descheduled for over 1 ms).
                if n > SPACED / 2 {
                    failures.push(report.last().unwrap().clone());
                }
                assert_eq!(out, [work(0), work(1)]);
            }
            // Directed jobs never outlive their call: back to back.
            const CALLS: usize = 2_000;
            let dv = pool.direct();
            let n = allocs_of(|| {
                for _ in 0..CALLS {
                    dv.map_into(0..2u64, &mut out, work);
                }
            });
            report.push(format!(
                "{CALLS} calls of DirectView::map_into on 2 items: {n} allocations"
            ));
            if n > CALLS / 10 {
                failures.push(report.last().unwrap().clone());
            }
        }
        for line in &report {
            println!("{line}");
        }
        assert!(
            failures.is_empty(),
            "allocations grow with the number of items:\n{}",
            failures.join("\n")
        );
    });
}
