//! Deterministic parallel reductions: bitwise-identical results for any
//! worker count and any [`Schedule`].
//!
//! Floating-point addition is not associative, so a parallel sum whose split
//! points depend on work stealing (as with rayon) can differ in the last bit
//! from run to run. Here the **combination tree depends only on the input
//! length and a fixed leaf size** — never on which worker ran what.
//!
//! # The contract
//!
//! For an input of `n` items and leaf size `L` ([`default_leaf`]`(n)` unless
//! given):
//!
//! 1. The items are cut into `ceil(n / L)` consecutive **leaves** of `L`
//!    items (the last may be shorter).
//! 2. Each leaf's value is the left-to-right fold
//!    `op(…op(op(map(x0), map(x1)), map(x2))…, map(xk))` — in [`serial_map_reduce`].
//! 3. The leaf values are combined by a fixed **pairwise tree**, level by
//!    level: `(0,1), (2,3), …`; an odd last value is carried up unchanged —
//!    see [`tree_reduce`].
//!
//! ```text
//! items   [ 0 .. L ) [ L .. 2L ) [ 2L .. 3L ) [ 3L .. 4L ) [ 4L .. n )
//! leaves      l0         l1          l2           l3          l4
//!               \       /              \         /            |
//! level 1       op(l0,l1)              op(l2,l3)             l4   (carried)
//!                     \                 /                     |
//! level 2             op(op(l0,l1), op(l2,l3))               l4   (carried)
//!                                  \                         /
//! level 3                 op(op(op(l0,l1), op(l2,l3)), l4)
//! ```
//!
//! Workers only decide *who* computes a leaf, never *which* items it holds
//! nor *how* leaves are combined; every `op` call sees the same operands in
//! the same order, so the result is bit-for-bit the same for 1 or 64
//! workers, for every schedule, and equal to [`serial_map_reduce`] with the
//! same leaf size. (Rust never contracts `a * b + c` into a fused
//! multiply-add on its own, so IEEE arithmetic is reproducible on a given
//! target.)
//!
//! # What is *not* promised
//!
//! * Equality with a naive left-to-right serial sum (`iter().sum()`): the
//!   association differs, so float results usually differ in the last bits.
//!   (The pairwise tree is in fact usually *more* accurate: its rounding error
//!   grows like `log n` rather than `n`.)
//! * Equality between different leaf sizes: `L` is part of the tree.
//!
//! # Leaf size: a function of the length only
//!
//! [`default_leaf`]`(n)` is `n / TARGET_LEAVES` clamped to `1..=MAX_LEAF`: up to 2,047 items
//! every item is its own leaf, up to 4M items there are 1,024 to 2,047 leaves, beyond that
//! leaves hold [`MAX_LEAF`] items. It never looks at the worker count (that would change the
//! tree, hence the bits, with the pool size), yet even a reduction over 2 items, the 64
//! numbers of a primality test or 100 Monte-Carlo chunks has a leaf per item for every engine
//! to take, and 1,024 leaves keep up to a few hundred engines balanced. The price is fixed: at
//! most ~2,000 leaf values and tree steps per call (a few µs), however large the input.
//! * For a non-associative `op`, anything beyond "the tree above" — the
//!   result is exactly that tree, not a left fold.
//!
//! `op` need not be commutative: operands are always combined in input
//! order.
//!
//! # Example
//!
//! ```
//! use parview::reduce::{default_leaf, serial_map_reduce};
//! use parview::{par_map_reduce, par_sum};
//!
//! let xs: Vec<f64> = (0..100_000).map(|i| 1.0 / (i as f64 + 1.0)).collect();
//! let s: f64 = par_sum(&xs);
//! // Same bits as the serial evaluation of the same tree:
//! let serial = serial_map_reduce(default_leaf(xs.len()), &xs, |x| *x, |a, b| a + b).unwrap();
//! assert_eq!(s.to_bits(), serial.to_bits());
//!
//! let max = par_map_reduce(&xs, |x| *x, f64::max);
//! assert_eq!(max, Some(1.0));
//! ```

use std::cell::Cell;
use std::num::Wrapping;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};

use crate::map::{IntoMapInput, MapInput};
use crate::pool::Pool;
use crate::schedule::Schedule;

