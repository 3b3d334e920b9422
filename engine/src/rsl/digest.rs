//! The executed-batch digest chain: a 64-bit name for a replica's history of executed
//! batches. Two replicas at the same operation with the same digest executed the same
//! batches (barring a 2^-64 accident), so a snapshot is named by it and the agreement
//! checker compares it.
//!
//! It is not a defence against anyone (`docs/security.md`): datagrams are trusted on the
//! strength of their MAC, and a member that lies can send wrong bytes under a correct name
//! whatever the hash. So it only needs to tell honest histories apart, and it is a fold of
//! 128-bit products in two independent lanes, sixteen bytes each (a few cycles for
//! thirty-two bytes), where SipHash-2-4 took ten percent of the engine bench hashing each
//! batch on every replica.

/// The digest of a replica that has executed nothing.
pub const INITIAL_EXECUTED_DIGEST: u64 = 0xcbf2_9ce4_8422_2325;

/// Odd constants with well-spread bits (from splitmix64), public: not a secret.
const SPREAD: [u64; 3] = [0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9, 0x94d0_49bb_1331_11eb];

/// Multiplies `a` by `b` into 128 bits and folds the halves together: every bit of the
/// result depends on every bit of both inputs.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Eight little-endian bytes (`bytes` holds exactly eight).
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// Folds thirty-two bytes into the two lanes: each lane takes sixteen, so their products
/// do not wait on each other.
fn fold_lanes((state, other): (u64, u64), bytes: &[u8; 32]) -> (u64, u64) {
    (
        fold(word(&bytes[..8]) ^ SPREAD[1], word(&bytes[8..16]) ^ state),
        fold(word(&bytes[16..24]) ^ SPREAD[2], word(&bytes[24..]) ^ other),
    )
}

/// The digest after executing `batch` as operation `opn` on a history whose digest is
/// `prev`. The batch is folded into two lanes thirty-two bytes at a time, its tail
/// zero-padded, then the lanes and the length are folded together (so batches that differ
/// only by trailing zeros differ).
pub fn chain_digest(prev: u64, opn: u64, batch: &[u8]) -> u64 {
    let mut lanes = (fold(prev ^ SPREAD[0], opn ^ SPREAD[1]), fold(opn ^ SPREAD[2], prev ^ SPREAD[1]));
    let (blocks, rest) = batch.as_chunks::<32>();
    for block in blocks {
        lanes = fold_lanes(lanes, block);
    }
    let mut tail = [0u8; 32];
    for (t, b) in tail.iter_mut().zip(rest) {
        *t = *b;
    }
    let (state, other) = fold_lanes(lanes, &tail);
    let state = fold(state ^ SPREAD[2], other ^ SPREAD[0]);
    fold(state ^ SPREAD[2], batch.len() as u64 ^ SPREAD[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_bit_changes_the_digest() {
        let batch: [u8; 37] = core::array::from_fn(|i| i as u8);
        let base = chain_digest(INITIAL_EXECUTED_DIGEST, 7, &batch);
        for bit in 0..batch.len() * 8 {
            let mut flipped = batch;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let d = chain_digest(INITIAL_EXECUTED_DIGEST, 7, &flipped);
            assert_ne!(d, base, "batch bit {bit}");
            // Avalanche: a one-bit change moves about half of the digest's bits.
            let moved = (d ^ base).count_ones();
            assert!((12..=52).contains(&moved), "batch bit {bit} moved {moved} bits");
        }
        for bit in 0..64 {
            assert_ne!(chain_digest(INITIAL_EXECUTED_DIGEST ^ 1 << bit, 7, &batch), base, "prev bit {bit}");
            assert_ne!(chain_digest(INITIAL_EXECUTED_DIGEST, 7 ^ 1 << bit, &batch), base, "opn bit {bit}");
        }
    }

    #[test]
    fn trailing_zeros_and_the_order_of_batches_matter() {
        let zeros = [0u8; 40];
        let mut seen = [0u64; 41];
        for (len, d) in seen.iter_mut().enumerate() {
            *d = chain_digest(INITIAL_EXECUTED_DIGEST, 0, &zeros[..len]);
        }
        for i in 0..seen.len() {
            for j in 0..i {
                assert_ne!(seen[i], seen[j], "{i} and {j} zero bytes");
            }
        }
        let (a, b) = (b"first batch".as_slice(), b"second batch".as_slice());
        let ab = chain_digest(chain_digest(INITIAL_EXECUTED_DIGEST, 0, a), 1, b);
        let ba = chain_digest(chain_digest(INITIAL_EXECUTED_DIGEST, 0, b), 1, a);
        assert_ne!(ab, ba);
    }
}
