//! The model: [`Lane`], [`ChunkRecord`] and [`Timeline`] with its statistics and its
//! [`Display`](fmt::Display) summary.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::millis;

/// Who ran a chunk: the thread that called the map, or one of the pool's
/// engines.
///
/// ```
/// use parview::timeline::Lane;
/// assert_eq!(Lane::Engine(3).to_string(), "engine 3");
/// assert_eq!(Lane::Caller.to_string(), "caller");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Lane {
    /// The thread that called the map (it works on chunks too).
    Caller,
    /// Pool engine `i` (`0..engines`).
    Engine(usize),
}

impl fmt::Display for Lane {
    /// Formats as `engine i` or `caller`, the names used as row labels.
    ///
    /// ```
    /// use parview::timeline::Lane;
    /// assert_eq!(format!("{}", Lane::Engine(0)), "engine 0");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Caller => f.write_str("caller"),
            Lane::Engine(i) => write!(f, "engine {i}"),
        }
    }
}

/// One chunk of a map: the index range `start..end`, who ran it, and when.
///
/// ```
/// use std::time::Duration;
/// use parview::timeline::{ChunkRecord, Lane};
///
/// let r = ChunkRecord {
///     lane: Lane::Engine(0),
///     start: 0,
///     end: 100,
///     began: Duration::from_micros(10),
///     ended: Duration::from_micros(250),
///     stolen: false,
/// };
/// assert_eq!(r.len(), 100);
/// assert_eq!(r.busy(), Duration::from_micros(240));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkRecord {
    /// Who ran the chunk.
    pub lane: Lane,
    /// First index of the chunk (inclusive).
    pub start: usize,
    /// One past the last index of the chunk (exclusive).
    pub end: usize,
    /// When the chunk began, measured from the map's start (monotonic clock).
    pub began: Duration,
    /// When the chunk ended, measured from the map's start (monotonic clock).
    pub ended: Duration,
    /// `true` when the chunk was run by an engine that joined the map by
    /// taking shared work, rather than by the thread that started the map or
    /// an engine the work was addressed to.
    pub stolen: bool,
}

impl ChunkRecord {
    /// Number of indices in the chunk, `end - start` (0 if `end < start`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane};
    /// let r = ChunkRecord { lane: Lane::Caller, start: 5, end: 8,
    ///     began: Duration::ZERO, ended: Duration::ZERO, stolen: false };
    /// assert_eq!(r.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// `true` when the chunk covers no index.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane};
    /// let r = ChunkRecord { lane: Lane::Caller, start: 5, end: 5,
    ///     began: Duration::ZERO, ended: Duration::ZERO, stolen: false };
    /// assert!(r.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Busy time `ended - began` (zero if `ended < began`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane};
    /// let r = ChunkRecord { lane: Lane::Caller, start: 0, end: 1,
    ///     began: Duration::from_millis(2), ended: Duration::from_millis(5), stolen: false };
    /// assert_eq!(r.busy(), Duration::from_millis(3));
    /// ```
    pub fn busy(&self) -> Duration {
        self.ended.saturating_sub(self.began)
    }
}

/// The timeline of one map: every chunk, who ran it and when.
///
/// See the [module docs](crate::timeline) for the invariants a map's timeline satisfies.
///
/// ```
/// use std::time::Duration;
/// use parview::timeline::{ChunkRecord, Lane, Timeline};
///
/// let ms = Duration::from_millis;
/// let t = Timeline::new("tiny", 1, ms(2), vec![
///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 10, began: ms(0), ended: ms(2), stolen: false },
/// ]);
/// assert_eq!(t.chunks(), 1);
/// assert!((t.parallelism() - 1.0).abs() < 1e-9);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    label: String,
    engines: usize,
    wall: Duration,
    records: Vec<ChunkRecord>,
    attempts: Vec<Attempt>,
}

