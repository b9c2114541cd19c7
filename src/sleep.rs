//! The wake protocol: how idle engines go to sleep without ever missing work.
//!
//! # States of an engine
//!
//! ```text
//!   running ──no work──▶ spinning ──spin window over──▶ sleepy ──nothing new──▶ asleep
//!      ▲                    │ work seen                   │ work seen           │ unpark
//!      └────────────────────┴─────────────────────────────┴─────────────────────┘
//! ```
//!
//! * **running**: executing a job, or looking for one (mailbox, own deque, injector, stealing).
//! * **spinning**: found nothing; polls the queues with [`crossbeam_utils::Backoff`] (spin,
//!   then `yield_now`) for the pool's spin window. Work that arrives now is picked up in
//!   well under a microsecond and nobody pays an OS wake-up: this is what makes a parallel
//!   call as cheap as OpenMP's.
//! * **sleepy**: the window passed. The engine announces itself ([`Sleep::prepare`]): it sets its
//!   own `sleeping` flag, then increments the shared `sleepers` counter, then looks at the
//!   queues one last time. If anything is there it withdraws ([`Sleep::cancel`]).
//! * **asleep**: parked on its [`Parker`]. Parked engines cost no CPU.
//!
//! # Who writes what, with which ordering
//!
//! | actor | step | operation |
//! |---|---|---|
//! | engine | 1 | `flag[w] := true` (Relaxed; published by step 2) |
//! | engine | 2 | `sleepers.fetch_add(1, AcqRel)` |
//! | engine | 3 | check queues, shutdown flag, its latch; if any: `cancel` |
//! | engine | 4 | `park()` |
//! | engine | 5 | `cancel`: `if flag[w].swap(false, AcqRel) { sleepers.fetch_sub(1, AcqRel) }` |
//! | producer | 1 | push the job (the queue's own Release) |
//! | producer | 2 | `n = sleepers.fetch_add(0, AcqRel)`; if `n == 0` stop |
//! | producer | 3 | find a `w` with `flag[w]` true and `compare_exchange(true, false)` it |
//! | producer | 4 | `sleepers.fetch_sub(1, AcqRel)`; `unpark(w)` |
//!
//! # Why no wake-up is lost
//!
//! Every access to `sleepers` is a read-modify-write with `AcqRel`, so all of them sit in one
//! modification order and each one synchronises with the one before it (a release sequence made
//! only of RMWs). Take a producer's step 2 (call it `P`) and an engine's step 2 (`E`):
//!
//! * `E` before `P`: `P` reads a count that includes the engine, and because `P` acquires from the
//!   chain through `E`, it also sees `flag[w] = true` (written before `E`). It claims the flag
//!   and unparks, or another producer already claimed it — and that producer's unpark wakes the
//!   engine, which then re-runs step 3 after its own later RMW (next case).
//! * `P` before `E`: `E` acquires from the chain through `P`, so the push (before `P`) happens
//!   before the engine's step 3: the engine sees the job and does not park.
//!
//! The parker has token semantics (an `unpark` before `park` makes `park` return at once), so
//! the window between step 3 and step 4 loses nothing either. A wake-up can be *spurious*
//! (an engine woken for work another engine already took): it looks, finds nothing, and sleeps
//! again. That costs time, never correctness.
//!
//! No `SeqCst` fences are needed (and loom, which models this file, is weak on `SeqCst`). The
//! cost on the hot path is one uncontended RMW per notification; engines touch `sleepers` only
//! on their way to sleep.
//!
//! The same flag/unpark pair wakes an engine that is blocked on a latch (a nested parallel call
//! waiting for its helpers): the latch setter unparks that engine directly, and the engine's
//! step 3 checks its latch too.

use crate::sync::{AtomicBool, AtomicUsize, Ordering, Unparker};
use crossbeam_utils::CachePadded;

/// One engine's sleep slot.
struct Slot {
    sleeping: AtomicBool,
    unparker: Unparker,
}

/// Shared sleep state of a pool: one slot per engine plus the `sleepers` counter.
pub(crate) struct Sleep {
    sleepers: CachePadded<AtomicUsize>,
    slots: Box<[CachePadded<Slot>]>,
}

impl Sleep {
    /// A sleep state for engines whose parkers hand out these unparkers (engine `i` = index `i`).
    pub(crate) fn new(unparkers: Vec<Unparker>) -> Self {
        Sleep {
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            slots: unparkers
                .into_iter()
                .map(|unparker| {
                    CachePadded::new(Slot {
                        sleeping: AtomicBool::new(false),
                        unparker,
                    })
                })
                .collect(),
        }
    }

