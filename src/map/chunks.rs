//! Disjoint mutable outputs: a map over the chunks of a caller's `&mut [T]`
//! ([`LoadBalancedView::for_each_chunk_mut`], [`Pool::par_chunks_mut`], the free
//! [`par_chunks_mut`]; rayon's `par_chunks_mut(c).enumerate().for_each(..)`), and
//! [`DirectView::map_into`], a static map into a caller's buffer.
//!
//! Both are the one pipeline with another input or sink. The chunks of a slice are a
//! [`MapInput`] whose item `i` is `(i, &mut chunk_i)`: the pipeline takes each index at most
//! once (the `MapInput::take` contract), so the mutable chunks handed out never overlap — the
//! same argument that lets [`SliceSink`] write slot `i` of `par_map_into`'s buffer.

use super::body::NoState;
use super::input::MapInput;
use super::run::{release_all, run};
use super::sink::SliceSink;
use super::{IntoMapInput, Passthrough, Spec, raise};
use crate::pool::Pool;
use crate::views::{DirectView, LoadBalancedView};
use std::convert::Infallible;
use std::marker::PhantomData;

/// The chunks of `chunk_len` items of a mutable slice (the last may be shorter), as map items
/// `(chunk index, chunk)`.
struct ChunksMutInput<'a, T> {
    ptr: *mut T,
    len: usize,
    chunk_len: usize,
    _slice: PhantomData<&'a mut [T]>,
}

impl<'a, T> ChunksMutInput<'a, T> {
    /// # Panics
    /// If `chunk_len == 0`, naming the argument.
    fn new(data: &'a mut [T], chunk_len: usize) -> Self {
        assert!(
            chunk_len > 0,
            "parview: invalid argument `chunk_len`: chunks need at least 1 item, got 0"
        );
        ChunksMutInput {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            chunk_len,
            _slice: PhantomData,
        }
    }
}

// SAFETY: distinct threads take distinct chunk indices (the `take` contract), so the `&mut`
// chunks handed out never alias; a chunk is used on whichever thread takes it, so `T: Send`.
unsafe impl<T: Send> Sync for ChunksMutInput<'_, T> {}

impl<'a, T: Send> MapInput for ChunksMutInput<'a, T> {
    type Item = (usize, &'a mut [T]);
    #[inline]
    fn len(&self) -> usize {
        self.len.div_ceil(self.chunk_len)
    }
    #[inline]
    unsafe fn take(&self, i: usize) -> Self::Item {
        // `i < ceil(len / chunk_len)`, so `start < len`: no overflow, a non-empty chunk.
        let start = i * self.chunk_len;
        let n = self.chunk_len.min(self.len - start);
        // SAFETY: `start..start + n` lies within the slice borrowed mutably for 'a; chunks of
        // distinct indices are disjoint, and each index is taken at most once (caller
        // contract), so this is the only reference to these items.
        (i, unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add(start), n)
        })
    }
}

impl LoadBalancedView<'_> {
    /// Runs `f(chunk_index, chunk)` on the chunks of `chunk_len` items of `data` (the last
    /// may be shorter), with the view's schedule deciding which participant takes which
    /// chunk: rayon's `data.par_chunks_mut(chunk_len).enumerate().for_each(..)`. Chunk `k`
    /// starts at item `k * chunk_len`. Filling the rows of a matrix in place:
    /// `chunk_len` = the row length.
    ///
    /// # Panics
    /// If `chunk_len == 0` (the message names `chunk_len`), if the schedule is invalid, or —
    /// after every other chunk ran — if `f` panicked on some chunks (as [`Pool::par_map`], the
    /// chunk index is the item index; a panicked chunk keeps what `f` wrote before the panic).
    ///
    /// # Examples
    /// ```
    /// use parview::{Pool, Schedule};
    /// let pool = Pool::builder().workers(2).build().unwrap();
    /// let (rows, cols) = (4, 3);
    /// let mut m = vec![0u32; rows * cols];
    /// pool.schedule(Schedule::Dynamic(1)).for_each_chunk_mut(&mut m, cols, |r, row| {
    ///     for (c, x) in row.iter_mut().enumerate() {
    ///         *x = (10 * r + c) as u32;
    ///     }
    /// });
    /// assert_eq!(&m[9..], &[30, 31, 32]);
    /// ```
    pub fn for_each_chunk_mut<T, F>(&self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        let input = ChunksMutInput::new(data, chunk_len);
        self.view_pool()
            .sched_for_each(self.get_schedule(), Passthrough(input), |(k, chunk)| {
                f(k, chunk)
            });
    }
}

