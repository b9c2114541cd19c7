//! MPI integration tests (feature `mpi`).
//!
//! Each test re-executes this test binary under `mpirun -n N`, selecting the
//! single test `mpi_child` with `PARVIEW_MPI_CHILD=<case>`; the child runs the
//! rank body and prints lines `RANK r size=s key=value ...`, on which the
//! parent asserts. Every child run has a 60 s timeout: on expiry the whole
//! process group is killed and the test fails (never hangs).
//!
//! Cases: the `Equivalence` fast path and deterministic reductions (`order`, `reduce`), the
//! load-balanced view with every schedule and serde item types (`balanced`), uneven items
//! shared by every rank (`uneven`), panicking items and aborts (`failures`), the direct view
//! and a derived `Equivalence` struct (`direct`), the per-(rank, engine) timeline (`timeline`),
//! and a rank that kills itself with SIGKILL mid-map (`killed`: mpirun must end the job, naming
//! the rank, within 40 s).
//!
//! `mpirun` must be on PATH (`.ci/mpi-setup.sh` installs Open MPI); a missing
//! `mpirun` fails the tests. The Open MPI settings needed in containers (run
//! as root, oversubscribe, loopback only) are set here on the child command.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parview::cluster::{
    AbortHandle, Cluster, ClusterError, ClusterMapError, map_reduce_local, partition,
};
use parview::{Pool, Schedule};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

#[path = "common/mpirun.rs"]
mod mpirun;
use mpirun::{Outcome, child_command, run_within};

const CHILD_VAR: &str = "PARVIEW_MPI_CHILD";
const N_VAR: &str = "PARVIEW_TEST_N";
const CHILD_TEST: &str = "mpi_child";
const TIMEOUT: Duration = Duration::from_secs(60);

// ---- shared computations (child ranks and parent reference) --------------

const PI_CHUNKS: usize = 37;
const PI_CHUNK: u64 = 100_000;
const H_N: usize = 200_003;
const H_LEAF: usize = 1000;

/// Hits inside the quarter circle for one chunk: one Xoshiro256++ stream per
/// chunk, seeded `chunk + 1` (as in `examples/mpi_pi.rs`).
fn pi_chunk_hits(chunk: usize) -> f64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(chunk as u64 + 1);
    let mut hits = 0u64;
    for _ in 0..PI_CHUNK {
        let x = rng.random::<f64>();
        let y = rng.random::<f64>();
        hits += u64::from(x * x + y * y < 1.0);
    }
    hits as f64
}

/// A float sum whose value depends on the order of additions.
fn harmonic_term(i: usize) -> f64 {
    1.0 / (i as f64 + 1.0) * if i % 3 == 0 { 1e3 } else { 1e-3 }
}

fn add(a: f64, b: f64) -> f64 {
    a + b
}

// ---- child side -----------------------------------------------------------

