//! Random-number streams keyed by **position**, not by thread.
//!
//! Seeding one generator per worker thread makes results depend on how many
//! workers there are and on which worker happened to run which item. Here the
//! generator an item sees is a pure function of `(seed, key)`, where the key
//! is the item's index (or a block's index). Any worker count and any
//! [`Schedule`] therefore produce the same numbers, so a seeded Monte-Carlo
//! run gives the same answer tomorrow, on a laptop or on a 128-core node.
//!
//! # The generator: ChaCha8 with one stream per key
//!
//! [`stream(seed, key)`](stream) is
//! `ChaCha8Rng::seed_from_u64(seed)` followed by
//! [`set_stream(key)`](ChaCha8Rng::set_stream). ChaCha computes each 64-byte
//! output block as a keyed function of `(block counter, nonce)`: the 256-bit
//! key comes from `seed`, the 64-bit nonce is `key`, and the 64-bit counter
//! is the position inside the stream.
//!
//! * **Why different keys are independent.** Two different keys are two
//!   different nonces, so the two streams evaluate the cipher on *disjoint*
//!   sets of inputs: they cannot overlap or be shifted copies of each other
//!   (unlike distinct seeds of a small-state generator, whose sequences may
//!   overlap). ChaCha is designed so that its output on distinct inputs is
//!   indistinguishable from independent uniform bits; no statistical test is
//!   known to tell two ChaCha8 streams apart from independent ones.
//! * **How long a stream is.** The 64-bit block counter over 64-byte blocks
//!   gives 2<sup>64</sup> blocks = 2<sup>68</sup> 32-bit words = 2<sup>70</sup>
//!   bytes (1 ZiB) per stream before it would cycle — far beyond any
//!   simulation.
//! * **Seeds.** Different `seed`s expand to different 256-bit keys, giving
//!   unrelated families of 2<sup>64</sup> streams each.
//! * **Not for secrets.** ChaCha8 is a reduced-round variant chosen for
//!   speed; use it for simulation, not cryptography.
//!
//! # Key spaces
//!
//! * [`Streams::for_item(i)`](Streams::for_item) and
//!   [`Pool::par_map_rng`] use key `i` (so item streams are `0..2^63`).
//! * [`Streams::for_block(b)`](Streams::for_block) and
//!   [`Pool::par_blocks_rng`] use key [`BLOCK_KEY_BASE`]` + b`, so item
//!   streams and block streams of the same seed never collide.
//!
//! # Per item or per block?
//!
//! Creating a stream costs one ChaCha key setup plus the first buffer refill
//! (about 80 ns on a current x86-64 core, versus about 2 ns per `u64` drawn
//! afterwards, i.e. some 40 draws). That is negligible for items that take
//! microseconds — use [`Pool::par_map_rng`]. For cheap items (a few random
//! draws each, e.g. the dart throws of a π estimate) give each *block* of
//! [`BLOCK`] items one stream with [`Pool::par_blocks_rng`] and loop over the
//! block's items with [`block_range`]. The result is still independent of
//! workers and schedule, because the blocks are fixed by `n` and [`BLOCK`],
//! never by the pool.
//!
//! # Example: a reproducible π estimate
//!
//! ```
//! use parview::Pool;
//! use parview::rng::{block_range, BLOCK};
//! use parview::Schedule;
//! use rand::RngExt;
//!
//! let n: usize = 20_000;
//! let n_blocks = n.div_ceil(BLOCK);
//! let pool = Pool::global();
//! let hits_per_block = pool.schedule(Schedule::Dynamic(1)).blocks_rng(42, n_blocks, |rng, b| {
//!     block_range(b, n)
//!         .filter(|_| {
//!             let (x, y): (f64, f64) = (rng.random(), rng.random());
//!             x * x + y * y <= 1.0
//!         })
//!         .count()
//! });
//! let pi = 4.0 * hits_per_block.iter().sum::<usize>() as f64 / n as f64;
//! assert!((pi - std::f64::consts::PI).abs() < 0.1);
//!
//! // Same seed, other schedule: bit-for-bit the same estimate.
//! let again = pool.schedule(Schedule::Static).blocks_rng(42, n_blocks, |rng, b| {
//!     block_range(b, n)
//!         .filter(|_| {
//!             let (x, y): (f64, f64) = (rng.random(), rng.random());
//!             x * x + y * y <= 1.0
//!         })
//!         .count()
//! });
//! assert_eq!(hits_per_block, again);
//! ```

use std::ops::Range;

use rand::SeedableRng;
/// The generator every stream uses (re-exported from `rand_chacha`).
pub use rand_chacha::ChaCha8Rng;

