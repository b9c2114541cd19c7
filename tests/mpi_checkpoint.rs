//! Checkpointed cluster maps under real `mpirun` (feature `mpi`): the farm's
//! (`FarmView::checkpoint`) and the SPMD cluster's (`ClusterView::checkpoint`), whose logs
//! only rank 0 touches.
//!
//! Each test re-executes this test binary, selecting the single test `ckpt_child` with
//! `PARVIEW_CKPT_CHILD=<mode>:<phase>` and the log's path in `PARVIEW_CKPT_PATH`, under
//! `mpirun -n N` or directly (a local farm). Rank 0 (and for the SPMD mode every rank) prints
//! `RANK r size=s key=value` lines on which the parent asserts; item runs are counted per
//! process and summed over the ranks by the parent. Every child run has a watchdog: after its
//! time limit the whole process group is killed and the test fails (never hangs).
//!
//! What is checked: a map that fails part way (an item panics) and its rerun, with another
//! rank count, computes only the missing item and returns the clean run's bits; logs written
//! locally (`LoadBalancedView::checkpoint`, a local farm), by a farm under `mpirun` and by an
//! SPMD map resume in each other; a log for another input is refused on every rank without a
//! hang and the cluster stays usable; rank 0 killed with SIGKILL mid-map, then resumed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parview::cluster::{
    AbortHandle, Cluster, ClusterCheckpointError, ClusterMapError, Farm, current_rank,
};
use parview::{CheckpointError, MapError, Pool, Schedule};

#[path = "common/mpirun.rs"]
mod mpirun;
use mpirun::{Outcome, child_command, run_within};

const CHILD_VAR: &str = "PARVIEW_CKPT_CHILD";
const PATH_VAR: &str = "PARVIEW_CKPT_PATH";
const CHILD_TEST: &str = "ckpt_child";
const TIMEOUT: Duration = Duration::from_secs(90);

/// Items of every map: `0..N`; the item that panics in a failing run.
const N: u64 = 300;
const FAIL: u64 = 137;
/// In the kill case, rank 0 kills itself on the first item at or past this.
const KILL_AT: u64 = 150;
const NEVER: u64 = u64::MAX;

/// The value of item `x`: a float whose bits a wrong merge would change.
fn value(x: u64) -> f64 {
    (x as f64 * 0.37).sin() * 1e3 + 1.0 / (x as f64 + 1.0)
}

fn items() -> Vec<u64> {
    (0..N).collect()
}

fn clean() -> Vec<u64> {
    items().into_iter().map(|x| value(x).to_bits()).collect()
}

/// Item runs in this process.
static RUNS: AtomicUsize = AtomicUsize::new(0);
/// In the abort case (set on rank 0 only), rank 0's engine aborts the map through `ABORT` on
/// the first item at or past this.
static ABORT_AT: AtomicU64 = AtomicU64::new(NEVER);
static ABORT: OnceLock<AbortHandle> = OnceLock::new();

/// One item: counted, panics at `fail_at`, kills rank 0's process at `kill_at` and past it.
fn item(fail_at: u64, kill_at: u64, sleep_us: u64, x: u64) -> f64 {
    RUNS.fetch_add(1, Ordering::Relaxed);
    if x >= ABORT_AT.load(Ordering::Relaxed) {
        ABORT.get().expect("set with ABORT_AT").abort();
    }
    if x == fail_at {
        panic!("item {x} fails");
    }
    if current_rank() == 0 && x >= kill_at {
        let _ = Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_micros(sleep_us));
    value(x)
}

parview::task! {
    /// `ctl` = (fail at, kill rank 0 at, sleep µs).
    fn work(ctl: &(u64, u64, u64), x: u64) -> f64 { item(ctl.0, ctl.1, ctl.2, x) }
}

/// A result whose `Serialize` panics for `FAIL` (so the root cannot log it).
#[derive(serde::Deserialize, Debug)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != FAIL, "Picky({}) refuses to be serialized", self.0);
        s.serialize_u64(self.0)
    }
}

