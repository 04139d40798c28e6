//! Configuration errors: what [`crate::validate::check`] reports.
//!
//! Every error names where it was found ([`Site`]: the domain, if any, and the
//! node or property path in the config) and the values in conflict, and has a
//! stable kebab-case [`Error::code`] that tests and tools match on.

use crate::board::Range;
use crate::fdt_check::FdtError;
use crate::plan::MAX_NAME;
use core::fmt::{self, Write as _};

/// Longest path kept in an error; longer ones are cut short (ending in `...`).
pub const PATH_LEN: usize = 96;
/// Longest config-provided text (names, strings) kept in an error.
pub const TEXT_LEN: usize = 48;
/// Most errors kept; [`Errors::overflowed`] says whether more were found.
pub const MAX_ERRORS: usize = 32;

pub type Name = heapless::String<MAX_NAME>;
pub type Path = heapless::String<PATH_LEN>;
pub type Text = heapless::String<TEXT_LEN>;

/// Copies `s` into a bounded string, cutting it short (with `...`) when it does
/// not fit.
pub fn bounded<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    let (head, tail) = cut(s, N);
    let _ = out.push_str(head);
    let _ = out.push_str(tail);
    out
}

/// What [`bounded`] keeps of `s` in `n` bytes: all of it, or its longest
/// prefix (whole characters) that leaves room for `...`, and the `...`.
/// Not generic, so that it exists once.
#[inline(never)]
fn cut(s: &str, n: usize) -> (&str, &'static str) {
    if s.len() <= n {
        return (s, "");
    }
    let dots = "...".get(..n.min(3)).unwrap_or("");
    (prefix(s, n.saturating_sub(3)), dots)
}

/// The longest prefix of `s` of at most `n` bytes that ends on a character
/// boundary.
pub(crate) fn prefix(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    loop {
        if let Some(p) = s.get(..end) {
            return p;
        }
        end -= 1;
    }
}

/// Joins path components into `/a/b/c` (bounded).
pub fn path(parts: &[&str]) -> Path {
    let mut out = heapless::String::<256>::new();
    for part in parts {
        // Each component is cut at the first character that does not fit.
        if out.push('/').is_ok() {
            let _ = out.push_str(prefix(part, out.capacity() - out.len()));
        }
    }
    if out.is_empty() {
        let _ = out.push('/');
    }
    bounded(&out)
}

/// Where an error was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The domain concerned, for errors inside `/domains/<name>`.
    pub domain: Option<Name>,
    /// Path of the node or property in the config (`/domains/hello/cpus`).
    pub path: Path,
}

impl Site {
    pub fn new(domain: Option<&str>, path: Path) -> Self {
        Self {
            domain: domain.map(bounded),
            path,
        }
    }
    /// A site outside any domain.
    pub fn global(path: Path) -> Self {
        Self { domain: None, path }
    }
}

/// The per-list limits of [`crate::plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Domains,
    Cpus,
    Regions,
    Devices,
    Irqs,
}

impl Limit {
    fn noun(self) -> &'static str {
        match self {
            Limit::Domains => "domains",
            Limit::Cpus => "cores",
            Limit::Regions => "memory regions",
            Limit::Devices => "devices",
            Limit::Irqs => "interrupts",
        }
    }
}

/// A reference to a mapping of a domain, for overlap reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Memory region (node name under `memory`).
    Region(Text),
    /// Passthrough device (node name under `devices`).
    Device(Text),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Region(n) => write!(f, "memory region \"{n}\""),
            Item::Device(n) => write!(f, "device \"{n}\""),
        }
    }
}

/// A range printed as `0x40000000..0x40200000` (end exclusive).
struct R(Range);

impl fmt::Display for R {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.end() {
            Some(end) => write!(f, "{:#x}..{:#x}", self.0.base, end),
            None => write!(f, "{:#x}+{:#x}", self.0.base, self.0.size),
        }
    }
}

