//! Fault injection: what parview guarantees when user code misbehaves, when a wait happens on an
//! engine thread, and at the arithmetic edges — tested through the public API only.
//!
//! The guarantees, one section each below:
//!
//! 1. **Panicking `Drop`s** (results, owned inputs, panic payloads) never kill an engine, and
//!    every other value is still dropped exactly once.
//! 2. **Waits on an engine thread** (`get`, `wait_timeout`, `imap`, ... called from a job) run
//!    that engine's own pending work, so they finish on 1-engine pools and across pools.
//! 3. **Helping is bounded**: thousands of tasks that wait while they run do not overflow an
//!    engine's stack.
//! 4. **Arithmetic at the edges**: chunk sizes near `usize::MAX`, absurd worker counts, outputs
//!    that cannot be allocated, maps over `0..u64::MAX`, `Duration::MAX` timeouts.
//! 5. **Lost wake-ups**: a soak of back-to-back mixed calls with random idle gaps.
//!
//! Every test runs its body under a [`watchdog`]: a hang prints the test's name and exits the
//! process with status 1, so it fails the suite instead of stalling it. Run a single test with
//! `cargo test --test faults -- --exact NAME` to see it alone.
//!
//! Cases that could *abort* the process on a broken implementation (an allocation failure is an
//! abort, not a panic) run in a child process: the test binary re-runs itself with
//! [`CHILD_MODE_ENV`] naming the case (see [`child_process_entry`]). That also keeps
//! `PARVIEW_WORKERS` changes out of this process, where other tests run in parallel.
//!
//! Knobs: `PARVIEW_SOAK_SECS` (default 3) sets how long each soak test runs.

mod common;

use parview::{AsyncResult, Pool, Schedule};
use std::any::Any;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

// =============================================================================================
// Watchdog

/// Default watchdog bound of a test body.
const WATCHDOG_SECS: u64 = 60;

/// Bound of the tests whose body should be instant unless it deadlocks.
const QUICK_WATCHDOG_SECS: u64 = 30;

/// The last stage each watchdog body thread reported (see [`stage`]), by thread name.
static STAGES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Records what the current watchdog body is doing, for the hang report. Call it from the body
/// thread itself (not from jobs running on engines).
fn stage(what: impl Into<String>) {
    if let Some(name) = thread::current().name() {
        STAGES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), what.into());
    }
}

/// Runs `body` on its own thread and waits at most `secs` seconds for it. On timeout, prints
/// which test hung (straight to the process's stderr, past the test harness's capture) and
/// exits the process with status 1: a hang fails the suite instead of stalling it. A panic in
/// `body` is re-raised here with its message.
fn watchdog<T: Send + 'static>(
    name: &'static str,
    secs: u64,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    watchdog_noted(name, secs, String::new, body)
}

/// [`watchdog`] whose hang report adds `note()` (e.g. how far a loop got).
fn watchdog_noted<T: Send + 'static>(
    name: &'static str,
    secs: u64,
    note: impl Fn() -> String,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(format!("{name}-body"))
        .spawn(move || {
            stage("started");
            let r = panic::catch_unwind(AssertUnwindSafe(body));
            let _ = tx.send(r);
        })
        .expect("spawn the watchdog's body thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(payload)) => {
            let _ = handle.join();
            // Re-raise as a plain string: the original payload may be one whose Drop panics.
            panic::resume_unwind(Box::new(payload_text(payload)))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let note = note();
            let sep = if note.is_empty() { "" } else { "; " };
            let last = STAGES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&format!("{name}-body"))
                .cloned()
                .unwrap_or_else(|| "(none reported)".into());
            let _ = writeln!(
                std::io::stderr(),
                "\nWATCHDOG: test `{name}` HUNG: no result after {secs} s; last stage: {last}{sep}{note}; exiting with status 1"
            );
            std::process::exit(1);
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("WATCHDOG: the body of `{name}` died without reporting")
        }
    }
}

// =============================================================================================
// Helpers

/// How long a live engine may take to pick up a job before we call it dead.
const ALIVE_BOUND: Duration = Duration::from_secs(10);

/// How long an async map may take to become ready after an abort.
const READY_BOUND: Duration = Duration::from_secs(10);

/// A pool with `n` engines.
fn pool(n: usize) -> Pool {
    Pool::builder().workers(n).build().expect("pool builds")
}

/// A pool that lives for the rest of the process, for `'static` task closures that use it.
fn leaked_pool(n: usize) -> &'static Pool {
    Box::leak(Box::new(pool(n)))
}

/// The text of a panic payload. Payloads that are not strings are *leaked*, never dropped:
/// their Drop may panic (that is one of the faults injected here).
fn payload_text(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    if let Some(s) = payload.downcast_ref::<&str>() {
        return (*s).to_string();
    }
    let what = if payload.is::<PayloadThatPanicsOnDrop>() {
        "<PayloadThatPanicsOnDrop payload>"
    } else {
        "<non-string payload>"
    };
    std::mem::forget(payload);
    what.to_string()
}

/// Runs `f`, turning a panic into `Err(message)` (see [`payload_text`]).
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(payload_text)
}