/// One failed attempt of an item that a map with
/// [`retries`](crate::LoadBalancedView::retries) ran again: which item, which attempt
/// (0 is the first run), who ran it, when, and its panic message. The attempt that finally
/// succeeded (or the last one, whose panic the map reports) is part of its chunk's
/// [`ChunkRecord`].
///
/// ```
/// let pool = parview::Pool::builder().workers(2).build().unwrap();
/// let tries = std::sync::atomic::AtomicUsize::new(0);
/// let (v, tl) = pool.load_balanced().retries(2).map_timed(0..3u32, |i| {
///     if i == 1 && tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2 { panic!("flaky"); }
///     i
/// });
/// assert_eq!(v, vec![0, 1, 2]);
/// assert_eq!(tl.attempts().len(), 2);
/// assert_eq!((tl.attempts()[0].index, tl.attempts()[0].attempt), (1, 0));
/// assert!(tl.attempts()[1].message.contains("flaky"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Attempt {
    /// The item's index.
    pub index: usize,
    /// Which attempt failed (0: the first run).
    pub attempt: usize,
    /// Who ran it.
    pub lane: Lane,
    /// When it began, measured from the map's start.
    pub began: Duration,
    /// When it panicked, measured from the map's start.
    pub ended: Duration,
    /// Its panic message.
    pub message: String,
}

