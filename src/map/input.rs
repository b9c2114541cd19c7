//! What a map can run over: the public [`IntoMapInput`] and the engine-side [`MapInput`].

use std::ops::Range;

/// What a map can run over: a slice, `&Vec<T>` or `&[T; N]` (items `&T`), an owned `Vec<T>` or
/// `[T; N]` (items `T`), a range of integers (items are the integers), or a tuple of two, three
/// or four of these walked in step like `Iterator::zip` (items are tuples; the map has as many
/// items as the shortest input).
///
/// # Examples
/// ```
/// let v = vec![1, 2, 3];
/// assert_eq!(parview::par_map(&v, |x| x + 1), vec![2, 3, 4]);      // &Vec<T>
/// assert_eq!(parview::par_map(&v[1..], |x| x * 2), vec![4, 6]);    // &[T]
/// assert_eq!(parview::par_map(0..3u64, |i| i * i), vec![0, 1, 4]); // Range
/// assert_eq!(parview::par_map(vec![String::from("a")], |s| s + "!"), vec!["a!"]); // Vec<T>
/// ```
pub trait IntoMapInput {
    /// The item the closure receives.
    type Item;
    /// The input as the engine reads it.
    #[doc(hidden)]
    type Input: MapInput<Item = Self::Item>;
    /// Converts into the engine's input.
    #[doc(hidden)]
    fn into_map_input(self) -> Self::Input;
}

/// Random access to a map's items by index (sealed: only parview implements it).
///
/// The map pipeline calls [`release`](MapInput::release) exactly once for every input it
/// converted — also for a map that never ran (empty, or refused before starting) — so that
/// owned items nobody took, and the longer side of an unequal zip, are dropped.
pub trait MapInput: Sync {
    /// Item type.
    type Item;
    /// Number of items.
    fn len(&self) -> usize;
    /// Item `i`.
    ///
    /// # Safety
    /// `i < self.len()`, and each `i` is taken at most once over the input's life.
    unsafe fn take(&self, i: usize) -> Self::Item;
    /// Drops the items in `untaken` (never taken), each exactly once; `on_panic(i, message)` for
    /// an item whose `Drop` panicked. Default: nothing to drop.
    ///
    /// # Safety
    /// Called at most once, after all takes, with ranges that were never taken.
    unsafe fn release(&self, _untaken: &[Range<usize>], _on_panic: &mut dyn FnMut(usize, String)) {}
}

/// A borrowed slice.
pub struct SliceInput<'a, T>(pub(crate) &'a [T]);

impl<'a, T: Sync> MapInput for SliceInput<'a, T> {
    type Item = &'a T;
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    unsafe fn take(&self, i: usize) -> &'a T {
        // SAFETY: the caller guarantees `i < len` (see `MapInput::take`).
        unsafe { self.0.get_unchecked(i) }
    }
}

/// An integer range.
pub struct RangeInput<T> {
    pub(crate) start: T,
    pub(crate) len: usize,
}

/// An owned vector whose items are moved out one by one.
pub struct VecInput<T> {
    ptr: *mut T,
    len: usize,
    cap: usize,
}

