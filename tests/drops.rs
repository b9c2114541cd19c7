//! Drop bookkeeping: every owned input and every result is dropped exactly once — in normal,
//! panicking, stopped (`try_`) and aborted maps, on every view, and when an unfinished
//! `AsyncResult` is dropped.

mod common;

use common::{SCHEDULES, pool, within};
use parview::{MapError, Schedule};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

struct Log {
    in_drops: Vec<AtomicU8>,
    out_drops: Vec<AtomicU8>,
    produced: Vec<AtomicU8>,
}

impl Log {
    fn new(n: usize) -> Arc<Log> {
        let z = || (0..n).map(|_| AtomicU8::new(0)).collect();
        Arc::new(Log {
            in_drops: z(),
            out_drops: z(),
            produced: z(),
        })
    }

    fn check(&self, ctx: &str) {
        for i in 0..self.in_drops.len() {
            assert_eq!(
                self.in_drops[i].load(Ordering::SeqCst),
                1,
                "{ctx}: input {i} dropped a wrong number of times"
            );
            let p = self.produced[i].load(Ordering::SeqCst);
            assert!(p <= 1, "{ctx}: item {i} produced {p} outputs");
            assert_eq!(
                self.out_drops[i].load(Ordering::SeqCst),
                p,
                "{ctx}: output {i} (produced {p}x) dropped a wrong number of times"
            );
        }
    }
}

struct In {
    i: usize,
    log: Arc<Log>,
}

impl Drop for In {
    fn drop(&mut self) {
        self.log.in_drops[self.i].fetch_add(1, Ordering::SeqCst);
    }
}

struct Out {
    i: usize,
    log: Arc<Log>,
}

impl Drop for Out {
    fn drop(&mut self) {
        self.log.out_drops[self.i].fetch_add(1, Ordering::SeqCst);
    }
}

fn inputs(log: &Arc<Log>, n: usize) -> Vec<In> {
    (0..n)
        .map(|i| In {
            i,
            log: log.clone(),
        })
        .collect()
}

fn produce(x: In) -> Out {
    x.log.produced[x.i].fetch_add(1, Ordering::SeqCst);
    Out {
        i: x.i,
        log: x.log.clone(),
    }
}

#[test]
fn owned_input_and_outputs_are_dropped_exactly_once() {
    within(120, || {
        let n = 3000;
        for &p in &[1usize, 3, 8] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let ctx = format!("P={p} {s:?}");
                // Normal map.
                let log = Log::new(n);
                let v = pool.schedule(s).map(inputs(&log, n), produce);
                assert_eq!(v.len(), n);
                assert!(v.iter().enumerate().all(|(k, o)| o.i == k));
                drop(v);
                log.check(&format!("normal {ctx}"));

                // Panicking map.
                let log = Log::new(n);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.schedule(s).map(inputs(&log, n), |x| {
                        if x.i % 97 == 5 {
                            panic!("drop-test {}", x.i);
                        }
                        produce(x)
                    })
                }));
                assert!(r.is_err());
                log.check(&format!("panicking {ctx}"));

                // try_ map stopped early by an Err.
                let log = Log::new(n);
                let r = pool.schedule(s).try_map(inputs(&log, n), |x| {
                    if x.i == n / 3 || x.i == n - 2 {
                        Err(x.i)
                    } else {
                        Ok(produce(x))
                    }
                });
                assert!(matches!(r, Err(MapError::Failed { .. })), "{ctx}");
                drop(r);
                log.check(&format!("try-stopped {ctx}"));

                // try_ map with a panic and an error.
                let log = Log::new(n);
                let r = pool.schedule(s).try_map(inputs(&log, n), |x| {
                    if x.i == 10 {
                        panic!("p10");
                    }
                    if x.i == 2000 { Err(()) } else { Ok(produce(x)) }
                });
                assert!(r.is_err(), "{ctx}");
                log.check(&format!("try-panic {ctx}"));
            }

            // Other paths with owned input.
            let ctx = format!("P={p}");
            let log = Log::new(n);
            let v = pool.direct().map(inputs(&log, n), produce);
            drop(v);
            log.check(&format!("direct map {ctx}"));

            let log = Log::new(n);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.direct().map(inputs(&log, n), |x| {
                    assert!(x.i % 500 != 3, "direct {}", x.i);
                    produce(x)
                })
            }));
            assert!(r.is_err());
            log.check(&format!("direct map panicking {ctx}"));

            let log = Log::new(n);
            let dv = pool.direct();
            let st = dv.init(|_| 0usize);
            let v = dv.map_with_state(&st, inputs(&log, n), |c, x| {
                *c += 1;
                produce(x)
            });
            assert_eq!(v.len(), n);
            drop(v);
            log.check(&format!("direct map_with {ctx}"));

            let log = Log::new(n);
            let v = pool
                .load_balanced()
                .return_exceptions()
                .map(inputs(&log, n), |x| {
                    assert!(x.i % 300 != 1, "re {}", x.i);
                    produce(x)
                });
            assert_eq!(v.iter().filter(|r| r.is_err()).count(), n / 300);
            drop(v);
            log.check(&format!("return_exceptions {ctx}"));

            let log = Log::new(n);
            let mut slots: Vec<Option<Out>> = (0..n).map(|_| None).collect();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.par_map_into(inputs(&log, n), &mut slots, |x| {
                    assert!(x.i != 77, "into 77");
                    Some(produce(x))
                })
            }));
            assert!(r.is_err());
            assert!(slots[77].is_none());
            drop(slots);
            log.check(&format!("par_map_into {ctx}"));

            let log = Log::new(n);
            let v = pool
                .load_balanced()
                .map_async(inputs(&log, n), produce)
                .get()
                .unwrap();
            drop(v);
            log.check(&format!("map_async {ctx}"));
        }
    });
}

#[test]
fn aborted_async_map_drops_owned_items_exactly_once() {
    within(60, || {
        let n = 5000;
        for p in [1usize, 2, 3] {
            let pool = pool(p);
            for s in [
                Schedule::Dynamic(1),
                Schedule::Static,
                Schedule::StaticChunked(7),
                Schedule::Adaptive,
            ] {
                let log = Log::new(n);
                let lb = pool.load_balanced().schedule(s);
                let ar = lb.map_async(inputs(&log, n), |x| {
                    std::thread::sleep(Duration::from_micros(50));
                    produce(x)
                });
                std::thread::sleep(Duration::from_millis(5));
                ar.abort();
                let r = ar.get();
                drop(r);
                log.check(&format!("aborted async P={p} {s:?}"));

                // Dropping the handle (abort-on-drop) must also release everything.
                let log = Log::new(n);
                let ar = lb.map_async(inputs(&log, n), |x| {
                    std::thread::sleep(Duration::from_micros(50));
                    produce(x)
                });
                std::thread::sleep(Duration::from_millis(3));
                drop(ar);
                // The map concludes asynchronously: wait until every input is accounted for.
                let t = Instant::now();
                while log.in_drops.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "inputs never released after drop"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Outputs written before the abort are dropped when the map concludes.
                let t = Instant::now();
                loop {
                    let pending = (0..n).any(|i| {
                        log.produced[i].load(Ordering::SeqCst)
                            != log.out_drops[i].load(Ordering::SeqCst)
                    });
                    if !pending {
                        break;
                    }
                    assert!(
                        t.elapsed() < Duration::from_secs(20),
                        "outputs never dropped after drop"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                log.check(&format!("dropped async P={p} {s:?}"));
            }
        }
    });
}
