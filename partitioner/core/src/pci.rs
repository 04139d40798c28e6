//! PCI Express functions given to domains: their addresses (bus, device,
//! function), what their configuration space says, and where their BARs go.
//! The firmware (`firmware/src/pci.rs`) reads and writes the configuration
//! space through the host bridge's ECAM window; every decision is here.

use crate::board::Range;

/// A function's address on its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Self {
            bus,
            device,
            function,
        }
    }
    /// Parses `bb:dd.f` (hex bus and device, function 0-7), as `lspci`
    /// prints it.
    pub fn parse(s: &str) -> Option<Self> {
        let (bus, rest) = s.split_once(':')?;
        let (device, function) = rest.split_once('.')?;
        let hex = |t: &str, max: u8| {
            (!t.is_empty() && t.len() <= 2)
                .then(|| u8::from_str_radix(t, 16).ok())
                .flatten()
                .filter(|v| *v <= max)
        };
        Some(Self::new(
            hex(bus, 0xff)?,
            hex(device, 31)?,
            hex(function, 7)?,
        ))
    }
    /// The requester ID: the SMMU's stream ID for the function.
    pub const fn rid(&self) -> u16 {
        ((self.bus as u16) << 8) | ((self.device as u16) << 3) | self.function as u16
    }
    /// Offset of its configuration space in an ECAM window.
    pub const fn ecam_offset(&self) -> u64 {
        (self.rid() as u64) << 12
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The same digits, without linking u8's Display and LowerHex (the
        // function number as u64: smaller code than as u32).
        let [bus, device] = [self.bus, self.device].map(u32::from);
        write!(f, "{bus:02x}:{device:02x}.{}", u64::from(self.function))
    }
}

/// A BAR address the config fixes (a device's `bars` property): BAR
/// `index` of the function goes at physical (and guest) address `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedBar {
    pub index: u32,
    pub addr: u64,
}

/// Most BAR addresses one function's `bars` may give (a type 0 header has
/// six BAR registers).
pub const MAX_FIXED_BARS: usize = 6;

/// Configuration-space offsets of a type 0 header.
pub mod cfg {
    pub const VENDOR_DEVICE: usize = 0x00;
    pub const COMMAND: usize = 0x04;
    pub const CLASS_REV: usize = 0x08;
    pub const HEADER_TYPE: usize = 0x0e;
    pub const BAR0: usize = 0x10;
    pub const INTERRUPT_PIN: usize = 0x3d;
    /// COMMAND bits.
    pub const CMD_IO: u16 = 1 << 0;
    pub const CMD_MEMORY: u16 = 1 << 1;
    pub const CMD_BUS_MASTER: u16 = 1 << 2;
    pub const CMD_INTX_DISABLE: u16 = 1 << 10;
    /// STATUS (0x06) bit: the function has a capability list.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Offset of the first capability's pointer.
    pub const CAP_PTR: usize = 0x34;
    /// Capability ID of the PCI Express capability.
    pub const CAP_ID_EXP: u8 = 0x10;
    /// In the PCI Express capability: Device Capabilities, whose bit 28 says
    /// the function supports Function Level Reset.
    pub const EXP_DEVCAP: usize = 0x04;
    pub const DEVCAP_FLR: u32 = 1 << 28;
    /// Device Control, whose bit 15 initiates a Function Level Reset.
    pub const EXP_DEVCTL: usize = 0x08;
    pub const DEVCTL_FLR: u16 = 1 << 15;
    /// How long a function may take to come back from a Function Level
    /// Reset before software touches it again (PCIe Base Specification:
    /// 100 ms).
    pub const FLR_WAIT_MS: u64 = 100;
}

/// Offset of capability `id` in a function's configuration space, walking
/// the list from `read8(CAP_PTR)` (a function whose status register says it
/// has one). At most 48 steps: a looping list ends the walk.
pub fn find_capability(read8: impl Fn(usize) -> u8, id: u8) -> Option<usize> {
    let mut at = (read8(cfg::CAP_PTR) & !3) as usize;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        if read8(at) == id {
            return Some(at);
        }
        at = (read8(at + 1) & !3) as usize;
    }
    None
}

/// The legacy interrupt (INTA-INTD, `pin` 1-4) of device `device` on the
/// root bus, after the host bridge's standard swizzle, as an index into the
/// host's four INTx SPIs.
pub const fn intx_index(device: u8, pin: u8) -> usize {
    ((device as usize) + (pin as usize).saturating_sub(1)) % 4
}

/// What a BAR is, from the value it reads back after all ones were
/// written to it (and, for a 64-bit BAR, to the next one: `high`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// Not implemented (reads back 0).
    None,
    /// I/O space: Bulkhead does not assign it.
    Io { size: u64 },
    Memory {
        size: u64,
        is64: bool,
        prefetchable: bool,
    },
}

/// A function's configuration space, as the partitioner reaches it (the
/// ECAM window at boot; a model in tests). Offsets are aligned to `size`
/// (1, 2 or 4 bytes).
pub trait ConfigSpace {
    fn read(&mut self, offset: usize, size: u8) -> u32;
    fn write(&mut self, offset: usize, size: u8, value: u32);
}

/// Virtio's PCI vendor ID, and its device IDs: 0x1000-0x103f transitional
/// (a legacy interface beside the modern one), 0x1040-0x107f modern only.
pub const VIRTIO_VENDOR: u16 = 0x1af4;

