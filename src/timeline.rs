//! Timelines of a parallel map: who ran which chunk, and when.
//!
//! When timeline recording is enabled, a map returns a [`Timeline`] next to
//! its results. A timeline is a list of [`ChunkRecord`]s — one per chunk of
//! the index range — plus the map's wall time and the pool size. From it you
//! get summary statistics ([`Timeline::parallelism`], [`Timeline::imbalance`],
//! [`Timeline::busy_by_lane`], …), a one-paragraph [`Display`](std::fmt::Display)
//! summary, and two exports:
//!
//! * [`Timeline::to_chrome_trace`] / [`Timeline::write_chrome_trace`]: Trace
//!   Event JSON, which <https://ui.perfetto.dev> and `chrome://tracing` open;
//! * [`Timeline::to_svg`] / [`Timeline::write_svg`]: a self-contained Gantt
//!   chart, one row per lane, one bar per chunk.
//!
//! # Invariants
//!
//! A timeline produced by a map satisfies:
//!
//! * every index of the map's range appears in exactly one record (the chunks
//!   partition the range, so [`Timeline::items`] is the range's length);
//! * every record lies within `[0, wall]`: `0 <= began <= ended <= wall`, all
//!   measured from the map's start on a monotonic clock;
//! * [`Timeline::serial_time`] is the sum of the busy times `ended - began`
//!   of all records, which is also the sum of [`Timeline::busy_by_lane`].
//!
//! [`Timeline::new`] does not check the first two (they are the producer's
//! job); it sorts the records by begin time and computes everything else from
//! them.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use parview::timeline::{ChunkRecord, Lane, Timeline};
//!
//! let ms = Duration::from_millis;
//! let records = vec![
//!     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 50, began: ms(0), ended: ms(4), stolen: false },
//!     ChunkRecord { lane: Lane::Engine(1), start: 50, end: 100, began: ms(0), ended: ms(3), stolen: false },
//!     ChunkRecord { lane: Lane::Caller, start: 100, end: 120, began: ms(1), ended: ms(2), stolen: false },
//!     ChunkRecord { lane: Lane::Engine(1), start: 120, end: 150, began: ms(3), ended: ms(5), stolen: true },
//! ];
//! let t = Timeline::new("demo map", 2, ms(5), records);
//! assert_eq!(t.items(), 150);
//! assert_eq!(t.serial_time(), ms(10));
//! assert!((t.parallelism() - 2.0).abs() < 1e-9);
//! println!("{t}");
//!
//! let dir = std::env::temp_dir().join("parview-timeline-doc");
//! t.write_chrome_trace(dir.join("demo.json"))?;
//! t.write_svg(dir.join("demo.svg"))?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

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
/// See the [module docs](self) for the invariants a map's timeline satisfies.
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
        }
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
    fn lanes(&self) -> Vec<Lane> {
        let mut lanes: Vec<Lane> = (0..self.engines).map(Lane::Engine).collect();
        if self.has_caller() {
            lanes.push(Lane::Caller);
        }
        lanes
    }

    fn has_caller(&self) -> bool {
        self.records.iter().any(|r| r.lane == Lane::Caller)
    }

    /// Row (and trace track) of a lane: engine `i` is row `i`, the caller is
    /// row `engines()`.
    fn row(&self, lane: Lane) -> usize {
        match lane {
            Lane::Engine(i) => i,
            Lane::Caller => self.engines,
        }
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
    /// [invariants](self)).
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

    /// Trace Event JSON (the format of `chrome://tracing`, also opened by
    /// <https://ui.perfetto.dev>).
    ///
    /// The result is `{"traceEvents":[...],"displayTimeUnit":"ms"}` holding
    /// one complete event (`"ph":"X"`) per chunk, with `ts`/`dur` in
    /// microseconds, `pid` 1, `tid` the lane's track (engine `i` is `i`, the
    /// caller is `engines()`), name `items start..end` and args
    /// `{start, end, stolen}`; plus metadata events (`"ph":"M"`): a
    /// `process_name` and one `thread_name` per lane (`engine 0`, …,
    /// `caller`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("trace", 1, ms(2), vec![
    ///     ChunkRecord { lane: Lane::Engine(0), start: 0, end: 10, began: ms(0), ended: ms(2), stolen: false },
    /// ]);
    /// let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
    /// assert_eq!(v["displayTimeUnit"], "ms");
    /// assert!(v["traceEvents"].as_array().unwrap().iter().any(|e| e["ph"] == "X"));
    /// ```
    pub fn to_chrome_trace(&self) -> String {
        let mut events = Vec::with_capacity(self.records.len() + self.engines + 2);
        events.push(TraceEvent::Metadata {
            name: "process_name",
            ph: "M",
            pid: TRACE_PID,
            tid: 0,
            args: NameArgs {
                name: format!("parview: {}", self.label),
            },
        });
        for lane in self.lanes() {
            events.push(TraceEvent::Metadata {
                name: "thread_name",
                ph: "M",
                pid: TRACE_PID,
                tid: self.row(lane),
                args: NameArgs {
                    name: lane.to_string(),
                },
            });
        }
        for r in &self.records {
            events.push(TraceEvent::Complete {
                name: format!("items {}..{}", r.start, r.end),
                cat: "chunk",
                ph: "X",
                ts: micros(r.began),
                dur: micros(r.busy()),
                pid: TRACE_PID,
                tid: self.row(r.lane),
                args: ChunkArgs {
                    start: r.start,
                    end: r.end,
                    stolen: r.stolen,
                },
            });
        }
        let file = TraceFile {
            trace_events: events,
            display_time_unit: "ms",
        };
        serde_json::to_string(&file).expect("trace events always serialize")
    }

    /// Writes [`Timeline::to_chrome_trace`] to `path`, creating its parent
    /// directories.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::Timeline;
    /// let t = Timeline::new("empty", 2, Duration::ZERO, vec![]);
    /// let path = std::env::temp_dir().join("parview-timeline-doc").join("empty.json");
    /// t.write_chrome_trace(&path)?;
    /// assert!(path.exists());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write_chrome_trace(&self, path: impl AsRef<Path>) -> io::Result<()> {
        write_creating_dirs(path.as_ref(), &self.to_chrome_trace())
    }

    /// A Gantt chart of the timeline as a standalone SVG document (about
    /// 1000 px wide).
    ///
    /// One row per lane (engines `0..engines()` even if idle, then the caller
    /// if it ran anything), labelled on the left with the lane's busy
    /// percentage on the right; exactly one `<rect>` per chunk (the frame and
    /// background are paths and lines), filled with a hue that cycles with
    /// the chunk's position in index order so that neighbouring chunks
    /// differ; stolen chunks get a dashed dark outline. Below is a time axis
    /// in milliseconds; above, a title with the label and the summary
    /// numbers. Each bar carries a `<title>` tooltip.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::{ChunkRecord, Lane, Timeline};
    /// let ms = Duration::from_millis;
    /// let t = Timeline::new("svg", 2, ms(2), vec![
    ///     ChunkRecord { lane: Lane::Engine(1), start: 0, end: 10, began: ms(0), ended: ms(2), stolen: true },
    /// ]);
    /// let svg = t.to_svg();
    /// assert!(svg.contains("<svg"));
    /// assert_eq!(svg.matches("<rect").count(), 1);
    /// ```
    pub fn to_svg(&self) -> String {
        svg::render(self)
    }

    /// Writes [`Timeline::to_svg`] to `path`, creating its parent directories.
    ///
    /// ```
    /// use std::time::Duration;
    /// use parview::timeline::Timeline;
    /// let t = Timeline::new("empty", 2, Duration::ZERO, vec![]);
    /// let path = std::env::temp_dir().join("parview-timeline-doc").join("empty.svg");
    /// t.write_svg(&path)?;
    /// assert!(path.exists());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn write_svg(&self, path: impl AsRef<Path>) -> io::Result<()> {
        write_creating_dirs(path.as_ref(), &self.to_svg())
    }
}

