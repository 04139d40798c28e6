//! The PCI Express host bridge at boot: enumerate the root bus through the
//! ECAM window, switch off every function no domain owns, place the BARs of
//! the functions domains own (`bulkhead_core::pci` decides where), and
//! report the DMA faults the IOMMU catches. The functions' DMA reaches
//! memory only through their domain's stage-2 tables (`crate::iommu`).

use bulkhead_core::board::Board;
use bulkhead_core::pci::{self, cfg, Bar, Bdf, WindowAllocator};
use bulkhead_core::plan::{MemKind, Plan};
use log::{error, info, warn};

/// Configuration space of function `bdf` (ECAM: 4 KiB each).
struct Function {
    base: usize,
}

impl Function {
    fn at(board: &Board, bdf: Bdf) -> Option<Self> {
        let host = board.pcie?;
        Some(Self {
            base: (host.ecam.base + bdf.ecam_offset()) as usize,
        })
    }
    fn rd32(&self, off: usize) -> u32 {
        // SAFETY: `base + off` lies in the host bridge's ECAM window for bus
        // 0, mapped as device memory at EL2 and kept by the partitioner; a
        // read of an absent function returns all ones.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }
    fn wr32(&self, off: usize, v: u32) {
        // SAFETY: as for `rd32`; writes to an absent function are ignored.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }
    fn rd16(&self, off: usize) -> u16 {
        (self.rd32(off & !3) >> ((off & 2) * 8)) as u16
    }
    fn rd8(&self, off: usize) -> u8 {
        (self.rd32(off & !3) >> ((off & 3) * 8)) as u8
    }
    /// Write the command register (the status half gets zeros, which
    /// leave its write-one-to-clear bits alone).
    fn set_command(&self, v: u16) {
        self.wr32(cfg::COMMAND, v as u32);
    }
    fn present(&self) -> bool {
        self.rd16(cfg::VENDOR_DEVICE) != 0xffff
    }
}

/// Enumerate the root bus, turn off what no domain owns, place the BARs of
/// what domains own and fill in their mappings and compatibles in `plan`.
/// Every problem is reported; `Err` if any (nothing may start then).
pub fn setup(board: &Board, plan: &mut Plan) -> Result<(), ()> {
    let Some(host) = board.pcie else {
        return Ok(());
    };
    let owned = |bdf: Bdf| {
        plan.domains
            .iter()
            .any(|d| d.devices.iter().any(|x| x.pci == Some(bdf)))
    };
    // Every function off first: no decoding, no bus mastering, no INTx.
    let mut present = 0;
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let bdf = Bdf::new(0, dev, func);
            let Some(f) = Function::at(board, bdf) else {
                continue;
            };
            if !f.present() {
                if func == 0 {
                    break;
                }
                continue;
            }
            present += 1;
            let class = f.rd32(cfg::CLASS_REV) >> 8;
            // The host bridge itself (class 06 00) stays as it is.
            if class >> 8 != 0x0600 {
                f.set_command(cfg::CMD_INTX_DISABLE);
                if !owned(bdf) {
                    info!(
                        "PCI {bdf}: {:04x}:{:04x} belongs to no domain: switched off",
                        f.rd16(0),
                        f.rd16(2)
                    );
                }
            }
            if func == 0 && f.rd8(cfg::HEADER_TYPE) & 0x80 == 0 {
                break; // not a multi-function device
            }
        }
    }
    let mut window = WindowAllocator::new(host.mmio32);
    let mut failed = false;
    for d in plan.domains.iter_mut() {
        for dev in d.devices.iter_mut() {
            let Some(bdf) = dev.pci else { continue };
            let Some(f) = Function::at(board, bdf).filter(Function::present) else {
                error!(
                    "config: domain \"{}\": device \"{}\": PCI function {bdf} is not on the bus ({present} function(s) found)",
                    d.name, dev.name
                );
                failed = true;
                continue;
            };
            if f.rd8(cfg::HEADER_TYPE) & 0x7f != 0 {
                error!(
                    "config: domain \"{}\": device \"{}\": PCI function {bdf} is a bridge: only endpoints can be given",
                    d.name, dev.name
                );
                failed = true;
                continue;
            }
            // Its legacy interrupt: the check assumed INTA.
            let pin = f.rd8(cfg::INTERRUPT_PIN);
            if pin == 0 {
                dev.spis.clear();
            } else if pin != 1 {
                let spi = host.intx_spis[pci::intx_index(bdf.device, pin)];
                error!(
                    "config: domain \"{}\": device \"{}\": PCI function {bdf} uses INT{} (SPI {spi}), not INTA as the configuration check assumed: give its device whole to one domain",
                    d.name, dev.name, (b'A' + pin - 1) as char
                );
                failed = true;
                continue;
            }
            // Size the BARs with decoding off.
            let mut bars: heapless::Vec<(usize, u64, bool), 6> = heapless::Vec::new();
            let mut i = 0;
            while i < 6 {
                let off = cfg::BAR0 + 4 * i;
                let old = f.rd32(off);
                f.wr32(off, 0xffff_ffff);
                let low = f.rd32(off);
                let is64 = low & 1 == 0 && (low >> 1) & 3 == 2;
                let high = if is64 && i < 5 {
                    let old_hi = f.rd32(off + 4);
                    f.wr32(off + 4, 0xffff_ffff);
                    let h = f.rd32(off + 4);
                    f.wr32(off + 4, old_hi);
                    h
                } else {
                    0
                };
                f.wr32(off, old);
                match pci::decode_bar(low, high) {
                    Bar::Memory { size, is64, .. } => {
                        let _ = bars.push((i, size, is64));
                    }
                    Bar::Io { .. } => warn!(
                        "domain \"{}\": PCI {bdf}: BAR{i} is I/O space, which Bulkhead does not place",
                        d.name
                    ),
                    Bar::None => {}
                }
                i += if is64 { 2 } else { 1 };
            }
            // One naturally aligned block per function, largest BAR first:
            // every BAR stays aligned to its size and nothing is left
            // between them.
            bars.sort_unstable_by_key(|b| core::cmp::Reverse(b.1));
            let total: u64 = bars.iter().map(|b| b.1.max(pci::BAR_ALIGN)).sum();
            let Some(block) = (total > 0)
                .then(|| window.take(total.next_power_of_two()))
                .flatten()
            else {
                if total > 0 {
                    error!(
                        "config: domain \"{}\": device \"{}\": PCI function {bdf}'s BARs ({total:#x} bytes) do not fit in the host's memory window",
                        d.name, dev.name
                    );
                    failed = true;
                }
                continue;
            };
            let mut at = block;
            for &(i, size, is64) in bars.iter() {
                let off = cfg::BAR0 + 4 * i;
                f.wr32(off, at as u32);
                if is64 {
                    f.wr32(off + 4, (at >> 32) as u32);
                }
                info!(
                    "domain \"{}\": PCI {bdf} BAR{i}: {size:#x} bytes at {at:#x}",
                    d.name
                );
                at += size.max(pci::BAR_ALIGN);
            }
            dev.mapping = bulkhead_core::plan::Mapping {
                ipa: block,
                pa: block,
                size: total,
                kind: MemKind::Device,
            };
            let ids = f.rd32(cfg::VENDOR_DEVICE);
            dev.compatible.clear();
            let _ = core::fmt::write(
                &mut dev.compatible,
                format_args!("pci{:04x},{:04x}", ids & 0xffff, ids >> 16),
            );
            // Decode its BARs and master the bus (through the IOMMU, which
            // aborts it until its domain's tables are attached).
            f.set_command(cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER);
        }
    }
    if failed {
        Err(())
    } else {
        Ok(())
    }
}

