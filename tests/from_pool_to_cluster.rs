//! The two programs of FROM_POOL_TO_CLUSTER.md, checked: the local version's numbers, and the
//! cluster version under `mpirun -n 2` giving the same numbers (60 s watchdog).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parview::{Pool, Schedule};
use serde::{Deserialize, Serialize};

/// One unit of work: a number to test, with an id to report.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Job {
    id: u32,
    n: u64,
}

fn make_jobs() -> Vec<Job> {
    // Uneven: big primes cost far more than small composites.
    (0..64)
        .map(|i| Job {
            id: i,
            n: if i < 32 {
                1_000_000_007 + 2 * i as u64
            } else {
                1000 + i as u64
            },
        })
        .collect()
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// Monte-Carlo pi hits of chunk `k`: its own random stream, so any engine (or rank) can run it.
fn pi_hits(k: usize) -> u64 {
    use parview::rand::RngExt;
    let mut rng = parview::rng::stream(42, k as u64);
    (0..10_000)
        .filter(|_| {
            let (x, y): (f64, f64) = (rng.random(), rng.random());
            x * x + y * y < 1.0
        })
        .count() as u64
}

// ---- the local program -------------------------------------------------------------------

fn local_version() -> (Vec<(u32, bool)>, u64) {
    let pool = Pool::new();
    let jobs = make_jobs();
    let primes = pool
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map(&jobs, |j| (j.id, is_prime(j.n)));
    let hits = pool
        .par_map_reduce(0..100usize, pi_hits, |a, b| a + b)
        .unwrap();
    (primes, hits)
}

// ---- the cluster program -----------------------------------------------------------------

fn cluster_version() -> Option<(Vec<(u32, bool)>, u64)> {
    let cluster = parview::cluster::Cluster::init().expect("MPI init");
    let jobs = if cluster.is_root() {
        make_jobs()
    } else {
        Vec::new()
    };
    let primes = cluster
        .load_balanced()
        .schedule(Schedule::Dynamic(1))
        .map(&jobs, |j| (j.id, is_prime(j.n)))
        .expect("no job panicked");
    let hits = cluster.map_reduce(0..100, 1, pi_hits, |a, b| a + b);
    primes.zip(hits) // Some on the root only
}

// ---- checks --------------------------------------------------------------------------------

#[test]
fn local_version_numbers() {
    if std::env::var_os("PARVIEW_P2C_CHILD").is_some() {
        return;
    }
    let (primes, hits) = local_version();
    assert_eq!(primes.len(), 64);
    assert!(
        primes
            .iter()
            .enumerate()
            .all(|(i, &(id, _))| id == i as u32)
    );
    let count = primes.iter().filter(|p| p.1).count();
    let want = make_jobs().iter().filter(|j| is_prime(j.n)).count();
    assert_eq!(count, want);
    let pi = 4.0 * hits as f64 / 1e6;
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "pi ~ {pi}");
    // Same bits as a serial left-to-right map over the same streams? Integer sum: exact.
    assert_eq!(hits, (0..100).map(pi_hits).sum::<u64>());
}

/// The rank body under mpirun.
#[test]
fn cluster_child() {
    if std::env::var_os("PARVIEW_P2C_CHILD").is_none() {
        return;
    }
    if let Some((primes, hits)) = cluster_version() {
        let (lp, lh) = local_version();
        println!("P2C same={}", primes == lp && hits == lh);
    }
}

#[test]
fn cluster_version_gives_the_same_numbers() {
    if std::env::var_os("PARVIEW_P2C_CHILD").is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("mpirun")
        .args(["-n", "2"])
        .arg(&exe)
        .args([
            "--exact",
            "cluster_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PARVIEW_P2C_CHILD", "1")
        .env("PARVIEW_WORKERS", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("OMPI_MCA_btl_tcp_if_include", "lo")
        .env("OMPI_MCA_oob_tcp_if_include", "lo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("mpirun on PATH (.ci/mpi-setup.sh installs Open MPI)");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("watchdog: mpirun still running after 60 s, killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("P2C same=true"),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