impl fmt::Display for Timeline {
    /// A one-paragraph summary: chunks, items, wall and serial time,
    /// parallelism, imbalance and per-lane busy percentages.
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
        Ok(())
    }
}

/// Duration in milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Duration in microseconds.
fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

fn write_creating_dirs(path: &Path, contents: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::write(path, contents)
}

// ---------------------------------------------------------------------------
// Chrome trace (Trace Event Format) structures.

const TRACE_PID: u32 = 1;

#[derive(Serialize)]
struct TraceFile {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<TraceEvent>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum TraceEvent {
    Complete {
        name: String,
        cat: &'static str,
        ph: &'static str,
        ts: f64,
        dur: f64,
        pid: u32,
        tid: usize,
        args: ChunkArgs,
    },
    Metadata {
        name: &'static str,
        ph: &'static str,
        pid: u32,
        tid: usize,
        args: NameArgs,
    },
}

#[derive(Serialize)]
struct ChunkArgs {
    start: usize,
    end: usize,
    stolen: bool,
}

#[derive(Serialize)]
struct NameArgs {
    name: String,
}

// ---------------------------------------------------------------------------
// SVG Gantt chart.

mod svg {
    use super::{Lane, Timeline, millis};
    use std::fmt::Write as _;

    const WIDTH: f64 = 1000.0;
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 60.0;
    const TOP: f64 = 62.0;
    const ROW_H: f64 = 24.0;
    const ROW_GAP: f64 = 6.0;
    const AXIS_H: f64 = 48.0;

