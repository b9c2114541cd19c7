//! The measuring harness: a workload is a group of [`Variant`]s (serial, parview, rayon,
//! OpenMP) that compute the same thing. [`run_group`] runs them in interleaved reps, checks every result and
//! turns the timings into one [`Row`] per variant.

use std::any::Any;
use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Who computes a variant: the reference times are the serial, rayon and OpenMP rows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Serial,
    Parview,
    Rayon,
    /// The C loops of `parview_demo::omp`, run in this process.
    OpenMp,
}

/// Output style of a variant: speedups, rayon and OpenMP ratios compare within one style.
pub const INTO: &str = "into";
pub const COLLECT: &str = "collect";
pub const ANY: &str = "";

/// A check's verdict: a note for the table, or what went wrong.
pub type CheckResult = Result<String, String>;

/// One way of computing a workload, and the check of its latest result.
pub struct Variant<'a> {
    name: String,
    kind: Kind,
    class: &'static str,
    run: Box<dyn FnMut() -> Box<dyn Any> + 'a>,
    check: Box<dyn Fn() -> CheckResult + 'a>,
}

/// A variant whose closure returns a fresh value (kept until the next rep, dropped untimed).
pub fn fresh<'a, T: 'static>(
    name: impl Into<String>,
    kind: Kind,
    class: &'static str,
    mut f: impl FnMut() -> T + 'a,
    check: impl Fn(&T) -> CheckResult + 'a,
) -> Variant<'a> {
    let slot: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let s2 = slot.clone();
    Variant {
        name: name.into(),
        kind,
        class,
        run: Box::new(move || {
            let v = f();
            let old = s2.borrow_mut().replace(v);
            Box::new(old) as Box<dyn Any>
        }),
        check: Box::new(move || match &*slot.borrow() {
            Some(v) => check(v),
            None => Err("no result".into()),
        }),
    }
}

/// A variant that writes into a buffer it owns across reps.
pub fn into_buf<'a, B: 'static>(
    name: impl Into<String>,
    kind: Kind,
    class: &'static str,
    buf: B,
    mut f: impl FnMut(&mut B) + 'a,
    check: impl Fn(&B) -> CheckResult + 'a,
) -> Variant<'a> {
    let slot = Rc::new(RefCell::new(buf));
    let s2 = slot.clone();
    Variant {
        name: name.into(),
        kind,
        class,
        run: Box::new(move || {
            f(&mut s2.borrow_mut());
            Box::new(()) as Box<dyn Any>
        }),
        check: Box::new(move || check(&slot.borrow())),
    }
}

/// One line of the table.
pub struct Row {
    pub workload: String,
    pub variant: String,
    pub kind: Kind,
    pub class: &'static str,
    /// Median of the timed reps.
    pub median: Duration,
    /// Share of the machine's CPUs other processes used while the variant ran.
    pub bg: f64,
    pub ok: bool,
    pub note: String,
    /// Serial time of the same output style / this time.
    pub speedup: Option<f64>,
    /// This time / rayon's time of the same output style.
    pub vs_rayon: Option<f64>,
    /// This time / the best OpenMP time of the same output style (none if OpenMP has no row of
    /// that style).
    pub vs_omp: Option<f64>,
}

/// Busy jiffies of all CPUs (all but idle and iowait) from `/proc/stat`; 0 without `/proc`.
fn busy_jiffies() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let l = s.lines().next()?.to_string();
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
            Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0)
}