/// Polls `cond` every millisecond until it holds or `bound` passes; returns its last value.
fn wait_until(bound: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if t.elapsed() > bound {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Checks that every engine of `pool` still runs work: a DirectView job on each engine alone
/// (bounded, so a killed engine fails here with its index instead of hanging), then a
/// DirectView apply on all, a blocking map, an async map and a submit.
fn assert_pool_works(pool: &Pool, context: &str) {
    stage(format!("{context}: checking that every engine still works"));
    let p = pool.workers();
    for e in 0..p {
        let ar = pool
            .direct_to(&[e])
            .expect("engine exists")
            .apply_async(|x| x + 1000);
        assert!(
            ar.wait_timeout(ALIVE_BOUND),
            "{context}: engine {e} did not run a DirectView job within {ALIVE_BOUND:?} (was it killed?)"
        );
        assert_eq!(
            ar.get().expect("direct apply_async"),
            vec![e + 1000],
            "{context}: engine {e}"
        );
    }
    assert_eq!(
        pool.direct().apply(|e| e),
        (0..p).collect::<Vec<_>>(),
        "{context}: DirectView::apply on every engine"
    );
    let v = pool.par_map(0..1000u64, |i| i * 2);
    assert!(
        v.iter().enumerate().all(|(i, &x)| x == 2 * i as u64),
        "{context}: par_map results"
    );
    let ar = pool
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_async(0..4 * p as u64, |i| i + 1);
    assert!(ar.wait_timeout(ALIVE_BOUND), "{context}: map_async hung");
    assert_eq!(
        ar.get().expect("map_async"),
        (1..=4 * p as u64).collect::<Vec<_>>(),
        "{context}: map_async results"
    );
    let s = pool.load_balanced().submit(|| 41 + 1);
    assert!(s.wait_timeout(ALIVE_BOUND), "{context}: submit hung");
    assert_eq!(s.get().expect("submit"), 42, "{context}: submit result");
}

/// Created/dropped counters shared by the [`Tracked`] values of one case.
#[derive(Default)]
struct Counts {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counts {
    fn new() -> Arc<Counts> {
        Arc::default()
    }

    /// Waits (at most `bound`) until every created value was dropped and the counts stayed
    /// still for a moment (values may be dropped on engines, after the call returned); returns
    /// `(created, dropped)`.
    fn settle(&self, bound: Duration) -> (usize, usize) {
        let t = Instant::now();
        loop {
            let now = (self.created.load(SeqCst), self.dropped.load(SeqCst));
            if now.0 == now.1 {
                thread::sleep(Duration::from_millis(20));
                if (self.created.load(SeqCst), self.dropped.load(SeqCst)) == now {
                    return now;
                }
            } else if t.elapsed() > bound {
                return now;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A value that counts its creation and its drops, and panics in `Drop` when armed (`bomb`).
/// It does not panic while its thread is already unwinding (that would be an abort, which no
/// library can prevent).
struct Tracked {
    idx: usize,
    counts: Arc<Counts>,
    bomb: bool,
}

impl Tracked {
    fn new(idx: usize, counts: &Arc<Counts>, bomb: bool) -> Tracked {
        counts.created.fetch_add(1, SeqCst);
        Tracked {
            idx,
            counts: counts.clone(),
            bomb,
        }
    }

    /// Disarms the bomb and drops the value (counted); returns its index.
    fn disarm(mut self) -> usize {
        self.bomb = false;
        self.idx
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, SeqCst);
        if self.bomb && !thread::panicking() {
            panic!("fault injection: Tracked #{} panics in Drop", self.idx);
        }
    }
}

/// A panic payload whose own Drop panics (`std::panic::panic_any(PayloadThatPanicsOnDrop)`).
struct PayloadThatPanicsOnDrop;

impl Drop for PayloadThatPanicsOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("fault injection: a panic payload panics in Drop");
        }
    }
}

/// A tiny xorshift64 generator (no extra dependency).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Per-index call counters for "every item exactly once" checks.
fn call_counters(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

/// Asserts every counter is exactly 1, then resets them all to 0 for the next run.
fn assert_each_ran_once(calls: &[AtomicUsize], what: &str) {
    for (i, c) in calls.iter().enumerate() {
        let k = c.swap(0, SeqCst);
        assert_eq!(k, 1, "{what}: item {i} ran {k} times (want exactly once)");
    }
}

// =============================================================================================
// Child processes

/// Names the case a child process runs (see [`child_process_entry`]).
const CHILD_MODE_ENV: &str = "PARVIEW_FAULTS_CHILD_MODE";

/// Printed by a child that passed.
const CHILD_OK: &str = "PARVIEW-FAULTS-CHILD-OK";

/// Bound on one child process.
const CHILD_SECS: u64 = 45;

/// Entry point of the child processes: does nothing unless [`CHILD_MODE_ENV`] is set (it is
/// ignored in ordinary runs anyway).
#[test]
#[ignore = "entry point of the child processes started by the child-process tests"]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE_ENV) else {
        return;
    };
    match mode.as_str() {
        "builder_workers_too_large" => child_builder_workers_too_large(),
        "env_workers_too_large" => child_env_workers_too_large(),
        "huge_reduce" => child_huge_reduce(),
        "unallocatable_valid_length" => child_unallocatable_valid_length(),
        other => panic!("unknown child mode {other:?}"),
    }
    println!("{CHILD_OK} {mode}");
}

/// Re-runs this test binary as a child in `mode` (with `env` added) and asserts that it
/// reported success within [`CHILD_SECS`]; on failure the message carries the child's exit
/// status (e.g. `signal: 6 (SIGABRT)` for an abort) and the tail of its output.
fn assert_child_passes(mode: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE_ENV, mode)
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child process");
    let reader = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(CHILD_SECS);
    let status: Option<ExitStatus> = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let tail: Vec<&str> = err
        .lines()
        .chain(out.lines())
        .map(|l| l.strip_prefix("test child_process_entry ... ").unwrap_or(l))
        .filter(|l| {
            !l.trim().is_empty() && !l.starts_with("running ") && !l.starts_with("test result")
        })
        .collect();
    let tail = tail[tail.len().saturating_sub(12)..].join("\n    ");
    let Some(status) = status else {
        panic!("child `{mode}` HUNG (killed after {CHILD_SECS} s); its output:\n    {tail}");
    };
    assert!(
        status.success() && out.contains(&format!("{CHILD_OK} {mode}")),
        "child `{mode}` failed ({status}); its output:\n    {tail}"
    );
}

// =============================================================================================
// 1. Panicking Drops never kill an engine; everything else is dropped exactly once

/// Items of the drop-panic maps.
const DROP_N: u64 = 64;
/// The result (or input) whose Drop panics.
const BOMB: usize = 5;
/// The item that panics so that a blocking map fails and parview drops the written results.
const FAILING_ITEM: u64 = 40;

/// Result of item `i` in the blocking maps: item [`FAILING_ITEM`] panics, result [`BOMB`]
/// panics when dropped.
fn bomb_result(i: u64, counts: &Arc<Counts>) -> Tracked {
    if i == FAILING_ITEM {
        panic!("fault injection: item {i} panics so that the map fails");
    }
    Tracked::new(i as usize, counts, i as usize == BOMB)
}

/// Runs a blocking map (`run`) whose item [`FAILING_ITEM`] panics and whose result [`BOMB`]
/// panics when parview drops it, on pools of 1, 2 and 3 engines, a few rounds each: the call
/// must fail (panic), every result created must be dropped exactly once, and every engine must
/// still work afterwards.
fn blocking_map_drop_panic_case(view: &str, run: impl Fn(&Pool, &Arc<Counts>) -> Vec<Tracked>) {
    for workers in [1, 2, 3] {
        let pool = pool(workers);
        for round in 0..3 {
            let ctx = format!("{view}, {workers} engine(s), round {round}");
            stage(&ctx);
            let counts = Counts::new();
            match catch(|| run(&pool, &counts)) {
                Ok(v) => {
                    let n = v.len();
                    v.into_iter().for_each(|t| {
                        t.disarm();
                    });
                    panic!(
                        "{ctx}: the map returned {n} results although item {FAILING_ITEM} panicked"
                    );
                }
                Err(_message) => {} // the map fails: by the item's panic or the Drop's, either is fine
            }
            let (created, dropped) = counts.settle(Duration::from_secs(5));
            assert_eq!(created, DROP_N as usize - 1, "{ctx}: results created");
            assert_eq!(
                dropped, created,
                "{ctx}: every result created must be dropped exactly once"
            );
            assert_pool_works(&pool, &ctx);
        }
    }
}

#[test]
fn drop_panic_in_result_par_map_does_not_kill_engine() {
    watchdog(
        "drop_panic_in_result_par_map_does_not_kill_engine",
        WATCHDOG_SECS,
        || {
            blocking_map_drop_panic_case("pool.par_map", |pool, counts| {
                pool.par_map(0..DROP_N, |i| bomb_result(i, counts))
            });
        },
    );
}

#[test]
fn drop_panic_in_result_lb_map_does_not_kill_engine() {
    watchdog(
        "drop_panic_in_result_lb_map_does_not_kill_engine",
        WATCHDOG_SECS,
        || {
            for schedule in common::SCHEDULES {
                blocking_map_drop_panic_case(&format!("lb.map {schedule:?}"), |pool, counts| {
                    pool.load_balanced()
                        .schedule(schedule)
                        .map(0..DROP_N, |i| bomb_result(i, counts))
                });
            }
        },
    );
}

#[test]
fn drop_panic_in_result_dv_map_does_not_kill_engine() {
    watchdog(
        "drop_panic_in_result_dv_map_does_not_kill_engine",
        WATCHDOG_SECS,
        || {
            blocking_map_drop_panic_case("dv.map", |pool, counts| {
                pool.direct().map(0..DROP_N, |i| bomb_result(i, counts))
            });
            blocking_map_drop_panic_case("dv.map on the last engine", |pool, counts| {
                let last = pool.workers() - 1;
                pool.direct_to(&[last])
                    .expect("engine exists")
                    .map(0..DROP_N, |i| bomb_result(i, counts))
            });
        },
    );
}

/// Which async view a case uses.
#[derive(Clone, Copy, Debug)]
enum AsyncView {
    LoadBalanced,
    Direct,
}

const ASYNC_VIEWS: [AsyncView; 2] = [AsyncView::LoadBalanced, AsyncView::Direct];

/// Starts `map_async(input, f)` on the given view of `pool` (load-balanced with `Dynamic(1)`,
/// or a DirectView on every engine).
fn start_async<T, R, F>(pool: &Pool, view: AsyncView, input: Vec<T>, f: F) -> AsyncResult<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    match view {
        AsyncView::LoadBalanced => pool
            .load_balanced()
            .schedule(Schedule::Dynamic(1))
            .map_async(input, f),
        AsyncView::Direct => pool.direct().map_async(input, f),
    }
}

/// Slow items for async maps that must still be running when dropped or aborted.
const SLOW_N: usize = 2000;
const SLOW_ITEM: Duration = Duration::from_micros(200);

/// Waits until `counter` reaches `k` (bounded), so that a later abort hits a map that has
/// run items (and written results) but is still running. Counting items in the closure keeps
/// this independent of how often the map reports progress.
fn wait_items(counter: &AtomicUsize, k: usize, ctx: &str) {
    assert!(
        wait_until(READY_BOUND, || counter.load(SeqCst) >= k),
        "{ctx}: the map ran only {} items",
        counter.load(SeqCst)
    );
}

/// Takes the outcome of `get` on an aborted map of [`Tracked`] results: results handed to the
/// user are disarmed; an error or even a panic (the bomb going off inside `get`) is accepted.
fn consume_tracked_outcome(r: Result<Result<Vec<Tracked>, parview::MapError>, String>) {
    if let Ok(Ok(v)) = r {
        v.into_iter().for_each(|t| {
            t.disarm();
        });
    }
}

