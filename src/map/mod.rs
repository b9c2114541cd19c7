//! The map pipeline: how one parallel call runs, whatever view started it.
//!
//! Every map — `Pool::par_map` and its `try_`/`_into`/`for_each` forms, the views' blocking and
//! async maps, `return_exceptions`, `imap`, DirectView maps with or without engine state — goes
//! through the same three steps, so stop, hole, panic and drop handling exist once:
//!
//! 1. **input** ([`input`]): the public [`IntoMapInput`] converts slices, vectors, ranges and
//!    zips into a [`MapInput`](input::MapInput) that hands item `i` out at most once and
//!    releases (drops) what nobody took.
//! 2. **run** ([`run`]): a [`Body`](body::Body) — input, closure, sink, the schedule's
//!    `Dispenser`, failure report — worked on by *participants*. A blocking call from outside
//!    the pool makes the calling thread a participant at once and queues at most `P − 1`
//!    *tickets* (so a call uses `P` threads, like an OpenMP team); engines that pick a ticket up
//!    enter the map's [`Gate`](crate::latch) and take chunks until none are left. Late tickets
//!    find the gate closed and leave without touching the map. Directed work (DirectView) is
//!    pre-entered and sent to the named engines' mailboxes. A background map keeps its body in
//!    an `Arc` and is finished by its last participant.
//! 3. **sink** ([`sink`]): where results go — the spare capacity of a fresh `Vec`, the caller's
//!    buffer, one `Result` per item, a stream, a checkpoint log ([`checkpoint`], written at
//!    the chunk completion point `Sink::chunk_done`), or nowhere — and `collect`, which turns a
//!    concluded report into the vector or the error (`collect_partial`: or the error with
//!    what finished).
//!
//! Retries ([`retry`]) wrap the item's closure; they add no step.
//!
//! # Invariants
//! * Each index is *taken* (the closure called on it) at most once, and exactly once unless the
//!   map was stopped (abort, or an `Err` in a `try_` map). Output slot `i` is written iff item
//!   `i` ran and returned a value.
//! * Panics are caught per item: the item's slot becomes a hole, the chunk goes on with the next
//!   item, the engine survives. A panicking `Drop` that parview runs (an untaken input, a result
//!   of a failed map, a panic payload) is caught too and reported as a panic of that index;
//!   every other value is still dropped exactly once ([`crate::unwind`]).
//! * The per-chunk path takes no lock and allocates nothing. Locks are taken only on failure paths
//!   and, when a timeline is recorded, once per participant.
//! * Holes (unwritten outputs) are known exactly at the end — failed items, the rest of a chunk
//!   cut short by an `Err`, static slots cut short by a stop, and the never-claimed tail — so
//!   outputs that were written are dropped exactly once, and inputs that were not taken (owned
//!   `Vec` input, the longer side of a zip) are dropped too.
//! * A map's output is reserved before anything runs; a size that cannot be allocated is
//!   [`MapError::TooLarge`](crate::MapError::TooLarge), never an abort.

pub(crate) mod body;
pub(crate) mod checkpoint;
pub(crate) mod chunks;
pub(crate) mod fold;
pub(crate) mod input;
pub(crate) mod retry;
pub(crate) mod run;
pub(crate) mod sink;
pub(crate) mod track;

pub(crate) mod early;
pub(crate) mod stream;

pub use input::IntoMapInput;
pub use track::Timings;

pub(crate) use input::MapInput;
pub(crate) use run::{Spec, map_vec};
pub(crate) use track::{Tracker, with_timeline};

/// Lets an already converted input pass through `IntoMapInput` again.
pub(crate) struct Passthrough<In>(pub(crate) In);

impl<In: MapInput> IntoMapInput for Passthrough<In> {
    type Item = In::Item;
    type Input = In;
    fn into_map_input(self) -> In {
        self.0
    }
}

/// Re-raises a map's failure on the calling thread, naming the item and the count.
pub(crate) fn raise<E: std::fmt::Display>(e: crate::MapError<E>, n: usize) -> ! {
    let msg = match &e {
        crate::MapError::Panicked {
            index,
            message,
            failed,
        } => format!(
            "parview: item {index} panicked: {message} ({failed} of {n} items panicked; the lowest index is reported, all other items ran)"
        ),
        other => format!("parview: {other}"),
    };
    std::panic::resume_unwind(Box::new(msg))
}

#[cfg(test)]
mod tests;