/// Entry point of the ranks. In the parent (no `PARVIEW_MPI_CHILD`) it does
/// nothing.
#[test]
fn mpi_child() {
    let Ok(case) = std::env::var(CHILD_VAR) else {
        return;
    };
    if case == "mismatch" {
        match Cluster::init() {
            Err(ClusterError::LauncherMismatch {
                mpi_size,
                launcher_size,
                var,
            }) => println!("MISMATCH var={var} launcher={launcher_size} mpi={mpi_size}"),
            Err(e) => println!("MISMATCH other error: {e}"),
            Ok(c) => println!("MISMATCH none size={}", c.size()),
        }
        return;
    }
    let c = Cluster::init().expect("Cluster::init");
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    say(format!("workers={}", c.workers()));
    let n: usize = std::env::var(N_VAR).map_or(1003, |v| v.parse().unwrap());
    match case.as_str() {
        "world" => c.barrier(),
        "order" => {
            let data: Vec<f64> = if c.is_root() {
                (0..n).map(|i| i as f64).collect()
            } else {
                Vec::new()
            };
            let seen = AtomicUsize::new(0);
            let mapped = c.par_map(&data, |x| {
                seen.fetch_add(1, Ordering::Relaxed);
                2.0 * x + 1.0
            });
            say(format!("local={}", seen.load(Ordering::Relaxed)));
            if let Some(m) = mapped {
                let ok = m.len() == n
                    && m.iter()
                        .enumerate()
                        .all(|(i, &y)| y == 2.0 * i as f64 + 1.0);
                say(format!("par_map={}", if ok { "ok" } else { "BAD" }));
            }
            // Pieces know their global offset; output in input order.
            let sg = c.scatter_gather(&data, |start, piece| {
                piece
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| {
                        if x == (start + k) as f64 {
                            x as u64
                        } else {
                            u64::MAX
                        }
                    })
                    .collect::<Vec<u64>>()
            });
            if let Some(sg) = sg {
                let ok = sg.len() == n && sg.iter().enumerate().all(|(i, &v)| v == i as u64);
                say(format!("scatter_gather={}", if ok { "ok" } else { "BAD" }));
            }
            // Variable-length gather: rank r contributes r copies of r.
            let mine = vec![c.rank() as u64; c.rank()];
            if let Some(all) = c.gather(&mine) {
                let want: Vec<u64> = (0..c.size() as u64)
                    .flat_map(|r| std::iter::repeat_n(r, r as usize))
                    .collect();
                say(format!("gather={}", if all == want { "ok" } else { "BAD" }));
            }
            let sum = c.all_map_reduce(0..n, 64, |i| i as u64, |a, b| a + b);
            say(format!(
                "allsum={}",
                sum.map_or("none".into(), |s| s.to_string())
            ));
            let h = c.map_reduce(0..n, 16, harmonic_term, add);
            if c.is_root() {
                say(format!(
                    "reduce={}",
                    h.map_or("none".into(), |h| format!("{:#x}", h.to_bits()))
                ));
            }
        }
        "reduce" => {
            let pi = c.map_reduce(0..PI_CHUNKS, 1, pi_chunk_hits, add);
            let h = c.map_reduce(0..H_N, H_LEAF, harmonic_term, add);
            let h_all = c
                .all_map_reduce(0..H_N, H_LEAF, harmonic_term, add)
                .unwrap();
            say(format!("h_all={:#x}", h_all.to_bits()));
            if let (Some(pi), Some(h)) = (pi, h) {
                say(format!(
                    "pi_hits={:#x} harmonic={:#x}",
                    pi.to_bits(),
                    h.to_bits()
                ));
            }
        }
        "panic_worker" => {
            let data: Vec<f64> = if c.is_root() {
                vec![1.0; 64]
            } else {
                Vec::new()
            };
            let rank = c.rank();
            // The panic comes back to the root (a panic there, after every rank agreed).
            let caught = |r: std::thread::Result<Option<Vec<f64>>>, want: &str| match r {
                Err(p) => {
                    let m = p.downcast_ref::<String>().cloned().unwrap_or_default();
                    verdict(c.is_root() && m.contains(want)).to_string()
                }
                Ok(None) => "none".to_string(),
                Ok(Some(_)) => "BAD".to_string(),
            };
            let r = catch_unwind(AssertUnwindSafe(|| {
                c.par_map(&data, |x| {
                    if rank == 1 {
                        panic!("deliberate test panic in a worker");
                    }
                    x + 1.0
                })
            }));
            say(format!(
                "par_map_panic={}",
                caught(
                    r,
                    "item 32 panicked on rank 1: deliberate test panic in a worker"
                )
            ));
            let r = catch_unwind(AssertUnwindSafe(|| {
                c.scatter_gather(&data, |start, piece| {
                    if start >= 32 {
                        panic!("deliberate piece panic");
                    }
                    piece.to_vec()
                })
            }));
            say(format!(
                "scatter_gather_panic={}",
                caught(r, "panicked on rank 1: deliberate piece panic")
            ));
            let leaf_panic = |i: usize| {
                if i == 537 {
                    panic!("deliberate leaf panic");
                }
                i as f64
            };
            let r = catch_unwind(AssertUnwindSafe(|| {
                c.map_reduce(0..1000, 10, leaf_panic, add)
            }));
            let r = r.map(|v| v.map(|x| vec![x]));
            say(format!(
                "map_reduce_panic={}",
                caught(r, "leaf 53 (items 530..540) panicked on rank")
            ));
            // all_map_reduce: every rank panics with the same message.
            let r = catch_unwind(AssertUnwindSafe(|| {
                c.all_map_reduce(0..1000, 10, leaf_panic, add)
            }));
            let ok = match r {
                Err(p) => p
                    .downcast_ref::<String>()
                    .is_some_and(|m| m.contains("deliberate leaf panic")),
                Ok(_) => false,
            };
            say(format!("all_map_reduce_panic={}", verdict(ok)));
            // The cluster stays usable.
            let again = c.par_map(&data, |x| x * 2.0);
            if let Some(v) = again {
                say(format!("par_map_after={}", verdict(v == vec![2.0; 64])));
            }
            say("survived=yes".into());
        }
        "hang" => {
            // Rank 1 never reaches the barrier: only the harness timeout ends this.
            if c.rank() == 1 {
                std::thread::sleep(Duration::from_secs(3600));
            }
            c.barrier();
            say("survived=yes".into());
        }
        "panic_main" => {
            c.barrier();
            if c.rank() == 1 {
                panic!("deliberate test panic on the main thread");
            }
            c.barrier(); // rank 0 would wait here forever without the abort
            say("survived=yes".into());
        }
        "balanced" => balanced_child(&c, n),
        "uneven" => uneven_child(&c),
        "failures" => failures_child(&c),
        "direct" => direct_child(&c),
        "timeline" => timeline_child(&c, n),
        "async" => async_child(&c, n),
        "imap" => imap_child(&c, n),
        "killed" => {
            let xs: Vec<u64> = if c.is_root() {
                (0..400).collect()
            } else {
                vec![]
            };
            let rank = c.rank();
            let _ = c
                .load_balanced()
                .schedule(Schedule::Dynamic(1))
                .map(&xs, |&x| {
                    if rank == 1 && x >= 20 {
                        // Dies mid-map, as a node or an OOM kill would take it.
                        let _ = std::process::Command::new("kill")
                            .args(["-9", &std::process::id().to_string()])
                            .status();
                        std::thread::sleep(Duration::from_secs(30));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    x
                });
            say("survived=yes".into());
        }
        other => panic!("unknown {CHILD_VAR} case {other:?}"),
    }
}

// ---- load-balanced maps, direct view (child side) --------------------------

/// Every schedule the cluster view accepts.
const SCHEDULES: [Schedule; 6] = [
    Schedule::Adaptive,
    Schedule::Dynamic(1),
    Schedule::Dynamic(7),
    Schedule::Guided(2),
    Schedule::Static,
    Schedule::StaticChunked(3),
];

/// A struct with a nested Vec and a String, as users bring.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Sample {
    id: u32,
    name: String,
    xs: Vec<f64>,
}