#[test]
fn drop_panic_in_result_async_dropped_unread_after_finish() {
    watchdog(
        "drop_panic_in_result_async_dropped_unread_after_finish",
        WATCHDOG_SECS,
        || {
            for view in ASYNC_VIEWS {
                for workers in [1, 2] {
                    let pool = pool(workers);
                    for round in 0..3 {
                        let ctx = format!("{view:?} map_async, {workers} engine(s), round {round}");
                        stage(&ctx);
                        let counts = Counts::new();
                        let c = counts.clone();
                        let input: Vec<usize> = (0..DROP_N as usize).collect();
                        let ar = start_async(&pool, view, input, move |i| {
                            Tracked::new(i, &c, i == BOMB)
                        });
                        assert!(ar.wait_timeout(READY_BOUND), "{ctx}: never ready");
                        let _ = catch(move || drop(ar)); // the bomb may go off right here: fine
                        let (created, dropped) = counts.settle(Duration::from_secs(5));
                        assert_eq!(created, DROP_N as usize, "{ctx}: results created");
                        assert_eq!(dropped, created, "{ctx}: every result dropped exactly once");
                        assert_pool_works(&pool, &ctx);
                    }
                }
            }
        },
    );
}

#[test]
fn drop_panic_in_result_async_dropped_unread_while_running() {
    watchdog(
        "drop_panic_in_result_async_dropped_unread_while_running",
        WATCHDOG_SECS,
        || {
            for view in ASYNC_VIEWS {
                for workers in [1, 2] {
                    let pool = pool(workers);
                    for round in 0..3 {
                        let ctx = format!(
                            "{view:?} map_async dropped while running, {workers} engine(s), round {round}"
                        );
                        stage(&ctx);
                        let counts = Counts::new();
                        let c = counts.clone();
                        let input: Vec<usize> = (0..SLOW_N).collect();
                        let ar = start_async(&pool, view, input, move |i| {
                            thread::sleep(SLOW_ITEM);
                            Tracked::new(i, &c, i == BOMB)
                        });
                        wait_items(&counts.created, 20, &ctx);
                        // Dropping an unfinished AsyncResult aborts the map; the written results
                        // (the bomb among them) are dropped by parview, maybe on an engine.
                        let _ = catch(move || drop(ar));
                        let (created, dropped) = counts.settle(Duration::from_secs(10));
                        assert!(
                            created > BOMB,
                            "{ctx}: the bomb was never created ({created})"
                        );
                        assert_eq!(dropped, created, "{ctx}: every result dropped exactly once");
                        assert_pool_works(&pool, &ctx);
                    }
                }
            }
        },
    );
}

#[test]
fn drop_panic_in_result_async_aborted_then_get() {
    watchdog(
        "drop_panic_in_result_async_aborted_then_get",
        WATCHDOG_SECS,
        || {
            for view in ASYNC_VIEWS {
                for workers in [1, 2] {
                    let pool = pool(workers);
                    for round in 0..3 {
                        let ctx = format!(
                            "{view:?} map_async aborted, {workers} engine(s), round {round}"
                        );
                        stage(&ctx);
                        let counts = Counts::new();
                        let c = counts.clone();
                        let input: Vec<usize> = (0..SLOW_N).collect();
                        let ar = start_async(&pool, view, input, move |i| {
                            thread::sleep(SLOW_ITEM);
                            Tracked::new(i, &c, i == BOMB)
                        });
                        wait_items(&counts.created, 20, &ctx);
                        ar.abort();
                        assert!(
                            ar.wait_timeout(READY_BOUND),
                            "{ctx}: not ready {READY_BOUND:?} after abort"
                        );
                        let (done, total) = ar.progress();
                        assert!(
                            done <= total && total == SLOW_N,
                            "{ctx}: progress {done}/{total}"
                        );
                        consume_tracked_outcome(catch(move || ar.get()));
                        let (created, dropped) = counts.settle(Duration::from_secs(10));
                        assert!(
                            created > BOMB,
                            "{ctx}: the bomb was never created ({created})"
                        );
                        assert_eq!(dropped, created, "{ctx}: every result dropped exactly once");
                        assert_pool_works(&pool, &ctx);
                    }
                }
            }
        },
    );
}

/// Owned input of [`SLOW_N`] [`Tracked`] values whose last one panics when dropped; the map is
/// stopped early (abort then get, or drop of the unfinished AsyncResult), so parview releases
/// the untaken inputs, the bomb among them.
fn owned_input_drop_panic_case(name: &str, abort_then_get: bool) {
    for view in ASYNC_VIEWS {
        for workers in [1, 2] {
            let pool = pool(workers);
            for round in 0..3 {
                let ctx = format!("{name}: {view:?}, {workers} engine(s), round {round}");
                stage(&ctx);
                let counts = Counts::new();
                let input: Vec<Tracked> = (0..SLOW_N)
                    .map(|i| Tracked::new(i, &counts, i == SLOW_N - 1))
                    .collect();
                let ran = Arc::new(AtomicUsize::new(0));
                let r = ran.clone();
                let ar = start_async(&pool, view, input, move |t: Tracked| {
                    r.fetch_add(1, SeqCst);
                    thread::sleep(SLOW_ITEM);
                    t.idx // `t` is dropped here, inside the item
                });
                wait_items(&ran, 5, &ctx);
                if abort_then_get {
                    ar.abort();
                    assert!(
                        ar.wait_timeout(READY_BOUND),
                        "{ctx}: not ready {READY_BOUND:?} after abort"
                    );
                    let (done, total) = ar.progress();
                    assert!(
                        done <= total && total == SLOW_N,
                        "{ctx}: progress {done}/{total}"
                    );
                    let _ = catch(move || ar.get());
                } else {
                    let _ = catch(move || drop(ar));
                }
                let (created, dropped) = counts.settle(Duration::from_secs(10));
                assert_eq!(created, SLOW_N, "{ctx}: inputs created");
                assert_eq!(
                    dropped, SLOW_N,
                    "{ctx}: every input must be dropped exactly once (taken or released)"
                );
                assert_pool_works(&pool, &ctx);
            }
        }
    }
}

#[test]
fn drop_panic_in_owned_input_released_after_abort() {
    watchdog(
        "drop_panic_in_owned_input_released_after_abort",
        WATCHDOG_SECS,
        || owned_input_drop_panic_case("abort then get", true),
    );
}

#[test]
fn drop_panic_in_owned_input_released_when_async_result_dropped() {
    watchdog(
        "drop_panic_in_owned_input_released_when_async_result_dropped",
        WATCHDOG_SECS,
        || owned_input_drop_panic_case("unfinished AsyncResult dropped", false),
    );
}

/// Runs `call` (which raises a [`PayloadThatPanicsOnDrop`] somewhere) a few times on pools of
/// 1 and 2 engines: it must return (an error or a panic is fine) and the pool must still work.
fn payload_drop_panic_case(view: &str, call: impl Fn(&Pool)) {
    for workers in [1, 2] {
        let pool = pool(workers);
        for round in 0..3 {
            let ctx = format!("{view}, {workers} engine(s), round {round}");
            stage(&ctx);
            let _ = catch(|| call(&pool));
            assert_pool_works(&pool, &ctx);
        }
    }
}

#[test]
fn drop_panic_in_panic_payload_dv_apply_does_not_kill_engine() {
    watchdog(
        "drop_panic_in_panic_payload_dv_apply_does_not_kill_engine",
        WATCHDOG_SECS,
        || {
            payload_drop_panic_case("dv.apply", |pool| {
                pool.direct().apply(|e| {
                    if e == 0 {
                        panic::panic_any(PayloadThatPanicsOnDrop);
                    }
                    e
                });
            });
        },
    );
}

#[test]
fn drop_panic_in_panic_payload_lb_map_does_not_kill_engine() {
    watchdog(
        "drop_panic_in_panic_payload_lb_map_does_not_kill_engine",
        WATCHDOG_SECS,
        || {
            // Slow items, so that engines join the calling thread, and several bombs, so
            // that engines (not only the caller) catch one.
            payload_drop_panic_case("lb.map", |pool| {
                pool.load_balanced()
                    .schedule(Schedule::Dynamic(1))
                    .map(0..32u64, |i| {
                        thread::sleep(Duration::from_micros(300));
                        if i % 4 == 3 {
                            panic::panic_any(PayloadThatPanicsOnDrop);
                        }
                        i
                    });
            });
        },
    );
}

#[test]
fn drop_panic_in_panic_payload_lb_submit_does_not_kill_engine() {
    watchdog(
        "drop_panic_in_panic_payload_lb_submit_does_not_kill_engine",
        WATCHDOG_SECS,
        || {
            payload_drop_panic_case("lb.submit", |pool| {
                let ar = pool
                    .load_balanced()
                    .submit(|| -> u64 { panic::panic_any(PayloadThatPanicsOnDrop) });
                assert!(ar.wait_timeout(READY_BOUND), "submit never became ready");
                let r = ar.get();
                assert!(r.is_err(), "a panicking task must not give a value");
            });
        },
    );
}

