//! Guest device trees.
//!
//! Two parts:
//!
//! * [`FdtWriter`], a small flattened-device-tree (DTB) writer of our own. It
//!   needs no allocator: it writes into a caller-provided buffer and reports
//!   [`DtbError::BufferTooSmall`] when the tree does not fit.
//! * [`domain_tree`], which describes one domain (its vCPUs, RAM, passthrough
//!   devices and console) to the software running in it, and [`dtb_ipa`],
//!   which says where in the domain's RAM the tree is placed.
//!
//! The blob layout is the conventional one: header, memory-reservation block
//! (empty: just the terminating entry), structure block, strings block.

use crate::plan::{
    DomainPlan, GicVersion, VGICC_IPA, VGICC_SIZE, VGICD_IPA, VGICD_SIZE, VGICR_IPA, VGICR_STRIDE,
    VIRTUAL_CONSOLE_SPI, VTIMER_INTID,
};
use core::fmt::Write as _;

/// Largest device tree [`domain_tree`] produces, in bytes.
pub const DTB_MAX: usize = 16 * 1024;

/// Bytes reserved for the device tree at the top of the RAM mapping holding
/// the domain's entry point (see [`dtb_ipa`]).
pub const DTB_RESERVED: u64 = 64 * 1024;

/// `0xd00dfeed`, the first word of every device tree blob (big-endian).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Version of the blob format written.
pub const FDT_VERSION: u32 = 17;
/// Oldest format version the written blobs are compatible with.
pub const FDT_LAST_COMP_VERSION: u32 = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Size of the blob header (version 17).
const HEADER_SIZE: usize = 40;
/// The memory-reservation block follows the header (8-byte aligned).
const RSVMAP_OFFSET: usize = HEADER_SIZE;
/// One terminating all-zero `{address, size}` entry.
const RSVMAP_SIZE: usize = 16;
/// The structure block follows the memory-reservation block.
const STRUCT_OFFSET: usize = RSVMAP_OFFSET + RSVMAP_SIZE;

/// Why a device tree could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// The output buffer is too small for the tree.
    BufferTooSmall,
    /// Calls out of order: a property outside any node or after a child
    /// node, `end_node` without a matching `begin_node`, a second root node,
    /// or `finish` with nodes still open or no root node at all.
    BadStructure,
    /// A node name, property name or string value contains a NUL byte, or a
    /// generated name is too long.
    InvalidString,
}

impl core::fmt::Display for DtbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DtbError::BufferTooSmall => "device tree does not fit in its buffer",
            DtbError::BadStructure => "device tree nodes and properties out of order",
            DtbError::InvalidString => "device tree name or string is not encodable",
        })
    }
}

/// Writes a flattened device tree into a caller-provided buffer.
///
/// The structure block grows up from the front of the buffer while the
/// property-name strings collect at its back; [`FdtWriter::finish`] moves the
/// strings down behind the structure block and fills in the header. Property
/// names are de-duplicated (a name that is the tail of one already stored,
/// like `cells` in `#size-cells`, shares its bytes).
///
/// ```
/// # use bulkhead_core::dtb::FdtWriter;
/// let mut buf = [0u8; 256];
/// let mut w = FdtWriter::new(&mut buf).unwrap();
/// w.begin_node("").unwrap();
/// w.prop_u32("#address-cells", 2).unwrap();
/// w.end_node().unwrap();
/// let len = w.finish().unwrap();
/// assert_eq!(&buf[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
/// assert_eq!(u32::from_be_bytes(buf[4..8].try_into().unwrap()) as usize, len);
/// ```
pub struct FdtWriter<'a> {
    buf: &'a mut [u8],
    /// End of the structure block written so far.
    pos: usize,
    /// Start of the strings stored so far; they occupy `strings..buf.len()`.
    /// Until [`FdtWriter::finish`], a property's name offset holds the
    /// distance from the end of the buffer to its name.
    strings: usize,
    /// Nodes currently open.
    depth: usize,
    /// The root node has been closed; nothing more may be added.
    root_done: bool,
    /// The current node already has a child, so no more properties.
    props_closed: bool,
}

impl<'a> FdtWriter<'a> {
    /// Starts a tree in `buf`. Fails if `buf` cannot even hold the header,
    /// the memory-reservation block and the end token.
    pub fn new(buf: &'a mut [u8]) -> Result<Self, DtbError> {
        if buf.len() < STRUCT_OFFSET + 4 {
            return Err(DtbError::BufferTooSmall);
        }
        // Header (filled in by `finish`) and the terminating reservation entry.
        buf[..STRUCT_OFFSET].fill(0);
        let strings = buf.len();
        Ok(Self {
            buf,
            pos: STRUCT_OFFSET,
            strings,
            depth: 0,
            root_done: false,
            props_closed: false,
        })
    }

    /// Opens a node. The root node's name is `""`; others are
    /// `name` or `name@unit-address`.
    pub fn begin_node(&mut self, name: &str) -> Result<(), DtbError> {
        if self.root_done {
            return Err(DtbError::BadStructure);
        }
        check_string(name)?;
        let padded = align4(name.len() + 1);
        self.reserve(4 + padded)?;
        self.put_u32(FDT_BEGIN_NODE);
        self.put_padded(name.as_bytes(), padded);
        self.depth += 1;
        self.props_closed = false;
        Ok(())
    }

    /// [`FdtWriter::begin_node`] with a formatted name (at most 80 bytes).
    #[inline(never)]
    fn begin_node_fmt(&mut self, name_args: core::fmt::Arguments<'_>) -> Result<(), DtbError> {
        self.begin_node(&name(name_args)?)
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), DtbError> {
        if self.depth == 0 {
            return Err(DtbError::BadStructure);
        }
        self.reserve(4)?;
        self.put_u32(FDT_END_NODE);
        self.depth -= 1;
        // The parent (if any) now has a child: its properties are closed.
        self.props_closed = true;
        if self.depth == 0 {
            self.root_done = true;
        }
        Ok(())
    }

