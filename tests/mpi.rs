//! MPI integration tests (feature `mpi`).
//!
//! Each test re-executes this test binary under `mpirun -n N`, selecting the
//! single test `mpi_child` with `PARVIEW_MPI_CHILD=<case>`; the child runs the
//! rank body and prints lines `RANK r size=s key=value ...`, on which the
//! parent asserts. Every child run has a 60 s timeout: on expiry the whole
//! process group is killed and the test fails (never hangs).
//!
//! `mpirun` must be on PATH (`.ci/mpi-setup.sh` installs Open MPI); a missing
//! `mpirun` fails the tests. The Open MPI settings needed in containers (run
//! as root, oversubscribe, loopback only) are set here on the child command.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parview::Pool;
use parview::cluster::{Cluster, ClusterError, map_reduce_local, partition};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const CHILD_VAR: &str = "PARVIEW_MPI_CHILD";
const N_VAR: &str = "PARVIEW_TEST_N";
const CHILD_TEST: &str = "mpi_child";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Open MPI settings for CI containers, applied to every child run: run as
/// root, more ranks than cores, loopback only, and no cross-memory-attach
/// single copy (needs ptrace rights that containers often lack).
const OMPI_ENV: [(&str, &str); 6] = [
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ("OMPI_MCA_rmaps_base_oversubscribe", "1"),
    ("OMPI_MCA_btl_tcp_if_include", "lo"),
    ("OMPI_MCA_oob_tcp_if_include", "lo"),
    ("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
];

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
            let _ = c.par_map(&data, |x| {
                if rank == 1 {
                    panic!("deliberate test panic in a worker");
                }
                x + 1.0
            });
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
        other => panic!("unknown {CHILD_VAR} case {other:?}"),
    }
}

// ---- parent side ----------------------------------------------------------

#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Outcome {
    fn dump(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// `RANK r size=s k=v ...` lines merged per rank.
    fn ranks(&self) -> BTreeMap<usize, BTreeMap<String, String>> {
        let mut out: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
        for line in self.stdout.lines() {
            // libtest's "test mpi_child ... " may precede a report on its line.
            let Some(at) = line.find("RANK ") else {
                continue;
            };
            let mut words = line[at..].split_whitespace();
            words.next();
            let rank: usize = words.next().and_then(|r| r.parse().ok()).expect(line);
            let entry = out.entry(rank).or_default();
            for kv in words {
                let (k, v) = kv.split_once('=').expect(line);
                entry.insert(k.to_string(), v.to_string());
            }
        }
        out
    }

    fn root(&self, key: &str) -> String {
        self.ranks()
            .get(&0)
            .and_then(|r| r.get(key).cloned())
            .unwrap_or_else(|| panic!("rank 0 did not report {key}\n{}", self.dump()))
    }
}

/// Serialises the child runs: 2 cores, and mpirun startup is the slow part.
static LOCK: Mutex<()> = Mutex::new(());

fn find_mpirun() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("mpirun"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mpirun not found on PATH: these tests need Open MPI. Install it with \
                 `sudo .ci/mpi-setup.sh` (apt: libopenmpi-dev openmpi-bin libclang), then \
                 rerun `cargo test --features mpi --test mpi`"
            )
        })
}

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

/// Kills the process group `pgid` (mpirun and its ranks) with `signal`.
fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Like [`run_child`], but returns `Err` with what was captured if the
/// child ran longer than `timeout` (it is then terminated: SIGTERM to its
/// process group, which makes mpirun stop its ranks, then SIGKILL).
fn run_child_within(
    np: Option<usize>,
    case: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Outcome, Outcome> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;

    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match np {
        Some(np) => {
            let mut cmd = Command::new(find_mpirun());
            cmd.arg("-n").arg(np.to_string()).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    cmd.args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"]);
    for var in parview::cluster::LAUNCHER_SIZE_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("PARVIEW_WORKERS");
    cmd.envs(OMPI_ENV)
        .env(CHILD_VAR, case)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0); // own group, so a timeout kills mpirun and its ranks
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawning the MPI child");
    let pgid = child.id();
    // Readers report through channels: a straggler holding a pipe open must
    // not block the test.
    let reader = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            let _ = tx.send(s);
        });
        rx
    };
    let out_rx = reader(Box::new(child.stdout.take().unwrap()));
    let err_rx = reader(Box::new(child.stderr.take().unwrap()));
    let collect = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "<output not closed: a process outlived the job>".into())
    };
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the MPI child") {
            break status;
        }
        if !timed_out && start.elapsed() > timeout {
            timed_out = true;
            kill_group(pgid, "-TERM");
        }
        if timed_out && start.elapsed() > timeout + Duration::from_secs(5) {
            kill_group(pgid, "-KILL");
            let _ = child.kill();
            break child.wait().expect("reaping the killed child");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if timed_out {
        kill_group(pgid, "-KILL"); // stragglers
    }
    let o = Outcome {
        status,
        stdout: collect(out_rx),
        stderr: collect(err_rx),
        elapsed: start.elapsed(),
    };
    if timed_out { Err(o) } else { Ok(o) }
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
    check_abort("panic_worker", "deliberate test panic in a worker");
    check_abort("panic_main", "deliberate test panic on the main thread");
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
