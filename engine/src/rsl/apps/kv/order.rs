//! The order of the map's keys: byte strings, compared eight bytes at a time. Shared with
//! io-std's map, whose snapshot bytes must be the same.

/// The byte strings' lexicographic order (`a.cmp(b)`, the snapshot's key order), compared
/// eight bytes at a time as big-endian numbers, then byte by byte: a slice comparison calls
/// `memcmp`, whose call costs more than the comparison for short keys (it was a tenth of the
/// engine bench).
#[inline]
pub fn key_order(a: &[u8], b: &[u8]) -> core::cmp::Ordering {
    if a.len() <= 8 && b.len() <= 8 {
        return key_order_with_words(short_word(a), a, short_word(b), b);
    }
    long_key_order(a, b)
}

/// [`key_order`] for keys whose [`short_word`]s the caller keeps: unequal words decide;
/// equal words of two keys of at most eight bytes mean one is the other padded with zeros,
/// and the shorter goes first, decided without reading either key (the std servers' map
/// keeps each word beside a pointer to the bytes, and follows it only here on longer keys).
#[inline]
pub fn key_order_with_words(a_word: u64, a: &[u8], b_word: u64, b: &[u8]) -> core::cmp::Ordering {
    match a_word.cmp(&b_word) {
        core::cmp::Ordering::Equal if a.len() <= 8 && b.len() <= 8 => a.len().cmp(&b.len()),
        core::cmp::Ordering::Equal => long_key_order(a, b),
        unequal => unequal,
    }
}

/// The byte strings' order, eight bytes at a time, then byte by byte, then by length.
fn long_key_order(a: &[u8], b: &[u8]) -> core::cmp::Ordering {
    let common = a.len().min(b.len());
    let (mut x, mut y) = (&a[..common], &b[..common]);
    while let (Some((x_word, x_rest)), Some((y_word, y_rest))) = (x.split_first_chunk(), y.split_first_chunk()) {
        let order = u64::from_be_bytes(*x_word).cmp(&u64::from_be_bytes(*y_word));
        if order.is_ne() {
            return order;
        }
        (x, y) = (x_rest, y_rest);
    }
    for (p, q) in x.iter().zip(y) {
        if p != q {
            return p.cmp(q);
        }
    }
    a.len().cmp(&b.len())
}

/// A key's first eight bytes as a big-endian number, zero-padded on the right: keys whose
/// words differ are in the order of their words ([`key_order`] decides the rest).
#[inline]
pub fn short_word(bytes: &[u8]) -> u64 {
    let mut word = 0u64;
    for (i, &b) in bytes.iter().take(8).enumerate() {
        word |= u64::from(b) << (56 - 8 * i);
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_byte_strings() {
        let mut rng = crate::test_rng::TestRng(0x9e37_79b9_7f4a_7c15);
        let mut bytes = [[0u8; 20]; 2];
        for _ in 0..100_000 {
            // A small alphabet and a shared prefix, so that equal words and prefixes occur.
            let shared = rng.below(21) as usize;
            for key in bytes.iter_mut() {
                key.iter_mut().for_each(|b| *b = [0, 1, 0x80, 0xff][rng.below(4) as usize]);
            }
            let (first, second) = bytes.split_at_mut(1);
            second[0][..shared].copy_from_slice(&first[0][..shared]);
            let a = &bytes[0][..rng.below(21) as usize];
            let b = &bytes[1][..rng.below(21) as usize];
            assert_eq!(key_order(a, b), a.cmp(b), "{a:?} {b:?}");
            let by_words = key_order_with_words(short_word(a), a, short_word(b), b);
            assert_eq!(by_words, a.cmp(b), "words first: {a:?} {b:?}");
        }
    }
}