    /// Adds a property with a raw value to the current node.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), DtbError> {
        self.property_with(name, value.len(), |dst| dst.copy_from_slice(value))
    }

    /// Adds a property without a value (a boolean flag).
    pub fn prop_empty(&mut self, name: &str) -> Result<(), DtbError> {
        self.property(name, &[])
    }

    /// Adds a one-cell property.
    pub fn prop_u32(&mut self, name: &str, value: u32) -> Result<(), DtbError> {
        self.property(name, &value.to_be_bytes())
    }

    /// Adds a property of 32-bit cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), DtbError> {
        self.property_with(name, cells.len() * 4, |dst| {
            for (chunk, cell) in dst.chunks_exact_mut(4).zip(cells) {
                chunk.copy_from_slice(&cell.to_be_bytes());
            }
        })
    }

    /// Adds a property of 64-bit values, each written as two cells (high
    /// word first). With `#address-cells = <2>` and `#size-cells = <2>`,
    /// `prop_u64s("reg", &[base, size])` is a one-entry `reg`.
    pub fn prop_u64s(&mut self, name: &str, values: &[u64]) -> Result<(), DtbError> {
        self.property_with(name, values.len() * 8, |dst| {
            for (chunk, value) in dst.chunks_exact_mut(8).zip(values) {
                chunk.copy_from_slice(&value.to_be_bytes());
            }
        })
    }

    /// Adds a string property (NUL-terminated in the blob).
    pub fn prop_str(&mut self, name: &str, value: &str) -> Result<(), DtbError> {
        self.prop_strs(name, &[value])
    }

    /// Adds a string-list property (each string NUL-terminated in the blob).
    pub fn prop_strs(&mut self, name: &str, values: &[&str]) -> Result<(), DtbError> {
        for value in values {
            check_string(value)?;
        }
        let len = values.iter().map(|v| v.len() + 1).sum();
        self.property_with(name, len, |dst| {
            let mut at = 0;
            for value in values {
                dst[at..at + value.len()].copy_from_slice(value.as_bytes());
                dst[at + value.len()] = 0;
                at += value.len() + 1;
            }
        })
    }

    /// Ends the tree: writes the end token, moves the strings behind the
    /// structure block and fills in the header. Returns the blob's length;
    /// the blob is `buf[..len]`.
    pub fn finish(mut self) -> Result<usize, DtbError> {
        if self.depth != 0 || !self.root_done {
            return Err(DtbError::BadStructure);
        }
        // `reserve` always kept these 4 bytes free.
        debug_assert!(self.strings - self.pos >= 4);
        self.put_u32(FDT_END);
        let struct_end = self.pos;
        let strings_size = self.buf.len() - self.strings;
        self.fix_name_offsets(struct_end, strings_size);
        let strings_start = self.strings;
        let end = self.buf.len();
        self.buf.copy_within(strings_start..end, struct_end);
        let total = struct_end + strings_size;

        let header: [u32; 10] = [
            FDT_MAGIC,
            to_u32(total)?,
            to_u32(STRUCT_OFFSET)?,
            to_u32(struct_end)?,
            to_u32(RSVMAP_OFFSET)?,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            0, // boot_cpuid_phys
            to_u32(strings_size)?,
            to_u32(struct_end - STRUCT_OFFSET)?,
        ];
        for (chunk, word) in self.buf[..HEADER_SIZE].chunks_exact_mut(4).zip(header) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Ok(total)
    }

    /// Adds a property whose `len`-byte value `fill` writes in place.
    fn property_with(
        &mut self,
        name: &str,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DtbError> {
        let start = self.property_header(name, len)?;
        fill(&mut self.buf[start..start + len]);
        self.property_end(start, len);
        Ok(())
    }

    /// The part of [`FdtWriter::property_with`] before the value (not
    /// generic, so that it exists once): checks, reserves room, writes the
    /// token, length and name reference, and returns where the value goes.
    #[inline(never)]
    fn property_header(&mut self, name: &str, len: usize) -> Result<usize, DtbError> {
        if self.depth == 0 || self.props_closed {
            return Err(DtbError::BadStructure);
        }
        check_string(name)?;
        let name_ref = self.intern(name)?;
        let padded = align4(len);
        self.reserve(12 + padded)?;
        self.put_u32(FDT_PROP);
        self.put_u32(to_u32(len)?);
        self.put_u32(name_ref);
        Ok(self.pos)
    }

    /// The part of [`FdtWriter::property_with`] after the value: its padding.
    #[inline(never)]
    fn property_end(&mut self, start: usize, len: usize) {
        let padded = align4(len);
        self.buf[start + len..start + padded].fill(0);
        self.pos += padded;
    }

    /// Stores a property name (or finds it already stored) and returns its
    /// provisional reference: the distance from the end of the buffer.
    fn intern(&mut self, name: &str) -> Result<u32, DtbError> {
        let end = self.buf.len();
        let wanted = name.as_bytes();
        let mut at = self.strings;
        while at < end {
            let len = self.buf[at..end]
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(end - at);
            let stored = &self.buf[at..at + len];
            if stored.ends_with(wanted) {
                return to_u32(end - (at + len - wanted.len()));
            }
            at += len + 1;
        }
        let needed = wanted.len() + 1;
        if self.strings - self.pos < needed {
            return Err(DtbError::BufferTooSmall);
        }
        self.strings -= needed;
        let at = self.strings;
        self.buf[at..at + wanted.len()].copy_from_slice(wanted);
        self.buf[at + wanted.len()] = 0;
        to_u32(end - at)
    }

    /// Rewrites every property's provisional name reference into an offset
    /// from the start of the final strings block.
    fn fix_name_offsets(&mut self, struct_end: usize, strings_size: usize) {
        let mut at = STRUCT_OFFSET;
        while at < struct_end {
            let token = self.get_u32(at);
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let len = self.buf[at..].iter().position(|&b| b == 0).unwrap_or(0);
                    at += align4(len + 1);
                }
                FDT_PROP => {
                    let len = self.get_u32(at) as usize;
                    let from_end = self.get_u32(at + 4) as usize;
                    let offset = (strings_size - from_end) as u32;
                    self.buf[at + 4..at + 8].copy_from_slice(&offset.to_be_bytes());
                    at += 8 + align4(len);
                }
                // FDT_END_NODE, FDT_NOP and FDT_END carry no data.
                _ => debug_assert!(matches!(token, FDT_END_NODE | FDT_NOP | FDT_END)),
            }
        }
    }

    /// Fails unless `n` more structure bytes fit below the strings.
    fn reserve(&self, n: usize) -> Result<(), DtbError> {
        // Keep room for the final end token as well.
        if self.strings - self.pos < n + 4 {
            Err(DtbError::BufferTooSmall)
        } else {
            Ok(())
        }
    }

    fn put_u32(&mut self, value: u32) {
        self.buf[self.pos..self.pos + 4].copy_from_slice(&value.to_be_bytes());
        self.pos += 4;
    }

    /// Writes a NUL-terminated `bytes` zero-padded to `padded` bytes.
    fn put_padded(&mut self, bytes: &[u8], padded: usize) {
        let start = self.pos;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.buf[start + bytes.len()..start + padded].fill(0);
        self.pos += padded;
    }

    fn get_u32(&self, at: usize) -> u32 {
        let mut word = [0; 4];
        word.copy_from_slice(&self.buf[at..at + 4]);
        u32::from_be_bytes(word)
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn to_u32(n: usize) -> Result<u32, DtbError> {
    u32::try_from(n).map_err(|_| DtbError::BufferTooSmall)
}

fn check_string(s: &str) -> Result<(), DtbError> {
    if s.as_bytes().contains(&0) {
        Err(DtbError::InvalidString)
    } else {
        Ok(())
    }
}

/// A short formatted string (node names, paths) built without allocating.
/// Held in the same type as [`crate::error::Path`] (one `fmt::Write`
/// implementation in the image instead of two), but at most [`NAME_LEN`]
/// bytes long.
type Name = heapless::String<{ crate::error::PATH_LEN }>;
/// Longest [`Name`].
const NAME_LEN: usize = 80;
const _: () = assert!(NAME_LEN <= crate::error::PATH_LEN);

fn name(args: core::fmt::Arguments<'_>) -> Result<Name, DtbError> {
    let mut s = Name::new();
    // The lengths only grow: longer than NAME_LEN at the end is the same
    // as not fitting a `String<NAME_LEN>` on the way.
    if s.write_fmt(args).is_err() || s.len() > NAME_LEN {
        return Err(DtbError::InvalidString);
    }
    Ok(s)
}

/// `interrupts` specifier type for an SPI (GIC binding).
const GIC_SPI: u32 = 0;
/// `interrupts` specifier type for a PPI (GIC binding).
const GIC_PPI: u32 = 1;
/// `interrupts` specifier flags: level-sensitive, active high.
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// First INTID of the PPIs: a PPI specifier holds `INTID - 16`.
const PPI_BASE: u32 = 16;

/// Phandle of the interrupt controller node, the root's `interrupt-parent`.
pub const GIC_PHANDLE: u32 = 1;

/// The generic timer's four PPIs in the order the `arm,armv8-timer` binding
/// lists them: secure physical (INTID 29), non-secure physical (30), virtual
/// ([`VTIMER_INTID`], 27) and hypervisor physical (26) timer.
pub const TIMER_INTIDS: [u32; 4] = [29, 30, VTIMER_INTID, 26];

/// Writes the device tree describing `plan` to the software running in the
/// domain into `out` (at most [`DTB_MAX`] bytes of it) and returns its length.
///
/// Contents, all addresses being guest (intermediate physical) addresses:
///
/// * `/`: `#address-cells = <2>`, `#size-cells = <2>`,
///   `compatible = "bulkhead,domain"`, `model = "Bulkhead domain <name>"`,
///   `interrupt-parent = <&gic>` ([`GIC_PHANDLE`]).
/// * `/chosen`: `bootargs`, `bulkhead,domain-name` and, when the domain has a
///   console, `stdout-path` naming its node: the virtual console if the
///   domain has one, otherwise its first passthrough serial port (a PL011
///   or a Cadence UART, see [`BINDINGS`]); with [`domain_tree_seeded`],
///   `rng-seed` and `kaslr-seed` (see [`crate::entropy`]).
/// * `/cpus`: `cpu@N` for each virtual CPU `N`, started through PSCI.
/// * `memory@<ipa>` for each RAM mapping.
/// * `/psci`: PSCI 1.0 over HVC (the partitioner implements it).
/// * `intc@8000000`, the virtual GIC of generation `gic`, with `phandle`
///   [`GIC_PHANDLE`], `interrupt-controller`, `#interrupt-cells = <3>` and
///   `#address-cells = <0>` (no `interrupt-map` uses it; dtc wants it).
///   GICv3: `compatible = "arm,gic-v3"`, `#redistributor-regions = <1>`,
///   `reg = <GICD, GICR>` where the redistributor region holds one
///   [`VGICR_STRIDE`] frame pair per vCPU. GICv2:
///   `compatible = "arm,cortex-a15-gic"`, `reg = <GICD, GICC>`.
/// * `timer`: `compatible = "arm,armv8-timer"`, `interrupts` = the four
///   timer PPIs ([`TIMER_INTIDS`]) as `<1 ppi flags>`, flags level-high,
///   on GICv2 with the CPU mask of the domain's vCPUs in bits \[15:8\].
/// * `<name>@<ipa>` for each passthrough device, with its `compatible`
///   (and clocks, for the kinds in [`BINDINGS`]), `reg` and, for each SPI,
///   `interrupts = <0 spi 4>` (level, active high).
/// * `apb-pclk`, the PL011s' fixed clock, and any other fixed clock a
///   passthrough device's binding names (`uart-ref-clk`).
/// * `uart@<ipa>` for the virtual console: a PL011.
pub fn domain_tree(plan: &DomainPlan, gic: GicVersion, out: &mut [u8]) -> Result<usize, DtbError> {
    domain_tree_seeded(plan, gic, None, out)
}

/// [`domain_tree`] with this run's seeds in `/chosen` when there are any.
#[inline(never)]
pub fn domain_tree_seeded(
    plan: &DomainPlan,
    gic: GicVersion,
    seeds: Option<&crate::entropy::DomainSeeds>,
    out: &mut [u8],
) -> Result<usize, DtbError> {
    let cap = out.len().min(DTB_MAX);
    let mut w = FdtWriter::new(&mut out[..cap])?;
    let domain = plan.name.as_str();

    w.begin_node("")?;
    w.prop_u32("#address-cells", 2)?;
    w.prop_u32("#size-cells", 2)?;
    w.prop_str("compatible", "bulkhead,domain")?;
    w.prop_str("model", &name(format_args!("Bulkhead domain {domain}"))?)?;
    // Root properties must precede the child nodes.
    w.prop_u32("interrupt-parent", GIC_PHANDLE)?;

    w.begin_node("chosen")?;
    w.prop_str("bootargs", &plan.bootargs)?;
    w.prop_str("bulkhead,domain-name", domain)?;
    if let Some(path) = console_path(plan)? {
        w.prop_str("stdout-path", &path)?;
    }
    if let Some(start) = initrd_ipa(plan) {
        w.prop_u64s("linux,initrd-start", &[start])?;
        w.prop_u64s("linux,initrd-end", &[start + plan.initrd_size])?;
    }
    if plan.devices.iter().any(|d| d.pci.is_some()) {
        // The partitioner placed the BARs: the guest keeps them there.
        w.prop_u32("linux,pci-probe-only", 1)?;
    }
    if let Some(s) = seeds {
        w.property("rng-seed", &s.rng)?;
        w.prop_u64s("kaslr-seed", &[s.kaslr])?;
    }
    w.end_node()?;

    w.begin_node("cpus")?;
    w.prop_u32("#address-cells", 1)?;
    w.prop_u32("#size-cells", 0)?;
    for n in 0..plan.cpus.len() {
        let n = to_u32(n)?;
        w.begin_node_fmt(format_args!("cpu@{}", u64::from(n)))?;
        w.prop_str("device_type", "cpu")?;
        w.prop_str("compatible", "arm,armv8")?;
        w.prop_u32("reg", n)?;
        w.prop_str("enable-method", "psci")?;
        w.end_node()?;
    }
    w.end_node()?;

    for ram in &plan.ram {
        w.begin_node_fmt(format_args!("memory@{:x}", ram.ipa))?;
        w.prop_str("device_type", "memory")?;
        w.prop_u64s("reg", &[ram.ipa, ram.size])?;
        w.end_node()?;
    }

    w.begin_node("psci")?;
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"])?;
    w.prop_str("method", "hvc")?;
    w.end_node()?;

    interrupt_controller(&mut w, gic, plan.cpus.len())?;
    timer(&mut w, gic, plan.cpus.len())?;

    // The clock PrimeCell devices (the PL011s) name, as on QEMU virt; then
    // any other clock a passthrough device's binding needs, once.
    fixed_clock(&mut w, &APB_PCLK)?;
    for clock in &CLOCKS[1..] {
        if uses_clock(plan, clock) {
            fixed_clock(&mut w, clock)?;
        }
    }

    // (A PCI function without memory BARs has no node of its own: it is
    // found on the host bridge's bus.)
    for dev in plan
        .devices
        .iter()
        .filter(|d| d.pci.is_none() || d.mapping.size > 0)
    {
        let ipa = dev.mapping.ipa;
        w.begin_node_fmt(format_args!("{}@{ipa:x}", dev.name))?;
        match binding(&dev.compatible) {
            Some(b) => binding_props(&mut w, b)?,
            None => w.prop_str("compatible", &dev.compatible)?,
        }
        w.prop_u64s("reg", &[ipa, dev.mapping.size])?;
        if !dev.spis.is_empty() {
            let mut cells = [0u32; 3 * crate::plan::MAX_IRQS];
            for (spec, &spi) in cells.chunks_exact_mut(3).zip(&dev.spis) {
                spec.copy_from_slice(&[GIC_SPI, spi, IRQ_TYPE_LEVEL_HIGH]);
            }
            w.prop_cells("interrupts", &cells[..3 * dev.spis.len()])?;
        }
        w.end_node()?;
    }

    pcie_host(&mut w, plan)?;

    if let Some(ipa) = plan.virtual_console {
        w.begin_node_fmt(format_args!("uart@{ipa:x}"))?;
        pl011_props(&mut w)?;
        w.prop_u64s("reg", &[ipa, 0x1000])?;
        // Its own virtual SPI, level-high like a PL011's (same on GICv2 and
        // GICv3; see `plan::VIRTUAL_CONSOLE_SPI`).
        w.prop_cells(
            "interrupts",
            &[GIC_SPI, VIRTUAL_CONSOLE_SPI, IRQ_TYPE_LEVEL_HIGH],
        )?;
        w.end_node()?;
    }

    w.end_node()?;
    w.finish()
}

/// Phandle of the `apb-pclk` fixed clock.
pub const CLOCK_PHANDLE: u32 = 2;
/// Its rate (what QEMU virt gives its PL011s).
pub const APB_PCLK_HZ: u32 = 24_000_000;

/// The domain's PCIe host bridge, if it owns PCI functions: a generic ECAM
/// host at [`crate::pci::VECAM_IPA`] (emulated: only its own functions are
/// on its bus), one memory range per function (its BAR block, guest =
/// physical), each function's INTA routed to its SPI, no MSI controller (so
/// drivers fall back to INTx), DMA coherent.
fn pcie_host(w: &mut FdtWriter<'_>, plan: &DomainPlan) -> Result<(), DtbError> {
    use crate::pci::{VECAM_IPA, VECAM_SIZE};
    let functions = || plan.devices.iter().filter_map(|d| d.pci.map(|b| (b, d)));
    if functions().next().is_none() {
        return Ok(());
    }
    w.begin_node_fmt(format_args!("pcie@{VECAM_IPA:x}"))?;
    w.prop_str("compatible", "pci-host-ecam-generic")?;
    w.prop_str("device_type", "pci")?;
    w.prop_u32("#address-cells", 3)?;
    w.prop_u32("#size-cells", 2)?;
    w.prop_u32("#interrupt-cells", 1)?;
    w.prop_cells("bus-range", &[0, 0])?;
    w.prop_u64s("reg", &[VECAM_IPA, VECAM_SIZE])?;
    // ranges: <pci.hi pci.mid pci.lo  cpu.hi cpu.lo  size.hi size.lo>,
    // 32-bit memory space (0x02000000), identity.
    let mut ranges = [0u32; 7 * crate::plan::MAX_DEVICES];
    let mut n = 0;
    for (_, d) in functions().filter(|(_, d)| d.mapping.size > 0) {
        let m = d.mapping;
        ranges[7 * n..7 * n + 7].copy_from_slice(&[
            0x0200_0000,
            (m.ipa >> 32) as u32,
            m.ipa as u32,
            (m.ipa >> 32) as u32,
            m.ipa as u32,
            (m.size >> 32) as u32,
            m.size as u32,
        ]);
        n += 1;
    }
    // (No BAR placed yet, as on the host before boot: no `ranges`, which
    // an empty one would make an identity mapping.)
    if n > 0 {
        w.prop_cells("ranges", &ranges[..7 * n])?;
    }
    // interrupt-map: <child unit address (3) pin (1)> <gic> <parent
    // interrupt (3)> (the GIC node has #address-cells = <0>).
    w.prop_cells("interrupt-map-mask", &[0xf800, 0, 0, 7])?;
    let mut map = [0u32; 8 * crate::plan::MAX_DEVICES];
    let mut n = 0;
    for (bdf, d) in functions() {
        if let Some(&spi) = d.spis.first() {
            map[8 * n..8 * n + 8].copy_from_slice(&[
                (bdf.device as u32) << 11,
                0,
                0,
                1,
                GIC_PHANDLE,
                GIC_SPI,
                spi,
                IRQ_TYPE_LEVEL_HIGH,
            ]);
            n += 1;
        }
    }
    if n > 0 {
        w.prop_cells("interrupt-map", &map[..8 * n])?;
    }
    w.prop_empty("dma-coherent")?;
    w.end_node()
}

/// Phandle of the Cadence UARTs' reference clock (`uart-ref-clk`).
pub const UART_REF_CLOCK_PHANDLE: u32 = 3;

/// A fixed-rate clock node the generated tree may have.
#[derive(Debug, PartialEq, Eq)]
pub struct FixedClock {
    pub node: &'static str,
    pub phandle: u32,
    pub hz: u32,
    pub output: &'static str,
}

/// The PrimeCell bus clock, always in the tree (the virtual console is a
/// PL011).
pub const APB_PCLK: FixedClock = FixedClock {
    node: "apb-pclk",
    phandle: CLOCK_PHANDLE,
    hz: APB_PCLK_HZ,
    output: "clk24mhz",
};

/// The ZynqMP's UART reference clock: 100 MHz as the ZCU102's boot
/// firmware sets it up (Linux's `xuartps` derives the baud divisor from
/// it; under QEMU the rate does not matter).
pub const UART_REF_CLK: FixedClock = FixedClock {
    node: "uart-ref-clk",
    phandle: UART_REF_CLOCK_PHANDLE,
    hz: 100_000_000,
    output: "uart_ref_clk",
};

/// What Linux's driver for a kind of passthrough device needs in its node,
/// found by the board device's `compatible`: the compatibles the driver
/// matches, and clocks by name (each fed by one fixed clock). Devices of
/// any other kind get their `compatible` only.
#[derive(Debug)]
pub struct Binding {
    /// The board device's `compatible`.
    pub compatible: &'static str,
    /// The node's `compatible` list.
    pub compatibles: &'static [&'static str],
    /// `clock-names`; every one is `clock`.
    pub clock_names: &'static [&'static str],
    pub clock: &'static FixedClock,
    /// A serial port: the domain's console if it has no virtual one.
    pub serial: bool,
}