fn sample(i: usize) -> Sample {
    Sample {
        id: i as u32,
        name: format!("s{i}"),
        xs: (0..i % 5).map(|k| k as f64 + 0.5).collect(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "BAD" }
}

fn balanced_child(c: &Cluster, n: usize) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let root = c.is_root();
    let nums: Vec<f64> = if root {
        (0..n).map(|i| i as f64).collect()
    } else {
        vec![]
    };
    let strings: Vec<String> = if root {
        (0..n).map(|i| "x".repeat(i % 7)).collect()
    } else {
        vec![]
    };
    let vecs: Vec<Vec<f64>> = if root {
        (0..n).map(|i| vec![1.0; i % 4]).collect()
    } else {
        vec![]
    };
    let samples: Vec<Sample> = if root {
        (0..n).map(sample).collect()
    } else {
        vec![]
    };
    let mine = AtomicUsize::new(0);
    for (k, s) in SCHEDULES.iter().enumerate() {
        let v = c.load_balanced().schedule(*s);
        let a = v
            .map(&nums, |x| {
                mine.fetch_add(1, Ordering::Relaxed);
                2.0 * x + 1.0
            })
            .unwrap();
        let b = v.map(&strings, |s| s.len()).unwrap();
        let d = v.map(&vecs, |xs| xs.iter().sum::<f64>()).unwrap();
        let e = v
            .map(&samples, |s| Sample {
                id: s.id * 2,
                name: s.name.to_uppercase(),
                xs: s.xs.iter().map(|x| -x).collect(),
            })
            .unwrap();
        let f = v.map_range(5..5 + n, |i| i as u64 * 3).unwrap();
        if root {
            let (a, b, d, e, f) = (a.unwrap(), b.unwrap(), d.unwrap(), e.unwrap(), f.unwrap());
            let ok = a.len() == n
                && a.iter()
                    .enumerate()
                    .all(|(i, &y)| y == 2.0 * i as f64 + 1.0)
                && b.iter().enumerate().all(|(i, &l)| l == i % 7)
                && d.iter().enumerate().all(|(i, &x)| x == (i % 4) as f64)
                && e.len() == n
                && e.iter().enumerate().all(|(i, s)| {
                    let w = sample(i);
                    s.id == w.id * 2
                        && s.name == w.name.to_uppercase()
                        && s.xs.iter().zip(&w.xs).all(|(a, b)| *a == -b)
                })
                && f.len() == n
                && f.iter().enumerate().all(|(i, &x)| x == (i as u64 + 5) * 3);
            say(format!("sched{k}={}", verdict(ok)));
        } else {
            assert!(a.is_none() && b.is_none() && d.is_none() && e.is_none() && f.is_none());
        }
    }
    say(format!("ran={}", mine.load(Ordering::Relaxed)));
    // An invalid schedule is an error on every rank, and nothing hangs.
    let bad = c
        .load_balanced()
        .schedule(Schedule::Dynamic(0))
        .map(&nums, |x| *x);
    say(format!(
        "zero_chunk={}",
        verdict(matches!(bad, Err(ClusterMapError::Schedule(_))))
    ));
}

