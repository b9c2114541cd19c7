//! Containing user code: every place where parview runs a closure or drops a user's value
//! that is not on the user's own call stack goes through here.
//!
//! # The rule
//! No user code — a closure, an `init`, a reduce op, or the `Drop` of an input item, a result
//! or a panic payload — can unwind into an engine's loop or into parview's bookkeeping. Three
//! tools make that true:
//!
//! * [`catch`] runs a closure and turns its panic into a message (the payload is dropped with
//!   [`drop_payload`], so a payload whose own `Drop` panics cannot escape either).
//! * [`drop_each`] drops a range of values one by one, each under its own `catch_unwind`. A slice's
//!   drop glue would keep going after one panicking `Drop`, but a *second* one aborts the process
//!   (a panic while unwinding); one by one, every value is dropped exactly once whatever they do.
//! * [`drop_caught`] drops one value and reports whether its `Drop` panicked.
//!
//! Panics caught here are *reported*, never swallowed silently: a map records them in its report
//! (an item's panic or a `Drop` that panicked becomes [`MapError::Panicked`] naming the index),
//! and a value dropped where nobody can be told (an engine dropping the last reference to a map
//! whose owner went away) is reported on stderr.
//!
//! [`MapError::Panicked`]: crate::MapError::Panicked

use std::any::Any;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};

/// Extracts the message of a panic payload (`&str` or `String`; anything else is named as such).
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// How many times [`drop_payload`] tries again when a payload's `Drop` panics with a payload
/// whose `Drop` panics in turn; after that the last payload is leaked rather than looping.
const PAYLOAD_DROP_TRIES: usize = 8;

/// Drops a panic payload. If its `Drop` panics, that panic's payload is dropped the same way
/// (a few times at most; a payload that keeps panicking is leaked, which is safe).
pub(crate) fn drop_payload(p: Box<dyn Any + Send>) {
    let mut p = p;
    for _ in 0..PAYLOAD_DROP_TRIES {
        match panic::catch_unwind(AssertUnwindSafe(move || drop(p))) {
            Ok(()) => return,
            Err(next) => p = next,
        }
    }
    std::mem::forget(p);
}

/// Runs `f`; a panic comes back as its message (the payload dropped safely).
#[inline]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let m = panic_message(&*p);
        drop_payload(p);
        m
    })
}

/// Drops `v`; `Err(message)` if its `Drop` panicked (whatever its fields' drop glue did after
/// that is done; the value is gone either way).
#[inline]
pub(crate) fn drop_caught<T>(v: T) -> Result<(), String> {
    if !std::mem::needs_drop::<T>() {
        std::mem::forget(v);
        return Ok(());
    }
    catch(move || drop(v))
}

/// Drops the values at `base + i` for `i` in `r`, one by one; `on_panic(i, message)` for each
/// value whose `Drop` panicked. Every value is dropped exactly once.
///
/// # Safety
/// Every slot of `r` holds an initialised value that nothing else will use or drop.
pub(crate) unsafe fn drop_each<T>(
    base: *mut T,
    r: Range<usize>,
    on_panic: &mut dyn FnMut(usize, String),
) {
    if !std::mem::needs_drop::<T>() {
        return;
    }
    for i in r {
        // SAFETY: slot `i` is initialised and ours alone (caller contract); it is read out once
        // and the copy left behind is never used again.
        let v = unsafe { base.add(i).read() };
        if let Err(m) = drop_caught(v) {
            on_panic(i, m);
        }
    }
}

/// Reports a panic that nobody can receive (a value dropped by an engine after its map's owner
/// went away). Printed, never silently lost.
pub(crate) fn report_orphan(what: &str, message: &str) {
    eprintln!("parview: {what} panicked while being dropped by parview: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    struct Bomb(bool);
    impl Drop for Bomb {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            if self.0 {
                panic!("bomb");
            }
        }
    }

    #[test]
    fn drop_each_drops_every_value_once_even_when_several_panic() {
        DROPS.store(0, Ordering::SeqCst);
        let mut v: Vec<Bomb> = (0..10).map(|i| Bomb(i % 3 == 0)).collect();
        let mut panicked = Vec::new();
        // SAFETY: all 10 values are initialised; length set to 0 so the Vec frees only memory.
        unsafe {
            let base = v.as_mut_ptr();
            v.set_len(0);
            drop_each(base, 0..10, &mut |i, m| panicked.push((i, m)));
        }
        assert_eq!(DROPS.load(Ordering::SeqCst), 10);
        let idx: Vec<usize> = panicked.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![0, 3, 6, 9]);
        assert!(panicked.iter().all(|(_, m)| m == "bomb"));
    }

    struct PanickyPayload;
    impl Drop for PanickyPayload {
        fn drop(&mut self) {
            std::panic::panic_any(PanickyPayload);
        }
    }

    #[test]
    fn a_payload_that_panics_on_drop_forever_is_contained() {
        let r = catch(|| std::panic::panic_any(PanickyPayload));
        assert_eq!(r.unwrap_err(), "<non-string panic payload>");
    }
}