/// One problem with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The blob is not a well-formed, complete flattened device tree.
    Malformed { error: FdtError },
    /// A `compatible` property does not name what it must.
    BadCompatible {
        at: Site,
        found: Text,
        expected: &'static str,
    },
    /// No board-support board has this name.
    UnknownBoard { at: Site, board: Text },
    /// A required property is absent (`at` is the node).
    MissingProperty { at: Site, property: &'static str },
    /// A property has the wrong shape (cell count, not a string, too long...).
    BadProperty { at: Site, problem: &'static str },
    /// A property the binding does not define (`at` is the property).
    UnknownProperty { at: Site, hint: &'static str },
    /// A node the binding does not define.
    UnknownNode { at: Site },
    /// `/domains` is missing or empty.
    NoDomains { at: Site },
    /// Two domains have the same name.
    DuplicateDomain { at: Site },
    /// A domain or device name breaks the naming rules.
    BadName { at: Site, problem: &'static str },
    /// A list is longer than the partitioner supports.
    TooMany {
        at: Site,
        what: Limit,
        count: usize,
        limit: usize,
    },
    /// A domain lists no cores.
    NoCpus { at: Site },
    /// A core index is not on the board.
    CpuUnknown { at: Site, core: u32, count: usize },
    /// A domain lists a core twice.
    CpuDuplicate { at: Site, core: u32 },
    /// A core is already owned by another domain.
    CpuShared { at: Site, core: u32, owner: Name },
    /// A region or device has size 0.
    ZeroSize { at: Site },
    /// An address or size is not aligned as required.
    Misaligned {
        at: Site,
        what: &'static str,
        value: u64,
        align: u64,
    },
    /// `base + size` does not fit in 64 bits.
    AddressOverflow {
        at: Site,
        what: &'static str,
        base: u64,
        size: u64,
    },
    /// A guest range ends beyond the guest address space stage 2 translates.
    IpaRange { at: Site, range: Range, limit: u64 },
    /// Two mappings of one domain overlap in guest address space.
    IpaOverlap {
        at: Site,
        range: Range,
        other: Item,
        other_range: Range,
    },
    /// Two memory regions overlap in physical address space.
    PaOverlap {
        at: Site,
        range: Range,
        owner: Name,
        other: Item,
        other_range: Range,
    },
    /// A memory region overlaps the partitioner's own memory.
    PartitionerOverlap {
        at: Site,
        range: Range,
        partitioner: Range,
    },
    /// A memory region is not inside one RAM bank of the board.
    OutsideRam { at: Site, range: Range },
    /// A domain has no memory region.
    NoRam { at: Site },
    /// No free board RAM is left for a region without a fixed address.
    NoRoom { at: Site, size: u64, align: u64 },
    /// A device's MMIO pages are already passed through (`owner` may be the same domain).
    MmioShared {
        at: Site,
        range: Range,
        owner: Name,
        other: Text,
        other_range: Range,
    },
    /// An explicit MMIO range lies outside every device of the board.
    MmioUnknown { at: Site, range: Range },
    /// An MMIO range touches something the partitioner keeps.
    MmioReserved {
        at: Site,
        range: Range,
        reserved: Range,
        reason: &'static str,
    },
    /// `board-device` names no device of the board.
    UnknownDevice { at: Site, device: Text },
    /// An SPI is already passed through.
    IrqShared {
        at: Site,
        spi: u32,
        owner: Name,
        other: Text,
    },
    /// An SPI is not implemented by the interrupt controller.
    IrqRange { at: Site, spi: u32, count: u32 },
    /// An SPI belongs to a device the partitioner keeps.
    IrqReserved {
        at: Site,
        spi: u32,
        device: &'static str,
        reason: &'static str,
    },
    /// An explicit device carries an SPI that is not one of the interrupts
    /// of the board device holding its registers.
    IrqNotOfDevice {
        at: Site,
        spi: u32,
        device: &'static str,
        /// The board device the SPI belongs to, if any.
        owner: Option<&'static str>,
    },
    /// A device that can master DMA, with no IOMMU in front of it, given to
    /// a domain without `dma = "unprotected"`.
    DmaUnprotected {
        at: Site,
        /// The DMA-capable board device (given by name, or holding the
        /// explicit range).
        device: &'static str,
    },
    /// `pci-function` on a board without a PCI Express host bridge.
    PciNoHost { at: Site },
    /// A PCI function off the root bus (no bridge is modelled, and
    /// functions behind a bridge without ACS cannot be isolated).
    PciBus { at: Site, bdf: crate::pci::Bdf },
    /// A PCI function given twice.
    PciShared {
        at: Site,
        bdf: crate::pci::Bdf,
        owner: Name,
        other: Text,
    },
    /// Functions of one PCI device given to different domains.
    PciSplit {
        at: Site,
        bdf: crate::pci::Bdf,
        other_bdf: crate::pci::Bdf,
        owner: Name,
    },
    /// `bars` gives an address for a BAR that cannot exist: an index above
    /// 5, or the upper half of a 64-bit BAR.
    PciBarIndex {
        at: Site,
        bdf: crate::pci::Bdf,
        index: u32,
        why: &'static str,
    },
    /// `bars` gives an address in neither of the host's memory windows.
    PciBarWindow {
        at: Site,
        bdf: crate::pci::Bdf,
        index: u32,
        addr: u64,
        mmio32: Range,
        mmio64: Option<Range>,
    },
    /// Two BARs fixed by `bars` (of any domains) share a page.
    PciBarOverlap {
        at: Site,
        bdf: crate::pci::Bdf,
        index: u32,
        addr: u64,
        owner: Name,
        other_bdf: crate::pci::Bdf,
        other_index: u32,
    },
    /// The domain's image does not exist.
    MissingImage { at: Site, image: Text },
    /// The image does not fit between the entry point and the end of its region.
    ImageTooLarge {
        at: Site,
        size: u64,
        room: u64,
        entry: u64,
        region: Text,
    },
    /// The entry point is in none of the domain's memory regions.
    EntryOutsideRam { at: Site, entry: u64 },
    /// The entry point is not 4-byte aligned.
    EntryMisaligned { at: Site, entry: u64 },
    /// `fault-policy` is none of `inject-abort`, `stop` and `restart`.
    UnknownFaultPolicy { at: Site, value: Text },
    /// `console` is neither `virtual` nor `none`.
    UnknownConsole { at: Site, value: Text },
    /// The virtual console's guest address collides with one of the domain's mappings.
    ConsoleOverlap {
        at: Site,
        console: Range,
        other: Item,
        other_range: Range,
    },
    /// A domain with a virtual console is given a device whose SPI is the
    /// virtual console's interrupt ([`crate::plan::VIRTUAL_CONSOLE_SPI`]).
    ConsoleIrq { at: Site, spi: u32, device: Text },
    /// A region or device is mapped where the virtual GIC sits in guest
    /// space (`part` of [`crate::plan::vgic_window`], either GIC version).
    VgicOverlap {
        at: Site,
        range: Range,
        part: &'static str,
        window: Range,
    },
}

impl Error {
    /// Stable kebab-case identifier of the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "fdt-malformed",
            Error::BadCompatible { .. } => "bad-compatible",
            Error::UnknownBoard { .. } => "unknown-board",
            Error::MissingProperty { .. } => "missing-property",
            Error::BadProperty { .. } => "bad-property",
            Error::UnknownProperty { .. } => "unknown-property",
            Error::UnknownNode { .. } => "unknown-node",
            Error::NoDomains { .. } => "no-domains",
            Error::DuplicateDomain { .. } => "duplicate-domain",
            Error::BadName { .. } => "bad-name",
            Error::TooMany { what, .. } => match what {
                Limit::Domains => "too-many-domains",
                Limit::Cpus => "too-many-cpus",
                Limit::Regions => "too-many-regions",
                Limit::Devices => "too-many-devices",
                Limit::Irqs => "too-many-irqs",
            },
            Error::NoCpus { .. } => "no-cpus",
            Error::CpuUnknown { .. } => "cpu-unknown",
            Error::CpuDuplicate { .. } => "cpu-duplicate",
            Error::CpuShared { .. } => "cpu-shared",
            Error::ZeroSize { .. } => "zero-size",
            Error::Misaligned { .. } => "misaligned",
            Error::AddressOverflow { .. } => "address-overflow",
            Error::IpaRange { .. } => "ipa-range",
            Error::IpaOverlap { .. } => "ipa-overlap",
            Error::PaOverlap { .. } => "pa-overlap",
            Error::PartitionerOverlap { .. } => "partitioner-overlap",
            Error::OutsideRam { .. } => "outside-ram",
            Error::NoRam { .. } => "no-ram",
            Error::NoRoom { .. } => "no-room",
            Error::MmioShared { .. } => "mmio-shared",
            Error::MmioUnknown { .. } => "mmio-unknown",
            Error::MmioReserved { .. } => "mmio-reserved",
            Error::UnknownDevice { .. } => "unknown-device",
            Error::IrqShared { .. } => "irq-shared",
            Error::IrqRange { .. } => "irq-range",
            Error::IrqReserved { .. } => "irq-reserved",
            Error::IrqNotOfDevice { .. } => "irq-not-of-device",
            Error::DmaUnprotected { .. } => "dma-unprotected",
            Error::PciNoHost { .. } => "pci-no-host",
            Error::PciBus { .. } => "pci-bus",
            Error::PciShared { .. } => "pci-shared",
            Error::PciSplit { .. } => "pci-split",
            Error::PciBarIndex { .. } => "pci-bar-index",
            Error::PciBarWindow { .. } => "pci-bar-window",
            Error::PciBarOverlap { .. } => "pci-bar-overlap",
            Error::MissingImage { .. } => "missing-image",
            Error::ImageTooLarge { .. } => "image-too-large",
            Error::EntryOutsideRam { .. } => "entry-outside-ram",
            Error::EntryMisaligned { .. } => "entry-misaligned",
            Error::UnknownFaultPolicy { .. } => "unknown-fault-policy",
            Error::UnknownConsole { .. } => "unknown-console",
            Error::ConsoleOverlap { .. } => "console-overlap",
            Error::ConsoleIrq { .. } => "console-irq",
            Error::VgicOverlap { .. } => "vgic-overlap",
        }
    }

    /// Every code [`Error::code`] can return.
    pub const CODES: &'static [&'static str] = &[
        "fdt-malformed",
        "bad-compatible",
        "unknown-board",
        "missing-property",
        "bad-property",
        "unknown-property",
        "unknown-node",
        "no-domains",
        "duplicate-domain",
        "bad-name",
        "too-many-domains",
        "too-many-cpus",
        "too-many-regions",
        "too-many-devices",
        "too-many-irqs",
        "no-cpus",
        "cpu-unknown",
        "cpu-duplicate",
        "cpu-shared",
        "zero-size",
        "misaligned",
        "address-overflow",
        "ipa-range",
        "ipa-overlap",
        "pa-overlap",
        "partitioner-overlap",
        "outside-ram",
        "no-ram",
        "no-room",
        "mmio-shared",
        "mmio-unknown",
        "mmio-reserved",
        "unknown-device",
        "irq-shared",
        "irq-range",
        "irq-reserved",
        "irq-not-of-device",
        "dma-unprotected",
        "pci-no-host",
        "pci-bus",
        "pci-shared",
        "pci-split",
        "pci-bar-index",
        "pci-bar-window",
        "pci-bar-overlap",
        "missing-image",
        "image-too-large",
        "entry-outside-ram",
        "entry-misaligned",
        "unknown-fault-policy",
        "unknown-console",
        "console-overlap",
        "console-irq",
        "vgic-overlap",
    ];

    /// Where the error was found (`None` for a malformed blob).
    pub fn site(&self) -> Option<&Site> {
        Some(match self {
            Error::Malformed { .. } => return None,
            Error::BadCompatible { at, .. }
            | Error::UnknownBoard { at, .. }
            | Error::MissingProperty { at, .. }
            | Error::BadProperty { at, .. }
            | Error::UnknownProperty { at, .. }
            | Error::UnknownNode { at }
            | Error::NoDomains { at }
            | Error::DuplicateDomain { at }
            | Error::BadName { at, .. }
            | Error::TooMany { at, .. }
            | Error::NoCpus { at }
            | Error::CpuUnknown { at, .. }
            | Error::CpuDuplicate { at, .. }
            | Error::CpuShared { at, .. }
            | Error::ZeroSize { at }
            | Error::Misaligned { at, .. }
            | Error::AddressOverflow { at, .. }
            | Error::IpaRange { at, .. }
            | Error::IpaOverlap { at, .. }
            | Error::PaOverlap { at, .. }
            | Error::PartitionerOverlap { at, .. }
            | Error::OutsideRam { at, .. }
            | Error::NoRam { at }
            | Error::NoRoom { at, .. }
            | Error::MmioShared { at, .. }
            | Error::MmioUnknown { at, .. }
            | Error::MmioReserved { at, .. }
            | Error::UnknownDevice { at, .. }
            | Error::IrqShared { at, .. }
            | Error::IrqRange { at, .. }
            | Error::IrqReserved { at, .. }
            | Error::IrqNotOfDevice { at, .. }
            | Error::DmaUnprotected { at, .. }
            | Error::PciNoHost { at }
            | Error::PciBus { at, .. }
            | Error::PciShared { at, .. }
            | Error::PciSplit { at, .. }
            | Error::PciBarIndex { at, .. }
            | Error::PciBarWindow { at, .. }
            | Error::PciBarOverlap { at, .. }
            | Error::MissingImage { at, .. }
            | Error::ImageTooLarge { at, .. }
            | Error::EntryOutsideRam { at, .. }
            | Error::EntryMisaligned { at, .. }
            | Error::UnknownFaultPolicy { at, .. }
            | Error::UnknownConsole { at, .. }
            | Error::ConsoleIrq { at, .. }
            | Error::ConsoleOverlap { at, .. }
            | Error::VgicOverlap { at, .. } => at,
        })
    }

    /// The domain the error is about, if any.
    pub fn domain(&self) -> Option<&str> {
        self.site().and_then(|s| s.domain.as_deref())
    }

    #[inline(never)]
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed { error } => write!(f, "not a valid device tree blob: {error}"),
            Error::BadCompatible { found, expected, .. } => {
                write!(f, "compatible is \"{found}\", expected \"{expected}\"")
            }
            Error::UnknownBoard { board, .. } => write!(f, "unknown board \"{board}\""),
            Error::MissingProperty { property, .. } => {
                write!(f, "required property \"{property}\" is missing")
            }
            Error::BadProperty { problem, .. } => f.write_str(problem),
            Error::UnknownProperty { hint, .. } => {
                f.write_str("unknown property")?;
                if !hint.is_empty() {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            Error::UnknownNode { .. } => f.write_str("unknown node"),
            Error::NoDomains { .. } => f.write_str("the config defines no domain"),
            Error::DuplicateDomain { .. } => f.write_str("another domain has the same name"),
            Error::BadName { problem, .. } => f.write_str(problem),
            Error::TooMany { what, count, limit, .. } => write!(
                f,
                "{count} {} given, at most {limit} are supported",
                what.noun()
            ),
            Error::NoCpus { .. } => f.write_str("the domain has no core"),
            Error::CpuUnknown { core, count, .. } => write!(
                f,
                "core {core} is not on the board (it has cores 0..{count})"
            ),
            Error::CpuDuplicate { core, .. } => write!(f, "core {core} is listed twice"),
            Error::CpuShared { core, owner, .. } => {
                write!(f, "core {core} is already owned by domain \"{owner}\"")
            }
            Error::ZeroSize { .. } => f.write_str("size is zero"),
            Error::Misaligned { what, value, align, .. } => {
                write!(f, "{what} {value:#x} is not aligned to {align:#x}")
            }
            Error::AddressOverflow { what, base, size, .. } => write!(
                f,
                "{what} {base:#x} plus size {size:#x} overflows 64 bits"
            ),
            Error::IpaRange { range, limit, .. } => write!(
                f,
                "guest range {} ends beyond the guest address space (0..{limit:#x})",
                R(*range)
            ),
            Error::IpaOverlap { range, other, other_range, .. } => write!(
                f,
                "guest range {} overlaps {other} at {}",
                R(*range),
                R(*other_range)
            ),
            Error::PaOverlap { range, owner, other, other_range, .. } => write!(
                f,
                "physical range {} overlaps {other} of domain \"{owner}\" at {}",
                R(*range),
                R(*other_range)
            ),
            Error::PartitionerOverlap { range, partitioner, .. } => write!(
                f,
                "physical range {} overlaps the partitioner's memory {}",
                R(*range),
                R(*partitioner)
            ),
            Error::OutsideRam { range, .. } => write!(
                f,
                "physical range {} is not inside one RAM bank of the board",
                R(*range)
            ),
            Error::NoRam { .. } => f.write_str("the domain has no memory region"),
            Error::NoRoom { size, align, .. } => write!(
                f,
                "no free board RAM left for {size:#x} bytes aligned to {align:#x}"
            ),
            Error::MmioShared { range, owner, other, other_range, .. } => write!(
                f,
                "MMIO pages {} overlap those of device \"{other}\" ({}) of domain \"{owner}\"",
                R(*range),
                R(*other_range)
            ),
            Error::MmioUnknown { range, .. } => write!(
                f,
                "MMIO range {} is not inside any device of the board",
                R(*range)
            ),
            Error::MmioReserved { range, reserved, reason, .. } => write!(
                f,
                "MMIO pages {} overlap {} kept by the partitioner ({reason})",
                R(*range),
                R(*reserved)
            ),
            Error::UnknownDevice { device, .. } => {
                write!(f, "the board has no device \"{device}\"")
            }
            Error::IrqShared { spi, owner, other, .. } => write!(
                f,
                "SPI {spi} is already passed through with device \"{other}\" of domain \"{owner}\""
            ),
            Error::IrqRange { spi, count, .. } => write!(
                f,
                "SPI {spi} is out of range (the interrupt controller has SPIs 0..{count})"
            ),
            Error::IrqReserved { spi, device, reason, .. } => write!(
                f,
                "SPI {spi} belongs to device \"{device}\" kept by the partitioner ({reason})"
            ),
            Error::IrqNotOfDevice { spi, device, owner, .. } => {
                write!(
                    f,
                    "SPI {spi} is not an interrupt of board device \"{device}\", which holds these registers"
                )?;
                match owner {
                    Some(o) => write!(f, " (it belongs to board device \"{o}\")"),
                    None => write!(f, " (no board device has it)"),
                }
            }
            Error::DmaUnprotected { device, .. } => write!(
                f,
                "board device \"{device}\" masters DMA and no IOMMU covers it: it can write any physical address, including other domains' memory and the partitioner (dma = \"unprotected\" in the device node accepts the risk)"
            ),
            Error::PciNoHost { .. } => write!(
                f,
                "the board has no PCI Express host bridge that Bulkhead drives"
            ),
            Error::PciBus { bdf, .. } => write!(
                f,
                "PCI function {bdf} is not on the root bus (00): functions behind a bridge cannot be isolated from each other without ACS, and Bulkhead gives root-bus functions only"
            ),
            Error::PciShared { bdf, owner, other, .. } => write!(
                f,
                "PCI function {bdf} is already given to domain \"{owner}\" (device \"{other}\")"
            ),
            Error::PciSplit { bdf, other_bdf, owner, .. } => write!(
                f,
                "PCI function {bdf} and function {other_bdf} of domain \"{owner}\" are functions of one device: they share its DMA path and reset, so they cannot be isolated from each other; give the whole device to one domain"
            ),
            Error::PciBarIndex { bdf, index, why, .. } => write!(
                f,
                "PCI function {bdf} has no BAR{index} whose address a config could fix: {why}"
            ),
            Error::PciBarWindow { bdf, index, addr, mmio32, mmio64, .. } => {
                write!(
                    f,
                    "PCI function {bdf} BAR{index} at {addr:#x} is outside the host's memory windows ({:#x}..{:#x}",
                    mmio32.base,
                    mmio32.base.saturating_add(mmio32.size)
                )?;
                if let Some(w) = mmio64 {
                    write!(f, " and {:#x}..{:#x}", w.base, w.base.saturating_add(w.size))?;
                }
                write!(f, ")")
            }
            Error::PciBarOverlap { bdf, index, addr, owner, other_bdf, other_index, .. } => write!(
                f,
                "PCI function {bdf} BAR{index} at {addr:#x} shares its page with BAR{other_index} of PCI function {other_bdf} of domain \"{owner}\""
            ),
            Error::MissingImage { image, .. } => write!(f, "image \"{image}\" not found"),
            Error::ImageTooLarge { size, room, entry, region, .. } => write!(
                f,
                "image of {size:#x} bytes does not fit the {room:#x} bytes between entry {entry:#x} and the device-tree window at the end of memory region \"{region}\""
            ),
            Error::EntryOutsideRam { entry, .. } => write!(
                f,
                "entry point {entry:#x} is not inside any memory region of the domain"
            ),
            Error::EntryMisaligned { entry, .. } => {
                write!(f, "entry point {entry:#x} is not 4-byte aligned")
            }
            Error::UnknownFaultPolicy { value, .. } => write!(
                f,
                "unknown fault policy \"{value}\" (expected \"inject-abort\", \"stop\" or \"restart\")"
            ),
            Error::UnknownConsole { value, .. } => write!(
                f,
                "unknown console \"{value}\" (expected \"virtual\" or \"none\")"
            ),
            Error::ConsoleOverlap { console, other, other_range, .. } => write!(
                f,
                "virtual console {} overlaps {other} at {}",
                R(*console),
                R(*other_range)
            ),
            Error::ConsoleIrq { spi, device, .. } => write!(
                f,
                "SPI {spi} of device \"{device}\" is the virtual console's interrupt (the domain has a virtual console; give it `console = \"none\"` or another device)"
            ),
            Error::VgicOverlap { range, part, window, .. } => write!(
                f,
                "guest range {} overlaps the {part} at {}",
                R(*range),
                R(*window)
            ),
        }
    }
}