/// Whether a function's DMA goes through the IOMMU as far as the function
/// itself can say. Only virtio devices can say otherwise: a virtio device
/// that does not offer `VIRTIO_F_ACCESS_PLATFORM` (feature 33), or that
/// keeps a legacy interface, is one whose DMA the platform does not
/// translate (QEMU's virtio-pci bypasses its SMMU unless given
/// `iommu_platform=on,disable-legacy=on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaPath {
    /// Not a virtio device: like any other function, behind the IOMMU the
    /// board says covers the host bridge.
    NotVirtio,
    /// A modern virtio device offering `VIRTIO_F_ACCESS_PLATFORM`.
    Translated,
    /// A virtio device whose DMA bypasses the IOMMU, and why.
    Bypasses(&'static str),
}

const CAP_POINTER: usize = 0x34;
const STATUS_CAP_LIST: u32 = 1 << 20;
const CAP_VENDOR: u8 = 0x09;
const VIRTIO_CAP_COMMON: u8 = 1;
const VIRTIO_CAP_PCI_CFG: u8 = 5;
/// `VIRTIO_F_ACCESS_PLATFORM` in the upper half of the device features.
const ACCESS_PLATFORM_HIGH_BIT: u32 = 1 << (33 - 32);

/// Find out a function's [`DmaPath`]: a virtio device's features are read
/// through its PCI configuration access capability (`VIRTIO_PCI_CAP_PCI_CFG`,
/// made for firmware: no BAR needs to be mapped or enabled), and its
/// feature select register is left at 0 as reset leaves it.
pub fn dma_path(f: &mut dyn ConfigSpace) -> DmaPath {
    let ids = f.read(0, 4);
    let (vendor, device) = (ids as u16, (ids >> 16) as u16);
    if vendor != VIRTIO_VENDOR || !(0x1000..0x1080).contains(&device) {
        return DmaPath::NotVirtio;
    }
    if device < 0x1040 {
        return DmaPath::Bypasses(
            "a transitional virtio device: its legacy interface never goes through an IOMMU",
        );
    }
    if f.read(cfg::COMMAND, 4) & STATUS_CAP_LIST == 0 {
        return DmaPath::Bypasses("a virtio device without capabilities");
    }
    // The common configuration structure (BAR, offset) and the
    // configuration access capability's position.
    let (mut common, mut access) = (None, None);
    let mut at = (f.read(CAP_POINTER, 1) & 0xfc) as usize;
    let mut hops = 0;
    while at >= 0x40 && hops < 48 {
        hops += 1;
        let head = f.read(at, 4);
        if head as u8 == CAP_VENDOR {
            let cfg_type = (head >> 24) as u8;
            if cfg_type == VIRTIO_CAP_COMMON && common.is_none() {
                common = Some((f.read(at + 4, 1) as u8, f.read(at + 8, 4)));
            } else if cfg_type == VIRTIO_CAP_PCI_CFG && access.is_none() {
                access = Some(at);
            }
        }
        at = ((head >> 8) & 0xfc) as usize;
    }
    let (Some((bar, offset)), Some(cap)) = (common, access) else {
        return DmaPath::Bypasses("a virtio device without the common configuration or the configuration access capability");
    };
    // Through the access capability: bar (+4), offset (+8), length (+12),
    // data (+16).
    let window = |f: &mut dyn ConfigSpace, off: u32| {
        f.write(cap + 4, 1, u32::from(bar));
        f.write(cap + 8, 4, off);
        f.write(cap + 12, 4, 4);
    };
    // device_feature_select (+0) = 1, then device_feature (+4): features 32-63.
    window(f, offset);
    f.write(cap + 16, 4, 1);
    window(f, offset.wrapping_add(4));
    let high = f.read(cap + 16, 4);
    window(f, offset);
    f.write(cap + 16, 4, 0);
    if high & ACCESS_PLATFORM_HIGH_BIT != 0 {
        DmaPath::Translated
    } else {
        DmaPath::Bypasses("a virtio device that does not offer VIRTIO_F_ACCESS_PLATFORM")
    }
}

/// Decodes a BAR from its read-back after writing all ones (`low`; `high`
/// for the upper half of a 64-bit BAR, ignored otherwise).
pub fn decode_bar(low: u32, high: u32) -> Bar {
    if low == 0 {
        return Bar::None;
    }
    if low & 1 != 0 {
        let mask = low & !0x3;
        return Bar::Io {
            size: (!mask).wrapping_add(1) as u64 & 0xffff_ffff,
        };
    }
    let is64 = (low >> 1) & 3 == 2;
    let prefetchable = low & 8 != 0;
    let mask = if is64 {
        ((high as u64) << 32) | (low & !0xf) as u64
    } else {
        0xffff_ffff_0000_0000 | (low & !0xf) as u64
    };
    Bar::Memory {
        size: (!mask).wrapping_add(1),
        is64,
        prefetchable,
    }
}

/// Memory BARs need at least one page each in stage 2: a smaller one still
/// takes a page of its own, so no two functions ever share one.
pub const BAR_ALIGN: u64 = 4096;

/// Hands out addresses in a window, each BAR aligned to its own size (as
/// PCI requires) and to a page.
pub struct WindowAllocator {
    window: Range,
    next: u64,
}