/// The largest leaf [`default_leaf`] picks: inputs of more than `MAX_LEAF * TARGET_LEAVES`
/// (4M) items are cut into leaves of 4,096.
///
/// ```
/// assert_eq!(parview::reduce::MAX_LEAF, 4096);
/// ```
pub const MAX_LEAF: usize = 4096;

/// How many leaves [`default_leaf`] aims for (at least this many, fewer than twice as many)
/// while leaves are shorter than [`MAX_LEAF`].
///
/// ```
/// assert_eq!(parview::reduce::TARGET_LEAVES, 1024);
/// ```
pub const TARGET_LEAVES: usize = 1024;

/// The leaf size of every reduction that is not given one: `n / TARGET_LEAVES`, at least 1
/// and at most [`MAX_LEAF`]. A function of the input length only, so the tree (and the bits of
/// a float result) is the same for any worker count and schedule.
///
/// Part of the reproducibility contract: the tree (hence float results) changes if this
/// changes, which would be a breaking release. Use
/// [`LoadBalancedView::map_reduce_leaves`](crate::LoadBalancedView::map_reduce_leaves) to pin
/// your own.
///
/// ```
/// use parview::reduce::default_leaf;
/// assert_eq!(default_leaf(0), 1);
/// assert_eq!(default_leaf(64), 1); // 64 leaves: each prime test is its own leaf
/// assert_eq!(default_leaf(1_000_000), 976);
/// assert_eq!(default_leaf(10_000_000), 4096);
/// ```
pub const fn default_leaf(n: usize) -> usize {
    let l = n / TARGET_LEAVES;
    if l < 1 {
        1
    } else if l > MAX_LEAF {
        MAX_LEAF
    } else {
        l
    }
}

/// Numbers [`par_sum`](crate::par_sum) can add: `+` plus an additive identity for empty
/// input.
///
/// Implemented for all primitive integers, `f32`, `f64` and
/// [`Wrapping`] integers. Integer overflow behaves like `+` (a panic in debug
/// builds); use [`Wrapping`] or a wider type to sum without overflow.
///
/// ```
/// use parview::reduce::Summable;
/// assert_eq!(<u32 as Summable>::ZERO, 0);
/// ```
pub trait Summable: Clone + Send + std::ops::Add<Output = Self> {
    /// The value of an empty sum. For floats this is `-0.0`, the exact
    /// additive identity, as `Iterator::sum` also returns.
    const ZERO: Self;
}

macro_rules! summable {
    ($zero:expr => $($t:ty),*) => {$(
        impl Summable for $t {
            const ZERO: Self = $zero;
        }
    )*};
}
summable!(0 => u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
summable!(-0.0 => f32, f64);
summable!(Wrapping(0) => Wrapping<u8>, Wrapping<u16>, Wrapping<u32>, Wrapping<u64>);
summable!(Wrapping(0) => Wrapping<u128>, Wrapping<usize>, Wrapping<i8>, Wrapping<i16>);
summable!(Wrapping(0) => Wrapping<i32>, Wrapping<i64>, Wrapping<i128>, Wrapping<isize>);

/// Combines `leaves` in order by a fixed pairwise tree; `None` when empty.
///
/// Level by level, neighbours `(0,1), (2,3), …` are combined with `op`; an
/// odd last value is carried up unchanged. The shape depends only on
/// `leaves.len()`, and operands are never swapped, so `op` need not be
/// commutative. Public so that leaf values gathered from elsewhere (e.g. MPI
/// ranks) can be combined by the very same tree.
///
/// ```
/// use parview::reduce::tree_reduce;
///
/// let leaves = vec!["a", "b", "c", "d", "e"].into_iter().map(String::from).collect();
/// let shape = tree_reduce(leaves, |a, b| format!("({a}{b})"));
/// assert_eq!(shape.as_deref(), Some("(((ab)(cd))e)"));
/// assert_eq!(tree_reduce(Vec::<u8>::new(), |a, b| a + b), None);
/// ```
pub fn tree_reduce<R>(leaves: Vec<R>, op: impl Fn(R, R) -> R) -> Option<R> {
    let mut level = leaves;
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut it = level.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => op(a, b),
                None => a,
            });
        }
        level = next;
    }
    level.pop()
}

