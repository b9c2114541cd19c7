//! How the index range `0..n` of a map is cut into chunks.
//!
//! A [`Schedule`] names the rule, in OpenMP's vocabulary; the cutting itself is plain functions
//! ([`Schedule::static_block`], [`Schedule::chunk`], [`Schedule::guided_size`]) and the serial
//! iterator [`Schedule::plan`], all testable without threads. These are the crate's only chunk
//! formulas: reductions, random streams and the cluster cut with them too. At run time a `Dispenser` hands chunks to whichever participants
//! ask, with one atomic operation per chunk and no lock or allocation.
//!
//! # Invariants (checked by property tests)
//! * Every index of `0..n` is in exactly one chunk; chunks are non-empty and contiguous.
//! * [`Schedule::Static`]: one block per engine, block sizes differ by at most one, blocks in
//!   engine order.
//! * [`Schedule::StaticChunked`]`(c)`: chunk `j` (of size `c`, the last may be short) belongs to
//!   engine `j % P`.
//! * [`Schedule::Dynamic`]`(c)`: chunks of `c` in index order, taken by whoever is idle.
//! * [`Schedule::Guided`]`(m)`: the next chunk has `max(ceil(remaining / P), m)` items (libgomp's
//!   rule), capped by what remains.
//! * [`Schedule::Adaptive`] (see its docs for when a map starts on the caller alone): each participant starts with one item and grows its chunk (×2 to ×16) while a
//!   chunk finishes in under [`Schedule::ADAPTIVE_TARGET`], capped at `ceil(remaining / 2P)` so the tail
//!   stays shareable — unless, at the rate this participant measured, the whole rest would take
//!   under [`SHORT_TAIL`] and is at most 16 times what it already ran: a tail that short is not
//!   worth another claim (sharing it costs more than running it).
//! * `n = 0` dispatches nothing. A chunk size of 0 is a [`ScheduleError`].

use crossbeam_utils::CachePadded;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How a map cuts `0..n` into chunks and who runs them. Mirrors OpenMP's `schedule(...)` clause.
///
/// # Examples
/// ```
/// use parview::{Pool, Schedule};
/// let pool = Pool::builder().workers(2).build().unwrap();
/// let squares = pool.schedule(Schedule::Dynamic(64)).map(0..1000usize, |i| i * i);
/// assert_eq!(squares[999], 999 * 999);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// One contiguous block per engine, sizes differing by at most one (`schedule(static)`).
    /// Cheapest per item; unbalanced when item costs differ.
    Static,
    /// Chunks of `c` dealt round-robin to engines (`schedule(static, c)`).
    StaticChunked(usize),
    /// Idle engines take the next `c` indices from a shared cursor (`schedule(dynamic, c)`).
    Dynamic(usize),
    /// Idle engines take `max(ceil(remaining / P), m)` indices (`schedule(guided, m)`).
    Guided(usize),
    /// No knob: chunks start at one item and grow while they are cheap, so cheap items are
    /// taken in long runs and expensive items are shared one by one. The default of
    /// [`crate::par_map`] and of [`LoadBalancedView`](crate::LoadBalancedView).
    ///
    /// A blocking adaptive map may start on the calling thread alone and be shared only once it
    /// has run for about a microsecond: a map of more than 256 items per engine always does,
    /// and a map of more than `2P` items does when the same map (the same closure, called from
    /// the same thread) took under a microsecond last time — so a small map of cheap items in a
    /// loop never pays for sharing, and if its items have become costly, the first one shows it
    /// and the rest is shared. **Items must therefore not wait for one another** (use a
    /// [`DirectView`](crate::DirectView) for work that must run on every engine at once); maps
    /// of at most `2P` items are always shared at once.
    Adaptive,
}

/// A chunk size of zero, or another schedule argument that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `chunk` (or the guided minimum) was zero.
    #[error("invalid schedule {schedule}: the chunk size `chunk` must be at least 1, got 0")]
    ZeroChunk {
        /// The schedule as written, e.g. `Dynamic(0)`.
        schedule: String,
    },
}

/// Target busy time of one adaptive chunk. Long enough that the per-chunk cost (one atomic and a
/// clock read, ~50 ns) is negligible and that participants stream through long contiguous runs:
/// measured on the Gaussian kernel, 20 µs chunks made collecting into a fresh `Vec` 1.2x slower
/// than rayon (interleaved first-touch page faults), 100 µs brought it level. The tail still
/// balances finely because chunks are also capped at `ceil(remaining / 2P)`.
pub(crate) const ADAPTIVE_TARGET: Duration = Duration::from_micros(100);

/// An adaptive participant takes the whole rest of a map in one claim when, at the per-item
/// rate it measured, the rest would take under this long — about what one more claim and a
/// cache line moving to another engine cost — and the rest is at most [`SHORT_TAIL_EVIDENCE`]
/// times the items it has measured. 16 trivial items then cost two claims instead of nine.
pub(crate) const SHORT_TAIL: Duration = Duration::from_micros(1);

/// See [`SHORT_TAIL`]: the most items, per item already measured, a short tail may hold (the
/// same bound as one step of chunk growth), so a misleadingly cheap start can cost at most a
/// tail of that size run by one participant.
pub(crate) const SHORT_TAIL_EVIDENCE: usize = 16;

impl Default for Schedule {
    /// [`Schedule::Adaptive`], chosen by measurement (BENCHMARKS.md): within 1% of `Static` on
    /// even work (pi, inversions, Gaussian kernel), of `Dynamic(1)` on very uneven work (primes:
    /// +0.4% of the ideal time, where `Static` takes 2x), and it keeps a large map of cheap items
    /// on the calling thread until sharing pays.
    fn default() -> Self {
        Schedule::Adaptive
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Static => write!(f, "static"),
            Schedule::StaticChunked(c) => write!(f, "static,{c}"),
            Schedule::Dynamic(c) => write!(f, "dynamic,{c}"),
            Schedule::Guided(m) => write!(f, "guided,{m}"),
            Schedule::Adaptive => write!(f, "adaptive"),
        }
    }
}

