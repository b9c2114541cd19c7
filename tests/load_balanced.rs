//! LoadBalancedView streaming: `imap` yields results in input order as they finish,
//! `imap_unordered` yields fast items first, and both report panics per item, take empty input
//! and honour the view's schedule.

mod common;

use common::{SCHEDULES, pool, within};
use parview::ItemError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn imap_yields_in_input_order_while_items_finish_out_of_order() {
    within(60, || {
        let pool = Arc::new(pool(2));
        let seq = Arc::new(AtomicUsize::new(0));
        let finished_at: Arc<Vec<AtomicUsize>> =
            Arc::new((0..20).map(|_| AtomicUsize::new(0)).collect());
        let (s2, f2) = (seq.clone(), finished_at.clone());
        let it = pool
            .load_balanced()
            .imap((0..20u64).collect::<Vec<_>>(), move |i| {
                if i == 0 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                f2[i as usize].store(s2.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                i * 3
            });
        let got: Vec<u64> = it.map(|r| r.expect("no item panicked")).collect();
        assert_eq!(got, (0..20u64).map(|i| i * 3).collect::<Vec<_>>());
        assert!(
            finished_at[0].load(Ordering::SeqCst) > 0,
            "item 0 was expected to finish after some later item (the test needs out-of-order completion)"
        );
    });
}

#[test]
fn imap_unordered_yields_fast_items_first() {
    within(60, || {
        let pool = pool(2);
        let it = pool
            .load_balanced()
            .imap_unordered((0..20u64).collect::<Vec<_>>(), |i| {
                if i == 0 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                i + 1
            });
        let got: Vec<(usize, u64)> = it.map(|(i, r)| (i, r.unwrap())).collect();
        assert_eq!(got.len(), 20);
        let first: Vec<usize> = got.iter().take(5).map(|(i, _)| *i).collect();
        assert!(
            !first.contains(&0),
            "the slow item 0 was among the first yielded: {first:?}"
        );
        let mut idx: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        idx.sort();
        assert_eq!(idx, (0..20).collect::<Vec<_>>(), "each index exactly once");
        assert!(got.iter().all(|&(i, v)| v == i as u64 + 1));
    });
}

#[test]
fn imap_reports_panics_per_item_and_empty_input() {
    within(60, || {
        let pool = pool(3);
        let v: Vec<Result<u32, ItemError>> = pool
            .load_balanced()
            .imap(vec![1u32, 0, 4, 0], |x| 8 / x)
            .collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], Ok(8));
        assert_eq!(v[1].as_ref().unwrap_err().index, 1);
        assert_eq!(v[2], Ok(2));
        assert_eq!(v[3].as_ref().unwrap_err().index, 3);
        let mut u: Vec<(usize, bool)> = pool
            .load_balanced()
            .imap_unordered(vec![1u32, 0, 4, 0], |x| 8 / x)
            .map(|(i, r)| (i, r.is_ok()))
            .collect();
        u.sort();
        assert_eq!(u, vec![(0, true), (1, false), (2, true), (3, false)]);
        assert_eq!(
            pool.load_balanced().imap(Vec::<u8>::new(), |x| x).count(),
            0
        );
        assert_eq!(
            pool.load_balanced()
                .imap_unordered(Vec::<u8>::new(), |x| x)
                .count(),
            0
        );
        // Other schedules are honoured and still ordered.
        for &s in &SCHEDULES {
            let v: Vec<u64> = pool
                .load_balanced()
                .schedule(s)
                .imap(0..300u64, |i| i * i)
                .map(Result::unwrap)
                .collect();
            assert_eq!(v, (0..300u64).map(|i| i * i).collect::<Vec<_>>(), "{s:?}");
        }
    });
}
