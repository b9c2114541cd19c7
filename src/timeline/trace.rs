//! The Chrome / Perfetto exporter: [`Timeline::to_chrome_trace`] and
//! [`Timeline::write_chrome_trace`] write the chunks as Trace Event JSON.

use std::io;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{Timeline, write_creating_dirs};

impl Timeline {
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
        let mut events = Vec::with_capacity(self.records().len() + self.engines() + 2);
        events.push(TraceEvent::Metadata {
            name: "process_name",
            ph: "M",
            pid: TRACE_PID,
            tid: 0,
            args: NameArgs {
                name: format!("parview: {}", self.label()),
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
        for r in self.records() {
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
}

/// Duration in microseconds.
fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Lane;
    use crate::timeline::fixtures::{ms, rec, skewed};

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

    #[test]
    fn chrome_trace_keeps_label_intact() {
        let label = r#"a<b & "c""#;
        let t = Timeline::new(
            label,
            1,
            ms(1),
            vec![rec(Lane::Engine(0), 0, 1, 0, 1, false)],
        );
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
    fn empty_timeline_has_no_chunk_events() {
        let t = Timeline::new("empty", 2, Duration::ZERO, Vec::new());
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), 0);
    }

    #[test]
    fn idle_engine_gets_a_track() {
        let t = Timeline::new(
            "idle",
            4,
            ms(10),
            vec![
                rec(Lane::Engine(0), 0, 10, 0, 10, false),
                rec(Lane::Engine(2), 10, 20, 0, 5, false),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let threads = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .count();
        assert_eq!(threads, 4);
    }
}