impl WindowAllocator {
    pub fn new(window: Range) -> Self {
        Self {
            window,
            next: window.base,
        }
    }
    /// An address for a BAR of `size` bytes, or `None` when the window is
    /// full.
    pub fn take(&mut self, size: u64) -> Option<u64> {
        let size = size.max(BAR_ALIGN);
        if !size.is_power_of_two() {
            return None;
        }
        let at = self.next.checked_next_multiple_of(size)?;
        let end = at.checked_add(size)?;
        if end > self.window.end()? {
            return None;
        }
        self.next = end;
        Some(at)
    }
}

impl WindowAllocator {
    /// [`WindowAllocator::take`], skipping every range of `avoid` (BARs a
    /// config fixed): the block goes at the first aligned address from
    /// where the last one ended that overlaps none of them.
    pub fn take_avoiding(&mut self, size: u64, avoid: &[Range]) -> Option<u64> {
        let size = size.max(BAR_ALIGN);
        if !size.is_power_of_two() {
            return None;
        }
        let mut at = self.next.checked_next_multiple_of(size)?;
        loop {
            let end = at.checked_add(size)?;
            if end > self.window.end()? {
                return None;
            }
            let here = Range::new(at, size);
            match avoid.iter().find(|r| r.overlaps(&here)) {
                Some(r) => at = r.end()?.checked_next_multiple_of(size)?,
                None => {
                    self.next = end;
                    return Some(at);
                }
            }
        }
    }
}

/// One BAR register of a function, as sized at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Not implemented.
    Absent,
    /// I/O space (never placed).
    Io,
    /// A memory BAR.
    Memory { size: u64, is64: bool },
    /// The upper half of the 64-bit BAR before it.
    Upper,
}

/// Why a BAR cannot go where the config fixed it (`bars`), found once it is
/// sized at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedProblem {
    /// The function does not implement that BAR.
    Absent,
    /// It is an I/O BAR: Bulkhead places none.
    Io,
    /// It is the upper half of a 64-bit BAR.
    Upper,
    /// A 32-bit BAR cannot hold an address above 4 GiB.
    Above4G,
    /// The address is not a multiple of the BAR's size.
    Misaligned { size: u64 },
    /// With the function's other BARs placed after it, the block leaves
    /// the host's memory windows (or a 32-bit BAR would go above 4 GiB).
    NoRoom,
    /// It overlaps a BAR block of another function (`other`, an index
    /// into the functions given to [`layout`]) whose BARs are fixed too.
    Overlap { other: usize },
}

impl core::fmt::Display for FixedProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FixedProblem::Absent => write!(f, "the function has no such BAR"),
            FixedProblem::Io => write!(f, "it is an I/O BAR, which Bulkhead does not place"),
            FixedProblem::Upper => write!(f, "it is the upper half of a 64-bit BAR"),
            FixedProblem::Above4G => write!(f, "it is a 32-bit BAR and the address is above 4 GiB"),
            FixedProblem::Misaligned { size } => write!(
                f,
                "the address is not aligned to the BAR's size ({size:#x} bytes)"
            ),
            FixedProblem::NoRoom => write!(
                f,
                "the function's other BARs, placed after it, do not fit in the host's memory window"
            ),
            FixedProblem::Overlap { .. } => write!(f, "it overlaps the BARs of another function"),
        }
    }
}

/// Where one function's BARs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Address of each memory BAR placed (by its first index).
    pub addr: [Option<u64>; 6],
    /// The block holding them all, mapped into the domain (guest =
    /// physical); size 0 when the function has no memory BAR.
    pub block: Range,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            addr: [None; 6],
            block: Range::new(0, 0),
        }
    }
}

/// A function's BARs could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A BAR the config fixed: its index, address and why.
    Fixed {
        function: usize,
        index: u32,
        addr: u64,
        problem: FixedProblem,
    },
    /// The window has no room left for a function's BARs (`total` bytes).
    NoRoom { function: usize, total: u64 },
}

/// Most functions [`layout`] places.
pub const MAX_FUNCTIONS: usize = crate::plan::MAX_DOMAINS * crate::plan::MAX_DEVICES;