    /// Engine side, steps 1–2: announce that engine `w` is about to park. The caller must then
    /// check for work (step 3) and either [`cancel`](Self::cancel) or park.
    pub(crate) fn prepare(&self, w: usize) {
        self.slots[w].sleeping.store(true, Ordering::Relaxed);
        self.sleepers.fetch_add(1, Ordering::AcqRel);
    }

    /// Engine side, step 5: withdraw (after finding work, or after waking). Idempotent.
    pub(crate) fn cancel(&self, w: usize) {
        if self.slots[w].sleeping.swap(false, Ordering::AcqRel) {
            self.sleepers.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Producer side, after pushing `jobs` shareable jobs: wake up to `jobs` sleeping engines.
    pub(crate) fn notify(&self, jobs: usize) {
        if jobs == 0 || self.sleepers.fetch_add(0, Ordering::AcqRel) == 0 {
            return;
        }
        let mut woken = 0;
        for w in 0..self.slots.len() {
            if woken == jobs {
                break;
            }
            if self.claim(w) {
                woken += 1;
            }
        }
    }

    /// Producer side, for work addressed to engine `w` alone (its mailbox).
    pub(crate) fn notify_one(&self, w: usize) {
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            self.claim(w);
        }
    }

    /// Wake every engine, sleeping or not (shutdown). Safe to call any number of times.
    pub(crate) fn wake_all(&self) {
        self.sleepers.fetch_add(0, Ordering::AcqRel);
        for w in 0..self.slots.len() {
            if !self.claim(w) {
                self.slots[w].unparker.unpark();
            }
        }
    }

    /// Steps 3–4 of the producer for engine `w`: true if this call took `w` out of its sleep.
    fn claim(&self, w: usize) -> bool {
        let slot = &self.slots[w];
        if slot.sleeping.load(Ordering::Relaxed)
            && slot
                .sleeping
                .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.sleepers.fetch_sub(1, Ordering::AcqRel);
            slot.unparker.unpark();
            true
        } else {
            false
        }
    }

    /// Number of engines announced as sleeping (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::Acquire)
    }
}

/// Loom models of the protocol: engines that sleep when the queue is empty and producers that
/// push a job each and notify. Every job must be consumed: a lost wake-up would leave an engine
/// parked forever, which loom reports as a deadlock. Three small models instead of one big one
/// (loom explores every interleaving; the state space grows fast):
/// * one engine, one producer — the race between "engine announces sleep" and "producer pushes";
/// * one engine, two producers — the counter must not hide the second job;
/// * two engines, one producer — the producer must wake an engine that is really asleep.
///
/// Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_model`.
#[cfg(all(test, loom))]
mod loom_model {
    use super::Sleep;
    use crate::sync::{AtomicBool, AtomicUsize, Ordering, Parker};
    use loom::sync::Arc;
    use loom::thread;

    struct World {
        sleep: Sleep,
        jobs: AtomicUsize,
        done: AtomicUsize,
        stop: AtomicBool,
        total: usize,
    }

    impl World {
        fn take(&self) -> bool {
            self.jobs
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |j| j.checked_sub(1))
                .is_ok()
        }

        /// The engine loop of `pool.rs` in miniature: look, announce, look again, park, withdraw.
        fn engine(&self, w: usize, parker: &Parker) {
            loop {
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                if self.take() {
                    if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
                        self.stop.store(true, Ordering::Release);
                        self.sleep.wake_all();
                    }
                    continue;
                }
                self.sleep.prepare(w);
                if self.jobs.load(Ordering::Acquire) > 0 || self.stop.load(Ordering::Acquire) {
                    self.sleep.cancel(w);
                    continue;
                }
                parker.park();
                self.sleep.cancel(w);
            }
        }
    }

    fn model(engines: usize, producers: usize) {
        loom::model(move || {
            let parkers: Vec<Parker> = (0..engines).map(|_| Parker::new()).collect();
            let world = Arc::new(World {
                sleep: Sleep::new(parkers.iter().map(|p| p.unparker().clone()).collect()),
                jobs: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                stop: AtomicBool::new(false),
                total: producers,
            });
            let mut threads = Vec::new();
            for (w, parker) in parkers.into_iter().enumerate() {
                let world = world.clone();
                threads.push(thread::spawn(move || world.engine(w, &parker)));
            }
            // The main thread is the first producer; the others get threads.
            for _ in 1..producers {
                let world = world.clone();
                threads.push(thread::spawn(move || {
                    world.jobs.fetch_add(1, Ordering::Release);
                    world.sleep.notify(1);
                }));
            }
            world.jobs.fetch_add(1, Ordering::Release);
            world.sleep.notify(1);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(world.done.load(Ordering::Acquire), producers);
        });
    }

    #[test]
    fn one_engine_one_producer() {
        model(1, 1);
    }

    #[test]
    fn one_engine_two_producers() {
        model(1, 2);
    }

    #[test]
    fn two_engines_one_producer() {
        model(2, 1);
    }
}