impl fmt::Display for Error {
    /// One line: `domain "probe": /domains/probe/cpus: core 1 is already owned by domain "hello"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.site() {
            Some(site) => {
                if let Some(domain) = &site.domain {
                    write!(f, "domain \"{domain}\": ")?;
                }
                write!(f, "{}: ", site.path)?;
            }
            None => f.write_str("config: ")?,
        }
        self.describe(f)
    }
}

/// A list that keeps at most `N` entries and remembers whether more were
/// reported: the firmware has no allocator, and a hostile input could
/// produce any number of findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capped<T, const N: usize> {
    list: heapless::Vec<T, N>,
    overflowed: bool,
}

/// What a [`Capped`] list is called in its overflow note ("errors").
pub trait Finding {
    const PLURAL: &'static str;
}

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Capped<T, N> {
    pub const fn new() -> Self {
        Self {
            list: heapless::Vec::new(),
            overflowed: false,
        }
    }
    /// Records an entry; past `N` only `overflowed` is set.
    pub fn push(&mut self, entry: T) {
        if self.list.push(entry).is_err() {
            self.overflowed = true;
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.list.iter()
    }
    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// Whether more entries were reported than could be kept.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl<T: fmt::Display + Finding, const N: usize> fmt::Display for Capped<T, N> {
    /// One entry per line, then a note if some were dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.list.iter().enumerate() {
            if i != 0 {
                f.write_char('\n')?;
            }
            write!(f, "{e}")?;
        }
        if self.overflowed {
            write!(f, "\n(more than {N} {}; the rest are not shown)", T::PLURAL)?;
        }
        Ok(())
    }
}

