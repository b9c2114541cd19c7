//! parview: placeholder crate docs (rewritten below once the views land).
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod async_result;
#[cfg(feature = "mpi")]
pub mod cluster;
pub mod demo;
mod error;
mod latch;
mod map;
pub mod pool;
#[cfg(feature = "progress")]
mod progress;
pub mod reduce;
pub mod rng;
pub mod schedule;
mod sleep;
mod sync;
pub mod timeline;
mod views;

pub use async_result::{AsyncResult, Imap, ImapUnordered};
pub use error::{ItemError, MapError};
pub use map::{IntoMapInput, Timings};
pub use pool::{BuildError, Pool, PoolBuilder, default_workers};
pub use reduce::{par_map_reduce, par_sum};
pub use schedule::{Schedule, ScheduleError};
pub use timeline::Timeline;
pub use views::{DirectView, EngineState, LoadBalancedView, ReturnExceptions, ViewError};

/// The pool free functions use: the engine's own pool when called from inside one, else
/// [`Pool::global`].
fn current_pool() -> &'static Pool {
    Pool::global()
}

/// Applies `f` to every item on the global pool; results in input order.
///
/// # Panics
/// As [`Pool::par_map`]: after all other items ran, with the lowest failing index and the count.
///
/// # Examples
/// ```
/// let squares = parview::par_map(0..5u32, |i| i * i);
/// assert_eq!(squares, vec![0, 1, 4, 9, 16]);
/// ```
pub fn par_map<I, R, F>(input: I, f: F) -> Vec<R>
where
    I: IntoMapInput,
    F: Fn(I::Item) -> R + Sync,
    R: Send,
{
    current_pool().par_map(input, f)
}

/// [`par_map`] with an explicit [`Schedule`].
///
/// # Panics
/// As [`Pool::par_map_with`].
///
/// # Examples
/// ```
/// let v = parview::par_map_with(parview::Schedule::Dynamic(16), 0..100u32, |i| i + 1);
/// assert_eq!(v[99], 100);
/// ```
pub fn par_map_with<I, R, F>(schedule: Schedule, input: I, f: F) -> Vec<R>
where
    I: IntoMapInput,
    F: Fn(I::Item) -> R + Sync,
    R: Send,
{
    current_pool().par_map_with(schedule, input, f)
}

/// [`Pool::par_map_into`] on the global pool: results written into a caller's buffer.
///
/// # Panics
/// As [`Pool::par_map_into`] (also when `out` has the wrong length; the message names `out`).
///
/// # Examples
/// ```
/// let mut out = vec![0u64; 4];
/// parview::par_map_into(0..4u64, &mut out, |i| 2 * i + 1);
/// assert_eq!(out, vec![1, 3, 5, 7]);
/// ```
pub fn par_map_into<I, R, F>(input: I, out: &mut [R], f: F)
where
    I: IntoMapInput,
    F: Fn(I::Item) -> R + Sync,
    R: Send,
{
    current_pool().par_map_into(input, out, f)
}

/// [`Pool::try_par_map`] on the global pool.
///
/// # Errors
/// As [`Pool::try_par_map`].
///
/// # Examples
/// ```
/// let r = parview::try_par_map(&["4", "x"], |s| s.parse::<u8>());
/// assert!(matches!(r, Err(parview::MapError::Failed { index: 1, .. })));
/// ```
pub fn try_par_map<I, R, E, F>(input: I, f: F) -> Result<Vec<R>, MapError<E>>
where
    I: IntoMapInput,
    F: Fn(I::Item) -> Result<R, E> + Sync,
    R: Send,
    E: Send,
{
    current_pool().try_par_map(input, f)
}

/// One contiguous slice of `data` per engine of the global pool, `f(engine, piece)` on each,
/// results in engine order (see [`Pool::scatter_gather`]).
///
/// # Panics
/// As [`Pool::scatter_gather`].
///
/// # Examples
/// ```
/// let data: Vec<f64> = (0..1000).map(f64::from).collect();
/// let partial = parview::scatter_gather(&data, |_, piece| piece.iter().sum::<f64>());
/// assert_eq!(partial.len(), parview::Pool::global().workers());
/// assert_eq!(partial.iter().sum::<f64>(), 499500.0);
/// ```
pub fn scatter_gather<T, R, F>(data: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &[T]) -> R + Sync,
{
    current_pool().scatter_gather(data, f)
}
