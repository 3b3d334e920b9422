//! Logging shim: `defmt` with the `defmt` feature, else nothing (arguments still type-check).

#[cfg(feature = "defmt")]
macro_rules! debug {
    ($($arg:tt)*) => { defmt::debug!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

pub(crate) use debug;

#[cfg(feature = "defmt")]
macro_rules! error {
    ($($arg:tt)*) => { defmt::error!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! error {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

pub(crate) use error;
