//! Progress bars (feature `progress`): an [indicatif] bar that counts **finished** items, with
//! rate and ETA, drawn from the same lock-free counters as
//! [`AsyncResult::progress`](crate::AsyncResult::progress).
//!
//! A small thread polls the counters every 50 ms and redraws; the bar is hidden automatically
//! when stderr is not a terminal (indicatif's rule), so logs and CI output stay clean. The map's
//! own threads never touch the bar.

use crate::map::Tracker;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running bar; [`Bar::finish`] (or drop) stops it.
pub(crate) struct Bar {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Bar {
    /// Starts drawing `tracker`'s progress under `label` until all items are done, the map is
    /// marked finished (e.g. aborted), or the bar is finished.
    pub(crate) fn start(label: &str, tracker: Arc<Tracker>) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        let pb =
            ProgressBar::with_draw_target(Some(tracker.total as u64), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} items  {per_sec}  ETA {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        pb.set_message(label.to_string());
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("parview-progress".into())
            .spawn(move || {
                loop {
                    let done = tracker.done();
                    pb.set_position(done as u64);
                    if done >= tracker.total || tracker.is_finished() || s.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                pb.set_position(tracker.done() as u64);
                pb.finish();
            })
            .ok();
        Bar { stop, handle }
    }

    /// Draws the final state and stops.
    pub(crate) fn finish(mut self) {
        self.stop_now();
    }

    /// Lets the bar run on by itself until the map's counters reach the total (or the process
    /// exits); returns nothing left to stop.
    pub(crate) fn detach(mut self) {
        self.handle.take();
        // Our Drop raises `stop`; give it a flag the thread does not watch.
        self.stop = Arc::new(AtomicBool::new(false));
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop_now();
    }
}