/// One leaf's value: the left-to-right fold of `map(item)` over the items `range` of
/// `input`, starting from the first item's mapped value (no identity needed). Takes each item
/// of `range` exactly once: when `map` or `op` panics, the items not reached yet are dropped
/// (one by one, a panicking `Drop` cannot stop the others) before the panic goes on.
///
/// # Safety
/// `range` is non-empty, within `input`, and none of its items was or will be taken elsewhere.
unsafe fn fold_leaf<In: MapInput, R>(
    input: &In,
    range: Range<usize>,
    map: &impl Fn(In::Item) -> R,
    op: &impl Fn(R, R) -> R,
) -> R {
    let next = Cell::new(range.start);
    let take = || {
        let i = next.get();
        next.set(i + 1);
        // SAFETY: `i` lies in `range`, which is ours alone (caller contract), and `next` moves
        // past it before the item is used, so it is taken once.
        unsafe { input.take(i) }
    };
    let folded = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut acc = map(take());
        while next.get() < range.end {
            acc = op(acc, map(take()));
        }
        acc
    }));
    match folded {
        Ok(v) => v,
        Err(payload) => {
            while next.get() < range.end {
                if let Err(m) = crate::unwind::drop_caught(take()) {
                    crate::unwind::report_orphan("an input item of a failed leaf", &m);
                }
            }
            panic::resume_unwind(payload)
        }
    }
}

/// Drops what no leaf takes (the longer side of an unequal zip) when the reduction ends, also
/// when it ends by a panic.
struct ReleaseRest<'a, In: MapInput>(&'a In);

impl<In: MapInput> Drop for ReleaseRest<'_, In> {
    fn drop(&mut self) {
        // SAFETY: every index below `len` was taken by exactly one leaf (or, for an empty or
        // refused input, `release_all` ran instead and this guard was never made); this is the
        // one release, and it only drops what lies past `len` (zip tails).
        unsafe {
            self.0.release(&[], &mut |i, m| {
                crate::unwind::report_orphan(&format!("input item {i}"), &m)
            })
        };
    }
}

/// The deterministic map-reduce behind every reduction: leaves of `leaf` items (the last may
/// be shorter; [`default_leaf`] of the length when `None`) folded on `pool` with `schedule`,
/// combined by [`tree_reduce`] on the caller.
pub(crate) fn map_reduce<I, M, O, R>(
    pool: &Pool,
    schedule: Schedule,
    leaf: Option<usize>,
    input: I,
    map: M,
    op: O,
) -> Option<R>
where
    I: IntoMapInput,
    M: Fn(I::Item) -> R + Sync,
    O: Fn(R, R) -> R + Sync,
    R: Send,
{
    if let Some(leaf) = leaf {
        check_leaf(leaf);
    }
    let input = input.into_map_input();
    let n = input.len();
    let leaf = leaf.unwrap_or(default_leaf(n));
    if n == 0 {
        crate::map::run::release_all(&input);
        return None;
    }
    if let Err(m) = crate::registry::check_nesting() {
        crate::map::run::release_all(&input);
        panic!("{m}");
    }
    let _rest = ReleaseRest(&input);
    let leaves = pool.sched_map(schedule, 0..n.div_ceil(leaf), |l| {
        // SAFETY: leaf `l` runs once (each index of the map's range is taken once and a
        // reduction is never stopped), and leaves are disjoint chunks of `0..n`.
        unsafe { fold_leaf(&input, Schedule::chunk(n, leaf, l), &map, &op) }
    });
    tree_reduce(leaves, op)
}

fn check_leaf(leaf: usize) {
    assert!(
        leaf > 0,
        "reduction leaf size `leaf` must be at least 1, got 0"
    );
}

