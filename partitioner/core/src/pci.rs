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
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

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

    /// A read of `size` bytes at `offset` of the window.
    pub fn read(&mut self, offset: u64, size: u8) -> Decision {
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

    /// A write of `value` (`size` bytes) at `offset` of the window.
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> Decision {
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
                let shift = (reg & 3) * 8;
                let keep = (GUEST_COMMAND_BITS << shift) | if size == 4 { 0xffff_0000 } else { 0 };
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