/// Every kind of device with a [`Binding`].
pub const BINDINGS: &[Binding] = &[
    // Linux's AMBA driver: both compatibles and the two PrimeCell clocks.
    Binding {
        compatible: "arm,pl011",
        compatibles: &["arm,pl011", "arm,primecell"],
        clock_names: &["uartclk", "apb_pclk"],
        clock: &APB_PCLK,
        serial: true,
    },
    // Linux's `xuartps` (ttyPS*): the Cadence UART of the Zynq and ZynqMP.
    Binding {
        compatible: "cdns,uart-r1p12",
        compatibles: &["cdns,uart-r1p12", "xlnx,xuartps"],
        clock_names: &["uart_clk", "pclk"],
        clock: &UART_REF_CLK,
        serial: true,
    },
    // Linux's imx UART driver (`imx.c`) matches "fsl,imx6q-uart" and takes
    // its baud clock from "per" (24 MHz, as the i.MX 8M's UART root clock).
    Binding {
        compatible: "fsl,imx8mp-uart",
        compatibles: &["fsl,imx8mp-uart", "fsl,imx6q-uart"],
        clock_names: &["ipg", "per"],
        clock: &APB_PCLK,
        serial: true,
    },
];

/// Every fixed clock a tree may have; the first is always there.
pub const CLOCKS: &[&FixedClock] = &[&APB_PCLK, &UART_REF_CLK];

/// Whether a passthrough device of `plan` names `clock`.
fn uses_clock(plan: &DomainPlan, clock: &FixedClock) -> bool {
    plan.devices
        .iter()
        .any(|d| binding(&d.compatible).is_some_and(|b| b.clock == clock))
}

/// The binding of devices whose `compatible` is `compatible`, if any.
pub fn binding(compatible: &str) -> Option<&'static Binding> {
    BINDINGS.iter().find(|b| b.compatible == compatible)
}

/// A `fixed-clock` node.
fn fixed_clock(w: &mut FdtWriter<'_>, c: &FixedClock) -> Result<(), DtbError> {
    w.begin_node(c.node)?;
    w.prop_str("compatible", "fixed-clock")?;
    w.prop_u32("#clock-cells", 0)?;
    w.prop_u32("clock-frequency", c.hz)?;
    w.prop_str("clock-output-names", c.output)?;
    w.prop_u32("phandle", c.phandle)?;
    w.end_node()
}

/// A device node's `compatible`, `clocks` and `clock-names` from its binding.
fn binding_props(w: &mut FdtWriter<'_>, b: &Binding) -> Result<(), DtbError> {
    w.prop_strs("compatible", b.compatibles)?;
    let mut clocks = [0u32; 4];
    let clocks = &mut clocks[..b.clock_names.len()];
    clocks.fill(b.clock.phandle);
    w.prop_cells("clocks", clocks)?;
    w.prop_strs("clock-names", b.clock_names)
}

/// What a PL011 node needs for Linux's AMBA driver (the virtual console).
fn pl011_props(w: &mut FdtWriter<'_>) -> Result<(), DtbError> {
    binding_props(w, &BINDINGS[0])
}

/// The `intc@<ipa>` node: the domain's virtual GIC.
fn interrupt_controller(
    w: &mut FdtWriter<'_>,
    gic: GicVersion,
    vcpus: usize,
) -> Result<(), DtbError> {
    w.begin_node_fmt(format_args!("intc@{VGICD_IPA:x}"))?;
    match gic {
        GicVersion::V3 => {
            w.prop_str("compatible", "arm,gic-v3")?;
            w.prop_u32("#interrupt-cells", 3)?;
            w.prop_empty("interrupt-controller")?;
            w.prop_u32("#address-cells", 0)?;
            w.prop_u32("#redistributor-regions", 1)?;
            let redist_size = VGICR_STRIDE * vcpus as u64;
            w.prop_u64s("reg", &[VGICD_IPA, VGICD_SIZE, VGICR_IPA, redist_size])?;
        }
        GicVersion::V2 => {
            w.prop_str("compatible", "arm,cortex-a15-gic")?;
            w.prop_u32("#interrupt-cells", 3)?;
            w.prop_empty("interrupt-controller")?;
            w.prop_u32("#address-cells", 0)?;
            w.prop_u64s("reg", &[VGICD_IPA, VGICD_SIZE, VGICC_IPA, VGICC_SIZE])?;
        }
    }
    w.prop_u32("phandle", GIC_PHANDLE)?;
    w.end_node()
}

