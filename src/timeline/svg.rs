//! The SVG exporter: [`Timeline::to_svg`] and [`Timeline::write_svg`] draw the timeline as a
//! self-contained Gantt chart, one row per lane and one bar per chunk.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::{Lane, Timeline, millis, write_creating_dirs};

impl Timeline {
    /// A Gantt chart of the timeline as a standalone SVG document (about
    /// 1000 px wide).
    ///
    /// One row per lane (engines `0..engines()` even if idle, then the caller
    /// if it ran anything), labelled on the left with the lane's busy
    /// percentage on the right; exactly one `<rect>` per chunk (the frame and
    /// background are paths and lines), filled with a hue that cycles with
    /// the chunk's position in index order so that neighbouring chunks
    /// differ; stolen chunks get a dashed dark outline. Below is a time axis
    /// in milliseconds and a caption saying which lanes form the team (as the
    /// [`Display`](std::fmt::Display) summary does); above, a title with the
    /// label and the summary numbers. Each bar carries a `<title>` tooltip.
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
        render(self)
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

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 62.0;
const ROW_H: f64 = 24.0;
const ROW_GAP: f64 = 6.0;
const AXIS_H: f64 = 48.0;
/// Room below the axis for the caption saying which lanes form the team.
const CAPTION_H: f64 = 20.0;

/// Escapes text for XML content and attribute values.
fn escape(s: &str) -> String {
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
fn hue_color(hue: f64) -> String {
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
fn tick_step(span: f64) -> f64 {
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

fn render(t: &Timeline) -> String {
    let lanes = t.lanes();
    let records = t.records();
    let team = t.team();
    let plot_w = WIDTH - LEFT - RIGHT;
    let rows_h = lanes.len() as f64 * (ROW_H + ROW_GAP);
    let axis_y = TOP + rows_h;
    let height = axis_y + AXIS_H + if team.is_some() { CAPTION_H } else { 0.0 };

    // Time span shown: the wall time, stretched to cover any record that
    // ends after it; 1 ms if everything is zero (avoids dividing by 0).
    let last_end = records.iter().map(|r| r.ended).max().unwrap_or_default();
    let mut span_ms = millis(t.wall_time().max(last_end));
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
    let _ = writeln!(s, "<title>{}</title>", escape(t.label()));
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
        t.label(),
        millis(t.wall_time()),
        millis(t.serial_time()),
        t.parallelism(),
        t.imbalance()
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    let stolen = records.iter().filter(|r| r.stolen).count();
    let subtitle = format!(
        "{} chunks, {} items, {} engine{}{}; {} stolen (dashed outline)",
        t.chunks(),
        t.items(),
        t.engines(),
        if t.engines() == 1 { "" } else { "s" },
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

    // Caption: which lanes form the team (and why an engine may show 0%).
    if let Some(team) = &team {
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" fill="#555555">{}</text>"##,
            n(axis_y + AXIS_H + 12.0),
            escape(team)
        );
    }

    // Chunks: one rect each. Hue by position in index order.
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (records[i].start, records[i].end, records[i].began));
    let mut rank = vec![0usize; records.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    for (i, r) in records.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::fixtures::{close, ms, rec, skewed};
    use std::time::Duration;

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
    fn svg_caption_says_which_lanes_form_the_team() {
        let team = "team: caller + engines 0-2 \
                    (the calling thread works too; engines that found no work left show 0%)";
        let svg = skewed().to_svg();
        let doc = parse_svg(&svg);
        let shown = texts(&doc);
        assert!(shown.iter().any(|s| s == team), "{shown:?}");
        // The caption lies inside the picture, below the axis label.
        let height: f64 = doc
            .root_element()
            .attribute("height")
            .unwrap()
            .parse()
            .unwrap();
        let y_of = |text: &str| -> f64 {
            doc.descendants()
                .find(|n| n.has_tag_name("text") && n.text() == Some(text))
                .and_then(|n| n.attribute("y"))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(y_of("time (ms)") < y_of(team) && y_of(team) < height);

        // Engines only: no caller in the caption.
        let t = Timeline::new(
            "even",
            2,
            ms(10),
            vec![
                rec(Lane::Engine(0), 0, 5, 0, 10, false),
                rec(Lane::Engine(1), 5, 10, 0, 10, false),
            ],
        );
        let svg = t.to_svg();
        let shown = texts(&parse_svg(&svg));
        assert!(shown.iter().any(|s| s == "team: engines 0-1"), "{shown:?}");
        assert!(!svg.contains("caller"));

        // No lane at all: no caption.
        let none = Timeline::new("none", 0, Duration::ZERO, Vec::new());
        assert!(!none.to_svg().contains("team"));
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
    }

    #[test]
    fn empty_timeline_svg_works() {
        let t = Timeline::new("empty", 2, Duration::ZERO, Vec::new());
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

        // No engines at all.
        let none = Timeline::new("none", 0, Duration::ZERO, Vec::new());
        assert!(!none.to_svg().contains("NaN"));
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
    }

    #[test]
    fn hue_colors() {
        assert_eq!(hue_color(0.0), "#d74242");
        assert_eq!(hue_color(120.0), "#42d742");
        assert_eq!(hue_color(240.0), "#4242d7");
        assert_eq!(hue_color(360.0), hue_color(0.0));
        assert_ne!(hue_color(0.0), hue_color(137.508));
    }

    #[test]
    fn tick_steps_are_nice() {
        assert!(close(tick_step(40.0), 5.0));
        assert!(close(tick_step(1.0), 0.2));
        assert!(close(tick_step(1000.0), 200.0));
    }
}
