//! The PCI Express host bridge at boot: enumerate the root bus through the
//! ECAM window, switch off every function no domain owns, place the BARs of
//! the functions domains own (`bulkhead_core::pci` decides where), and
//! report the DMA faults the IOMMU catches. The functions' DMA reaches
//! memory only through their domain's stage-2 tables (`crate::iommu`).

use bulkhead_core::board::Board;
use bulkhead_core::pci::{
    self, cfg, Bar, Bdf, Decision, FixedProblem, LayoutError, Slot, VBar, VFunction, VirtualEcam,
};
use bulkhead_core::plan::MAX_DOMAINS;
use bulkhead_core::plan::{MemKind, Plan};
use log::{error, info, warn};
use spin::Mutex;

/// Configuration space of function `bdf` (ECAM: 4 KiB each).
#[derive(Clone, Copy)]
struct Function {
    base: usize,
}

impl pci::ConfigSpace for Function {
    fn read(&mut self, offset: usize, size: u8) -> u32 {
        self.read_sized(offset, size)
    }
    fn write(&mut self, offset: usize, size: u8, value: u32) {
        self.write_sized(offset, size, value)
    }
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
    /// A read of `size` bytes (1, 2 or 4; ECAM takes each width) at `off`,
    /// a multiple of `size`: EL2 maps ECAM as Device memory, where a
    /// misaligned access is an alignment fault of the partitioner's own.
    fn read_sized(&self, off: usize, size: u8) -> u32 {
        let at = self.base + off;
        // `off` lies in the function's 4 KiB and is a multiple of `size`,
        // and so is `at` (`base` is 4 KiB aligned). Its callers hold to
        // that: the guest's accesses come through
        // `emulate_config` only after `domain::handle_sync` has refused
        // every misaligned one (`bulkhead_core::trap::Access::misaligned`),
        // and `VirtualEcam` forwards no misaligned offset either; the
        // partitioner's own accesses (`pci::dma_path`, through
        // `ConfigSpace`) are at dword-aligned capability offsets (pointers
        // masked with 0xfc) plus register offsets aligned to their width.
        // SAFETY: as for `rd32`, at an address aligned to `size` (above).
        unsafe {
            match size {
                1 => core::ptr::read_volatile(at as *const u8) as u32,
                2 => core::ptr::read_volatile(at as *const u16) as u32,
                _ => core::ptr::read_volatile(at as *const u32),
            }
        }
    }
    /// A write of `size` bytes at `off`, a multiple of `size` (as for
    /// [`Self::read_sized`]).
    fn write_sized(&self, off: usize, size: u8, v: u32) {
        let at = self.base + off;
        // SAFETY: as for `read_sized`: `off` in the function's 4 KiB and a
        // multiple of `size`.
        unsafe {
            match size {
                1 => core::ptr::write_volatile(at as *mut u8, v as u8),
                2 => core::ptr::write_volatile(at as *mut u16, v as u16),
                _ => core::ptr::write_volatile(at as *mut u32, v),
            }
        }
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
    /// Its PCI Express capability, if it has one.
    fn pcie_capability(&self) -> Option<usize> {
        if self.rd16(0x06) & cfg::STATUS_CAP_LIST == 0 {
            return None;
        }
        pci::find_capability(|off| self.rd8(off), cfg::CAP_ID_EXP)
    }
    /// A Function Level Reset, if the function advertises one: initiated,
    /// then the 100 ms the specification gives the function to come back
    /// waited out on the generic timer, and its command register left with
    /// everything off. Returns the milliseconds waited; `None` (nothing
    /// done) without FLR.
    fn flr(&self) -> Option<u64> {
        let cap = self.pcie_capability()?;
        if self.rd32(cap + cfg::EXP_DEVCAP) & cfg::DEVCAP_FLR == 0 {
            return None;
        }
        // Device Control is the low half of its dword; the high half,
        // Device Status, has write-one-to-clear bits: written as zeros.
        let ctl = self.rd16(cap + cfg::EXP_DEVCTL);
        self.wr32(cap + cfg::EXP_DEVCTL, (ctl | cfg::DEVCTL_FLR) as u32);
        crate::domain::spin_ms(cfg::FLR_WAIT_MS);
        self.set_command(cfg::CMD_INTX_DISABLE);
        Some(cfg::FLR_WAIT_MS)
    }
}

/// Each domain's view of the root bus (its own functions, its BARs as
/// placed), filled in by [`setup`].
static VECAMS: [Mutex<VirtualEcam>; MAX_DOMAINS] = [const {
    Mutex::new(VirtualEcam {
        functions: heapless::Vec::new(),
    })
}; MAX_DOMAINS];

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
    let mut present = 0u32;
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
                        u32::from(f.rd16(0)),
                        u32::from(f.rd16(2))
                    );
                }
            }
            if func == 0 && f.rd8(cfg::HEADER_TYPE) & 0x80 == 0 {
                break; // not a multi-function device
            }
        }
    }
    // Every owned function: checked and its BARs sized (decoding off).
    struct Owned {
        domain: usize,
        device: usize,
        bdf: Bdf,
        slots: [Slot; 6],
    }
    let mut funcs: heapless::Vec<Owned, { pci::MAX_FUNCTIONS }> = heapless::Vec::new();
    let mut failed = false;
    for (di, d) in plan.domains.iter_mut().enumerate() {
        for (xi, dev) in d.devices.iter_mut().enumerate() {
            let Some(bdf) = dev.pci else { continue };
            let Some(f) = Function::at(board, bdf).filter(Function::present) else {
                error!(
                    "config: domain \"{}\": device \"{}\": PCI function {bdf} is not on the bus ({} function(s) found)",
                    d.name,
                    dev.name,
                    u64::from(present)
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
            // The board's IOMMU confines DMA only if the function's DMA
            // goes through it at all (QEMU's virtio-pci bypasses it unless
            // told otherwise).
            if let pci::DmaPath::Bypasses(why) = pci::dma_path(&mut { f }) {
                if !dev.dma_unprotected {
                    error!(
                        "config: domain \"{}\": device \"{}\": PCI function {bdf} is {why}, so its DMA would reach any memory, not only its domain's (QEMU: give the device iommu_platform=on,disable-legacy=on; or accept the risk with dma = \"unprotected\")",
                        d.name, dev.name
                    );
                    failed = true;
                    continue;
                }
                warn!(
                    "domain \"{}\": PCI {bdf} is {why}: its DMA is not confined (accepted by dma = \"unprotected\")",
                    d.name
                );
            }
            // Its legacy interrupt: the check assumed INTA.
            let pin = f.rd8(cfg::INTERRUPT_PIN);
            if pin == 0 {
                dev.spis.clear();
            } else if pin != 1 {
                let spi = host.intx_spis[pci::intx_index(bdf.device, pin)];
                // The letter as a `str` (a `char` argument would link the
                // formatter's `char` printing for this one line).
                let mut utf8 = [0; 4];
                let letter = char::from(b'A' + pin - 1).encode_utf8(&mut utf8);
                error!(
                    "config: domain \"{}\": device \"{}\": PCI function {bdf} uses INT{} (SPI {}), not INTA as the configuration check assumed: give its device whole to one domain",
                    d.name,
                    dev.name,
                    letter,
                    u64::from(spi)
                );
                failed = true;
                continue;
            }
            let _ = funcs.push(Owned {
                domain: di,
                device: xi,
                bdf,
                slots: size_bars(&f, &d.name, bdf),
            });
        }
    }
    // Where their BARs go: where the config fixed them, the others around.
    let placed = {
        let input: heapless::Vec<([Slot; 6], &[pci::FixedBar]), { pci::MAX_FUNCTIONS }> = funcs
            .iter()
            .map(|o| {
                (
                    o.slots,
                    plan.domains[o.domain].devices[o.device].pci_bars.as_slice(),
                )
            })
            .collect();
        pci::layout(&input, host.mmio32, host.mmio64)
    };
    let placed = match placed {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.iter() {
                let name = |fi: usize| {
                    let o = &funcs[fi];
                    let d = &plan.domains[o.domain];
                    (d.name.as_str(), d.devices[o.device].name.as_str(), o.bdf)
                };
                match *e {
                    LayoutError::Fixed {
                        function,
                        index,
                        addr,
                        problem,
                    } => {
                        let (dn, xn, bdf) = name(function);
                        match problem {
                            FixedProblem::Overlap { other } => {
                                let (on, oxn, obdf) = name(other);
                                error!(
                                    "config: domain \"{dn}\": device \"{xn}\": PCI {bdf} BAR{} cannot go at {addr:#x}: its BARs overlap those of PCI {obdf} (domain \"{on}\", device \"{oxn}\")",
                                    u64::from(index)
                                );
                            }
                            _ => error!(
                                "config: domain \"{dn}\": device \"{xn}\": PCI {bdf} BAR{} cannot go at {addr:#x}: {problem}",
                                u64::from(index)
                            ),
                        }
                    }
                    LayoutError::NoRoom { function, total } => {
                        let (dn, xn, bdf) = name(function);
                        error!(
                            "config: domain \"{dn}\": device \"{xn}\": PCI function {bdf}'s BARs ({total:#x} bytes) do not fit in the host's memory window"
                        );
                    }
                }
            }
            return Err(());
        }
    };
    if failed {
        return Err(());
    }
    for (o, p) in funcs.iter().zip(placed.iter()) {
        let d = &mut plan.domains[o.domain];
        let dev = &mut d.devices[o.device];
        let Some(f) = Function::at(board, o.bdf) else {
            continue;
        };
        let bdf = o.bdf;
        let mut vbars = [VBar::default(); 6];
        for (i, at) in p.addr.iter().enumerate() {
            let (Some(at), Slot::Memory { size, is64 }) = (*at, o.slots[i]) else {
                continue;
            };
            let off = cfg::BAR0 + 4 * i;
            let flags = f.rd32(off) & 0xf;
            f.wr32(off, at as u32);
            if is64 {
                f.wr32(off + 4, (at >> 32) as u32);
            }
            let mask = !(size - 1);
            vbars[i] = VBar {
                value: at as u32 | flags,
                sizing: mask as u32 | flags,
                probing: false,
            };
            if is64 {
                vbars[i + 1] = VBar {
                    value: (at >> 32) as u32,
                    sizing: (mask >> 32) as u32,
                    probing: false,
                };
            }
            let fixed = if dev.pci_bars.iter().any(|b| b.index as usize == i) {
                " (fixed by the config)"
            } else {
                ""
            };
            info!(
                "domain \"{}\": PCI {bdf} BAR{i}: {size:#x} bytes at {at:#x}{fixed}",
                d.name
            );
        }
        if p.block.size > 0 {
            dev.mapping = bulkhead_core::plan::Mapping {
                ipa: p.block.base,
                pa: p.block.base,
                size: p.block.size,
                kind: MemKind::Device,
            };
        }
        let ids = f.rd32(cfg::VENDOR_DEVICE);
        dev.compatible.clear();
        let _ = core::fmt::write(
            &mut dev.compatible,
            format_args!("pci{:04x},{:04x}", ids & 0xffff, ids >> 16),
        );
        let _ = VECAMS[o.domain]
            .lock()
            .functions
            .push(VFunction { bdf, bars: vbars });
        // Decode its BARs and master the bus (through the IOMMU, which
        // aborts it until its domain's tables are attached).
        f.set_command(cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER);
    }
    if failed {
        Err(())
    } else {
        Ok(())
    }
}