/// The `timer` node: the generic timer and its four PPIs.
fn timer(w: &mut FdtWriter<'_>, gic: GicVersion, vcpus: usize) -> Result<(), DtbError> {
    let flags = IRQ_TYPE_LEVEL_HIGH | ppi_cpu_mask(gic, vcpus);
    let mut cells = [0u32; 3 * TIMER_INTIDS.len()];
    for (spec, intid) in cells.chunks_exact_mut(3).zip(TIMER_INTIDS) {
        spec.copy_from_slice(&[GIC_PPI, intid - PPI_BASE, flags]);
    }
    w.begin_node("timer")?;
    w.prop_str("compatible", "arm,armv8-timer")?;
    w.prop_cells("interrupts", &cells)?;
    w.end_node()
}

/// GICv2 PPI specifiers carry a mask of the CPU interfaces the PPI is wired
/// to in bits \[15:8\] (one bit per vCPU, at most 8); GICv3 ones do not.
fn ppi_cpu_mask(gic: GicVersion, vcpus: usize) -> u32 {
    match gic {
        GicVersion::V3 => 0,
        GicVersion::V2 => {
            let mask = (1u32 << vcpus.min(8)) - 1;
            mask << 8
        }
    }
}

/// Path of the node the domain's console is: its virtual console if it has
/// one, otherwise its first passthrough serial port, otherwise none.
fn console_path(plan: &DomainPlan) -> Result<Option<Name>, DtbError> {
    if let Some(ipa) = plan.virtual_console {
        return name(format_args!("/uart@{ipa:x}")).map(Some);
    }
    plan.devices
        .iter()
        .find(|d| binding(&d.compatible).is_some_and(|b| b.serial))
        .map(|d| name(format_args!("/{}@{:x}", d.name, d.mapping.ipa)))
        .transpose()
}

/// Guest address the domain's device tree is placed at: [`DTB_RESERVED`]
/// bytes below the end of the RAM mapping holding the entry point. `None`
/// when there is no such mapping or the image (from the entry point on)
/// would reach into the reserved window, i.e. when a mapping starting at the
/// entry point is smaller than `image_size + DTB_RESERVED`.
pub fn dtb_ipa(plan: &DomainPlan) -> Option<u64> {
    let ram = plan.ram_at(plan.entry)?;
    let at = ram.ipa.checked_add(ram.size)?.checked_sub(DTB_RESERVED)?;
    let initrd = plan.initrd_size.checked_next_multiple_of(4096)?;
    let image_end = plan
        .entry
        .checked_add(plan.image_size)?
        .checked_add(initrd)?;
    (image_end <= at).then_some(at)
}

