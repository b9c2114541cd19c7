// The one list of schedules every schedule-generic test iterates over: the integration tests
// (through `tests/common/mod.rs`) and the unit tests in `src/` (through a `#[path]` module in
// `src/schedule.rs`). Every kind of schedule, with chunks small enough to interleave.
use super::Schedule;

/// Every kind of schedule, with small chunks, for tests that must hold under all of them.
pub const SCHEDULES: [Schedule; 8] = [
    Schedule::Static,
    Schedule::StaticChunked(1),
    Schedule::StaticChunked(7),
    Schedule::Dynamic(1),
    Schedule::Dynamic(13),
    Schedule::Guided(1),
    Schedule::Guided(5),
    Schedule::Adaptive,
];