impl Schedule {
    /// Target busy time of one [`Adaptive`](Schedule::Adaptive) chunk (100 µs): long enough that
    /// the per-chunk cost (one atomic and a clock read) is negligible.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(parview::Schedule::ADAPTIVE_TARGET.as_micros(), 100);
    /// ```
    pub const ADAPTIVE_TARGET: Duration = ADAPTIVE_TARGET;

    /// Block `k` of `0..n` cut into `parts` contiguous blocks whose sizes differ by at most one
    /// (the first `n % parts` blocks get one extra item): what [`Static`](Schedule::Static)
    /// gives engine `k`, what a DirectView's static map gives its `k`-th engine, and what the
    /// cluster gives rank `k`. The one static-block formula of the crate.
    ///
    /// # Examples
    /// ```
    /// use parview::Schedule;
    /// assert_eq!(Schedule::static_block(10, 3, 0), 0..4);
    /// assert_eq!(Schedule::static_block(10, 3, 2), 7..10);
    /// ```
    pub fn static_block(n: usize, parts: usize, k: usize) -> Range<usize> {
        static_block(n, parts, k)
    }

    /// Chunk `j` of size `c` over `0..n` (the last one may be short; empty past the end): the
    /// chunks of `StaticChunked(c)` and `Dynamic(c)`, the leaves of a reduction, the blocks of
    /// [`rng`](crate::rng). The one fixed-size chunk formula of the crate.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(parview::Schedule::chunk(10, 4, 2), 8..10);
    /// ```
    pub fn chunk(n: usize, c: usize, j: usize) -> Range<usize> {
        chunk(n, c, j)
    }

    /// libgomp's guided rule: the next chunk when `remaining` items are left for `parts` engines
    /// with minimum chunk `min`: `max(ceil(remaining / parts), min)`, capped at `remaining`.
    ///
    /// # Examples
    /// ```
    /// use parview::Schedule;
    /// assert_eq!(Schedule::guided_size(100, 4, 1), 25);
    /// assert_eq!(Schedule::guided_size(3, 4, 2), 2);
    /// assert_eq!(Schedule::guided_size(1, 4, 8), 1);
    /// ```
    pub fn guided_size(remaining: usize, parts: usize, min: usize) -> usize {
        guided_size(remaining, parts, min)
    }

    /// Checks the arguments: every chunk size must be at least 1.
    ///
    /// # Examples
    /// ```
    /// use parview::Schedule;
    /// assert!(Schedule::Dynamic(8).validate().is_ok());
    /// let err = Schedule::Dynamic(0).validate().unwrap_err();
    /// assert!(err.to_string().contains("chunk"));
    /// ```
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match *self {
            Schedule::StaticChunked(0) | Schedule::Dynamic(0) | Schedule::Guided(0) => {
                Err(ScheduleError::ZeroChunk {
                    schedule: format!("{self:?}"),
                })
            }
            _ => Ok(()),
        }
    }

    /// The chunks this schedule cuts `0..n` into for `parts` engines, in the order a single
    /// thread would take them, each with the engine (slot) it belongs to. For `Dynamic`,
    /// `Guided` and `Adaptive` the slot is `None`: any engine may take the chunk. `Adaptive`'s
    /// real sizes depend on timing; here every chunk is treated as fast, so sizes grow sixteenfold per chunk
    /// (and the short-tail rule, which needs a measured cost, does not apply).
    ///
    /// # Panics
    /// If the schedule is invalid (see [`validate`](Self::validate)) or `parts` is 0; the message
    /// names the argument.
    ///
    /// # Examples
    /// ```
    /// use parview::Schedule;
    /// let chunks: Vec<_> = Schedule::Static.plan(10, 3).collect();
    /// assert_eq!(chunks, vec![(Some(0), 0..4), (Some(1), 4..7), (Some(2), 7..10)]);
    /// let dynamic: Vec<_> = Schedule::Dynamic(4).plan(10, 3).map(|(_, r)| r).collect();
    /// assert_eq!(dynamic, vec![0..4, 4..8, 8..10]);
    /// ```
    pub fn plan(
        &self,
        n: usize,
        parts: usize,
    ) -> impl Iterator<Item = (Option<usize>, Range<usize>)> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        assert!(
            parts > 0,
            "invalid argument `parts`: must be at least 1, got 0"
        );
        let d = Dispenser::new(*self, n, parts);
        let mut claimer = Claimer::default();
        std::iter::from_fn(move || {
            let (slot, r) = d.next(&mut claimer, None)?;
            claimer.grow(Duration::ZERO);
            Some((slot, r))
        })
        .fuse()
    }
}

/// Block `k` of `0..n` cut into `parts` contiguous blocks whose sizes differ by at most one
/// (the first `n % parts` blocks get one extra item).
///
#[inline]
pub(crate) fn static_block(n: usize, parts: usize, k: usize) -> Range<usize> {
    let base = n / parts;
    let extra = n % parts;
    let start = k * base + k.min(extra);
    let len = base + usize::from(k < extra);
    start..start + len
}

/// Chunk `j` of size `c` over `0..n` (the last one may be short; empty past the end).
///
#[inline]
pub(crate) fn chunk(n: usize, c: usize, j: usize) -> Range<usize> {
    let start = j.saturating_mul(c).min(n);
    start..start.saturating_add(c).min(n)
}

/// libgomp's guided rule: the next chunk when `remaining` items are left for `parts` engines
/// with minimum chunk `min`: `max(ceil(remaining / parts), min)`, capped at `remaining`.
///
#[inline]
pub(crate) fn guided_size(remaining: usize, parts: usize, min: usize) -> usize {
    remaining.div_ceil(parts).max(min).min(remaining)
}

