//! The parent side of the MPI tests (`mpi.rs`, `mpi_farm.rs`, `mpi_checkpoint.rs`): run this
//! test binary's child test under `mpirun` (or alone) with a watchdog, and read what the ranks
//! reported (`RANK r k=v ...` lines). Included with `#[path = "common/mpirun.rs"] mod mpirun;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Open MPI settings for CI containers: run as root, oversubscribe the 2 cores, loopback only.
pub const OMPI_ENV: [(&str, &str); 6] = [
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ("OMPI_MCA_rmaps_base_oversubscribe", "1"),
    ("OMPI_MCA_btl_tcp_if_include", "lo"),
    ("OMPI_MCA_oob_tcp_if_include", "lo"),
    ("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
];

/// What a child job did.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// Everything captured, for a failing assertion's message.
    pub fn dump(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// `RANK r size=s k=v ...` lines merged per rank.
    pub fn ranks(&self) -> BTreeMap<usize, BTreeMap<String, String>> {
        let mut out: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
        for line in self.stdout.lines() {
            // libtest's "test child ... " may precede a report on its line.
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

    /// What rank 0 reported for `key`.
    pub fn root(&self, key: &str) -> String {
        self.ranks()
            .get(&0)
            .and_then(|r| r.get(key).cloned())
            .unwrap_or_else(|| panic!("rank 0 did not report {key}\n{}", self.dump()))
    }

    /// `key` on every rank that reported it.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.ranks()
            .values()
            .filter_map(|r| r.get(key).cloned())
            .collect()
    }

    /// The `runs` (items run) of every rank, summed.
    pub fn runs(&self) -> usize {
        let all = self.all("runs");
        assert!(!all.is_empty(), "no rank reported runs\n{}", self.dump());
        all.iter()
            .map(|r| r.parse::<usize>().expect("a count"))
            .sum()
    }
}

/// Serialises the child runs: few cores, and mpirun startup is the slow part.
static LOCK: Mutex<()> = Mutex::new(());

/// `mpirun` on `PATH`, or a panic that says how to install it.
pub fn mpirun() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("mpirun"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mpirun not found on PATH: these tests need Open MPI. Install it with \
                 `sudo .ci/mpi-setup.sh` (apt: libopenmpi-dev openmpi-bin libclang)"
            )
        })
}

/// This test binary.
pub fn exe() -> PathBuf {
    std::env::current_exe().expect("current_exe")
}

/// `mpirun -n np <this test binary>` running only the test `child_test` (or the binary alone
/// when `np` is `None`), with [`OMPI_ENV`] and no launcher size variables inherited.
pub fn child_command(np: Option<usize>, child_test: &str) -> Command {
    let mut cmd = match np {
        Some(np) => {
            let mut c = Command::new(mpirun());
            c.arg("-n").arg(np.to_string()).arg(exe());
            c
        }
        None => Command::new(exe()),
    };
    cmd.args(child_args(child_test));
    child_env(&mut cmd);
    cmd
}

/// The arguments that make this test binary run only the test `child_test`.
pub fn child_args(child_test: &str) -> [&str; 4] {
    ["--exact", child_test, "--nocapture", "--test-threads=1"]
}

/// [`OMPI_ENV`], and no launcher size variables inherited from the test's own environment.
pub fn child_env(cmd: &mut Command) {
    for var in parview::cluster::LAUNCHER_SIZE_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(OMPI_ENV);
}

/// Kills the process group `pgid` (mpirun and its ranks) with `signal`.
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` (one job at a time) with a watchdog: `Err` with what was captured if it ran
/// longer than `timeout` — it is then terminated: SIGTERM to its process group, which makes
/// mpirun stop its ranks, then SIGKILL.
pub fn run_within(mut cmd: Command, timeout: Duration) -> Result<Outcome, Outcome> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;

    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0); // own group, so a timeout kills mpirun and its ranks
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawning the MPI child");
    let pgid = child.id();
    // Readers report through channels: a straggler holding a pipe open must not block the test.
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