/// Eight heavy items (sleeps) then eight light ones: with on-demand chunks every rank takes
/// heavy items, where contiguous blocks gave them all to the first rank.
fn uneven_child(c: &Cluster) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let xs: Vec<u64> = if c.is_root() {
        (0..16).collect()
    } else {
        vec![]
    };
    let rep = c
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_report(&xs, |&x| {
            if x < 8 {
                std::thread::sleep(Duration::from_millis(40));
            }
            x * x
        })
        .unwrap();
    if let Some(rep) = rep {
        let ok = rep.results == (0..16u64).map(|x| x * x).collect::<Vec<_>>();
        say(format!("results={}", verdict(ok)));
        let mut heavy = vec![0usize; c.size()];
        for r in rep.timeline.records() {
            let parview::timeline::Lane::Engine(lane) = r.lane else {
                panic!("caller lane")
            };
            let (rank, _) = rep.lanes[lane];
            heavy[rank] += (r.start..r.end).filter(|&i| i < 8).count();
        }
        say(format!(
            "heavy={}",
            heavy
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        say(format!(
            "items={}",
            rep.loads
                .iter()
                .map(|l| l.items.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
}

fn failures_child(c: &Cluster) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let xs: Vec<u32> = if c.is_root() {
        (0..50).collect()
    } else {
        vec![]
    };
    for round in 0..2 {
        // Items 17 and 31 panic wherever they run; every other item still runs.
        let r = c
            .load_balanced()
            .schedule(Schedule::Dynamic(2))
            .map(&xs, |&x| {
                if x == 17 || x == 31 {
                    panic!("deliberate panic at item {x}");
                }
                x + 1
            });
        match r {
            Err(ClusterMapError::Failed {
                rank,
                index,
                message,
            }) => say(format!(
                "fail{round}=index:{index},rank_ok:{},msg_ok:{}",
                rank < c.size(),
                message.contains("deliberate panic at item 17")
            )),
            Ok(None) => {}
            other => say(format!("fail{round}=BAD:{other:?}").replace(' ', "_")),
        }
        // The cluster stays usable.
        let ok = c.load_balanced().map(&xs, |&x| x * 2).unwrap();
        if let Some(v) = ok {
            say(format!(
                "after{round}={}",
                verdict(v == (0..50).map(|x| x * 2).collect::<Vec<u32>>())
            ));
        }
    }
    // Abort before the map: nothing is handed out.
    let h = AbortHandle::new();
    h.abort();
    let r = c.load_balanced().abortable(&h).map_range(0..100, |i| i);
    if c.is_root() {
        say(format!(
            "abort_before={}",
            verdict(matches!(
                r,
                Err(ClusterMapError::Aborted {
                    done: 0,
                    total: 100
                })
            ))
        ));
    }
    // Abort from another thread of the root while the map runs.
    let h = AbortHandle::new();
    let stopper = c.is_root().then(|| {
        let h = h.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            h.abort();
        })
    });
    let r = c
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .abortable(&h)
        .map_range(0..2000, |i| {
            std::thread::sleep(Duration::from_millis(5));
            i
        });
    if let Some(t) = stopper {
        t.join().unwrap();
        say(format!(
            "abort_during={}",
            verdict(
                matches!(r, Err(ClusterMapError::Aborted { done, total: 2000 }) if done < 2000)
            )
        ));
    }
    let ok = c.load_balanced().map_range(0..10, |i| i).unwrap();
    if let Some(v) = ok {
        say(format!(
            "after_abort={}",
            verdict(v == (0..10).collect::<Vec<_>>())
        ));
    }
}

/// `map_async`: get, progress, timings and timeline, failures, a prompt abort on every rank,
/// and the in-flight rule (other cluster calls wait for the background map).
fn async_child(c: &Cluster, n: usize) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let root = c.is_root();
    let samples: Vec<Sample> = if root {
        (0..n).map(sample).collect()
    } else {
        vec![]
    };
    // get / progress / timings / timeline.
    let ar = c
        .load_balanced()
        .schedule(Schedule::Dynamic(3))
        .map_async(samples, |s| {
            std::thread::sleep(Duration::from_micros(300));
            (s.id, s.xs.iter().sum::<f64>(), s.name.len())
        });
    #[cfg(feature = "progress")]
    ar.progress_bar("map_async"); // hidden: stderr is a pipe
    let mut last = 0;
    let mut monotonic = true;
    while !ar.wait_timeout(Duration::from_millis(5)) {
        let (done, total) = ar.progress();
        monotonic &= done >= last && done <= total && total == if root { n } else { 0 };
        last = done;
    }
    say(format!("progress_monotonic={}", verdict(monotonic)));
    if root {
        say(format!("progress_end={}", verdict(ar.progress() == (n, n))));
        let t = ar.timings();
        say(format!(
            "timings={}",
            verdict(
                (n == 0 || t.serial_time > Duration::ZERO)
                    && t.wall_time <= ar.elapsed()
                    && t == ar.timings()
            )
        ));
        let engines: usize = c.rank_workers().iter().sum();
        let tl = ar.timeline();
        say(format!(
            "async_timeline={}",
            verdict(
                tl.is_some_and(|tl| tl.items() == n && tl.engines() == engines)
                    && ar.timeline().is_none()
            )
        ));
    }
    match ar.get() {
        Ok(Some(v)) => {
            let want: Vec<(u32, f64, usize)> = (0..n)
                .map(sample)
                .map(|s| (s.id, s.xs.iter().sum::<f64>(), s.name.len()))
                .collect();
            say(format!("async_get={}", verdict(v == want)));
        }
        Ok(None) => say(format!("async_get={}", verdict(!root))),
        Err(e) => say(format!("async_get=BAD:{e}").replace(' ', "_")),
    }
    // A panicking item comes back naming its rank.
    let xs: Vec<u32> = if root { (0..50).collect() } else { vec![] };
    let r = c
        .load_balanced()
        .schedule(Schedule::Dynamic(2))
        .map_async(xs.clone(), |&x| {
            if x == 17 || x == 31 {
                panic!("deliberate async panic at item {x}");
            }
            x
        })
        .get();
    match r {
        Err(ClusterMapError::Failed {
            rank,
            index,
            message,
        }) => say(format!(
            "async_fail=index:{index},rank_ok:{},msg_ok:{}",
            rank < c.size(),
            message.contains("deliberate async panic at item 17")
        )),
        Ok(None) if !root => say("async_fail=none".into()),
        other => say(format!("async_fail=BAD:{other:?}").replace(' ', "_")),
    }
    // Abort from the root stops every rank's work promptly: with Static, each engine owns one
    // block of 20,000 / engines items of 1 ms; after the abort the items left are skipped.
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let total = 20_000;
    let ar = c
        .load_balanced()
        .schedule(Schedule::Static)
        .map_range_async(0..total, |i| {
            RAN.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
            i
        });
    if root {
        std::thread::sleep(Duration::from_millis(200));
        ar.abort();
    }
    let r = ar.get();
    if root {
        say(format!(
            "async_abort={}",
            verdict(
                matches!(r, Err(ClusterMapError::Aborted { done, total: t }) if done < total && t == total)
            )
        ));
    } else {
        say(format!(
            "async_abort_rank={}",
            verdict(matches!(r, Ok(None)))
        ));
    }
    say(format!("abort_ran={}", RAN.load(Ordering::Relaxed)));
    // The view's AbortHandle, aborted from another thread of the root, stops a map_async too.
    let h = AbortHandle::new();
    let stopper = root.then(|| {
        let h = h.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            h.abort();
        })
    });
    let r = c
        .load_balanced()
        .schedule(Schedule::Static)
        .abortable(&h)
        .map_range_async(0..total, |i| {
            std::thread::sleep(Duration::from_millis(1));
            i
        })
        .get();
    if let Some(t) = stopper {
        t.join().unwrap();
        say(format!(
            "async_abort_handle={}",
            verdict(matches!(r, Err(ClusterMapError::Aborted { done, .. }) if done < total))
        ));
    }
    // Dropping the root's unfinished handle aborts the map too; the cluster stays usable.
    let ar = c
        .load_balanced()
        .schedule(Schedule::Static)
        .map_range_async(0..total, |i| {
            std::thread::sleep(Duration::from_millis(1));
            i
        });
    drop(ar);
    let view = c.load_balanced();
    #[cfg(feature = "progress")]
    let view = view.progress_bar("after drop");
    let ok = view.map_range_async(0..10, |i| i).get().unwrap();
    if let Some(v) = ok {
        say(format!(
            "after_drop={}",
            verdict(v == (0..10).collect::<Vec<_>>())
        ));
    }
    // The in-flight rule: collectives called while a map_async runs wait for it, on every
    // rank, and run in the same order everywhere.
    let slow = |i: usize| {
        std::thread::sleep(Duration::from_millis(2));
        i * 3
    };
    let ar = c
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map_range_async(0..150, slow);
    c.barrier();
    let waited = ar.ready();
    let sync = c.load_balanced().map_range(0..20, |i| i + 1).unwrap();
    let dv = c.direct().apply(|rank| rank).unwrap();
    let sum = c.all_map_reduce(0..100, 7, |i| i as u64, |a, b| a + b);
    // Two background maps back to back: the second starts when the first has ended.
    let a1 = c.load_balanced().map_range_async(0..60, slow);
    let a2 = c.load_balanced().map_range_async(0..40, |i| i + 7);
    let (g0, g1, g2) = (ar.get(), a1.get(), a2.get());
    let ok = waited
        && sum == Some(4950)
        && match (sync, dv, g0, g1, g2) {
            (Some(s), Some(d), Ok(Some(v0)), Ok(Some(v1)), Ok(Some(v2))) => {
                s == (1..=20).collect::<Vec<_>>()
                    && d == (0..c.size()).collect::<Vec<_>>()
                    && v0 == (0..150).map(|i| i * 3).collect::<Vec<_>>()
                    && v1 == (0..60).map(|i| i * 3).collect::<Vec<_>>()
                    && v2 == (7..47).collect::<Vec<_>>()
            }
            (None, None, Ok(None), Ok(None), Ok(None)) => !root,
            _ => false,
        };
    say(format!("inflight={}", verdict(ok)));
    // A handle leaked with mem::forget: the cluster's Drop waits for the map before MPI ends.
    std::mem::forget(c.load_balanced().map_range_async(0..30, slow));
}

