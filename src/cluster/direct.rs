//! The direct view over ranks ([`ClusterDirectView`]): run a closure on every rank, keep
//! per-rank state, pull it to the root.
//!
//! Each call runs the closure on the calling (MPI) thread of every rank with its panic
//! caught, gathers the outcomes to the root as postcard bytes, and broadcasts whether any
//! rank failed, so every rank returns the same kind of result: `Ok` everywhere, or
//! [`ClusterMapError::Failed`] everywhere (naming the lowest failing rank).

use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::balanced::CATCHING;
use super::{Cluster, ClusterMapError, payload_str};

/// Per-rank state created by [`ClusterDirectView::init`]: each rank holds its own value.
///
/// # Examples
/// ```no_run
/// let c = parview::cluster::Cluster::init().unwrap();
/// let mut st = c.direct().init(|rank| vec![rank; 3]).unwrap();
/// assert_eq!(st.get()[0], c.rank());
/// st.get_mut().push(99);
/// ```
#[derive(Debug)]
pub struct RankState<S> {
    rank: usize,
    value: S,
}

impl<S> RankState<S> {
    /// This rank's value.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let st = c.direct().init(|rank| rank * 10).unwrap();
    /// assert_eq!(*st.get(), c.rank() * 10);
    /// ```
    pub fn get(&self) -> &S {
        &self.value
    }

    /// This rank's value, mutably.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let mut st = c.direct().init(|_| 0u64).unwrap();
    /// *st.get_mut() += 1;
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.value
    }

    /// The rank that holds it.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// assert_eq!(c.direct().init(|_| ()).unwrap().rank(), c.rank());
    /// ```
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The value, consumed.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let v: usize = c.direct().init(|r| r).unwrap().into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.value
    }
}

/// The direct view of a [`Cluster`] (ipyparallel's `rc[:]` across ranks): every call runs on
/// every rank, results are gathered to the root in rank order. Created by
/// [`Cluster::direct`]. Every call is collective.
///
/// # Examples
/// ```no_run
/// let c = parview::cluster::Cluster::init().unwrap();
/// let dv = c.direct();
/// if let Some(names) = dv.apply(|rank| format!("rank {rank}")).unwrap() {
///     assert_eq!(names[0], "rank 0");
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ClusterDirectView<'c> {
    cluster: &'c Cluster,
}

/// Runs `f` with its panic caught, as the cluster maps do.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    CATCHING.with(|c| c.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    r.map_err(|p| {
        let m = payload_str(p.as_ref()).to_owned();
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(p)));
        m
    })
}

impl<'c> ClusterDirectView<'c> {
    pub(super) fn new(cluster: &'c Cluster) -> Self {
        ClusterDirectView { cluster }
    }

    /// Gathers every rank's outcome; all ranks learn the lowest failing rank. `Some(values)`
    /// on the root.
    fn collect<R>(&self, mine: Result<R, String>) -> Result<Option<Vec<R>>, ClusterMapError>
    where
        R: Serialize + DeserializeOwned,
    {
        let c = self.cluster;
        let bytes = postcard::to_allocvec(&mine).unwrap_or_else(|e| {
            postcard::to_allocvec(&Err::<(), String>(format!(
                "encoding the result failed: {e}"
            )))
            .expect("a message encodes")
        });
        drop(mine);
        let gathered = c.gather_bytes(&bytes);
        let (fail, values) = match gathered {
            Some(all) => {
                let mut fail: Option<(usize, String)> = None;
                let mut values = Vec::with_capacity(all.len());
                for (rank, b) in all.iter().enumerate() {
                    match postcard::from_bytes::<Result<R, String>>(b) {
                        Ok(Ok(v)) => values.push(v),
                        Ok(Err(m)) => {
                            fail.get_or_insert((rank, m));
                        }
                        Err(e) => {
                            fail.get_or_insert((rank, format!("decoding its result failed: {e}")));
                        }
                    }
                }
                (fail, Some(values))
            }
            None => (None, None),
        };
        let fail_bytes = c
            .is_root()
            .then(|| postcard::to_allocvec(&fail).expect("encodes"));
        let fail_all = c.broadcast_bytes(fail_bytes.as_deref());
        let fail: Option<(usize, String)> =
            postcard::from_bytes(&fail_all).expect("the root's failure record decodes");
        match fail {
            Some((rank, message)) => Err(ClusterMapError::Failed {
                rank,
                index: rank,
                message,
            }),
            None => Ok(values),
        }
    }

