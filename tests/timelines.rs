//! Timelines: recorded timelines (`map_timed`, `record_timeline`) cover every index once and add
//! up, are handed out once and only after the map finished, and their exports (Chrome/Perfetto
//! trace, SVG) parse back.

mod common;

use common::{SCHEDULES, pool, spin_for, within};
use parview::timeline::Lane;
use parview::timeline::Timeline;
use std::time::Duration;

/// Checks the invariants of a map's timeline over `0..n` on a pool of `p` engines.
fn check_timeline(tl: &Timeline, n: usize, p: usize, ctx: &str) {
    let mut covered = vec![0u8; n];
    for r in tl.records() {
        assert!(r.start < r.end, "{ctx}: empty chunk {r:?}");
        assert!(r.end <= n, "{ctx}: chunk past the end {r:?}");
        for c in &mut covered[r.start..r.end] {
            *c += 1;
        }
        assert!(
            r.began <= r.ended,
            "{ctx}: chunk ends before it begins {r:?}"
        );
        assert!(
            r.ended <= tl.wall_time(),
            "{ctx}: chunk {r:?} ends after wall {:?}",
            tl.wall_time()
        );
        if let Lane::Engine(e) = r.lane {
            assert!(e < p, "{ctx}: engine {e} of a {p}-engine pool");
        }
    }
    for (i, c) in covered.iter().enumerate() {
        assert_eq!(*c, 1, "{ctx}: index {i} appears in {c} chunks");
    }
    assert_eq!(tl.items(), n, "{ctx}");
    assert_eq!(tl.chunks(), tl.records().len(), "{ctx}");
    assert_eq!(tl.engines(), p, "{ctx}");
    let busy: Duration = tl.records().iter().map(|r| r.ended - r.began).sum();
    assert_eq!(
        busy,
        tl.serial_time(),
        "{ctx}: serial_time is not the sum of busy times"
    );
    let by_lane: Duration = tl.busy_by_lane().iter().map(|(_, d)| *d).sum();
    assert_eq!(
        by_lane,
        tl.serial_time(),
        "{ctx}: busy_by_lane does not add up"
    );
    // Records come sorted by begin time.
    assert!(
        tl.records().windows(2).all(|w| w[0].began <= w[1].began),
        "{ctx}: not sorted"
    );
}

