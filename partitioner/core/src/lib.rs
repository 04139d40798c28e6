//! Bulkhead's core: everything the partitioner decides, as pure `no_std`
//! code that builds and is unit-tested on the host. The firmware
//! (`partitioner/firmware`) only carries these decisions out.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod board;
pub mod plan;