/// Sizes function `f`'s BARs (its decoding is off): what each register is.
fn size_bars(f: &Function, domain: &str, bdf: Bdf) -> [Slot; 6] {
    let mut slots = [Slot::Absent; 6];
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
                slots[i] = Slot::Memory { size, is64 };
                if is64 && i < 5 {
                    slots[i + 1] = Slot::Upper;
                }
            }
            Bar::Io { .. } => {
                slots[i] = Slot::Io;
                warn!("domain \"{domain}\": PCI {bdf}: BAR{i} is I/O space, which Bulkhead does not place");
            }
            Bar::None => {}
        }
        i += if is64 { 2 } else { 1 };
    }
    slots
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
    // The function that owns the stream; else a function of the same
    // device (a device's functions all belong to one domain): a device may
    // master the bus with function numbers it does not have (PCIe phantom
    // functions, which its domain can enable in Device Control). Its
    // faults are then its domain's, under that domain's rate limit.
    let owner_by = |same: &dyn Fn(u32) -> bool| {
        plan.domains.iter().enumerate().find_map(|(di, d)| {
            d.devices
                .iter()
                .find(|x| x.pci.is_some_and(|b| same(u32::from(b.rid()))))
                .map(|x| (di, d, x))
        })
    };
    let owner =
        owner_by(&|rid| rid == e.stream).or_else(|| owner_by(&|rid| rid >> 3 == e.stream >> 3));
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
                u64::from(run.count)
            )
        ),
        None => warn!(
            "PCI {bdf} (no domain's): DMA {} of {:#x}..{:#x}: {} ({} fault(s)) -> aborted",
            if e.read { "read" } else { "write" },
            e.addr,
            e.addr + size,
            e.kind_name(),
            u64::from(run.count)
        ),
    }
}