/// `imap_unordered`: every index exactly once (also with a panicking item), nothing on the
/// other ranks, and an iterator dropped early aborts the rest.
fn imap_child(c: &Cluster, n: usize) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let root = c.is_root();
    let words: Vec<String> = if root {
        (0..n).map(|i| "w".repeat(i % 9)).collect()
    } else {
        vec![]
    };
    for (k, s) in SCHEDULES.iter().enumerate() {
        let mut seen = vec![0usize; n];
        let mut right = true;
        let mut count = 0;
        let mut it = c
            .load_balanced()
            .schedule(*s)
            .imap_unordered(words.clone(), |w| {
                if w.len() == 5 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                w.len()
            });
        let (_, total) = it.progress();
        right &= total == if root { n } else { 0 };
        for (i, r) in it.by_ref() {
            count += 1;
            seen[i] += 1;
            right &= r == Ok(i % 9);
        }
        if root {
            say(format!(
                "imap{k}={}",
                verdict(
                    right && count == n && seen.iter().all(|&x| x == 1) && it.progress() == (n, n)
                )
            ));
        } else {
            say(format!("imap_rank{k}={}", verdict(count == 0)));
        }
    }
    // A panicking item: its index comes as an error naming the rank, every other index Ok.
    let xs: Vec<u32> = if root {
        (0..n as u32).collect()
    } else {
        vec![]
    };
    let mut errs = Vec::new();
    let mut oks = 0;
    for (i, r) in c
        .load_balanced()
        .schedule(Schedule::Dynamic(4))
        .imap_unordered(xs, |&x| {
            if x == 13 {
                panic!("deliberate imap panic");
            }
            x
        })
    {
        match r {
            Ok(v) if v as usize == i => oks += 1,
            Ok(_) => {}
            Err(ClusterMapError::Failed {
                rank,
                index,
                message,
            }) if index == i && rank < c.size() && message.contains("deliberate imap panic") => {
                errs.push(i)
            }
            Err(_) => {}
        }
    }
    if root {
        say(format!(
            "imap_fail={}",
            verdict(errs == vec![13] && oks == n - 1)
        ));
    }
    // Dropped after a few results: the rest is aborted, the cluster stays usable.
    static RAN: AtomicUsize = AtomicUsize::new(0);
    let many: Vec<u64> = if root { (0..4000).collect() } else { vec![] };
    let mut it = c
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .imap_unordered(many, |&x| {
            RAN.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
            x
        });
    let first: Vec<_> = it.by_ref().take(3).collect();
    drop(it);
    // Waits for the aborted map to end on this rank (the in-flight rule).
    let ok = c.load_balanced().map_range(0..10, |i| i * 2).unwrap();
    say(format!("imap_ran={}", RAN.load(Ordering::Relaxed)));
    if let Some(v) = ok {
        say(format!(
            "imap_drop={}",
            verdict(first.len() == 3 && v == (0..10).map(|i| i * 2).collect::<Vec<_>>())
        ));
    }
}

/// A plain struct sent with the `Equivalence` fast path: derived through parview's re-exports
/// alone (the `mpi` attribute names the re-exported crate).
#[derive(parview::cluster::Equivalence, Default, Clone, Copy, Debug, PartialEq)]
#[mpi(crate = "::parview::cluster::mpi")]
struct Particle {
    x: [f64; 3],
    id: u64,
}

fn direct_child(c: &Cluster) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let ps: Vec<Particle> = if c.is_root() {
        (0..10u64)
            .map(|id| Particle {
                x: [id as f64, 1.0, 2.0],
                id,
            })
            .collect()
    } else {
        vec![]
    };
    let mine = c.scatter(&ps);
    let moved: Vec<Particle> = mine
        .iter()
        .map(|p| Particle {
            x: [p.x[0] * 2.0, p.x[1], p.x[2]],
            id: p.id,
        })
        .collect();
    if let Some(all) = c.gather(&moved) {
        let ok = all.len() == 10
            && all
                .iter()
                .enumerate()
                .all(|(i, p)| p.id == i as u64 && p.x[0] == 2.0 * i as f64);
        say(format!("derive={}", verdict(ok)));
    }
    let dv = c.direct();
    let names = dv.apply(|rank| format!("r{rank}")).unwrap();
    if let Some(names) = names {
        let want: Vec<String> = (0..c.size()).map(|r| format!("r{r}")).collect();
        say(format!("apply={}", verdict(names == want)));
    }
    let mut st = dv.init(|rank| vec![rank as u64; 2]).unwrap();
    let lens = dv.apply_with_state(&mut st, |rank, v| {
        v.push(rank as u64 * 10);
        v.len()
    });
    if let Some(lens) = lens.unwrap() {
        say(format!("with_state={}", verdict(lens == vec![3; c.size()])));
    }
    if let Some(all) = dv.pull(&st).unwrap() {
        let want: Vec<Vec<u64>> = (0..c.size() as u64).map(|r| vec![r, r, r * 10]).collect();
        say(format!("pull={}", verdict(all == want)));
    }
    // A panic on rank 1 is an error on every rank; the view stays usable.
    let r = dv.apply(|rank| {
        if rank == 1 {
            panic!("deliberate direct panic");
        }
        rank
    });
    say(format!(
        "direct_fail={}",
        verdict(
            matches!(&r, Err(ClusterMapError::Failed { rank: 1, message, .. }) if message.contains("deliberate direct panic"))
        )
    ));
    let again = dv.apply(|rank| rank * 2).unwrap();
    if let Some(v) = again {
        say(format!(
            "direct_after={}",
            verdict(v == (0..c.size()).map(|r| r * 2).collect::<Vec<_>>())
        ));
    }
}

