//! The root-driven farm under real `mpirun` (feature `mpi`).
//!
//! Each test re-executes this test binary, selecting the single test `farm_child` with
//! `PARVIEW_FARM_CHILD=<case>`, under `mpirun -n N` or directly (a local farm). The child calls
//! `Farm::start()`: rank 0 runs the case and prints `RANK 0 size=N key=value` lines, on which
//! the parent asserts; every other rank serves and exits with status 0 when rank 0's farm is
//! dropped, so it must print nothing after `start`. Every child run has a watchdog: after its
//! time limit the whole process group is killed and the test fails (never hangs).
//!
//! Cases: maps with every schedule, contexts, ranges and every rank taking part (`maps`),
//! push/release of shared data and the direct view with per-rank state (`direct`),
//! reproducible reductions compared bit for bit with the local computation (`reduce`),
//! panicking tasks naming rank and index (`failures`), a rank killed with SIGKILL mid-map
//! (`killed`), a panic of rank 0's `main` (`root_panics`: the job is aborted), and an MPMD
//! launch of two different builds (`another_build_on_a_rank_is_an_error_on_rank_0`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use parview::cluster::{
    ClusterMapError, Farm, FarmError, Shared, current_rank, map_reduce_local, rank_state,
    set_rank_state,
};
use parview::{Pool, Schedule};

#[path = "common/mpirun.rs"]
mod mpirun;
use mpirun::{Outcome, child_args, child_command, child_env, exe, mpirun, run_within};

const CHILD_VAR: &str = "PARVIEW_FARM_CHILD";
const CHILD_TEST: &str = "farm_child";
const TIMEOUT: Duration = Duration::from_secs(90);

const SCHEDULES: [Schedule; 6] = [
    Schedule::Static,
    Schedule::StaticChunked(3),
    Schedule::Dynamic(1),
    Schedule::Dynamic(7),
    Schedule::Guided(2),
    Schedule::Adaptive,
];

// ---- tasks -------------------------------------------------------------------

fn scramble(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 7)
}

parview::task! {
    /// A cheap deterministic item function.
    fn mix(x: u64) -> u64 { scramble(x) }
}

parview::task! {
    fn word_len(w: &String) -> (usize, String) { (w.len(), w.to_uppercase()) }
}

parview::task! {
    fn affine(k: &(u64, u64), i: usize) -> u64 { k.0 * i as u64 + k.1 }
}

parview::task! {
    /// Which rank ran index `i` (after a short sleep, so every rank gets some).
    fn where_ran(i: usize) -> (usize, usize) {
        std::thread::sleep(Duration::from_millis(2));
        (i, current_rank())
    }
}

parview::task! {
    fn lookup(table: &Shared<Vec<u64>>, i: usize) -> u64 { table.get()[i] * 2 }
}

parview::task! {
    fn whoami(rank: usize) -> (usize, usize) { (rank, current_rank()) }
}

parview::task! {
    /// Per-rank counter: reads, increments and stores this rank's state.
    fn bump(_rank: usize) -> u64 {
        let v = rank_state::<u64>("count").unwrap_or(0) + 1;
        set_rank_state("count", &v);
        v
    }
}

parview::task! {
    fn harmonic(i: usize) -> f64 {
        1.0 / (i as f64 + 1.0) * if i % 3 == 0 { 1e3 } else { 1e-3 }
    }
}

parview::task! {
    fn fails_at_13(i: usize) -> usize {
        if i == 13 { panic!("index thirteen") }
        i
    }
}

parview::task! {
    fn fails_on_rank_1(i: usize) -> usize {
        std::thread::sleep(Duration::from_millis(1));
        if current_rank() == 1 { panic!("rank one refuses {i}") }
        i
    }
}

parview::task! {
    fn direct_fails_on_1(rank: usize) -> usize {
        if rank == 1 { panic!("direct on one") }
        rank
    }
}

parview::task! {
    fn kill_rank_1(i: usize) -> usize {
        if current_rank() == 1 && i >= 20 {
            let _ = Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(30));
        }
        std::thread::sleep(Duration::from_millis(5));
        i
    }
}

const H_N: usize = 50_003;
const H_LEAF: usize = 1000;

fn words() -> Vec<String> {
    (0..97)
        .map(|i| "ab".repeat(i % 11) + &i.to_string())
        .collect()
}

// ---- child side ----------------------------------------------------------------