#[derive(Clone, Copy, Debug)]
enum Plan {
    Blocks,
    Cyclic(usize),
    /// Dynamic chunks of `c` with one `fetch_add` per claim (`fast`), or a CAS that never moves
    /// the cursor past `n` (maps so long that overshoot could wrap the cursor).
    Dynamic {
        c: usize,
        fast: bool,
    },
    Guided(usize),
    Adaptive,
}

/// Dynamic maps use `fetch_add` claims only when `n · FAST_RACERS` fits in a `usize` (about
/// 1.7·10^13 items on 64-bit targets); see [`Dispenser`].
const FAST_RACERS: usize = 1 << 20;

/// Hands out the chunks of one map at run time. Lock-free: one `fetch_add` (or one CAS for
/// guided/adaptive, and for dynamic maps of more than `usize::MAX / 2^20` items) per chunk
/// on a cache-padded cursor. For `Static`/`StaticChunked` the cursor counts engine slots; a
/// participant that claims slot `k` runs all of slot `k`'s chunks.
///
/// # Stopping, and why no arithmetic can overflow
/// The stop flag is not a bit of the cursor (a cursor over `0..usize::MAX` needs every bit):
/// [`stop`](Dispenser::stop) sets the flag, then does an RMW on the cursor; a claim does its RMW
/// on the cursor, then reads the flag. A claim whose RMW comes after the stop's in the cursor's
/// modification order synchronises with it and sees the flag, so it *revokes* itself (reports
/// its range as an untaken hole): once `stop` returns, no new chunk starts. Claims before it may
/// still run (their claim was made before the stop).
///
/// Every claimed range, run or revoked, lies below the cursor, so after the map the never
/// claimed rest is `cursor..n`. A `fetch_add` that lands past `n` gives its chunk back at once
/// (`fetch_sub`, on the failing path only), so failing claims never accumulate: the cursor
/// passes `n` by at most one chunk (at most `n`, chunks being clamped to `n`) per thread that
/// is between those two steps at the same moment. `fetch_add` is used only when `n` times
/// `FAST_RACERS` (2^20 such threads, more than any process holds) fits in a `usize`; longer
/// maps claim with a CAS loop, which never moves the cursor past `n`. Static cursors count
/// slots, one per claim: they cannot come near overflow.
///
/// A `StaticChunked` slot cut short by a stop records where (`cuts[slot]`, a chunk index);
/// [`unclaimed`](Dispenser::unclaimed) turns the cuts into ranges, merging what it can, so the
/// bookkeeping of an aborted map costs O(chunks that ran + P), never O(n / c).
///
/// # Layout
/// `repr(C)`, so that the fields sit on the cache lines chosen for them (a map's [`Body`]
/// starts with its dispenser, see there):
/// * the cursor alone on its line (padded to 128 bytes: the pair of lines the adjacent-line
///   prefetcher moves together);
/// * the stop flag with the fields that never change after construction (`plan`, `n`,
///   `parts`) on the next line. A claim reads the flag right after its RMW on the cursor, but
///   under contention the other claimer's request takes the cursor's line away as soon as the
///   RMW ends, so a flag on the cursor's line cost a second transfer per claim; on a line that
///   is written once (by a stop) it stays shared in every reader's cache. `Dynamic(1)` over 2M
///   trivial items: 1.00x OpenMP's `dynamic,1` instead of 1.12x (medians of 14 interleaved A/B
///   pairs, BENCHMARKS §14); `perf` then puts 96% of the claim loop's samples on the
///   `lock xadd` itself. (What then helped is a `pause` after a contested claim, see
///   `Claimer::end`.) Sharing that line with `plan`, `n` and `parts` saves an engine that
///   joins a map one line transfer (2 items of 5 µs: 1.04x → 1.02x OpenMP with the [`Body`]
///   layout, BENCHMARKS §14).
///
/// [`Body`]: crate::map::body::Body
#[repr(C)]
pub(crate) struct Dispenser {
    pos: CachePadded<AtomicUsize>,
    stopped: AtomicBool,
    plan: Plan,
    n: usize,
    parts: usize,
    /// `StaticChunked` only: per slot, the first chunk index a stop kept from running
    /// (`usize::MAX`: not cut).
    cuts: Cuts,
}

/// Slots whose cuts a `StaticChunked` map keeps inline (no allocation for a call on a pool of
/// up to this many engines).
const INLINE_CUTS: usize = 8;

/// The per-slot cuts of a `StaticChunked` map: inline for up to [`INLINE_CUTS`] slots, boxed
/// beyond; empty for every other schedule.
enum Cuts {
    Inline([AtomicUsize; INLINE_CUTS]),
    Boxed(Box<[AtomicUsize]>),
}

impl std::ops::Deref for Cuts {
    type Target = [AtomicUsize];
    fn deref(&self) -> &[AtomicUsize] {
        match self {
            Cuts::Inline(a) => a,
            Cuts::Boxed(b) => b,
        }
    }
}

/// What one participant remembers between claims: its current static slot, and its adaptive
/// chunk size.
#[derive(Debug)]
pub(crate) struct Claimer {
    slot: Option<usize>,
    next_j: usize,
    size: usize,
    /// Working alone (before the map is shared): no tail cap on adaptive chunks.
    pub(crate) alone: bool,
    /// Items this participant has run with timing (adaptive), and their measured cost per item
    /// in ns (0: nothing measured yet).
    measured: usize,
    per_item_ns: u64,
    /// The time of all measured items (ns), for [`Claimer::mean_item_ns`].
    measured_ns: u64,
    /// Where this participant's last chunk ended (0 before its first; not kept by
    /// `StaticChunked`, whose claims are whole slots). Two uses:
    /// * Once it is `n` or past, every later claim would fail, so the participant makes none
    ///   ([`Dispenser::next`] returns `None` at once): a failing claim is an RMW on the
    ///   cursor, whose line another participant's own failing claim may just have taken away,
    ///   on the way from the map's last item to its end (2 items of 5 µs: ~0.5% in alternated
    ///   builds, BENCHMARKS §14).
    /// * `Dynamic` (fast path): a claim that does not start there found another participant's
    ///   claim in between — the cursor's line is passing between cores — and is followed by one
    ///   `pause` (the spin-wait hint, ~10 ns). Measured on 2 cores (BENCHMARKS §14):
    ///   `Dynamic(1)` over 2M trivial items 1.05–1.13x → 0.79–0.93x OpenMP's `dynamic,1`, with
    ///   as many thread switches per item as before (0.6–0.75): each pass of the line costs
    ///   less when the core that just lost the race does not fire its next locked operation at
    ///   once. A participant claiming alone never pauses.
    end: usize,
}

