//! Disjoint mutable outputs: `for_each_chunk_mut` / `par_chunks_mut` over every schedule and
//! pool size (a matrix filled by rows in place, nested chunk maps into one buffer), their
//! argument checks and panics, and `DirectView::map_into`.

mod common;

use common::{SCHEDULES, WORKERS, panic_message_of, pool, within};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn cell(r: usize, c: usize) -> f64 {
    (r * 1000 + c) as f64 * 0.5
}

#[test]
fn a_matrix_filled_by_rows_equals_the_serial_fill_for_every_schedule() {
    let (rows, cols) = (97, 31);
    let want: Vec<f64> = (0..rows * cols).map(|i| cell(i / cols, i % cols)).collect();
    for p in WORKERS {
        let want = want.clone();
        within(60, move || {
            let pool = pool(p);
            for s in SCHEDULES {
                let mut m = vec![0.0f64; rows * cols];
                let calls = AtomicUsize::new(0);
                pool.schedule(s).for_each_chunk_mut(&mut m, cols, |r, row| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(row.len(), cols);
                    for (c, x) in row.iter_mut().enumerate() {
                        *x = cell(r, c);
                    }
                });
                assert!(m == want, "P={p} {s}");
                assert_eq!(calls.into_inner(), rows, "P={p} {s}: one call per row");
            }
            let mut m = vec![0.0f64; rows * cols];
            pool.par_chunks_mut(&mut m, cols, |r, row| {
                row.iter_mut()
                    .enumerate()
                    .for_each(|(c, x)| *x = cell(r, c))
            });
            assert!(m == want, "P={p} par_chunks_mut");
        });
    }
}

#[test]
fn short_last_chunk_empty_data_and_chunks_longer_than_the_data() {
    let pool = pool(2);
    for s in SCHEDULES {
        let mut v = vec![0u32; 10];
        let mut lens = std::sync::Mutex::new(Vec::new());
        pool.schedule(s).for_each_chunk_mut(&mut v, 4, |k, c| {
            lens.lock().unwrap().push((k, c.len()));
            c.fill(k as u32 + 1);
        });
        lens.get_mut().unwrap().sort();
        assert_eq!(
            lens.into_inner().unwrap(),
            vec![(0, 4), (1, 4), (2, 2)],
            "{s}"
        );
        assert_eq!(v, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
        let mut empty: Vec<u8> = Vec::new();
        pool.schedule(s)
            .for_each_chunk_mut(&mut empty, 3, |_, _| panic!("no chunk expected"));
        let mut short = vec![1u8; 3];
        pool.schedule(s)
            .for_each_chunk_mut(&mut short, usize::MAX, |k, c| {
                assert_eq!((k, c.len()), (0, 3));
                c.fill(9);
            });
        assert_eq!(short, [9, 9, 9]);
    }
}

#[test]
fn zero_chunk_len_is_a_panic_naming_the_argument() {
    let pool = pool(2);
    let mut v = vec![0u8; 4];
    let m = panic_message_of(|| pool.par_chunks_mut(&mut v, 0, |_, _| panic!("never called")));
    assert!(m.contains("`chunk_len`"), "{m}");
    let m = panic_message_of(|| parview::par_chunks_mut(&mut v, 0, |_, _| ()));
    assert!(m.contains("`chunk_len`"), "{m}");
    assert_eq!(v, [0; 4]);
}

#[test]
fn a_panicking_chunk_is_reported_after_every_other_chunk_ran() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            for s in SCHEDULES {
                let mut v = vec![0u8; 50 * 4];
                let m = panic_message_of(|| {
                    pool.schedule(s).for_each_chunk_mut(&mut v, 4, |k, c| {
                        assert!(k != 7 && k != 30, "chunk {k} failed");
                        c.fill(1);
                    })
                });
                assert!(
                    m.contains("item 7 panicked: chunk 7 failed") && m.contains("2 of 50"),
                    "P={p} {s}: {m}"
                );
                let filled = v.chunks(4).filter(|c| c.iter().all(|&x| x == 1)).count();
                assert_eq!(filled, 48, "P={p} {s}");
            }
        });
    }
}

#[test]
fn nested_chunk_maps_write_into_one_buffer_without_unsafe() {
    within(60, || {
        let pool = pool(3);
        let (rows, cols) = (40, 64);
        let mut m = vec![0usize; rows * cols];
        pool.par_chunks_mut(&mut m, cols, |r, row| {
            // Each row again in pieces of 8, on the same pool.
            pool.par_chunks_mut(row, 8, |k, piece| {
                for (j, x) in piece.iter_mut().enumerate() {
                    *x = r * cols + k * 8 + j;
                }
            });
        });
        assert!(m.iter().enumerate().all(|(i, &x)| x == i));
    });
}

#[test]
fn chunk_items_can_be_owned_values_and_are_kept() {
    let pool = pool(2);
    let mut v: Vec<String> = (0..9).map(|i| i.to_string()).collect();
    pool.par_chunks_mut(&mut v, 2, |k, c| {
        for s in c.iter_mut() {
            s.push_str(&format!("/{k}"));
        }
    });
    assert_eq!(v[0], "0/0");
    assert_eq!(v[8], "8/4");
}

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn direct_map_into_writes_each_slot_from_its_engines_block() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            let n = 1000;
            let mut out = vec![0u64; n];
            pool.direct().map_into(0..n as u64, &mut out, |i| 3 * i);
            assert!(
                out.iter().enumerate().all(|(i, &x)| x == 3 * i as u64),
                "P={p}"
            );
            // Slot i is written by the engine whose static block holds i.
            let mut who = vec![usize::MAX; n];
            pool.direct()
                .map_into(0..n, &mut who, |_| pool.current_engine().unwrap());
            for (i, &e) in who.iter().enumerate() {
                let k = (0..p)
                    .find(|&k| parview::Schedule::static_block(n, p, k).contains(&i))
                    .unwrap();
                assert_eq!(e, k, "P={p} slot {i}");
            }
            if p >= 3 {
                let dv = pool.direct_to(&[2, 0]).unwrap();
                let mut who = vec![9usize; 4];
                dv.map_into(0..4u8, &mut who, |_| pool.current_engine().unwrap());
                assert_eq!(who, [2, 2, 0, 0], "P={p}");
            }
        });
    }
}

#[test]
fn direct_map_into_checks_the_length_and_reports_panics() {
    let pool = pool(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let input: Vec<Counted> = (0..5).map(|_| Counted(drops.clone())).collect();
    let mut out = vec![0u8; 4];
    let m = panic_message_of(|| pool.direct().map_into(input, &mut out, |_| 1u8));
    assert!(
        m.contains("`out`") && m.contains('5') && m.contains('4'),
        "{m}"
    );
    assert_eq!(
        drops.load(Ordering::SeqCst),
        5,
        "the owned input was dropped"
    );
    assert_eq!(out, [0; 4]);

    let mut out = vec![0u32; 10];
    let m = panic_message_of(|| {
        pool.direct().map_into(0..10u32, &mut out, |i| {
            assert!(i != 6, "slot 6 failed");
            i + 100
        })
    });
    assert!(m.contains("item 6 panicked: slot 6 failed"), "{m}");
    for (i, &x) in out.iter().enumerate() {
        assert_eq!(x, if i == 6 { 0 } else { i as u32 + 100 }, "slot {i}");
    }
}