fn timeline_child(c: &Cluster, n: usize) {
    let say = |kv: String| println!("RANK {} size={} {kv}", c.rank(), c.size());
    let xs: Vec<u64> = if c.is_root() {
        (0..n as u64).collect()
    } else {
        vec![]
    };
    let view = c.load_balanced().schedule(Schedule::Dynamic(3));
    #[cfg(feature = "progress")]
    let view = view.progress_bar("cluster test");
    let rep = view.map_report(&xs, |&x| x + 1).unwrap();
    if let Some(rep) = rep {
        let t = &rep.timeline;
        let engines: usize = c.rank_workers().iter().sum();
        let ok = t.engines() == engines
            && rep.lanes.len() == engines
            && t.items() == n
            && rep.loads.iter().map(|l| l.items).sum::<usize>() == n
            && rep.loads.iter().map(|l| l.chunks).sum::<usize>() == t.chunks()
            && t.records()
                .iter()
                .all(|r| r.began <= r.ended && r.ended <= t.wall_time());
        let mut covered = vec![0u8; n];
        for r in t.records() {
            for k in &mut covered[r.start..r.end] {
                *k += 1;
            }
        }
        say(format!(
            "timeline={}",
            verdict(ok && covered.iter().all(|&k| k == 1))
        ));
        let lanes_ok = rep.lanes.iter().enumerate().all(|(k, &(rank, e))| {
            rank < c.size()
                && e < c.rank_workers()[rank]
                && rep.lanes[..k].iter().filter(|l| l.0 == rank).count() == e
        });
        say(format!("lanes={}", verdict(lanes_ok)));
        let trace: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        say(format!(
            "trace={}",
            verdict(trace.to_string().contains("cluster load-balanced"))
        ));
        say(format!("svg={}", verdict(t.to_svg().contains("<svg"))));
    }
    // Static: one block per (rank, engine), so each rank gets as many chunks as it has engines.
    let rep = c
        .load_balanced()
        .schedule(Schedule::Static)
        .map_report(&xs, |&x| x)
        .unwrap();
    if let Some(rep) = rep {
        let ok = rep.results == xs
            && rep
                .loads
                .iter()
                .all(|l| l.chunks == c.rank_workers()[l.rank]);
        say(format!("static_blocks={}", verdict(ok)));
    }
}

// ---- parent side ----------------------------------------------------------

/// Runs this test binary's `mpi_child` test as `case`, under `mpirun -n np`
/// (or directly when `np` is `None`); panics if it is still running after
/// [`TIMEOUT`] (having killed it).
fn run_child(np: Option<usize>, case: &str, env: &[(&str, &str)]) -> Outcome {
    run_child_within(np, case, env, TIMEOUT).unwrap_or_else(|o| {
        panic!(
            "MPI child {case:?} (np={np:?}) still running after {TIMEOUT:?}: killed. \
             A hang means a rank is stuck in a collective.\n{}",
            o.dump()
        )
    })
}

/// Like [`run_child`], but returns `Err` with what was captured if the child ran longer than
/// `timeout` (it is then killed: see [`run_within`]).
fn run_child_within(
    np: Option<usize>,
    case: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Outcome, Outcome> {
    let mut cmd = child_command(np, CHILD_TEST);
    cmd.env_remove("PARVIEW_WORKERS");
    cmd.env(CHILD_VAR, case).envs(env.iter().copied());
    run_within(cmd, timeout)
}

fn run_ok(np: usize, case: &str, env: &[(&str, &str)]) -> Outcome {
    let o = run_child(Some(np), case, env);
    assert!(
        o.status.success(),
        "mpirun -n {np} {case} failed\n{}",
        o.dump()
    );
    let ranks = o.ranks();
    assert_eq!(
        ranks.keys().copied().collect::<Vec<_>>(),
        (0..np).collect::<Vec<_>>(),
        "every rank must report once\n{}",
        o.dump()
    );
    for (r, kv) in &ranks {
        assert_eq!(
            kv["size"],
            np.to_string(),
            "rank {r} sees the wrong world size\n{}",
            o.dump()
        );
    }
    o
}

#[test]
fn world_size_rank_and_workers() {
    for np in [2, 3] {
        let o = run_ok(np, "world", &[("PARVIEW_WORKERS", "1")]);
        for kv in o.ranks().values() {
            assert_eq!(kv["workers"], "1");
        }
    }
    // Default workers: the node's CPUs are shared, not oversubscribed, by
    // the ranks on it (bound ranks use their binding).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for np in [2, 3] {
        let o = run_ok(np, "world", &[]);
        for (r, kv) in o.ranks() {
            let w: usize = kv["workers"].parse().unwrap();
            assert!(
                w >= 1 && w * np <= cores.max(np),
                "rank {r}: {w} default workers x {np} ranks on {cores} CPUs\n{}",
                o.dump()
            );
        }
    }
}

/// Checks one `order` run: root's results, per-rank split, reductions.
fn check_order(np: usize, n: usize) {
    let n_s = n.to_string();
    let o = run_ok(np, "order", &[(N_VAR, &n_s), ("PARVIEW_WORKERS", "2")]);
    let ranks = o.ranks();
    for (r, kv) in &ranks {
        assert_eq!(
            kv["local"],
            partition(n, np, *r).len().to_string(),
            "rank {r} mapped the wrong share of {n} items\n{}",
            o.dump()
        );
        let want_sum = if n == 0 {
            "none".to_string()
        } else {
            (n as u64 * (n as u64 - 1) / 2).to_string()
        };
        assert_eq!(
            kv["allsum"],
            want_sum,
            "rank {r} all_map_reduce\n{}",
            o.dump()
        );
    }
    assert_eq!(o.root("par_map"), "ok", "{}", o.dump());
    assert_eq!(o.root("scatter_gather"), "ok", "{}", o.dump());
    assert_eq!(o.root("gather"), "ok", "{}", o.dump());
    let pool = Pool::builder().workers(1).build().unwrap();
    let want = map_reduce_local(&pool, 0..n, 16, harmonic_term, add)
        .map_or("none".to_string(), |h| format!("{:#x}", h.to_bits()));
    assert_eq!(o.root("reduce"), want, "{}", o.dump());
}