impl Default for Claimer {
    fn default() -> Self {
        Claimer {
            slot: None,
            next_j: 0,
            size: 1,
            alone: false,
            measured: 0,
            per_item_ns: 0,
            measured_ns: 0,
            end: 0,
        }
    }
}

impl Claimer {
    /// After an adaptive chunk that took `busy`: grow the next chunk by the headroom left under
    /// [`ADAPTIVE_TARGET`] (at least ×2, at most ×16 per step), or halve it if the chunk ran far
    /// over. Growing by the measured headroom reaches the target in few steps, so a map of cheap
    /// items reads the clock only a handful of times.
    #[inline]
    pub(crate) fn grow(&mut self, busy: Duration) {
        if busy < ADAPTIVE_TARGET {
            let headroom = ADAPTIVE_TARGET.as_nanos() / busy.as_nanos().max(1);
            let factor = headroom.clamp(2, 16) as usize;
            self.size = self.size.saturating_mul(factor);
        } else if busy > 4 * ADAPTIVE_TARGET && self.size > 1 {
            self.size /= 2;
        }
    }

    /// Records that `items` items took `busy` (adaptive), for the short-tail rule (see
    /// [`SHORT_TAIL`]).
    #[inline]
    pub(crate) fn measured(&mut self, busy: Duration, items: usize) {
        if items > 0 {
            self.measured = self.measured.saturating_add(items);
            self.measured_ns = self
                .measured_ns
                .saturating_add(busy.as_nanos().min(u128::from(u64::MAX)) as u64);
            self.per_item_ns = (busy.as_nanos() / items as u128).clamp(1, u64::MAX as u128) as u64;
        }
    }

    /// The mean cost of the items this participant timed (ns, at least 1; 0: none timed).
    #[inline]
    pub(crate) fn mean_item_ns(&self) -> u64 {
        if self.measured == 0 {
            0
        } else {
            (self.measured_ns / self.measured as u64).max(1)
        }
    }

    /// Whether the `remaining` items are a short tail worth one claim (see [`SHORT_TAIL`]).
    #[inline]
    fn short_tail(&self, remaining: usize) -> bool {
        self.per_item_ns > 0
            && remaining <= self.measured.saturating_mul(SHORT_TAIL_EVIDENCE)
            && (remaining as u128) * u128::from(self.per_item_ns) <= SHORT_TAIL.as_nanos()
    }

    /// While working alone under a time budget: size the next chunk to fill the `remaining`
    /// budget at the rate the last chunk (`items` in `busy`) ran, so an unexpectedly expensive
    /// stretch overshoots the budget by its cost ratio, not by a whole grown chunk.
    #[inline]
    pub(crate) fn fit(&mut self, busy: Duration, items: usize, remaining: Duration) {
        let per_item = (busy.as_nanos() / items.max(1) as u128).max(1);
        self.size = (remaining.as_nanos() / per_item).clamp(1, 1 << 20) as usize;
    }
}

impl Dispenser {
    /// A dispenser for a valid `schedule` over `0..n` and `parts >= 1` participants.
    pub(crate) fn new(schedule: Schedule, n: usize, parts: usize) -> Self {
        debug_assert!(parts > 0 && schedule.validate().is_ok());
        // Chunk sizes are clamped to n, which bounds the cursor's overshoot (see above).
        let clamp = |c: usize| c.min(n.max(1));
        let plan = match schedule {
            Schedule::Static => Plan::Blocks,
            Schedule::StaticChunked(c) => Plan::Cyclic(clamp(c)),
            Schedule::Dynamic(c) => Plan::Dynamic {
                c: clamp(c),
                fast: n.checked_mul(FAST_RACERS).is_some(),
            },
            Schedule::Guided(m) => Plan::Guided(clamp(m)),
            Schedule::Adaptive => Plan::Adaptive,
        };
        let cuts = match plan {
            Plan::Cyclic(_) if parts <= INLINE_CUTS => {
                Cuts::Inline(std::array::from_fn(|_| AtomicUsize::new(usize::MAX)))
            }
            Plan::Cyclic(_) => {
                Cuts::Boxed((0..parts).map(|_| AtomicUsize::new(usize::MAX)).collect())
            }
            _ => Cuts::Boxed(Box::default()),
        };
        Dispenser {
            plan,
            n,
            parts,
            pos: CachePadded::new(AtomicUsize::new(0)),
            stopped: AtomicBool::new(false),
            cuts,
        }
    }

    /// Whether chunk times are needed to cut (adaptive).
    #[inline]
    pub(crate) fn needs_timing(&self) -> bool {
        matches!(self.plan, Plan::Adaptive)
    }

    /// Upper bound on how many participants can usefully work at once.
    pub(crate) fn max_units(&self) -> usize {
        match self.plan {
            Plan::Blocks => self.parts.min(self.n),
            Plan::Cyclic(c) => self.parts.min(self.n.div_ceil(c)),
            Plan::Dynamic { c, .. } => self.n.div_ceil(c),
            Plan::Guided(_) | Plan::Adaptive => self.n,
        }
    }