/// Domain `d` stops (`stop`) or restarts: before its memory is reused, its
/// functions stop decoding and mastering the bus and, if they can, are
/// reset (Function Level Reset: nothing the domain left in them survives),
/// and the IOMMU forgets its cached translations; on a stop their streams
/// abort for good.
pub fn quiesce(d: &bulkhead_core::plan::DomainPlan, stop: bool) {
    let board = crate::board();
    let mut sids: heapless::Vec<u16, { bulkhead_core::plan::MAX_DEVICES }> = heapless::Vec::new();
    for x in d.devices.iter() {
        let Some(bdf) = x.pci else { continue };
        if let Some(f) = Function::at(board, bdf) {
            f.set_command(cfg::CMD_INTX_DISABLE);
            match f.flr() {
                Some(ms) => info!(
                    "domain \"{}\": device \"{}\": PCI {bdf} reset (Function Level Reset, {ms} ms)",
                    d.name, x.name
                ),
                None => info!(
                    "domain \"{}\": device \"{}\": PCI {bdf} cannot be reset (no Function Level Reset): bus mastering and decoding off, its other state as the domain left it",
                    d.name, x.name
                ),
            }
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

/// A (re)loaded domain `di` is about to start: its functions get their
/// BARs back where they were placed (a reset cleared them) and decode them
/// again; bus mastering stays off until the domain turns it on. Its view
/// of the bus forgets any sizing in progress.
pub fn enable(di: usize, d: &bulkhead_core::plan::DomainPlan) {
    let board = crate::board();
    let mut v = VECAMS[di].lock();
    for vf in v.functions.iter_mut() {
        let Some(f) = Function::at(board, vf.bdf) else {
            continue;
        };
        f.set_command(cfg::CMD_INTX_DISABLE);
        for (i, bar) in vf.bars.iter_mut().enumerate() {
            bar.probing = false;
            if bar.sizing != 0 {
                f.wr32(cfg::BAR0 + 4 * i, bar.value);
            }
        }
    }
    // Decoding on, bus mastering off: mastering is the domain's driver's
    // to turn on (through its virtual ECAM), once it has put the function
    // in a state it knows. A function without Function Level Reset keeps
    // what the previous run left in it, a DMA it had started included:
    // mastering on before the new run's driver resets it would let that
    // DMA land in the image and device tree just loaded.
    for bdf in d.devices.iter().filter_map(|x| x.pci) {
        if let Some(f) = Function::at(board, bdf) {
            f.set_command(cfg::CMD_MEMORY);
        }
    }
}

/// Whether `ipa` is in domain `d`'s virtual ECAM window (only a domain
/// that owns PCI functions has one).
pub fn in_window(d: &bulkhead_core::plan::DomainPlan, ipa: u64) -> bool {
    bulkhead_core::board::Range::new(pci::VECAM_IPA, pci::VECAM_SIZE).contains_addr(ipa)
        && d.devices.iter().any(|x| x.pci.is_some())
}

/// A domain's access to its virtual ECAM window (guest `ipa`): answered
/// from its view of the root bus, or passed to its own function's real
/// configuration space (`bulkhead_core::pci::VirtualEcam` decides).
/// Returns `false` if `ipa` is not in the window or the domain owns no
/// function.
pub fn emulate_config(
    di: usize,
    d: &bulkhead_core::plan::DomainPlan,
    ipa: u64,
    write: bool,
    a: bulkhead_core::trap::Access,
    frame: &mut crate::exceptions::TrapFrame,
) -> bool {
    if !in_window(d, ipa) || a.size > 4 {
        return false;
    }
    let offset = ipa - pci::VECAM_IPA;
    let board = crate::board();
    let mut v = VECAMS[di].lock();
    if write {
        let value = frame.reg(a.reg) as u32;
        match v.write(offset, a.size, value) {
            Decision::Forward { bdf, offset } => {
                if let Some(f) = Function::at(board, bdf) {
                    f.write_sized(offset, a.size, value);
                }
            }
            Decision::ForwardMasked { bdf, offset, keep } => {
                if let Some(f) = Function::at(board, bdf) {
                    let now = f.read_sized(offset, a.size);
                    f.write_sized(offset, a.size, (now & !keep) | (value & keep));
                }
            }
            Decision::Reply(_) | Decision::Ignore => {}
        }
    } else {
        let value = match v.read(offset, a.size) {
            Decision::Reply(x) => x,
            Decision::Forward { bdf, offset } | Decision::ForwardMasked { bdf, offset, .. } => {
                Function::at(board, bdf).map_or(u32::MAX, |f| f.read_sized(offset, a.size))
            }
            Decision::Ignore => 0,
        };
        frame.set_reg(a.reg, a.load_value(u64::from(value)));
    }
    true
}