/// Lengths of the two owned Vecs zipped in the zip cases (unequal, either side longer, empty).
const ZIP_LENGTHS: [(usize, usize); 5] = [(10, 17), (17, 10), (0, 5), (5, 0), (33, 34)];

/// Zips two owned Vecs of [`Tracked`] of lengths `la`, `lb`, runs `run` on them, and checks
/// that every element of both was dropped exactly once when the call returned (or panicked).
fn zip_drop_case(
    ctx: &str,
    la: usize,
    lb: usize,
    run: impl FnOnce(Vec<Tracked>, Vec<Tracked>) -> Vec<usize>,
) -> Result<Vec<usize>, String> {
    let (ca, cb) = (Counts::new(), Counts::new());
    let a: Vec<Tracked> = (0..la).map(|i| Tracked::new(i, &ca, false)).collect();
    let b: Vec<Tracked> = (0..lb).map(|i| Tracked::new(i, &cb, false)).collect();
    let r = catch(|| run(a, b));
    let (_, da) = ca.settle(Duration::from_secs(5));
    let (_, db) = cb.settle(Duration::from_secs(5));
    assert_eq!(
        (da, db),
        (la, lb),
        "{ctx}: zip of owned Vecs of lengths ({la}, {lb}): elements dropped (a, b) must be ({la}, {lb})"
    );
    r
}

/// The item function of the zip cases: consumes both elements; item `panic_at` panics.
fn zip_item(a: Tracked, b: Tracked, panic_at: Option<usize>) -> usize {
    assert_eq!(a.idx, b.idx, "zip walks both inputs in step");
    if Some(a.idx) == panic_at {
        panic!("fault injection: zip item {} panics", a.idx);
    }
    a.idx + b.idx
}

#[test]
fn zip_owned_vecs_unequal_len_dv_map_drops_each_once() {
    watchdog(
        "zip_owned_vecs_unequal_len_dv_map_drops_each_once",
        WATCHDOG_SECS,
        || {
            for workers in [1, 2, 3] {
                let pool = pool(workers);
                for (la, lb) in ZIP_LENGTHS {
                    for panic_at in [None, Some(2)] {
                        let ctx = format!("dv.map, {workers} engine(s), panic at {panic_at:?}");
                        stage(&ctx);
                        let r = zip_drop_case(&ctx, la, lb, |a, b| {
                            pool.direct().map((a, b), |(x, y)| zip_item(x, y, panic_at))
                        });
                        let n = la.min(lb);
                        match (r, panic_at) {
                            (Ok(v), None) => {
                                assert_eq!(v, (0..n).map(|i| 2 * i).collect::<Vec<_>>(), "{ctx}")
                            }
                            (Err(m), Some(k)) if k < n => {
                                assert!(m.contains("item 2"), "{ctx}: panic message {m:?}")
                            }
                            (r, _) if panic_at.is_some_and(|k| k >= n) => {
                                assert!(r.is_ok(), "{ctx}: {r:?}")
                            }
                            (r, _) => panic!("{ctx}: unexpected outcome {r:?}"),
                        }
                    }
                }
                assert_pool_works(&pool, "after the dv.map zip cases");
            }
        },
    );
}

#[test]
fn zip_owned_vecs_unequal_len_dv_map_with_drops_each_once() {
    watchdog(
        "zip_owned_vecs_unequal_len_dv_map_with_drops_each_once",
        WATCHDOG_SECS,
        || {
            for workers in [1, 2, 3] {
                let pool = pool(workers);
                let dv = pool.direct();
                let seen = dv.init(|_| 0usize);
                for (la, lb) in ZIP_LENGTHS {
                    for panic_at in [None, Some(2)] {
                        let ctx =
                            format!("dv.map_with, {workers} engine(s), panic at {panic_at:?}");
                        stage(&ctx);
                        let r = zip_drop_case(&ctx, la, lb, |a, b| {
                            dv.map_with_state(&seen, (a, b), |count, (x, y)| {
                                *count += 1;
                                zip_item(x, y, panic_at)
                            })
                        });
                        let n = la.min(lb);
                        if panic_at.is_none_or(|k| k >= n) {
                            assert_eq!(r, Ok((0..n).map(|i| 2 * i).collect::<Vec<_>>()), "{ctx}");
                        } else {
                            assert!(r.is_err(), "{ctx}: item 2 panicked but the map returned");
                        }
                    }
                }
                assert_pool_works(&pool, "after the dv.map_with zip cases");
            }
        },
    );
}

#[test]
fn zip_owned_vecs_unequal_len_other_maps_drop_each_once() {
    watchdog(
        "zip_owned_vecs_unequal_len_other_maps_drop_each_once",
        WATCHDOG_SECS,
        || {
            for workers in [1, 2] {
                let pool = pool(workers);
                for (la, lb) in ZIP_LENGTHS {
                    let n = la.min(lb);
                    let want: Vec<usize> = (0..n).map(|i| 2 * i).collect();
                    let ctx = format!("pool.par_map, {workers} engine(s)");
                    stage(&ctx);
                    let r = zip_drop_case(&ctx, la, lb, |a, b| {
                        pool.par_map((a, b), |(x, y)| zip_item(x, y, None))
                    });
                    assert_eq!(r.as_ref(), Ok(&want), "{ctx}");
                    let ctx = format!("lb.map Dynamic(3), {workers} engine(s)");
                    stage(&ctx);
                    let r = zip_drop_case(&ctx, la, lb, |a, b| {
                        pool.load_balanced()
                            .schedule(Schedule::Dynamic(3))
                            .map((a, b), |(x, y)| zip_item(x, y, None))
                    });
                    assert_eq!(r.as_ref(), Ok(&want), "{ctx}");
                    for view in ASYNC_VIEWS {
                        let ctx = format!("{view:?} map_async, {workers} engine(s)");
                        stage(&ctx);
                        let r = zip_drop_case(&ctx, la, lb, |a, b| {
                            let ar = match view {
                                AsyncView::LoadBalanced => pool
                                    .load_balanced()
                                    .map_async((a, b), |(x, y)| zip_item(x, y, None)),
                                AsyncView::Direct => pool
                                    .direct()
                                    .map_async((a, b), |(x, y)| zip_item(x, y, None)),
                            };
                            assert!(ar.wait_timeout(READY_BOUND), "never ready");
                            // Inputs an engine still holds are waited for by the settle.
                            ar.get().expect("map_async")
                        });
                        assert_eq!(r.as_ref(), Ok(&want), "{ctx}");
                    }
                }
            }
        },
    );
}

// =============================================================================================
// 2. Waits on an engine thread run that engine's own pending work

/// Runs `wait_inside(pool)` inside a DirectView job on every engine of pools of 1 and 2
/// engines (every engine is then busy waiting), a few rounds; each must return `want`.
fn engine_wait_case<R>(what: &str, want: R, wait_inside: impl Fn(&Pool) -> R + Sync)
where
    R: Send + PartialEq + std::fmt::Debug + Clone,
{
    for workers in [1, 2] {
        let pool = pool(workers);
        for round in 0..5 {
            stage(format!(
                "{what} inside dv.apply, {workers} engine(s), round {round}"
            ));
            let got = pool.direct().apply(|_| wait_inside(&pool));
            assert_eq!(
                got,
                vec![want.clone(); workers],
                "{what} inside dv.apply, {workers} engine(s), round {round}"
            );
        }
        assert_pool_works(&pool, what);
    }
}

#[test]
fn engine_wait_submit_get_runs_own_work() {
    watchdog(
        "engine_wait_submit_get_runs_own_work",
        QUICK_WATCHDOG_SECS,
        || {
            engine_wait_case("lb.submit(..).get()", 42u64, |pool| {
                pool.load_balanced()
                    .submit(|| 6 * 7u64)
                    .get()
                    .expect("submit")
            })
        },
    );
}

#[test]
fn engine_wait_map_async_get_runs_own_work() {
    watchdog(
        "engine_wait_map_async_get_runs_own_work",
        QUICK_WATCHDOG_SECS,
        || {
            engine_wait_case("lb.map_async(..).get()", 9900u64, |pool| {
                let v = pool
                    .load_balanced()
                    .map_async(0..100u64, |i| 2 * i)
                    .get()
                    .expect("map_async");
                v.iter().sum::<u64>()
            })
        },
    );
}

#[test]
fn engine_wait_imap_runs_own_work() {
    watchdog(
        "engine_wait_imap_runs_own_work",
        QUICK_WATCHDOG_SECS,
        || {
            engine_wait_case("lb.imap(..).count()", 100usize, |pool| {
                let mut next = 0u64;
                pool.load_balanced()
                    .imap(0..100u64, |i| i)
                    .map(|r| {
                        assert_eq!(r.expect("imap item"), next, "imap keeps input order");
                        next += 1;
                    })
                    .count()
            })
        },
    );
}