/// Serial evaluation of exactly the tree the parallel reductions use:
/// leaves of `leaf` items folded left to right, then [`tree_reduce`].
/// `None` for empty input.
///
/// [`LoadBalancedView::map_reduce_leaves`](crate::LoadBalancedView::map_reduce_leaves) with the
/// same `leaf` returns bitwise the same value; this is the reference for tests.
///
/// # Panics
///
/// If `leaf == 0`, or if `map` or `op` panics.
///
/// ```
/// use parview::reduce::serial_map_reduce;
///
/// let s = serial_map_reduce(2, 0..5usize, |i| i.to_string(), |a, b| format!("({a}{b})"));
/// assert_eq!(s.as_deref(), Some("(((01)(23))4)"));
/// ```
pub fn serial_map_reduce<I, R>(
    leaf: usize,
    input: I,
    map: impl Fn(I::Item) -> R,
    op: impl Fn(R, R) -> R,
) -> Option<R>
where
    I: IntoMapInput,
{
    check_leaf(leaf);
    let input = input.into_map_input();
    let n = input.len();
    let _rest = ReleaseRest(&input);
    let leaves: Vec<R> = (0..n.div_ceil(leaf))
        // SAFETY: leaves are disjoint chunks of `0..n`, each folded once, in order.
        .map(|l| unsafe { fold_leaf(&input, Schedule::chunk(n, leaf, l), &map, &op) })
        .collect();
    tree_reduce(leaves, op)
}