parview::task! {
    /// Item runs on this rank so far.
    fn runs_here(_rank: usize) -> usize { RUNS.load(Ordering::Relaxed) }
}

// ---- child side ----------------------------------------------------------------

#[test]
fn ckpt_child() {
    let Ok(case) = std::env::var(CHILD_VAR) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH_VAR).expect("the log's path"));
    let (mode, phase) = case.split_once(':').expect("mode:phase");
    match mode {
        "farm" => farm_child(phase, &path),
        "spmd" => spmd_child(phase, &path),
        other => panic!("unknown mode {other:?}"),
    }
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "BAD" }
}

fn same(v: &[f64]) -> &'static str {
    ok(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>() == clean())
}

fn farm_child(phase: &str, path: &Path) {
    let farm = Farm::start().expect("Farm::start");
    let say = |kv: String| println!("RANK 0 size={} {kv}", farm.ranks());
    let xs = items();
    let ck = |s: Schedule| farm.load_balanced().schedule(s).checkpoint(path);
    let runs = || -> usize { farm.direct().apply(runs_here).unwrap().iter().sum() };
    match phase {
        "fail" => {
            let r = ck(Schedule::Dynamic(3)).map_with(work, &(FAIL, NEVER, 200), &xs);
            match r {
                Err(ClusterCheckpointError::Map(ClusterMapError::Failed { index, .. })) => {
                    say(format!("failed_at={index}"))
                }
                other => say(format!("failed_at=BAD:{:?}", other.map(|v| v.len()))),
            }
            say(format!("runs={}", runs()));
        }
        "resume" => {
            let v = ck(Schedule::Guided(2))
                .map_with(work, &(NEVER, NEVER, 0), &xs)
                .unwrap();
            say(format!("same={}", same(&v)));
            say(format!("runs={}", runs()));
        }
        "abort" => {
            let h = AbortHandle::new();
            ABORT.set(h.clone()).unwrap();
            ABORT_AT.store(N / 3, Ordering::Relaxed);
            let r = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(2))
                .abortable(&h)
                .checkpoint(path)
                .map_with(work, &(NEVER, NEVER, 1000), &xs);
            match r {
                Err(ClusterCheckpointError::Map(ClusterMapError::Aborted { done, total })) => {
                    say(format!("aborted=ok done={done} total={total}"))
                }
                other => say(format!("aborted=BAD:{:?}", other.map(|v| v.len()))),
            }
            say(format!("runs={}", runs()));
        }
        "kill" => {
            let _ = ck(Schedule::Dynamic(2))
                .sync_every(Duration::ZERO)
                .map_with(work, &(NEVER, KILL_AT, 2000), &xs);
            say("survived=yes".into());
        }
        "refused" => {
            // The log was written for `items()`: one more item is another input.
            let longer: Vec<u64> = (0..N + 1).collect();
            let r = ck(Schedule::Adaptive).map_with(work, &(NEVER, NEVER, 0), &longer);
            say(format!(
                "refused={}",
                ok(matches!(
                    r,
                    Err(ClusterCheckpointError::Log(CheckpointError::Length {
                        found: N,
                        expected,
                        ..
                    })) if expected == N + 1
                ))
            ));
            say(format!("runs={}", runs()));
            let v = farm
                .load_balanced()
                .map_with(work, &(NEVER, NEVER, 0), &xs)
                .unwrap();
            say(format!("after={}", same(&v)));
        }
        other => panic!("unknown farm phase {other:?}"),
    }
}

