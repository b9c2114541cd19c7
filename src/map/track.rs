//! Tracking: progress, timings and the timeline of one map.

use crate::timeline::{Attempt, ChunkRecord, Lane};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lock-free progress and timing counters of one map (only when asked for).
pub(crate) struct Tracker {
    origin: Instant,
    pub(crate) total: usize,
    done: AtomicUsize,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    busy_ns: AtomicU64,
    records: Option<Mutex<Vec<ChunkRecord>>>,
    /// Failed attempts of retried items (kept only with `records`).
    attempts: Mutex<Vec<Attempt>>,
    finished: AtomicBool,
}

/// Runs `run` with a tracker that records a timeline for a map of `n` items, and returns its
/// result with the [`Timeline`](crate::timeline::Timeline) (`label`, `engines` rows).
pub(crate) fn with_timeline<T>(
    n: usize,
    label: String,
    engines: usize,
    run: impl FnOnce(Arc<Tracker>) -> T,
) -> (T, crate::timeline::Timeline) {
    let tracker = Arc::new(Tracker::new(n, true));
    let out = run(tracker.clone());
    let (records, wall) = tracker.take_records();
    (
        out,
        crate::timeline::Timeline::new(label, engines, wall, records)
            .with_attempts(tracker.take_attempts()),
    )
}

/// Timings of a map, as ipyparallel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// First chunk start to last chunk finish.
    pub wall_time: Duration,
    /// Sum of the busy time of all chunks (what a serial run would roughly take).
    pub serial_time: Duration,
}

impl Tracker {
    pub(crate) fn new(total: usize, timeline: bool) -> Self {
        Tracker {
            origin: Instant::now(),
            total,
            done: AtomicUsize::new(0),
            first_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            records: timeline.then(|| Mutex::new(Vec::new())),
            attempts: Mutex::new(Vec::new()),
            finished: AtomicBool::new(false),
        }
    }

    /// Marks the map as over (finished, failed or aborted).
    pub(crate) fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Whether [`mark_finished`](Self::mark_finished) was called.
    #[cfg_attr(not(feature = "progress"), allow(dead_code))]
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Notes a failed attempt of a retried item (only when a timeline is recorded; a failure
    /// path, so the lock is fine).
    pub(crate) fn attempt(&self, a: Attempt) {
        if self.records.is_some() {
            self.attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(a);
        }
    }

    /// The failed attempts noted so far (taken once).
    pub(crate) fn take_attempts(&self) -> Vec<Attempt> {
        std::mem::take(&mut *self.attempts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `t` measured from the map's start (the origin of its timeline).
    pub(crate) fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.origin)
    }

    #[inline]
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn chunk(
        &self,
        lane: Lane,
        r: Range<usize>,
        t0: Instant,
        t1: Instant,
        items: usize,
        stolen: bool,
        local: &mut Vec<ChunkRecord>,
    ) {
        let (b, e) = (self.ns(t0), self.ns(t1));
        self.first_ns.fetch_min(b, Ordering::Relaxed);
        self.last_ns.fetch_max(e, Ordering::Relaxed);
        self.busy_ns.fetch_add(e - b, Ordering::Relaxed);
        self.done.fetch_add(items, Ordering::Release);
        if self.records.is_some() {
            local.push(ChunkRecord {
                lane,
                start: r.start,
                end: r.end,
                began: Duration::from_nanos(b),
                ended: Duration::from_nanos(e),
                stolen,
            });
        }
    }

    pub(crate) fn flush(&self, local: Vec<ChunkRecord>) {
        if let Some(m) = &self.records {
            if !local.is_empty() {
                m.lock().unwrap_or_else(|e| e.into_inner()).extend(local);
            }
        }
    }

    /// Items finished so far (failed ones included).
    /// Counts `k` items as done before the map starts (a checkpointed map's items read from
    /// its log).
    pub(crate) fn add_done(&self, k: usize) {
        self.done.fetch_add(k, Ordering::Release);
    }

    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Acquire).min(self.total)
    }

    /// Wall and serial time so far.
    pub(crate) fn timings(&self) -> Timings {
        let first = self.first_ns.load(Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        Timings {
            wall_time: if first == u64::MAX {
                Duration::ZERO
            } else {
                Duration::from_nanos(last.saturating_sub(first))
            },
            serial_time: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        }
    }

    /// Time since the map started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The recorded chunks (empty if the timeline was off), and the wall time measured from
    /// the map's start.
    pub(crate) fn take_records(&self) -> (Vec<ChunkRecord>, Duration) {
        let recs = match &self.records {
            Some(m) => std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        };
        (
            recs,
            Duration::from_nanos(self.last_ns.load(Ordering::Relaxed)),
        )
    }
}