use crate::pool::Pool;
use crate::schedule::Schedule;

/// Recommended number of items per block for [`Pool::par_blocks_rng`].
///
/// Large enough that one stream setup per block is negligible next to the
/// block's work, small enough to leave plenty of blocks to balance. This value
/// is part of the reproducibility contract: results that depend on it only
/// change if it changes, which would be a breaking release. Pin your own
/// constant if you need results frozen independently of this crate.
///
/// ```
/// assert_eq!(parview::rng::BLOCK, 4096);
/// ```
pub const BLOCK: usize = 4096;

/// First key used for block streams: block `b` uses key `BLOCK_KEY_BASE + b`.
///
/// Item streams use keys below this value, so the two never collide.
///
/// ```
/// use parview::rng::{stream, Streams, BLOCK_KEY_BASE};
/// use rand::Rng;
///
/// let mut a = Streams::new(1).for_block(3);
/// let mut b = stream(1, BLOCK_KEY_BASE + 3);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
pub const BLOCK_KEY_BASE: u64 = 1 << 63;

/// The random stream for `(seed, key)`: `ChaCha8Rng::seed_from_u64(seed)`
/// switched to stream number `key`.
///
/// The same `(seed, key)` always yields the same sequence; different keys of
/// one seed are independent streams of 2<sup>68</sup> words each (see the
/// [module docs](self)).
///
/// ```
/// use parview::rng::stream;
/// use rand::Rng;
///
/// let x = stream(7, 3).next_u64();
/// assert_eq!(x, stream(7, 3).next_u64()); // reproducible
/// assert_ne!(x, stream(7, 4).next_u64()); // another key, another stream
/// ```
pub fn stream(seed: u64, key: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(key);
    rng
}

/// The items of block `block` when `n` items are cut into blocks of
/// [`BLOCK`]: `block * BLOCK .. min((block + 1) * BLOCK, n)` (empty past the
/// end).
///
/// ```
/// use parview::rng::{block_range, BLOCK};
///
/// let n = BLOCK + 10;
/// assert_eq!(block_range(0, n), 0..BLOCK);
/// assert_eq!(block_range(1, n), BLOCK..n);
/// assert!(block_range(2, n).is_empty());
/// ```
pub fn block_range(block: usize, n: usize) -> Range<usize> {
    Schedule::chunk(n, BLOCK, block)
}

/// The family of streams belonging to one seed.
///
/// ```
/// use parview::rng::Streams;
/// use rand::RngExt;
///
/// let streams = Streams::new(2024);
/// let x: f64 = streams.for_item(17).random();
/// assert_eq!(x, Streams::new(2024).for_item(17).random::<f64>());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Streams {
    seed: u64,
}

impl Streams {
    /// The streams of `seed`.
    ///
    /// ```
    /// assert_eq!(parview::rng::Streams::new(5).seed(), 5);
    /// ```
    pub const fn new(seed: u64) -> Self {
        Streams { seed }
    }

    /// The seed these streams derive from.
    ///
    /// ```
    /// assert_eq!(parview::rng::Streams::new(9).seed(), 9);
    /// ```
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream of item `i`: [`stream(seed, i)`](stream). This is the
    /// stream [`Pool::par_map_rng`] hands to item `i`.
    ///
    /// ```
    /// use parview::rng::{stream, Streams};
    /// use rand::Rng;
    ///
    /// assert_eq!(Streams::new(1).for_item(5).next_u64(), stream(1, 5).next_u64());
    /// ```
    pub fn for_item(&self, i: usize) -> ChaCha8Rng {
        stream(self.seed, i as u64)
    }

    /// The stream of block `block`: [`stream(seed, BLOCK_KEY_BASE + block)`](stream).
    /// This is the stream [`Pool::par_blocks_rng`] hands to block `block`.
    ///
    /// # Panics
    ///
    /// If `block >= 2^63` (the block key space would wrap into item keys).
    ///
    /// ```
    /// use parview::rng::Streams;
    /// use rand::Rng;
    ///
    /// let s = Streams::new(1);
    /// assert_ne!(s.for_block(0).next_u64(), s.for_item(0).next_u64());
    /// ```
    pub fn for_block(&self, block: usize) -> ChaCha8Rng {
        let block = block as u64;
        assert!(block < BLOCK_KEY_BASE, "block index {block} out of range");
        stream(self.seed, BLOCK_KEY_BASE + block)
    }
}