/// A pool with `workers` workers, for tests.
#[cfg(test)]
pub(crate) fn test_pool(workers: usize) -> Pool {
    Pool::builder().workers(workers).build().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::par_sum;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::schedule::TEST_SCHEDULES as SCHEDULES;

    /// 1e6 values spanning many magnitudes and both signs, so that the
    /// association order visibly changes the rounded sum.
    fn data() -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(20240601);
        (0..1_000_000)
            .map(|_| {
                let mag = 10f64.powi(rng.random_range(-6..7));
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                sign * mag * rng.random::<f64>()
            })
            .collect()
    }

    #[test]
    fn tree_reduce_concatenates_in_order_for_every_length() {
        for len in 0..70 {
            let leaves: Vec<String> = (0..len).map(|i| format!("{i},")).collect();
            let expected = leaves.concat();
            let got = tree_reduce(leaves, |a, b| a + &b);
            if len == 0 {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(expected), "len {len}");
            }
        }
    }

    #[test]
    fn tree_shape_is_fixed() {
        let tree = |n: usize| {
            let leaves = (0..n)
                .map(|i| char::from(b'a' + i as u8).to_string())
                .collect();
            tree_reduce(leaves, |a, b| format!("({a}{b})")).unwrap()
        };
        assert_eq!(tree(1), "a");
        assert_eq!(tree(2), "(ab)");
        assert_eq!(tree(3), "((ab)c)");
        assert_eq!(tree(5), "(((ab)(cd))e)");
        assert_eq!(tree(7), "(((ab)(cd))((ef)g))");
    }

    #[test]
    fn leaves_fold_left_then_tree() {
        // Leaf size 3 over 0..8: leaves "((01)2)", "((34)5)", "(67)".
        let expected = "((((01)2)((34)5))(67))";
        let op = |a: String, b: String| format!("({a}{b})");
        assert_eq!(
            serial_map_reduce(3, 0..8usize, |i| i.to_string(), op).unwrap(),
            expected
        );
        for workers in [1, 2, 3, 5] {
            let pool = test_pool(workers);
            for schedule in SCHEDULES {
                let got =
                    pool.schedule(schedule)
                        .map_reduce_leaves(3, 0..8usize, |i| i.to_string(), op);
                assert_eq!(
                    got.as_deref(),
                    Some(expected),
                    "workers {workers}, {schedule:?}"
                );
            }
        }
    }

    #[test]
    fn float_sum_is_bitwise_identical_across_workers_and_schedules() {
        let xs = data();
        let leaf = default_leaf(xs.len());
        let serial = serial_map_reduce(leaf, &xs, |x| *x, |a, b| a + b).unwrap();
        for workers in 1..=8 {
            let pool = test_pool(workers);
            for schedule in SCHEDULES {
                let got = pool
                    .schedule(schedule)
                    .map_reduce_leaves(leaf, &xs, |x| *x, |a, b| a + b)
                    .unwrap();
                assert_eq!(
                    got.to_bits(),
                    serial.to_bits(),
                    "workers {workers}, {schedule:?}"
                );
            }
            let sum: f64 = pool.par_sum(&xs[..]);
            assert_eq!(
                sum.to_bits(),
                serial.to_bits(),
                "par_sum, workers {workers}"
            );
        }
        let global: f64 = par_sum(&xs);
        assert_eq!(global.to_bits(), serial.to_bits());
    }

    #[test]
    fn data_exercises_rounding_naive_sum_differs() {
        let xs = data();
        let tree: f64 = par_sum(&xs);
        let naive: f64 = xs.iter().sum();
        assert_ne!(
            tree.to_bits(),
            naive.to_bits(),
            "test data must make association order visible"
        );
        // ... yet both are close to the exactly rounded value.
        assert!((tree - naive).abs() < 1e-6 * xs.iter().map(|x| x.abs()).sum::<f64>());
        // The leaf size is part of the tree.
        let other = serial_map_reduce(1000, &xs, |x| *x, |a, b| a + b).unwrap();
        assert_ne!(other.to_bits(), tree.to_bits());
    }

    #[test]
    fn empty_input() {
        let pool = test_pool(3);
        let empty: &[f64] = &[];
        assert_eq!(pool.par_map_reduce(empty, |x| *x, |a, b| a + b), None);
        assert_eq!(pool.par_reduce::<_, f64, _>(empty, |a, b| a + b), None);
        let z: f64 = pool.par_sum(empty);
        assert_eq!(z.to_bits(), (-0.0f64).to_bits());
        assert_eq!(pool.par_sum::<_, u64>(5..5u64), 0);
        assert_eq!(serial_map_reduce(4, 0..0usize, |i| i, |a, b| a + b), None);
    }

    #[test]
    fn inputs_and_par_reduce() {
        let pool = test_pool(4);
        let v: Vec<u64> = (0..10_000).collect();
        let expected: u64 = v.iter().sum();
        assert_eq!(pool.par_sum::<_, u64>(&v), expected);
        assert_eq!(pool.par_sum::<_, u64>(&v[..]), expected);
        assert_eq!(pool.par_sum::<_, u64>(0..10_000u64), expected);
        assert_eq!(pool.par_sum::<_, usize>(0..10_000usize), expected as usize);
        assert_eq!(pool.par_reduce(&v, u64::max), Some(9_999));
        assert_eq!(pool.par_reduce(3..9usize, usize::min), Some(3));
        // Non-commutative reduce over many leaves keeps input order.
        let s: Vec<String> = (0..9000).map(|i| (i % 10).to_string()).collect();
        assert_eq!(
            pool.par_reduce(&s, |a: String, b: String| a + &b).unwrap(),
            s.concat()
        );
    }

    #[test]
    #[should_panic(expected = "leaf")]
    fn zero_leaf_panics() {
        let _ = test_pool(2).schedule(Schedule::Static).map_reduce_leaves(
            0,
            0..10usize,
            |i| i,
            |a, b| a + b,
        );
    }

    #[test]
    #[should_panic(expected = "leaf")]
    fn zero_leaf_panics_serial() {
        let _ = serial_map_reduce(0, 0..10usize, |i| i, |a, b| a + b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn par_sum_matches_iterator_sum(
            v in proptest::collection::vec(any::<u64>(), 0..20_000),
            workers in 1usize..6,
        ) {
            let pool = test_pool(workers);
            let wide: Vec<u128> = v.iter().map(|&x| u128::from(x)).collect();
            prop_assert_eq!(pool.par_sum::<_, u128>(&wide), wide.iter().sum::<u128>());
            let wrapping: Vec<Wrapping<u64>> = v.iter().map(|&x| Wrapping(x)).collect();
            let expected: Wrapping<u64> = wrapping.iter().sum();
            prop_assert_eq!(pool.par_sum::<_, Wrapping<u64>>(&wrapping), expected);
        }

        #[test]
        fn small_leaves_match_serial(
            v in proptest::collection::vec(any::<u32>(), 0..500),
            leaf in 1usize..40,
            workers in 1usize..6,
        ) {
            let pool = test_pool(workers);
            let map = |&x: &u32| u64::from(x);
            let par = pool.schedule(Schedule::Dynamic(1)).map_reduce_leaves(leaf, &v, map, |a, b| a + b);
            prop_assert_eq!(par, serial_map_reduce(leaf, &v, map, |a, b| a + b));
            let expected = (!v.is_empty()).then(|| v.iter().map(map).sum::<u64>());
            prop_assert_eq!(par, expected);
        }
    }
}