impl Pool {
    /// [`LoadBalancedView::for_each_chunk_mut`] with the default schedule: `f(k, chunk_k)` on
    /// the disjoint chunks of `chunk_len` items of `data`, in parallel (rayon's
    /// `par_chunks_mut(chunk_len).enumerate().for_each(..)`).
    ///
    /// # Panics
    /// As [`LoadBalancedView::for_each_chunk_mut`] (`chunk_len == 0` names the argument).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut v = vec![0u8; 10];
    /// pool.par_chunks_mut(&mut v, 4, |k, chunk| chunk.fill(k as u8));
    /// assert_eq!(v, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    /// ```
    pub fn par_chunks_mut<T, F>(&self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        self.load_balanced().for_each_chunk_mut(data, chunk_len, f)
    }
}

/// [`Pool::par_chunks_mut`] on the global pool: `f(k, chunk_k)` on the disjoint chunks of
/// `chunk_len` items of `data`, in parallel.
///
/// # Panics
/// As [`LoadBalancedView::for_each_chunk_mut`] (`chunk_len == 0` names the argument).
///
/// # Examples
/// ```
/// let cols = 4;
/// let mut grid = vec![0usize; 3 * cols];
/// parview::par_chunks_mut(&mut grid, cols, |row, cells| {
///     for (col, x) in cells.iter_mut().enumerate() {
///         *x = row * col;
///     }
/// });
/// assert_eq!(&grid[8..], &[0, 2, 4, 6]);
/// ```
pub fn par_chunks_mut<T, F>(data: &mut [T], chunk_len: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    Pool::global().par_chunks_mut(data, chunk_len, f)
}

impl DirectView<'_> {
    /// Static map into a caller's buffer: engine `targets[k]` runs block `k` of the input
    /// (sizes differing by at most one, as [`map`](Self::map)) and writes `out[i] = f(item i)`
    /// for its items. No output allocation.
    ///
    /// # Panics
    /// If `out.len()` differs from the input's length (the message names `out`; nothing runs),
    /// or — after every other item ran — if `f` panicked (as [`map`](Self::map); slots of
    /// panicked items keep their old values).
    ///
    /// # Examples
    /// ```
    /// let pool = parview::Pool::builder().workers(2).build().unwrap();
    /// let mut out = vec![0usize; 6];
    /// pool.direct().map_into(0..6usize, &mut out, |i| i * i);
    /// assert_eq!(out, vec![0, 1, 4, 9, 16, 25]);
    /// // Which engine wrote each slot: the first block went to engine 0.
    /// let mut who = vec![9usize; 6];
    /// pool.direct().map_into(0..6usize, &mut who, |_| pool.current_engine().unwrap());
    /// assert_eq!(who, vec![0, 0, 0, 1, 1, 1]);
    /// ```
    pub fn map_into<I, R, F>(&self, input: I, out: &mut [R], f: F)
    where
        I: IntoMapInput,
        R: Send,
        F: Fn(I::Item) -> R + Sync,
    {
        let input = input.into_map_input();
        let n = input.len();
        if out.len() != n {
            release_all(&input);
            panic!(
                "parview: invalid argument `out`: its length {} differs from the input's length {n}",
                out.len()
            );
        }
        let rep = run(
            &self.view_pool().reg,
            &Spec::directed(self.targets()),
            input,
            NoState,
            |_: &mut (), x| Ok::<R, Infallible>(f(x)),
            SliceSink(out.as_mut_ptr()),
        );
        if let Some(e) = rep.error(n) {
            raise(e, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Pool, Schedule};

    #[test]
    fn every_item_of_every_chunk_is_visited_once() {
        let pool = Pool::builder().workers(2).build().unwrap();
        for s in [Schedule::Static, Schedule::Dynamic(1), Schedule::Adaptive] {
            for (len, c) in [(0usize, 3usize), (1, 1), (10, 3), (12, 4), (5, 100)] {
                let mut v = vec![0usize; len];
                pool.schedule(s).for_each_chunk_mut(&mut v, c, |k, chunk| {
                    assert!(!chunk.is_empty() && chunk.len() <= c);
                    for (j, x) in chunk.iter_mut().enumerate() {
                        *x += k * c + j + 1;
                    }
                });
                let want: Vec<usize> = (1..=len).collect();
                assert_eq!(v, want, "{s} len {len} chunk {c}");
            }
        }
    }

    #[test]
    fn direct_map_into_replaces_each_slot_once() {
        let pool = Pool::builder().workers(3).build().unwrap();
        let mut out: Vec<String> = (0..7).map(|i| format!("old {i}")).collect();
        pool.direct()
            .map_into(0..7u32, &mut out, |i| format!("new {i}"));
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, s)| *s == format!("new {i}"))
        );
    }
}