    /// Whether timing the next adaptive chunk can still change a later claim: false once at
    /// most `2P` items are left unclaimed (every later chunk is one item then), so tiny maps and
    /// every participant's last chunks read no clock.
    #[inline]
    pub(crate) fn worth_timing(&self) -> bool {
        let left = self.n.saturating_sub(self.pos.load(Ordering::Relaxed));
        left > 2 * self.parts
    }

    /// Whether the map was stopped.
    #[inline]
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Stops the map: after this returns, no claim succeeds. Idempotent.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // The RMW that claims after this one synchronise with (see the type's docs).
        self.pos.fetch_add(0, Ordering::AcqRel);
    }

    /// Checks a claim just made (its RMW done): `Some(r)` to run it, or `None` after reporting
    /// `r` as a hole because the map was stopped.
    #[inline]
    fn keep(
        &self,
        r: Range<usize>,
        holes: &mut Option<&mut dyn FnMut(Range<usize>)>,
    ) -> Option<Range<usize>> {
        if self.stopped() {
            if let Some(h) = holes.as_mut() {
                h(r);
            }
            None
        } else {
            Some(r)
        }
    }

    /// The next chunk for this participant, with its static slot, or `None` when there is no
    /// more work (or the map was stopped). `holes` receives the chunks a stop cut off after
    /// they were claimed (revoked claims, and the rest of a static slot).
    #[inline]
    pub(crate) fn next(
        &self,
        cl: &mut Claimer,
        mut holes: Option<&mut dyn FnMut(Range<usize>)>,
    ) -> Option<(Option<usize>, Range<usize>)> {
        let n = self.n;
        let pos = &self.pos;
        if cl.end >= n {
            return None; // this participant took the last chunk (or there are no items)
        }
        match self.plan {
            Plan::Blocks => loop {
                let s = pos.fetch_add(1, Ordering::AcqRel);
                if s >= self.parts {
                    return None;
                }
                let r = static_block(n, self.parts, s);
                // Blocks cut `0..n` in order: after the one that ends at `n`, all are empty.
                cl.end = r.end;
                if !r.is_empty() {
                    return self.keep(r, &mut holes).map(|r| (Some(s), r));
                }
                if cl.end >= n {
                    return None;
                }
            },
            Plan::Cyclic(c) => loop {
                if let Some(slot) = cl.slot {
                    let r = chunk(n, c, cl.next_j);
                    if r.is_empty() {
                        cl.slot = None;
                        continue;
                    }
                    if self.stopped() {
                        // The rest of this slot will not run: `unclaimed` reports it.
                        self.cuts[slot].store(cl.next_j, Ordering::Relaxed);
                        cl.slot = None;
                        return None;
                    }
                    cl.next_j += self.parts;
                    return Some((Some(slot), r));
                }
                let s = pos.fetch_add(1, Ordering::AcqRel);
                if s >= self.parts {
                    return None;
                }
                if self.stopped() {
                    // Revoked: the whole slot is cut at its first chunk.
                    self.cuts[s].store(s, Ordering::Relaxed);
                    return None;
                }
                cl.slot = Some(s);
                cl.next_j = s;
            },
            Plan::Dynamic { c, fast: true } => {
                let s = pos.fetch_add(c, Ordering::AcqRel);
                if s >= n {
                    // Past the end: give the chunk back, so that failing claims never add up.
                    pos.fetch_sub(c, Ordering::AcqRel);
                    return None;
                }
                if s != cl.end {
                    // Someone claimed since our last chunk: the cursor's line is contested.
                    // One `pause` before going on (see `Claimer::end`).
                    std::hint::spin_loop();
                }
                cl.end = s + c;
                self.keep(s..(s + c).min(n), &mut holes).map(|r| (None, r))
            }
            Plan::Dynamic { fast: false, .. } | Plan::Guided(_) | Plan::Adaptive => {
                let mut s = pos.load(Ordering::Acquire);
                loop {
                    if s >= n || self.stopped() {
                        return None;
                    }
                    let remaining = n - s;
                    let size = match self.plan {
                        Plan::Dynamic { c, .. } => c.min(remaining),
                        Plan::Guided(m) => guided_size(remaining, self.parts, m),
                        _ if cl.alone => cl.size.min(remaining),
                        _ if cl.short_tail(remaining) => remaining,
                        _ => cl
                            .size
                            .min(remaining.div_ceil(2 * self.parts))
                            .clamp(1, remaining),
                    };
                    match pos.compare_exchange_weak(
                        s,
                        s + size,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            cl.end = s + size;
                            return self.keep(s..s + size, &mut holes).map(|r| (None, r));
                        }
                        Err(now) => s = now,
                    }
                }
            }
        }
    }

    /// The chunks of a `StaticChunked` map that did not run: slots never claimed (`k >= cur`)
    /// and the tails of slots cut by a stop, as merged ranges. Chunks are visited one by one
    /// only between the lowest and the highest cut (work that ran bounds that stretch); past
    /// the highest cut, when every slot was cut, everything is one range.
    fn cyclic_holes(&self, c: usize, cur: usize, f: &mut impl FnMut(Range<usize>)) {
        let (n, p) = (self.n, self.parts);
        let chunks = n.div_ceil(c);
        let live = p.min(chunks); // slots that own at least one chunk
        let cut = |k: usize| {
            if k >= cur.min(p) {
                k // never claimed: cut at its first chunk
            } else {
                self.cuts[k].load(Ordering::Relaxed)
            }
        };
        // Nothing was cut (the usual end of a map): no table to build.
        let Some(lo) = (0..live).map(cut).filter(|&j| j < chunks).min() else {
            return;
        };
        let cuts: Vec<usize> = (0..live).map(cut).collect();
        let all_cut = cuts.iter().all(|&j| j < chunks);
        let hi = if all_cut {
            *cuts.iter().max().expect("live >= 1")
        } else {
            chunks
        };
        let mut pending: Option<Range<usize>> = None;
        let mut emit = |r: Range<usize>, f: &mut dyn FnMut(Range<usize>)| match &mut pending {
            Some(p) if p.end == r.start => p.end = r.end,
            _ => {
                if let Some(p) = pending.replace(r) {
                    f(p);
                }
            }
        };
        for j in lo..hi {
            if j >= cuts[j % p] {
                emit(chunk(n, c, j), f);
            }
        }
        if all_cut && hi < chunks {
            emit(chunk(n, c, hi).start..n, f);
        }
        if let Some(p) = pending {
            f(p);
        }
    }

    /// The static block of slot `k` (directed work: slot `k` runs on a named engine).
    pub(crate) fn block(&self, k: usize) -> Range<usize> {
        static_block(self.n, self.parts, k)
    }

    /// After the map has finished: calls `f` for every range that was never claimed (only
    /// non-empty after a stop). Must only be called once no participant is active.
    pub(crate) fn unclaimed(&self, directed: bool, mut f: impl FnMut(Range<usize>)) {
        if directed {
            return; // directed slots report their own holes
        }
        let cur = self.pos.load(Ordering::Acquire);
        match self.plan {
            Plan::Blocks => {
                for k in cur.min(self.parts)..self.parts {
                    let r = static_block(self.n, self.parts, k);
                    if !r.is_empty() {
                        f(r);
                    }
                }
            }
            Plan::Cyclic(c) => self.cyclic_holes(c, cur, &mut f),
            Plan::Dynamic { .. } | Plan::Guided(_) | Plan::Adaptive => {
                if cur < self.n {
                    f(cur..self.n);
                }
            }
        }
    }
}

