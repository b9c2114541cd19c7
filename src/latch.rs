//! The completion gate of one map: who may still work on it, and who tells the waiter it is done.
//!
//! A map is worked on by *participants*: the calling thread, engines that picked up one of the
//! map's tickets, or engines it was addressed to. Tickets can be picked up late — after the map
//! has finished and its caller has returned — so a participant must *enter* before touching the
//! map's borrowed data, and entering must fail once the map is finished.
//!
//! # Protocol
//! One word: bit 0 = `CLOSED`, the rest = number of participants inside (`ONE = 2` each).
//!
//! * `enter`: CAS `v → v + ONE` only while `CLOSED` is clear. A late ticket never changes the
//!   word, so it can never be mistaken for the last participant.
//! * `finish`: a participant leaves when the map has no more work for it, and closes the gate as it
//!   goes: CAS `v → (v | CLOSED) − ONE`. Whoever moves the word to exactly `CLOSED` is the last
//!   participant: all others have left and nobody can enter again.
//! * Pre-entered participants (the caller itself; directed work sent to named engines) are counted
//!   in the initial word and only `finish`.
//!
//! All operations are `AcqRel` RMWs on the one word, so every participant's writes (its chunk
//! outputs) happen before the last participant's `finish`, which then publishes them with the
//! [`Latch`]'s `Release` store; the waiter's `Acquire` load sees them all.
//!
//! [`Latch`]: a flag plus the waiter's [`Waker`]. The setter stores the flag, then wakes; the
//! waiter checks the flag, then sleeps (through the engine's sleep protocol on an engine, on its
//! own parker elsewhere). The parker's token semantics close the gap between them.
//!
//! [`Signal`]: the same for many waiters that come and go (an `AsyncResult` that several
//! threads wait on, the bell of a streaming map). Waiters register under a mutex; the setter
//! changes the state first, then takes the mutex and wakes everyone registered. Either the
//! setter's critical section comes first — then the waiter, locking after it, sees the new state
//! when it checks after registering — or the waiter's does, and the setter wakes it.

use crate::registry::{Waker, wait_until};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLOSED: usize = 1;
const ONE: usize = 2;

/// Who may still work on a map. See the module docs.
pub(crate) struct Gate {
    state: AtomicUsize,
}

impl Gate {
    /// A gate with `pre` participants already inside.
    pub(crate) fn new(pre: usize) -> Self {
        Gate {
            state: AtomicUsize::new(pre * ONE),
        }
    }

    /// Try to become a participant; false once the map is finished.
    pub(crate) fn enter(&self) -> bool {
        let mut v = self.state.load(Ordering::Acquire);
        loop {
            if v & CLOSED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(v, v + ONE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
    }

    /// Leave (and close: the caller of `finish` found no more work). True for the last one out.
    pub(crate) fn finish(&self) -> bool {
        let mut v = self.state.load(Ordering::Acquire);
        loop {
            debug_assert!(v >= ONE, "finish without enter");
            let new = (v | CLOSED) - ONE;
            match self
                .state
                .compare_exchange_weak(v, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return new == CLOSED,
                Err(now) => v = now,
            }
        }
    }
}

/// A one-shot flag that wakes one waiting thread.
pub(crate) struct Latch {
    set: AtomicBool,
    waiter: Waker,
}

impl Latch {
    /// A latch that will wake `waiter` when set.
    pub(crate) fn new(waiter: Waker) -> Self {
        Latch {
            set: AtomicBool::new(false),
            waiter,
        }
    }

    /// Whether the latch was set (Acquire: the setter's writes are visible after `true`).
    #[inline]
    pub(crate) fn probe(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Clears the flag of a latch no thread looks at any more, for reuse.
    pub(crate) fn reset(&mut self) {
        self.set = AtomicBool::new(false);
    }

    /// Whether this latch wakes the current thread.
    pub(crate) fn wakes_current(&self) -> bool {
        self.waiter.is_current()
    }

    /// Set the latch and wake the waiter.
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.waiter.wake();
    }
}

/// A one-shot completion flag many threads can wait on, and a bell that wakes them without
/// setting it. See the module docs.
pub(crate) struct Signal {
    set: std::sync::atomic::AtomicBool,
    waiters: std::sync::Mutex<Vec<(u64, Waker)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Signal {
            set: std::sync::atomic::AtomicBool::new(false),
            waiters: std::sync::Mutex::new(Vec::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether [`set`](Self::set) was called (Acquire: the setter's writes are visible).
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        self.set.store(true, std::sync::atomic::Ordering::Release);
        self.ring();
    }

    /// Wakes every waiter (they re-check their condition).
    pub(crate) fn ring(&self) {
        let w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for (_, k) in w.iter() {
            k.wake();
        }
    }

    /// Waits until `cond()` (true) or `deadline` (false), as [`wait_until`] does: helping on an
    /// engine. `cond` must become true only through changes made before [`set`](Self::set) or
    /// [`ring`](Self::ring).
    pub(crate) fn wait(
        &self,
        cond: &dyn Fn() -> bool,
        deadline: Option<Instant>,
        spin: Duration,
    ) -> bool {
        if cond() {
            return true;
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, Waker::current()));
        let r = wait_until(cond, deadline, spin);
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
        r
    }
}

/// Loom model: a caller (pre-entered) and two tickets, one of which may arrive after the map is
/// done. The caller must see both workers' writes once the latch is set, a ticket that enters
/// must do so before the finish, and exactly one participant is last.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn last_participant_publishes_all_work() {
        loom::model(|| {
            let gate = Arc::new(Gate::new(1));
            let latch = Arc::new(Latch::new(Waker::current()));
            let work = Arc::new(AtomicUsize::new(0));
            let lasts = Arc::new(AtomicUsize::new(0));
            let ticket = {
                let (gate, latch, work, lasts) =
                    (gate.clone(), latch.clone(), work.clone(), lasts.clone());
                thread::spawn(move || {
                    if gate.enter() {
                        work.fetch_add(1, Ordering::Relaxed);
                        if gate.finish() {
                            lasts.fetch_add(1, Ordering::Relaxed);
                            latch.set();
                        }
                        true
                    } else {
                        false
                    }
                })
            };
            // The caller does its own share, then finishes and waits.
            work.fetch_add(10, Ordering::Relaxed);
            if gate.finish() {
                lasts.fetch_add(1, Ordering::Relaxed);
            } else {
                assert!(wait_until(
                    &|| latch.probe(),
                    None,
                    std::time::Duration::ZERO
                ));
            }
            let observed = work.load(Ordering::Relaxed);
            let entered = ticket.join().unwrap();
            // Whatever the ticket did, it did before the caller returned.
            assert_eq!(observed, if entered { 11 } else { 10 });
            assert_eq!(lasts.load(Ordering::Relaxed), 1);
            assert!(!gate.enter(), "a finished map must refuse late tickets");
        });
    }
}
