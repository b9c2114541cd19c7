//! Everyday rayon code and its parview port, with the serial version of each: a quicksort
//! with `join`, a word count with a per-worker fold, and a matrix filled by rows in place.
//! Shared by `benches/rayon_ports.rs` and `examples/rayon_ports.rs` (same code, so the
//! example's ratios and the bench's measure the same thing).
#![allow(dead_code)]

use parview::Pool;
use rayon::prelude::*;
use std::collections::HashMap;

// ---------------------------------------------------------------------------------------------
// Quicksort with join

/// Below this many items a half is sorted serially (`sort_unstable`), in all three versions.
pub const QS_CUTOFF: usize = 1 << 12;

/// `n` pseudo-random i64 (splitmix64 of the index and `seed`).
pub fn random_i64(n: usize, seed: u64) -> Vec<i64> {
    (0..n as u64)
        .map(|i| {
            let mut z = i
                .wrapping_add(seed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as i64
        })
        .collect()
}

/// Partitions around the median of the first, middle and last items (moved to the end,
/// Lomuto); returns the pivot's final index.
fn partition(v: &mut [i64]) -> usize {
    let last = v.len() - 1;
    let mid = v.len() / 2;
    if v[mid] < v[0] {
        v.swap(mid, 0);
    }
    if v[last] < v[0] {
        v.swap(last, 0);
    }
    if v[last] < v[mid] {
        v.swap(last, mid);
    }
    v.swap(mid, last);
    let pivot = v[last];
    let mut store = 0;
    for i in 0..last {
        if v[i] < pivot {
            v.swap(i, store);
            store += 1;
        }
    }
    v.swap(store, last);
    store
}

/// The serial quicksort.
pub fn quicksort_serial(v: &mut [i64]) {
    if v.len() <= QS_CUTOFF {
        v.sort_unstable();
        return;
    }
    let p = partition(v);
    let (lo, hi) = v.split_at_mut(p);
    quicksort_serial(lo);
    quicksort_serial(&mut hi[1..]);
}

/// With `rayon::join` (call inside the rayon pool: `rp.install(|| quicksort_rayon(v))`).
pub fn quicksort_rayon(v: &mut [i64]) {
    if v.len() <= QS_CUTOFF {
        v.sort_unstable();
        return;
    }
    let p = partition(v);
    let (lo, hi) = v.split_at_mut(p);
    rayon::join(|| quicksort_rayon(lo), || quicksort_rayon(&mut hi[1..]));
}

/// With `Pool::join`: the same code, `pool.join` for `rayon::join`.
pub fn quicksort_parview(pool: &Pool, v: &mut [i64]) {
    if v.len() <= QS_CUTOFF {
        v.sort_unstable();
        return;
    }
    let p = partition(v);
    let (lo, hi) = v.split_at_mut(p);
    pool.join(
        || quicksort_parview(pool, lo),
        || quicksort_parview(pool, &mut hi[1..]),
    );
}

// ---------------------------------------------------------------------------------------------
// Word count with a fold

/// Words per vocabulary.
pub const VOCABULARY: u64 = 2_000;

/// `n` lines of 4 to 15 words drawn (skewed towards small ids) from a vocabulary of
/// [`VOCABULARY`] words.
pub fn text_lines(n: usize) -> Vec<String> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let words = 4 + next() % 12;
            let mut line = String::new();
            for k in 0..words {
                if k > 0 {
                    line.push(' ');
                }
                // The product of two uniforms: small ids are common, as in text.
                let id = (next() % VOCABULARY) * (next() % VOCABULARY) / VOCABULARY;
                line.push_str(&format!("w{id}"));
            }
            line
        })
        .collect()
}

/// Word counts.
pub type Counts<'a> = HashMap<&'a str, u32>;

/// Adds one line's words.
#[allow(clippy::ptr_arg)] // the items of a `&[String]` are `&String`
pub fn count_line<'a>(mut m: Counts<'a>, line: &'a String) -> Counts<'a> {
    for w in line.split_whitespace() {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

/// Merges the smaller map into the larger.
pub fn merge<'a>(a: Counts<'a>, b: Counts<'a>) -> Counts<'a> {
    let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (w, c) in small {
        *big.entry(w).or_insert(0) += c;
    }
    big
}

/// The serial word count.
pub fn count_serial(lines: &[String]) -> Counts<'_> {
    lines.iter().fold(Counts::new(), count_line)
}

/// rayon's `fold().reduce()` (call inside the rayon pool).
pub fn count_rayon(lines: &[String]) -> Counts<'_> {
    lines
        .par_iter()
        .fold(Counts::new, count_line)
        .reduce(Counts::new, merge)
}

/// parview's fold.
pub fn count_parview<'a>(pool: &Pool, lines: &'a [String]) -> Counts<'a> {
    pool.par_fold(lines, Counts::new, count_line, merge)
}

// ---------------------------------------------------------------------------------------------
// A matrix filled by rows, in place

/// Entry `(r, c)`: a few flops, so a row of 2,000 takes microseconds.
#[inline]
pub fn cell(r: usize, c: usize) -> f64 {
    let (x, y) = (r as f64 * 1e-3, c as f64 * 1e-3);
    (x * y).sin() + (x - y).cos() * 0.5
}

/// The serial fill.
pub fn fill_serial(m: &mut [f64], cols: usize) {
    for (r, row) in m.chunks_mut(cols).enumerate() {
        for (c, x) in row.iter_mut().enumerate() {
            *x = cell(r, c);
        }
    }
}

/// rayon's `par_chunks_mut` (call inside the rayon pool).
pub fn fill_rayon(m: &mut [f64], cols: usize) {
    m.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        for (c, x) in row.iter_mut().enumerate() {
            *x = cell(r, c);
        }
    });
}

/// parview's `par_chunks_mut`.
pub fn fill_parview(pool: &Pool, m: &mut [f64], cols: usize) {
    pool.par_chunks_mut(m, cols, |r, row| {
        for (c, x) in row.iter_mut().enumerate() {
            *x = cell(r, c);
        }
    });
}
