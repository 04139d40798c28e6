//! Bulkhead's core: everything the partitioner decides, as pure `no_std`
//! code that builds and is unit-tested on the host. The firmware
//! (`partitioner/firmware`) only carries these decisions out.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

pub mod board;
pub mod config;
pub mod dtb;
pub mod dtb_check;
pub mod entropy;
pub mod error;
pub mod exits;
pub mod fdt_check;
pub mod gicv2;
pub mod lifecycle;
pub mod package;
pub mod pagetable;
pub mod pci;
pub mod plan;
pub mod psci;
pub mod ratelimit;
pub mod smmuv3;
pub mod speculation;
pub mod stage2;
pub mod sysregs;
pub mod ticket;
pub mod trap;
pub mod validate;
pub mod vconsole;
pub mod vgic;
pub mod vsgi;