#[test]
fn engine_wait_imap_unordered_runs_own_work() {
    watchdog(
        "engine_wait_imap_unordered_runs_own_work",
        QUICK_WATCHDOG_SECS,
        || {
            engine_wait_case("lb.imap_unordered(..).count()", 100usize, |pool| {
                pool.load_balanced()
                    .imap_unordered(0..100u64, |i| i)
                    .map(|(i, r)| assert_eq!(r.expect("imap_unordered item"), i as u64))
                    .count()
            })
        },
    );
}

#[test]
fn engine_wait_timeout_runs_own_work() {
    watchdog(
        "engine_wait_timeout_runs_own_work",
        QUICK_WATCHDOG_SECS,
        || {
            engine_wait_case("ar.wait_timeout(5 s) on a submit", true, |pool| {
                let ar = pool.load_balanced().submit(|| 7u64);
                ar.wait_timeout(Duration::from_secs(5))
            });
            engine_wait_case("ar.wait_timeout(5 s) on a map_async", true, |pool| {
                let ar = pool.load_balanced().map_async(0..50u64, |i| i);
                ar.wait_timeout(Duration::from_secs(5))
            });
        },
    );
}

#[test]
fn cross_pool_cycle_direct_apply_finishes() {
    watchdog(
        "cross_pool_cycle_direct_apply_finishes",
        QUICK_WATCHDOG_SECS,
        || {
            let (a, b) = (pool(1), pool(1));
            for round in 0..10 {
                stage(format!("A -> B -> A, round {round}"));
                // A's engine waits on B's engine, which waits on A's engine.
                let got = a
                    .direct()
                    .apply(|_| b.direct().apply(|_| a.direct().apply(|e| e + 10)[0])[0]);
                assert_eq!(got, vec![10], "A -> B -> A, round {round}");
            }
            assert_pool_works(&a, "pool A after the cycles");
            assert_pool_works(&b, "pool B after the cycles");
        },
    );
}

#[test]
fn cross_pool_cycle_through_global_pool_finishes() {
    watchdog(
        "cross_pool_cycle_through_global_pool_finishes",
        QUICK_WATCHDOG_SECS,
        || {
            let a = pool(1);
            let off_a = AtomicUsize::new(0);
            for round in 0..10 {
                stage(format!("A -> global par_map -> A, round {round}"));
                // A's engine waits on a global-pool map whose items wait on A's engine. Items
                // that A's engine runs itself (it is the map's caller) are short, and its nested
                // wait runs its own mailbox, which would hide the cycle; items on the global
                // pool's engines wait long enough that the caller has run out of items and is
                // waiting on the map when their DirectView job reaches A's engine.
                let got = a.direct().apply(|_| {
                    parview::Pool::global()
                        .schedule(Schedule::Dynamic(1))
                        .map(0..64u64, |i| {
                            if a.current_engine().is_some() {
                                thread::sleep(Duration::from_micros(200));
                            } else {
                                off_a.fetch_add(1, SeqCst);
                                thread::sleep(Duration::from_millis(30));
                            }
                            a.direct().apply(|e| e as u64 + i)[0]
                        })
                });
                assert_eq!(
                    got,
                    vec![(0..64u64).collect::<Vec<_>>()],
                    "A -> global par_map -> A, round {round}"
                );
            }
            assert!(
                off_a.load(SeqCst) > 0,
                "the global pool's engines never took an item: the cycle was not exercised"
            );
            assert_pool_works(&a, "pool A after the cycles");
        },
    );
}

// =============================================================================================
// 3. Bounded helping

/// Tasks in the bounded-helping tests.
const HELPING_TASKS: usize = 3000;

#[test]
fn bounded_helping_tasks_waiting_on_busy_engine_zero() {
    watchdog(
        "bounded_helping_tasks_waiting_on_busy_engine_zero",
        WATCHDOG_SECS,
        || {
            let pool = leaked_pool(2);
            let lb = pool.load_balanced();
            let t = Instant::now();
            // Every task waits on a DirectView job for engine 0, which is itself busy running
            // (and waiting in) such tasks: a waiting engine that helps by running the next task
            // nests one wait per task unless helping is bounded.
            let ars: Vec<AsyncResult<usize>> = (0..HELPING_TASKS)
                .map(|k| {
                    lb.submit(move || {
                        let on = pool.direct_to(&[0]).expect("engine 0").apply(|e| e);
                        on[0] + k
                    })
                })
                .collect();
            for (k, ar) in ars.into_iter().enumerate() {
                stage(format!("waiting for task {k} of {HELPING_TASKS}"));
                assert!(
                    ar.wait_timeout(Duration::from_secs(30)),
                    "task {k} never finished"
                );
                assert_eq!(ar.get().expect("task"), k, "task {k}");
            }
            eprintln!(
                "{HELPING_TASKS} tasks waiting on engine 0 took {:?}",
                t.elapsed()
            );
            assert_pool_works(pool, "after the helping storm");
        },
    );
}

#[test]
fn bounded_helping_tasks_waiting_on_slow_async_result() {
    watchdog(
        "bounded_helping_tasks_waiting_on_slow_async_result",
        WATCHDOG_SECS,
        || {
            let pool = leaked_pool(2);
            let lb = pool.load_balanced();
            let t = Instant::now();
            // One slow task occupies an engine; thousands of tasks wait on its AsyncResult.
            let slow = Arc::new(lb.submit(|| {
                thread::sleep(Duration::from_millis(300));
                7usize
            }));
            let ars: Vec<AsyncResult<usize>> = (0..HELPING_TASKS)
                .map(|k| {
                    let slow = slow.clone();
                    lb.submit(move || {
                        assert!(
                            slow.wait_timeout(Duration::from_secs(30)),
                            "the slow task never finished"
                        );
                        k
                    })
                })
                .collect();
            for (k, ar) in ars.into_iter().enumerate() {
                stage(format!("waiting for task {k} of {HELPING_TASKS}"));
                assert!(
                    ar.wait_timeout(Duration::from_secs(40)),
                    "task {k} never finished"
                );
                assert_eq!(ar.get().expect("task"), k, "task {k}");
            }
            assert!(slow.ready(), "the slow task is done");
            eprintln!(
                "{HELPING_TASKS} tasks waiting on a slow task took {:?}",
                t.elapsed()
            );
            assert_pool_works(pool, "after the helping storm");
        },
    );
}

// =============================================================================================
// 4. Arithmetic at the edges

/// Schedules whose chunk size is near `usize::MAX`.
const HUGE_CHUNK_SCHEDULES: [Schedule; 9] = [
    Schedule::Dynamic(usize::MAX),
    Schedule::Dynamic(usize::MAX - 1),
    Schedule::Dynamic(usize::MAX / 2 + 1),
    Schedule::StaticChunked(usize::MAX),
    Schedule::StaticChunked(usize::MAX - 1),
    Schedule::StaticChunked(usize::MAX / 2 + 1),
    Schedule::Guided(usize::MAX),
    Schedule::Guided(usize::MAX - 1),
    Schedule::Guided(usize::MAX / 2 + 1),
];

/// Small input lengths for the huge-chunk schedules.
const SMALL_LENGTHS: [usize; 7] = [0, 1, 2, 3, 5, 37, 1000];

#[test]
fn edge_huge_chunk_schedule_plans_cover_every_index_once() {
    watchdog(
        "edge_huge_chunk_schedule_plans_cover_every_index_once",
        QUICK_WATCHDOG_SECS,
        || {
            for s in HUGE_CHUNK_SCHEDULES {
                for parts in 1..=4 {
                    for n in SMALL_LENGTHS {
                        let ctx = format!("{s:?}.plan({n}, {parts})");
                        stage(&ctx);
                        let chunks: Vec<_> =
                            catch(|| s.plan(n, parts).take(n + 2).collect::<Vec<_>>())
                                .unwrap_or_else(|m| panic!("{ctx} panicked: {m}"));
                        let mut seen = vec![0usize; n];
                        for (slot, r) in &chunks {
                            assert!(slot.is_none_or(|k| k < parts), "{ctx}: slot {slot:?}");
                            assert!(r.start <= r.end && r.end <= n, "{ctx}: chunk {r:?}");
                            for i in r.clone() {
                                seen[i] += 1;
                            }
                        }
                        assert!(
                            seen.iter().all(|&k| k == 1),
                            "{ctx}: every index exactly once, got chunks {chunks:?}"
                        );
                    }
                }
            }
        },
    );
}