/// `output[i] = f(&mut stream(seed, i), i)` for `i` in `0..n`, on `pool` with `schedule`.
pub(crate) fn map_rng<F, R>(pool: &Pool, schedule: Schedule, seed: u64, n: usize, f: F) -> Vec<R>
where
    F: Fn(&mut ChaCha8Rng, usize) -> R + Sync,
    R: Send,
{
    let streams = Streams::new(seed);
    pool.sched_map(schedule, 0..n, |i| f(&mut streams.for_item(i), i))
}

/// `output[b] = f(&mut Streams::new(seed).for_block(b), b)` for `b` in `0..n_blocks`.
pub(crate) fn blocks_rng<F, R>(
    pool: &Pool,
    schedule: Schedule,
    seed: u64,
    n_blocks: usize,
    f: F,
) -> Vec<R>
where
    F: Fn(&mut ChaCha8Rng, usize) -> R + Sync,
    R: Send,
{
    let streams = Streams::new(seed);
    pool.sched_map(schedule, 0..n_blocks, |b| f(&mut streams.for_block(b), b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::test_pool;
    use rand::{Rng, RngExt};

    use crate::schedule::TEST_SCHEDULES as SCHEDULES;

    fn take(mut rng: ChaCha8Rng, k: usize) -> Vec<u64> {
        (0..k).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn same_seed_and_key_same_sequence() {
        for key in [0, 1, 17, u64::MAX] {
            assert_eq!(take(stream(99, key), 100), take(stream(99, key), 100));
        }
        let s = Streams::new(99);
        assert_eq!(take(s.for_item(4), 50), take(stream(99, 4), 50));
        assert_eq!(
            take(s.for_block(4), 50),
            take(stream(99, BLOCK_KEY_BASE + 4), 50)
        );
    }

    #[test]
    fn different_keys_and_seeds_differ() {
        let seqs: Vec<Vec<u64>> = (0..64).map(|k| take(stream(5, k), 8)).collect();
        for a in 0..seqs.len() {
            for b in a + 1..seqs.len() {
                assert_ne!(seqs[a], seqs[b], "keys {a} and {b}");
                // Not merely shifted copies of each other either.
                assert!(!seqs[b].contains(&seqs[a][0]), "keys {a} and {b} overlap");
                assert!(!seqs[a].contains(&seqs[b][0]), "keys {b} and {a} overlap");
            }
        }
        assert_ne!(take(stream(5, 0), 8), take(stream(6, 0), 8));
        let s = Streams::new(5);
        assert_ne!(take(s.for_item(3), 8), take(s.for_block(3), 8));
    }

    #[test]
    fn stream_sets_the_nonce() {
        let rng = stream(1, 1234);
        assert_eq!(rng.get_stream(), 1234);
        assert_eq!(rng.get_word_pos(), 0);
    }

    #[test]
    #[should_panic(expected = "block index")]
    fn block_index_out_of_key_space_panics() {
        let _ = Streams::new(0).for_block(usize::MAX);
    }

    #[test]
    fn block_range_tiles_the_input() {
        for n in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5] {
            let all: Vec<usize> = (0..n.div_ceil(BLOCK))
                .flat_map(|b| block_range(b, n))
                .collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
        assert!(block_range(usize::MAX, 10).is_empty());
    }

    #[test]
    fn par_map_rng_is_independent_of_workers_and_schedule() {
        let n = 1000;
        let expected: Vec<(usize, u64, f64)> = (0..n)
            .map(|i| {
                let mut rng = stream(77, i as u64);
                (i, rng.next_u64(), rng.random::<f64>())
            })
            .collect();
        for workers in 1..=8 {
            let pool = test_pool(workers);
            for schedule in SCHEDULES {
                let got = pool
                    .schedule(schedule)
                    .map_rng(77, n, |rng, i| (i, rng.next_u64(), rng.random::<f64>()));
                assert_eq!(got, expected, "workers {workers}, {schedule:?}");
            }
        }
    }

    #[test]
    fn par_blocks_rng_is_independent_of_workers_and_schedule() {
        let n = 5 * BLOCK + 123;
        let n_blocks = n.div_ceil(BLOCK);
        let body = |rng: &mut ChaCha8Rng, b: usize| -> u64 {
            block_range(b, n).fold(0u64, |acc, _| acc.wrapping_add(rng.next_u64()))
        };
        let expected: Vec<u64> = (0..n_blocks)
            .map(|b| body(&mut Streams::new(8).for_block(b), b))
            .collect();
        for workers in 1..=8 {
            let pool = test_pool(workers);
            for schedule in SCHEDULES {
                assert_eq!(
                    pool.schedule(schedule).blocks_rng(8, n_blocks, body),
                    expected,
                    "workers {workers}, {schedule:?}"
                );
            }
        }
    }
}