#[test]
fn farm_child() {
    let Ok(case) = std::env::var(CHILD_VAR) else {
        return;
    };
    let farm = match Farm::start() {
        Ok(f) => f,
        Err(FarmError::BuildMismatch { rank, .. }) => {
            println!("RANK 0 size=? mismatch={rank}");
            return;
        }
        Err(e) => panic!("Farm::start: {e}"),
    };
    // Only rank 0 gets here.
    let say = |kv: String| println!("RANK {} size={} {kv}", current_rank(), farm.ranks());
    say(format!("returned=yes local={}", farm.is_local()));
    let ok = |b: bool| if b { "ok" } else { "BAD" };
    match case.as_str() {
        "maps" => {
            let xs: Vec<u64> = (0..1003).collect();
            let want: Vec<u64> = xs.iter().map(|&x| scramble(x)).collect();
            for (k, s) in SCHEDULES.into_iter().enumerate() {
                let got = farm.load_balanced().schedule(s).map(mix, &xs).unwrap();
                say(format!("schedule{k}={}", ok(got == want)));
            }
            let ws = words();
            let got = farm.load_balanced().map(word_len, &ws).unwrap();
            let want: Vec<_> = ws.iter().map(|w| (w.len(), w.to_uppercase())).collect();
            say(format!("strings={}", ok(got == want)));
            let got = farm
                .load_balanced()
                .map_range_with(affine, &(3, 5), 10..500)
                .unwrap();
            let want: Vec<u64> = (10..500u64).map(|i| 3 * i + 5).collect();
            say(format!("range_ctx={}", ok(got == want)));
            let empty = farm.load_balanced().map(mix, &[]).unwrap();
            say(format!("empty={}", ok(empty.is_empty())));
            let bad = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(0))
                .map(mix, &xs);
            say(format!(
                "bad_schedule={}",
                ok(matches!(bad, Err(ClusterMapError::Schedule(_))))
            ));
            let seen = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(1))
                .map_range(where_ran, 0..60)
                .unwrap();
            let in_order = seen.iter().enumerate().all(|(k, &(i, _))| k == i);
            let mut ranks: Vec<usize> = seen.iter().map(|&(_, r)| r).collect();
            ranks.sort_unstable();
            ranks.dedup();
            say(format!(
                "in_order={} ranks_seen={}",
                ok(in_order),
                ranks.len()
            ));
            // Background maps: two in flight, a blocking map between them, and the farm used
            // from another thread.
            let a1 = farm.load_balanced().map_async(mix, xs.clone());
            let a2 = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(3))
                .map_async_with(affine, (2, 1), (0..300).collect());
            let mid = farm.load_balanced().map(mix, &xs[..10]).unwrap();
            let other = std::thread::scope(|s| {
                s.spawn(|| farm.load_balanced().map_range(where_ran, 0..5).unwrap())
                    .join()
                    .unwrap()
            });
            let got2 = a2.get().unwrap();
            let got1 = a1.get().unwrap();
            let want_all: Vec<u64> = xs.iter().map(|&x| scramble(x)).collect();
            say(format!(
                "async={}",
                ok(got1 == want_all
                    && mid[..] == want_all[..10]
                    && got2 == (0..300u64).map(|i| 2 * i + 1).collect::<Vec<_>>()
                    && other.iter().enumerate().all(|(k, &(i, _))| k == i))
            ));
            // Results as they arrive: every index exactly once, each with its own value.
            let mut seen = vec![0usize; xs.len()];
            let mut right = true;
            for (i, r) in farm
                .load_balanced()
                .schedule(Schedule::Dynamic(5))
                .imap_unordered(mix, xs.clone())
            {
                seen[i] += 1;
                right &= r.ok() == Some(scramble(xs[i]));
            }
            let with_ctx: u64 = farm
                .load_balanced()
                .imap_unordered_with(affine, (2, 1), (0..300).collect())
                .map(|(i, r)| {
                    right &= r.as_ref().ok() == Some(&(2 * i as u64 + 1));
                    r.unwrap_or(0)
                })
                .sum();
            say(format!(
                "imap_unordered={}",
                ok(right && seen.iter().all(|&c| c == 1) && with_ctx == 300 * 299 + 300)
            ));
            let rep = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(4))
                .map_range_report_with(where_ran, &(), 0..40)
                .unwrap();
            let lanes: Vec<(usize, usize)> = farm
                .rank_workers()
                .iter()
                .enumerate()
                .flat_map(|(r, &w)| (0..w).map(move |e| (r, e)))
                .collect();
            let covered: usize = rep.timeline.records().iter().map(|c| c.end - c.start).sum();
            let per_rank = rep.loads.iter().map(|l| l.items).sum::<usize>();
            say(format!(
                "report={}",
                ok(rep.lanes == lanes
                    && covered == 40
                    && per_rank == 40
                    && rep.loads.len() == farm.ranks()
                    && rep.results.iter().enumerate().all(|(k, &(i, _))| k == i))
            ));
        }
        "direct" => {
            let table: Vec<u64> = (0..300).map(|i| i * i).collect();
            let h = farm.push(&table).unwrap();
            let got = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(5))
                .map_range_with(lookup, &h, 0..300)
                .unwrap();
            say(format!(
                "shared={}",
                ok(got
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| v == 2 * (i * i) as u64))
            ));
            farm.release(h);
            let gone = farm
                .load_balanced()
                .schedule(Schedule::Static)
                .map_range_with(lookup, &h, 0..farm.ranks());
            say(format!(
                "released={}",
                ok(
                    matches!(gone, Err(ClusterMapError::Failed { ref message, .. })
                    if message.contains("released or never pushed"))
                )
            ));
            let all = farm.direct().apply(whoami).unwrap();
            let want: Vec<_> = (0..farm.ranks()).map(|r| (r, r)).collect();
            say(format!("apply={}", ok(all == want)));
            let last = farm.ranks() - 1;
            let pick: Vec<usize> = if last > 0 { vec![last, 0] } else { vec![0] };
            let sub = farm.direct().targets(&pick).apply(whoami).unwrap();
            let want: Vec<_> = pick.iter().map(|&r| (r, r)).collect();
            say(format!("targets={}", ok(sub == want)));
            farm.direct().push("count", &10u64).unwrap();
            let b1 = farm.direct().apply(bump).unwrap();
            let b2 = farm.direct().targets(&[last]).apply(bump).unwrap();
            let pulled = farm.direct().pull::<u64>("count").unwrap();
            let mut want = vec![Some(11u64); farm.ranks()];
            want[last] = Some(12);
            say(format!(
                "state={}",
                ok(b1 == vec![11; farm.ranks()] && b2 == vec![12] && pulled == want)
            ));
            let unset = farm.direct().pull::<u64>("never").unwrap();
            say(format!("unset={}", ok(unset.iter().all(Option::is_none))));
        }
        "reduce" => {
            let h = farm
                .map_reduce(harmonic, 0..H_N, H_LEAF, |a, b| a + b)
                .unwrap()
                .unwrap();
            say(format!("harmonic={:#x}", h.to_bits()));
            let empty = farm.map_reduce(harmonic, 5..5, 8, |a, b| a + b).unwrap();
            say(format!("empty_reduce={}", ok(empty.is_none())));
        }
        "failures" => {
            for (k, s) in [Schedule::Dynamic(1), Schedule::Static, Schedule::Adaptive]
                .into_iter()
                .enumerate()
            {
                let r = farm
                    .load_balanced()
                    .schedule(s)
                    .map_range(fails_at_13, 0..200);
                let good = matches!(&r, Err(ClusterMapError::Failed { index: 13, rank, message })
                    if *rank < farm.ranks() && message == "index thirteen");
                say(format!("at13_{k}={}", ok(good)));
            }
            let r = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(1))
                .map_range(fails_on_rank_1, 0..100);
            let named = match &r {
                Err(ClusterMapError::Failed {
                    rank: 1,
                    index,
                    message,
                }) => message == &format!("rank one refuses {index}"),
                _ => false,
            };
            say(format!("rank1={}", ok(named)));
            let d = farm.direct().apply(direct_fails_on_1);
            say(format!(
                "direct_fail={}",
                ok(matches!(d, Err(ClusterMapError::Failed { rank: 1, .. })))
            ));
            // Streaming: the panicking item is one `Err` naming its index, every other comes.
            let mut errs = Vec::new();
            let mut fine = 0;
            for (i, r) in farm
                .load_balanced()
                .schedule(Schedule::Dynamic(2))
                .imap_unordered(fails_at_13, (0..60).collect())
            {
                match r {
                    Ok(v) if v == i => fine += 1,
                    Ok(_) => {}
                    Err(ClusterMapError::Failed { index, message, .. }) => {
                        errs.push((i, index, message))
                    }
                    Err(_) => {}
                }
            }
            say(format!(
                "imap_fail={}",
                ok(fine == 59 && errs == [(13, 13, "index thirteen".to_string())])
            ));
            // Still usable.
            let v = farm.load_balanced().map_range(fails_at_13, 20..40).unwrap();
            say(format!("after={}", ok(v == (20..40).collect::<Vec<_>>())));
        }
        "killed" => {
            let _ = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(1))
                .map_range(kill_rank_1, 0..400);
            say("survived=yes".into());
        }
        "drop_pending" => {
            // Dropping the farm while a background map runs: the map finishes first (the MPI
            // thread runs its jobs in order), then the serving ranks stop.
            let ar = farm
                .load_balanced()
                .schedule(Schedule::Dynamic(1))
                .map_async(mix, (0..40).collect());
            let size = farm.ranks();
            drop(farm);
            let got = ar.get();
            let want: Vec<u64> = (0..40).map(scramble).collect();
            println!(
                "RANK 0 size={size} pending={}",
                ok(got.as_ref().is_ok_and(|v| *v == want))
            );
        }
        "root_panics" => {
            let _ = farm.load_balanced().map_range(fails_at_13, 0..5).unwrap();
            say("before=yes".into());
            panic!("rank 0's main gives up");
        }
        other => panic!("unknown {CHILD_VAR} case {other:?}"),
    }
}