/// Attach each owned function's stream to its domain's stage-2 tables
/// (called once they exist, before any domain starts).
pub fn attach_all(plan: &Plan, roots: impl Fn(usize) -> u64) {
    for (i, d) in plan.domains.iter().enumerate() {
        for dev in d.devices.iter() {
            if let Some(bdf) = dev.pci {
                crate::iommu::attach(bdf.rid(), d.vmid, roots(i), dev.dma_unprotected);
            }
        }
    }
}

/// DMA faults the IOMMU reported (one transfer's): which domain's device,
/// where, which way.
pub fn report_dma_fault(run: &bulkhead_core::smmuv3::FaultRun) {
    let e = &run.first;
    let size = (run.end - e.addr).next_multiple_of(4);
    let plan = crate::domain::plan();
    let owner = plan.domains.iter().enumerate().find_map(|(di, d)| {
        d.devices
            .iter()
            .find(|x| x.pci.is_some_and(|b| b.rid() as u32 == e.stream))
            .map(|x| (di, d, x))
    });
    let bdf = Bdf::new(
        (e.stream >> 8) as u8,
        ((e.stream >> 3) & 0x1f) as u8,
        (e.stream & 7) as u8,
    );
    match owner {
        Some((di, d, x)) => crate::report::limited!(
            di,
            d,
            bulkhead_core::ratelimit::Kind::Fault,
            warn!(
                "domain \"{}\" device \"{}\" (PCI {bdf}): DMA {} of guest addresses {:#x}..{:#x} outside the domain: {} ({} fault(s)) -> aborted",
                d.name,
                x.name,
                if e.read { "read" } else { "write" },
                e.addr,
                e.addr + size,
                e.kind_name(),
                run.count
            )
        ),
        None => warn!(
            "PCI {bdf} (no domain's): DMA {} of {:#x}..{:#x}: {} ({} fault(s)) -> aborted",
            if e.read { "read" } else { "write" },
            e.addr,
            e.addr + size,
            e.kind_name(),
            run.count
        ),
    }
}

/// Domain `d` stops (`stop`) or restarts: before its memory is reused, its
/// functions stop decoding and mastering the bus, and the IOMMU forgets
/// its cached translations; on a stop their streams abort for good.
pub fn quiesce(d: &bulkhead_core::plan::DomainPlan, stop: bool) {
    let board = crate::board();
    let mut sids: heapless::Vec<u16, { bulkhead_core::plan::MAX_DEVICES }> = heapless::Vec::new();
    for bdf in d.devices.iter().filter_map(|x| x.pci) {
        if let Some(f) = Function::at(board, bdf) {
            f.set_command(cfg::CMD_INTX_DISABLE);
        }
        let _ = sids.push(bdf.rid());
    }
    if sids.is_empty() {
        return;
    }
    if stop {
        crate::iommu::detach_domain(&sids, d.vmid);
    } else {
        crate::iommu::detach_domain(&[], d.vmid);
    }
}

/// A (re)loaded domain is about to start: its functions decode their BARs
/// and master the bus again (through its stage-2 tables).
pub fn enable(d: &bulkhead_core::plan::DomainPlan) {
    let board = crate::board();
    for bdf in d.devices.iter().filter_map(|x| x.pci) {
        if let Some(f) = Function::at(board, bdf) {
            f.set_command(cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER);
        }
    }
}