impl Finding for Error {
    const PLURAL: &'static str = "errors";
}

/// Every error found in a config (up to [`MAX_ERRORS`]).
pub type Errors = Capped<Error, MAX_ERRORS>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward versions [`bounded`] and [`path`] must match.
    fn bounded_ref<const N: usize>(s: &str) -> heapless::String<N> {
        let mut out = heapless::String::new();
        if out.push_str(s).is_ok() {
            return out;
        }
        let keep = N.saturating_sub(3);
        for c in s.chars() {
            if out.len() + c.len_utf8() > keep {
                break;
            }
            let _ = out.push(c);
        }
        let _ = out.push_str(&"..."[..N.min(3)]);
        out
    }

    fn path_ref(parts: &[&str]) -> Path {
        let mut out = heapless::String::<256>::new();
        for part in parts {
            let _ = out.push('/');
            for c in part.chars() {
                if out.push(c).is_err() {
                    break;
                }
            }
        }
        if out.is_empty() {
            let _ = out.push('/');
        }
        bounded_ref(&out)
    }

    const SAMPLES: &[&str] = &[
        "",
        "a",
        "ab",
        "abc",
        "abcd",
        "abcdef",
        "é",
        "aé",
        "éé",
        "aéé",
        "€€",
        "a€€",
        "ab€",
        "😀😀",
        "a😀",
        "hello-domain",
        "0123456789012345678901234567890",
        "01234567890123456789012345678901",
        "012345678901234567890123456789012",
        "0123456789012345678901234567890é",
        "012345678901234567890123456789€x",
        "01234567890123456789012345678€€€€",
        "0123456789012345678901234567😀😀",
    ];

    #[test]
    fn bounded_matches_reference() {
        for s in SAMPLES {
            assert_eq!(bounded::<0>(s), bounded_ref::<0>(s), "{s}");
            assert_eq!(bounded::<1>(s), bounded_ref::<1>(s), "{s}");
            assert_eq!(bounded::<2>(s), bounded_ref::<2>(s), "{s}");
            assert_eq!(bounded::<3>(s), bounded_ref::<3>(s), "{s}");
            assert_eq!(bounded::<4>(s), bounded_ref::<4>(s), "{s}");
            assert_eq!(bounded::<5>(s), bounded_ref::<5>(s), "{s}");
            assert_eq!(bounded::<6>(s), bounded_ref::<6>(s), "{s}");
            assert_eq!(bounded::<MAX_NAME>(s), bounded_ref::<MAX_NAME>(s), "{s}");
            assert_eq!(bounded::<TEXT_LEN>(s), bounded_ref::<TEXT_LEN>(s), "{s}");
        }
    }

    #[test]
    fn path_matches_reference() {
        let long = "x".repeat(250);
        let long_wide = "é".repeat(130);
        let odd = "a".repeat(253);
        let mut lists: std::vec::Vec<std::vec::Vec<&str>> = std::vec![
            std::vec![],
            std::vec![""],
            std::vec!["", ""],
            std::vec!["domains", "hello", "memory", "ram", "guest-address"],
            std::vec![long.as_str(), "€€€", "abc"],
            std::vec![long.as_str(), "abcdefgh", "z"],
            std::vec![odd.as_str(), "€", "b"],
            std::vec![odd.as_str(), "😀", "é", "c"],
            std::vec![long_wide.as_str(), "q"],
            std::vec![long.as_str(), long.as_str()],
        ];
        for a in SAMPLES {
            for b in SAMPLES {
                lists.push(std::vec![a, b]);
                lists.push(std::vec!["domains", a, "devices", b, long.as_str()]);
            }
        }
        for parts in &lists {
            assert_eq!(path(parts), path_ref(parts), "{parts:?}");
        }
    }
}
