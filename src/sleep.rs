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
//! * **spinning**: found nothing; polls the queues with [`crate::registry::Spin`] (a check
//!   every few `pause`s, then `yield_now` between checks) for the pool's spin window. Work
//!   that arrives now is picked up in well under a microsecond and nobody pays an OS wake-up:
//!   this is what makes a parallel call as cheap as OpenMP's.
//! * **sleepy**: the window passed. The engine announces itself ([`Sleep::prepare`]): it sets its
//!   own `sleeping` flag, then increments the shared `sleepers` counter, then looks at the
//!   queues one last time. If anything is there it withdraws ([`Sleep::cancel`]).
//! * **asleep**: parked on its [`Parker`]. Parked engines cost no CPU.
//!
//! # Who writes what, with which ordering
//!
//! Two kinds of producer wake engines: one that pushed *shareable* work (any engine may run it:
//! a ticket on the injector or a deque) and one that put a job in engine `w`'s *mailbox* (only
//! `w` may run it). Every write to a `sleeping` flag and to `sleepers` is a read-modify-write.
//!
//! | actor | step | operation |
//! |---|---|---|
//! | engine | 1 | `flag[w].swap(true, AcqRel)` (`state[w] := SHARED`) |
//! | engine | 2 | `sleepers.fetch_add(1, AcqRel)` |
//! | engine | 3 | check its mailbox, the shared queues, the shutdown flag, what it waits for; if any: `cancel` |
//! | engine | 4 | `park()` |
//! | engine | 5 | `cancel`: `if flag[w].swap(false, AcqRel) { sleepers.fetch_sub(1, AcqRel) }` |
//!
//! The "flag" is a three-valued `state[w]`: `AWAKE` (false), `SHARED` (true, counted in
//! `sleepers`) and `MAILBOX_ONLY`: an engine nested so deep in waits that it no longer takes
//! shareable work ([`HELP_DEPTH`](crate::HELP_DEPTH)) announces itself with step 1
//! only (`state[w] := MAILBOX_ONLY`, no count). Shared producers claim only `SHARED` engines
//! (step 3 is `compare_exchange(SHARED, AWAKE)`); mailbox producers and the events an engine
//! waits for swap any state to `AWAKE` and unpark it if it was not awake (decrementing the
//! count if it was `SHARED`). The arguments below read "true" as "not `AWAKE`".
//! | shared producer | 1 | push the job (the queue's own Release) |
//! | shared producer | 2 | `n = sleepers.fetch_add(0, AcqRel)`; if `n == 0` stop |
//! | shared producer | 3 | find a `w` with `flag[w]` true and `compare_exchange(true, false)` it |
//! | shared producer | 4 | `sleepers.fetch_sub(1, AcqRel)`; `unpark(w)` |
//! | mailbox producer | 1 | push the job into `mailbox[w]` |
//! | mailbox producer | 2 | `if flag[w].swap(false, AcqRel) { sleepers.fetch_sub(1, AcqRel); unpark(w) }` |
//!
//! # Why no wake-up is lost
//!
//! **Shared work.** Every access to `sleepers` is a read-modify-write with `AcqRel`, so all of
//! them sit in one modification order and each one synchronises with the one before it (a
//! release sequence made only of RMWs). Take a producer's step 2 (call it `P`) and an engine's
//! step 2 (`E`):
//!
//! * `E` before `P`: `P` reads a count that includes the engine, and because `P` acquires from the
//!   chain through `E`, it also sees `flag[w] = true` (written before `E`). It claims the flag
//!   and unparks, or another producer already claimed it — and that producer's unpark wakes the
//!   engine, which then re-runs step 3 after its own later RMW (next case).
//! * `P` before `E`: `E` acquires from the chain through `P`, so the push (before `P`) happens
//!   before the engine's step 3: the engine sees the job and does not park.
//!
//! The count can be *borrowed*: a producer may claim engine `a` between `a`'s steps 1 and 2 and
//! decrement before `a` increments, so for a moment the count misses a sleeping engine `b`. A
//! shared producer that reads 0 then is still safe: `a` is about to run step 3 and will see its
//! job (case `P` before `E`). That is why shared work may trust the count — any engine that looks
//! will do — and why mailbox work may **not**: only `w` can run a mailbox job, and `a` does not
//! look at `w`'s mailbox. (This was a real lost wake-up, found by a soak test: a DirectView call
//! hung while engine 1 slept with a job in its mailbox. The loom model `mailbox_after_shared`
//! in `registry.rs` reproduces it with the count check put back.)
//!
//! **Mailbox work** goes by the flag alone. All writes to `flag[w]` are RMWs, so they are totally
//! ordered and form one release sequence. Take the producer's swap (`S`) and the engine's step 1
//! (`W`):
//!
//! * `W` before `S`: `S` reads `true` — unless a later RMW cleared it, which was either a
//!   producer's claim (that producer unparks `w`) or the engine's own `cancel` (the engine is
//!   awake and will look again before it sleeps: the next round is again this case analysis).
//!   Reading `true`, the producer unparks `w`.
//! * `S` before `W`: `W` acquires from `S`, so the push into the mailbox (before `S`) happens
//!   before the engine's step 3, which sees the job.
//!
//! The parker has token semantics (an `unpark` before `park` makes `park` return at once), so
//! the window between step 3 and step 4 loses nothing either. A wake-up can be *spurious*
//! (an engine woken for work another engine already took): it looks, finds nothing, and sleeps
//! again. That costs time, never correctness.
//!
//! No `SeqCst` fences are needed (and loom, which models this file through the real engine loop,
//! is weak on `SeqCst`). The cost on the hot path is one uncontended RMW per notification;
//! engines touch `sleepers` only on their way to sleep.
//!
//! **Resizing.** Engines that `Pool::resize` removes are woken like mailbox work: the resize
//! stores `RETIRING` in the engine's slot, then swaps its `state[w]` (`notify_one`); the
//! engine's step 3 checks its `life`. Shared producers scan only the members `0..active`, so an
//! engine already removed (it takes no shareable work) is not claimed for shared work; a leaving
//! engine still counted in `sleepers` is woken by the resize and withdraws itself. One that
//! took a shared wake-up anyway (claimed while still a member, or by borrowing the count as
//! above) passes it on: as it starts to leave, if it sees shared work it wakes a member. Engines
//! added later get their slot before they become members. See `registry.rs`, "Engines added
//! and removed".
//!
//! The same flag/unpark pair wakes an engine that is blocked on a latch (a nested parallel call
//! waiting for its helpers): the latch setter unparks that engine directly, and the engine's
//! step 3 checks its latch too.

