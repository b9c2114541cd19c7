//! Checkpoint and resume (`LoadBalancedView::checkpoint`): a map killed with SIGKILL resumes
//! from its log; torn tails are cut off; corrupt logs and logs of other maps are refused;
//! background maps (`Checkpoint::map_async`) aborted mid-map resume from their log.

mod common;
use common::{SCHEDULES, pool, within};
use parview::{AbortHandle, CheckpointError, MapError, Schedule};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

// ---------------------------------------------------------------------------------------------
// Background maps: abort, then resume

/// The items a run started, shared with its `'static` closure.
type Ran = Arc<Mutex<Vec<u64>>>;

fn started(ran: &Ran) -> Vec<u64> {
    ran.lock().unwrap().clone()
}

/// Checks a resume after an interrupted first run: nothing ran twice in the resume, nothing the
/// first run started (and finished) ran again, together they covered every item, and the
/// result is bitwise a clean run's.
fn check_resume(ctx: &str, xs: &[u64], first: &[u64], second: &[u64], v: &[f64]) {
    let a: BTreeSet<u64> = first.iter().copied().collect();
    let b: BTreeSet<u64> = second.iter().copied().collect();
    assert_eq!(
        b.len(),
        second.len(),
        "{ctx}: an item ran twice in the resume"
    );
    assert_eq!(
        a.len(),
        first.len(),
        "{ctx}: an item ran twice in the first run"
    );
    // An abort lets every chunk running finish and be logged: nothing that ran before is
    // computed again (the bound "≤ items in flight" holds with 0).
    assert!(
        a.is_disjoint(&b),
        "{ctx}: recomputed {:?}",
        a.intersection(&b).collect::<Vec<_>>()
    );
    assert_eq!(a.len() + b.len(), xs.len(), "{ctx}: items missing");
    assert_eq!(
        bits(v),
        clean(xs),
        "{ctx}: not bitwise equal to a clean run"
    );
}