#[test]
fn edge_huge_chunk_schedules_run_every_item_exactly_once() {
    watchdog(
        "edge_huge_chunk_schedules_run_every_item_exactly_once",
        WATCHDOG_SECS,
        || {
            for workers in [1, 2, 3] {
                let pool = pool(workers);
                for s in HUGE_CHUNK_SCHEDULES {
                    for n in SMALL_LENGTHS {
                        stage(format!("{s:?}, n={n}, {workers} engine(s)"));
                        let ctx = |what: &str| format!("{what} {s:?}, n={n}, {workers} engine(s)");
                        let want: Vec<usize> = (0..n).collect();
                        let calls = call_counters(n);
                        let count = |i: usize| {
                            calls[i].fetch_add(1, SeqCst);
                            i
                        };

                        assert_eq!(
                            pool.schedule(s).map(0..n, count),
                            want,
                            "{}",
                            ctx("par_map_with")
                        );
                        assert_each_ran_once(&calls, &ctx("par_map_with"));

                        let r = pool
                            .schedule(s)
                            .try_map(0..n, |i| Ok::<_, String>(count(i)));
                        assert_eq!(r, Ok(want.clone()), "{}", ctx("try_par_map_with"));
                        assert_each_ran_once(&calls, &ctx("try_par_map_with"));

                        let mut out = vec![usize::MAX; n];
                        pool.schedule(s).map_into(0..n, &mut out, count);
                        assert_eq!(out, want, "{}", ctx("par_map_into_with"));
                        assert_each_ran_once(&calls, &ctx("par_map_into_with"));

                        let lb = pool.load_balanced().schedule(s);
                        assert_eq!(lb.map(0..n, count), want, "{}", ctx("lb.map"));
                        assert_each_ran_once(&calls, &ctx("lb.map"));

                        let r = lb.return_exceptions().map(0..n, count);
                        assert!(
                            r.iter().enumerate().all(|(i, x)| x == &Ok(i)) && r.len() == n,
                            "{}",
                            ctx("return_exceptions().map")
                        );
                        assert_each_ran_once(&calls, &ctx("return_exceptions().map"));

                        for leaf in [1, 4, usize::MAX] {
                            let sum =
                                pool.schedule(s)
                                    .map_reduce_leaves(leaf, 0..n, count, |a, b| a + b);
                            let want_sum = (n > 0).then(|| n * (n - 1) / 2);
                            assert_eq!(sum, want_sum, "{} leaf {leaf}", ctx("par_map_reduce_with"));
                            assert_each_ran_once(&calls, &ctx("par_map_reduce_with"));
                        }

                        // Async forms need 'static closures.
                        let counted = |c: &Arc<Vec<AtomicUsize>>| {
                            let c = c.clone();
                            move |i: usize| {
                                c[i].fetch_add(1, SeqCst);
                                i
                            }
                        };
                        let ar = lb.map_async(0..n, counted(&calls));
                        assert!(ar.wait_timeout(READY_BOUND), "{} hung", ctx("lb.map_async"));
                        assert_eq!(ar.progress(), (n, n), "{}", ctx("lb.map_async progress"));
                        assert_eq!(ar.get(), Ok(want.clone()), "{}", ctx("lb.map_async"));
                        assert_each_ran_once(&calls, &ctx("lb.map_async"));

                        let got: Vec<usize> = lb
                            .imap(0..n, counted(&calls))
                            .map(|r| r.expect("imap item"))
                            .collect();
                        assert_eq!(got, want, "{}", ctx("lb.imap"));
                        assert_each_ran_once(&calls, &ctx("lb.imap"));

                        let mut got: Vec<usize> = lb
                            .imap_unordered(0..n, counted(&calls))
                            .map(|(i, r)| {
                                assert_eq!(r.as_ref().ok(), Some(&i), "imap_unordered pairs");
                                i
                            })
                            .collect();
                        got.sort_unstable();
                        assert_eq!(got, want, "{}", ctx("lb.imap_unordered"));
                        assert_each_ran_once(&calls, &ctx("lb.imap_unordered"));
                    }
                }
                assert_pool_works(&pool, "after the huge-chunk schedules");
            }
        },
    );
}

/// The absurd engine count of the worker tests.
const TOO_MANY_WORKERS: usize = 99_999_999_999;

#[test]
fn edge_builder_workers_too_large_is_err_naming_value() {
    watchdog(
        "edge_builder_workers_too_large_is_err_naming_value",
        WATCHDOG_SECS,
        || assert_child_passes("builder_workers_too_large", &[]),
    );
}

/// Child: `Pool::builder().workers(99_999_999_999).build()` is an `Err` that names the value.
fn child_builder_workers_too_large() {
    match catch(|| Pool::builder().workers(TOO_MANY_WORKERS).build()) {
        Ok(Ok(p)) => panic!("built a pool of {} engines?", p.workers()),
        Ok(Err(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("99999999999"),
                "the error must name the value 99999999999: {text:?}"
            );
        }
        Err(m) => panic!("build() panicked instead of returning Err: {m}"),
    }
    assert_pool_works(&pool(2), "a normal pool after the refused one");
}

#[test]
fn edge_env_workers_too_large_is_err_naming_value() {
    watchdog(
        "edge_env_workers_too_large_is_err_naming_value",
        WATCHDOG_SECS,
        || {
            assert_child_passes(
                "env_workers_too_large",
                &[("PARVIEW_WORKERS", "99999999999")],
            )
        },
    );
}

/// Child (with `PARVIEW_WORKERS=99999999999`): `Pool::builder().build()` is an `Err` that
/// names the value, and `Pool::new()` panics naming it.
fn child_env_workers_too_large() {
    assert_eq!(
        std::env::var("PARVIEW_WORKERS").as_deref(),
        Ok("99999999999")
    );
    match catch(|| Pool::builder().build()) {
        Ok(Ok(p)) => panic!("built a pool of {} engines?", p.workers()),
        Ok(Err(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("99999999999"),
                "the error must name the value 99999999999: {text:?}"
            );
        }
        Err(m) => panic!("Pool::builder().build() panicked instead of returning Err: {m}"),
    }
    match catch(Pool::new) {
        Ok(p) => panic!("Pool::new() built a pool of {} engines?", p.workers()),
        Err(m) => assert!(
            m.contains("99999999999"),
            "Pool::new()'s panic must name the value 99999999999: {m:?}"
        ),
    }
    assert_pool_works(&pool(2), "an explicit pool after the refused env");
}

/// `u64::MAX` as the length of `0..u64::MAX`, as text.
const U64_MAX_TEXT: &str = "18446744073709551615";
/// The byte size of `u64::MAX` `u64`s, as text (a message may name the size in bytes).
const U64_MAX_BYTES_TEXT: &str = "147573952589676412920";

