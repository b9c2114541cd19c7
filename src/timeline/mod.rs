//! Timelines of a parallel map: who ran which chunk, and when.
//!
//! When timeline recording is enabled, a map returns a [`Timeline`] next to
//! its results. A timeline is a list of [`ChunkRecord`]s — one per chunk of
//! the index range — plus the map's wall time and the pool size. From it you
//! get summary statistics ([`Timeline::parallelism`], [`Timeline::imbalance`],
//! [`Timeline::busy_by_lane`], …), a short [`Display`](std::fmt::Display)
//! summary, and two exports:
//!
//! * [`Timeline::to_chrome_trace`] / [`Timeline::write_chrome_trace`]: Trace
//!   Event JSON, which <https://ui.perfetto.dev> and `chrome://tracing` open;
//! * [`Timeline::to_svg`] / [`Timeline::write_svg`]: a self-contained Gantt
//!   chart, one row per lane, one bar per chunk.
//!
//! # Reading a timeline
//!
//! * **Lanes.** Every chunk ran on a [`Lane`]: pool engine `i`
//!   ([`Lane::Engine`]), or the thread that called the map ([`Lane::Caller`]).
//!   Each engine of the pool gets a row, idle or not; the caller gets one
//!   (after the engines) only when it ran a chunk.
//! * **The team.** A blocking map called from outside the pool puts the
//!   calling thread to work at once (lane `caller`) and lets up to `P − 1`
//!   engines join, so that it runs on `P` threads, like an OpenMP team. On a
//!   2-engine pool you may therefore see `engine 1 0.0%` beside a busy
//!   `caller`: that engine found no work left, which is by design, not
//!   imbalance ([`Timeline::imbalance`] counts the `P` busiest lanes). Called
//!   from an engine, the map runs on that engine instead of a `caller` lane.
//!   A background map (`map_async`, `imap`, …) is run by the engines; a
//!   waiting thread that is itself an engine helps, as `caller`. DirectView
//!   maps run on the engines they address. The summary and the SVG say which
//!   lanes form the team in a line such as `team: caller + engines 0-1 (the
//!   calling thread works too; engines that found no work left show 0%)`.
//! * **Stolen chunks** ([`ChunkRecord::stolen`]) were run by an engine that
//!   joined the map by taking shared work; the SVG outlines them dashed.
//! * **Numbers.** [`Timeline::serial_time`] is the total busy time (the map on
//!   one thread, without overheads); [`Timeline::parallelism`] is that over
//!   the wall time; [`Timeline::imbalance`] is the busiest lane over the
//!   team's mean (1.0 is perfect balance).
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
//! # Layout
//!
//! One file per concept, each with its own unit tests; the methods stay
//! methods of [`Timeline`], each defined beside its concept:
//!
//! * `model.rs`: [`Lane`], [`ChunkRecord`], [`Timeline`] with its statistics
//!   and its `Display` summary;
//! * `trace.rs`: the Trace Event JSON writer ([`Timeline::to_chrome_trace`],
//!   [`Timeline::write_chrome_trace`]);
//! * `svg.rs`: the SVG Gantt renderer ([`Timeline::to_svg`],
//!   [`Timeline::write_svg`]);
//! * this file: these docs, the re-exports and the helpers the exporters
//!   share.
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
//! assert!(t.to_string().ends_with("\nteam: caller + engines 0-1 (the calling thread works too)"));
//!
//! let dir = std::env::temp_dir().join("parview-timeline-doc");
//! t.write_chrome_trace(dir.join("demo.json"))?;
//! t.write_svg(dir.join("demo.svg"))?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::path::Path;
use std::time::Duration;

mod model;
mod svg;
mod trace;

pub use model::{Attempt, ChunkRecord, Lane, Timeline};

/// Duration in milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Writes `contents` to `path`, creating its parent directories (both
/// exporters' `write_*`).
fn write_creating_dirs(path: &Path, contents: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::write(path, contents)
}

/// Hand-made records shared by the unit tests of the three files.
#[cfg(test)]
mod fixtures {
    use super::{ChunkRecord, Lane, Timeline};
    use std::time::Duration;

    pub(super) fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    pub(super) fn rec(
        lane: Lane,
        start: usize,
        end: usize,
        b: u64,
        e: u64,
        stolen: bool,
    ) -> ChunkRecord {
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
    pub(super) fn skewed() -> Timeline {
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

    pub(super) fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::skewed;

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
}
