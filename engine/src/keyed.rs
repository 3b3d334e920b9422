//! Searching a sorted array by a `u64` key first: the replicated map's key prefixes and
//! the reply cache's client keys. The keys sit eight bytes apart, in their own array, and
//! the search over them does not branch on the data; whole values are compared only where
//! keys tie (values whose keys differ are in their keys' order).

use core::cmp::Ordering;

/// Where the value with key `key` is (`Ok`) or would be inserted (`Err`) in an array
/// sorted by value, whose keys `keys` are in the same order. `order(i)` compares element
/// `i` with the value sought; it is asked only about elements whose key is `key`.
pub(crate) fn search(keys: &[u64], key: u64, mut order: impl FnMut(usize) -> Ordering) -> Result<usize, usize> {
    let start = keys.partition_point(|&k| k < key);
    // Usually no other element, or one, has this key: look before searching for the end.
    let ties = match keys[start..] {
        [] => 0,
        [first, ..] if first != key => 0,
        [_] => 1,
        [_, second, ..] if second != key => 1,
        _ => keys[start..].partition_point(|&k| k == key),
    };
    let (mut lo, mut hi) = (start, start + ties);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match order(mid) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::TestRng;

    #[test]
    fn the_search_agrees_with_a_binary_search_of_the_values() {
        let mut rng = TestRng(0x005e_ed0f_ca11_ab1e);
        for _ in 0..5_000 {
            // Values 0..40 sorted and distinct; a value's key is value / 4, so ties of up
            // to four values occur, and none.
            let mut values = [0u64; 40];
            let mut n = 0;
            for v in 0..40 {
                if rng.below(3) == 0 {
                    values[n] = v;
                    n += 1;
                }
            }
            let values = &values[..n];
            let mut keys = [0u64; 40];
            for (k, v) in keys.iter_mut().zip(values) {
                *k = v / 4;
            }
            let keys = &keys[..n];
            for sought in 0..41 {
                let got = search(keys, sought / 4, |i| values[i].cmp(&sought));
                assert_eq!(got, values.binary_search(&sought), "{values:?} {sought}");
            }
        }
    }
}
