//! Checkpoint and resume (`LoadBalancedView::checkpoint`): a map killed with SIGKILL resumes
//! from its log; torn tails are cut off; corrupt logs and logs of other maps are refused.

mod common;
use common::{SCHEDULES, pool, within};
use parview::{CheckpointError, MapError, Schedule};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PARVIEW_CHECKPOINT_CHILD_DIR";
const KILL_N: u64 = 3000;
const CHILD_WORKERS: usize = 3;
const CHILD_CHUNK: usize = 2;

/// The item function: float work whose bits a resumed run must reproduce.
fn work(x: &u64) -> f64 {
    (0..40).fold(*x as f64 + 0.1, |a, k| {
        (a * 1.000_001 + k as f64).sqrt() + 1e-3 / (a + 1.0)
    })
}

fn clean(xs: &[u64]) -> Vec<u64> {
    xs.iter().map(|x| work(x).to_bits()).collect()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("parview-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Child mode: run by `sigkill_mid_map_then_resume` as a separate process (this test binary,
/// filtered to this test, with `CHILD_ENV` set); a no-op in a normal test run. Notes each item
/// it starts in `ran`, then works slowly enough to be killed mid-map.
#[test]
fn child_mode() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let ran = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ran"))
            .expect("open ran"),
    );
    let xs: Vec<u64> = (0..KILL_N).collect();
    let p = pool(CHILD_WORKERS);
    let _ = p
        .schedule(Schedule::Dynamic(CHILD_CHUNK))
        .checkpoint(dir.join("log"))
        .sync_every(Duration::from_millis(50))
        .map(&xs, |x| {
            ran.lock()
                .unwrap()
                .write_all(format!("{x}\n").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
            work(x)
        });
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(p: &Path) -> Vec<u64> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn sigkill_mid_map_then_resume() {
    within(180, || {
        let dir = scratch("kill");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_mode", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut child = KillOnDrop(child);
        let t0 = Instant::now();
        while lines(&dir.join("ran")).len() < 100 {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "the child did not start 100 items in 90 s"
            );
            if let Some(st) = child.0.try_wait().expect("try_wait") {
                panic!("the child exited before the kill: {st}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.0.kill().expect("SIGKILL the child"); // Child::kill is SIGKILL on Unix
        let status = child.0.wait().expect("wait child");
        assert!(!status.success(), "killed, not finished");
        let ran_by_child: BTreeSet<u64> = lines(&dir.join("ran")).into_iter().collect();

        // Resume in this process, with another pool size and schedule.
        let xs: Vec<u64> = (0..KILL_N).collect();
        let resumed = Mutex::new(Vec::new());
        let v = pool(2)
            .schedule(Schedule::Guided(1))
            .checkpoint(dir.join("log"))
            .map(&xs, |x| {
                resumed.lock().unwrap().push(*x);
                work(x)
            })
            .expect("resume");
        assert_eq!(bits(&v), clean(&xs), "bitwise equal to a clean run");

        let resumed = resumed.into_inner().unwrap();
        let set: BTreeSet<u64> = resumed.iter().copied().collect();
        assert_eq!(set.len(), resumed.len(), "an item ran twice in the resume");
        let logged: BTreeSet<u64> = xs.iter().copied().filter(|x| !set.contains(x)).collect();
        assert!(!logged.is_empty(), "the log kept the finished chunks");
        assert!(
            logged.is_subset(&ran_by_child),
            "the log holds results the child never computed"
        );
        // Recomputed = started by the child but not in its log: at most the items in flight,
        // one chunk per participant (the caller and `P - 1` engines).
        let twice = set.intersection(&ran_by_child).count();
        eprintln!(
            "killed after {} items started: {} in the log, {} recomputed of which {twice} had started",
            ran_by_child.len(),
            logged.len(),
            set.len()
        );
        assert!(
            twice <= CHILD_WORKERS * CHILD_CHUNK,
            "{twice} items recomputed, more than the {} in flight",
            CHILD_WORKERS * CHILD_CHUNK
        );

        // A third run reads everything from the log.
        let v2 = pool(1)
            .load_balanced()
            .checkpoint(dir.join("log"))
            .map(&xs, |_| -> f64 { panic!("nothing may run") })
            .expect("complete log");
        assert_eq!(bits(&v2), clean(&xs));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn resume_after_err_is_bitwise_equal_under_every_schedule() {
    within(120, || {
        let dir = scratch("err");
        let xs: Vec<u64> = (0..700).collect();
        for (k, s) in SCHEDULES.iter().enumerate() {
            let log = dir.join(format!("log{k}"));
            let e = pool(3)
                .schedule(*s)
                .checkpoint(&log)
                .try_map(&xs, |x| if *x == 500 { Err(*x) } else { Ok(work(x)) })
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    CheckpointError::Map(MapError::Failed {
                        index: 500,
                        error: 500
                    })
                ),
                "{s}: {e:?}"
            );
            let ran = AtomicUsize::new(0);
            let other = SCHEDULES[(k + 3) % SCHEDULES.len()];
            let v = pool(2)
                .schedule(other)
                .checkpoint(&log)
                .try_map(&xs, |x| {
                    ran.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, u64>(work(x))
                })
                .unwrap();
            assert_eq!(bits(&v), clean(&xs), "{s} then {other}");
            assert!(ran.load(Ordering::Relaxed) < 700);
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn panics_are_logged_around_and_reported() {
    within(60, || {
        let dir = scratch("panic");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..300).collect();
        let e = pool(2)
            .schedule(Schedule::Dynamic(7))
            .checkpoint(&log)
            .map(&xs, |x| {
                assert!(*x != 123, "bad item");
                work(x)
            })
            .unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::Map(MapError::Panicked {
                index: 123,
                failed: 1,
                ..
            })
        ));
        // Every other item ran and was logged: the rerun computes exactly item 123.
        let ran = Mutex::new(Vec::new());
        let v = pool(2)
            .load_balanced()
            .checkpoint(&log)
            .map(&xs, |x| {
                ran.lock().unwrap().push(*x);
                work(x)
            })
            .unwrap();
        assert_eq!(ran.into_inner().unwrap(), vec![123]);
        assert_eq!(bits(&v), clean(&xs));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Writes a complete log of `xs` at `log` with chunks of 10.
fn full_log(log: &Path, xs: &[u64]) {
    let _ = std::fs::remove_file(log);
    pool(2)
        .schedule(Schedule::Dynamic(10))
        .checkpoint(log)
        .map(xs, work)
        .expect("full log");
}

#[test]
fn torn_tail_is_cut_off() {
    within(60, || {
        let dir = scratch("torn");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..200).collect();
        for cut in [1usize, 5, 8, 9, 30] {
            full_log(&log, &xs);
            let len = std::fs::metadata(&log).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
            f.set_len(len - cut as u64).unwrap();
            drop(f);
            let ran = AtomicUsize::new(0);
            let v = pool(2)
                .load_balanced()
                .checkpoint(&log)
                .map(&xs, |x| {
                    ran.fetch_add(1, Ordering::Relaxed);
                    work(x)
                })
                .unwrap();
            assert_eq!(bits(&v), clean(&xs), "cut {cut}");
            let ran = ran.into_inner();
            assert!(
                (1..=20).contains(&ran),
                "cut {cut}: {ran} items rerun, one chunk expected"
            );
        }
        // A last record whose bytes are damaged (partly persisted) is a torn tail too.
        full_log(&log, &xs);
        let mut b = std::fs::read(&log).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        std::fs::write(&log, &b).unwrap();
        let v = pool(2)
            .load_balanced()
            .checkpoint(&log)
            .map(&xs, work)
            .unwrap();
        assert_eq!(bits(&v), clean(&xs));
        // A log torn inside its header starts over.
        std::fs::write(&log, &b[..10]).unwrap();
        let v = pool(2)
            .load_balanced()
            .checkpoint(&log)
            .map(&xs, work)
            .unwrap();
        assert_eq!(bits(&v), clean(&xs));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn corrupt_log_is_refused_and_untouched() {
    within(60, || {
        let dir = scratch("corrupt");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..200).collect();
        full_log(&log, &xs);
        let mut b = std::fs::read(&log).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        std::fs::write(&log, &b).unwrap();
        let e = pool(2)
            .load_balanced()
            .checkpoint(&log)
            .map(&xs, |_| -> f64 { panic!("must not run") })
            .unwrap_err();
        assert!(matches!(e, CheckpointError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("corrupt at byte"), "{e}");
        assert_eq!(
            std::fs::read(&log).unwrap(),
            b,
            "a corrupt log is not modified"
        );
        // Not a log at all.
        std::fs::write(&log, b"hello, world").unwrap();
        let e = pool(2)
            .load_balanced()
            .checkpoint(&log)
            .map(&xs, work)
            .unwrap_err();
        assert!(matches!(e, CheckpointError::NotACheckpoint { .. }), "{e:?}");
        assert_eq!(std::fs::read(&log).unwrap(), b"hello, world");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn logs_of_other_maps_are_refused() {
    within(60, || {
        let dir = scratch("other");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..200).collect();
        full_log(&log, &xs);
        let before = std::fs::read(&log).unwrap();
        let p = pool(2);
        let lb = p.load_balanced();

        let mut ys = xs.clone();
        ys[17] = 1_000;
        let e = lb.checkpoint(&log).map(&ys, work).unwrap_err();
        assert!(matches!(e, CheckpointError::Input { .. }), "{e:?}");

        let e = lb.checkpoint(&log).map(&xs[..199], work).unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Length {
                    found: 200,
                    expected: 199,
                    ..
                }
            ),
            "{e:?}"
        );

        let e = lb.checkpoint(&log).map(&xs, |x| *x as f32).unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Type {
                    what: "results",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("f32"), "{e}");

        let zs: Vec<i64> = (0..200).collect();
        let e = lb.checkpoint(&log).map(&zs, |x| *x as f64).unwrap_err();
        assert!(
            matches!(e, CheckpointError::Type { what: "items", .. }),
            "{e:?}"
        );

        assert_eq!(std::fs::read(&log).unwrap(), before, "never merged");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A result whose `Serialize` fails: the map stops with a typed error, nothing hangs.
#[derive(Debug)]
struct Unserializable;
impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no way"))
    }
}
impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[test]
fn unserializable_results_stop_the_map() {
    within(60, || {
        let dir = scratch("encode");
        let xs: Vec<u64> = (0..100).collect();
        let e = pool(2)
            .schedule(Schedule::Dynamic(1))
            .checkpoint(dir.join("log"))
            .map(&xs, |_| Unserializable)
            .unwrap_err();
        assert!(matches!(e, CheckpointError::Encode { .. }), "{e:?}");
        assert!(e.to_string().contains("cannot serialize"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn empty_input() {
    within(30, || {
        let dir = scratch("empty");
        let v = pool(2)
            .load_balanced()
            .checkpoint(dir.join("log"))
            .map(&[] as &[u64], work)
            .unwrap();
        assert!(v.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn retries_inside_a_checkpointed_map() {
    within(60, || {
        let dir = scratch("retries");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..100).collect();
        let tries: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        let e = pool(2)
            .schedule(Schedule::Dynamic(4))
            .checkpoint(&log)
            .retries(2)
            .map(&xs, |x| {
                let k = tries[*x as usize].fetch_add(1, Ordering::SeqCst);
                assert!(*x != 10 || k >= 2, "flaky 10");
                assert!(*x != 70, "always 70");
                work(x)
            })
            .unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::Map(MapError::Panicked {
                index: 70,
                failed: 1,
                ..
            })
        ));
        assert_eq!(tries[10].load(Ordering::SeqCst), 3);
        assert_eq!(tries[70].load(Ordering::SeqCst), 3);
        // Item 10 made it into the log after its retries: only 70 runs again.
        let ran = Mutex::new(Vec::new());
        let v = pool(2)
            .load_balanced()
            .checkpoint(&log)
            .map(&xs, |x| {
                ran.lock().unwrap().push(*x);
                work(x)
            })
            .unwrap();
        assert_eq!(ran.into_inner().unwrap(), vec![70]);
        assert_eq!(bits(&v), clean(&xs));
        let _ = std::fs::remove_dir_all(&dir);
    });
}
