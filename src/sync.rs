//! The one switch between `std` and [loom](https://docs.rs/loom) primitives.
//!
//! Everything whose ordering we argue about (the sleep protocol in [`crate::sleep`], the
//! completion latch) takes its atomics and its parker from here, so that building with
//! `RUSTFLAGS="--cfg loom"` model-checks the same code that ships. Same idea as
//! crossbeam-utils' `mod primitive` and tokio's `src/loom/mod.rs`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use crossbeam_utils::sync::{Parker, Unparker};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use self::loom_parker::{Parker, Unparker};

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