#[test]
fn edge_unallocatable_output_try_par_map_is_err_without_running_items() {
    watchdog(
        "edge_unallocatable_output_try_par_map_is_err_without_running_items",
        WATCHDOG_SECS,
        || {
            let pool = pool(2);
            let calls = AtomicUsize::new(0);
            let item = |i: u64| {
                calls.fetch_add(1, SeqCst);
                Ok::<u64, String>(i)
            };
            type Try<'a> = Box<dyn Fn(&Pool) -> Result<Vec<u64>, parview::MapError<String>> + 'a>;
            let cases: [(&str, Try<'_>); 2] = [
                (
                    "try_par_map",
                    Box::new(|p| p.try_par_map(0..u64::MAX, item)),
                ),
                (
                    "try_par_map_with(Dynamic(1))",
                    Box::new(|p| p.schedule(Schedule::Dynamic(1)).try_map(0..u64::MAX, item)),
                ),
            ];
            for (what, call) in &cases {
                stage(*what);
                let e = match catch(|| call(&pool)) {
                    Ok(Ok(v)) => panic!("{what}: returned Ok with {} items", v.len()),
                    Ok(Err(e)) => e,
                    Err(m) => {
                        panic!("{what} over 0..u64::MAX panicked instead of returning Err: {m}")
                    }
                };
                let text = e.to_string();
                assert!(
                    text.contains(U64_MAX_TEXT) || text.contains("allocate"),
                    "{what}: the error must mention the length {U64_MAX_TEXT} or the word \"allocate\": {text:?}"
                );
                assert_eq!(calls.load(SeqCst), 0, "{what}: no item may run");
            }
            assert_pool_works(&pool, "after the unallocatable try maps");
        },
    );
}

#[test]
fn edge_unallocatable_output_par_map_panics_naming_size_without_running_items() {
    watchdog(
        "edge_unallocatable_output_par_map_panics_naming_size_without_running_items",
        WATCHDOG_SECS,
        || {
            let pool = pool(2);
            let calls = AtomicUsize::new(0);
            let item = |i: u64| {
                calls.fetch_add(1, SeqCst);
                i
            };
            type Blocking<'a> = Box<dyn Fn(&Pool) -> usize + 'a>;
            let cases: [(&str, Blocking<'_>); 5] = [
                (
                    "pool.par_map",
                    Box::new(|p| p.par_map(0..u64::MAX, item).len()),
                ),
                (
                    "pool.par_map_with(Dynamic(1))",
                    Box::new(|p| {
                        p.schedule(Schedule::Dynamic(1))
                            .map(0..u64::MAX, item)
                            .len()
                    }),
                ),
                (
                    "lb.map",
                    Box::new(|p| p.load_balanced().map(0..u64::MAX, item).len()),
                ),
                (
                    "dv.map",
                    Box::new(|p| p.direct().map(0..u64::MAX, item).len()),
                ),
                (
                    "lb.return_exceptions().map",
                    Box::new(|p| {
                        p.load_balanced()
                            .return_exceptions()
                            .map(0..u64::MAX, item)
                            .len()
                    }),
                ),
            ];
            for (what, call) in &cases {
                stage(*what);
                match catch(|| call(&pool)) {
                    Ok(len) => panic!("{what} over 0..u64::MAX returned {len} results"),
                    Err(m) => assert!(
                        m.contains(U64_MAX_TEXT) || m.contains(U64_MAX_BYTES_TEXT),
                        "{what}: the panic must mention the size ({U64_MAX_TEXT} items): {m:?}"
                    ),
                }
                assert_eq!(calls.load(SeqCst), 0, "{what}: no item may run");
            }
            assert_pool_works(&pool, "after the unallocatable maps");
        },
    );
}

#[test]
fn edge_unallocatable_output_of_valid_length_is_err_not_abort() {
    watchdog(
        "edge_unallocatable_output_of_valid_length_is_err_not_abort",
        WATCHDOG_SECS,
        || assert_child_passes("unallocatable_valid_length", &[]),
    );
}

/// Child: maps of 2^50 `u64` results (8 PiB: a valid `Vec` capacity, but more than any
/// address space) fail cleanly — `try_par_map` with an `Err`, `par_map` with a panic naming
/// the length — without running an item, instead of aborting on the failed allocation.
fn child_unallocatable_valid_length() {
    const N: u64 = 1 << 50;
    let n_text = N.to_string();
    let pool = pool(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let item = move |i: u64| {
        c.fetch_add(1, SeqCst);
        i
    };
    match catch(|| pool.try_par_map(0..N, |i| Ok::<u64, String>(item(i)))) {
        Ok(Ok(v)) => panic!("try_par_map over 0..2^50 returned {} items", v.len()),
        Ok(Err(e)) => {
            let text = e.to_string();
            assert!(
                text.contains(&n_text) || text.contains("allocate"),
                "try_par_map's error must mention the length {n_text} or \"allocate\": {text:?}"
            );
        }
        Err(m) => panic!("try_par_map over 0..2^50 panicked instead of returning Err: {m}"),
    }
    match catch(|| pool.par_map(0..N, item.clone()).len()) {
        Ok(len) => panic!("par_map over 0..2^50 returned {len} results"),
        Err(m) => assert!(
            m.contains(&n_text) || m.contains(&(N * 8).to_string()),
            "par_map's panic must mention the size ({n_text} items): {m:?}"
        ),
    }
    assert_eq!(calls.load(SeqCst), 0, "no item may run");
    // An async map of that size: a clean panic, or an AsyncResult that fails.
    if let Ok(ar) = catch(|| pool.load_balanced().map_async(0..N, item.clone())) {
        ar.abort();
        assert!(
            ar.wait_timeout(READY_BOUND),
            "map_async over 0..2^50 never ready after abort"
        );
        let (done, total) = ar.progress();
        assert!(done <= total, "progress {done}/{total}");
        assert!(ar.get().is_err(), "map_async over 0..2^50 cannot succeed");
    }
    assert_pool_works(&pool, "after the unallocatable maps");
}

#[test]
fn edge_huge_range_reduce_panics_cleanly() {
    watchdog(
        "edge_huge_range_reduce_panics_cleanly",
        WATCHDOG_SECS,
        || assert_child_passes("huge_reduce", &[]),
    );
}

/// Child: `par_map_reduce` and `par_sum` over `0..u64::MAX` and `0..usize::MAX` panic (a clean
/// unwind caught here), never abort; the pools work afterwards.
fn child_huge_reduce() {
    let pool = pool(2);
    let outcomes = [
        (
            "parview::par_map_reduce(0..u64::MAX)",
            catch(|| parview::par_map_reduce(0..u64::MAX, |i| i, u64::wrapping_add).is_some()),
        ),
        (
            "parview::par_sum::<_, u64>(0..u64::MAX)",
            catch(|| parview::par_sum::<_, u64>(0..u64::MAX) > 0),
        ),
        (
            "parview::par_map_reduce(0..usize::MAX)",
            catch(|| parview::par_map_reduce(0..usize::MAX, |i| i, usize::wrapping_add).is_some()),
        ),
        (
            "pool.par_map_reduce(0..u64::MAX)",
            catch(|| {
                pool.par_map_reduce(0..u64::MAX, |i| i, u64::wrapping_add)
                    .is_some()
            }),
        ),
        (
            "pool.par_sum::<_, usize>(0..usize::MAX)",
            catch(|| pool.par_sum::<_, usize>(0..usize::MAX) > 0),
        ),
    ];
    for (what, r) in outcomes {
        match r {
            Ok(_) => panic!("{what} returned instead of panicking"),
            Err(m) => println!("{what} panicked cleanly: {m}"),
        }
    }
    assert_pool_works(&pool, "after the huge reductions");
    assert_pool_works(Pool::global(), "global pool after the huge reductions");
}

/// Starts an async map over `0..u64::MAX` with unit results (no output memory, so it really
/// runs), lets it make progress, aborts it, and checks that it becomes ready within a bound
/// with `done <= total`, that `get` fails, and that the pool still works. The pool is leaked:
/// if the abort does not stop the map, its engines never finish, and dropping the pool would
/// turn this failure into a hang.
fn huge_unit_map_abort_case(what: &str, start: impl Fn(&Pool) -> AsyncResult<Vec<()>>) {
    stage(what);
    let pool = leaked_pool(2);
    let ar = start(pool);
    assert_eq!(ar.progress().1, usize::MAX, "{what}: total");
    wait_until(Duration::from_secs(1), || ar.progress().0 > 0);
    ar.abort();
    assert!(
        ar.wait_timeout(READY_BOUND),
        "{what}: not ready {READY_BOUND:?} after abort (progress {:?})",
        ar.progress()
    );
    let (done, total) = ar.progress();
    assert!(done <= total, "{what}: progress {done}/{total}");
    assert!(
        ar.get().is_err(),
        "{what}: an aborted huge map cannot succeed"
    );
    assert_pool_works(pool, what);
}

#[test]
fn edge_huge_range_lb_map_async_abort_is_ready_with_sane_progress() {
    watchdog(
        "edge_huge_range_lb_map_async_abort_is_ready_with_sane_progress",
        WATCHDOG_SECS,
        || {
            huge_unit_map_abort_case("lb.map_async(0..u64::MAX) Adaptive", |p| {
                p.load_balanced().map_async(0..u64::MAX, |_| ())
            });
            huge_unit_map_abort_case("lb.map_async(0..u64::MAX) Dynamic(1000)", |p| {
                p.load_balanced()
                    .schedule(Schedule::Dynamic(1000))
                    .map_async(0..u64::MAX, |_| ())
            });
        },
    );
}

#[test]
fn edge_huge_range_dv_map_async_abort_is_ready_with_sane_progress() {
    watchdog(
        "edge_huge_range_dv_map_async_abort_is_ready_with_sane_progress",
        WATCHDOG_SECS,
        || {
            // One static block of ~2^63 items per engine: the abort must cut a running block.
            huge_unit_map_abort_case("dv.map_async(0..u64::MAX)", |p| {
                p.direct().map_async(0..u64::MAX, |_| ())
            });
        },
    );
}

#[test]
fn edge_huge_range_unallocatable_map_async_fails_cleanly() {
    watchdog(
        "edge_huge_range_unallocatable_map_async_fails_cleanly",
        WATCHDOG_SECS,
        || {
            let pool = leaked_pool(2);
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            // With u64 results the output cannot be allocated: a clean panic, or an
            // AsyncResult that fails (ready within a bound after an abort).
            match catch(|| {
                pool.load_balanced().map_async(0..u64::MAX, move |i| {
                    c.fetch_add(1, SeqCst);
                    i
                })
            }) {
                Err(_message) => {}
                Ok(ar) => {
                    ar.abort();
                    assert!(
                        ar.wait_timeout(READY_BOUND),
                        "u64 map_async over 0..u64::MAX: not ready after abort"
                    );
                    let (done, total) = ar.progress();
                    assert!(done <= total, "u64 map_async: progress {done}/{total}");
                    assert!(
                        ar.get().is_err(),
                        "u64 map_async over 0..u64::MAX cannot succeed"
                    );
                }
            }
            assert_eq!(calls.load(SeqCst), 0, "no item may run");
            assert_pool_works(pool, "after the unallocatable async map");
        },
    );
}

#[test]
fn edge_huge_range_imap_unordered_consumed_then_dropped() {
    watchdog(
        "edge_huge_range_imap_unordered_consumed_then_dropped",
        WATCHDOG_SECS,
        || {
            for workers in [1, 2] {
                stage(format!("imap_unordered(0..u64::MAX), {workers} engine(s)"));
                let pool = pool(workers);
                let mut it = pool.load_balanced().imap_unordered(0..u64::MAX, |i| i);
                let mut got: Vec<usize> = Vec::new();
                for _ in 0..5 {
                    let (i, r) = it.next().expect("an item of a huge map");
                    assert_eq!(r.expect("item result"), i as u64, "pairs");
                    got.push(i);
                }
                got.sort_unstable();
                got.dedup();
                assert_eq!(got.len(), 5, "each index yielded once: {got:?}");
                let (done, total) = it.progress();
                assert!(
                    done <= total && total == usize::MAX,
                    "progress {done}/{total}"
                );
                drop(it); // aborts the rest
                assert_pool_works(&pool, "after dropping a huge imap_unordered");
            }
        },
    );
}

#[test]
fn edge_huge_range_imap_consumed_then_dropped() {
    watchdog(
        "edge_huge_range_imap_consumed_then_dropped",
        WATCHDOG_SECS,
        || {
            for workers in [1, 2] {
                stage(format!("imap(0..u64::MAX), {workers} engine(s)"));
                let pool = pool(workers);
                // A clean panic (no room to buffer) is acceptable; an abort or hang is not.
                if let Ok(mut it) = catch(|| pool.load_balanced().imap(0..u64::MAX, |i| i)) {
                    for want in 0..5u64 {
                        assert_eq!(it.next().map(|r| r.expect("item")), Some(want), "in order");
                    }
                    let (done, total) = it.progress();
                    assert!(
                        done <= total && total == usize::MAX,
                        "progress {done}/{total}"
                    );
                    drop(it);
                }
                assert_pool_works(&pool, "after a huge imap");
            }
        },
    );
}

#[test]
fn edge_wait_timeout_duration_max_returns_true() {
    watchdog(
        "edge_wait_timeout_duration_max_returns_true",
        QUICK_WATCHDOG_SECS,
        || {
            let pool = pool(2);
            for timeout in [Duration::MAX, Duration::from_secs(u64::MAX)] {
                let ar = pool.load_balanced().map_async(0..10u64, |i| i);
                ar.wait();
                assert_eq!(
                    catch(|| ar.wait_timeout(timeout)),
                    Ok(true),
                    "wait_timeout({timeout:?}) on a finished map"
                );
                let ar = pool.load_balanced().submit(|| {
                    thread::sleep(Duration::from_millis(50));
                    3
                });
                assert_eq!(
                    catch(|| ar.wait_timeout(timeout)),
                    Ok(true),
                    "wait_timeout({timeout:?}) on a running task"
                );
            }
            assert_pool_works(&pool, "after Duration::MAX waits");
        },
    );
}

// =============================================================================================
// 5. Lost wake-ups: soak

/// Upper bound on the calls of one soak test (the time bound usually ends it first).
const SOAK_MAX_CALLS: usize = 2_000_000;

/// `PARVIEW_SOAK_SECS`, default 3.
fn soak_secs() -> u64 {
    std::env::var("PARVIEW_SOAK_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(3)
}

/// Idles for `gap`: sleeps for long gaps, spins for short ones (a sleep overshoots them).
fn idle(gap: Duration) {
    if gap >= Duration::from_micros(100) {
        thread::sleep(gap);
    } else {
        let t = Instant::now();
        while t.elapsed() < gap {
            std::hint::spin_loop();
        }
    }
}

/// Back-to-back `dv.apply`, `lb.submit(..).get()` and `lb.map_async(0..4, ..).get()` in turn on
/// a 2-engine pool, with random idle gaps (0–20 µs, and one in eight 0–400 µs: around the spin
/// window, where a lost wake-up would strand a call), for [`soak_secs`] seconds.
fn soak(name: &'static str, spin: Option<Duration>) {
    let secs = soak_secs();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let note = move || {
        let k = seen.load(SeqCst);
        let op = ["dv.apply", "lb.submit().get()", "lb.map_async().get()"][k % 3];
        format!("{k} calls done, stuck in call {k} ({op}), seed {seed:#x}")
    };
    watchdog_noted(name, 60 + secs, note, move || {
        let mut b = Pool::builder().workers(2);
        if let Some(s) = spin {
            b = b.spin(s);
        }
        let pool = b.build().expect("pool builds");
        let (dv, lb) = (pool.direct(), pool.load_balanced());
        let mut rng = XorShift::new(seed);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut k = 0usize;
        while k < SOAK_MAX_CALLS && Instant::now() < deadline {
            let x = rng.next_u64() >> 8;
            match k % 3 {
                0 => assert_eq!(dv.apply(|e| e as u64 + x), vec![x, x + 1], "call {k}"),
                1 => assert_eq!(
                    lb.submit(move || x ^ 0x5555).get().expect("submit"),
                    x ^ 0x5555,
                    "call {k}"
                ),
                _ => assert_eq!(
                    lb.map_async(0..4u64, move |i| i + x)
                        .get()
                        .expect("map_async"),
                    vec![x, x + 1, x + 2, x + 3],
                    "call {k}"
                ),
            }
            k += 1;
            calls.store(k, SeqCst);
            // Mostly short gaps (many calls; with spin 0 every gap puts the engines to sleep),
            // one in eight anywhere in 0–400 µs (across the default spin window).
            let r = rng.next_u64();
            let gap = if r % 8 == 0 {
                (r >> 3) % 401
            } else {
                (r >> 3) % 21
            };
            idle(Duration::from_micros(gap));
        }
        assert!(
            k >= 30,
            "the soak made only {k} calls in {secs} s (seed {seed:#x})"
        );
        eprintln!("{name}: {k} calls in {secs} s (seed {seed:#x})");
    });
}

#[test]
fn soak_mixed_calls_with_idle_gaps_default_spin() {
    soak("soak_mixed_calls_with_idle_gaps_default_spin", None);
}

#[test]
fn soak_mixed_calls_with_idle_gaps_no_spin() {
    soak(
        "soak_mixed_calls_with_idle_gaps_no_spin",
        Some(Duration::ZERO),
    );
}

// =============================================================================================
// 3b. Bounded helping, by depth: chains of nested waits on one engine.

/// `depth` levels of `submit(..).get()`, each made from inside the previous one's task.
fn submit_chain(pool: &Arc<Pool>, depth: usize) -> Result<usize, parview::MapError> {
    if depth == 0 {
        return Ok(0);
    }
    let p = pool.clone();
    pool.load_balanced()
        .submit(move || submit_chain(&p, depth - 1))
        .get()?
        .map(|d| d + 1)
}

#[test]
fn nested_submit_chain_deeper_than_help_depth_finishes_on_one_engine() {
    watchdog(
        "nested_submit_chain_deeper_than_help_depth_finishes_on_one_engine",
        WATCHDOG_SECS,
        || {
            let pool = Arc::new(pool(1));
            let depth = 3 * parview::HELP_DEPTH;
            // Start the chain on the engine itself, so every level waits on an engine.
            let p = pool.clone();
            let got = pool.direct().apply(move |_| submit_chain(&p, depth));
            assert_eq!(got, vec![Ok(depth)]);
            assert_eq!(pool.direct().apply(|e| e), vec![0], "the engine survived");
        },
    );
}

#[test]
fn blocking_calls_nested_past_the_limit_panic_clearly() {
    watchdog(
        "blocking_calls_nested_past_the_limit_panic_clearly",
        WATCHDOG_SECS,
        || {
            let pool = Arc::new(pool(1));
            let p = pool.clone();
            let depth = parview::MAX_NESTED_WAITS + 10;
            let got = pool.direct().apply(move |_| submit_chain(&p, depth));
            match &got[0] {
                Err(parview::MapError::Panicked { message, .. }) => {
                    assert!(message.contains("MAX_NESTED_WAITS"), "{message}")
                }
                other => panic!("expected a clear panic at the nesting limit, got {other:?}"),
            }
            assert_eq!(pool.direct().apply(|e| e), vec![0], "the engine survived");
        },
    );
}
