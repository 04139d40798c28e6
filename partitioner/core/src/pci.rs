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