impl<T> VecInput<T> {
    pub(crate) fn new(v: Vec<T>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        VecInput {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }
}

// SAFETY: items are moved out to whichever thread takes them (so `T: Send`), and distinct
// threads take distinct indices (the `take` contract), so shared access never aliases an item.
unsafe impl<T: Send> Sync for VecInput<T> {}
// SAFETY: owning a buffer of `T: Send` values may move between threads.
unsafe impl<T: Send> Send for VecInput<T> {}

impl<T: Send> MapInput for VecInput<T> {
    type Item = T;
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    #[inline]
    unsafe fn take(&self, i: usize) -> T {
        // SAFETY: `i < len` and each index is read once (caller contract), so this moves a
        // live value out exactly once; `Drop` below never drops items again.
        unsafe { self.ptr.add(i).read() }
    }
    unsafe fn release(&self, untaken: &[Range<usize>], on_panic: &mut dyn FnMut(usize, String)) {
        for r in untaken {
            // SAFETY: these items were never taken (caller contract), lie within `len`, and are
            // dropped here once, one by one (a panicking `Drop` cannot stop the others).
            unsafe { crate::unwind::drop_each(self.ptr, r.clone(), on_panic) };
        }
    }
}

/// Two inputs walked in step (`Iterator::zip`): item `i` is `(a[i], b[i])`; the length is
/// the shorter one's.
pub struct ZipInput<A, B> {
    pub(crate) a: A,
    pub(crate) b: B,
}

impl<A: MapInput, B: MapInput> MapInput for ZipInput<A, B> {
    type Item = (A::Item, B::Item);
    #[inline]
    fn len(&self) -> usize {
        self.a.len().min(self.b.len())
    }
    #[inline]
    unsafe fn take(&self, i: usize) -> Self::Item {
        // SAFETY: `i < min(len a, len b)` and taken once (caller contract), which is the
        // contract of each side.
        unsafe { (self.a.take(i), self.b.take(i)) }
    }
    unsafe fn release(&self, untaken: &[Range<usize>], on_panic: &mut dyn FnMut(usize, String)) {
        let n = self.len();
        // The longer side's items past the shorter length were never taken either.
        let with_tail = |side_len: usize| {
            let mut ranges = untaken.to_vec();
            if side_len > n {
                ranges.push(n..side_len);
            }
            ranges
        };
        // SAFETY: forwarded contract: once, after all takes, and these ranges were taken
        // from neither side.
        unsafe {
            self.a.release(&with_tail(self.a.len()), on_panic);
            self.b.release(&with_tail(self.b.len()), on_panic);
        }
    }
}

impl<T> Drop for VecInput<T> {
    fn drop(&mut self) {
        // SAFETY: ptr/cap come from a Vec we own; length 0 frees the buffer without
        // dropping items (they were taken or released by the map).
        unsafe { drop(Vec::from_raw_parts(self.ptr, 0, self.cap)) };
    }
}

impl<'a, T: Sync> IntoMapInput for &'a [T] {
    type Item = &'a T;
    type Input = SliceInput<'a, T>;
    fn into_map_input(self) -> Self::Input {
        SliceInput(self)
    }
}

impl<'a, T: Sync> IntoMapInput for &'a Vec<T> {
    type Item = &'a T;
    type Input = SliceInput<'a, T>;
    fn into_map_input(self) -> Self::Input {
        SliceInput(self.as_slice())
    }
}

impl<'a, T: Sync, const N: usize> IntoMapInput for &'a [T; N] {
    type Item = &'a T;
    type Input = SliceInput<'a, T>;
    fn into_map_input(self) -> Self::Input {
        SliceInput(self.as_slice())
    }
}

impl<T: Send> IntoMapInput for Vec<T> {
    type Item = T;
    type Input = VecInput<T>;
    fn into_map_input(self) -> Self::Input {
        VecInput::new(self)
    }
}

/// Two inputs in step, like `Iterator::zip`: item `i` is `(a_i, b_i)`, and the map has as
/// many items as the shorter input.
///
/// # Examples
/// ```
/// let x = [1.0, 2.0, 3.0];
/// let y = vec![0.5, 0.5, 0.5];
/// assert_eq!(parview::par_map((&x, &y), |(a, b)| a * b), vec![0.5, 1.0, 1.5]);
/// ```
impl<A: IntoMapInput, B: IntoMapInput> IntoMapInput for (A, B) {
    type Item = (A::Item, B::Item);
    type Input = ZipInput<A::Input, B::Input>;
    fn into_map_input(self) -> Self::Input {
        ZipInput {
            a: self.0.into_map_input(),
            b: self.1.into_map_input(),
        }
    }
}

/// Inputs walked in step, three or four at a time: item `i` is `(a_i, b_i, c_i[, d_i])`; the
/// length is the shortest one's, and the longer inputs' extra items are dropped (owned ones)
/// like the items nobody took.
macro_rules! zip_n {
    ($name:ident; $($T:ident $f:ident $idx:tt),+) => {
        /// Inputs walked in step (see the tuple impls of [`IntoMapInput`]).
        pub struct $name<$($T),+> {
            $(pub(crate) $f: $T,)+
        }

        impl<$($T: MapInput),+> MapInput for $name<$($T),+> {
            type Item = ($($T::Item,)+);
            #[inline]
            fn len(&self) -> usize {
                let mut n = usize::MAX;
                $(n = n.min(self.$f.len());)+
                n
            }
            #[inline]
            unsafe fn take(&self, i: usize) -> Self::Item {
                // SAFETY: `i` is below the shortest length and taken once (caller contract),
                // which is each side's contract.
                unsafe { ($(self.$f.take(i),)+) }
            }
            unsafe fn release(
                &self,
                untaken: &[Range<usize>],
                on_panic: &mut dyn FnMut(usize, String),
            ) {
                let n = self.len();
                $(
                    let mut ranges = untaken.to_vec();
                    if self.$f.len() > n {
                        ranges.push(n..self.$f.len());
                    }
                    // SAFETY: forwarded contract: once, after all takes; these ranges were
                    // taken from no side (the tail past the shortest length never was).
                    unsafe { self.$f.release(&ranges, on_panic) };
                )+
            }
        }

        impl<$($T: IntoMapInput),+> IntoMapInput for ($($T,)+) {
            type Item = ($($T::Item,)+);
            type Input = $name<$($T::Input),+>;
            fn into_map_input(self) -> Self::Input {
                $name { $($f: self.$idx.into_map_input(),)+ }
            }
        }
    };
}

zip_n!(Zip3Input; A a 0, B b 1, C c 2);
zip_n!(Zip4Input; A a 0, B b 1, C c 2, D d 3);

/// An owned array: items are moved out, like an owned `Vec` (converted into one).
///
/// # Examples
/// ```
/// let words = [String::from("a"), String::from("b")];
/// assert_eq!(parview::par_map(words, |w| w + "!"), vec!["a!", "b!"]);
/// let (x, y, z) = ([1, 2, 3], vec![10, 20, 30], 0..3u32);
/// assert_eq!(parview::par_map((&x, &y, z), |(a, b, c)| a + b + c as i32), vec![11, 23, 35]);
/// ```
impl<T: Send, const N: usize> IntoMapInput for [T; N] {
    type Item = T;
    type Input = VecInput<T>;
    fn into_map_input(self) -> Self::Input {
        VecInput::new(Vec::from(self))
    }
}

macro_rules! range_input {
    ($($t:ty),*) => {$(
        impl MapInput for RangeInput<$t> {
            type Item = $t;
            #[inline]
            fn len(&self) -> usize {
                self.len
            }
            #[inline]
            unsafe fn take(&self, i: usize) -> $t {
                // Two's complement: correct for every index of the range, also for narrow signed types.
                self.start.wrapping_add(i as $t)
            }
        }
        impl IntoMapInput for Range<$t> {
            type Item = $t;
            type Input = RangeInput<$t>;
            fn into_map_input(self) -> Self::Input {
                let len = if self.end > self.start {
                    usize::try_from(self.end.abs_diff(self.start))
                        .expect("range too long for this platform's usize")
                } else {
                    0
                };
                RangeInput { start: self.start, len }
            }
        }
        impl IntoMapInput for std::ops::RangeInclusive<$t> {
            type Item = $t;
            type Input = RangeInput<$t>;
            fn into_map_input(self) -> Self::Input {
                let (start, end) = (*self.start(), *self.end());
                let len = if self.is_empty() {
                    0
                } else {
                    usize::try_from(end.abs_diff(start))
                        .ok()
                        .and_then(|d| d.checked_add(1))
                        .expect("range too long for this platform's usize")
                };
                RangeInput { start, len }
            }
        }
    )*};
}
range_input!(usize, u64, u32, u16, u8, isize, i64, i32, i16, i8);