/// Places the memory BARs of `functions` (each its sized BAR registers and
/// the BARs its config fixed). A function with fixed BARs gets them where
/// the config says and its other BARs right after the highest of them,
/// largest first, each aligned to its size; its block spans them all. Every
/// other function gets, in order, one naturally aligned block of `window`
/// (largest BAR first, so none needs padding), around the fixed blocks.
/// Returns a placement per function, or every problem found.
#[allow(clippy::result_large_err)] // Runs once at boot; no copies matter.
#[inline(never)]
pub fn layout(
    functions: &[([Slot; 6], &[FixedBar])],
    window: Range,
    mmio64: Option<Range>,
) -> Result<heapless::Vec<Placement, MAX_FUNCTIONS>, heapless::Vec<LayoutError, MAX_FUNCTIONS>> {
    let mut out: heapless::Vec<Placement, MAX_FUNCTIONS> = heapless::Vec::new();
    let mut errors: heapless::Vec<LayoutError, MAX_FUNCTIONS> = heapless::Vec::new();
    // Memory BARs of a function, largest first, by first index.
    let memory = |slots: &[Slot; 6], skip: &[FixedBar]| {
        let mut v: heapless::Vec<(usize, u64, bool), 6> = heapless::Vec::new();
        for (i, s) in slots.iter().enumerate() {
            if let Slot::Memory { size, is64 } = *s {
                if !skip.iter().any(|b| b.index as usize == i) {
                    let _ = v.push((i, size, is64));
                }
            }
        }
        crate::sort_by_key(&mut v, |b| core::cmp::Reverse(b.1));
        v
    };
    let in_windows = |r: &Range| window.contains(r) || mmio64.is_some_and(|w| w.contains(r));
    // First the functions with fixed BARs.
    let mut fixed_blocks: heapless::Vec<(usize, Range, u32, u64), MAX_FUNCTIONS> =
        heapless::Vec::new();
    for _ in functions {
        let _ = out.push(Placement::default());
    }
    for (fi, (slots, fixed)) in functions.iter().enumerate() {
        if fixed.is_empty() {
            continue;
        }
        let mut p = Placement::default();
        let mut ok = true;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for b in fixed.iter() {
            let problem = match slots.get(b.index as usize).copied().unwrap_or(Slot::Absent) {
                Slot::Absent => Some(FixedProblem::Absent),
                Slot::Io => Some(FixedProblem::Io),
                Slot::Upper => Some(FixedProblem::Upper),
                Slot::Memory { is64: false, .. } if b.addr >= 1 << 32 => {
                    Some(FixedProblem::Above4G)
                }
                Slot::Memory { size, .. } if !b.addr.is_multiple_of(size) => {
                    Some(FixedProblem::Misaligned { size })
                }
                Slot::Memory { size, .. } => {
                    let ext = size.max(BAR_ALIGN);
                    lo = lo.min(b.addr);
                    hi = hi.max(b.addr.saturating_add(ext));
                    p.addr[b.index as usize] = Some(b.addr);
                    None
                }
            };
            if let Some(problem) = problem {
                ok = false;
                let _ = errors.push(LayoutError::Fixed {
                    function: fi,
                    index: b.index,
                    addr: b.addr,
                    problem,
                });
            }
        }
        if !ok {
            continue;
        }
        // The others after the highest fixed BAR.
        let mut end = hi;
        for (i, size, is64) in memory(slots, fixed) {
            let ext = size.max(BAR_ALIGN);
            let at = end.next_multiple_of(ext);
            if !is64 && at.saturating_add(ext) > 1 << 32 {
                end = u64::MAX;
                break;
            }
            p.addr[i] = Some(at);
            end = at.saturating_add(ext);
        }
        let first = fixed[0];
        if end == u64::MAX || !in_windows(&Range::new(lo, end - lo)) {
            let _ = errors.push(LayoutError::Fixed {
                function: fi,
                index: first.index,
                addr: first.addr,
                problem: FixedProblem::NoRoom,
            });
            continue;
        }
        p.block = Range::new(lo, end - lo);
        let clash = fixed_blocks.iter().find(|(_, r, ..)| r.overlaps(&p.block));
        if let Some(&(other, ..)) = clash {
            let _ = errors.push(LayoutError::Fixed {
                function: fi,
                index: first.index,
                addr: first.addr,
                problem: FixedProblem::Overlap { other },
            });
            continue;
        }
        let _ = fixed_blocks.push((fi, p.block, first.index, first.addr));
        out[fi] = p;
    }
    // Then the others, around the fixed blocks.
    let avoid: heapless::Vec<Range, MAX_FUNCTIONS> =
        fixed_blocks.iter().map(|(_, r, ..)| *r).collect();
    let mut alloc = WindowAllocator::new(window);
    for (fi, (slots, fixed)) in functions.iter().enumerate() {
        if !fixed.is_empty() {
            continue;
        }
        let bars = memory(slots, &[]);
        let total: u64 = bars.iter().map(|b| b.1.max(BAR_ALIGN)).sum();
        if total == 0 {
            continue;
        }
        let Some(block) = alloc.take_avoiding(total.next_power_of_two(), &avoid) else {
            let _ = errors.push(LayoutError::NoRoom {
                function: fi,
                total,
            });
            continue;
        };
        let mut at = block;
        for (i, size, _) in bars {
            out[fi].addr[i] = Some(at);
            at += size.max(BAR_ALIGN);
        }
        out[fi].block = Range::new(block, total);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_round_trip_and_ids() {
        let b = Bdf::parse("00:02.0").unwrap();
        assert_eq!(b, Bdf::new(0, 2, 0));
        assert_eq!(b.rid(), 0x10);
        assert_eq!(b.ecam_offset(), 0x10000);
        assert_eq!(format!("{}", Bdf::new(1, 0x1f, 7)), "01:1f.7");
        for bad in [
            "", "0:2", "00:20.0", "00:02.8", "000:02.0", "xx:02.0", "00:02",
        ] {
            assert_eq!(Bdf::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bars_decode() {
        // edu: 1 MiB 32-bit memory.
        assert_eq!(
            decode_bar(0xfff0_0000, 0),
            Bar::Memory {
                size: 1 << 20,
                is64: false,
                prefetchable: false
            }
        );
        // 64-bit prefetchable 16 KiB.
        assert_eq!(
            decode_bar(0xffff_c00c, 0xffff_ffff),
            Bar::Memory {
                size: 16 << 10,
                is64: true,
                prefetchable: true
            }
        );
        assert_eq!(decode_bar(0xffff_ffe1, 0), Bar::Io { size: 32 });
        assert_eq!(decode_bar(0, 0), Bar::None);
    }

    #[test]
    fn bars_are_naturally_aligned_pages_inside_the_window() {
        let mut a = WindowAllocator::new(Range::new(0x1000_0000, 0x20_0000));
        assert_eq!(a.take(0x100), Some(0x1000_0000), "a small BAR takes a page");
        assert_eq!(a.take(0x10_0000), Some(0x1010_0000), "aligned to its size");
        assert_eq!(a.take(0x1000), None, "past the window");
        assert_eq!(a.take(0x3000), None, "not a power of two");
    }

    const M: fn(u64, bool) -> Slot = |size, is64| Slot::Memory { size, is64 };
    const NO: Slot = Slot::Absent;

    #[test]
    fn fixed_bars_go_where_the_config_says_and_the_others_around_them() {
        let window = Range::new(0x1000_0000, 0x2eff_0000);
        let edu = [M(0x10_0000, false), NO, NO, NO, NO, NO];
        let nvme = [M(0x4000, true), Slot::Upper, NO, NO, M(0x1000, false), NO];
        let fixed = [FixedBar {
            index: 0,
            addr: 0x1000_0000,
        }];
        // edu fixed at the window's base: nvme's block goes after it.
        let p = layout(&[(nvme, &[]), (edu, &fixed)], window, None).unwrap();
        assert_eq!(p[1].addr[0], Some(0x1000_0000));
        assert_eq!(p[1].block, Range::new(0x1000_0000, 0x10_0000));
        assert_eq!(p[0].block, Range::new(0x1010_0000, 0x5000));
        assert_eq!(p[0].addr[0], Some(0x1010_0000));
        assert_eq!(p[0].addr[4], Some(0x1010_4000));
        // Without fixed BARs, the same as ever: in order from the base.
        let p = layout(&[(nvme, &[]), (edu, &[])], window, None).unwrap();
        assert_eq!(p[0].block.base, 0x1000_0000);
        assert_eq!(p[1].block.base, 0x1010_0000);
        // A function's own other BARs follow its fixed one.
        let fixed4 = [FixedBar {
            index: 4,
            addr: 0x2000_0000,
        }];
        let p = layout(&[(nvme, &fixed4)], window, None).unwrap();
        assert_eq!(p[0].addr[4], Some(0x2000_0000));
        assert_eq!(p[0].addr[0], Some(0x2000_4000));
        assert_eq!(p[0].block, Range::new(0x2000_0000, 0x8000));
    }

    #[test]
    fn fixed_bars_that_cannot_go_there_are_refused_with_the_reason() {
        let window = Range::new(0x1000_0000, 0x2eff_0000);
        let edu = [M(0x10_0000, false), NO, Slot::Io, NO, NO, NO];
        let nvme = [M(0x4000, true), Slot::Upper, NO, NO, NO, NO];
        let problem = |slots: [Slot; 6], index: u32, addr: u64| {
            let fixed = [FixedBar { index, addr }];
            match layout(
                &[(slots, &fixed)],
                window,
                Some(Range::new(1 << 39, 1 << 39)),
            ) {
                Err(e) => match e[0] {
                    LayoutError::Fixed { problem, .. } => problem,
                    e => panic!("{e:?}"),
                },
                Ok(p) => panic!("placed: {p:?}"),
            }
        };
        assert_eq!(problem(edu, 1, 0x1000_0000), FixedProblem::Absent);
        assert_eq!(problem(edu, 2, 0x1000_0000), FixedProblem::Io);
        assert_eq!(problem(nvme, 1, 0x1000_0000), FixedProblem::Upper);
        assert_eq!(problem(edu, 0, 1 << 39), FixedProblem::Above4G);
        assert_eq!(
            problem(edu, 0, 0x1008_0000),
            FixedProblem::Misaligned { size: 0x10_0000 }
        );
        assert_eq!(problem(edu, 0, 0x3ef0_0000), FixedProblem::NoRoom);
        // Two fixed BARs that overlap once sized (different pages).
        let a = [FixedBar {
            index: 0,
            addr: 0x2000_0000,
        }];
        let b = [FixedBar {
            index: 0,
            addr: 0x2000_4000,
        }];
        let e = layout(&[(edu, &a), (nvme, &b)], window, None).unwrap_err();
        assert_eq!(
            e[0],
            LayoutError::Fixed {
                function: 1,
                index: 0,
                addr: 0x2000_4000,
                problem: FixedProblem::Overlap { other: 0 }
            }
        );
        // No room left: a block that cannot fit.
        let huge = [M(1 << 30, false), NO, NO, NO, NO, NO];
        assert_eq!(
            layout(&[(huge, &[])], window, None).unwrap_err()[0],
            LayoutError::NoRoom {
                function: 0,
                total: 1 << 30
            }
        );
    }

    #[test]
    fn the_allocator_skips_what_it_must_avoid() {
        let mut a = WindowAllocator::new(Range::new(0x1000_0000, 0x100_0000));
        let avoid = [
            Range::new(0x1000_0000, 0x1000),
            Range::new(0x1010_0000, 0x10_0000),
        ];
        assert_eq!(a.take_avoiding(0x10_0000, &avoid), Some(0x1020_0000));
        assert_eq!(a.take_avoiding(0x1000, &avoid), Some(0x1030_0000));
    }

    #[test]
    fn capabilities_are_found_and_loops_end() {
        let mut space = [0u8; 256];
        space[cfg::CAP_PTR] = 0x40;
        space[0x40] = 0x05; // MSI
        space[0x41] = 0x80;
        space[0x80] = cfg::CAP_ID_EXP;
        let read = |s: [u8; 256]| move |off: usize| s[off];
        assert_eq!(find_capability(read(space), cfg::CAP_ID_EXP), Some(0x80));
        assert_eq!(find_capability(read(space), 0x11), None);
        space[0x81] = 0x40; // back to the first: a loop
        assert_eq!(find_capability(read(space), 0x11), None);
        space[cfg::CAP_PTR] = 0;
        assert_eq!(find_capability(read(space), cfg::CAP_ID_EXP), None);
    }

    #[test]
    fn intx_swizzle() {
        assert_eq!(intx_index(0, 1), 0);
        assert_eq!(intx_index(1, 1), 1);
        assert_eq!(intx_index(2, 1), 2);
        assert_eq!(intx_index(3, 2), 0);
    }
}

/// Guest address of a domain's virtual ECAM window (bus 0, 1 MiB) when it
/// owns PCI functions: where QEMU `virt` has its low ECAM window, so
/// nothing a guest expects is displaced.
/// Where a function's PCI Express extended configuration space begins (its
/// extended capability list): hidden from domains.
pub const EXTENDED_CONFIG: usize = 0x100;

pub const VECAM_IPA: u64 = 0x3f00_0000;
pub const VECAM_SIZE: u64 = 0x10_0000;

/// One BAR as the guest sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VBar {
    /// What the register holds: the placed address (low or high half) and,
    /// in the low half, the type bits.
    pub value: u32,
    /// What it reads after all ones are written (the size mask with the
    /// type bits; 0 for a BAR the function does not implement or that
    /// Bulkhead did not place, such as an I/O BAR).
    pub sizing: u32,
    /// All ones were written: reads give `sizing` until another write.
    pub probing: bool,
}

/// A function in a domain's virtual ECAM window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VFunction {
    pub bdf: Bdf,
    pub bars: [VBar; 6],
}

/// What the partitioner does with a guest's access to its virtual ECAM
/// window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer a read with this value (already shifted for the access).
    Reply(u32),
    /// Pass the access to the function's real configuration space.
    Forward { bdf: Bdf, offset: usize },
    /// Pass a write, with these bits of the value only (the others as the
    /// function has them).
    ForwardMasked { bdf: Bdf, offset: usize, keep: u32 },
    /// A write with no effect.
    Ignore,
}

/// COMMAND bits a domain may set: memory decoding, bus mastering (its DMA
/// goes through its own stage-2 tables), SERR/parity reporting and INTx
/// disable. I/O decoding stays off (Bulkhead places no I/O BARs).
pub const GUEST_COMMAND_BITS: u32 =
    (cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER | cfg::CMD_INTX_DISABLE) as u32 | (1 << 6) | (1 << 8);

/// A domain's view of the root bus: only its own functions are there, with
/// the BARs where the partitioner placed them (`linux,pci-probe-only`: the
/// guest keeps them there; it may size them, it may not move them).
#[derive(Clone, Debug, Default)]
pub struct VirtualEcam {
    pub functions: heapless::Vec<VFunction, { crate::plan::MAX_DEVICES }>,
}

impl VirtualEcam {
    fn function(&mut self, offset: u64) -> Option<(&mut VFunction, usize)> {
        if offset >= VECAM_SIZE {
            return None;
        }
        let rid = (offset >> 12) as u16;
        let reg = (offset & 0xfff) as usize;
        self.functions
            .iter_mut()
            .find(|f| f.bdf.rid() == rid)
            .map(|f| (f, reg))
    }

    /// A read of `size` bytes at `offset` of the window. A misaligned one
    /// (`offset` not a multiple of `size`; the partitioner refuses those
    /// before they get here) reads all ones, as an absent function does:
    /// nothing misaligned is ever forwarded.
    pub fn read(&mut self, offset: u64, size: u8) -> Decision {
        if !aligned(offset, size) {
            return Decision::Reply(ones(size));
        }
        let Some((f, reg)) = self.function(offset) else {
            // No function of the domain's there: nothing answers.
            return Decision::Reply(ones(size));
        };
        let shift = (reg & 3) * 8;
        match reg & !3 {
            r @ 0x10..=0x27 => {
                let bar = f.bars[(r - 0x10) / 4];
                let v = if bar.probing { bar.sizing } else { bar.value };
                Decision::Reply((v >> shift) & ones(size))
            }
            // No expansion ROM.
            0x30 => Decision::Reply(0),
            // No extended capabilities: SR-IOV (virtual functions the
            // partitioner never placed or confined), resizable BARs (a BAR
            // grown over another domain's), ATS/PRI/PASID (translated
            // requests), AER and the rest are the partitioner's.
            EXTENDED_CONFIG.. => Decision::Reply(0),
            _ => Decision::Forward {
                bdf: f.bdf,
                offset: reg,
            },
        }
    }

    /// A write of `value` (`size` bytes) at `offset` of the window. A
    /// misaligned one has no effect (see [`Self::read`]).
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> Decision {
        if !aligned(offset, size) {
            return Decision::Ignore;
        }
        let Some((f, reg)) = self.function(offset) else {
            return Decision::Ignore;
        };
        match reg & !3 {
            r @ 0x10..=0x27 => {
                // Sizing: all ones written to the whole register.
                let bar = &mut f.bars[(r - 0x10) / 4];
                bar.probing = size == 4 && value == 0xffff_ffff;
                Decision::Ignore
            }
            0x30 => Decision::Ignore,
            EXTENDED_CONFIG.. => Decision::Ignore,
            // COMMAND (and, in a 4-byte write, STATUS, whose bits are
            // write-one-to-clear: passed as they are).
            0x04 if reg < 0x06 => {
                // The mask of the register (bits 31:0 at offset 4), moved
                // to the bytes written: a byte at 5 is COMMAND's bits 15:8.
                let shift = (reg & 3) * 8;
                let keep = GUEST_COMMAND_BITS | if size == 4 { 0xffff_0000 } else { 0 };
                Decision::ForwardMasked {
                    bdf: f.bdf,
                    offset: reg,
                    keep: keep >> shift,
                }
            }
            _ => Decision::Forward {
                bdf: f.bdf,
                offset: reg,
            },
        }
    }
}

/// Whether `offset` is a multiple of `size` (1, 2 or 4).
const fn aligned(offset: u64, size: u8) -> bool {
    size != 0 && offset.is_multiple_of(size as u64)
}

const fn ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

#[cfg(test)]
mod vecam_tests {
    use super::*;

    fn edu() -> VirtualEcam {
        let mut v = VirtualEcam::default();
        let mut bars = [VBar::default(); 6];
        bars[0] = VBar {
            value: 0x1000_0000,
            sizing: 0xfff0_0000,
            probing: false,
        };
        let _ = v.functions.push(VFunction {
            bdf: Bdf::new(0, 2, 0),
            bars,
        });
        v
    }

    #[test]
    fn only_the_domains_functions_answer() {
        let mut v = edu();
        assert_eq!(v.read(0x0_8000, 4), Decision::Reply(0xffff_ffff), "00:01.0");
        assert_eq!(v.read(0x0_8000, 2), Decision::Reply(0xffff));
        assert_eq!(v.write(0x0_8004, 2, 0x7), Decision::Ignore);
        assert_eq!(
            v.read(0x1_0000, 4),
            Decision::Forward {
                bdf: Bdf::new(0, 2, 0),
                offset: 0
            }
        );
        assert_eq!(v.read(VECAM_SIZE, 4), Decision::Reply(0xffff_ffff));
    }

    #[test]
    fn misaligned_accesses_are_never_forwarded() {
        let mut v = edu();
        // The review's example: a 4-byte read at 0x3e of its own function.
        assert_eq!(v.read(0x1_003e, 4), Decision::Reply(0xffff_ffff));
        assert_eq!(v.read(0x1_0001, 2), Decision::Reply(0xffff));
        assert_eq!(v.write(0x1_003e, 4, 0xdead_beef), Decision::Ignore);
        assert_eq!(v.write(0x1_0005, 2, 0x7), Decision::Ignore);
        // The same registers, aligned, still go to the function.
        assert_eq!(
            v.read(0x1_003e, 2),
            Decision::Forward {
                bdf: Bdf::new(0, 2, 0),
                offset: 0x3e
            }
        );
        assert_eq!(
            v.read(0x1_0001, 1),
            Decision::Forward {
                bdf: Bdf::new(0, 2, 0),
                offset: 1
            }
        );
    }

    #[test]
    fn the_extended_capabilities_are_hidden() {
        let mut v = edu();
        // The standard header and capabilities are the function's own...
        assert_eq!(
            v.read(0x1_0040, 4),
            Decision::Forward {
                bdf: Bdf::new(0, 2, 0),
                offset: 0x40
            }
        );
        assert_eq!(
            v.read(0x1_00fc, 4),
            Decision::Forward {
                bdf: Bdf::new(0, 2, 0),
                offset: 0xfc
            }
        );
        // ...the extended space reads as no capability and ignores writes.
        for off in [0x100u64, 0x104, 0x160, 0xffc] {
            assert_eq!(v.read(0x1_0000 + off, 4), Decision::Reply(0), "{off:#x}");
            assert_eq!(v.read(0x1_0000 + off, 1), Decision::Reply(0), "{off:#x}");
            assert_eq!(v.write(0x1_0000 + off, 4, 0xffff_ffff), Decision::Ignore);
        }
    }

    #[test]
    fn bars_can_be_sized_but_not_moved() {
        let mut v = edu();
        assert_eq!(v.read(0x1_0010, 4), Decision::Reply(0x1000_0000));
        assert_eq!(v.write(0x1_0010, 4, 0xffff_ffff), Decision::Ignore);
        assert_eq!(v.read(0x1_0010, 4), Decision::Reply(0xfff0_0000));
        // Writing the address back (what Linux does) ends the sizing; any
        // other address is ignored too.
        assert_eq!(v.write(0x1_0010, 4, 0x2000_0000), Decision::Ignore);
        assert_eq!(v.read(0x1_0010, 4), Decision::Reply(0x1000_0000));
        assert_eq!(v.read(0x1_0012, 2), Decision::Reply(0x1000));
        // Unplaced BARs and the ROM read zero.
        assert_eq!(v.read(0x1_0014, 4), Decision::Reply(0));
        assert_eq!(v.read(0x1_0030, 4), Decision::Reply(0));
    }

    #[test]
    fn the_command_register_takes_only_what_the_domain_may_set() {
        let mut v = edu();
        match v.write(0x1_0004, 2, 0xffff) {
            Decision::ForwardMasked { keep, offset, .. } => {
                assert_eq!(offset, 4);
                assert_eq!(keep & 1, 0, "no I/O decoding");
                assert_ne!(keep & 0b110, 0, "memory and bus master");
            }
            d => panic!("{d:?}"),
        }
        match v.write(0x1_0004, 4, 0xffff_ffff) {
            Decision::ForwardMasked { keep, .. } => assert_eq!(keep >> 16, 0xffff, "status passed"),
            d => panic!("{d:?}"),
        }
        // A byte at 5 is the register's bits 15:8: of those the domain may
        // set SERR# enable (bit 8) and INTx disable (10), not fast
        // back-to-back (9).
        match v.write(0x1_0005, 1, 0xff) {
            Decision::ForwardMasked { keep, offset, .. } => {
                assert_eq!(offset, 5);
                assert_eq!(keep & 0xff, GUEST_COMMAND_BITS >> 8);
                assert_eq!(keep & 0b111, 0b101);
            }
            d => panic!("{d:?}"),
        }
    }

    mod dma_path_tests {
        use super::super::*;

        /// A virtio-pci function as QEMU builds one: capabilities from 0x40,
        /// a common configuration structure in BAR 4 at 0x0, and the PCI
        /// configuration access capability.
        struct Virtio {
            cfg: [u8; 256],
            features: u64,
            select: u32,
            accesses_outside: usize,
        }

        impl Virtio {
            fn new(device: u16, features: u64, with_access: bool) -> Self {
                let mut cfg = [0u8; 256];
                cfg[0..2].copy_from_slice(&VIRTIO_VENDOR.to_le_bytes());
                cfg[2..4].copy_from_slice(&device.to_le_bytes());
                cfg[6] = 0x10; // status: capability list
                cfg[0x34] = 0x40;
                // 0x40: MSI-X-like foreign capability, then the virtio ones.
                cfg[0x40] = 0x11;
                cfg[0x41] = 0x50;
                // 0x50: common config, BAR 4, offset 0x0.
                cfg[0x50..0x54].copy_from_slice(&[CAP_VENDOR, 0x64, 16, VIRTIO_CAP_COMMON]);
                cfg[0x54] = 4;
                // 0x64: notify (type 2), then access (type 5) at 0x78.
                cfg[0x64..0x68].copy_from_slice(&[
                    CAP_VENDOR,
                    if with_access { 0x78 } else { 0 },
                    20,
                    2,
                ]);
                if with_access {
                    cfg[0x78..0x7c].copy_from_slice(&[CAP_VENDOR, 0, 20, VIRTIO_CAP_PCI_CFG]);
                }
                Virtio {
                    cfg,
                    features,
                    select: 0,
                    accesses_outside: 0,
                }
            }
            fn access(&mut self, write: Option<u32>) -> u32 {
                let bar = self.cfg[0x7c];
                let off = u32::from_le_bytes(self.cfg[0x80..0x84].try_into().unwrap());
                if bar != 4 {
                    self.accesses_outside += 1;
                    return 0;
                }
                match (off, write) {
                    (0, Some(v)) => {
                        self.select = v;
                        0
                    }
                    (0, None) => self.select,
                    (4, None) => (self.features >> (32 * self.select.min(1))) as u32,
                    _ => {
                        self.accesses_outside += 1;
                        0
                    }
                }
            }
        }

        impl ConfigSpace for Virtio {
            fn read(&mut self, offset: usize, size: u8) -> u32 {
                if offset == 0x78 + 16 && size == 4 {
                    return self.access(None);
                }
                let mut v = 0u32;
                for i in 0..size as usize {
                    v |= u32::from(self.cfg[offset + i]) << (8 * i);
                }
                v
            }
            fn write(&mut self, offset: usize, size: u8, value: u32) {
                if offset == 0x78 + 16 && size == 4 {
                    self.access(Some(value));
                    return;
                }
                for i in 0..size as usize {
                    self.cfg[offset + i] = (value >> (8 * i)) as u8;
                }
            }
        }

        #[test]
        fn a_modern_virtio_device_offering_access_platform_is_translated() {
            let mut v = Virtio::new(0x1041, 1 << 33 | 1 << 32, true);
            assert_eq!(dma_path(&mut v), DmaPath::Translated);
            assert_eq!(v.select, 0, "feature select left as reset leaves it");
            assert_eq!(v.accesses_outside, 0);
        }

        #[test]
        fn virtio_devices_that_bypass_the_iommu_say_why() {
            let mut v = Virtio::new(0x1041, 1 << 32, true);
            assert!(
                matches!(dma_path(&mut v), DmaPath::Bypasses(w) if w.contains("ACCESS_PLATFORM"))
            );
            let mut v = Virtio::new(0x1000, 1 << 33, true);
            assert!(matches!(dma_path(&mut v), DmaPath::Bypasses(w) if w.contains("transitional")));
            let mut v = Virtio::new(0x1041, 1 << 33, false);
            assert!(
                matches!(dma_path(&mut v), DmaPath::Bypasses(w) if w.contains("access capability"))
            );
            let mut v = Virtio::new(0x1041, 1 << 33, true);
            v.cfg[6] = 0;
            assert!(matches!(dma_path(&mut v), DmaPath::Bypasses(_)));
        }

        #[test]
        fn other_functions_and_looping_capability_lists_are_handled() {
            let mut v = Virtio::new(0x1041, 1 << 33, true);
            v.cfg[0..2].copy_from_slice(&0x1b36u16.to_le_bytes()); // QEMU's NVMe vendor
            assert_eq!(dma_path(&mut v), DmaPath::NotVirtio);
            // A capability pointing at itself ends the walk, and the device
            // counts as bypassing (no access capability found).
            let mut v = Virtio::new(0x1041, 1 << 33, true);
            v.cfg[0x41] = 0x40;
            assert!(matches!(dma_path(&mut v), DmaPath::Bypasses(_)));
        }
    }
}