#[test]
fn par_map_keeps_input_order_with_uneven_split() {
    // 1003 is divisible by neither 2 nor 3.
    check_order(2, 1003);
    check_order(3, 1003);
}

#[test]
fn fewer_items_than_ranks() {
    check_order(3, 2);
}

#[test]
fn empty_input() {
    check_order(2, 0);
    check_order(3, 0);
}

#[test]
fn reductions_are_bitwise_equal_to_single_process() {
    // Single-process reference, computed here without MPI.
    let pool = Pool::builder().workers(2).build().unwrap();
    let pi = map_reduce_local(&pool, 0..PI_CHUNKS, 1, pi_chunk_hits, add).unwrap();
    let h = map_reduce_local(&pool, 0..H_N, H_LEAF, harmonic_term, add).unwrap();
    // The harmonic sum is order-sensitive: a plain left fold differs.
    let naive = (0..H_N).map(harmonic_term).fold(0.0, add);
    assert_ne!(
        naive.to_bits(),
        h.to_bits(),
        "test sum should be order-sensitive"
    );
    let (pi_s, h_s) = (
        format!("{:#x}", pi.to_bits()),
        format!("{:#x}", h.to_bits()),
    );

    for (np, workers) in [(1, "2"), (2, "1"), (3, "1"), (2, "2")] {
        let o = run_ok(np, "reduce", &[("PARVIEW_WORKERS", workers)]);
        let ctx = format!("{np} rank(s) x {workers} worker(s)\n{}", o.dump());
        assert_eq!(o.root("pi_hits"), pi_s, "pi hit count differs: {ctx}");
        assert_eq!(o.root("harmonic"), h_s, "float sum differs: {ctx}");
        for (r, kv) in o.ranks() {
            assert_eq!(kv["h_all"], h_s, "all_map_reduce on rank {r}: {ctx}");
        }
    }
    let estimate = 4.0 * pi / (PI_CHUNKS as f64 * PI_CHUNK as f64);
    assert!(
        (estimate - std::f64::consts::PI).abs() < 0.01,
        "pi ~ {estimate}"
    );
}

fn check_abort(case: &str, what: &str) {
    let o = run_child(Some(2), case, &[("PARVIEW_WORKERS", "2")]);
    assert!(
        !o.status.success(),
        "a panicking rank must fail the job\n{}",
        o.dump()
    );
    assert!(
        o.stderr.contains("rank 1 of 2 panicked") && o.stderr.contains(what),
        "the message must name the rank and the panic\n{}",
        o.dump()
    );
    assert!(!o.stdout.contains("survived=yes"), "{}", o.dump());
    assert!(o.elapsed < TIMEOUT, "{}", o.dump());
}

#[test]
fn panicking_rank_aborts_the_job() {
    check_abort("panic_main", "deliberate test panic on the main thread");
}

#[test]
fn panics_in_the_fast_path_and_reductions_come_back_to_the_root() {
    let o = run_ok(2, "panic_worker", &[("PARVIEW_WORKERS", "2")]);
    for key in [
        "par_map_panic",
        "scatter_gather_panic",
        "map_reduce_panic",
        "par_map_after",
    ] {
        assert_eq!(o.root(key), "ok", "{key}\n{}", o.dump());
    }
    let ranks = o.ranks();
    for key in ["par_map_panic", "scatter_gather_panic", "map_reduce_panic"] {
        assert_eq!(ranks[&1][key], "none", "{key} on rank 1\n{}", o.dump());
    }
    for (r, kv) in &ranks {
        assert_eq!(kv["all_map_reduce_panic"], "ok", "rank {r}\n{}", o.dump());
        assert_eq!(kv["survived"], "yes", "rank {r}\n{}", o.dump());
    }
}

#[test]
fn launcher_mismatch_is_reported() {
    // Started without mpirun but with a launcher's size variable, as when an
    // MPICH-launched job meets an Open MPI binary: MPI sees a world of 1.
    let o = run_child(None, "mismatch", &[("PMI_SIZE", "2")]);
    assert!(o.status.success(), "{}", o.dump());
    assert!(
        o.stdout.contains("MISMATCH var=PMI_SIZE launcher=2 mpi=1"),
        "{}",
        o.dump()
    );
}

#[test]
fn hung_job_is_killed_by_the_harness() {
    // The harness itself must never hang: a job that never ends is killed.
    let o = run_child_within(Some(2), "hang", &[], Duration::from_secs(3))
        .expect_err("the hanging job must time out");
    assert!(!o.status.success(), "{}", o.dump());
    assert!(
        o.elapsed < Duration::from_secs(20),
        "took {:?}\n{}",
        o.elapsed,
        o.dump()
    );
    assert!(!o.stdout.contains("survived=yes"), "{}", o.dump());
}

// ---- load-balanced maps, direct view (parent side) -------------------------

#[test]
fn load_balanced_maps_any_serde_type_in_order() {
    for (np, n) in [(2, 103), (3, 41), (4, 2), (2, 0)] {
        let n_s = n.to_string();
        let o = run_ok(np, "balanced", &[(N_VAR, &n_s), ("PARVIEW_WORKERS", "1")]);
        for (k, s) in SCHEDULES.iter().enumerate() {
            assert_eq!(
                o.root(&format!("sched{k}")),
                "ok",
                "{s:?} np={np} n={n}\n{}",
                o.dump()
            );
        }
        let ran: usize = o
            .ranks()
            .values()
            .map(|kv| kv["ran"].parse::<usize>().unwrap())
            .sum();
        assert_eq!(
            ran,
            SCHEDULES.len() * n,
            "every item runs exactly once\n{}",
            o.dump()
        );
        for (r, kv) in o.ranks() {
            assert_eq!(kv["zero_chunk"], "ok", "rank {r}\n{}", o.dump());
        }
    }
}