// ---- parent side ------------------------------------------------------------------

/// Runs `cmd` (the child, set up for `case`) with a watchdog: `Err` with what was captured if
/// it ran longer than `timeout` (its process group is then killed).
fn run_cmd(mut cmd: Command, case: &str, timeout: Duration) -> Result<Outcome, Outcome> {
    child_env(&mut cmd);
    cmd.env(CHILD_VAR, case).env("PARVIEW_WORKERS", "1");
    run_within(cmd, timeout)
}

/// `mpirun -n np <this test binary> farm_child` (or the binary alone when `np` is `None`).
fn child_cmd(np: Option<usize>) -> Command {
    child_command(np, CHILD_TEST)
}

/// Runs `case` and checks the job ended with status 0 and that only rank 0 returned from
/// `Farm::start` (the serving ranks exited inside it).
fn run_ok(np: Option<usize>, case: &str) -> Outcome {
    let o = run_cmd(child_cmd(np), case, TIMEOUT).unwrap_or_else(|o| {
        panic!(
            "farm child {case:?} (np={np:?}) still running after {TIMEOUT:?}: killed\n{}",
            o.dump()
        )
    });
    assert!(
        o.status.success(),
        "np={np:?} {case} failed (a serving rank must exit with status 0)\n{}",
        o.dump()
    );
    let ranks = o.ranks();
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        vec![0],
        "only rank 0 returns from Farm::start\n{}",
        o.dump()
    );
    assert_eq!(o.root("returned"), "yes");
    assert_eq!(o.root("size"), np.unwrap_or(1).to_string(), "{}", o.dump());
    assert_eq!(o.root("local"), np.is_none().to_string(), "{}", o.dump());
    o
}