/// User + system jiffies of this process from `/proc/self/stat`; 0 without `/proc`.
fn own_jiffies() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields 14 and 15 (utime, stime) are 11 and 12 after the state field
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// `(busy jiffies of all CPUs, user+system jiffies of this process)`.
fn jiffies() -> (u64, u64) {
    (busy_jiffies(), own_jiffies())
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// What one variant measured over its reps.
struct Measured {
    times: Vec<Duration>,
    /// The first failed check, or else the latest note.
    status: CheckResult,
    /// Jiffies used by other processes while the variant ran.
    other: u64,
}

/// How long the harness waits (untimed) after an OpenMP rep: libgomp's idle threads spin
/// `GOMP_SPINCOUNT` (300,000 by default) pause loops before they sleep, ~5 ms of CPU measured
/// on a 2-core Xeon, which would otherwise be charged to whichever variant runs next. (The
/// parview and rayon pools spin well under a millisecond, less than the checks take.)
const OMP_SETTLE: Duration = Duration::from_millis(20);

/// Runs one rep of `v`: times it (recorded if `timed`), then checks its result.
fn rep(v: &mut Variant<'_>, m: &mut Measured, timed: bool) {
    let (a0, s0) = jiffies();
    let t0 = Instant::now();
    let garbage = black_box((v.run)());
    let dt = t0.elapsed();
    let (a1, s1) = jiffies();
    drop(garbage);
    if timed {
        m.times.push(dt);
        m.other += a1.saturating_sub(a0).saturating_sub(s1.saturating_sub(s0));
    }
    let c = (v.check)();
    // keep the first failure; otherwise the latest note
    if m.status.is_ok() {
        m.status = c;
    }
    if v.kind == Kind::OpenMp {
        std::thread::sleep(OMP_SETTLE);
    }
}

/// `warmup + reps` interleaved rounds of all variants, rotating the order; round 0 starts
/// with variant 0 (the serial one, where a later check needs its reference).
fn measure(warmup: usize, reps: usize, vs: &mut [Variant<'_>]) -> Vec<Measured> {
    let k = vs.len();
    let mut m: Vec<Measured> = (0..k)
        .map(|_| Measured {
            times: Vec::new(),
            status: Ok(String::new()),
            other: 0,
        })
        .collect();
    for r in 0..warmup + reps {
        for j in 0..k {
            let idx = (j + r) % k;
            rep(&mut vs[idx], &mut m[idx], r >= warmup);
        }
    }
    m
}

/// The row of variant `v`, without the ratios.
fn row(workload: &str, v: &Variant<'_>, m: Measured, ncpu: f64) -> Row {
    // jiffies are 1/100 s (USER_HZ): coarse when the variant's total time is short
    let total: f64 = m.times.iter().map(Duration::as_secs_f64).sum();
    let bg = (m.other as f64 / 100.0 / (ncpu * total.max(1e-9))).min(1.0);
    let (ok, note) = match m.status {
        Ok(n) => (true, n),
        Err(e) => (false, e),
    };
    Row {
        workload: workload.to_string(),
        variant: v.name.clone(),
        kind: v.kind,
        class: v.class,
        median: median(m.times),
        bg,
        ok,
        note,
        speedup: None,
        vs_rayon: None,
        vs_omp: None,
    }
}

/// The fastest row of `kind` in output style `class`, falling back to any row of `kind`.
fn best(rows: &[Row], kind: Kind, class: &str) -> Option<Duration> {
    let pick = |same: bool| {
        rows.iter()
            .filter(|r| r.kind == kind && (!same || r.class == class))
            .map(|r| r.median)
            .min()
    };
    pick(true).or_else(|| pick(false))
}

/// Fills in `speedup`, `vs_rayon` and `vs_omp` of every row of one workload. OpenMP is
/// compared within the same output style only (its rows write into a buffer: a collecting row
/// has no OpenMP counterpart).
fn set_ratios(rows: &mut [Row]) {
    for i in 0..rows.len() {
        let class = rows[i].class;
        let s = best(rows, Kind::Serial, class);
        let ry = best(rows, Kind::Rayon, class);
        let omp = rows
            .iter()
            .filter(|r| r.kind == Kind::OpenMp && r.class == class)
            .map(|r| r.median)
            .min();
        let t = rows[i].median.as_secs_f64();
        rows[i].speedup = s.map(|s| s.as_secs_f64() / t);
        rows[i].vs_rayon = ry.map(|ry| t / ry.as_secs_f64());
        rows[i].vs_omp = omp.map(|omp| t / omp.as_secs_f64());
    }
}

/// Runs `warmup + reps` interleaved rounds of all variants (rotating the order), checks every
/// result, and returns one row per variant with the median of the timed reps.
pub fn run_group(workload: &str, warmup: usize, reps: usize, mut vs: Vec<Variant<'_>>) -> Vec<Row> {
    eprintln!(
        "  {workload}: {} variants x {reps} reps (+{warmup} warm-up)",
        vs.len()
    );
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let measured = measure(warmup, reps, &mut vs);
    let mut rows: Vec<Row> = vs
        .iter()
        .zip(measured)
        .map(|(v, m)| row(workload, v, m, ncpu))
        .collect();
    set_ratios(&mut rows);
    rows
}

/// Bitwise equality of two f64 slices; Err names the first differing index.
pub fn same_bits(got: &[f64], want: &[f64]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("length {} != {}", got.len(), want.len()));
    }
    match got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "first difference at {i}: {} != {}",
            got[i], want[i]
        )),
    }
}