impl Timeline {
    /// Builds a timeline for a map labelled `label`, run on a pool of
    /// `engines` engines, that took `wall` from its start to its last finish.
    ///
    /// Records are sorted by begin time (ties by start index). `engines` is
    /// the pool size, so that idle engines still get a row; if a record names
    /// an engine `i >= engines`, the engine count is raised to `i + 1`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    ///
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("sorted", 2, ms(4), vec![
    ///     ChunkRecord { lane: Lane::Engine(1), start: 5, end: 10, began: ms(2), ended: ms(4), stolen: false },
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 5, began: ms(0), ended: ms(2), stolen: false },
    /// ]);
    /// assert_eq!(t.records()[0].start, 0);
    /// ```
    pub fn new(
        label: impl Into<String>,
        engines: usize,
        wall: Duration,
        mut records: Vec<ChunkRecord>,
    ) -> Self {
        records.sort_by(|a, b| {
            a.began
                .cmp(&b.began)
                .then(a.start.cmp(&b.start))
                .then(a.ended.cmp(&b.ended))
        });
        let engines = records
            .iter()
            .filter_map(|r| match r.lane {
                Lane::Engine(i) => Some(i + 1),
                Lane::Caller => None,
            })
            .fold(engines, usize::max);
        Timeline {
            label: label.into(),
            engines,
            wall,
            records,
            attempts: Vec::new(),
        }
    }

    /// With the failed attempts of retried items, sorted by begin time.
    pub(crate) fn with_attempts(mut self, mut attempts: Vec<Attempt>) -> Self {
        attempts.sort_by(|a, b| a.began.cmp(&b.began).then(a.index.cmp(&b.index)));
        self.attempts = attempts;
        self
    }

    /// The failed attempts of items that were run again
    /// ([`LoadBalancedView::retries`](crate::LoadBalancedView::retries)); empty otherwise.
    ///
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let (_, tl) = pool.load_balanced().map_timed(0..10u32, |i| i);
    /// assert!(tl.attempts().is_empty());
    /// ```
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The map's label.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::Timeline;
    /// let t = Timeline::new("my map", 2, Duration::ZERO, vec![]);
    /// assert_eq!(t.label(), "my map");
    /// ```
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The chunk records, sorted by begin time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::Timeline;
    /// let t = Timeline::new("none", 2, Duration::ZERO, vec![]);
    /// assert!(t.records().is_empty());
    /// ```
    pub fn records(&self) -> &[ChunkRecord] {
        &self.records
    }

    /// Number of engines in the pool (one row each, idle or not).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::Timeline;
    /// let t = Timeline::new("idle", 4, Duration::ZERO, vec![]);
    /// assert_eq!(t.engines(), 4);
    /// ```
    pub fn engines(&self) -> usize {
        self.engines
    }

    /// The map's wall time as given to [`Timeline::new`]: from its start to
    /// its last finish.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::Timeline;
    /// let t = Timeline::new("w", 1, Duration::from_millis(7), vec![]);
    /// assert_eq!(t.wall_time(), Duration::from_millis(7));
    /// ```
    pub fn wall_time(&self) -> Duration {
        self.wall
    }

    /// Sum of the busy times of all chunks: how long the map would have taken
    /// on one thread (ignoring scheduling overheads).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("s", 2, ms(3), vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 1, began: ms(0), ended: ms(3), stolen: false },
    ///     ChunkRecord { lane: Lane::Engine(1), start: 1, end: 2, began: ms(0), ended: ms(2), stolen: false },
    /// ]);
    /// assert_eq!(t.serial_time(), ms(5));
    /// ```
    pub fn serial_time(&self) -> Duration {
        self.records.iter().map(ChunkRecord::busy).sum()
    }

    /// Average parallelism: `serial_time / wall_time`; 0 when there is no
    /// record or the wall time is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("p", 2, ms(4), vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 1, began: ms(0), ended: ms(4), stolen: false },
    ///     ChunkRecord { lane: Lane::Engine(1), start: 1, end: 2, began: ms(0), ended: ms(2), stolen: false },
    /// ]);
    /// assert!((t.parallelism() - 1.5).abs() < 1e-9);
    /// assert_eq!(Timeline::new("e", 2, ms(0), vec![]).parallelism(), 0.0);
    /// ```
    pub fn parallelism(&self) -> f64 {
        if self.records.is_empty() || self.wall.is_zero() {
            return 0.0;
        }
        self.serial_time().as_secs_f64() / self.wall.as_secs_f64()
    }

    /// The lanes of the timeline: engines `0..engines()` in order, then the
    /// caller if it ran any chunk.
    pub(super) fn lanes(&self) -> Vec<Lane> {
        let mut lanes: Vec<Lane> = (0..self.engines).map(Lane::Engine).collect();
        if self.has_caller() {
            lanes.push(Lane::Caller);
        }
        lanes
    }

    pub(super) fn has_caller(&self) -> bool {
        self.records.iter().any(|r| r.lane == Lane::Caller)
    }

    /// Row (and trace track) of a lane: engine `i` is row `i`, the caller is
    /// row `engines()`.
    pub(super) fn row(&self, lane: Lane) -> usize {
        match lane {
            Lane::Engine(i) => i,
            Lane::Caller => self.engines,
        }
    }

    /// Which lanes form the map's team, as the one line that the summary and the SVG caption
    /// show: engines `0..engines()`, with the caller in front when it ran a chunk, e.g.
    ///
    /// `team: caller + engines 0-1 (the calling thread works too; engines that found no work
    /// left show 0%)`
    ///
    /// Each note is there only when it applies: the caller's when it ran a chunk, the 0% one
    /// when an engine ran none. `None` when the timeline has no lane at all.
    pub(super) fn team(&self) -> Option<String> {
        let caller = self.has_caller();
        let engines = match self.engines {
            0 => None,
            1 => Some("engine 0".to_owned()),
            p => Some(format!("engines 0-{}", p - 1)),
        };
        let members = match (caller, engines) {
            (false, None) => return None,
            (true, None) => "caller".to_owned(),
            (false, Some(e)) => e,
            (true, Some(e)) => format!("caller + {e}"),
        };
        let mut ran = vec![false; self.engines];
        for r in &self.records {
            if let Lane::Engine(i) = r.lane {
                ran[i] = true;
            }
        }
        let mut notes = Vec::new();
        if caller {
            notes.push("the calling thread works too");
        }
        if ran.contains(&false) {
            notes.push("engines that found no work left show 0%");
        }
        Some(if notes.is_empty() {
            format!("team: {members}")
        } else {
            format!("team: {members} ({})", notes.join("; "))
        })
    }

    /// Busy time per lane: engines `0..engines()` in order (idle ones with
    /// zero), then [`Lane::Caller`] if the caller ran any chunk.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("b", 2, ms(3), vec![
    ///     ChunkRecord { lane: Lane::Caller, start: 0, end: 1, began: ms(0), ended: ms(3), stolen: false },
    /// ]);
    /// assert_eq!(t.busy_by_lane(), vec![
    ///     (Lane::Engine(0), ms(0)), (Lane::Engine(1), ms(0)), (Lane::Caller, ms(3)),
    /// ]);
    /// ```
    pub fn busy_by_lane(&self) -> Vec<(Lane, Duration)> {
        let lanes = self.lanes();
        let mut busy = vec![Duration::ZERO; lanes.len()];
        for r in &self.records {
            busy[self.row(r.lane)] += r.busy();
        }
        lanes.into_iter().zip(busy).collect()
    }

    /// Fraction of the wall time each lane was busy (`busy / wall`), in the
    /// order of [`Timeline::busy_by_lane`]; 0 when the wall time is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("f", 2, ms(4), vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 1, began: ms(0), ended: ms(4), stolen: false },
    ///     ChunkRecord { lane: Lane::Engine(1), start: 1, end: 2, began: ms(0), ended: ms(1), stolen: false },
    /// ]);
    /// let f = t.busy_fraction();
    /// assert_eq!(f[0], (Lane::Engine(0), 1.0));
    /// assert_eq!(f[1], (Lane::Engine(1), 0.25));
    /// ```
    pub fn busy_fraction(&self) -> Vec<(Lane, f64)> {
        let wall = self.wall.as_secs_f64();
        self.busy_by_lane()
            .into_iter()
            .map(|(lane, busy)| {
                let f = if wall > 0.0 {
                    busy.as_secs_f64() / wall
                } else {
                    0.0
                };
                (lane, f)
            })
            .collect()
    }

    /// Load imbalance: the busiest lane's busy time divided by the mean busy time over the
    /// team — the [`engines`](Self::engines) busiest lanes.
    ///
    /// A map runs on a team of `P` threads: the `P` engines, or — when the map was called
    /// from outside the pool — the caller plus `P − 1` engines, so one engine then idles by
    /// design and must not count as imbalance. An engine of the team that got no work counts
    /// (its busy time is 0). 1.0 means perfectly balanced; all work on one of `P` lanes gives
    /// `P`. A timeline with no busy time at all reports 1.0.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("i", 2, ms(3), vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 1, began: ms(0), ended: ms(3), stolen: false },
    ///     ChunkRecord { lane: Lane::Engine(1), start: 1, end: 2, began: ms(0), ended: ms(1), stolen: false },
    /// ]);
    /// // max 3 ms, mean 2 ms
    /// assert!((t.imbalance() - 1.5).abs() < 1e-9);
    /// // Caller plus engine 0 balanced, engine 1 idle: the team of 2 is balanced.
    /// let t = Timeline::new("lb", 2, ms(2), vec![
    ///     ChunkRecord { lane: Lane::Caller, start: 0, end: 1, began: ms(0), ended: ms(2), stolen: false },
    ///     ChunkRecord { lane: Lane::Engine(0), start: 1, end: 2, began: ms(0), ended: ms(2), stolen: true },
    /// ]);
    /// assert!((t.imbalance() - 1.0).abs() < 1e-9);
    /// ```
    pub fn imbalance(&self) -> f64 {
        let mut busy: Vec<f64> = self
            .busy_by_lane()
            .iter()
            .map(|(_, d)| d.as_secs_f64())
            .collect();
        busy.sort_by(|a, b| b.total_cmp(a));
        busy.truncate(self.engines.max(1));
        let total: f64 = busy.iter().sum();
        if busy.is_empty() || total <= 0.0 {
            return 1.0;
        }
        busy[0] / (total / busy.len() as f64)
    }

    /// Total number of indices over all chunks (the map's length, given the
    /// [invariants](crate::timeline)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let z = Duration::ZERO;
    /// let t = Timeline::new("n", 1, z, vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 7, began: z, ended: z, stolen: false },
    ///     ChunkRecord { lane: Lane::Caller, start: 7, end: 10, began: z, ended: z, stolen: false },
    /// ]);
    /// assert_eq!(t.items(), 10);
    /// ```
    pub fn items(&self) -> usize {
        self.records.iter().map(ChunkRecord::len).sum()
    }

    /// Number of chunks (records).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let z = Duration::ZERO;
    /// let t = Timeline::new("c", 1, z, vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 7, began: z, ended: z, stolen: false },
    /// ]);
    /// assert_eq!(t.chunks(), 1);
    /// ```
    pub fn chunks(&self) -> usize {
        self.records.len()
    }
}

impl fmt::Display for Timeline {
    /// A short summary: a line with chunks, items, wall and serial time,
    /// parallelism, imbalance and per-lane busy percentages, then a line
    /// saying which lanes form the team (the caller only when it ran a chunk).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("sum", 1, ms(2), vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 10, began: ms(0), ended: ms(2), stolen: false },
    /// ]);
    /// let s = t.to_string();
    /// assert!(s.contains("wall 2.000 ms"));
    /// assert!(s.contains("engine 0 100.0%"));
    /// assert!(s.ends_with("\nteam: engine 0"));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stolen = self.records.iter().filter(|r| r.stolen).count();
        write!(
            f,
            "timeline \"{}\": {} chunks ({} stolen), {} items on {} engine{}{}; \
             wall {:.3} ms, serial {:.3} ms, parallelism {:.2}x, imbalance {:.2}; busy:",
            self.label,
            self.chunks(),
            stolen,
            self.items(),
            self.engines,
            if self.engines == 1 { "" } else { "s" },
            if self.has_caller() { " + caller" } else { "" },
            millis(self.wall),
            millis(self.serial_time()),
            self.parallelism(),
            self.imbalance(),
        )?;
        let fractions = self.busy_fraction();
        if fractions.is_empty() {
            return f.write_str(" (no lanes)");
        }
        for (i, (lane, frac)) in fractions.into_iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{lane} {:.1}%", frac * 100.0)?;
        }
        match self.team() {
            Some(team) => write!(f, "\n{team}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::fixtures::{close, ms, rec, skewed};

    #[test]
    fn statistics_on_hand_made_records() {
        let t = skewed();
        assert_eq!(t.label(), "skewed");
        assert_eq!(t.engines(), 3);
        assert_eq!(t.chunks(), 4);
        assert_eq!(t.items(), 210);
        assert_eq!(t.wall_time(), ms(40));
        // 30 + 10 + 40 + 10
        assert_eq!(t.serial_time(), ms(90));
        assert!(close(t.parallelism(), 90.0 / 40.0));
        // Sorted by begin time, ties by start index.
        let starts: Vec<usize> = t.records().iter().map(|r| r.start).collect();
        assert_eq!(starts, vec![0, 150, 100, 200]);

        assert_eq!(
            t.busy_by_lane(),
            vec![
                (Lane::Engine(0), ms(40)),
                (Lane::Engine(1), ms(10)),
                (Lane::Engine(2), ms(0)),
                (Lane::Caller, ms(40)),
            ]
        );
        let f = t.busy_fraction();
        assert_eq!(f.len(), 4);
        assert!(close(f[0].1, 1.0));
        assert!(close(f[1].1, 0.25));
        assert_eq!(f[2], (Lane::Engine(2), 0.0));
        assert_eq!(f[3].0, Lane::Caller);
        assert!(close(f[3].1, 1.0));
        // max 40, mean 90 / 4 = 22.5
        // The team is the 3 busiest lanes (caller 40, engine 0 40, engine 1 10): max 40 / mean 30.
        assert!(close(t.imbalance(), 40.0 / 30.0));
        let sum: Duration = t.busy_by_lane().iter().map(|(_, d)| *d).sum();
        assert_eq!(sum, t.serial_time());
    }

    #[test]
    fn imbalance_known_cases() {
        // Perfect balance.
        let even = Timeline::new(
            "even",
            2,
            ms(10),
            vec![
                rec(Lane::Engine(0), 0, 5, 0, 10, false),
                rec(Lane::Engine(1), 5, 10, 0, 10, false),
            ],
        );
        assert!(close(even.imbalance(), 1.0));
        assert!(close(even.parallelism(), 2.0));
        // Skewed 3:1 -> max 30, mean 20.
        let skew = Timeline::new(
            "skew",
            2,
            ms(30),
            vec![
                rec(Lane::Engine(0), 0, 5, 0, 30, false),
                rec(Lane::Engine(1), 5, 10, 0, 10, false),
            ],
        );
        assert!(close(skew.imbalance(), 1.5));
        // All work on one of 4 engines -> 4.
        let one = Timeline::new(
            "one",
            4,
            ms(8),
            vec![rec(Lane::Engine(2), 0, 1, 0, 8, false)],
        );
        assert!(close(one.imbalance(), 4.0));
        assert!(close(one.parallelism(), 1.0));
    }

    #[test]
    fn engines_raised_to_cover_records() {
        let t = Timeline::new(
            "raise",
            1,
            ms(5),
            vec![rec(Lane::Engine(3), 0, 1, 0, 5, false)],
        );
        assert_eq!(t.engines(), 4);
        assert_eq!(t.busy_by_lane().len(), 4);
        assert_eq!(t.busy_by_lane()[3], (Lane::Engine(3), ms(5)));
    }

    #[test]
    fn display_summary() {
        let s = skewed().to_string();
        assert!(s.contains("\"skewed\""), "{s}");
        assert!(s.contains("wall 40.000 ms"), "{s}");
        assert!(s.contains("serial 90.000 ms"), "{s}");
        assert!(s.contains("parallelism 2.25x"), "{s}");
        assert!(s.contains("imbalance 1.33"), "{s}");
        assert!(s.contains("engine 1 25.0%"), "{s}");
        assert!(s.contains("engine 2 0.0%"), "{s}");
        assert!(s.contains("caller 100.0%"), "{s}");
        assert!(s.contains("1 stolen"), "{s}");
    }

    #[test]
    fn team_line_names_the_caller_only_when_it_ran() {
        // A blocking map on a 2-engine pool: the caller and engine 0 ran, engine 1 found
        // nothing left.
        let blocking = Timeline::new(
            "blocking",
            2,
            ms(10),
            vec![
                rec(Lane::Caller, 0, 5, 0, 10, false),
                rec(Lane::Engine(0), 5, 10, 0, 10, true),
            ],
        );
        let team = "team: caller + engines 0-1 \
                    (the calling thread works too; engines that found no work left show 0%)";
        assert_eq!(blocking.team().as_deref(), Some(team));
        let s = blocking.to_string();
        assert!(s.contains("engine 1 0.0%"), "{s}");
        assert_eq!(s.lines().nth(1), Some(team), "{s}");
        assert_eq!(s.lines().count(), 2, "{s}");

        // Engines only, all busy: no caller, no note.
        let even = Timeline::new(
            "even",
            2,
            ms(10),
            vec![
                rec(Lane::Engine(0), 0, 5, 0, 10, false),
                rec(Lane::Engine(1), 5, 10, 0, 10, false),
            ],
        );
        assert_eq!(even.team().as_deref(), Some("team: engines 0-1"));
        assert!(even.to_string().ends_with("\nteam: engines 0-1"));
        assert!(!even.to_string().contains("caller"));

        // Engines only, one idle: only the 0% note.
        let idle = Timeline::new(
            "idle",
            3,
            ms(10),
            vec![rec(Lane::Engine(2), 0, 5, 0, 10, false)],
        );
        assert_eq!(
            idle.team().as_deref(),
            Some("team: engines 0-2 (engines that found no work left show 0%)")
        );

        // One engine; the caller alone on a pool without engines.
        let one = Timeline::new(
            "one",
            1,
            ms(1),
            vec![rec(Lane::Engine(0), 0, 1, 0, 1, false)],
        );
        assert_eq!(one.team().as_deref(), Some("team: engine 0"));
        let alone = Timeline::new(
            "alone",
            0,
            ms(1),
            vec![rec(Lane::Caller, 0, 1, 0, 1, false)],
        );
        assert_eq!(
            alone.team().as_deref(),
            Some("team: caller (the calling thread works too)")
        );

        // The skewed fixture: caller plus engines 0..3, engine 2 idle.
        assert!(skewed().to_string().ends_with(
            "\nteam: caller + engines 0-2 \
             (the calling thread works too; engines that found no work left show 0%)"
        ));

        // No lane at all: no team line.
        let none = Timeline::new("none", 0, Duration::ZERO, Vec::new());
        assert_eq!(none.team(), None);
        assert!(!none.to_string().contains("team"));
    }

    #[test]
    fn empty_timeline_works() {
        let t = Timeline::new("empty", 2, Duration::ZERO, Vec::new());
        assert_eq!(t.chunks(), 0);
        assert_eq!(t.items(), 0);
        assert_eq!(t.serial_time(), Duration::ZERO);
        assert_eq!(t.parallelism(), 0.0);
        assert_eq!(t.imbalance(), 1.0);
        assert_eq!(
            t.busy_fraction(),
            vec![(Lane::Engine(0), 0.0), (Lane::Engine(1), 0.0)]
        );
        let summary = t.to_string();
        assert!(
            !summary.contains("NaN") && !summary.contains("inf"),
            "{summary}"
        );

        // No engines at all.
        let none = Timeline::new("none", 0, Duration::ZERO, Vec::new());
        assert!(!none.to_string().contains("NaN"));
        assert_eq!(none.imbalance(), 1.0);
    }
}