fn assert_all_ok(o: &Outcome, skip: &[&str]) {
    let root = &o.ranks()[&0];
    for (k, v) in root {
        if !skip.contains(&k.as_str()) {
            assert_ne!(v, "BAD", "{k}\n{}", o.dump());
        }
    }
}

#[test]
fn maps_run_on_every_rank_in_order() {
    for np in [Some(2), Some(3), None] {
        let o = run_ok(np, "maps");
        assert_all_ok(&o, &[]);
        for k in 0..SCHEDULES.len() {
            assert_eq!(o.root(&format!("schedule{k}")), "ok");
        }
        for key in [
            "strings",
            "range_ctx",
            "empty",
            "bad_schedule",
            "in_order",
            "report",
            "async",
            "imap_unordered",
        ] {
            assert_eq!(o.root(key), "ok", "{key}\n{}", o.dump());
        }
        assert_eq!(
            o.root("ranks_seen"),
            np.unwrap_or(1).to_string(),
            "every rank takes part\n{}",
            o.dump()
        );
    }
}

#[test]
fn shared_data_and_direct_view_over_ranks() {
    for np in [Some(3), None] {
        let o = run_ok(np, "direct");
        for key in ["shared", "released", "apply", "targets", "state", "unset"] {
            assert_eq!(o.root(key), "ok", "{key}\n{}", o.dump());
        }
    }
}