fn spmd_child(phase: &str, path: &Path) {
    let c = Cluster::init().expect("MPI init");
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let xs = if c.is_root() { items() } else { Vec::new() };
    let f = |fail_at: u64| move |&x: &u64| item(fail_at, NEVER, 200, x);
    let ck = |s: Schedule| c.load_balanced().schedule(s).checkpoint(path);
    match phase {
        "fail" => {
            let r = ck(Schedule::Dynamic(3)).map(&xs, f(FAIL));
            match r {
                Err(ClusterCheckpointError::Map(ClusterMapError::Failed { index, .. })) => {
                    say(format!("failed_at={index}"))
                }
                Ok(None) if !c.is_root() => say("failed_at=none".into()),
                other => say(format!(
                    "failed_at=BAD:{:?}",
                    other.map(|v| v.map(|v| v.len()))
                )),
            }
        }
        "resume" => match ck(Schedule::Adaptive).map(&xs, f(NEVER)) {
            Ok(Some(v)) => say(format!("same={}", same(&v))),
            Ok(None) => say("same=none".into()),
            Err(e) => say(format!("same=BAD:{}", e.to_string().replace(' ', "_"))),
        },
        "refused" => {
            let longer: Vec<u64> = if c.is_root() {
                (0..N + 1).collect()
            } else {
                vec![]
            };
            let r = ck(Schedule::Dynamic(3)).map(&longer, f(NEVER));
            let good = match &r {
                Err(ClusterCheckpointError::Log(CheckpointError::Length { .. })) => c.is_root(),
                Err(ClusterCheckpointError::RootRefused { message }) => {
                    !c.is_root() && message.contains("written for a map over")
                }
                _ => false,
            };
            say(format!("refused={}", ok(good)));
            // The ranks are still in step: a plain map and a checkpointed one work.
            let v = c.load_balanced().map(&xs, f(NEVER)).unwrap();
            let again = ck(Schedule::Guided(1)).map(&xs, f(NEVER)).unwrap();
            say(format!(
                "after={}",
                ok(v.is_some() == c.is_root()
                    && v.as_deref().is_none_or(|v| same(v) == "ok")
                    && again.as_deref().is_none_or(|v| same(v) == "ok"))
            ));
        }
        "kill" => {
            // Rank 1 kills itself on its first item at or past `KILL_AT`: mpirun ends the job.
            let rank = c.rank();
            let _ = ck(Schedule::Dynamic(2))
                .sync_every(Duration::ZERO)
                .map(&xs, move |&x| {
                    if rank == 1 && x >= KILL_AT {
                        let _ = Command::new("kill")
                            .args(["-9", &std::process::id().to_string()])
                            .status();
                        std::thread::sleep(Duration::from_secs(30));
                    }
                    item(NEVER, NEVER, 2000, x)
                });
            say("survived=yes".into());
        }
        "encode" => {
            // One rank: every result is serialized for the log only, on the root.
            let r = ck(Schedule::Dynamic(3)).map(&xs, |&x| {
                RUNS.fetch_add(1, Ordering::Relaxed);
                Picky(x)
            });
            let good = matches!(
                &r,
                Err(ClusterCheckpointError::Log(CheckpointError::Encode { message, .. }))
                    if message.contains("refuses to be serialized")
            );
            say(format!("encode={}", ok(good)));
            // The map stopped, and the rank (its MPI thread caught the panic) goes on.
            let v = c.load_balanced().map(&xs, f(NEVER)).unwrap();
            say(format!(
                "after={}",
                ok(v.as_deref().is_some_and(|v| same(v) == "ok"))
            ));
        }
        other => panic!("unknown spmd phase {other:?}"),
    }
    say(format!("runs={}", RUNS.load(Ordering::Relaxed)));
}

// ---- parent side ------------------------------------------------------------------

/// Runs the child for `case` on the log `log` (under `mpirun -n np`, or alone) with a
/// watchdog: `Err` with what was captured if it ran longer than `timeout` (its process group
/// is then killed).
fn run_child(
    np: Option<usize>,
    case: &str,
    log: &Path,
    timeout: Duration,
) -> Result<Outcome, Outcome> {
    let mut cmd = child_command(np, CHILD_TEST);
    cmd.env(CHILD_VAR, case)
        .env(PATH_VAR, log)
        .env("PARVIEW_WORKERS", "1");
    run_within(cmd, timeout)
}