/// Guest address of the domain's initial RAM disk, if it has one: page
/// aligned, right below the device tree (validation guarantees it does not
/// reach into the image).
pub fn initrd_ipa(plan: &DomainPlan) -> Option<u64> {
    if plan.initrd_size == 0 {
        return None;
    }
    let dtb = dtb_ipa(plan)?;
    Some((dtb - plan.initrd_size) & !0xfff)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plan::fixtures::{device, domain as plan};
    use crate::plan::{
        Mapping, MemKind, MAX_CPUS, MAX_DEVICES, MAX_IRQS, MAX_REGIONS, VIRTUAL_CONSOLE_IPA,
    };
    use fdt::node::FdtNode;
    use fdt::Fdt;

    const MIB: u64 = 1 << 20;

    fn ram(ipa: u64, pa: u64, size: u64) -> Mapping {
        Mapping {
            ipa,
            pa,
            size,
            kind: MemKind::Ram,
        }
    }

    /// A domain with a virtual console and one passthrough device.
    fn victim() -> DomainPlan {
        let mut p = plan(
            "victim",
            2,
            &[ram(0x4000_0000, 0x4800_0000, 2 * MIB)],
            &[device("rtc", "arm,pl031", 0x0901_0000, 0x1000, &[2])],
        );
        p.virtual_console = Some(VIRTUAL_CONSOLE_IPA);
        p.bootargs = "quiet heartbeat=50".try_into().unwrap();
        p
    }

    /// A domain with its own UART (after a non-UART device), two RAM
    /// regions and a device with several interrupts.
    fn attacker() -> DomainPlan {
        let mut p = plan(
            "attacker",
            1,
            &[
                ram(0x4000_0000, 0x4a00_0000, 4 * MIB),
                ram(0x8000_0000, 0x4c00_0000, MIB),
            ],
            &[
                device("gpio", "arm,pl061", 0x0903_0000, 0x1000, &[7, 9, 11]),
                device("uart1", "arm,pl011", 0x0904_0000, 0x1000, &[8]),
                device("uart2", "arm,pl011", 0x0905_0000, 0x1000, &[]),
            ],
        );
        p.bootargs = "attack=victim-ram:0x48000000,partitioner:0x40200000"
            .try_into()
            .unwrap();
        p
    }

    /// Everything at its maximum: the largest tree a valid plan can produce.
    /// Every device is a Cadence UART: its three properties (92 bytes, and
    /// the `uart-ref-clk` node they bring) outweigh a PL011's (88 bytes) and
    /// a 64-character `compatible` (80 bytes); see `biggest_plan_fits`.
    fn biggest() -> DomainPlan {
        biggest_with("cdns,uart-r1p12")
    }

    /// [`biggest`] with every device's `compatible` set to `compatible`.
    fn biggest_with(compatible: &str) -> DomainPlan {
        let name = "n".repeat(crate::plan::MAX_NAME);
        let rams: std::vec::Vec<_> = (0..MAX_REGIONS as u64)
            .map(|i| ram(0xffff_0000_0000 + i * 0x1_0000_0000, 0, 0x1_0000_0000))
            .collect();
        let devices: std::vec::Vec<_> = (0..MAX_DEVICES as u64)
            .map(|i| {
                let dev_name = format!("{}{i}", "d".repeat(crate::plan::MAX_NAME - 1));
                let spis: std::vec::Vec<u32> = (0..MAX_IRQS as u32).map(|s| 900 + s).collect();
                device(
                    &dev_name,
                    compatible,
                    0xffff_ffff_0000 + i * 0x1000,
                    0x1000,
                    &spis,
                )
            })
            .collect();
        let mut p = plan(&name, MAX_CPUS, &rams, &devices);
        p.bootargs = "b".repeat(128).as_str().try_into().unwrap();
        p.virtual_console = Some(0xffff_ffff_f000);
        // The initial RAM disk in the last RAM region, which holds the entry
        // point: two more properties in /chosen.
        p.entry = rams[MAX_REGIONS - 1].ipa;
        p.initrd_size = 0x1000_0000;
        p
    }

    /// [`victim`] with an initial RAM disk of `size` bytes.
    fn victim_with_initrd(size: u64) -> DomainPlan {
        let mut p = victim();
        p.initrd_size = size;
        p
    }

    const GICS: [GicVersion; 2] = [GicVersion::V3, GicVersion::V2];

    fn generate(plan: &DomainPlan, gic: GicVersion) -> std::vec::Vec<u8> {
        let mut buf = vec![0u8; DTB_MAX];
        let len = domain_tree(plan, gic, &mut buf).expect("tree fits");
        buf.truncate(len);
        buf
    }

    fn be32(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn cells(value: &[u8]) -> std::vec::Vec<u32> {
        assert_eq!(value.len() % 4, 0, "cell property length");
        value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn strs(value: &[u8]) -> std::vec::Vec<&str> {
        assert_eq!(value.last(), Some(&0), "string property is NUL-terminated");
        value[..value.len() - 1]
            .split(|&b| b == 0)
            .map(|s| std::str::from_utf8(s).unwrap())
            .collect()
    }

    fn prop<'a>(node: FdtNode<'_, 'a>, name: &str) -> &'a [u8] {
        node.property(name)
            .unwrap_or_else(|| panic!("{} has no {name}", node.name))
            .value
    }

    /// Names and raw values of a node's properties, in order.
    fn props<'a>(node: FdtNode<'_, 'a>) -> std::vec::Vec<(&'a str, &'a [u8])> {
        node.properties().map(|p| (p.name, p.value)).collect()
    }

    fn str_prop(s: &str) -> std::vec::Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    fn strs_prop(list: &[&str]) -> std::vec::Vec<u8> {
        list.iter().flat_map(|s| str_prop(s)).collect()
    }

    fn cells_prop(list: &[u32]) -> std::vec::Vec<u8> {
        list.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    fn reg_prop(base: u64, size: u64) -> std::vec::Vec<u8> {
        cells_prop(&[
            (base >> 32) as u32,
            base as u32,
            (size >> 32) as u32,
            size as u32,
        ])
    }

    fn children<'b, 'a>(node: FdtNode<'b, 'a>) -> std::vec::Vec<&'a str> {
        node.children().map(|c| c.name).collect()
    }

    /// The properties every PL011 node starts with (its `reg` follows).
    fn pl011_expected() -> std::vec::Vec<(&'static str, std::vec::Vec<u8>)> {
        vec![
            ("compatible", strs_prop(&["arm,pl011", "arm,primecell"])),
            ("clocks", cells_prop(&[2, 2])),
            ("clock-names", strs_prop(&["uartclk", "apb_pclk"])),
        ]
    }

    /// The properties a device with binding `b` gets before its `reg`.
    fn binding_expected(b: &Binding) -> std::vec::Vec<(&'static str, std::vec::Vec<u8>)> {
        match b.compatible {
            "arm,pl011" => pl011_expected(),
            // What Linux's xuartps probes with (zynqmp.dtsi's UART nodes).
            "cdns,uart-r1p12" => vec![
                (
                    "compatible",
                    strs_prop(&["cdns,uart-r1p12", "xlnx,xuartps"]),
                ),
                ("clocks", cells_prop(&[3, 3])),
                ("clock-names", strs_prop(&["uart_clk", "pclk"])),
            ],
            // What Linux's imx UART driver needs (imx8mp.dtsi's node, both
            // clocks the fixed one).
            "fsl,imx8mp-uart" => vec![
                (
                    "compatible",
                    strs_prop(&["fsl,imx8mp-uart", "fsl,imx6q-uart"]),
                ),
                ("clocks", cells_prop(&[2, 2])),
                ("clock-names", strs_prop(&["ipg", "per"])),
            ],
            other => panic!("no expectation for {other}"),
        }
    }

    /// Checks every node and property of `blob` against `plan`.
    fn check_tree(plan: &DomainPlan, gic: GicVersion, blob: &[u8]) {
        let fdt = Fdt::new(blob).expect("valid blob");
        assert_eq!(fdt.total_size(), blob.len());
        check_header(blob);
        let name = plan.name.as_str();

        // Root.
        let root = fdt.find_node("/").unwrap();
        assert_eq!(
            props(root),
            [
                ("#address-cells", &cells_prop(&[2])[..]),
                ("#size-cells", &cells_prop(&[2])[..]),
                ("compatible", &str_prop("bulkhead,domain")[..]),
                ("model", &str_prop(&format!("Bulkhead domain {name}"))[..]),
                ("interrupt-parent", &cells_prop(&[GIC_PHANDLE])[..]),
            ]
        );
        assert_eq!(fdt.root().model(), format!("Bulkhead domain {name}"));
        let mut expected_children = vec!["chosen".to_string(), "cpus".to_string()];
        expected_children.extend(plan.ram.iter().map(|m| format!("memory@{:x}", m.ipa)));
        expected_children.push("psci".into());
        expected_children.push("intc@8000000".into());
        expected_children.push("timer".into());
        expected_children.push("apb-pclk".into());
        if plan
            .devices
            .iter()
            .any(|d| d.compatible == "cdns,uart-r1p12")
        {
            expected_children.push("uart-ref-clk".into());
        }
        expected_children.extend(
            plan.devices
                .iter()
                .map(|d| format!("{}@{:x}", d.name, d.mapping.ipa)),
        );
        if let Some(ipa) = plan.virtual_console {
            expected_children.push(format!("uart@{ipa:x}"));
        }
        assert_eq!(children(root), expected_children);

        // /chosen.
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some(plan.bootargs.as_str()));
        let console = plan
            .virtual_console
            .map(|ipa| format!("/uart@{ipa:x}"))
            .or_else(|| {
                plan.devices
                    .iter()
                    .find(|d| binding(&d.compatible).is_some_and(|b| b.serial))
                    .map(|d| format!("/{}@{:x}", d.name, d.mapping.ipa))
            });
        let mut expected = vec![
            ("bootargs", str_prop(&plan.bootargs)),
            ("bulkhead,domain-name", str_prop(name)),
        ];
        if let Some(path) = &console {
            expected.push(("stdout-path", str_prop(path)));
        }
        if plan.initrd_size > 0 {
            let start = initrd_ipa(plan).expect("the initrd is placed");
            let end = start + plan.initrd_size;
            expected.push(("linux,initrd-start", start.to_be_bytes().to_vec()));
            expected.push(("linux,initrd-end", end.to_be_bytes().to_vec()));
        }
        // (A run's seeds, when it has them, are checked on their own.)
        let got: std::vec::Vec<_> = props(chosen)
            .into_iter()
            .filter(|(n, _)| !matches!(*n, "rng-seed" | "kaslr-seed"))
            .map(|(n, v)| (n, v.to_vec()))
            .collect();
        assert_eq!(got, expected);
        assert!(children(chosen).is_empty());
        match &console {
            Some(path) => {
                let stdout = fdt.chosen().stdout().expect("stdout-path resolves");
                assert_eq!(format!("/{}", stdout.name), *path);
                assert!(stdout.compatible().unwrap().all().any(|c| BINDINGS
                    .iter()
                    .any(|b| b.serial && b.compatibles.contains(&c))));
                let reg: std::vec::Vec<_> = stdout.reg().unwrap().collect();
                assert_eq!(reg.len(), 1);
            }
            None => assert!(fdt.chosen().stdout().is_none()),
        }

        // /cpus.
        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(
            props(cpus),
            [
                ("#address-cells", &cells_prop(&[1])[..]),
                ("#size-cells", &cells_prop(&[0])[..]),
            ]
        );
        let cpu_names: std::vec::Vec<_> =
            (0..plan.cpus.len()).map(|n| format!("cpu@{n}")).collect();
        assert_eq!(children(cpus), cpu_names);
        for (n, cpu) in cpus.children().enumerate() {
            assert_eq!(
                props(cpu),
                [
                    ("device_type", &str_prop("cpu")[..]),
                    ("compatible", &str_prop("arm,armv8")[..]),
                    ("reg", &cells_prop(&[n as u32])[..]),
                    ("enable-method", &str_prop("psci")[..]),
                ]
            );
            assert!(children(cpu).is_empty());
        }
        assert_eq!(fdt.cpus().count(), plan.cpus.len());
        for (n, cpu) in fdt.cpus().enumerate() {
            assert_eq!(cpu.ids().first(), n);
        }

        // Memory.
        let memory: std::vec::Vec<_> = fdt.find_all_nodes("/memory").collect();
        assert_eq!(memory.len(), plan.ram.len());
        for (node, m) in memory.iter().zip(&plan.ram) {
            assert_eq!(node.name, format!("memory@{:x}", m.ipa));
            assert_eq!(
                props(*node),
                [
                    ("device_type", &str_prop("memory")[..]),
                    ("reg", &reg_prop(m.ipa, m.size)[..]),
                ]
            );
            let regions: std::vec::Vec<_> = node.reg().unwrap().collect();
            assert_eq!(regions.len(), 1);
            assert_eq!(regions[0].starting_address as u64, m.ipa);
            assert_eq!(regions[0].size, Some(m.size as usize));
        }

        // /psci.
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(
            strs(prop(psci, "compatible")),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(strs(prop(psci, "method")), ["hvc"]);
        assert_eq!(props(psci).len(), 2);

        check_gic(plan, gic, &fdt);

        // The PL011s' clock.
        let clock = fdt.find_node("/apb-pclk").expect("clock");
        assert_eq!(
            props(clock),
            [
                ("compatible", &str_prop("fixed-clock")[..]),
                ("#clock-cells", &cells_prop(&[0])[..]),
                ("clock-frequency", &cells_prop(&[24_000_000])[..]),
                ("clock-output-names", &str_prop("clk24mhz")[..]),
                ("phandle", &cells_prop(&[2])[..]),
            ]
        );
        assert!(children(clock).is_empty());
        assert_eq!(fdt.find_phandle(CLOCK_PHANDLE).unwrap().name, "apb-pclk");

        // Passthrough devices.
        for d in &plan.devices {
            let path = format!("/{}@{:x}", d.name, d.mapping.ipa);
            let node = fdt.find_node(&path).unwrap_or_else(|| panic!("{path}"));
            let mut expected = match binding(&d.compatible) {
                Some(b) => binding_expected(b),
                None => vec![("compatible", str_prop(&d.compatible))],
            };
            expected.push(("reg", reg_prop(d.mapping.ipa, d.mapping.size)));
            if !d.spis.is_empty() {
                let specs: std::vec::Vec<u32> = d.spis.iter().flat_map(|&s| [0, s, 4]).collect();
                expected.push(("interrupts", cells_prop(&specs)));
            }
            let got: std::vec::Vec<_> = props(node)
                .into_iter()
                .map(|(n, v)| (n, v.to_vec()))
                .collect();
            assert_eq!(got, expected, "{path}");
            assert_eq!(node.compatible().unwrap().first(), d.compatible.as_str());
            let reg: std::vec::Vec<_> = node.reg().unwrap().collect();
            assert_eq!(reg[0].starting_address as u64, d.mapping.ipa);
            assert_eq!(reg[0].size, Some(d.mapping.size as usize));
        }

        // Virtual console.
        if let Some(ipa) = plan.virtual_console {
            let node = fdt.find_node(&format!("/uart@{ipa:x}")).unwrap();
            let mut expected = pl011_expected();
            expected.push(("reg", reg_prop(ipa, 0x1000)));
            // Its virtual SPI, whatever the GIC generation.
            expected.push((
                "interrupts",
                cells_prop(&[GIC_SPI, VIRTUAL_CONSOLE_SPI, IRQ_TYPE_LEVEL_HIGH]),
            ));
            let got: std::vec::Vec<_> = props(node)
                .into_iter()
                .map(|(n, v)| (n, v.to_vec()))
                .collect();
            assert_eq!(got, expected);
            assert!(children(node).is_empty());
        }

        // Every PL011 (and nothing else) names the PrimeCell clock, every
        // device with another binding its clock, which resolves.
        let bound = plan
            .devices
            .iter()
            .filter(|d| binding(&d.compatible).is_some())
            .count()
            + usize::from(plan.virtual_console.is_some());
        let clocked: std::vec::Vec<_> = fdt
            .all_nodes()
            .filter(|n| n.property("clocks").is_some())
            .collect();
        assert_eq!(clocked.len(), bound);
        for node in clocked {
            let compatible = node.compatible().unwrap().first();
            let want = binding(compatible).map_or("apb-pclk", |b| b.clock.node);
            for phandle in cells(prop(node, "clocks")) {
                assert_eq!(fdt.find_phandle(phandle).unwrap().name, want);
            }
        }
        // The other clocks are there exactly when a device names them.
        let other_clocks = CLOCKS[1..]
            .iter()
            .filter(|c| {
                let there = fdt.find_node(&format!("/{}", c.node)).is_some();
                assert_eq!(there, uses_clock(plan, c), "{}", c.node);
                there
            })
            .count();

        // Nothing else: every node is accounted for.
        let expected_nodes = 1
            + 2
            + plan.cpus.len()
            + plan.ram.len()
            + 4
            + other_clocks
            + plan.devices.len()
            + usize::from(plan.virtual_console.is_some());
        assert_eq!(fdt.all_nodes().count(), expected_nodes);
    }

    /// The interrupt controller and timer nodes, and that every interrupt
    /// specifier resolves to the controller.
    fn check_gic(plan: &DomainPlan, gic: GicVersion, fdt: &Fdt<'_>) {
        let vcpus = plan.cpus.len() as u64;
        let intc = fdt
            .find_node("/intc@8000000")
            .expect("interrupt controller");
        let expected: std::vec::Vec<(&str, std::vec::Vec<u8>)> = match gic {
            GicVersion::V3 => vec![
                ("compatible", str_prop("arm,gic-v3")),
                ("#interrupt-cells", cells_prop(&[3])),
                ("interrupt-controller", vec![]),
                ("#address-cells", cells_prop(&[0])),
                ("#redistributor-regions", cells_prop(&[1])),
                (
                    "reg",
                    [
                        reg_prop(0x0800_0000, 0x1_0000),
                        reg_prop(0x080a_0000, 0x2_0000 * vcpus),
                    ]
                    .concat(),
                ),
                ("phandle", cells_prop(&[GIC_PHANDLE])),
            ],
            GicVersion::V2 => vec![
                ("compatible", str_prop("arm,cortex-a15-gic")),
                ("#interrupt-cells", cells_prop(&[3])),
                ("interrupt-controller", vec![]),
                ("#address-cells", cells_prop(&[0])),
                (
                    "reg",
                    [
                        reg_prop(0x0800_0000, 0x1_0000),
                        reg_prop(0x0801_0000, 0x2000),
                    ]
                    .concat(),
                ),
                ("phandle", cells_prop(&[GIC_PHANDLE])),
            ],
        };
        let got: std::vec::Vec<_> = props(intc)
            .into_iter()
            .map(|(n, v)| (n, v.to_vec()))
            .collect();
        assert_eq!(got, expected);
        assert!(children(intc).is_empty());
        assert_eq!(fdt.find_phandle(GIC_PHANDLE).unwrap().name, "intc@8000000");
        let reg: std::vec::Vec<_> = intc.reg().unwrap().collect();
        assert_eq!(reg.len(), 2);
        assert_eq!(reg[0].starting_address as u64, VGICD_IPA);
        match gic {
            GicVersion::V3 => {
                assert_eq!(reg[1].starting_address as u64, VGICR_IPA);
                assert_eq!(reg[1].size, Some((VGICR_STRIDE * vcpus) as usize));
            }
            GicVersion::V2 => assert_eq!(reg[1].starting_address as u64, VGICC_IPA),
        }

        // Every node with interrupts (the timer, devices) finds the
        // controller through the root's interrupt-parent.
        let root = fdt.find_node("/").unwrap();
        assert_eq!(root.interrupt_parent().unwrap().name, "intc@8000000");

        let timer = fdt.find_node("/timer").expect("timer");
        let flags = match gic {
            GicVersion::V3 => 4,
            GicVersion::V2 => 4 | (((1u32 << vcpus) - 1) << 8),
        };
        assert_eq!(
            props(timer),
            [
                ("compatible", &str_prop("arm,armv8-timer")[..]),
                (
                    "interrupts",
                    &cells_prop(&[1, 13, flags, 1, 14, flags, 1, 11, flags, 1, 10, flags])[..]
                ),
            ]
        );
        assert!(children(timer).is_empty());
    }

    /// Header fields and the block layout.
    fn check_header(blob: &[u8]) {
        assert_eq!(be32(blob, 0), FDT_MAGIC);
        assert_eq!(be32(blob, 4) as usize, blob.len(), "totalsize");
        let off_struct = be32(blob, 8) as usize;
        let off_strings = be32(blob, 12) as usize;
        let off_rsvmap = be32(blob, 16) as usize;
        assert_eq!(be32(blob, 20), 17, "version");
        assert_eq!(be32(blob, 24), 16, "last_comp_version");
        assert_eq!(be32(blob, 28), 0, "boot_cpuid_phys");
        let size_strings = be32(blob, 32) as usize;
        let size_struct = be32(blob, 36) as usize;
        assert_eq!(off_rsvmap, 40);
        assert_eq!(off_rsvmap % 8, 0);
        assert_eq!(&blob[off_rsvmap..off_rsvmap + 16], &[0; 16], "empty rsvmap");
        assert_eq!(off_struct, off_rsvmap + 16);
        assert_eq!(off_struct % 4, 0);
        assert_eq!(size_struct % 4, 0);
        assert_eq!(off_strings, off_struct + size_struct);
        assert_eq!(off_strings + size_strings, blob.len());
        assert_eq!(be32(blob, off_strings - 4), FDT_END);
        // Every property name is stored once.
        let names: std::vec::Vec<_> = blob[off_strings..]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "duplicate strings");
    }

    #[test]
    fn victim_tree() {
        let p = victim();
        for gic in GICS {
            check_tree(&p, gic, &generate(&p, gic));
        }
    }

    #[test]
    fn attacker_tree_uses_first_passthrough_pl011() {
        let p = attacker();
        for gic in GICS {
            let blob = generate(&p, gic);
            check_tree(&p, gic, &blob);
            let fdt = Fdt::new(&blob).unwrap();
            let stdout = fdt.chosen().stdout().unwrap();
            assert_eq!(stdout.name, "uart1@9040000");
            assert_eq!(
                stdout.reg().unwrap().next().unwrap().starting_address as u64,
                0x0904_0000
            );
            assert_eq!(cells(prop(stdout, "interrupts")), [0, 8, 4]);
            let gpio = fdt.find_node("/gpio@9030000").unwrap();
            assert_eq!(
                cells(prop(gpio, "interrupts")),
                [0, 7, 4, 0, 9, 4, 0, 11, 4]
            );
            let uart2 = fdt.find_node("/uart2@9050000").unwrap();
            assert!(uart2.property("interrupts").is_none());
            // Both PL011s are AMBA PrimeCells clocked by apb-pclk; the
            // PL061 keeps its own compatible and names no clock.
            for uart in [stdout, uart2] {
                assert_eq!(
                    strs(prop(uart, "compatible")),
                    ["arm,pl011", "arm,primecell"]
                );
                assert_eq!(cells(prop(uart, "clocks")), [2, 2]);
                assert_eq!(strs(prop(uart, "clock-names")), ["uartclk", "apb_pclk"]);
            }
            assert_eq!(strs(prop(gpio, "compatible")), ["arm,pl061"]);
            assert!(gpio.property("clocks").is_none());
            assert!(gpio.property("clock-names").is_none());
        }
    }

    /// A Linux domain on the ZCU102 owning a Cadence UART and no virtual
    /// console: the node is what Linux's xuartps probes (both compatibles,
    /// `uart_clk` and `pclk` from a fixed clock), and it is the console.
    #[test]
    fn a_passthrough_cadence_uart_gets_xuartps_clocks_and_is_the_console() {
        let p = plan(
            "linux",
            2,
            &[ram(0x4000_0000, 0x1000_0000, 256 * MIB)],
            &[
                device("ttc0", "cdns,ttc", 0xff11_0000, 0x1000, &[36, 37, 38]),
                device("uart1", "cdns,uart-r1p12", 0xff01_0000, 0x1000, &[22]),
            ],
        );
        for gic in GICS {
            let blob = generate(&p, gic);
            check_tree(&p, gic, &blob);
            let fdt = Fdt::new(&blob).unwrap();
            let stdout = fdt.chosen().stdout().unwrap();
            assert_eq!(stdout.name, "uart1@ff010000");
            assert_eq!(
                strs(prop(stdout, "compatible")),
                ["cdns,uart-r1p12", "xlnx,xuartps"]
            );
            assert_eq!(strs(prop(stdout, "clock-names")), ["uart_clk", "pclk"]);
            assert_eq!(cells(prop(stdout, "interrupts")), [0, 22, 4]);
            let [a, b] = cells(prop(stdout, "clocks"))[..] else {
                panic!("two clocks")
            };
            assert_eq!(a, b);
            let clock = fdt.find_phandle(a).unwrap();
            assert_eq!(clock.name, "uart-ref-clk");
            assert_eq!(strs(prop(clock, "compatible")), ["fixed-clock"]);
            assert_eq!(cells(prop(clock, "clock-frequency")), [100_000_000]);
            assert_eq!(cells(prop(clock, "#clock-cells")), [0]);
            // The timer keeps its own compatible and names no clock.
            let ttc = fdt.find_node("/ttc0@ff110000").unwrap();
            assert_eq!(strs(prop(ttc, "compatible")), ["cdns,ttc"]);
            assert!(ttc.property("clocks").is_none());
        }
        // Without a Cadence UART there is no UART reference clock.
        let blob = generate(&victim(), GicVersion::V2);
        assert!(Fdt::new(&blob)
            .unwrap()
            .find_node("/uart-ref-clk")
            .is_none());
    }

    #[test]
    fn gic_generations_differ_only_in_the_controller_and_timer_flags() {
        let p = victim(); // two vCPUs
        let v3 = generate(&p, GicVersion::V3);
        let v2 = generate(&p, GicVersion::V2);
        let (f3, f2) = (Fdt::new(&v3).unwrap(), Fdt::new(&v2).unwrap());
        let timer3 = cells(prop(f3.find_node("/timer").unwrap(), "interrupts"));
        let timer2 = cells(prop(f2.find_node("/timer").unwrap(), "interrupts"));
        assert_eq!(timer3, [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
        // GICv2: CPU mask 0b11 (two vCPUs) in bits [15:8].
        assert_eq!(
            timer2,
            [1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]
        );
        // The virtual timer is the third specifier: PPI 11 = INTID 27.
        assert_eq!(timer3[7] + 16, VTIMER_INTID);
        let intc3 = f3.find_node("/intc@8000000").unwrap();
        let intc2 = f2.find_node("/intc@8000000").unwrap();
        assert_eq!(intc3.compatible().unwrap().first(), "arm,gic-v3");
        assert_eq!(intc2.compatible().unwrap().first(), "arm,cortex-a15-gic");
        assert!(intc2.property("#redistributor-regions").is_none());
        // One redistributor frame pair per vCPU.
        let redist = intc3.reg().unwrap().nth(1).unwrap();
        assert_eq!(redist.size, Some(2 * 0x2_0000));
        // Everything else is the same.
        for path in [
            "/chosen",
            "/cpus",
            "/memory@40000000",
            "/psci",
            "/apb-pclk",
            "/rtc@9010000",
            "/uart@9000000",
        ] {
            let a: std::vec::Vec<_> = props(f3.find_node(path).unwrap());
            let b: std::vec::Vec<_> = props(f2.find_node(path).unwrap());
            assert_eq!(a, b, "{path}");
        }
    }

    #[test]
    fn gicv2_cpu_mask_covers_every_vcpu() {
        for n in 1..=MAX_CPUS {
            let p = plan("m", n, &[ram(0x4000_0000, 0, MIB)], &[]);
            let blob = generate(&p, GicVersion::V2);
            check_tree(&p, GicVersion::V2, &blob);
            let fdt = Fdt::new(&blob).unwrap();
            let spec = cells(prop(fdt.find_node("/timer").unwrap(), "interrupts"));
            let mask = (1u32 << n) - 1;
            assert!(spec.chunks(3).all(|s| s[2] == (mask << 8) | 4), "{n} vCPUs");
        }
    }

    #[test]
    fn virtual_console_wins_over_passthrough_uart() {
        let mut p = attacker();
        p.virtual_console = Some(0x0a00_0000);
        for gic in GICS {
            let blob = generate(&p, gic);
            check_tree(&p, gic, &blob);
            let fdt = Fdt::new(&blob).unwrap();
            assert_eq!(fdt.chosen().stdout().unwrap().name, "uart@a000000");
        }
    }

    #[test]
    fn no_console_no_stdout_path() {
        let p = plan(
            "quiet",
            1,
            &[ram(0x4000_0000, 0x5000_0000, MIB)],
            &[device("virtio0", "virtio,mmio", 0x0a00_0000, 0x200, &[16])],
        );
        for gic in GICS {
            let blob = generate(&p, gic);
            check_tree(&p, gic, &blob);
            let fdt = Fdt::new(&blob).unwrap();
            assert!(fdt
                .find_node("/chosen")
                .unwrap()
                .property("stdout-path")
                .is_none());
        }
    }

    #[test]
    fn a_passthrough_imx_uart_gets_its_compatibles_clocks_and_the_console() {
        let mut p = plan(
            "evk",
            1,
            &[ram(0x4000_0000, 0x5000_0000, 0x20_0000)],
            &[
                device("gpio1", "fsl,imx8mp-gpio", 0x3020_0000, 0x1_0000, &[64, 65]),
                device("uart3", "fsl,imx8mp-uart", 0x3088_0000, 0x1_0000, &[28]),
            ],
        );
        p.virtual_console = None;
        for gic in GICS {
            let blob = generate(&p, gic);
            check_tree(&p, gic, &blob);
            let fdt = Fdt::new(&blob).unwrap();
            let uart = fdt.find_node("/uart3@30880000").unwrap();
            assert_eq!(
                strs(prop(uart, "compatible")),
                ["fsl,imx8mp-uart", "fsl,imx6q-uart"]
            );
            assert_eq!(strs(prop(uart, "clock-names")), ["ipg", "per"]);
            assert_eq!(
                fdt.chosen().stdout().map(|n| n.name),
                Some("uart3@30880000")
            );
            // A GPIO block has no shape: its compatible alone.
            let gpio = fdt.find_node("/gpio1@30200000").unwrap();
            assert!(gpio.property("clocks").is_none());
        }
        // The PL011 stays the biggest node a device can make.
        let imx = biggest_with("fsl,imx8mp-uart");
        for gic in GICS {
            assert!(generate(&imx, gic).len() < generate(&biggest(), gic).len());
        }
    }

    #[test]
    fn biggest_plan_fits() {
        let p = biggest();
        for gic in GICS {
            let blob = generate(&p, gic);
            check_tree(&p, gic, &blob);
            assert!(blob.len() <= DTB_MAX);
            // A larger buffer does not let the tree grow past DTB_MAX.
            let mut big = vec![0u8; 4 * DTB_MAX];
            let len = domain_tree(&p, gic, &mut big).unwrap();
            assert_eq!(&big[..len], &blob[..]);

            // It is the biggest: devices with the longest possible other
            // compatible, PL011s, or no initrd, make smaller trees.
            for compatible in ["c".repeat(64), "arm,pl011".into()] {
                let other = biggest_with(&compatible);
                let other_blob = generate(&other, gic);
                check_tree(&other, gic, &other_blob);
                assert!(other_blob.len() < blob.len(), "{compatible}");
            }
            let mut no_initrd = biggest();
            no_initrd.initrd_size = 0;
            let no_initrd_blob = generate(&no_initrd, gic);
            check_tree(&no_initrd, gic, &no_initrd_blob);
            assert!(no_initrd_blob.len() < blob.len());
        }
    }

    #[test]
    fn every_short_buffer_is_rejected() {
        for p in [victim(), attacker(), victim_with_initrd(0x12345)] {
            for gic in GICS {
                let blob = generate(&p, gic);
                for size in 0..blob.len() {
                    let mut buf = vec![0u8; size];
                    assert_eq!(
                        domain_tree(&p, gic, &mut buf),
                        Err(DtbError::BufferTooSmall),
                        "size {size}"
                    );
                }
                let mut exact = vec![0u8; blob.len()];
                assert_eq!(domain_tree(&p, gic, &mut exact), Ok(blob.len()));
                assert_eq!(exact, blob);
            }
        }
    }

    #[test]
    fn output_is_deterministic_and_ignores_stale_buffer_contents() {
        let p = attacker();
        for gic in GICS {
            let mut a = vec![0u8; DTB_MAX];
            let mut b = vec![0xa5u8; DTB_MAX];
            let la = domain_tree(&p, gic, &mut a).unwrap();
            let lb = domain_tree(&p, gic, &mut b).unwrap();
            assert_eq!(a[..la], b[..lb]);
        }
    }

    #[test]
    fn writer_shares_strings() {
        let mut buf = [0u8; 512];
        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        w.prop_u32("#size-cells", 2).unwrap();
        w.prop_u32("#address-cells", 2).unwrap();
        w.begin_node("a@1").unwrap();
        w.prop_cells("reg", &[1, 2]).unwrap();
        w.prop_u32("cells", 3).unwrap(); // tail of "#size-cells"
        w.prop_empty("flag").unwrap();
        w.end_node().unwrap();
        w.begin_node("b").unwrap();
        w.prop_str("reg", "x").unwrap();
        w.prop_u64s("big", &[0x1122_3344_5566_7788]).unwrap();
        w.property("raw", &[1, 2, 3]).unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let len = w.finish().unwrap();
        let blob = &buf[..len];
        check_header(blob);
        let off_strings = be32(blob, 12) as usize;
        let size_strings = be32(blob, 32) as usize;
        // "#size-cells", "#address-cells", "reg", "flag", "big", "raw";
        // "cells" shares "#size-cells"' tail.
        assert_eq!(
            size_strings,
            "#size-cells #address-cells reg flag big raw ".len()
        );
        assert!(!blob[off_strings..].windows(6).any(|w| w == b"\0cells"));

        let fdt = Fdt::new(blob).unwrap();
        let a = fdt.find_node("/a@1").unwrap();
        assert_eq!(cells(prop(a, "reg")), [1, 2]);
        assert_eq!(cells(prop(a, "cells")), [3]);
        assert_eq!(prop(a, "flag"), b"");
        let b = fdt.find_node("/b").unwrap();
        assert_eq!(strs(prop(b, "reg")), ["x"]);
        assert_eq!(prop(b, "big"), &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(prop(b, "raw"), &[1, 2, 3]);
        let root = fdt.find_node("/").unwrap();
        assert_eq!(cells(prop(root, "#size-cells")), [2]);
        assert_eq!(cells(prop(root, "#address-cells")), [2]);
        assert_eq!(children(root), ["a@1", "b"]);
    }

    #[test]
    fn writer_rejects_bad_structure() {
        let mut buf = [0u8; 256];

        let w = FdtWriter::new(&mut buf).unwrap();
        assert_eq!(w.finish(), Err(DtbError::BadStructure), "no root");

        let mut w = FdtWriter::new(&mut buf).unwrap();
        assert_eq!(
            w.prop_u32("x", 1),
            Err(DtbError::BadStructure),
            "outside root"
        );
        assert_eq!(w.end_node(), Err(DtbError::BadStructure), "nothing open");

        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        w.begin_node("child").unwrap();
        w.end_node().unwrap();
        assert_eq!(
            w.prop_u32("late", 1),
            Err(DtbError::BadStructure),
            "property after a child"
        );
        assert_eq!(w.finish(), Err(DtbError::BadStructure), "root still open");

        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        w.end_node().unwrap();
        assert_eq!(w.begin_node(""), Err(DtbError::BadStructure), "second root");
        assert_eq!(w.end_node(), Err(DtbError::BadStructure));

        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        assert_eq!(w.begin_node("a\0b"), Err(DtbError::InvalidString));
        assert_eq!(w.prop_u32("a\0b", 1), Err(DtbError::InvalidString));
        assert_eq!(w.prop_str("s", "a\0b"), Err(DtbError::InvalidString));
        assert_eq!(
            w.prop_strs("s", &["ok", "a\0"]),
            Err(DtbError::InvalidString)
        );

        let mut tiny = [0u8; STRUCT_OFFSET + 3];
        assert!(matches!(
            FdtWriter::new(&mut tiny),
            Err(DtbError::BufferTooSmall)
        ));
    }

    #[test]
    fn bad_bootargs_are_rejected() {
        let mut p = victim();
        p.bootargs = "a\0b".try_into().unwrap();
        let mut buf = vec![0u8; DTB_MAX];
        for gic in GICS {
            assert_eq!(domain_tree(&p, gic, &mut buf), Err(DtbError::InvalidString));
        }
    }

    #[test]
    fn dtb_placement() {
        let mut p = victim(); // 2 MiB at 0x4000_0000, 64 KiB image
        assert_eq!(dtb_ipa(&p), Some(0x4000_0000 + 2 * MIB - DTB_RESERVED));

        // The image may grow right up to the reserved window...
        p.image_size = 2 * MIB - DTB_RESERVED;
        assert_eq!(dtb_ipa(&p), Some(0x4000_0000 + 2 * MIB - DTB_RESERVED));
        // ...but not into it.
        p.image_size += 1;
        assert_eq!(dtb_ipa(&p), None);

        // A mapping smaller than the reserved window.
        let mut small = plan("s", 1, &[ram(0x4000_0000, 0, 0x8000)], &[]);
        small.image_size = 0;
        assert_eq!(dtb_ipa(&small), None);

        // The mapping holding the entry point is used, not the first one.
        let mut two = attacker();
        two.entry = 0x8000_0000;
        two.image_size = 0x1000;
        assert_eq!(dtb_ipa(&two), Some(0x8000_0000 + MIB - DTB_RESERVED));

        // An entry point the image cannot fit behind.
        two.entry = 0x8000_0000 + MIB - DTB_RESERVED;
        assert_eq!(dtb_ipa(&two), None);

        // No RAM holds the entry point.
        two.entry = 0x1000;
        assert_eq!(dtb_ipa(&two), None);

        // A mapping reaching the top of the address space.
        let mut top = plan("t", 1, &[ram(u64::MAX - MIB + 1, 0, MIB)], &[]);
        top.entry = u64::MAX - MIB + 1;
        assert_eq!(dtb_ipa(&top), None);
    }

    #[test]
    fn dtb_placement_leaves_room_for_the_initrd() {
        const DTB: u64 = 0x4000_0000 + 2 * MIB - DTB_RESERVED;
        let mut p = victim(); // 2 MiB at 0x4000_0000, 64 KiB image
        let room = 2 * MIB - DTB_RESERVED - p.image_size; // 0x1e_0000

        // The initrd does not move the tree.
        for size in [1, 0xfff, 0x1000, 0x1001, 0x12345, room] {
            p.initrd_size = size;
            assert_eq!(dtb_ipa(&p), Some(DTB), "initrd of {size:#x}");
        }
        // Image + initrd + DTB_RESERVED must fit...
        p.initrd_size = room + 1;
        assert_eq!(dtb_ipa(&p), None);
        assert_eq!(initrd_ipa(&p), None);
        // ...with the initrd rounded up to whole pages: one byte of image
        // past a page boundary costs the initrd a whole page.
        p.image_size = 0x1_0001;
        p.initrd_size = room - 0x1000;
        assert_eq!(dtb_ipa(&p), Some(DTB));
        p.initrd_size = room - 0xfff;
        assert_eq!(dtb_ipa(&p), None);
        assert_eq!(initrd_ipa(&p), None);
        // An image filling its room leaves none for any initrd.
        p.image_size = 2 * MIB - DTB_RESERVED;
        p.initrd_size = 0;
        assert_eq!(dtb_ipa(&p), Some(DTB));
        p.initrd_size = 1;
        assert_eq!(dtb_ipa(&p), None);

        // Sizes that overflow when rounded up or added.
        p.image_size = 0x1_0000;
        for size in [u64::MAX, u64::MAX - 0xffe, 1 << 63, u64::MAX - 0x4001_0000] {
            p.initrd_size = size;
            assert_eq!(dtb_ipa(&p), None, "initrd of {size:#x}");
            assert_eq!(initrd_ipa(&p), None, "initrd of {size:#x}");
        }
    }

    #[test]
    fn initrd_sits_page_aligned_between_image_and_tree() {
        // (plan, initrd size, expected start)
        let mut two = attacker(); // entry in the second region this time
        two.entry = 0x8000_0000;
        two.image_size = 0x2_3456;
        let cases = [
            (victim(), 1, 0x401e_f000),
            (victim(), 0xfff, 0x401e_f000),
            (victim(), 0x1000, 0x401e_f000),
            (victim(), 0x1001, 0x401e_e000),
            (victim(), 0x12345, 0x401d_d000),
            // Right up to the image's end.
            (victim(), 0x1e_0000, 0x4001_0000),
            (two.clone(), 0x12345, 0x800d_d000),
            (two.clone(), 0xc_c000, 0x8002_4000),
        ];
        for (mut p, size, start) in cases {
            assert_eq!(initrd_ipa(&p), None, "no initrd, no address");
            p.initrd_size = size;
            let dtb = dtb_ipa(&p).unwrap();
            let got = initrd_ipa(&p).unwrap();
            assert_eq!(got, start, "initrd of {size:#x}");
            assert_eq!(got % 0x1000, 0, "page aligned");
            assert!(got + size <= dtb, "below the tree");
            assert!(dtb - got < size + 0x1000, "right below the tree");
            assert!(got >= p.entry + p.image_size, "above the image");
        }
    }

    #[test]
    fn chosen_carries_the_runs_seeds_when_there_are_any() {
        let p = victim();
        let root = crate::entropy::RootSeed::gather(Some(&[3; 32]), None, &[])
            .unwrap()
            .0;
        let seeds = root.for_domain(&p.name, 0);
        for gic in GICS {
            let mut buf = vec![0u8; DTB_MAX];
            let len = domain_tree_seeded(&p, gic, Some(&seeds), &mut buf).expect("tree fits");
            let blob = &buf[..len];
            check_tree(&p, gic, blob);
            let fdt = Fdt::new(blob).unwrap();
            let chosen = fdt.find_node("/chosen").unwrap();
            assert_eq!(prop(chosen, "rng-seed"), &seeds.rng[..]);
            assert_eq!(
                cells(prop(chosen, "kaslr-seed")),
                [(seeds.kaslr >> 32) as u32, seeds.kaslr as u32]
            );
            // Without seeds, neither property.
            let blob = generate(&p, gic);
            let fdt = Fdt::new(&blob).unwrap();
            let chosen = fdt.find_node("/chosen").unwrap();
            assert!(chosen.property("rng-seed").is_none());
            assert!(chosen.property("kaslr-seed").is_none());
        }
    }

    #[test]
    fn chosen_names_the_initrd() {
        for (size, start, end) in [
            (0x12345, 0x401d_d000u64, 0x401e_f345u64),
            // A whole number of pages ends right at the tree.
            (0x1_0000, 0x401e_0000, 0x401f_0000),
        ] {
            let p = victim_with_initrd(size);
            for gic in GICS {
                let blob = generate(&p, gic);
                check_tree(&p, gic, &blob);
                let fdt = Fdt::new(&blob).unwrap();
                let chosen = fdt.find_node("/chosen").unwrap();
                // One 64-bit value each, in two cells.
                assert_eq!(
                    cells(prop(chosen, "linux,initrd-start")),
                    [(start >> 32) as u32, start as u32]
                );
                assert_eq!(
                    cells(prop(chosen, "linux,initrd-end")),
                    [(end >> 32) as u32, end as u32]
                );
                assert_eq!(
                    props(chosen)
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<std::vec::Vec<_>>(),
                    [
                        "bootargs",
                        "bulkhead,domain-name",
                        "stdout-path",
                        "linux,initrd-start",
                        "linux,initrd-end",
                    ]
                );
                // Only /chosen differs from the tree without an initrd.
                let plain = generate(&victim(), gic);
                let plain = Fdt::new(&plain).unwrap();
                let without = plain.find_node("/chosen").unwrap();
                assert_eq!(props(chosen)[..3], props(without)[..]);
                let nodes: std::vec::Vec<_> = fdt.all_nodes().map(|n| n.name).collect();
                let plain_nodes: std::vec::Vec<_> = plain.all_nodes().map(|n| n.name).collect();
                assert_eq!(nodes, plain_nodes);
                for (a, b) in fdt.all_nodes().zip(plain.all_nodes()) {
                    if a.name != "chosen" {
                        assert_eq!(props(a), props(b), "{}", a.name);
                    }
                }
            }
        }
        // No initrd: neither property.
        for gic in GICS {
            let blob = generate(&victim(), gic);
            let fdt = Fdt::new(&blob).unwrap();
            let chosen = fdt.find_node("/chosen").unwrap();
            assert!(chosen.property("linux,initrd-start").is_none());
            assert!(chosen.property("linux,initrd-end").is_none());
            assert!(!blob.windows(6).any(|w| w == b"initrd"));
        }
    }

    /// Decompiles `blob` with `dtc`; `None` when dtc cannot be run. Fails
    /// the test if dtc rejects the blob or prints any diagnostic at all.
    fn dtc_decompile(blob: &[u8], tag: &str) -> Option<String> {
        use std::process::Command;
        let path = std::env::temp_dir().join(format!(
            "bulkhead-dtb-test-{}-{tag}.dtb",
            std::process::id()
        ));
        std::fs::write(&path, blob).unwrap();
        let run = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let out = match run {
            Ok(out) => out,
            Err(e) => {
                println!("note: dtc not runnable ({e}); skipping the dtc check");
                return None;
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "dtc rejected the {tag} blob: {stderr}"
        );
        assert!(
            stderr.trim().is_empty(),
            "dtc diagnostics for the {tag} blob:\n{stderr}"
        );
        Some(String::from_utf8(out.stdout).unwrap())
    }

    /// `dtc` accepts the blobs and decompiles them to the expected source.
    #[test]
    fn dtc_decompiles_the_blobs() {
        for (tag, p) in [
            ("victim", victim()),
            ("victim-initrd", victim_with_initrd(0x12345)),
            ("biggest", biggest()),
            ("biggest-other", biggest_with(&"c".repeat(64))),
        ] {
            for gic in GICS {
                if dtc_decompile(&generate(&p, gic), &format!("{tag}-{gic:?}")).is_none() {
                    return;
                }
            }
        }
        let mut attacker = attacker();
        attacker.initrd_size = 0x12345;
        let Some(dts) = dtc_decompile(&generate(&attacker, GicVersion::V3), "attacker") else {
            return;
        };
        for line in [
            "#address-cells = <",
            "compatible = \"bulkhead,domain\";",
            "model = \"Bulkhead domain attacker\";",
            "chosen {",
            "bootargs = \"attack=victim-ram:0x48000000,partitioner:0x40200000\";",
            "bulkhead,domain-name = \"attacker\";",
            "stdout-path = \"/uart1@9040000\";",
            // 4 MiB at 0x4000_0000: tree at 0x403f_0000, initrd below it.
            "linux,initrd-start = <0x00 0x403dd000>;",
            "linux,initrd-end = <0x00 0x403ef345>;",
            "cpus {",
            "cpu@0 {",
            "device_type = \"cpu\";",
            "compatible = \"arm,armv8\";",
            "enable-method = \"psci\";",
            "memory@40000000 {",
            "memory@80000000 {",
            "device_type = \"memory\";",
            "psci {",
            "method = \"hvc\";",
            "gpio@9030000 {",
            "compatible = \"arm,pl061\";",
            "uart1@9040000 {",
            "uart2@9050000 {",
            "clocks = <0x02 0x02>;",
            "interrupt-parent = <0x01>;",
            "intc@8000000 {",
            "compatible = \"arm,gic-v3\";",
            "#interrupt-cells = <0x03>;",
            "interrupt-controller;",
            "#address-cells = <0x00>;",
            "#redistributor-regions = <0x01>;",
            "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x20000>;",
            "phandle = <0x01>;",
            "timer {",
            "compatible = \"arm,armv8-timer\";",
            "interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;",
            "apb-pclk {",
            "compatible = \"fixed-clock\";",
            "#clock-cells = <0x00>;",
            "clock-frequency = <0x16e3600>;",
            "clock-output-names = \"clk24mhz\";",
            "phandle = <0x02>;",
        ] {
            assert!(dts.contains(line), "dtc output lacks {line:?}:\n{dts}");
        }
        // dtc versions differ in how they print string lists.
        for (prop, list) in [
            ("compatible", ["arm,psci-1.0", "arm,psci-0.2"]),
            ("compatible", ["arm,pl011", "arm,primecell"]),
            ("clock-names", ["uartclk", "apb_pclk"]),
        ] {
            let [a, b] = list;
            assert!(
                dts.contains(&format!("{prop} = \"{a}\", \"{b}\";"))
                    || dts.contains(&format!("{prop} = \"{a}\\0{b}\";")),
                "dtc output lacks {prop} = {list:?}:\n{dts}"
            );
        }
        // The clock comes right after the timer, before the devices.
        let at = |node: &str| dts.find(node).unwrap_or_else(|| panic!("{node}"));
        assert!(at("timer {") < at("apb-pclk {"));
        assert!(at("apb-pclk {") < at("gpio@9030000 {"));
    }

    #[test]
    fn names_are_at_most_80_bytes() {
        let a = "a".repeat(79);
        assert_eq!(name(format_args!("{a}b")).unwrap().as_str().len(), 80);
        assert_eq!(
            name(format_args!("{a}bc")).unwrap_err(),
            DtbError::InvalidString
        );
        assert_eq!(
            name(format_args!("{a}{a}")).unwrap_err(),
            DtbError::InvalidString
        );
    }
}