/// The one shared schedule list of the tests (`tests/common/schedules.rs`).
#[cfg(test)]
#[path = "../tests/common/schedules.rs"]
mod shared_schedules;

/// Every kind of schedule with small chunks, for tests that must hold under all of them.
#[cfg(test)]
pub(crate) const TEST_SCHEDULES: [Schedule; 8] = shared_schedules::SCHEDULES;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `n` cases, or a handful under Miri (which interprets every step).
    fn cases(n: u32) -> ProptestConfig {
        ProptestConfig::with_cases(if cfg!(miri) { 3 } else { n })
    }

    /// Input lengths up to `n`, or up to 100 under Miri.
    fn small(n: usize) -> usize {
        if cfg!(miri) { 100 } else { n }
    }

    fn schedules(c: usize) -> [Schedule; 5] {
        [
            Schedule::Static,
            Schedule::StaticChunked(c),
            Schedule::Dynamic(c),
            Schedule::Guided(c),
            Schedule::Adaptive,
        ]
    }

    proptest! {
        #![proptest_config(cases(300))]
        #[test]
        fn every_index_exactly_once(n in 0usize..small(5000), p in 1usize..9, c in 1usize..64) {
            for s in schedules(c) {
                let mut seen = vec![0u8; n];
                let mut last_end = 0;
                let chunks: Vec<_> = s.plan(n, p).collect();
                for (slot, r) in &chunks {
                    prop_assert!(!r.is_empty(), "{s}: empty chunk");
                    prop_assert!(r.end <= n);
                    for i in r.clone() { seen[i] += 1; }
                    match s {
                        Schedule::Static => {
                            prop_assert_eq!(r.start, last_end, "{} blocks in order", s);
                            prop_assert!(slot.unwrap() < p);
                        }
                        Schedule::StaticChunked(c) => {
                            prop_assert_eq!(r.start % c, 0);
                            prop_assert_eq!((r.start / c) % p, slot.unwrap(), "{} round robin", s);
                            prop_assert!(r.len() == c || r.end == n);
                        }
                        Schedule::Dynamic(c) => {
                            prop_assert_eq!(r.start, last_end);
                            prop_assert!(r.len() == c || r.end == n);
                        }
                        Schedule::Guided(m) => {
                            prop_assert_eq!(r.start, last_end);
                            prop_assert_eq!(r.len(), guided_size(n - r.start, p, m));
                        }
                        Schedule::Adaptive => prop_assert_eq!(r.start, last_end),
                    }
                    last_end = r.end;
                }
                prop_assert!(seen.iter().all(|&k| k == 1), "{s}: an index not covered exactly once");
                if s == Schedule::Static {
                    let lens: Vec<_> = (0..p).map(|k| static_block(n, p, k).len()).collect();
                    let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                    prop_assert!(hi - lo <= 1, "static blocks differ by more than one: {:?}", lens);
                    prop_assert_eq!(lens.iter().sum::<usize>(), n);
                }
            }
        }

        #[test]
        fn interleaved_claimers_cover_every_index_once(n in 0usize..small(300), p in 1usize..6, active in 1usize..6, c in 1usize..16, order in proptest::collection::vec(0usize..6, 0..64)) {
            // `active` of the `p` participants come (the others are busy elsewhere) and claim in
            // an arbitrary order, each until its claim fails: together they take every index
            // once, whichever static slots the absent ones would have taken.
            let active = active.min(p);
            for s in schedules(c) {
                let d = Dispenser::new(s, n, p);
                let mut cls: Vec<Claimer> = (0..active).map(|_| Claimer::default()).collect();
                let mut done = vec![false; active];
                let mut seen = vec![0u8; n];
                let mut turn = order.iter().map(|&k| k % active).chain((0..active).cycle());
                while !done.iter().all(|&x| x) {
                    let k = turn.next().unwrap();
                    if done[k] { continue; }
                    match d.next(&mut cls[k], None) {
                        Some((_, r)) => for i in r { seen[i] += 1; },
                        None => done[k] = true,
                    }
                }
                prop_assert!(seen.iter().all(|&x| x == 1), "{s}: every index exactly once");
                let mut rest = 0;
                d.unclaimed(false, |r| rest += r.len());
                prop_assert_eq!(rest, 0, "{}: nothing left unclaimed", s);
            }
        }

        #[test]
        fn stop_leaves_exactly_the_unclaimed_ranges(n in 1usize..small(3000), p in 1usize..13, c in 1usize..64, k in 0usize..40) {
            for s in schedules(c) {
                let d = Dispenser::new(s, n, p);
                let mut seen = vec![0u8; n];
                let mut cl = Claimer::default();
                let mut taken = 0;
                // Claim k chunks, then stop; then drain the participant.
                while taken < k {
                    match d.next(&mut cl, None) {
                        Some((_, r)) => { for i in r { seen[i] += 1; } taken += 1; }
                        None => break,
                    }
                }
                d.stop();
                let mut holes = |r: Range<usize>| for i in r { seen[i] += 1; };
                prop_assert!(d.next(&mut cl, Some(&mut holes)).is_none());
                d.unclaimed(false, |r| for i in r { seen[i] += 1; });
                prop_assert!(seen.iter().all(|&x| x == 1), "{s}: claimed + holes + unclaimed must cover each index once");
            }
        }
    }

    /// Chunk sizes anywhere up to `usize::MAX`: small and large, and the edges.
    fn any_chunk() -> impl Strategy<Value = usize> {
        prop_oneof![
            1usize..100,
            Just(usize::MAX),
            Just(usize::MAX - 1),
            Just(usize::MAX / 2 + 1),
            (usize::MAX / 4)..=usize::MAX,
            any::<usize>().prop_map(|c| c.max(1)),
        ]
    }

    /// Lengths where cursor arithmetic could wrap: near `usize::MAX` and around the old STOP bit.
    fn huge_n() -> impl Strategy<Value = usize> {
        prop_oneof![
            Just(usize::MAX),
            (usize::MAX - 1000)..=usize::MAX,
            (1usize << 62)..(1usize << 63),
            ((1usize << 63) - 100)..((1usize << 63) + 100),
            (usize::MAX / 20)..(usize::MAX / 2),
        ]
    }

    proptest! {
        #![proptest_config(cases(200))]
        /// The dispenser with chunk sizes up to `usize::MAX`: every index exactly once, through
        /// several participants that each keep claiming until told there is nothing left.
        #[test]
        fn huge_chunk_sizes_cover_every_index_once(n in 0usize..small(3000), p in 1usize..9, c in any_chunk()) {
            for s in schedules(c) {
                let d = Dispenser::new(s, n, p);
                let mut seen = vec![0u8; n];
                let mut claimers: Vec<Claimer> = (0..p + 1).map(|_| Claimer::default()).collect();
                let mut live: Vec<usize> = (0..claimers.len()).collect();
                let mut turn = 0;
                while !live.is_empty() {
                    let k = live[turn % live.len()];
                    match d.next(&mut claimers[k], None) {
                        Some((_, r)) => {
                            prop_assert!(r.start < r.end && r.end <= n, "{s}: chunk {r:?} of {n}");
                            for i in r { seen[i] += 1; }
                            claimers[k].grow(Duration::ZERO);
                        }
                        None => { live.retain(|&x| x != k); }
                    }
                    turn += 1;
                }
                // Claims after the end stay failed (the cursor cannot wrap into a new lap).
                for cl in claimers.iter_mut() {
                    prop_assert!(d.next(cl, None).is_none(), "{s}: a claim after the end succeeded");
                }
                prop_assert!(seen.iter().all(|&x| x == 1), "{s}: an index not run exactly once");
                let mut rest = 0usize;
                d.unclaimed(false, |r| rest += r.len());
                prop_assert_eq!(rest, 0, "{}: a finished map left an unclaimed range", s);
            }
        }

        /// Maps over ranges near `usize::MAX`: chunks stay in bounds and in order, claims after
        /// a stop fail or are revoked as holes, and claimed + holes + unclaimed is exactly `n`
        /// (counted in u128: nothing wrapped).
        #[test]
        fn huge_ranges_never_wrap(n in huge_n(), p in 1usize..9, c in any_chunk(), k in 0usize..12) {
            for s in schedules(c) {
                let d = Dispenser::new(s, n, p);
                let mut claimers: Vec<Claimer> = (0..p + 1).map(|_| Claimer::default()).collect();
                let mut covered: u128 = 0;
                let mut ranges: Vec<Range<usize>> = Vec::new();
                for j in 0..k {
                    let cl = &mut claimers[j % (p + 1)];
                    if let Some((_, r)) = d.next(cl, None) {
                        prop_assert!(r.start < r.end && r.end <= n, "{s}: chunk {r:?}");
                        covered += r.len() as u128;
                        ranges.push(r);
                        cl.grow(Duration::ZERO);
                    }
                }
                d.stop();
                let mut holes: Vec<Range<usize>> = Vec::new();
                for cl in claimers.iter_mut() {
                    let mut h = |r: Range<usize>| holes.push(r);
                    prop_assert!(d.next(cl, Some(&mut h)).is_none(), "{s}: a claim after stop succeeded");
                }
                for r in &holes { covered += r.len() as u128; }
                d.unclaimed(false, |r| { covered += r.len() as u128; ranges.push(r); });
                ranges.extend(holes);
                ranges.sort_by_key(|r| r.start);
                for w in ranges.windows(2) {
                    prop_assert!(w[0].end <= w[1].start, "{s}: overlapping {:?} {:?}", w[0], w[1]);
                }
                prop_assert_eq!(covered, n as u128, "{}: claimed + holes + unclaimed != n", s);
            }
        }
    }

    #[test]
    fn zero_chunk_is_an_error_naming_the_argument() {
        for s in [
            Schedule::StaticChunked(0),
            Schedule::Dynamic(0),
            Schedule::Guided(0),
        ] {
            let e = s.validate().unwrap_err();
            assert!(e.to_string().contains("`chunk`"), "{e}");
        }
        assert!(Schedule::Static.validate().is_ok());
        assert!(Schedule::Adaptive.validate().is_ok());
    }

    #[test]
    fn empty_range_dispatches_nothing() {
        for s in schedules(3) {
            assert_eq!(s.plan(0, 4).count(), 0, "{s}");
        }
    }

    #[test]
    fn a_short_measured_tail_is_taken_in_one_claim() {
        let d = Dispenser::new(Schedule::Adaptive, 16, 2);
        let mut cl = Claimer::default();
        assert_eq!(d.next(&mut cl, None).map(|(_, r)| r), Some(0..1));
        // No cost measured yet: the tail cap holds (ceil(15 / 4) = 4 after growth to 16).
        cl.grow(Duration::from_nanos(50));
        let mut probe = Claimer {
            size: cl.size,
            ..Default::default()
        };
        let d2 = Dispenser::new(Schedule::Adaptive, 16, 2);
        let _ = d2.next(&mut Claimer::default(), None);
        assert_eq!(d2.next(&mut probe, None).map(|(_, r)| r), Some(1..5));
        // 1 item took 50 ns: 15 more take 750 ns <= SHORT_TAIL, and 15 <= 16 x 1 measured.
        cl.measured(Duration::from_nanos(50), 1);
        assert_eq!(d.next(&mut cl, None).map(|(_, r)| r), Some(1..16));
        assert_eq!(d.next(&mut cl, None), None);

        // Too costly a tail (15 x 100 ns > 1 µs): capped.
        let d = Dispenser::new(Schedule::Adaptive, 16, 2);
        let mut cl = Claimer::default();
        let _ = d.next(&mut cl, None);
        cl.grow(Duration::from_nanos(100));
        cl.measured(Duration::from_nanos(100), 1);
        assert_eq!(d.next(&mut cl, None).map(|(_, r)| r), Some(1..5));

        // Too little evidence (1 item measured, 40 left): capped, however cheap.
        let d = Dispenser::new(Schedule::Adaptive, 41, 2);
        let mut cl = Claimer::default();
        let _ = d.next(&mut cl, None);
        cl.grow(Duration::from_nanos(1));
        cl.measured(Duration::from_nanos(1), 1);
        assert_eq!(d.next(&mut cl, None).map(|(_, r)| r), Some(1..11));
    }

    #[test]
    fn the_cursor_has_its_line_pair_and_the_claim_fields_share_the_next_line() {
        // The layout the type's docs promise (and the map body builds on): the cursor alone
        // in the first 128 bytes, the stop flag and the read-only claim fields in one line.
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(offset_of!(Dispenser, pos), 0);
        assert!(align_of::<Dispenser>() >= 128);
        let hot = [
            (offset_of!(Dispenser, stopped), size_of::<AtomicBool>()),
            (offset_of!(Dispenser, plan), size_of::<Plan>()),
            (offset_of!(Dispenser, n), size_of::<usize>()),
            (offset_of!(Dispenser, parts), size_of::<usize>()),
        ];
        for (at, len) in hot {
            assert!(
                at >= 128 && at + len <= 192,
                "field at {at}..{} not in 128..192",
                at + len
            );
        }
    }

    #[test]
    fn a_claimer_that_took_the_last_chunk_claims_no_more() {
        // Its next claim would fail: it returns None without touching the cursor, whose line
        // another participant may be holding. (`StaticChunked` claims whole slots and keeps
        // its failing claim.)
        for (n, p, c) in [(1, 1, 1), (2, 2, 1), (5, 2, 2), (3, 8, 1), (100, 3, 7)] {
            for s in schedules(c) {
                if matches!(s, Schedule::StaticChunked(_)) {
                    continue;
                }
                let d = Dispenser::new(s, n, p);
                let mut cl = Claimer::default();
                let mut last_end = 0;
                while cl.end < n {
                    let (_, r) = d.next(&mut cl, None).expect("a chunk before the end");
                    assert_eq!(r.start, last_end, "{s} n={n} p={p}: one claimer, in order");
                    last_end = r.end;
                }
                assert_eq!(
                    last_end, n,
                    "{s} n={n} p={p}: spent only after the last item"
                );
                let pos = d.pos.load(Ordering::Relaxed);
                assert_eq!(d.next(&mut cl, None), None, "{s} n={n} p={p}");
                assert_eq!(
                    d.pos.load(Ordering::Relaxed),
                    pos,
                    "{s} n={n} p={p}: no claim made"
                );
                // A fresh participant still finds nothing (and may move the cursor).
                assert_eq!(d.next(&mut Claimer::default(), None), None, "{s}");
            }
        }
    }

    #[test]
    fn timing_is_worth_it_only_while_more_than_2p_items_are_left() {
        let d = Dispenser::new(Schedule::Adaptive, 10, 2);
        assert!(d.worth_timing());
        let mut cl = Claimer {
            size: 5,
            ..Default::default()
        };
        let _ = d.next(&mut cl, None); // 0..3 (cap ceil(10 / 4))
        assert!(d.worth_timing()); // 7 left > 4
        let _ = d.next(&mut cl, None); // 3..5
        assert!(d.worth_timing()); // 5 left
        let _ = d.next(&mut cl, None); // 5..7
        assert!(!d.worth_timing()); // 3 left: every later chunk is one item
    }

    #[test]
    fn adaptive_grows_then_shrinks_with_cost() {
        let mut cl = Claimer::default();
        cl.grow(Duration::ZERO); // very cheap: the largest step
        assert_eq!(cl.size, 16);
        cl.grow(ADAPTIVE_TARGET / 4); // headroom 4
        assert_eq!(cl.size, 64);
        cl.grow(ADAPTIVE_TARGET * 9 / 10); // little headroom: still at least doubles
        assert_eq!(cl.size, 128);
        cl.grow(ADAPTIVE_TARGET * 10); // far over: halve
        assert_eq!(cl.size, 64);
        cl.grow(ADAPTIVE_TARGET * 2); // a bit over: keep
        assert_eq!(cl.size, 64);
    }
}