/// Runs `case` and checks the job ended with status 0.
fn run_ok(np: Option<usize>, case: &str, log: &Path) -> Outcome {
    let o = run_child(np, case, log, TIMEOUT).unwrap_or_else(|o| {
        panic!(
            "child {case:?} (np={np:?}) still running after {TIMEOUT:?}: killed\n{}",
            o.dump()
        )
    });
    assert!(o.status.success(), "np={np:?} {case} failed\n{}", o.dump());
    o
}

/// A fresh log path for one test.
fn log_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "parview-mpi-ckpt-{}-{name}.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// A failing farm run (every item but `FAIL` logged), checked.
fn farm_fails(np: Option<usize>, log: &Path) {
    let o = run_ok(np, "farm:fail", log);
    assert_eq!(o.root("failed_at"), FAIL.to_string(), "{}", o.dump());
    assert_eq!(o.runs(), N as usize, "every item ran once\n{}", o.dump());
}

/// A farm rerun that must compute `runs` items and return the clean bits.
fn farm_resumes(np: Option<usize>, log: &Path, runs: usize) {
    let o = run_ok(np, "farm:resume", log);
    assert_eq!(o.root("same"), "ok", "np={np:?}\n{}", o.dump());
    assert_eq!(o.runs(), runs, "np={np:?}: items run again\n{}", o.dump());
}