    /// Escapes text for XML content and attribute values.
    pub(super) fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                // Control characters other than tab/newline are not allowed in XML 1.0.
                c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
                c => out.push(c),
            }
        }
        out
    }

    /// `#rrggbb` for a hue (degrees) at fixed saturation 65% and lightness
    /// 55% (hex rather than `hsl()` so every SVG renderer understands it).
    pub(super) fn hue_color(hue: f64) -> String {
        let (s, l) = (0.65, 0.55);
        let c = (1.0 - (2.0 * l - 1.0_f64).abs()) * s;
        let h = hue.rem_euclid(360.0) / 60.0;
        let x = c * (1.0 - (h % 2.0 - 1.0).abs());
        let (r, g, b) = match h as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = l - c / 2.0;
        let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
        format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
    }

    /// A coordinate, never NaN or infinite.
    fn n(x: f64) -> String {
        if x.is_finite() {
            format!("{x:.2}")
        } else {
            "0".to_owned()
        }
    }

    /// A "nice" tick step (1, 2 or 5 times a power of ten) giving about 8
    /// ticks over `span` (> 0).
    pub(super) fn tick_step(span: f64) -> f64 {
        let raw = span / 8.0;
        let mag = 10f64.powf(raw.log10().floor());
        let norm = raw / mag;
        let nice = if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
        nice * mag
    }

    pub(super) fn render(t: &Timeline) -> String {
        let lanes = t.lanes();
        let plot_w = WIDTH - LEFT - RIGHT;
        let rows_h = lanes.len() as f64 * (ROW_H + ROW_GAP);
        let axis_y = TOP + rows_h;
        let height = axis_y + AXIS_H;

        // Time span shown: the wall time, stretched to cover any record that
        // ends after it; 1 ms if everything is zero (avoids dividing by 0).
        let last_end = t.records.iter().map(|r| r.ended).max().unwrap_or_default();
        let mut span_ms = millis(t.wall.max(last_end));
        if span_ms.is_nan() || span_ms <= 0.0 {
            span_ms = 1.0;
        }
        let x_of = |ms: f64| LEFT + ms / span_ms * plot_w;
        let row_y = |row: usize| TOP + row as f64 * (ROW_H + ROW_GAP) + ROW_GAP / 2.0;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
            w = n(WIDTH),
            h = n(height)
        );
        let _ = writeln!(s, "<title>{}</title>", escape(&t.label));
        // Background (a path, so that rects are exactly the chunks).
        let _ = writeln!(
            s,
            r##"<path d="M0 0H{w}V{h}H0Z" fill="#ffffff"/>"##,
            w = n(WIDTH),
            h = n(height)
        );

        // Title and subtitle.
        let title = format!(
            "{}: wall {:.3} ms, serial {:.3} ms, parallelism {:.2}x, imbalance {:.2}",
            t.label,
            millis(t.wall),
            millis(t.serial_time()),
            t.parallelism(),
            t.imbalance()
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
            escape(&title)
        );
        let stolen = t.records.iter().filter(|r| r.stolen).count();
        let subtitle = format!(
            "{} chunks, {} items, {} engine{}{}; {} stolen (dashed outline)",
            t.chunks(),
            t.items(),
            t.engines,
            if t.engines == 1 { "" } else { "s" },
            if lanes.contains(&Lane::Caller) {
                " + caller"
            } else {
                ""
            },
            stolen
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="42" fill="#555555">{}</text>"##,
            escape(&subtitle)
        );

        // Row stripes, lane labels and busy percentages.
        let fractions = t.busy_fraction();
        for (row, (lane, frac)) in fractions.iter().enumerate() {
            let y = row_y(row);
            if row % 2 == 0 {
                let _ = writeln!(
                    s,
                    r##"<path d="M{x0} {y0}H{x1}V{y1}H{x0}Z" fill="#f2f2f2"/>"##,
                    x0 = n(LEFT),
                    x1 = n(LEFT + plot_w),
                    y0 = n(y - ROW_GAP / 2.0),
                    y1 = n(y + ROW_H + ROW_GAP / 2.0)
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
                n(LEFT - 8.0),
                n(y + ROW_H / 2.0),
                escape(&lane.to_string())
            );
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" dominant-baseline="middle" fill="#555555">{:.1}%</text>"##,
                n(LEFT + plot_w + 6.0),
                n(y + ROW_H / 2.0),
                frac * 100.0
            );
        }

        // Time axis: grid lines, ticks and labels in ms.
        let step = tick_step(span_ms);
        let decimals = if step >= 1.0 {
            0
        } else {
            ((-step.log10()).ceil() as usize).min(9)
        };
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#333333"/>"##,
            n(LEFT),
            n(LEFT + plot_w),
            y = n(axis_y)
        );
        let mut k = 0u32;
        loop {
            let tick = f64::from(k) * step;
            if !tick.is_finite() || tick > span_ms * (1.0 + 1e-9) || k > 1000 {
                break;
            }
            let x = n(x_of(tick));
            let _ = writeln!(
                s,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#dddddd" stroke-dasharray="2,3"/>"##,
                n(TOP),
                n(axis_y)
            );
            let _ = writeln!(
                s,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#333333"/>"##,
                n(axis_y),
                n(axis_y + 5.0)
            );
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{}" text-anchor="middle" font-size="11">{:.*}</text>"#,
                n(axis_y + 18.0),
                decimals,
                tick
            );
            k += 1;
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">time (ms)</text>"#,
            n(LEFT + plot_w / 2.0),
            n(axis_y + 38.0)
        );

        // Chunks: one rect each. Hue by position in index order.
        let mut order: Vec<usize> = (0..t.records.len()).collect();
        order.sort_by_key(|&i| (t.records[i].start, t.records[i].end, t.records[i].began));
        let mut rank = vec![0usize; t.records.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        for (i, r) in t.records.iter().enumerate() {
            let hue = (rank[i] as f64 * 137.508) % 360.0;
            let x0 = x_of(millis(r.began));
            let w = (x_of(millis(r.ended)) - x0).max(0.5);
            let y = row_y(t.row(r.lane));
            let stroke = if r.stolen {
                r##"stroke="#222222" stroke-width="1.5" stroke-dasharray="4,2""##
            } else {
                r##"stroke="#ffffff" stroke-width="0.5""##
            };
            let tip = format!(
                "items {}..{} on {}: {:.3}-{:.3} ms{}",
                r.start,
                r.end,
                r.lane,
                millis(r.began),
                millis(r.ended),
                if r.stolen { " (stolen)" } else { "" }
            );
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}" {stroke}><title>{}</title></rect>"#,
                n(x0),
                n(y),
                n(w),
                n(ROW_H),
                hue_color(hue),
                escape(&tip)
            );
        }

        // Plot frame.
        let _ = writeln!(
            s,
            r##"<path d="M{x0} {y0}H{x1}V{y1}H{x0}Z" fill="none" stroke="#999999"/>"##,
            x0 = n(LEFT),
            x1 = n(LEFT + plot_w),
            y0 = n(TOP),
            y1 = n(axis_y)
        );
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    fn rec(lane: Lane, start: usize, end: usize, b: u64, e: u64, stolen: bool) -> ChunkRecord {
        ChunkRecord {
            lane,
            start,
            end,
            began: ms(b),
            ended: ms(e),
            stolen,
        }
    }

    /// Engines 0..3 (engine 2 idle) plus the caller; skewed load.
    fn skewed() -> Timeline {
        Timeline::new(
            "skewed",
            3,
            ms(40),
            vec![
                rec(Lane::Engine(1), 100, 150, 10, 20, true),
                rec(Lane::Engine(0), 0, 100, 0, 30, false),
                rec(Lane::Caller, 150, 200, 0, 40, false),
                rec(Lane::Engine(0), 200, 210, 30, 40, false),
            ],
        )
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

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
    fn chrome_trace_round_trips() {
        let t = skewed();
        let json = t.to_chrome_trace();
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["displayTimeUnit"], "ms");
        let events = v["traceEvents"].as_array().expect("traceEvents array");

        let xs: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(xs.len(), t.chunks());
        for r in t.records() {
            let name = format!("items {}..{}", r.start, r.end);
            let matching: Vec<_> = xs.iter().filter(|e| e["name"] == name.as_str()).collect();
            assert_eq!(matching.len(), 1, "{name}");
            let e = matching[0];
            let ts = e["ts"].as_f64().unwrap();
            let dur = e["dur"].as_f64().unwrap();
            assert!((ts - r.began.as_secs_f64() * 1e6).abs() < 1e-6);
            assert!((dur - r.busy().as_secs_f64() * 1e6).abs() < 1e-6);
            assert_eq!(e["pid"], 1);
            let tid = e["tid"].as_u64().unwrap() as usize;
            match r.lane {
                Lane::Engine(i) => assert_eq!(tid, i),
                Lane::Caller => assert_eq!(tid, t.engines()),
            }
            assert_eq!(e["args"]["start"], r.start);
            assert_eq!(e["args"]["end"], r.end);
            assert_eq!(e["args"]["stolen"], r.stolen);
        }

        let names: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .map(|e| {
                (
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (0, "engine 0"),
                (1, "engine 1"),
                (2, "engine 2"),
                (3, "caller")
            ]
        );
    }

    fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("invalid SVG: {e}\n{svg}"))
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn svg_is_valid_with_one_rect_per_chunk_and_title() {
        let t = skewed();
        let svg = t.to_svg();
        let doc = parse_svg(&svg);
        assert!(doc.root_element().has_tag_name("svg"));
        let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
        assert_eq!(rects, t.chunks());
        let texts = texts(&doc);
        let title = texts
            .iter()
            .find(|s| s.starts_with("skewed"))
            .expect("title text");
        for needle in [
            "wall 40.000 ms",
            "serial 90.000 ms",
            "parallelism 2.25",
            "imbalance 1.33",
        ] {
            assert!(title.contains(needle), "{title:?} lacks {needle}");
        }
        for lane in ["engine 0", "engine 1", "engine 2", "caller"] {
            assert!(texts.iter().any(|s| s == lane), "no row label {lane}");
        }
        // Axis has tick labels, and the last tick is 40 ms.
        assert!(texts.iter().any(|s| s == "40"), "{texts:?}");
        // The stolen chunk (and only it) is dashed.
        let dashed = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("stroke-dasharray").is_some())
            .count();
        assert_eq!(dashed, 1);
        // Neighbouring chunks in index order differ in colour.
        let fills: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .map(|n| n.attribute("fill").unwrap())
            .collect();
        let mut distinct = fills.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), fills.len());
    }

    #[test]
    fn svg_escapes_label() {
        let label = r#"a<b & "c""#;
        let t = Timeline::new(
            label,
            1,
            ms(1),
            vec![rec(Lane::Engine(0), 0, 1, 0, 1, false)],
        );
        let svg = t.to_svg();
        assert!(!svg.contains(label));
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;"));
        let doc = parse_svg(&svg);
        assert!(texts(&doc).iter().any(|s| s.starts_with(label)));
        // And the chrome trace keeps it intact as JSON.
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let process = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "process_name")
            .unwrap();
        assert_eq!(process["args"]["name"], format!("parview: {label}"));
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

        let svg = t.to_svg();
        assert!(!svg.contains("NaN"), "{svg}");
        assert!(!svg.contains("inf"), "{svg}");
        let doc = parse_svg(&svg);
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("rect")).count(),
            0
        );
        let texts = texts(&doc);
        assert!(texts.iter().any(|s| s == "engine 1"));

        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), 0);

        // No engines at all.
        let none = Timeline::new("none", 0, Duration::ZERO, Vec::new());
        assert!(!none.to_svg().contains("NaN"));
        assert!(!none.to_string().contains("NaN"));
        assert_eq!(none.imbalance(), 1.0);
    }

    #[test]
    fn zero_wall_with_records_has_no_nan() {
        let t = Timeline::new(
            "instant",
            1,
            Duration::ZERO,
            vec![rec(Lane::Engine(0), 0, 3, 0, 0, false)],
        );
        assert_eq!(t.parallelism(), 0.0);
        let svg = t.to_svg();
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let doc = parse_svg(&svg);
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("rect")).count(),
            1
        );
    }

    #[test]
    fn idle_engine_gets_a_row() {
        let t = Timeline::new(
            "idle",
            4,
            ms(10),
            vec![
                rec(Lane::Engine(0), 0, 10, 0, 10, false),
                rec(Lane::Engine(2), 10, 20, 0, 5, false),
            ],
        );
        let svg = t.to_svg();
        let doc = parse_svg(&svg);
        let texts = texts(&doc);
        for lane in ["engine 0", "engine 1", "engine 2", "engine 3"] {
            assert!(texts.iter().any(|s| s == lane), "no row label {lane}");
        }
        assert!(!texts.iter().any(|s| s == "caller"));
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let threads = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .count();
        assert_eq!(threads, 4);
    }

    #[test]
    fn write_creates_parent_dirs() {
        let dir = std::env::temp_dir()
            .join(format!("parview-timeline-test-{}", std::process::id()))
            .join("nested");
        let _ = std::fs::remove_dir_all(&dir);
        let t = skewed();
        t.write_svg(dir.join("t.svg")).unwrap();
        t.write_chrome_trace(dir.join("t.json")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("t.svg")).unwrap(),
            t.to_svg()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("t.json")).unwrap(),
            t.to_chrome_trace()
        );
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn hue_colors() {
        assert_eq!(svg::hue_color(0.0), "#d74242");
        assert_eq!(svg::hue_color(120.0), "#42d742");
        assert_eq!(svg::hue_color(240.0), "#4242d7");
        assert_eq!(svg::hue_color(360.0), svg::hue_color(0.0));
        assert_ne!(svg::hue_color(0.0), svg::hue_color(137.508));
    }

    #[test]
    fn tick_steps_are_nice() {
        assert!(close(svg::tick_step(40.0), 5.0));
        assert!(close(svg::tick_step(1.0), 0.2));
        assert!(close(svg::tick_step(1000.0), 200.0));
    }
}
