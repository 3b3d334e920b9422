//! A xorshift64 generator for the engine's unit tests: deterministic inputs without a
//! dependency.

/// A xorshift64 generator: deterministic test inputs without a dependency.
pub(crate) struct TestRng(pub(crate) u64);

impl TestRng {
    /// The next number.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
