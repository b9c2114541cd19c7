//! The one switch between `std` and [loom](https://docs.rs/loom) primitives.
//!
//! Everything whose ordering we argue about (the sleep protocol in [`crate::sleep`], the
//! completion latch, the engine loop in [`crate::registry`] with its deques, mailboxes, mailbox
//! doors and engine lifecycle (resize) and its thread-local engine context, `join`'s claim and completion flags) takes its atomics,
//! queues and parker from here, so that building with `RUSTFLAGS="--cfg loom"` model-checks
//! the same code that ships. Same idea as
//! crossbeam-utils' `mod primitive` and tokio's `src/loom/mod.rs`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The mailbox door of an engine (`registry.rs`, "Engines added and removed").
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;

#[cfg(not(loom))]
pub(crate) use crossbeam_utils::sync::{Parker, Unparker};

#[cfg(not(loom))]
pub(crate) use crossbeam_deque::{Injector, Steal, Stealer, Worker};

#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(loom)]
pub(crate) use self::loom_parker::{Parker, Unparker};

#[cfg(loom)]
pub(crate) use self::loom_deque::{Injector, Steal, Stealer, Worker};

#[cfg(loom)]
pub(crate) use loom::thread_local;

/// The subset of crossbeam-deque's API the engines use, on loom's mutexes. The engine loop, the
/// mailboxes and the injector are the code that ships; only the queues' insides are swapped
/// (crossbeam-deque is checked by its own authors; what we model is *our* use of it: who looks
/// where, in which order, and when an engine may sleep).
#[cfg(loom)]
mod loom_deque {
    use loom::sync::{Arc, Mutex};
    use std::collections::VecDeque;

    /// Result of a steal, as in crossbeam-deque (`Retry` never happens here).
    #[allow(dead_code)]
    pub(crate) enum Steal<T> {
        Empty,
        Success(T),
        Retry,
    }

    /// An engine's own LIFO deque.
    pub(crate) struct Worker<T> {
        q: Arc<Mutex<VecDeque<T>>>,
    }

    /// The stealing end of a [`Worker`].
    pub(crate) struct Stealer<T> {
        q: Arc<Mutex<VecDeque<T>>>,
    }

    impl<T> Worker<T> {
        pub(crate) fn new_lifo() -> Self {
            Worker {
                q: Arc::new(Mutex::new(VecDeque::new())),
            }
        }
        pub(crate) fn push(&self, t: T) {
            self.q.lock().unwrap().push_back(t);
        }
        pub(crate) fn pop(&self) -> Option<T> {
            self.q.lock().unwrap().pop_back()
        }
        pub(crate) fn stealer(&self) -> Stealer<T> {
            Stealer { q: self.q.clone() }
        }
    }

    impl<T> Stealer<T> {
        pub(crate) fn steal(&self) -> Steal<T> {
            match self.q.lock().unwrap().pop_front() {
                Some(t) => Steal::Success(t),
                None => Steal::Empty,
            }
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.q.lock().unwrap().is_empty()
        }
    }

    /// A FIFO queue anyone may push to and steal from.
    pub(crate) struct Injector<T> {
        q: Mutex<VecDeque<T>>,
    }

    impl<T> Injector<T> {
        pub(crate) fn new() -> Self {
            Injector {
                q: Mutex::new(VecDeque::new()),
            }
        }
        pub(crate) fn push(&self, t: T) {
            self.q.lock().unwrap().push_back(t);
        }
        pub(crate) fn steal(&self) -> Steal<T> {
            match self.q.lock().unwrap().pop_front() {
                Some(t) => Steal::Success(t),
                None => Steal::Empty,
            }
        }
        pub(crate) fn steal_batch_and_pop(&self, _dest: &Worker<T>) -> Steal<T> {
            self.steal()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.q.lock().unwrap().is_empty()
        }
    }
}

/// A token parker for loom with the semantics of `crossbeam_utils::sync::Parker`:
/// `unpark` before `park` makes that `park` return at once; spurious returns are allowed.
#[cfg(loom)]
mod loom_parker {
    use loom::sync::{Arc, Condvar, Mutex};

    struct Inner {
        token: Mutex<bool>,
        cv: Condvar,
    }

    pub(crate) struct Parker {
        inner: Arc<Inner>,
        unparker: Unparker,
    }

    #[derive(Clone)]
    pub(crate) struct Unparker {
        inner: Arc<Inner>,
    }

    impl Parker {
        pub(crate) fn new() -> Self {
            let inner = Arc::new(Inner {
                token: Mutex::new(false),
                cv: Condvar::new(),
            });
            Parker {
                unparker: Unparker {
                    inner: inner.clone(),
                },
                inner,
            }
        }

        pub(crate) fn park(&self) {
            let mut token = self.inner.token.lock().unwrap();
            while !*token {
                token = self.inner.cv.wait(token).unwrap();
            }
            *token = false;
        }

        /// Loom does not model time: a timed park returns at once (a spurious wake-up, which
        /// callers must tolerate anyway). The models never use timeouts.
        pub(crate) fn park_deadline(&self, _deadline: std::time::Instant) {}

        pub(crate) fn unparker(&self) -> &Unparker {
            &self.unparker
        }
    }

    impl Unparker {
        pub(crate) fn unpark(&self) {
            *self.inner.token.lock().unwrap() = true;
            self.inner.cv.notify_one();
        }
    }
}