use crate::sync::{AtomicUsize, Ordering, Unparker};
use crossbeam_utils::CachePadded;
use std::sync::OnceLock;

/// `state[w]`: awake (running, spinning, or looking).
const AWAKE: usize = 0;
/// `state[w]`: announced asleep, and will run shareable work when woken (counted in `sleepers`).
const SHARED: usize = 1;
/// `state[w]`: announced asleep, but only for its own mailbox and what it waits for: a waiting
/// engine nested [`HELP_DEPTH`](crate::HELP_DEPTH) deep takes no shareable work, so
/// it must not be counted or claimed for it (a shared producer would waste its one wake-up on it).
const MAILBOX_ONLY: usize = 2;

/// One engine's sleep slot.
struct Slot {
    state: AtomicUsize,
    unparker: Unparker,
}

/// Shared sleep state of a pool: one slot per engine plus the `sleepers` counter.
///
/// Slots are created on demand up to a capacity (engines added by `Pool::resize` get theirs
/// when they are first started) and never removed, so `slot(w)` is a plain load for every
/// engine that ever existed. Shared producers scan only the first `active` slots (the engines
/// a resize left in the pool); see `registry.rs`, "Engines added and removed".
pub(crate) struct Sleep {
    sleepers: CachePadded<AtomicUsize>,
    slots: Box<[OnceLock<Box<CachePadded<Slot>>>]>,
}

