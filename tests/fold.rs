//! The fold with per-participant accumulators: equal to the serial fold for every schedule and
//! pool size (word count with a HashMap), empty input, every input kind, and panics in
//! `identity`, `fold_op` and `reduce_op` reported like maps' panics with every accumulator
//! dropped once.

mod common;

use common::{SCHEDULES, WORKERS, panic_message_of, pool, within};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `n` lines of words from a small vocabulary (deterministic).
fn lines(n: usize) -> Vec<String> {
    const WORDS: [&str; 12] = [
        "the", "a", "pool", "engine", "view", "map", "fold", "join", "scope", "chunk", "rayon",
        "omp",
    ];
    (0..n as u64)
        .map(|i| {
            let k = 1 + (common::f(i) % 9) as usize;
            (0..k)
                .map(|j| WORDS[(common::f(i * 31 + j as u64) % 12) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

type Counts<'a> = HashMap<&'a str, usize>;

#[allow(clippy::ptr_arg)] // the items of a `&Vec<String>` are `&String`
fn count_line<'a>(mut m: Counts<'a>, line: &'a String) -> Counts<'a> {
    for w in line.split_whitespace() {
        *m.entry(w).or_default() += 1;
    }
    m
}

fn merge<'a>(mut a: Counts<'a>, b: Counts<'a>) -> Counts<'a> {
    for (w, c) in b {
        *a.entry(w).or_default() += c;
    }
    a
}

#[test]
fn word_count_equals_the_serial_count_for_every_schedule_and_pool_size() {
    for p in WORKERS {
        within(60, move || {
            let text = lines(5_000);
            let serial = text.iter().fold(Counts::new(), count_line);
            let pool = pool(p);
            for s in SCHEDULES {
                let got = pool.schedule(s).fold(&text, Counts::new, count_line, merge);
                assert_eq!(got, serial, "P={p} {s}");
            }
            assert_eq!(pool.par_fold(&text, Counts::new, count_line, merge), serial);
        });
    }
}

#[test]
fn identity_runs_once_per_participant_at_most() {
    for p in WORKERS {
        within(30, move || {
            let pool = pool(p);
            for s in SCHEDULES {
                let made = AtomicUsize::new(0);
                let sum = pool.schedule(s).fold(
                    0..10_000u64,
                    || {
                        made.fetch_add(1, Ordering::SeqCst);
                        0u64
                    },
                    |a, i| a + i,
                    |a, b| a + b,
                );
                assert_eq!(sum, 10_000 * 9_999 / 2, "P={p} {s}");
                let m = made.load(Ordering::SeqCst);
                assert!(m >= 1 && m <= p + 1, "P={p} {s}: identity ran {m} times");
            }
        });
    }
}

#[test]
fn empty_input_gives_identity() {
    let pool = pool(2);
    for s in SCHEDULES {
        let v = pool.schedule(s).fold(
            0..0u32,
            || vec![7u32],
            |mut v, i| {
                v.push(i);
                v
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        );
        assert_eq!(v, vec![7], "{s}");
    }
    let none = Vec::<String>::new();
    let m = parview::par_fold(&none, Counts::new, count_line, merge);
    assert!(m.is_empty());
}

#[test]
fn owned_and_zipped_inputs() {
    let pool = pool(3);
    // Owned strings are moved into the fold.
    let words: Vec<String> = (0..300).map(|i| format!("w{}", i % 10)).collect();
    let mut got = pool.par_fold(
        words,
        Vec::new,
        |mut v: Vec<String>, w| {
            v.push(w);
            v
        },
        |mut a, b| {
            a.extend(b);
            a
        },
    );
    got.sort();
    assert_eq!(got.len(), 300);
    assert_eq!(got.iter().filter(|w| *w == "w3").count(), 30);
    // A zip: dot product in integers (exact whatever the grouping).
    let (x, y): (Vec<i64>, Vec<i64>) = ((0..1000).collect(), (0..1000).map(|i| 2 * i).collect());
    let dot = pool.par_fold((&x, &y), || 0i64, |s, (a, b)| s + a * b, |a, b| a + b);
    assert_eq!(dot, x.iter().zip(&y).map(|(a, b)| a * b).sum::<i64>());
}

/// An accumulator that counts its drops.
struct Acc {
    sum: u64,
    drops: Arc<AtomicUsize>,
}

impl Drop for Acc {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn panics_in_fold_identity_and_reduce_are_reported_and_accumulators_dropped() {
    for p in WORKERS {
        within(60, move || {
            let pool = pool(p);
            for s in SCHEDULES {
                let made = Arc::new(AtomicUsize::new(0));
                let drops = Arc::new(AtomicUsize::new(0));
                let ran = AtomicUsize::new(0);
                let identity = || {
                    made.fetch_add(1, Ordering::SeqCst);
                    Acc {
                        sum: 0,
                        drops: drops.clone(),
                    }
                };
                // fold_op panics on two items: all others still run; lowest index named.
                let m = panic_message_of(|| {
                    pool.schedule(s).fold(
                        0..400u64,
                        identity,
                        |mut a, i| {
                            ran.fetch_add(1, Ordering::SeqCst);
                            assert!(i != 123 && i != 321, "bad item {i}");
                            a.sum += i;
                            a
                        },
                        |mut a, b| {
                            a.sum += b.sum;
                            a
                        },
                    )
                });
                assert!(
                    m.contains("item 123 panicked: bad item 123") && m.contains("2 of 400"),
                    "P={p} {s}: {m}"
                );
                assert_eq!(ran.swap(0, Ordering::SeqCst), 400, "P={p} {s}");
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    made.load(Ordering::SeqCst),
                    "P={p} {s}: every accumulator dropped once"
                );

                // reduce_op panics (only when there are two accumulators to combine).
                let (made, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
                let (m2, d2) = (made.clone(), drops.clone());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.schedule(s).fold(
                        0..400u64,
                        || {
                            m2.fetch_add(1, Ordering::SeqCst);
                            Acc {
                                sum: 0,
                                drops: d2.clone(),
                            }
                        },
                        |mut a, i| {
                            a.sum += i;
                            a
                        },
                        |_a, _b| -> Acc { panic!("merge failed") },
                    )
                }));
                match r {
                    Ok(a) => {
                        assert_eq!(made.load(Ordering::SeqCst), 1, "P={p} {s}");
                        assert_eq!(a.sum, 399 * 400 / 2);
                    }
                    Err(e) => {
                        let m = common::payload_message(&*e);
                        assert!(
                            m.contains("`reduce_op` panicked: merge failed"),
                            "P={p} {s}: {m}"
                        );
                    }
                }
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    made.load(Ordering::SeqCst),
                    "P={p} {s}"
                );
            }
        });
    }
}

#[test]
fn identity_panics_are_item_panics_and_on_empty_input_named() {
    let pool = pool(2);
    let m = panic_message_of(|| {
        pool.par_fold(
            0..50u32,
            || -> u32 { panic!("no identity") },
            |a, i| a + i,
            |a, b| a + b,
        )
    });
    assert!(
        m.contains("panicked: no identity") && m.contains("50 of 50"),
        "{m}"
    );
    let m = panic_message_of(|| {
        pool.par_fold(
            0..0u32,
            || -> u32 { panic!("no identity") },
            |a, i| a + i,
            |a, b| a + b,
        )
    });
    assert!(m.contains("`identity` panicked: no identity"), "{m}");
    // The pool still works.
    assert_eq!(
        pool.par_fold(1..=4u32, || 0, |a, i| a + i, |a, b| a + b),
        10
    );
}

#[test]
fn invalid_schedule_is_named() {
    let pool = pool(2);
    let m = panic_message_of(|| {
        pool.schedule(parview::Schedule::Dynamic(0))
            .fold(0..4u32, || 0, |a, i| a + i, |a, b| a + b)
    });
    assert!(m.contains("chunk"), "{m}");
}
