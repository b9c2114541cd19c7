//! Errors of maps and the per-item error of `return_exceptions`-style results.

use crate::schedule::ScheduleError;
use std::convert::Infallible;

/// Why a map did not produce all its results.
///
/// `E` is the error type of a fallible closure (`try_` forms); infallible maps use the default
/// [`Infallible`].
///
/// # Examples
/// ```
/// use parview::{MapError, Pool};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let r = pool.try_par_map(0..100u32, |i| if i == 42 { Err("bad") } else { Ok(i) });
/// match r {
///     Err(MapError::Failed { index, error }) => assert_eq!((index, error), (42, "bad")),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError<E = Infallible> {
    /// A fallible closure returned `Err` (the lowest index among those that ran).
    #[error("item {index} failed: {error}")]
    Failed {
        /// Index of the failing item.
        index: usize,
        /// The closure's error.
        error: E,
    },
    /// An item panicked: the lowest failing index, its panic message, and how many items
    /// panicked in all (every other item still ran).
    #[error("item {index} panicked: {message} ({failed} item(s) panicked in all)")]
    Panicked {
        /// Lowest index that panicked.
        index: usize,
        /// Its panic message.
        message: String,
        /// Number of items that panicked.
        failed: usize,
    },
    /// The map was aborted; `done` items had finished.
    #[error("map aborted after {done} of {total} items were done")]
    Aborted {
        /// Items finished before the map stopped.
        done: usize,
        /// Items in the map.
        total: usize,
    },
    /// The map's output cannot be allocated: nothing ran. (Blocking maps that do not return a
    /// `Result` panic with this message instead.)
    #[error(
        "cannot allocate the output of a map over {items} items of {item_bytes} bytes each; nothing ran"
    )]
    TooLarge {
        /// Items in the map.
        items: usize,
        /// Size of one result in bytes.
        item_bytes: usize,
    },
    /// The schedule was invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// One item's panic, as a value: what `return_exceptions` maps give in place of a result.
///
/// # Examples
/// ```
/// use parview::Pool;
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let out = pool.load_balanced().return_exceptions().map(&[1, 0, 2], |&x| 10 / x);
/// assert_eq!(out[0].as_ref().ok(), Some(&10));
/// assert_eq!(out[1].as_ref().unwrap_err().index, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {index} panicked: {message}")]
pub struct ItemError {
    /// The item's index.
    pub index: usize,
    /// Its panic message.
    pub message: String,
}

/// A map that did not finish, with what did: `results[i]` is `Some` for every item that
/// produced its value before the map failed or was aborted, `None` for the others (the item
/// that failed or panicked, the rest of a chunk cut short, items never started).
///
/// Returned by [`LoadBalancedView::try_map_partial`](crate::LoadBalancedView::try_map_partial)
/// and [`AsyncResult::get_partial`](crate::AsyncResult::get_partial). `results` is empty (not
/// `total` long) only when nothing ran: [`MapError::TooLarge`], [`MapError::Schedule`], or when
/// the `Option` vector itself could not be allocated (the finished results were then dropped).
///
/// # Examples
/// ```
/// use parview::{MapError, Pool, Schedule};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let lb = pool.load_balanced().schedule(Schedule::Dynamic(1));
/// let p = lb.try_map_partial(0..4u32, |i| if i == 2 { Err("two") } else { Ok(i * 10) }).unwrap_err();
/// assert!(matches!(p.error, MapError::Failed { index: 2, .. }));
/// assert_eq!(p.results[2], None);
/// assert!(p.done() <= 3);
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Partial<R, E = Infallible> {
    /// One slot per item: `Some(result)` for each finished item.
    pub results: Vec<Option<R>>,
    /// Why the map stopped.
    pub error: MapError<E>,
}

impl<R, E> Partial<R, E> {
    /// How many results were kept.
    ///
    /// # Examples
    /// ```
    /// let p: parview::Partial<u8> = parview::Partial {
    ///     results: vec![Some(1), None],
    ///     error: parview::MapError::Aborted { done: 1, total: 2 },
    /// };
    /// assert_eq!(p.done(), 1);
    /// ```
    pub fn done(&self) -> usize {
        self.results.iter().filter(|r| r.is_some()).count()
    }
}