#[test]
fn uneven_items_are_shared_by_every_rank() {
    for np in [2, 3] {
        let o = run_ok(np, "uneven", &[("PARVIEW_WORKERS", "1")]);
        assert_eq!(o.root("results"), "ok", "{}", o.dump());
        let heavy: Vec<usize> = o
            .root("heavy")
            .split(',')
            .map(|h| h.parse().unwrap())
            .collect();
        assert_eq!(heavy.iter().sum::<usize>(), 8, "{}", o.dump());
        // Contiguous blocks would give all eight heavy items to rank 0 (and rank 1 on 3
        // ranks); on-demand chunks give every rank at least one.
        assert!(
            heavy.iter().all(|&h| h >= 1),
            "heavy items per rank {heavy:?}\n{}",
            o.dump()
        );
    }
}

#[test]
fn panicking_items_are_errors_and_the_cluster_stays_usable() {
    for np in [2, 3] {
        let o = run_ok(np, "failures", &[("PARVIEW_WORKERS", "2")]);
        for round in 0..2 {
            assert_eq!(
                o.root(&format!("fail{round}")),
                "index:17,rank_ok:true,msg_ok:true",
                "{}",
                o.dump()
            );
            assert_eq!(o.root(&format!("after{round}")), "ok", "{}", o.dump());
        }
        assert_eq!(o.root("abort_before"), "ok", "{}", o.dump());
        assert_eq!(o.root("abort_during"), "ok", "{}", o.dump());
        assert_eq!(o.root("after_abort"), "ok", "{}", o.dump());
        assert!(
            o.stderr.contains("caught: reported to the root"),
            "{}",
            o.dump()
        );
    }
}

#[test]
fn direct_view_over_ranks() {
    for np in [2, 4] {
        let o = run_ok(np, "direct", &[("PARVIEW_WORKERS", "1")]);
        for key in ["apply", "with_state", "pull", "direct_after", "derive"] {
            assert_eq!(o.root(key), "ok", "{key}\n{}", o.dump());
        }
        for (r, kv) in o.ranks() {
            assert_eq!(kv["direct_fail"], "ok", "rank {r}\n{}", o.dump());
        }
    }
}

#[test]
fn timeline_has_a_lane_per_rank_and_engine() {
    let o = run_ok(3, "timeline", &[(N_VAR, "200"), ("PARVIEW_WORKERS", "2")]);
    for key in ["timeline", "lanes", "trace", "svg", "static_blocks"] {
        assert_eq!(o.root(key), "ok", "{key}\n{}", o.dump());
    }
}

// ---- background maps (parent side) -------------------------------------------

fn check_async(np: usize, workers: &str, n: usize) {
    let n_s = n.to_string();
    let o = run_ok(np, "async", &[(N_VAR, &n_s), ("PARVIEW_WORKERS", workers)]);
    let ctx = || format!("np={np} workers={workers} n={n}\n{}", o.dump());
    for key in [
        "progress_end",
        "timings",
        "async_timeline",
        "async_abort",
        "async_abort_handle",
        "after_drop",
    ] {
        assert_eq!(o.root(key), "ok", "{key}: {}", ctx());
    }
    assert_eq!(
        o.root("async_fail"),
        "index:17,rank_ok:true,msg_ok:true",
        "{}",
        ctx()
    );
    let mut ran = 0;
    for (r, kv) in o.ranks() {
        for key in ["progress_monotonic", "async_get", "inflight"] {
            assert_eq!(kv[key], "ok", "rank {r} {key}: {}", ctx());
        }
        if r > 0 {
            assert_eq!(kv["async_fail"], "none", "rank {r}: {}", ctx());
            assert_eq!(kv["async_abort_rank"], "ok", "rank {r}: {}", ctx());
        }
        ran += kv["abort_ran"].parse::<usize>().unwrap();
    }
    // Without the abort reaching every rank's engines, each Static block would run to its
    // end (all 20,000 items).
    assert!(ran < 10_000, "{ran} items ran after an abort: {}", ctx());
}

#[test]
fn map_async_get_progress_abort_timings_and_the_in_flight_rule() {
    check_async(2, "1", 97);
    check_async(3, "1", 41);
    check_async(2, "2", 0);
}

#[test]
fn map_async_with_oversubscribed_ranks() {
    // 4 ranks x 2 workers on a machine with fewer cores.
    check_async(4, "2", 64);
}

#[test]
fn imap_unordered_yields_every_index_once() {
    for (np, n) in [(2, 101), (3, 37), (4, 16)] {
        let n_s = n.to_string();
        let o = run_ok(np, "imap", &[(N_VAR, &n_s), ("PARVIEW_WORKERS", "1")]);
        for k in 0..SCHEDULES.len() {
            assert_eq!(
                o.root(&format!("imap{k}")),
                "ok",
                "{:?} np={np}\n{}",
                SCHEDULES[k],
                o.dump()
            );
            for (r, kv) in o.ranks() {
                if r > 0 {
                    assert_eq!(kv[&format!("imap_rank{k}")], "ok", "rank {r}\n{}", o.dump());
                }
            }
        }
        assert_eq!(o.root("imap_fail"), "ok", "{}", o.dump());
        assert_eq!(o.root("imap_drop"), "ok", "{}", o.dump());
        let ran: usize = o
            .ranks()
            .values()
            .map(|kv| kv["imap_ran"].parse::<usize>().unwrap())
            .sum();
        assert!(
            ran < 4000,
            "dropping the iterator did not abort: {ran} items ran\n{}",
            o.dump()
        );
    }
}

#[test]
fn killed_rank_ends_the_job_naming_it() {
    let limit = Duration::from_secs(40);
    let o = run_child_within(Some(2), "killed", &[("PARVIEW_WORKERS", "1")], limit)
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
