//! The pool itself: building it (`workers(0)`, `PARVIEW_WORKERS`), many threads submitting to
//! one pool, dropping it (while others submit, or from inside its own engine), idle engines
//! sleeping, and `current_engine` telling pools apart.

mod common;

use common::{SCHEDULES, panic_message_of, pool, within};
use parview::{BuildError, Pool};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Many submitters

#[test]
fn sixteen_threads_submitting_200_maps_each_to_one_pool() {
    within(120, || {
        for p in [3usize, 8] {
            let pool = pool(p);
            std::thread::scope(|sc| {
                for t in 0..16u64 {
                    let pool = &pool;
                    sc.spawn(move || {
                        for k in 0..200u64 {
                            let s = SCHEDULES[(t + k) as usize % SCHEDULES.len()];
                            let n = (t * 7 + k) % 64 + 1;
                            let v = pool.schedule(s).map(0..n, |i| i * t + k);
                            assert_eq!(
                                v,
                                (0..n).map(|i| i * t + k).collect::<Vec<_>>(),
                                "t={t} k={k}"
                            );
                        }
                    });
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Dropping pools

#[test]
fn build_map_drop_200_times() {
    within(120, || {
        for k in 0..200u64 {
            let pool = pool(1 + (k % 4) as usize);
            let v = pool.par_map(0..(k + 1), |i| i + k);
            assert_eq!(v.len() as u64, k + 1);
            assert_eq!(v[k as usize], 2 * k);
            drop(pool);
        }
    });
}

#[test]
fn dropping_the_main_handle_while_other_threads_submit() {
    within(120, || {
        for round in 0..10u64 {
            let pool = Arc::new(pool(3));
            let results = Arc::new(Mutex::new(Vec::new()));
            let mut hs = Vec::new();
            for t in 0..4u64 {
                let pool = pool.clone();
                let results = results.clone();
                hs.push(std::thread::spawn(move || {
                    for k in 0..50u64 {
                        let v = pool.par_map(0..100u64, |i| i + k + t);
                        assert_eq!(v, (0..100u64).map(|i| i + k + t).collect::<Vec<_>>());
                        results.lock().unwrap().push((t, k));
                    }
                }));
            }
            drop(pool); // the last thread to finish drops the pool
            for h in hs {
                h.join().expect("submitter thread failed");
            }
            assert_eq!(
                results.lock().unwrap().len(),
                200,
                "round {round}: a result was lost"
            );
        }
    });
}

#[test]
fn last_pool_handle_dropped_inside_its_own_engine_does_not_hang() {
    within(60, || {
        for _ in 0..20 {
            let pool = Arc::new(pool(2));
            let (tx, rx) = std::sync::mpsc::channel();
            let inner = pool.clone();
            pool.spawn(move || {
                let v = inner.par_map(0..10u32, |i| i + 1);
                drop(inner); // may be the last handle, dropped on an engine
                tx.send(v).unwrap();
            });
            drop(pool);
            let v = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("spawned task never ran");
            assert_eq!(v, (1..=10u32).collect::<Vec<_>>());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Building: worker counts

#[test]
fn zero_workers_is_a_named_build_error() {
    let e = Pool::builder().workers(0).build().unwrap_err();
    assert!(matches!(e, BuildError::ZeroWorkers), "{e:?}");
    assert!(e.to_string().contains("workers"), "{e}");
}

// PARVIEW_WORKERS is read from the environment, so it is tested in child processes of this very
// test binary (setting it in-process would race the other tests).

const CHILD_ENV: &str = "PARVIEW_TEST_CHILD";

#[test]
fn env_child_probe() {
    let Ok(expect) = std::env::var(CHILD_ENV) else {
        return; // only meaningful inside the child process
    };
    let value = std::env::var("PARVIEW_WORKERS").expect("child runs with PARVIEW_WORKERS set");
    if expect == "err" {
        match Pool::builder().build() {
            Err(BuildError::BadEnv { var, value: v }) => {
                assert_eq!(var, "PARVIEW_WORKERS");
                assert_eq!(v, value);
            }
            other => panic!("expected BadEnv, got {other:?}"),
        }
        let e = Pool::builder().build().unwrap_err().to_string();
        assert!(e.contains("PARVIEW_WORKERS") && e.contains(&value), "{e}");
        assert!(parview::default_workers().is_err());
        let msg = panic_message_of(Pool::new);
        assert!(
            msg.contains("PARVIEW_WORKERS") && msg.contains(&value),
            "{msg}"
        );
        // An explicit count does not read the variable.
        assert_eq!(Pool::builder().workers(2).build().unwrap().workers(), 2);
    } else {
        let want: usize = expect.parse().unwrap();
        assert_eq!(Pool::builder().build().unwrap().workers(), want);
        assert_eq!(parview::default_workers().unwrap(), want);
        assert_eq!(Pool::global().workers(), want);
        assert_eq!(parview::par_map(0..10u32, |i| i).len(), 10);
    }
    println!("ENV-CHILD-RAN expect={expect}");
}

fn run_env_child(value: &str, expect: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "env_child_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, expect)
        .env("PARVIEW_WORKERS", value)
        .output()
        .expect("run child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child with PARVIEW_WORKERS={value:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("ENV-CHILD-RAN expect={expect}")),
        "the child probe did not run:\n{stdout}\n{stderr}"
    );
}

#[test]
fn parview_workers_env_is_validated_and_used() {
    within(120, || {
        run_env_child("abc", "err");
        run_env_child("0", "err");
        run_env_child("-2", "err");
        run_env_child("3", "3");
        run_env_child(" 5 ", "5");
    });
}

// ---------------------------------------------------------------------------------------------
// Idle pool sleeps

/// CPU time (utime + stime, in clock ticks) of this process's threads whose name starts with
/// `prefix`.
#[cfg(target_os = "linux")]
fn cpu_ticks_of_threads(prefix: &str) -> (u64, usize) {
    let mut total = 0;
    let mut count = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields[11].parse().unwrap();
        let stime: u64 = fields[12].parse().unwrap();
        total += utime + stime;
        count += 1;
    }
    (total, count)
}

#[cfg(target_os = "linux")]
#[test]
fn idle_pool_sleeps() {
    within(60, || {
        let ticks_per_s = 100.0; // USER_HZ on Linux
        let pool = Pool::builder()
            .workers(4)
            .spin(Duration::from_millis(1))
            .thread_name(|i| format!("idlprb-{i}"))
            .build()
            .unwrap();
        // Some work first, so that the engines have been awake.
        assert_eq!(pool.par_map(0..10_000u64, |i| i * 2).len(), 10_000);
        std::thread::sleep(Duration::from_millis(100));
        let (t0, count) = cpu_ticks_of_threads("idlprb-");
        assert_eq!(
            count, 4,
            "could not find the pool's threads in /proc/self/task"
        );
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let (t1, _) = cpu_ticks_of_threads("idlprb-");
        let wall = w0.elapsed().as_secs_f64();
        let cpu = (t1 - t0) as f64 / ticks_per_s;
        assert!(
            cpu < 0.05 * wall,
            "idle engines burned {cpu:.3} s of CPU over {wall:.3} s of wall time"
        );
        // And they still wake up for work.
        assert_eq!(pool.par_map(0..100u64, |i| i + 1)[99], 100);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn idle_process_sleeps_in_child() {
    // The whole-process measurement of the issue, isolated in a child process.
    if std::env::var("PARVIEW_TEST_IDLE_CHILD").is_ok() {
        let pool = Pool::builder()
            .workers(4)
            .spin(Duration::from_millis(1))
            .build()
            .unwrap();
        assert_eq!(pool.par_map(0..1000u64, |i| i).len(), 1000);
        std::thread::sleep(Duration::from_millis(100));
        let read = || {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        };
        let t0 = read();
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let cpu = (read() - t0) as f64 / 100.0;
        let wall = w0.elapsed().as_secs_f64();
        assert!(
            cpu < 0.05 * wall,
            "process burned {cpu:.3} s CPU over {wall:.3} s idle"
        );
        println!("IDLE-CHILD-RAN");
        return;
    }
    within(60, || {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "idle_process_sleeps_in_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PARVIEW_TEST_IDLE_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("IDLE-CHILD-RAN"), "{stdout}");
    });
}

// ---------------------------------------------------------------------------------------------
// Which engine

#[test]
fn engine_of_pool_is_not_engine_of_global() {
    let pool = pool(2);
    let v = pool.direct().apply(|_| {
        (
            Pool::global().current_engine(),
            pool.current_engine().is_some(),
        )
    });
    assert!(v.iter().all(|&(g, mine)| g.is_none() && mine));
    let seen: HashSet<Option<usize>> = pool
        .direct()
        .apply(|_| pool.current_engine())
        .into_iter()
        .collect();
    assert_eq!(seen.len(), 2);
}
