//! Bulkhead's core: everything the partitioner decides, as pure `no_std`
//! code that builds and is unit-tested on the host. The firmware
//! (`partitioner/firmware`) only carries these decisions out.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod board;
pub mod dtb;
pub mod plan;
pub mod pagetable;
pub mod stage2;
pub mod package;
pub mod trap;
pub mod vconsole;
pub mod sysregs;
pub mod config;
pub mod error;
pub mod fdt_check;
pub mod validate;
