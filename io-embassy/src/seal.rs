//! A client's seal: its guard and a buffer to seal into (a node seals in its receive
//! buffer instead, see [`crate::node`]).

use fleet_engine::auth::Guard;
use fleet_engine::Endpoint;

/// A guard and `D` bytes to seal one datagram into.
pub struct Seal<const D: usize> {
    guard: Guard<'static>,
    tx: [u8; D],
}

impl<const D: usize> Seal<D> {
    /// Seals with `guard`.
    pub fn new(guard: Guard<'static>) -> Self {
        Seal { guard, tx: [0; D] }
    }

    /// What the guard counted.
    pub fn stats(&self) -> fleet_engine::auth::AuthStats {
        self.guard.stats()
    }
}

/// `bytes` as they go on the wire to `dst`: sealed if there is a seal; `None` if they do
/// not fit `D` once sealed (a lost datagram).
pub(crate) fn wire<'a, const D: usize>(
    seal: &'a mut Option<Seal<D>>,
    dst: Endpoint,
    bytes: &'a [u8],
) -> Option<&'a [u8]> {
    match seal {
        None => Some(bytes),
        Some(s) => s.guard.seal(dst, bytes, &mut s.tx).ok().map(|n| &s.tx[..n]),
    }
}

/// The inner datagram of `datagram` from `from`, or `None` if the seal refuses it.
pub(crate) fn open<'d, const D: usize>(
    seal: &mut Option<Seal<D>>,
    from: Endpoint,
    datagram: &'d [u8],
) -> Option<&'d [u8]> {
    match seal {
        None => Some(datagram),
        Some(s) => s.guard.open(from, datagram).ok(),
    }
}