#[test]
fn farm_resumes_a_failed_map_with_another_rank_count() {
    let log = log_path("farm");
    farm_fails(Some(2), &log);
    farm_resumes(Some(3), &log, 1);
    // Everything is in the log now: an MPI-written log read by a local farm, nothing runs.
    farm_resumes(None, &log, 0);
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn logs_written_locally_resume_under_mpirun() {
    // By a local farm.
    let log = log_path("local-farm");
    farm_fails(None, &log);
    farm_resumes(Some(2), &log, 1);
    std::fs::remove_file(&log).unwrap();
    // By the local load-balanced view, in this process.
    let pool = Pool::builder().workers(2).build().unwrap();
    let e = pool
        .schedule(Schedule::Dynamic(5))
        .checkpoint(&log)
        .map(&items(), |&x| {
            assert!(x != FAIL, "item {x} fails");
            value(x)
        })
        .unwrap_err();
    // A panic (unlike an `Err`, which stops the map) lets every other item finish.
    assert!(matches!(
        e,
        CheckpointError::Map(MapError::Panicked { index, .. }) if index == FAIL as usize
    ));
    farm_resumes(Some(3), &log, 1);
    // And the other way: the finished MPI log read back locally.
    let v = pool
        .load_balanced()
        .checkpoint(&log)
        .map(&items(), |_| -> f64 {
            unreachable!("every result is in the log")
        })
        .unwrap();
    assert_eq!(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), clean());
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn spmd_map_resumes_and_its_log_is_the_farms() {
    let log = log_path("spmd");
    let o = run_ok(Some(3), "spmd:fail", &log);
    assert_eq!(o.root("failed_at"), FAIL.to_string(), "{}", o.dump());
    assert_eq!(o.all("failed_at").len(), 3, "{}", o.dump());
    assert_eq!(o.runs(), N as usize, "{}", o.dump());
    let o = run_ok(Some(2), "spmd:resume", &log);
    assert_eq!(o.root("same"), "ok", "{}", o.dump());
    assert_eq!(o.runs(), 1, "only the failed item runs again\n{}", o.dump());
    // The SPMD map's log, complete, resumes in a farm (nothing to run).
    farm_resumes(Some(2), &log, 0);
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn a_log_for_another_input_is_refused_on_every_rank() {
    let log = log_path("refused");
    farm_fails(Some(2), &log);
    let before = std::fs::read(&log).unwrap();
    for np in [Some(3), Some(1)] {
        let o = run_ok(np, "spmd:refused", &log);
        let refused = o.all("refused");
        assert_eq!(
            refused.len(),
            np.unwrap(),
            "every rank returns\n{}",
            o.dump()
        );
        assert!(refused.iter().all(|r| r == "ok"), "{}", o.dump());
        assert!(o.all("after").iter().all(|r| r == "ok"), "{}", o.dump());
    }
    for np in [Some(2), None] {
        let o = run_ok(np, "farm:refused", &log);
        assert_eq!(o.root("refused"), "ok", "{}", o.dump());
        assert_eq!(o.runs(), 0, "nothing ran\n{}", o.dump());
        assert_eq!(o.root("after"), "ok", "{}", o.dump());
    }
    // The plain maps after the refusals ran everything; the log itself was not touched by them
    // (the SPMD case's checkpointed map after the refusal completed it).
    assert!(std::fs::read(&log).unwrap().starts_with(&before));
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn spmd_rank_1_killed_mid_map_then_resumed() {
    let log = log_path("spmd-killed");
    let o = run_child(Some(2), "spmd:kill", &log, Duration::from_secs(60))
        .unwrap_or_else(|o| panic!("the killed job hung\n{}", o.dump()));
    assert!(!o.status.success(), "{}", o.dump());
    assert!(!o.stdout.contains("survived=yes"), "{}", o.dump());
    let o = run_ok(Some(3), "spmd:resume", &log);
    assert_eq!(o.root("same"), "ok", "{}", o.dump());
    // As for the farm: the items from `KILL_AT` on at most, plus the chunks in flight.
    let runs = o.runs();
    assert!(
        runs <= (N - KILL_AT) as usize + 2 * 2 * 2,
        "{runs} of {N} ran again\n{}",
        o.dump()
    );
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn a_result_that_cannot_be_logged_stops_the_map_and_the_job_goes_on() {
    let log = log_path("encode");
    let o = run_ok(Some(1), "spmd:encode", &log);
    assert_eq!(o.root("encode"), "ok", "{}", o.dump());
    assert_eq!(o.root("after"), "ok", "{}", o.dump());
    // Stopped after the failing chunk: at most the chunks out with it ran (1 engine, ask
    // ahead 1, chunks of 3), then the plain map's N.
    let runs = o.runs();
    assert!(
        runs <= (FAIL as usize + 1 + 2 * 3) + N as usize,
        "{runs}\n{}",
        o.dump()
    );
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn an_aborted_farm_map_resumes_with_exactly_what_was_not_done() {
    let log = log_path("aborted");
    let o = run_ok(Some(2), "farm:abort", &log);
    assert_eq!(o.root("aborted"), "ok", "{}", o.dump());
    assert_eq!(o.root("total"), N.to_string());
    let done: usize = o.root("done").parse().unwrap();
    assert!(done < N as usize, "{}", o.dump());
    // Every item counted as done was logged, and only those: the rerun runs the rest.
    farm_resumes(Some(3), &log, N as usize - done);
    // Resumed again: nothing left.
    farm_resumes(Some(2), &log, 0);
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn rank_0_killed_mid_map_then_resumed() {
    let log = log_path("killed");
    let o = run_child(Some(2), "farm:kill", &log, Duration::from_secs(60))
        .unwrap_or_else(|o| panic!("the killed job hung\n{}", o.dump()));
    assert!(!o.status.success(), "{}", o.dump());
    assert!(!o.stdout.contains("survived=yes"), "{}", o.dump());
    let o = run_ok(Some(2), "farm:resume", &log);
    assert_eq!(o.root("same"), "ok", "{}", o.dump());
    // Dynamic(2) hands the items out in order, so when rank 0 met `KILL_AT` every item below
    // it had been handed out: the rerun computes the items from `KILL_AT` on at most, plus
    // the chunks in flight at the kill (up to `workers + 1` = 2 per rank, of 2 items).
    let runs = o.runs();
    let in_flight = 2 * 2 * 2;
    assert!(
        runs <= (N - KILL_AT) as usize + in_flight,
        "the chunks finished before the kill were logged: {runs} of {N} ran again\n{}",
        o.dump()
    );
    std::fs::remove_file(&log).unwrap();
}