#[test]
fn reductions_have_the_local_bits() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let want = map_reduce_local(&pool, 0..H_N, H_LEAF, harmonic::call, |a, b| a + b).unwrap();
    let want = format!("{:#x}", want.to_bits());
    for np in [Some(1), Some(2), Some(3), None] {
        let o = run_ok(np, "reduce");
        assert_eq!(o.root("harmonic"), want, "np={np:?}\n{}", o.dump());
        assert_eq!(o.root("empty_reduce"), "ok");
    }
}

#[test]
fn a_background_map_outlives_the_dropped_farm() {
    for np in [Some(2), None] {
        let o = run_ok(np, "drop_pending");
        assert_eq!(o.root("pending"), "ok", "{}", o.dump());
    }
}

#[test]
fn panicking_tasks_name_rank_and_index() {
    for np in [Some(2), Some(3)] {
        let o = run_ok(np, "failures");
        assert_all_ok(&o, &[]);
        for key in ["rank1", "direct_fail", "imap_fail", "after"] {
            assert_eq!(o.root(key), "ok", "{key}\n{}", o.dump());
        }
        assert_eq!(o.stdout.matches("at13_").count(), 3, "{}", o.dump());
    }
}

#[test]
fn killed_rank_ends_the_job_naming_it() {
    let limit = Duration::from_secs(40);
    let o = run_cmd(child_cmd(Some(2)), "killed", limit)
        .unwrap_or_else(|o| panic!("a killed rank left the job hanging\n{}", o.dump()));
    assert!(!o.status.success(), "{}", o.dump());
    assert!(!o.stdout.contains("survived=yes"), "{}", o.dump());
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(
        all.contains("rank 1") && (all.contains("signal 9") || all.contains("Killed")),
        "mpirun must name the killed rank\n{}",
        o.dump()
    );
}

#[test]
fn a_panic_of_rank_0_ends_the_job() {
    let limit = Duration::from_secs(40);
    let o = run_cmd(child_cmd(Some(3)), "root_panics", limit)
        .unwrap_or_else(|o| panic!("the serving ranks outlived rank 0's panic\n{}", o.dump()));
    assert!(!o.status.success(), "{}", o.dump());
    assert_eq!(o.root("before"), "yes", "{}", o.dump());
    assert!(
        o.stderr.contains("rank 0's main gives up") && o.stderr.contains("MPI_Abort"),
        "rank 0 says why the job ends\n{}",
        o.dump()
    );
}

/// A copy of this test binary with one byte appended: it runs the same, but is another build.
fn altered_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("mpi_farm_altered");
    std::fs::copy(exe(), &copy).expect("copying the test binary");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .expect("opening the copy");
    std::io::Write::write_all(&mut f, b"\0").expect("appending a byte");
    copy
}

#[test]
fn another_build_on_a_rank_is_an_error_on_rank_0() {
    let dir = std::env::temp_dir().join(format!("parview-farm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = altered_copy(&dir);
    // MPMD: rank 0 runs this binary, rank 1 the altered copy.
    let mut cmd = Command::new(mpirun());
    cmd.args(["-n", "1"])
        .arg(exe())
        .args(child_args(CHILD_TEST))
        .args([":", "-n", "1"])
        .arg(&copy)
        .args(child_args(CHILD_TEST));
    let o = run_cmd(cmd, "maps", TIMEOUT)
        .unwrap_or_else(|o| panic!("the mismatch left the job hanging\n{}", o.dump()));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(o.root("mismatch"), "1", "{}", o.dump());
    assert!(
        !o.stdout.contains("returned=yes"),
        "no rank may run the case\n{}",
        o.dump()
    );
    assert!(
        o.stderr.contains("rank 1 of 2: the farm did not start"),
        "the other rank says why\n{}",
        o.dump()
    );
    // And the same binary on both sides is accepted (MPMD of one build).
    let mut cmd = Command::new(mpirun());
    cmd.args(["-n", "1"])
        .arg(exe())
        .args(child_args(CHILD_TEST))
        .args([":", "-n", "1"])
        .arg(exe())
        .args(child_args(CHILD_TEST));
    let o = run_cmd(cmd, "reduce", TIMEOUT).unwrap_or_else(|o| panic!("hung\n{}", o.dump()));
    assert!(o.status.success(), "{}", o.dump());
    assert_eq!(o.root("empty_reduce"), "ok", "{}", o.dump());
}