impl Sleep {
    /// A sleep state with room for `capacity` engines and none created yet.
    pub(crate) fn new(capacity: usize) -> Self {
        Sleep {
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..capacity).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Creates engine `w`'s slot (once, before the engine or any producer uses it), woken
    /// through `unparker`.
    pub(crate) fn add(&self, w: usize, unparker: Unparker) {
        let _ = self.slots[w].set(Box::new(CachePadded::new(Slot {
            state: AtomicUsize::new(AWAKE),
            unparker,
        })));
    }

    /// Engine `w`'s slot. Every index an engine or producer uses was created first.
    #[inline]
    fn slot(&self, w: usize) -> &Slot {
        self.slots[w]
            .get()
            .expect("parview: sleep slot of an engine never started")
    }

    /// Engine side, steps 1–2: announce that engine `w` is about to park; `shared`: it will run
    /// shareable work when woken. The caller must then check for work (step 3) and either
    /// [`cancel`](Self::cancel) or park.
    pub(crate) fn prepare(&self, w: usize, shared: bool) {
        if shared {
            self.slot(w).state.swap(SHARED, Ordering::AcqRel);
            self.sleepers.fetch_add(1, Ordering::AcqRel);
        } else {
            self.slot(w).state.swap(MAILBOX_ONLY, Ordering::AcqRel);
        }
    }

    /// Engine side, step 5: withdraw (after finding work, or after waking). Idempotent.
    pub(crate) fn cancel(&self, w: usize) {
        if self.slot(w).state.swap(AWAKE, Ordering::AcqRel) == SHARED {
            self.sleepers.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Producer side, after pushing `jobs` shareable jobs: wake up to `jobs` sleeping engines
    /// among the first `active` (engines a resize removed run no shareable work, so waking
    /// one would waste the wake-up).
    pub(crate) fn notify(&self, jobs: usize, active: usize) {
        if jobs == 0 || self.sleepers.fetch_add(0, Ordering::AcqRel) == 0 {
            return;
        }
        let mut woken = 0;
        for w in 0..active {
            if woken == jobs {
                break;
            }
            if self.claim(w) {
                woken += 1;
            }
        }
    }

    /// Producer side, for work addressed to engine `w` alone (its mailbox), or for the event
    /// engine `w` waits for: goes by `w`'s state, never by the count (see "Mailbox work" above).
    pub(crate) fn notify_one(&self, w: usize) {
        let slot = self.slot(w);
        match slot.state.swap(AWAKE, Ordering::AcqRel) {
            AWAKE => {}
            prev => {
                if prev == SHARED {
                    self.sleepers.fetch_sub(1, Ordering::AcqRel);
                }
                slot.unparker.unpark();
            }
        }
    }

    /// Wake every engine, sleeping or not (shutdown). Safe to call any number of times.
    pub(crate) fn wake_all(&self) {
        for w in 0..self.slots.len() {
            if self.slots[w].get().is_none() {
                break; // slots are created in index order
            }
            self.notify_one(w);
            self.unpark(w);
        }
    }

    /// Unparks engine `w` whatever its state (an engine parked outside the protocol: one that
    /// a resize removed, waiting to be added back).
    pub(crate) fn unpark(&self, w: usize) {
        self.slot(w).unparker.unpark();
    }

    /// Steps 3–4 of the shared producer for engine `w`: true if this call took `w` out of its
    /// sleep.
    fn claim(&self, w: usize) -> bool {
        let slot = self.slot(w);
        if slot.state.load(Ordering::Relaxed) == SHARED
            && slot
                .state
                .compare_exchange(SHARED, AWAKE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.sleepers.fetch_sub(1, Ordering::AcqRel);
            slot.unparker.unpark();
            true
        } else {
            false
        }
    }

    /// Number of engines announced as sleeping for shared work (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::Acquire)
    }
}
