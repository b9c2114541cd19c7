//! Shared helpers of the integration tests: the one list of schedules and of pool sizes every
//! test iterates over, a watchdog ([`within`]), and small helpers. Each test file includes it
//! with `mod common;` (the MPI tests include `common/mpirun.rs` instead: their parent side).
//! The schedule list lives in `schedules.rs`, which the unit tests in `src/` include too: one
//! list for every test.
#![allow(dead_code)]

use parview::{Pool, Schedule};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "schedules.rs"]
mod schedules;
#[allow(unused_imports)] // not every test binary iterates over schedules
pub use schedules::SCHEDULES;

/// Pool sizes used across tests (more workers than the 2 cores on purpose).
pub const WORKERS: [usize; 4] = [1, 2, 3, 8];

/// A cheap scrambling of `i`: the item function of the ordering tests.
pub fn f(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 3)
}

/// Busy-waits for `d`: work that keeps its thread running, unlike a sleep.
pub fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A pool with `n` workers.
pub fn pool(n: usize) -> Pool {
    Pool::builder().workers(n).build().expect("pool builds")
}

/// Runs `f` on its own thread and panics with a clear message if it does not finish within
/// `secs` seconds (a hang). A panic inside `f` is re-raised with its payload.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("watchdog-body".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn watchdog body");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(payload)) => {
            let _ = handle.join();
            std::panic::resume_unwind(payload)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("WATCHDOG: the test body did not finish within {secs} s (hang?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("WATCHDOG: the test body thread died without reporting")
        }
    }
}

/// The message of a panic payload (`&str` or `String`).
pub fn payload_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "<non-string payload>".to_string()
    }
}

/// Runs `f`, expects it to panic, and returns the panic message.
pub fn panic_message_of<T>(f: impl FnOnce() -> T) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned normally"),
        Err(p) => payload_message(&*p),
    }
}