#[test]
fn map_async_aborted_by_its_closure_then_resumed_under_every_schedule() {
    within(180, || {
        let dir = scratch("async-abort");
        let xs: Vec<u64> = (0..600).collect();
        for (k, s) in SCHEDULES.iter().enumerate() {
            let log = dir.join(format!("log{k}"));
            let ctx = format!("{s}");
            let stop = AbortHandle::new();
            let ran: Ran = Arc::default();
            let (r, h) = (ran.clone(), stop.clone());
            let ar = pool(3)
                .schedule(*s)
                .checkpoint(&log)
                .abort_on(&stop)
                .map_async(xs.clone(), move |x| {
                    r.lock().unwrap().push(*x);
                    if *x == 250 {
                        h.abort();
                    }
                    work(x)
                });
            let first = match ar.get_partial() {
                // A static block sees the flag only when it is done: all may have finished.
                Ok(v) => {
                    assert_eq!(bits(&v), clean(&xs), "{ctx}");
                    started(&ran)
                }
                Err(p) => {
                    assert!(
                        matches!(p.error, CheckpointError::Map(MapError::Aborted { total: 600, done }) if done == p.done()),
                        "{ctx}: {:?}",
                        p.error
                    );
                    let first = started(&ran);
                    // What finished is exactly what started, and all of it is in the log.
                    for (i, r) in p.results.iter().enumerate() {
                        assert_eq!(r.is_some(), first.contains(&(i as u64)), "{ctx}: item {i}");
                        if let Some(r) = r {
                            assert_eq!(r.to_bits(), work(&(i as u64)).to_bits());
                        }
                    }
                    if let Schedule::Dynamic(_) = s {
                        assert!(p.done() < 600, "{ctx}: the abort stopped nothing");
                    }
                    first
                }
            };
            // Resumed with another schedule and pool size; odd rounds with the blocking map.
            let other = SCHEDULES[(k + 3) % SCHEDULES.len()];
            let ran2: Ran = Arc::default();
            let r2 = ran2.clone();
            let p2 = pool(2);
            let ck = p2.schedule(other).checkpoint(&log);
            let v = if k % 2 == 0 {
                let ar = ck.map_async(xs.clone(), move |x| {
                    r2.lock().unwrap().push(*x);
                    work(x)
                });
                let (done, total) = ar.progress();
                assert!(
                    done >= first.len() && total == 600,
                    "{ctx}: progress ({done}, {total})"
                );
                ar.get().unwrap()
            } else {
                ck.map(&xs, |x| {
                    r2.lock().unwrap().push(*x);
                    work(x)
                })
                .unwrap()
            };
            check_resume(
                &format!("{ctx} then {other}"),
                &xs,
                &first,
                &started(&ran2),
                &v,
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Items at or past `gate` wait until `go` is set: the map is held with chunks in flight,
/// without any timing assumption.
fn gated(
    gate: u64,
    go: &Arc<AtomicBool>,
    ran: &Ran,
) -> impl Fn(&u64) -> f64 + Send + Sync + 'static {
    let (go, ran) = (go.clone(), ran.clone());
    move |x| {
        ran.lock().unwrap().push(*x);
        while *x >= gate && !go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        work(x)
    }
}

#[test]
fn handle_abort_with_chunks_in_flight_progress_and_ready() {
    within(120, || {
        let dir = scratch("async-handle");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..600).collect();
        let (workers, chunk) = (3, 10);
        let go = Arc::new(AtomicBool::new(false));
        let ran: Ran = Arc::default();
        let p = pool(workers);
        let ar = p
            .schedule(Schedule::Dynamic(chunk))
            .checkpoint(&log)
            .map_async(xs.clone(), gated(200, &go, &ran));
        // Chunks below the gate all finish; those past it are held.
        let mut last = 0;
        loop {
            let (done, total) = ar.progress();
            assert_eq!(total, 600);
            assert!(done >= last, "progress went back: {last} -> {done}");
            assert!(done <= 200, "a held chunk counted as done: {done}");
            last = done;
            if done == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!ar.ready(), "ready while chunks are held");
        assert!(!ar.wait_timeout(Duration::from_millis(5)));
        ar.abort();
        go.store(true, Ordering::Release);
        ar.wait();
        assert!(ar.ready());
        let (done, total) = ar.progress();
        assert!((200..=200 + workers * chunk).contains(&done), "done {done}");
        assert_eq!(total, 600);
        let e = ar.get().unwrap_err();
        assert!(
            matches!(e, CheckpointError::Map(MapError::Aborted { done: d, total: 600 }) if d == done),
            "{e:?}"
        );
        let first = started(&ran);
        assert!(
            first.len() <= 200 + workers * chunk,
            "{} started",
            first.len()
        );

        let ran2: Ran = Arc::default();
        let r2 = ran2.clone();
        let v = pool(2)
            .schedule(Schedule::Adaptive)
            .checkpoint(&log)
            .map_async(xs.clone(), move |x| {
                r2.lock().unwrap().push(*x);
                work(x)
            })
            .get()
            .unwrap();
        check_resume("handle abort", &xs, &first, &started(&ran2), &v);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

static LIVE_RESULTS: AtomicUsize = AtomicUsize::new(0);
static LIVE_ITEMS: AtomicUsize = AtomicUsize::new(0);

/// A value that counts its live copies (for the leak check of one test only).
#[derive(Debug)]
struct Counted<const ITEM: bool>(u64);
impl<const ITEM: bool> Counted<ITEM> {
    fn live() -> &'static AtomicUsize {
        if ITEM { &LIVE_ITEMS } else { &LIVE_RESULTS }
    }
    fn new(x: u64) -> Self {
        Self::live().fetch_add(1, Ordering::SeqCst);
        Counted(x)
    }
}
impl<const ITEM: bool> Drop for Counted<ITEM> {
    fn drop(&mut self) {
        Self::live().fetch_sub(1, Ordering::SeqCst);
    }
}
impl<const ITEM: bool> serde::Serialize for Counted<ITEM> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}
impl<'de, const ITEM: bool> serde::Deserialize<'de> for Counted<ITEM> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Counted::new(<u64 as serde::Deserialize>::deserialize(d)?))
    }
}

/// Waits until no counted value is alive (the watchdog catches a leak): the map's last
/// participant may still hold the map for a moment after the handle is gone.
fn wait_until_zero(c: &AtomicUsize) {
    while c.load(Ordering::SeqCst) != 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn dropping_the_handle_aborts_waits_for_the_log_and_leaks_nothing() {
    within(120, || {
        let dir = scratch("async-drop");
        let log = dir.join("log");
        let n = 400u64;
        let mk = || (0..n).map(Counted::<true>::new).collect::<Vec<_>>();
        let ran: Ran = Arc::default();
        let p = pool(3);
        let lb = p.schedule(Schedule::Dynamic(3));
        let r = ran.clone();
        let ar = lb
            .checkpoint(&log)
            .map_async(mk(), move |x: &Counted<true>| {
                r.lock().unwrap().push(x.0);
                std::thread::sleep(Duration::from_micros(200));
                Counted::<false>::new(x.0 * 3)
            });
        while ar.progress().0 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(ar); // aborts, and returns once the chunks in flight are logged
        let first = started(&ran);
        // The log is closed: a rerun may start at once, and computes only what is missing.
        let ran2: Ran = Arc::default();
        let r2 = ran2.clone();
        let v = lb
            .checkpoint(&log)
            .map_async(mk(), move |x: &Counted<true>| {
                r2.lock().unwrap().push(x.0);
                Counted::<false>::new(x.0 * 3)
            })
            .get()
            .unwrap();
        assert_eq!(
            v.iter().map(|c| c.0).collect::<Vec<_>>(),
            (0..n).map(|x| x * 3).collect::<Vec<_>>()
        );
        let (a, b): (BTreeSet<u64>, BTreeSet<u64>) = (
            first.iter().copied().collect(),
            started(&ran2).into_iter().collect(),
        );
        assert!(
            a.is_disjoint(&b),
            "recomputed after drop: {:?}",
            a.intersection(&b).collect::<Vec<_>>()
        );
        assert_eq!(a.len() + b.len(), n as usize);
        drop(v);
        // Dropping a handle that was never waited for, nor started anything: no leak either.
        drop(
            lb.checkpoint(dir.join("log2"))
                .map_async(mk(), |x: &Counted<true>| Counted::<false>::new(x.0)),
        );
        wait_until_zero(&LIVE_RESULTS);
        wait_until_zero(&LIVE_ITEMS);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn try_map_async_err_then_resume_and_refused_logs() {
    within(60, || {
        let dir = scratch("async-err");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..300).collect();
        let p = pool(2);
        let lb = p.schedule(Schedule::Dynamic(5));
        let e = lb
            .checkpoint(&log)
            .try_map_async(
                xs.clone(),
                |x| if *x == 150 { Err(*x) } else { Ok(work(x)) },
            )
            .get()
            .unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Map(MapError::Failed {
                    index: 150,
                    error: 150
                })
            ),
            "{e:?}"
        );
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let v = lb
            .checkpoint(&log)
            .try_map_async(xs.clone(), move |x| {
                r.fetch_add(1, Ordering::Relaxed);
                Ok::<_, u64>(work(x))
            })
            .get()
            .unwrap();
        assert_eq!(bits(&v), clean(&xs));
        assert!(ran.load(Ordering::Relaxed) < 300);

        // A log of another map: the handle is ready at once with the error, nothing runs.
        let ar = lb
            .checkpoint(&log)
            .map_async(xs[..10].to_vec(), |_| -> f64 { panic!("must not run") });
        assert!(ar.ready());
        assert_eq!(ar.progress(), (0, 0));
        let p = ar.get_partial().unwrap_err();
        assert!(
            matches!(
                p.error,
                CheckpointError::Length {
                    found: 300,
                    expected: 10,
                    ..
                }
            ),
            "{:?}",
            p.error
        );
        assert!(p.results.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Whatever the sync policy, a finished map's log is complete: a rerun reads every result
/// from it. (Whether `fsync` ran cannot be observed from a test.)
#[test]
fn every_sync_policy_leaves_a_complete_resumable_log() {
    within(60, || {
        let dir = scratch("sync-policy");
        let xs: Vec<u64> = (0..500).collect();
        let p = pool(2);
        for (k, every) in [Duration::ZERO, Duration::from_secs(1), Duration::MAX]
            .into_iter()
            .enumerate()
        {
            for asynchronous in [false, true] {
                let log = dir.join(format!("log{k}{asynchronous}"));
                let ck = p
                    .schedule(Schedule::Dynamic(7))
                    .checkpoint(&log)
                    .sync_every(every);
                let v = if asynchronous {
                    ck.map_async(xs.clone(), work).get().unwrap()
                } else {
                    ck.map(&xs, work).unwrap()
                };
                assert_eq!(bits(&v), clean(&xs));
                let again = p
                    .load_balanced()
                    .checkpoint(&log)
                    .map_async(xs.clone(), |_| -> f64 { panic!("nothing may run") });
                assert_eq!(again.progress(), (500, 500));
                assert_eq!(bits(&again.get().unwrap()), clean(&xs), "{every:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// The Ctrl-C pattern for the blocking map: another thread pulls the `AbortHandle` while the
/// map holds chunks in flight; the map returns `Aborted` with those chunks logged.
#[test]
fn blocking_map_aborted_from_another_thread_then_resumed() {
    within(120, || {
        let dir = scratch("blocking-abort");
        let log = dir.join("log");
        let xs: Vec<u64> = (0..500).collect();
        let go = Arc::new(AtomicBool::new(false));
        let ran: Ran = Arc::default();
        let stop = AbortHandle::new();
        let f = gated(100, &go, &ran);
        let runner = {
            let (xs, log, stop) = (xs.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                pool(3)
                    .schedule(Schedule::Dynamic(4))
                    .checkpoint(&log)
                    .abort_on(&stop)
                    .map(&xs, f)
            })
        };
        // Wait until a held chunk is in flight (an item past the gate started), then "Ctrl-C".
        while !started(&ran).iter().any(|&x| x >= 100) {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.abort();
        go.store(true, Ordering::Release);
        let e = runner.join().unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Map(MapError::Aborted { total: 500, .. })
            ),
            "{e:?}"
        );
        let first = started(&ran);
        assert!(first.len() < 500, "the abort stopped nothing");
        let ran2: Ran = Arc::default();
        let r2 = ran2.clone();
        let v = pool(2)
            .schedule(Schedule::Guided(3))
            .checkpoint(&log)
            .map(&xs, |x| {
                r2.lock().unwrap().push(*x);
                work(x)
            })
            .unwrap();
        check_resume("blocking abort", &xs, &first, &started(&ran2), &v);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