fn check_exports(tl: &Timeline, ctx: &str) {
    // Chrome trace: parses, one "X" event per chunk, matching the records.
    let v: serde_json::Value = serde_json::from_str(&tl.to_chrome_trace()).expect("trace is JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents array");
    let xs: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(xs.len(), tl.chunks(), "{ctx}: one X event per chunk");
    let mut from_trace: Vec<(u64, u64)> = xs
        .iter()
        .map(|e| {
            (
                e["args"]["start"].as_u64().unwrap(),
                e["args"]["end"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut from_records: Vec<(u64, u64)> = tl
        .records()
        .iter()
        .map(|r| (r.start as u64, r.end as u64))
        .collect();
    from_trace.sort();
    from_records.sort();
    assert_eq!(
        from_trace, from_records,
        "{ctx}: trace events do not match the chunks"
    );
    for e in &xs {
        assert!(
            e["ts"].as_f64().is_some() && e["dur"].as_f64().is_some(),
            "{ctx}: {e}"
        );
    }
    // SVG: parses as XML, one <rect> per chunk.
    let svg = tl.to_svg();
    let doc = roxmltree::Document::parse(&svg).expect("SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let rects = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert_eq!(rects, tl.chunks(), "{ctx}: one <rect> per chunk");
}

#[test]
fn load_balanced_map_timed_records_every_index_once() {
    within(120, || {
        for p in [1usize, 2, 3, 8] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                for n in [1usize, 5, 300, 3000] {
                    let ctx = format!("LB P={p} {s:?} n={n}");
                    let (v, tl) = pool.load_balanced().schedule(s).map_timed(0..n, |i| {
                        if i % 64 == 0 {
                            spin_for(Duration::from_micros(20));
                        }
                        i * 2
                    });
                    assert_eq!(v, (0..n).map(|i| i * 2).collect::<Vec<_>>(), "{ctx}");
                    check_timeline(&tl, n, p, &ctx);
                    if n == 300 {
                        check_exports(&tl, &ctx);
                    }
                }
            }
        }
    });
}

#[test]
fn direct_map_timed_records_one_chunk_per_engine() {
    within(60, || {
        for p in [1usize, 2, 3, 8] {
            let pool = pool(p);
            for n in [p, p + 1, 7 * p, 100, 1000] {
                let ctx = format!("direct P={p} n={n}");
                let (v, tl) = pool.direct().map_timed(0..n, |i| i + 1);
                assert_eq!(v, (1..=n).collect::<Vec<_>>(), "{ctx}");
                check_timeline(&tl, n, p, &ctx);
                assert_eq!(
                    tl.chunks(),
                    n.min(p),
                    "{ctx}: one chunk per (non-empty) engine block"
                );
                for r in tl.records() {
                    match r.lane {
                        Lane::Engine(e) => {
                            assert_eq!(
                                r.start..r.end,
                                parview::Schedule::static_block(n, p, e),
                                "{ctx}"
                            );
                        }
                        Lane::Caller => {
                            panic!("{ctx}: the caller does not work on DirectView maps")
                        }
                    }
                }
                check_exports(&tl, &ctx);
            }
            if p >= 3 {
                let (_, tl) = pool
                    .direct_to(&[2, 0])
                    .unwrap()
                    .map_timed(0..10usize, |i| i);
                check_timeline(&tl, 10, p, "direct_to");
                let mut lanes: Vec<_> = tl
                    .records()
                    .iter()
                    .map(|r| (r.lane, r.start, r.end))
                    .collect();
                lanes.sort_by_key(|x| x.1);
                assert_eq!(
                    lanes,
                    vec![(Lane::Engine(2), 0, 5), (Lane::Engine(0), 5, 10)]
                );
            }
        }
    });
}

#[test]
fn async_timeline_matches_async_result_serial_time() {
    within(120, || {
        for p in [1usize, 2, 3] {
            let pool = pool(p);
            for &s in &SCHEDULES {
                let ctx = format!("async P={p} {s:?}");
                let ar = pool
                    .load_balanced()
                    .schedule(s)
                    .record_timeline()
                    .map_async(0..2000usize, |i| {
                        if i % 16 == 0 {
                            spin_for(Duration::from_micros(10));
                        }
                        i
                    });
                ar.wait();
                let tl = ar.timeline().expect("recorded timeline");
                check_timeline(&tl, 2000, p, &ctx);
                let diff = tl.serial_time().abs_diff(ar.serial_time());
                assert!(
                    diff <= Duration::from_micros(1),
                    "{ctx}: timeline {:?} vs ar {:?}",
                    tl.serial_time(),
                    ar.serial_time()
                );
                assert!(tl.wall_time() <= ar.elapsed(), "{ctx}");
                check_exports(&tl, &ctx);
                assert_eq!(ar.get().unwrap().len(), 2000);
            }
            // Without record_timeline: no timeline.
            let ar = pool.load_balanced().map_async(0..100usize, |i| i);
            ar.wait();
            assert!(ar.timeline().is_none());
            // DirectView async with a timeline.
            let ar = pool
                .direct()
                .record_timeline()
                .map_async(0..500usize, |i| i);
            ar.wait();
            let tl = ar.timeline().expect("direct async timeline");
            check_timeline(&tl, 500, p, "direct async");
            assert!(tl.serial_time().abs_diff(ar.serial_time()) <= Duration::from_micros(1));
            // Return-exceptions async with a timeline, with panics inside.
            let ar = pool
                .load_balanced()
                .record_timeline()
                .return_exceptions()
                .map_async(0..500usize, |i| assert!(i % 100 != 3, "tl {i}"));
            ar.wait();
            let tl = ar.timeline().expect("timeline");
            check_timeline(&tl, 500, p, "return_exceptions async");
            assert_eq!(ar.get().unwrap().iter().filter(|r| r.is_err()).count(), 5);
        }
    });
}

#[test]
fn no_timeline_before_the_map_finishes() {
    within(60, || {
        let pool = pool(2);
        let ar = pool
            .load_balanced()
            .record_timeline()
            .map_async(0..20usize, |i| {
                std::thread::sleep(Duration::from_millis(10));
                i
            });
        let early = ar.timeline();
        if early.is_some() {
            assert!(
                ar.ready(),
                "a timeline was handed out before the map finished"
            );
        }
        ar.wait();
        if early.is_none() {
            let tl = ar.timeline().expect("timeline after the map finished");
            check_timeline(&tl, 20, 2, "slow async");
        }
    });
}

#[test]
fn timeline_summary_numbers_are_sane() {
    within(60, || {
        let pool = pool(2);
        let (_, tl) = pool
            .load_balanced()
            .schedule(parview::Schedule::Dynamic(1))
            .map_timed(0..40usize, |_| spin_for(Duration::from_micros(200)));
        let par = tl.parallelism();
        assert!(par > 0.0 && par <= 2.0 + 1e-9, "parallelism {par}");
        assert!(tl.imbalance() >= 1.0 - 1e-9);
        assert!(
            tl.busy_fraction()
                .iter()
                .all(|(_, f)| (0.0..=1.0 + 1e-9).contains(f))
        );
        assert!(tl.serial_time() >= Duration::from_micros(200 * 40));
        let text = tl.to_string();
        assert!(!text.is_empty());
        let dir = std::env::temp_dir().join(format!("parview-it-timeline-{}", std::process::id()));
        tl.write_chrome_trace(dir.join("a/t.json")).unwrap();
        tl.write_svg(dir.join("b/t.svg")).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("a/t.json")).unwrap()).unwrap();
        assert!(back["traceEvents"].is_array());
        roxmltree::Document::parse(&std::fs::read_to_string(dir.join("b/t.svg")).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn async_timeline_is_taken_once() {
    let pool = pool(2);
    let ar = pool
        .load_balanced()
        .record_timeline()
        .map_async(0..100usize, |i| i);
    ar.wait();
    let first = ar.timeline().expect("first call gives the timeline");
    assert_eq!(first.items(), 100);
    let second = ar.timeline();
    assert!(
        second.is_none(),
        "second call returned Some(timeline with {} chunks)",
        second.map(|t| t.chunks()).unwrap_or(0)
    );
}

#[test]
fn direct_timeline_has_no_empty_chunks_when_fewer_items_than_engines() {
    within(60, || {
        let pool = pool(4);
        for n in [1usize, 2, 3] {
            let (_, tl) = pool.direct().map_timed(0..n, |i| i);
            check_timeline(&tl, n, 4, &format!("direct map_timed n={n}"));
            assert_eq!(tl.chunks(), n);
            let ar = pool.direct().record_timeline().map_async(0..n, |i| i);
            ar.wait();
            let tl = ar.timeline().unwrap();
            check_timeline(&tl, n, 4, &format!("direct map_async n={n}"));
        }
    });
}
