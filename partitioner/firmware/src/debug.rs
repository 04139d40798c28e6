//! What `{:?}` printed in the partitioner's few messages that used it,
//! written out by hand, byte for byte the same: the derived and built-in
//! `Debug` impls pull in the formatter's struct, tuple and list builders
//! (and their pretty-printing adapter), over 1 KB for a handful of fatal
//! lines.

use bulkhead_core::dtb::DtbError;
use bulkhead_core::pagetable::MapError;
use core::fmt::{self, Display, Formatter};

/// `{:?}` of a [`MapError`] (as `#[derive(Debug)]` writes it).
pub struct MapErr(pub MapError);

impl Display for MapErr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            MapError::Unaligned => f.write_str("Unaligned"),
            MapError::OutOfRange => f.write_str("OutOfRange"),
            MapError::AlreadyMapped { input } => write!(f, "AlreadyMapped {{ input: {input} }}"),
            MapError::OutOfFrames => f.write_str("OutOfFrames"),
        }
    }
}

/// `{:?}` of an `Option<DtbError>` (as `#[derive(Debug)]` writes it).
pub struct DtbErr(pub Option<DtbError>);

impl Display for DtbErr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            None => return f.write_str("None"),
            Some(DtbError::BufferTooSmall) => "BufferTooSmall",
            Some(DtbError::BadStructure) => "BadStructure",
            Some(DtbError::InvalidString) => "InvalidString",
        };
        write!(f, "Some({name})")
    }
}

/// `{:?}` of an `Option<u64>`.
pub struct OptU64(pub Option<u64>);

impl Display for OptU64 {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(v) => write!(f, "Some({v})"),
        }
    }
}

/// `{:?}` of a `[u64]`: `[1, 2]`.
pub struct List<'a>(pub &'a [u64]);

impl Display for List<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        let mut sep = "";
        for v in self.0 {
            write!(f, "{sep}{v}")?;
            sep = ", ";
        }
        f.write_str("]")
    }
}

/// `{}` of an `i64` (no width or flags): the sign, then the magnitude as a
/// `u64`, the same digits without linking `i64`'s own `Display`.
pub struct I64(pub i64);

impl Display for I64 {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        Display::fmt(&self.0.unsigned_abs(), f)
    }
}