    /// Runs `f(rank)` on every rank (on its calling thread); the results on the root in rank
    /// order. Collective.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] on every rank if `f` panicked on some rank (`rank` and
    /// `index` both name the lowest such rank); the cluster stays usable.
    ///
    /// # Panics
    /// Not for a panic of the closure (caught, returned as `Failed`). Like every collective,
    /// the call waits until every rank has made it.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let workers = c.direct().apply(|_| std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap();
    /// if let Some(w) = workers {
    ///     println!("CPUs per rank: {w:?}");
    /// }
    /// ```
    pub fn apply<R, F>(&self, f: F) -> Result<Option<Vec<R>>, ClusterMapError>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce(usize) -> R,
    {
        let rank = self.cluster.rank();
        self.collect(catch(|| f(rank)))
    }

    /// Creates per-rank state: `init(rank)` on every rank. Collective.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] on every rank if `init` panicked on some rank.
    ///
    /// # Panics
    /// Not for a panic of the closure (caught, returned as `Failed`). Like every collective,
    /// the call waits until every rank has made it.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let st = c.direct().init(|rank| rank as u64 * 100).unwrap();
    /// ```
    pub fn init<S, F>(&self, init: F) -> Result<RankState<S>, ClusterMapError>
    where
        F: FnOnce(usize) -> S,
    {
        let rank = self.cluster.rank();
        let r = catch(|| init(rank));
        let (status, value) = match r {
            Ok(v) => (Ok(()), Some(v)),
            Err(m) => (Err(m), None),
        };
        self.collect::<()>(status)?;
        Ok(RankState {
            rank,
            value: value.expect("no rank failed, so this one has its value"),
        })
    }

    /// Runs `f(rank, &mut state)` on every rank; results on the root in rank order.
    /// Collective.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] on every rank if `f` panicked on some rank (the state of
    /// that rank is as the panic left it).
    ///
    /// # Panics
    /// Not for a panic of the closure (caught, returned as `Failed`). Like every collective,
    /// the call waits until every rank has made it.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let mut st = c.direct().init(|_| 0u64).unwrap();
    /// let counts = c.direct().apply_with_state(&mut st, |_, n| { *n += 1; *n }).unwrap();
    /// ```
    pub fn apply_with_state<S, R, F>(
        &self,
        state: &mut RankState<S>,
        f: F,
    ) -> Result<Option<Vec<R>>, ClusterMapError>
    where
        R: Serialize + DeserializeOwned,
        F: FnOnce(usize, &mut S) -> R,
    {
        let rank = self.cluster.rank();
        self.collect(catch(|| f(rank, &mut state.value)))
    }

    /// Copies every rank's state to the root, in rank order. Collective.
    ///
    /// # Errors
    /// [`ClusterMapError::Failed`] if a state could not be encoded or decoded.
    ///
    /// # Panics
    /// Not for a panic of the closure (caught, returned as `Failed`). Like every collective,
    /// the call waits until every rank has made it.
    ///
    /// # Examples
    /// ```no_run
    /// let c = parview::cluster::Cluster::init().unwrap();
    /// let st = c.direct().init(|rank| rank).unwrap();
    /// if let Some(all) = c.direct().pull(&st).unwrap() {
    ///     assert_eq!(all, (0..c.size()).collect::<Vec<_>>());
    /// }
    /// ```
    pub fn pull<S>(&self, state: &RankState<S>) -> Result<Option<Vec<S>>, ClusterMapError>
    where
        S: Serialize + DeserializeOwned + Clone,
    {
        self.collect(Ok(state.value.clone()))
    }
}
