//! Checks a hand-written device tree supplied for a domain in place of the
//! one [`crate::dtb::domain_tree`] would generate.
//!
//! The blob is untrusted: [`check_supplied`] never panics, whatever the
//! bytes. A supplied tree may describe only hardware the domain owns:
//!
//! 1. It must be a well-formed FDT ([`crate::fdt_check`]) of at most
//!    [`DTB_MAX`] bytes, with `#address-cells = <2>` and `#size-cells = <2>`
//!    at the root.
//! 2. `/cpus` holds at most as many `cpu` nodes as the domain has vCPUs, each
//!    with a `reg` (one or two cells) naming one of them (`0..vcpus`).
//! 3. Every `device_type = "memory"` node's `reg` (read as 2/2 cells, as
//!    Linux reads it whatever the parent; disabled or not) lies inside the
//!    domain's RAM.
//! 4. Every other node's `reg`, when the addresses of its parent's children
//!    are guest-physical ones (see below), lies inside what the domain owns:
//!    its RAM, its passthrough devices' windows, its virtual console page and
//!    the virtual GIC's windows (of the given version, or of either when the
//!    version is not known). Nodes with `status = "disabled"`, and everything
//!    below them, are skipped.
//! 5. Every `interrupts` property is a list of 3-cell GIC specifiers: type 0
//!    (SPI) must name one of the domain's SPIs, type 1 (PPI) is accepted (the
//!    vGIC only lets a vCPU see its own PPIs), other types are rejected.
//!    `interrupts-extended` and `interrupt-map` are rejected: their
//!    specifiers cannot be read without following phandles.
//! 6. `/chosen` (the root's first child so named) may hold anything.
//!
//! Which `reg` values are guest-physical addresses (rule 4): the root's
//! children's, and those of the children of any node that has
//! `#address-cells = <2>`, `#size-cells = <2>` and no `ranges` (whether or
//! not the node is reachable from the root by address translation: the
//! conservative reading). Nodes under `/cpus` are not (cpu `reg`s are rule 2).
//! Address translation is followed one step so that it cannot be used to
//! reach hardware unseen:
//!
//! * an empty `ranges` (identity mapping) on a node whose own `reg` is
//!   guest-physical makes its children's addresses guest-physical too, read
//!   with the node's cells (one or two each);
//! * a non-empty `ranges` on such a node has its parent-side windows checked
//!   like `reg` (rule 4); everything below then translates into those
//!   windows (or nowhere), so it is not looked at further.
//!
//! `#address-cells`/`#size-cells` missing on a node are inherited from its
//! parent, as Linux does.

use crate::board::Range;
use crate::dtb::DTB_MAX;
use crate::error::{bounded, Path};
use crate::fdt_check::{self, Cells, FdtError, Node, Prop};
use crate::plan::{vgic_window, DomainPlan, GicVersion, MAX_DEVICES, MAX_IRQS, MAX_REGIONS};
use core::fmt;

/// Most problems kept; [`Problems::overflowed`] says whether more were found.
pub const MAX_PROBLEMS: usize = 16;
/// Size of the virtual console's page.
pub const VIRTUAL_CONSOLE_SIZE: u64 = 0x1000;

/// Root `#address-cells`/`#size-cells` a supplied tree must use.
const ROOT_CELLS: (u32, u32) = (2, 2);
/// Cells of one GIC `interrupts` specifier.
const GIC_INTERRUPT_CELLS: usize = 3;
/// `interrupts` specifier types (GIC binding).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Longest `#address-cells` accepted on the child side of a `ranges` entry
/// (3: PCI).
const MAX_CHILD_ADDRESS_CELLS: u32 = 3;
/// Room for a node path while walking; reported paths are cut to [`Path`].
const PATH_BUF: usize = 256;
/// Everything a domain owns in guest-physical space: RAM, devices, the
/// virtual console and up to two GIC versions' two windows each.
const MAX_OWNED: usize = MAX_REGIONS + MAX_DEVICES + 1 + 4;

/// One way a supplied device tree breaks the rules (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not a well-formed, complete FDT.
    Malformed { error: FdtError },
    /// Larger than [`DTB_MAX`].
    TooLarge { size: usize, max: usize },
    /// The root's `#address-cells`/`#size-cells` are not 2/2 (`None`:
    /// missing or not one cell).
    RootCells {
        address_cells: Option<u32>,
        size_cells: Option<u32>,
    },
    /// More cpu nodes under `/cpus` than the domain has vCPUs.
    TooManyCpus {
        path: Path,
        count: usize,
        vcpus: usize,
    },
    /// A cpu node's `reg` is not one of the domain's vCPUs (`None`: missing,
    /// or neither one nor two cells).
    CpuReg {
        path: Path,
        reg: Option<u64>,
        vcpus: usize,
    },
    /// A property's length is not a whole number of entries (or, for a cell
    /// count, not one cell).
    BadLength {
        path: Path,
        property: &'static str,
        bytes: usize,
        entry: usize,
    },
    /// A memory node names memory outside the domain's RAM.
    MemoryOutsideRam { path: Path, range: Range },
    /// A `reg` or `ranges` window lies (partly) outside everything the domain owns.
    NotOwned {
        path: Path,
        property: &'static str,
        range: Range,
    },
    /// A node translates addresses (`ranges`) with cell counts this check
    /// cannot read.
    UnsupportedCells {
        path: Path,
        address_cells: u32,
        size_cells: u32,
    },
    /// An `interrupts` specifier names an SPI the domain does not own.
    ForeignSpi { path: Path, spi: u32 },
    /// An `interrupts` specifier is neither an SPI nor a PPI.
    InterruptType { path: Path, kind: u32, number: u32 },
    /// A property whose contents cannot be checked.
    UnsupportedProperty { path: Path, property: &'static str },
}

impl Problem {
    /// Stable kebab-case identifier of the kind of problem.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Malformed { .. } => "dtb-malformed",
            Problem::TooLarge { .. } => "dtb-too-large",
            Problem::RootCells { .. } => "dtb-root-cells",
            Problem::TooManyCpus { .. } => "dtb-too-many-cpus",
            Problem::CpuReg { .. } => "dtb-cpu-reg",
            Problem::BadLength { .. } => "dtb-bad-length",
            Problem::MemoryOutsideRam { .. } => "dtb-memory-outside-ram",
            Problem::NotOwned { .. } => "dtb-not-owned",
            Problem::UnsupportedCells { .. } => "dtb-unsupported-cells",
            Problem::ForeignSpi { .. } => "dtb-foreign-spi",
            Problem::InterruptType { .. } => "dtb-interrupt-type",
            Problem::UnsupportedProperty { .. } => "dtb-unsupported-property",
        }
    }

    /// Every code [`Problem::code`] can return.
    pub const CODES: &'static [&'static str] = &[
        "dtb-malformed",
        "dtb-too-large",
        "dtb-root-cells",
        "dtb-too-many-cpus",
        "dtb-cpu-reg",
        "dtb-bad-length",
        "dtb-memory-outside-ram",
        "dtb-not-owned",
        "dtb-unsupported-cells",
        "dtb-foreign-spi",
        "dtb-interrupt-type",
        "dtb-unsupported-property",
    ];

    /// Path of the node concerned (`None` for problems with the whole blob).
    pub fn path(&self) -> Option<&str> {
        match self {
            Problem::Malformed { .. } | Problem::TooLarge { .. } => None,
            Problem::RootCells { .. } => Some("/"),
            Problem::TooManyCpus { path, .. }
            | Problem::CpuReg { path, .. }
            | Problem::BadLength { path, .. }
            | Problem::MemoryOutsideRam { path, .. }
            | Problem::NotOwned { path, .. }
            | Problem::UnsupportedCells { path, .. }
            | Problem::ForeignSpi { path, .. }
            | Problem::InterruptType { path, .. }
            | Problem::UnsupportedProperty { path, .. } => Some(path),
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed { error } => write!(f, "not a valid device tree blob: {error}"),
            Problem::TooLarge { size, max } => {
                write!(f, "{size} bytes is larger than the {max}-byte limit")
            }
            Problem::RootCells {
                address_cells,
                size_cells,
            } => write!(
                f,
                "#address-cells is {}, #size-cells is {}: a supplied device tree must use <2> and <2>",
                Cell(*address_cells),
                Cell(*size_cells)
            ),
            Problem::TooManyCpus { count, vcpus, .. } => write!(
                f,
                "{count} cpu nodes, but the domain has {vcpus} vCPUs"
            ),
            Problem::CpuReg { reg, vcpus, .. } => match reg {
                Some(reg) => write!(
                    f,
                    "reg {reg:#x} is not a vCPU of the domain (it has vCPUs 0..{vcpus})"
                ),
                None => f.write_str("reg is missing or neither one nor two cells"),
            },
            Problem::BadLength {
                property,
                bytes,
                entry,
                ..
            } => write!(
                f,
                "{property} is {bytes} bytes long, not a whole number of {entry}-byte entries"
            ),
            Problem::MemoryOutsideRam { range, .. } => write!(
                f,
                "memory {} is not inside the domain's RAM",
                R(*range)
            ),
            Problem::NotOwned {
                property, range, ..
            } => write!(
                f,
                "{property} {} names hardware the domain does not own",
                R(*range)
            ),
            Problem::UnsupportedCells {
                address_cells,
                size_cells,
                ..
            } => write!(
                f,
                "address translation (ranges) with #address-cells = <{address_cells}>, #size-cells = <{size_cells}> is not supported"
            ),
            Problem::ForeignSpi { spi, .. } => {
                write!(f, "interrupts names SPI {spi}, which the domain does not own")
            }
            Problem::InterruptType { kind, number, .. } => write!(
                f,
                "interrupts specifier <{kind} {number} ..> is neither an SPI (type 0) nor a PPI (type 1)"
            ),
            Problem::UnsupportedProperty { property, .. } => write!(
                f,
                "{property} is not supported in a supplied device tree (use interrupts)"
            ),
        }
    }
}

impl fmt::Display for Problem {
    /// One line: `device tree /uart@9040000: reg 0x9040000..0x9041000 names hardware ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path() {
            Some(path) => write!(f, "device tree {path}: ")?,
            None => f.write_str("device tree: ")?,
        }
        self.describe(f)
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

/// A cell count, `<n>` or `absent`.
struct Cell(Option<u32>);

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "<{}>", u64::from(n)),
            None => f.write_str("absent (or not one cell)"),
        }
    }
}

impl crate::error::Finding for Problem {
    const PLURAL: &'static str = "problems";
}

/// Every problem found in a supplied tree (up to [`MAX_PROBLEMS`]).
pub type Problems = crate::error::Capped<Problem, MAX_PROBLEMS>;

/// Checks a device tree supplied for the domain `plan` describes (see the
/// module docs for the rules). `gic` is the interrupt controller generation
/// the domain will see; `None` (when it is not known yet, as on the host)
/// accepts the virtual GIC windows of either.
#[allow(clippy::result_large_err)] // Like `validate::check`: no allocator to box it in.
#[inline(never)]
pub fn check_supplied(
    plan: &DomainPlan,
    gic: Option<GicVersion>,
    blob: &[u8],
) -> Result<(), Problems> {
    let mut problems = Problems::new();
    if blob.len() > DTB_MAX {
        problems.push(Problem::TooLarge {
            size: blob.len(),
            max: DTB_MAX,
        });
        return Err(problems);
    }
    let fdt = match fdt_check::check(blob) {
        Ok(fdt) => fdt,
        Err(error) => {
            problems.push(Problem::Malformed { error });
            return Err(problems);
        }
    };
    let root = fdt.root();
    let address_cells = root.prop("#address-cells").and_then(|p| p.as_u32());
    let size_cells = root.prop("#size-cells").and_then(|p| p.as_u32());
    if (address_cells, size_cells) != (Some(ROOT_CELLS.0), Some(ROOT_CELLS.1)) {
        problems.push(Problem::RootCells {
            address_cells,
            size_cells,
        });
        return Err(problems);
    }

    let mut walk = Walk::new(plan, gic, problems);
    walk.cpus(root, plan.cpus.len());
    walk.properties(root);
    let mut chosen_seen = false;
    for child in root.children() {
        if child.name() == "chosen" && !chosen_seen {
            chosen_seen = true;
            continue;
        }
        walk.visit(child, Space::GuestPhysical(ROOT_CELLS), ROOT_CELLS, true);
    }
    if walk.problems.is_empty() {
        Ok(())
    } else {
        Err(walk.problems)
    }
}

/// What the `reg` addresses of a node's children are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Space {
    /// Guest-physical addresses, with these `(#address-cells, #size-cells)`
    /// (each 1 or 2).
    GuestPhysical((u32, u32)),
    /// Something else (CPU numbers, I2C addresses...): not interpreted.
    Other,
    /// Addresses behind a `ranges` translation whose windows were checked
    /// (or which leads nowhere): not interpreted.
    Translated,
}

/// The state of a walk over a checked tree.
struct Walk {
    /// The domain's RAM (guest addresses).
    ram: heapless::Vec<Range, MAX_REGIONS>,
    /// Everything the domain owns (guest addresses).
    owned: heapless::Vec<Range, MAX_OWNED>,
    /// Its devices' SPIs and its virtual console's.
    spis: heapless::Vec<u32, { MAX_DEVICES * MAX_IRQS + 1 }>,
    problems: Problems,
    /// Path of the node being visited (`""` for the root).
    path: heapless::String<PATH_BUF>,
    /// The domain owns PCI functions: its PCIe host bridge's
    /// `interrupt-map` (INTx to its own SPIs) is checked, not refused.
    pci: bool,
}

impl Walk {
    fn new(plan: &DomainPlan, gic: Option<GicVersion>, problems: Problems) -> Self {
        let mut ram = heapless::Vec::new();
        let mut owned = heapless::Vec::new();
        let mut spis = heapless::Vec::new();
        for m in &plan.ram {
            let _ = ram.push(m.ipa_range());
            let _ = owned.push(m.ipa_range());
        }
        for d in &plan.devices {
            let _ = owned.push(d.mapping.ipa_range());
            for &spi in &d.spis {
                let _ = spis.push(spi);
            }
        }
        if let Some(ipa) = plan.virtual_console {
            let _ = owned.push(Range::new(ipa, VIRTUAL_CONSOLE_SIZE));
            let _ = spis.push(crate::plan::VIRTUAL_CONSOLE_SPI);
        }
        let pci = plan.devices.iter().any(|d| d.pci.is_some());
        if pci {
            let _ = owned.push(Range::new(crate::pci::VECAM_IPA, crate::pci::VECAM_SIZE));
        }
        let versions: &[GicVersion] = match gic {
            Some(GicVersion::V2) => &[GicVersion::V2],
            Some(GicVersion::V3) => &[GicVersion::V3],
            None => &[GicVersion::V2, GicVersion::V3],
        };
        for &v in versions {
            for window in vgic_window(v, plan.cpus.len()) {
                let _ = owned.push(window);
            }
        }
        Self {
            ram,
            owned,
            spis,
            problems,
            path: heapless::String::new(),
            pci,
        }
    }

    /// The current node's path, bounded.
    fn here(&self) -> Path {
        if self.path.is_empty() {
            bounded("/")
        } else {
            bounded(&self.path)
        }
    }

    /// Appends `/name` to the path; returns the length to go back to.
    fn enter(&mut self, name: &str) -> usize {
        let mark = self.path.len();
        // Cut at the first character that does not fit.
        if self.path.push('/').is_ok() {
            let room = self.path.capacity() - self.path.len();
            let _ = self.path.push_str(crate::error::prefix(name, room));
        }
        mark
    }

    fn leave(&mut self, mark: usize) {
        self.path.truncate(mark);
    }

    /// Rule 2: every root child called `cpus`.
    #[inline(never)]
    fn cpus(&mut self, root: Node<'_>, vcpus: usize) {
        for cpus in root.children().filter(|c| c.name() == "cpus") {
            let outer = self.enter(cpus.name());
            let mut count = 0usize;
            for cpu in cpus.children().filter(|c| is_cpu(*c)) {
                count = count.saturating_add(1);
                let reg = cpu.prop("reg").and_then(|p| match p.value.len() {
                    4 => p.as_u32().map(u64::from),
                    8 => p.as_u64(),
                    _ => None,
                });
                if reg.is_none_or(|r| r >= vcpus as u64) {
                    let mark = self.enter(cpu.name());
                    let path = self.here();
                    self.problems.push(Problem::CpuReg { path, reg, vcpus });
                    self.leave(mark);
                }
            }
            if count > vcpus {
                let path = self.here();
                self.problems
                    .push(Problem::TooManyCpus { path, count, vcpus });
            }
            self.leave(outer);
        }
    }

    /// Rules 3 to 5 for `node` and everything below it. `space` is what the
    /// node's own `reg` addresses are, `inherited` the cells it inherits.
    fn visit(&mut self, node: Node<'_>, space: Space, inherited: (u32, u32), top: bool) {
        let mark = self.enter(node.name());
        let is_memory = node.prop("device_type").and_then(|p| p.as_str()) == Some("memory");
        if is_memory {
            self.memory(node);
        }
        if node.prop("status").and_then(|p| p.as_str()) == Some("disabled") {
            self.leave(mark);
            return;
        }
        self.properties(node);
        if !is_memory {
            if let (Some(reg), Space::GuestPhysical(cells)) = (node.prop("reg"), space) {
                self.windows(reg, "reg", 0, cells);
            }
        }

        let cells = self.cells(node, inherited);
        let below = if top && node.name() == "cpus" {
            Space::Other
        } else {
            self.children_space(node, space, cells)
        };
        for child in node.children() {
            self.visit(child, below, cells, false);
        }
        self.leave(mark);
    }

    /// Rule 5 (and the properties it cannot check) for one node.
    fn properties(&mut self, node: Node<'_>) {
        if self.pci {
            if let Some(map) = node.prop("interrupt-map") {
                self.interrupt_map(map.value);
            }
        }
        let refused: &[&'static str] = if self.pci {
            &["interrupts-extended"]
        } else {
            &["interrupts-extended", "interrupt-map"]
        };
        for &property in refused {
            if node.prop(property).is_some() {
                let path = self.here();
                self.problems
                    .push(Problem::UnsupportedProperty { path, property });
            }
        }
        let Some(prop) = node.prop("interrupts") else {
            return;
        };
        let entry = GIC_INTERRUPT_CELLS * 4;
        let cells = prop
            .as_cells()
            .filter(|_| prop.value.len().is_multiple_of(entry));
        let Some(mut cells) = cells else {
            let path = self.here();
            self.problems.push(Problem::BadLength {
                path,
                property: "interrupts",
                bytes: prop.value.len(),
                entry,
            });
            return;
        };
        while let (Some(kind), Some(number), Some(_flags)) =
            (cells.next(), cells.next(), cells.next())
        {
            match kind {
                GIC_SPI if self.spis.contains(&number) => {}
                GIC_SPI => {
                    let path = self.here();
                    self.problems
                        .push(Problem::ForeignSpi { path, spi: number });
                }
                GIC_PPI => {}
                _ => {
                    let path = self.here();
                    self.problems
                        .push(Problem::InterruptType { path, kind, number });
                }
            }
        }
    }

    /// A PCIe host bridge's `interrupt-map` (domains with PCI functions):
    /// entries of a 3-cell PCI unit address, a pin, the GIC's phandle (its
    /// `#address-cells` is 0) and a 3-cell GIC specifier, each an SPI of the
    /// domain's own.
    fn interrupt_map(&mut self, value: &[u8]) {
        const ENTRY: usize = 8 * 4;
        if !value.len().is_multiple_of(ENTRY) {
            let path = self.here();
            self.problems.push(Problem::BadLength {
                path,
                property: "interrupt-map",
                bytes: value.len(),
                entry: ENTRY,
            });
            return;
        }
        for entry in value.chunks_exact(ENTRY) {
            let cell = |i: usize| {
                u32::from_be_bytes([
                    entry[4 * i],
                    entry[4 * i + 1],
                    entry[4 * i + 2],
                    entry[4 * i + 3],
                ])
            };
            let (kind, number) = (cell(5), cell(6));
            if kind != GIC_SPI {
                let path = self.here();
                self.problems
                    .push(Problem::InterruptType { path, kind, number });
            } else if !self.spis.contains(&number) {
                let path = self.here();
                self.problems
                    .push(Problem::ForeignSpi { path, spi: number });
            }
        }
    }

    /// Rule 3: a memory node's `reg`, read with the root's cells.
    fn memory(&mut self, node: Node<'_>) {
        let Some(reg) = node.prop("reg") else {
            return;
        };
        let Some(ranges) = self.entries(reg, "reg", 0, ROOT_CELLS) else {
            return;
        };
        for range in ranges {
            if !covered(range, &self.ram) {
                let path = self.here();
                self.problems
                    .push(Problem::MemoryOutsideRam { path, range });
            }
        }
    }

    /// Rule 4: every window of `prop` (entries of `skip` cells to ignore,
    /// then an address and a size of `cells`) lies inside what the domain owns.
    fn windows(&mut self, prop: Prop<'_>, property: &'static str, skip: u32, cells: (u32, u32)) {
        let Some(ranges) = self.entries(prop, property, skip, cells) else {
            return;
        };
        for range in ranges {
            if !covered(range, &self.owned) {
                let path = self.here();
                self.problems.push(Problem::NotOwned {
                    path,
                    property,
                    range,
                });
            }
        }
    }

    /// The `(address, size)` windows of a `reg`-like property, or `None`
    /// (after recording the problem) when its length is not a whole number
    /// of entries.
    fn entries<'a>(
        &mut self,
        prop: Prop<'a>,
        property: &'static str,
        skip: u32,
        (address_cells, size_cells): (u32, u32),
    ) -> Option<Entries<'a>> {
        let entry_cells = skip
            .saturating_add(address_cells)
            .saturating_add(size_cells);
        let entry = usize::try_from(entry_cells)
            .ok()
            .and_then(|c| c.checked_mul(4))
            .unwrap_or(usize::MAX);
        let cells = prop
            .as_cells()
            .filter(|_| entry != 0 && prop.value.len().is_multiple_of(entry));
        match cells {
            Some(cells) => Some(Entries {
                cells,
                skip,
                address_cells,
                size_cells,
            }),
            None => {
                let path = self.here();
                self.problems.push(Problem::BadLength {
                    path,
                    property,
                    bytes: prop.value.len(),
                    entry,
                });
                None
            }
        }
    }

    /// The node's `(#address-cells, #size-cells)`: its own, else inherited.
    fn cells(&mut self, node: Node<'_>, inherited: (u32, u32)) -> (u32, u32) {
        let mut one = |property: &'static str, inherited: u32| match node.prop(property) {
            None => inherited,
            Some(p) => match p.as_u32() {
                Some(n) => n,
                None => {
                    let path = self.here();
                    self.problems.push(Problem::BadLength {
                        path,
                        property,
                        bytes: p.value.len(),
                        entry: 4,
                    });
                    inherited
                }
            },
        };
        let address = one("#address-cells", inherited.0);
        let size = one("#size-cells", inherited.1);
        (address, size)
    }

    /// What the `reg` addresses of `node`'s children are, given what its own
    /// are (`space`) and its cells; checks its `ranges` windows.
    fn children_space(&mut self, node: Node<'_>, space: Space, cells: (u32, u32)) -> Space {
        let readable = |(a, s): (u32, u32)| (1..=2).contains(&a) && (1..=2).contains(&s);
        match (space, node.prop("ranges")) {
            (Space::Translated, _) => Space::Translated,
            // No `ranges`: 2/2 children are read as guest-physical (conservative).
            (_, None) if cells == ROOT_CELLS => Space::GuestPhysical(cells),
            (_, None) => Space::Other,
            // Identity mapping.
            (Space::GuestPhysical(_), Some(r)) if r.value.is_empty() => {
                if readable(cells) {
                    Space::GuestPhysical(cells)
                } else {
                    self.unsupported(cells);
                    Space::Translated
                }
            }
            (Space::Other, Some(r)) if r.value.is_empty() => {
                if cells == ROOT_CELLS {
                    Space::GuestPhysical(cells)
                } else {
                    Space::Other
                }
            }
            (Space::GuestPhysical(parent), Some(ranges)) => {
                let (child_address, size) = cells;
                if child_address > MAX_CHILD_ADDRESS_CELLS || !(1..=2).contains(&size) {
                    self.unsupported(cells);
                } else {
                    self.windows(ranges, "ranges", child_address, (parent.0, size));
                }
                Space::Translated
            }
            (Space::Other, Some(_)) => Space::Translated,
        }
    }

    fn unsupported(&mut self, (address_cells, size_cells): (u32, u32)) {
        let path = self.here();
        self.problems.push(Problem::UnsupportedCells {
            path,
            address_cells,
            size_cells,
        });
    }
}

/// A cpu node under `/cpus`: `device_type = "cpu"` or named `cpu[@...]`.
fn is_cpu(node: Node<'_>) -> bool {
    let base = node.name().split('@').next().unwrap_or_default();
    base == "cpu" || node.prop("device_type").and_then(|p| p.as_str()) == Some("cpu")
}

/// The windows of a `reg`-like property whose length was checked.
struct Entries<'a> {
    cells: Cells<'a>,
    /// Leading cells of each entry to ignore (a `ranges` child address).
    skip: u32,
    address_cells: u32,
    size_cells: u32,
}

impl Iterator for Entries<'_> {
    type Item = Range;
    fn next(&mut self) -> Option<Range> {
        for _ in 0..self.skip {
            self.cells.next()?;
        }
        let base = number(&mut self.cells, self.address_cells)?;
        let size = number(&mut self.cells, self.size_cells)?;
        Some(Range::new(base, size))
    }
}

/// A number of `n` (at most 2) cells.
fn number(cells: &mut Cells<'_>, n: u32) -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..n.min(2) {
        value = (value << 32) | u64::from(cells.next()?);
    }
    Some(value)
}

/// Whether `range` lies inside the union of `owned` (an empty range: its
/// address does). A range that wraps the address space never does.
fn covered(range: Range, owned: &[Range]) -> bool {
    if range.size == 0 {
        return owned.iter().any(|o| o.contains_addr(range.base));
    }
    let Some(end) = range.end() else {
        return false;
    };
    let mut at = range.base;
    // Each step moves past one owned range, so this many steps suffice.
    for _ in 0..=owned.len() {
        if at >= end {
            return true;
        }
        match owned.iter().find(|o| o.contains_addr(at)).map(|o| o.end()) {
            Some(Some(next)) => at = next,
            // An owned range reaching the top of the address space.
            Some(None) => return true,
            None => return false,
        }
    }
    at >= end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtb::{domain_tree, FdtWriter};
    use crate::plan::fixtures::{device, domain as plan};
    use crate::plan::{
        Mapping, MemKind, MAX_CPUS, MAX_NAME, VGICC_IPA, VGICD_IPA, VGICR_IPA, VGICR_STRIDE,
        VIRTUAL_CONSOLE_IPA,
    };
    use std::format;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const V2: GicVersion = GicVersion::V2;
    const V3: GicVersion = GicVersion::V3;
    const GICS: [Option<GicVersion>; 3] = [Some(V2), Some(V3), None];

    fn ram(ipa: u64, size: u64) -> Mapping {
        Mapping {
            ipa,
            pa: ipa + 0x1000_0000,
            size,
            kind: MemKind::Ram,
        }
    }

    /// Two vCPUs, 2 MiB of RAM, an RTC (SPI 2) and a virtual console.
    fn victim() -> DomainPlan {
        let mut p = plan(
            "victim",
            2,
            &[ram(0x4000_0000, 2 * MIB)],
            &[device("rtc", "arm,pl031", 0x0901_0000, 0x1000, &[2])],
        );
        p.virtual_console = Some(VIRTUAL_CONSOLE_IPA);
        p
    }

    /// One vCPU, two RAM regions, its own UARTs and a GPIO block.
    fn attacker() -> DomainPlan {
        plan(
            "attacker",
            1,
            &[ram(0x4000_0000, 4 * MIB), ram(0x8000_0000, MIB)],
            &[
                device("gpio", "arm,pl061", 0x0903_0000, 0x1000, &[7, 9, 11]),
                device("uart1", "arm,pl011", 0x0904_0000, 0x1000, &[8]),
                device("uart2", "arm,pl011", 0x0905_0000, 0x1000, &[]),
            ],
        )
    }

    /// Everything at its maximum.
    fn biggest() -> DomainPlan {
        let rams: Vec<_> = (0..MAX_REGIONS as u64)
            .map(|i| ram(0xffff_0000_0000 + i * 0x1_0000_0000, 0x1_0000_0000))
            .collect();
        let devices: Vec<_> = (0..MAX_DEVICES as u64)
            .map(|i| {
                let name = format!("{}{i}", "d".repeat(MAX_NAME - 1));
                let spis: Vec<u32> = (0..MAX_IRQS as u32)
                    .map(|s| 900 + 4 * i as u32 + s)
                    .collect();
                device(
                    &name,
                    "arm,pl011",
                    0xffff_ffff_0000 + i * 0x1000,
                    0x1000,
                    &spis,
                )
            })
            .collect();
        let mut p = plan(&"n".repeat(MAX_NAME), MAX_CPUS, &rams, &devices);
        p.virtual_console = Some(0xffff_ffff_f000);
        p.entry = rams[MAX_REGIONS - 1].ipa;
        p.initrd_size = 0x1000_0000;
        p
    }

    fn generate(plan: &DomainPlan, gic: GicVersion) -> Vec<u8> {
        let mut buf = vec![0u8; DTB_MAX];
        let len = domain_tree(plan, gic, &mut buf).expect("tree fits");
        buf.truncate(len);
        buf
    }

    type W<'a, 'b> = &'a mut FdtWriter<'b>;

    /// A tree with a 2/2 root holding what `body` writes.
    fn tree(body: impl FnOnce(W<'_, '_>)) -> Vec<u8> {
        tree_with_root_cells(Some(2), Some(2), body)
    }

    fn tree_with_root_cells(
        address: Option<u32>,
        size: Option<u32>,
        body: impl FnOnce(W<'_, '_>),
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 4 * DTB_MAX];
        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        if let Some(a) = address {
            w.prop_u32("#address-cells", a).unwrap();
        }
        if let Some(s) = size {
            w.prop_u32("#size-cells", s).unwrap();
        }
        body(&mut w);
        w.end_node().unwrap();
        let len = w.finish().unwrap();
        buf.truncate(len);
        buf
    }

    /// A node with the properties (and children) `body` writes.
    fn node(w: W<'_, '_>, name: &str, body: impl FnOnce(W<'_, '_>)) {
        w.begin_node(name).unwrap();
        body(w);
        w.end_node().unwrap();
    }

    /// A node with a one-entry 2/2 `reg` (and what `body` adds).
    fn dev(w: W<'_, '_>, name: &str, base: u64, size: u64, body: impl FnOnce(W<'_, '_>)) {
        node(w, name, |w| {
            w.prop_str("compatible", "arm,pl011").unwrap();
            w.prop_u64s("reg", &[base, size]).unwrap();
            body(w);
        });
    }

    fn nothing(_: W<'_, '_>) {}

    /// What a plan's own tree minimally holds: its vCPUs and its RAM.
    fn base(w: W<'_, '_>, plan: &DomainPlan) {
        cpus(w, plan.cpus.len());
        for m in &plan.ram {
            memory(w, m.ipa, &[m.ipa, m.size]);
        }
    }

    fn cpus(w: W<'_, '_>, n: usize) {
        node(w, "cpus", |w| {
            w.prop_u32("#address-cells", 1).unwrap();
            w.prop_u32("#size-cells", 0).unwrap();
            for i in 0..n as u32 {
                node(w, &format!("cpu@{i}"), |w| {
                    w.prop_str("device_type", "cpu").unwrap();
                    w.prop_u32("reg", i).unwrap();
                });
            }
        });
    }

    fn memory(w: W<'_, '_>, at: u64, reg: &[u64]) {
        node(w, &format!("memory@{at:x}"), |w| {
            w.prop_str("device_type", "memory").unwrap();
            w.prop_u64s("reg", reg).unwrap();
        });
    }

    /// `plan`'s minimal tree plus what `extra` writes.
    fn with(plan: &DomainPlan, extra: impl FnOnce(W<'_, '_>)) -> Vec<u8> {
        tree(|w| {
            base(w, plan);
            extra(w);
        })
    }

    fn check(plan: &DomainPlan, gic: Option<GicVersion>, blob: &[u8]) -> Vec<Problem> {
        match check_supplied(plan, gic, blob) {
            Ok(()) => Vec::new(),
            Err(p) => {
                assert!(!p.is_empty(), "an error holds at least one problem");
                p.iter().cloned().collect()
            }
        }
    }

    /// The problems `blob` has for `plan`, the same whichever GIC is asked for.
    fn problems(plan: &DomainPlan, blob: &[u8]) -> Vec<Problem> {
        let first = check(plan, GICS[0], blob);
        for gic in &GICS[1..] {
            assert_eq!(check(plan, *gic, blob), first, "with {gic:?}");
        }
        first
    }

    fn codes(problems: &[Problem]) -> Vec<&'static str> {
        problems.iter().map(|p| p.code()).collect()
    }

    fn path(s: &str) -> Path {
        bounded(s)
    }

    #[test]
    fn generated_trees_pass() {
        let mut initrd = victim();
        initrd.initrd_size = 0x12345;
        let mut no_console = victim();
        no_console.virtual_console = None;
        let mut bootargs = attacker();
        bootargs.bootargs = "console=ttyAMA0 earlycon".try_into().unwrap();
        for p in [
            victim(),
            attacker(),
            biggest(),
            initrd,
            no_console,
            bootargs,
        ] {
            for v in [V2, V3] {
                let blob = generate(&p, v);
                assert_eq!(check(&p, Some(v), &blob), [], "{} {v:?}", p.name);
                assert_eq!(check(&p, None, &blob), [], "{} {v:?} / None", p.name);
            }
        }
    }

    /// A domain with a PCI function (its BAR block placed, INTA on SPI 6):
    /// the generated host bridge passes; an `interrupt-map` naming another
    /// SPI, or the same tree for a domain without functions, does not.
    #[test]
    fn a_pcie_host_bridge_passes_only_for_a_domain_with_functions() {
        let mut p = victim();
        let mut edu = device("edu", "pci1234,11e8", 0x1000_0000, 0x10_0000, &[6]);
        edu.pci = Some(crate::pci::Bdf::new(0, 3, 0));
        p.devices.push(edu).unwrap();
        for v in [V2, V3] {
            let blob = generate(&p, v);
            assert_eq!(check(&p, Some(v), &blob), [], "{v:?}");
            // The same tree for a domain whose function has SPI 5.
            let mut other = p.clone();
            other.devices[1].spis[0] = 5;
            let problems = check(&other, Some(v), &blob);
            assert!(
                problems
                    .iter()
                    .any(|x| matches!(x, Problem::ForeignSpi { spi: 6, .. })),
                "{problems:?}"
            );
            // Without functions, interrupt-map is refused outright.
            let mut none = p.clone();
            none.devices.truncate(1);
            let problems = check(&none, Some(v), &blob);
            assert!(
                problems.iter().any(|x| matches!(
                    x,
                    Problem::UnsupportedProperty {
                        property: "interrupt-map",
                        ..
                    }
                )),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn a_tree_for_the_other_gic_version_is_rejected() {
        let p = victim();
        // GICv3's redistributors are not a GICv2 domain's.
        let got = check(&p, Some(V2), &generate(&p, V3));
        assert_eq!(
            got,
            [Problem::NotOwned {
                path: path("/intc@8000000"),
                property: "reg",
                range: Range::new(VGICR_IPA, 2 * VGICR_STRIDE),
            }]
        );
        // GICv2's CPU interface is not a GICv3 domain's.
        let got = check(&p, Some(V3), &generate(&p, V2));
        assert_eq!(
            got,
            [Problem::NotOwned {
                path: path("/intc@8000000"),
                property: "reg",
                range: Range::new(VGICC_IPA, 0x2000),
            }]
        );
        // Not knowing the version, both are fine.
        for v in [V2, V3] {
            assert_eq!(check(&p, None, &generate(&p, v)), []);
        }
    }

    #[test]
    fn vgic_windows_follow_the_version_and_vcpu_count() {
        let p = victim(); // two vCPUs
        let at = |name: &str, base: u64, size: u64| with(&p, |w| dev(w, name, base, size, nothing));
        let gicd = at("gicd", VGICD_IPA, 0x1_0000);
        let gicc = at("gicc", VGICC_IPA, 0x2000);
        let gicr = at("gicr", VGICR_IPA, 2 * VGICR_STRIDE);
        let gicr_too_many = at("gicr", VGICR_IPA, 3 * VGICR_STRIDE);
        for gic in GICS {
            assert_eq!(check(&p, gic, &gicd), [], "{gic:?}");
        }
        assert_eq!(codes(&check(&p, Some(V3), &gicc)), ["dtb-not-owned"]);
        assert_eq!(check(&p, Some(V2), &gicc), []);
        assert_eq!(check(&p, None, &gicc), []);
        assert_eq!(codes(&check(&p, Some(V2), &gicr)), ["dtb-not-owned"]);
        assert_eq!(check(&p, Some(V3), &gicr), []);
        assert_eq!(check(&p, None, &gicr), []);
        // A third vCPU's redistributor is not the domain's.
        for gic in GICS {
            assert_eq!(
                codes(&check(&p, gic, &gicr_too_many)),
                ["dtb-not-owned"],
                "{gic:?}"
            );
        }
        // GICD and GICC are adjacent: one window spanning both is fine on GICv2.
        let both = at("gic", VGICD_IPA, 0x1_2000);
        assert_eq!(check(&p, Some(V2), &both), []);
        assert_eq!(codes(&check(&p, Some(V3), &both)), ["dtb-not-owned"]);
    }

    #[test]
    fn a_uart_at_another_domains_address_is_rejected() {
        let p = attacker();
        // The victim's RTC page.
        let blob = with(&p, |w| dev(w, "uart@9010000", 0x0901_0000, 0x1000, nothing));
        let got = problems(&p, &blob);
        assert_eq!(
            got,
            [Problem::NotOwned {
                path: path("/uart@9010000"),
                property: "reg",
                range: Range::new(0x0901_0000, 0x1000),
            }]
        );
        let text = got[0].to_string();
        assert_eq!(
            text,
            "device tree /uart@9010000: reg 0x9010000..0x9011000 names hardware the domain does not own"
        );
        // Its own UART is fine; one page more is not.
        let own = with(&p, |w| dev(w, "uart@9040000", 0x0904_0000, 0x1000, nothing));
        assert_eq!(problems(&p, &own), []);
        let more = with(&p, |w| dev(w, "uart@9040000", 0x0904_0000, 0x2000, nothing));
        assert_eq!(codes(&problems(&p, &more)), ["dtb-not-owned"]);
        // A second reg entry outside, after one inside.
        let second = with(&p, |w| {
            node(w, "uart@9040000", |w| {
                w.prop_u64s("reg", &[0x0904_0000, 0x1000, 0x0900_0000, 0x1000])
                    .unwrap();
            })
        });
        assert_eq!(
            problems(&p, &second),
            [Problem::NotOwned {
                path: path("/uart@9040000"),
                property: "reg",
                range: Range::new(0x0900_0000, 0x1000),
            }]
        );
        // Without a virtual console, its page is nobody's.
        let console = with(&p, |w| {
            dev(w, "uart@9000000", VIRTUAL_CONSOLE_IPA, 0x1000, nothing)
        });
        assert_eq!(codes(&problems(&p, &console)), ["dtb-not-owned"]);
        assert_eq!(
            problems(
                &victim(),
                &with(&victim(), |w| {
                    dev(w, "uart@9000000", VIRTUAL_CONSOLE_IPA, 0x1000, nothing)
                })
            ),
            []
        );
    }

    #[test]
    fn reg_may_name_the_domains_own_ram() {
        let p = attacker();
        let blob = with(&p, |w| {
            node(w, "reserved-memory", |w| {
                w.prop_u32("#address-cells", 2).unwrap();
                w.prop_u32("#size-cells", 2).unwrap();
                w.prop_empty("ranges").unwrap();
                node(w, "shm@80000000", |w| {
                    w.prop_u64s("reg", &[0x8000_0000, 0x10_0000]).unwrap();
                    w.prop_empty("no-map").unwrap();
                });
            })
        });
        assert_eq!(problems(&p, &blob), []);
        // The other domain's RAM is not.
        let foreign = with(&p, |w| dev(w, "shm@48000000", 0x4800_0000, 0x1000, nothing));
        assert_eq!(codes(&problems(&p, &foreign)), ["dtb-not-owned"]);
    }

    #[test]
    fn memory_must_lie_inside_the_domains_ram() {
        let p = victim(); // 2 MiB at 0x4000_0000
        let beyond = tree(|w| {
            cpus(w, 2);
            memory(w, 0x4000_0000, &[0x4000_0000, 4 * MIB]);
        });
        let got = problems(&p, &beyond);
        assert_eq!(
            got,
            [Problem::MemoryOutsideRam {
                path: path("/memory@40000000"),
                range: Range::new(0x4000_0000, 4 * MIB),
            }]
        );
        assert_eq!(
            got[0].to_string(),
            "device tree /memory@40000000: memory 0x40000000..0x40400000 is not inside the domain's RAM"
        );
        // Elsewhere entirely, as a second entry, and at the very top.
        let elsewhere = tree(|w| {
            memory(w, 0x4000_0000, &[0x4000_0000, 2 * MIB, 0x6000_0000, MIB]);
            memory(w, 0, &[u64::MAX - 0xfff, 0x2000]);
        });
        assert_eq!(
            problems(&p, &elsewhere),
            [
                Problem::MemoryOutsideRam {
                    path: path("/memory@40000000"),
                    range: Range::new(0x6000_0000, MIB),
                },
                Problem::MemoryOutsideRam {
                    path: path("/memory@0"),
                    range: Range::new(u64::MAX - 0xfff, 0x2000),
                },
            ]
        );
        // Device windows are not RAM, even the domain's own.
        let device = tree(|w| memory(w, 0x0901_0000, &[0x0901_0000, 0x1000]));
        assert_eq!(codes(&problems(&p, &device)), ["dtb-memory-outside-ram"]);
        // A part of the RAM is fine, so is RAM split over adjacent mappings.
        let part = tree(|w| memory(w, 0x4010_0000, &[0x4010_0000, MIB]));
        assert_eq!(problems(&p, &part), []);
        let split = plan(
            "split",
            1,
            &[ram(0x4000_0000, MIB), ram(0x4010_0000, MIB)],
            &[],
        );
        let whole = tree(|w| memory(w, 0x4000_0000, &[0x4000_0000, 2 * MIB]));
        assert_eq!(problems(&split, &whole), []);
        // Disabled memory nodes are checked all the same.
        let disabled = tree(|w| {
            node(w, "memory@60000000", |w| {
                w.prop_str("device_type", "memory").unwrap();
                w.prop_str("status", "disabled").unwrap();
                w.prop_u64s("reg", &[0x6000_0000, MIB]).unwrap();
            })
        });
        assert_eq!(codes(&problems(&p, &disabled)), ["dtb-memory-outside-ram"]);
        // A memory node's reg is read with the root's cells, wherever it is.
        let nested = tree(|w| {
            node(w, "bus", |w| {
                w.prop_u32("#address-cells", 1).unwrap();
                w.prop_u32("#size-cells", 1).unwrap();
                memory(w, 0x6000_0000, &[0x6000_0000, MIB]);
            })
        });
        assert_eq!(
            problems(&p, &nested),
            [Problem::MemoryOutsideRam {
                path: path("/bus/memory@60000000"),
                range: Range::new(0x6000_0000, MIB),
            }]
        );
        // A malformed memory reg.
        let short = tree(|w| {
            node(w, "memory@40000000", |w| {
                w.prop_str("device_type", "memory").unwrap();
                w.prop_cells("reg", &[0, 0x4000_0000, 0]).unwrap();
            })
        });
        assert_eq!(
            problems(&p, &short),
            [Problem::BadLength {
                path: path("/memory@40000000"),
                property: "reg",
                bytes: 12,
                entry: 16,
            }]
        );
    }

    #[test]
    fn interrupts_must_be_the_domains_spis_or_ppis() {
        let p = victim(); // SPI 2
        let irq = |cells: &'static [u32]| {
            with(&p, move |w| {
                dev(w, "rtc@9010000", 0x0901_0000, 0x1000, |w| {
                    w.prop_cells("interrupts", cells).unwrap()
                })
            })
        };
        assert_eq!(problems(&p, &irq(&[0, 2, 4])), []);
        assert_eq!(problems(&p, &irq(&[1, 13, 0xf04, 1, 14, 4])), []);
        // The virtual console's SPI is the domain's while it has one.
        assert!(p.virtual_console.is_some());
        assert_eq!(problems(&p, &irq(&[0, 1, 4])), []);
        let mut no_console = victim();
        no_console.virtual_console = None;
        let no_console_tree = with(&no_console, |w| {
            dev(w, "rtc@9010000", 0x0901_0000, 0x1000, |w| {
                w.prop_cells("interrupts", &[0, 1, 4]).unwrap()
            })
        });
        assert_eq!(
            problems(&no_console, &no_console_tree),
            [Problem::ForeignSpi {
                path: path("/rtc@9010000"),
                spi: 1,
            }]
        );
        let got = problems(&p, &irq(&[0, 2, 4, 0, 8, 4]));
        assert_eq!(
            got,
            [Problem::ForeignSpi {
                path: path("/rtc@9010000"),
                spi: 8,
            }]
        );
        assert_eq!(
            got[0].to_string(),
            "device tree /rtc@9010000: interrupts names SPI 8, which the domain does not own"
        );
        assert_eq!(
            problems(&p, &irq(&[2, 5, 4])),
            [Problem::InterruptType {
                path: path("/rtc@9010000"),
                kind: 2,
                number: 5,
            }]
        );
        for cells in [&[0u32, 2][..], &[0, 2, 4, 1], &[1]] {
            assert_eq!(
                codes(&problems(&p, &irq(cells))),
                ["dtb-bad-length"],
                "{cells:?}"
            );
        }
        // Not even whole cells.
        let ragged = with(&p, |w| {
            dev(w, "rtc@9010000", 0x0901_0000, 0x1000, |w| {
                w.property("interrupts", &[0; 13]).unwrap()
            })
        });
        assert_eq!(
            problems(&p, &ragged),
            [Problem::BadLength {
                path: path("/rtc@9010000"),
                property: "interrupts",
                bytes: 13,
                entry: 12,
            }]
        );
        // On any node, at any depth, and on the root.
        let deep = with(&p, |w| {
            node(w, "a", |w| {
                node(w, "b", |w| w.prop_cells("interrupts", &[0, 3, 4]).unwrap())
            })
        });
        assert_eq!(
            problems(&p, &deep),
            [Problem::ForeignSpi {
                path: path("/a/b"),
                spi: 3,
            }]
        );
        let on_root = tree(|w| w.prop_cells("interrupts", &[0, 3, 4]).unwrap());
        assert_eq!(
            problems(&p, &on_root),
            [Problem::ForeignSpi {
                path: path("/"),
                spi: 3,
            }]
        );
        // Every SPI of every device counts.
        let a = attacker();
        let all = tree(|w| {
            node(w, "x", |w| {
                w.prop_cells("interrupts", &[0, 7, 4, 0, 9, 4, 0, 11, 4, 0, 8, 4])
                    .unwrap()
            })
        });
        assert_eq!(problems(&a, &all), []);
        assert_eq!(
            codes(&problems(&p, &all)),
            ["dtb-foreign-spi"; 4],
            "none of them are the victim's"
        );
    }

    #[test]
    fn unreadable_interrupt_properties_are_rejected() {
        let p = victim();
        for property in ["interrupts-extended", "interrupt-map"] {
            let blob = with(&p, |w| {
                node(w, "x", |w| w.prop_cells(property, &[1, 0, 2, 4]).unwrap())
            });
            let got = problems(&p, &blob);
            assert_eq!(
                got,
                [Problem::UnsupportedProperty {
                    path: path("/x"),
                    property,
                }]
            );
            assert!(got[0].to_string().contains(property));
        }
    }

    #[test]
    fn cpus_must_be_the_domains_vcpus() {
        let p = victim(); // two vCPUs
        let three = tree(|w| cpus(w, 3));
        assert_eq!(
            problems(&p, &three),
            [
                Problem::CpuReg {
                    path: path("/cpus/cpu@2"),
                    reg: Some(2),
                    vcpus: 2,
                },
                Problem::TooManyCpus {
                    path: path("/cpus"),
                    count: 3,
                    vcpus: 2,
                },
            ]
        );
        // The two-vCPU victim's own tree, for a one-vCPU victim: its second
        // vCPU and that vCPU's redistributor frames are too many.
        let mut one_cpu = victim();
        one_cpu.cpus.truncate(1);
        let got = check(&one_cpu, Some(V3), &generate(&p, V3));
        assert_eq!(
            codes(&got),
            ["dtb-cpu-reg", "dtb-too-many-cpus", "dtb-not-owned"],
            "{got:?}"
        );
        assert_eq!(
            got[1].to_string(),
            "device tree /cpus: 2 cpu nodes, but the domain has 1 vCPUs"
        );

        // Fewer nodes are fine (and so is no /cpus at all).
        assert_eq!(problems(&p, &tree(|w| cpus(w, 1))), []);
        assert_eq!(problems(&p, &tree(nothing)), []);

        let custom = |body: fn(W<'_, '_>)| {
            tree(|w| {
                node(w, "cpus", |w| {
                    w.prop_u32("#address-cells", 2).unwrap();
                    w.prop_u32("#size-cells", 0).unwrap();
                    body(w);
                })
            })
        };
        // Two-cell reg, cpu-map and other helpers are fine; nodes named cpu
        // count even without device_type.
        let fine = custom(|w| {
            node(w, "cpu@1", |w| w.prop_u64s("reg", &[1]).unwrap());
            node(w, "cpu@0", |w| {
                w.prop_str("device_type", "cpu").unwrap();
                w.prop_u64s("reg", &[0]).unwrap();
            });
            node(w, "cpu-map", |w| {
                node(w, "cluster0", |w| {
                    node(w, "core0", |w| w.prop_u32("cpu", 1).unwrap())
                })
            });
            node(w, "l2-cache", |w| w.prop_u32("cache-level", 2).unwrap());
        });
        assert_eq!(problems(&p, &fine), []);
        let bad = custom(|w| {
            node(w, "cpu@100", |w| w.prop_u64s("reg", &[0x100]).unwrap());
            node(w, "cpu@1", nothing);
            node(w, "core", |w| {
                w.prop_str("device_type", "cpu").unwrap();
                w.prop_cells("reg", &[0, 0, 0]).unwrap();
            });
            node(w, "cpu@big", |w| w.prop_u64s("reg", &[1 << 32]).unwrap());
        });
        assert_eq!(
            problems(&p, &bad),
            [
                Problem::CpuReg {
                    path: path("/cpus/cpu@100"),
                    reg: Some(0x100),
                    vcpus: 2,
                },
                Problem::CpuReg {
                    path: path("/cpus/cpu@1"),
                    reg: None,
                    vcpus: 2,
                },
                Problem::CpuReg {
                    path: path("/cpus/core"),
                    reg: None,
                    vcpus: 2,
                },
                Problem::CpuReg {
                    path: path("/cpus/cpu@big"),
                    reg: Some(1 << 32),
                    vcpus: 2,
                },
                Problem::TooManyCpus {
                    path: path("/cpus"),
                    count: 4,
                    vcpus: 2,
                },
            ]
        );
        // Even a 2/2 /cpus does not make its cpu nodes' reg MMIO.
        let wide = tree(|w| {
            node(w, "cpus", |w| {
                w.prop_u32("#address-cells", 2).unwrap();
                w.prop_u32("#size-cells", 2).unwrap();
                node(w, "cpu@0", |w| w.prop_u64s("reg", &[0]).unwrap());
            })
        });
        assert_eq!(problems(&p, &wide), []);
    }

    #[test]
    fn truncated_blobs_are_malformed() {
        let p = victim();
        let blob = generate(&p, V3);
        for len in 0..blob.len() {
            let got = problems(&p, &blob[..len]);
            assert_eq!(codes(&got), ["dtb-malformed"], "{len} bytes");
            assert!(got[0]
                .to_string()
                .starts_with("device tree: not a valid device tree blob: "));
        }
        // Trailing bytes after totalsize are ignored.
        let mut longer = blob.clone();
        longer.extend([0xff; 64]);
        assert_eq!(check(&p, Some(V3), &longer), []);
    }

    #[test]
    fn corrupted_blobs_never_panic() {
        let p = attacker();
        let blob = generate(&p, V2);
        let run = |b: &[u8]| {
            for gic in GICS {
                let _ = check_supplied(&p, gic, b);
            }
        };
        for at in 0..blob.len() {
            for value in [0x00, 0xff, 0x01, 0x03, 0x80] {
                let mut m = blob.clone();
                m[at] = value;
                run(&m);
            }
        }
        // Random multi-byte damage (a fixed xorshift sequence).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut m = blob.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % m.len() as u64) as usize;
                m[at] = next() as u8;
            }
            run(&m);
        }
    }

    #[test]
    fn disabled_nodes_are_skipped() {
        let p = victim();
        let foreign = |status: Option<&'static str>| {
            with(&p, move |w| {
                dev(w, "uart@9040000", 0x0904_0000, 0x1000, |w| {
                    if let Some(s) = status {
                        w.prop_str("status", s).unwrap();
                    }
                    w.prop_cells("interrupts", &[0, 8, 4]).unwrap();
                    w.prop_cells("interrupts-extended", &[1, 0, 8, 4]).unwrap();
                    dev(w, "child@9050000", 0x0905_0000, 0x1000, nothing);
                })
            })
        };
        assert_eq!(problems(&p, &foreign(Some("disabled"))), []);
        for status in [None, Some("okay"), Some("fail")] {
            assert_eq!(
                codes(&problems(&p, &foreign(status))),
                [
                    "dtb-unsupported-property",
                    "dtb-foreign-spi",
                    "dtb-not-owned",
                    "dtb-not-owned"
                ],
                "{status:?}"
            );
        }
    }

    #[test]
    fn too_large_blobs_are_rejected() {
        let p = victim();
        let mut blob = generate(&p, V3);
        blob.resize(DTB_MAX, 0);
        assert_eq!(check(&p, Some(V3), &blob), []);
        blob.push(0);
        let got = problems(&p, &blob);
        assert_eq!(
            got,
            [Problem::TooLarge {
                size: DTB_MAX + 1,
                max: DTB_MAX,
            }]
        );
        assert_eq!(
            got[0].to_string(),
            "device tree: 16385 bytes is larger than the 16384-byte limit"
        );
    }

    #[test]
    fn root_cells_must_be_two_and_two() {
        let p = victim();
        for (a, s) in [
            (Some(1), Some(1)),
            (Some(2), Some(1)),
            (None, Some(2)),
            (None, None),
        ] {
            let blob = tree_with_root_cells(a, s, |w| base(w, &p));
            let got = problems(&p, &blob);
            assert_eq!(
                got,
                [Problem::RootCells {
                    address_cells: a,
                    size_cells: s,
                }]
            );
            assert!(got[0]
                .to_string()
                .starts_with("device tree /: #address-cells is "));
        }
        // A root cell count that is not one cell.
        let blob = tree_with_root_cells(None, Some(2), |w| {
            w.prop_u64s("#address-cells", &[2]).unwrap()
        });
        assert_eq!(codes(&problems(&p, &blob)), ["dtb-root-cells"]);
    }

    #[test]
    fn chosen_may_hold_anything() {
        let p = victim();
        let foreign = |w: W<'_, '_>| {
            w.prop_u64s("reg", &[0x0904_0000, 0x1000]).unwrap();
            w.prop_cells("interrupts", &[0, 99, 4, 7]).unwrap();
            w.prop_cells("interrupts-extended", &[1]).unwrap();
            w.prop_str("device_type", "memory").unwrap();
        };
        let blob = with(&p, |w| {
            node(w, "chosen", |w| {
                foreign(w);
                node(w, "framebuffer@9040000", foreign);
            })
        });
        assert_eq!(problems(&p, &blob), []);
        // Only the first /chosen; a node merely called chosen@0 is a node.
        let second = with(&p, |w| {
            node(w, "chosen", nothing);
            node(w, "chosen", |w| foreign(w));
            node(w, "chosen@0", |w| foreign(w));
        });
        assert_eq!(
            codes(&problems(&p, &second)),
            [
                "dtb-memory-outside-ram",
                "dtb-unsupported-property",
                "dtb-bad-length",
                "dtb-memory-outside-ram",
                "dtb-unsupported-property",
                "dtb-bad-length",
            ]
        );
    }

    #[test]
    fn reg_is_read_only_where_addresses_are_guest_physical() {
        let p = victim();
        // An I2C bus and a 1/1 bus without ranges: not guest-physical.
        let other = with(&p, |w| {
            dev(w, "i2c@9010000", 0x0901_0000, 0x1000, |w| {
                w.prop_u32("#address-cells", 1).unwrap();
                w.prop_u32("#size-cells", 0).unwrap();
                node(w, "eeprom@50", |w| w.prop_u32("reg", 0x50).unwrap());
            });
            node(w, "bus", |w| {
                w.prop_u32("#address-cells", 1).unwrap();
                w.prop_u32("#size-cells", 1).unwrap();
                node(w, "x@0", |w| w.prop_cells("reg", &[0, 0x1000]).unwrap());
            });
        });
        assert_eq!(problems(&p, &other), []);
        // 2/2 buses without ranges, at any depth (and whatever is above them).
        let deep = with(&p, |w| {
            node(w, "soc", |w| {
                w.prop_u32("#address-cells", 2).unwrap();
                w.prop_u32("#size-cells", 2).unwrap();
                node(w, "bus", |w| {
                    // Cells inherited from /soc.
                    dev(w, "rtc@9010000", 0x0901_0000, 0x1000, nothing);
                    dev(w, "uart@9040000", 0x0904_0000, 0x1000, nothing);
                })
            });
            node(w, "i2c", |w| {
                w.prop_u32("#address-cells", 1).unwrap();
                w.prop_u32("#size-cells", 0).unwrap();
                node(w, "mux", |w| {
                    w.prop_u32("#address-cells", 2).unwrap();
                    w.prop_u32("#size-cells", 2).unwrap();
                    dev(w, "uart@9050000", 0x0905_0000, 0x1000, nothing);
                })
            });
        });
        assert_eq!(
            problems(&p, &deep),
            [
                Problem::NotOwned {
                    path: path("/soc/bus/uart@9040000"),
                    property: "reg",
                    range: Range::new(0x0904_0000, 0x1000),
                },
                Problem::NotOwned {
                    path: path("/i2c/mux/uart@9050000"),
                    property: "reg",
                    range: Range::new(0x0905_0000, 0x1000),
                },
            ]
        );
        // Bad reg lengths and cell counts.
        let bad = with(&p, |w| {
            node(w, "x", |w| {
                w.prop_cells("reg", &[0, 0x0901_0000, 0]).unwrap()
            });
            node(w, "y", |w| w.prop_u64s("#size-cells", &[2]).unwrap());
        });
        assert_eq!(
            problems(&p, &bad),
            [
                Problem::BadLength {
                    path: path("/x"),
                    property: "reg",
                    bytes: 12,
                    entry: 16,
                },
                Problem::BadLength {
                    path: path("/y"),
                    property: "#size-cells",
                    bytes: 8,
                    entry: 4,
                },
            ]
        );
        // An empty reg names nothing.
        let empty = with(&p, |w| node(w, "x", |w| w.prop_empty("reg").unwrap()));
        assert_eq!(problems(&p, &empty), []);
    }

    #[test]
    fn address_translation_cannot_reach_foreign_hardware() {
        let p = victim(); // owns 0x9010000 (RTC) and 0x9000000 (console)
        let soc = |cells: (u32, u32), ranges: &'static [u32], body: fn(W<'_, '_>)| {
            with(&p, move |w| {
                node(w, "soc", |w| {
                    w.prop_u32("#address-cells", cells.0).unwrap();
                    w.prop_u32("#size-cells", cells.1).unwrap();
                    w.prop_cells("ranges", ranges).unwrap();
                    body(w);
                })
            })
        };
        let child = |w: W<'_, '_>| {
            node(w, "uart@0", |w| w.prop_cells("reg", &[0, 0x1000]).unwrap());
        };
        // 1/1 bus, child 0 at the RTC: children are not looked at.
        let owned = soc((1, 1), &[0, 0, 0x0901_0000, 0x1000], child);
        assert_eq!(problems(&p, &owned), []);
        // The window is another domain's.
        let foreign = soc((1, 1), &[0, 0, 0x0904_0000, 0x1000], child);
        assert_eq!(
            problems(&p, &foreign),
            [Problem::NotOwned {
                path: path("/soc"),
                property: "ranges",
                range: Range::new(0x0904_0000, 0x1000),
            }]
        );
        // Several windows, one of them too big.
        let two = soc(
            (1, 1),
            &[0, 0, 0x0901_0000, 0x1000, 0x1000, 0, 0x0900_0000, 0x2000],
            child,
        );
        assert_eq!(
            problems(&p, &two),
            [Problem::NotOwned {
                path: path("/soc"),
                property: "ranges",
                range: Range::new(0x0900_0000, 0x2000),
            }]
        );
        // PCI-like: three child cells, two size cells.
        let pci = soc(
            (3, 2),
            &[0x0200_0000, 0, 0, 0, 0x0901_0000, 0, 0x1000],
            nothing,
        );
        assert_eq!(problems(&p, &pci), []);
        // Identity (empty ranges) with 1/1: children read with one cell each.
        let identity = |reg: &'static [u32]| {
            with(&p, move |w| {
                node(w, "soc", |w| {
                    w.prop_u32("#address-cells", 1).unwrap();
                    w.prop_u32("#size-cells", 1).unwrap();
                    w.prop_empty("ranges").unwrap();
                    node(w, "dev", |w| w.prop_cells("reg", reg).unwrap());
                })
            })
        };
        assert_eq!(problems(&p, &identity(&[0x0901_0000, 0x1000])), []);
        assert_eq!(
            problems(&p, &identity(&[0x0904_0000, 0x1000])),
            [Problem::NotOwned {
                path: path("/soc/dev"),
                property: "reg",
                range: Range::new(0x0904_0000, 0x1000),
            }]
        );
        assert_eq!(
            codes(&problems(&p, &identity(&[0x0901_0000, 0x1000, 0]))),
            ["dtb-bad-length"]
        );
        // Cell counts that cannot be read.
        let wide = soc((1, 3), &[0, 0, 0x0901_0000, 0, 0, 0x1000], nothing);
        assert_eq!(
            problems(&p, &wide),
            [Problem::UnsupportedCells {
                path: path("/soc"),
                address_cells: 1,
                size_cells: 3,
            }]
        );
        let wide_child = soc((4, 1), &[0, 0, 0, 0, 0, 0x0901_0000, 0x1000], nothing);
        assert_eq!(codes(&problems(&p, &wide_child)), ["dtb-unsupported-cells"]);
        let wide_identity = soc((3, 2), &[], nothing);
        assert_eq!(
            codes(&problems(&p, &wide_identity)),
            ["dtb-unsupported-cells"]
        );
        // A ranges of the wrong length.
        let ragged = soc((1, 1), &[0, 0, 0x0901_0000], child);
        assert_eq!(
            problems(&p, &ragged),
            [Problem::BadLength {
                path: path("/soc"),
                property: "ranges",
                bytes: 12,
                entry: 16,
            }]
        );
        // Behind a translated bus, nested buses are not looked at either.
        let nested = soc((1, 1), &[0, 0, 0x0901_0000, 0x1000], |w| {
            node(w, "inner", |w| {
                w.prop_u32("#address-cells", 2).unwrap();
                w.prop_u32("#size-cells", 2).unwrap();
                w.prop_cells("ranges", &[0, 0, 0, 0x0904_0000, 0, 0x1000])
                    .unwrap();
                dev(w, "x@0", 0, 0x1000, nothing);
            })
        });
        assert_eq!(problems(&p, &nested), []);
        // Interrupts behind a translation are still checked.
        let irq = soc((1, 1), &[0, 0, 0x0901_0000, 0x1000], |w| {
            node(w, "x", |w| w.prop_cells("interrupts", &[0, 5, 4]).unwrap())
        });
        assert_eq!(codes(&problems(&p, &irq)), ["dtb-foreign-spi"]);
        // A ranges under a non-guest-physical parent leads nowhere.
        let nowhere = with(&p, |w| {
            node(w, "i2c", |w| {
                w.prop_u32("#address-cells", 1).unwrap();
                w.prop_u32("#size-cells", 0).unwrap();
                node(w, "bridge", |w| {
                    w.prop_u32("#address-cells", 2).unwrap();
                    w.prop_u32("#size-cells", 2).unwrap();
                    w.prop_cells("ranges", &[0, 0, 0x50, 0, 0x1000]).unwrap();
                    dev(w, "x@0", 0, 0x1000, nothing);
                })
            })
        });
        assert_eq!(problems(&p, &nowhere), []);
    }

    #[test]
    fn wrapping_and_empty_ranges() {
        let p = victim();
        let blob = with(&p, |w| {
            dev(w, "top", u64::MAX - 0xfff, 0x2000, nothing);
            dev(w, "empty-in", 0x0901_0800, 0, nothing);
            dev(w, "empty-out", 0x0904_0000, 0, nothing);
        });
        let got = problems(&p, &blob);
        assert_eq!(
            got,
            [
                Problem::NotOwned {
                    path: path("/top"),
                    property: "reg",
                    range: Range::new(u64::MAX - 0xfff, 0x2000),
                },
                Problem::NotOwned {
                    path: path("/empty-out"),
                    property: "reg",
                    range: Range::new(0x0904_0000, 0),
                },
            ]
        );
        assert!(got[0].to_string().contains("0xfffffffffffff000+0x2000"));
    }

    #[test]
    fn covered_takes_the_union() {
        let owned = [
            Range::new(0x1000, 0x1000),
            Range::new(0x3000, 0x1000),
            Range::new(0x2000, 0x1000),
            Range::new(0x8000, 0),
        ];
        assert!(covered(Range::new(0x1000, 0x3000), &owned));
        assert!(covered(Range::new(0x1800, 0x2000), &owned));
        assert!(!covered(Range::new(0x1000, 0x3001), &owned));
        assert!(!covered(Range::new(0xfff, 0x10), &owned));
        assert!(!covered(Range::new(0x8000, 0x1), &owned));
        assert!(!covered(Range::new(0x8000, 0), &owned));
        assert!(covered(Range::new(0x3fff, 0), &owned));
        assert!(!covered(Range::new(0x4000, 0), &owned));
        assert!(!covered(Range::new(u64::MAX, 2), &owned));
        assert!(!covered(Range::new(0x1000, 0x1000), &[]));
        // A range reaching the very top has no representable end
        // (`Range::end`): never covered, like `Range::contains` says.
        let top = [Range::new(u64::MAX - 0xfff, 0x1000)];
        assert!(!covered(Range::new(u64::MAX - 0xfff, 0x1000), &top));
        assert!(!covered(Range::new(u64::MAX - 0xfff, 0x1001), &top));
        assert!(covered(Range::new(u64::MAX - 0xfff, 0x800), &top));
        assert!(covered(Range::new(u64::MAX, 0), &top));
    }

    #[test]
    fn problems_are_capped() {
        let p = victim();
        let blob = with(&p, |w| {
            for i in 0..20u64 {
                let at = 0x1000_0000 + i * 0x1000;
                dev(w, &format!("x@{at:x}"), at, 0x1000, nothing);
            }
        });
        let err = check_supplied(&p, None, &blob).unwrap_err();
        assert_eq!(err.len(), MAX_PROBLEMS);
        assert!(err.overflowed());
        let text = err.to_string();
        assert_eq!(text.lines().count(), MAX_PROBLEMS + 1);
        assert!(text.ends_with("(more than 16 problems; the rest are not shown)"));
        // Under the cap, no note.
        let few = with(&p, |w| dev(w, "x", 0x1000_0000, 0x1000, nothing));
        let err = check_supplied(&p, None, &few).unwrap_err();
        assert!(!err.overflowed());
        assert_eq!(err.to_string().lines().count(), 1);
    }

    #[test]
    fn long_paths_are_cut_short() {
        let p = victim();
        fn nest(w: W<'_, '_>, left: usize) {
            if left == 0 {
                dev(w, "uart@9040000", 0x0904_0000, 0x1000, nothing);
            } else {
                node(w, &"n".repeat(60), |w| nest(w, left - 1));
            }
        }
        let blob = with(&p, |w| nest(w, 28));
        let got = problems(&p, &blob);
        assert_eq!(codes(&got), ["dtb-not-owned"]);
        let path = got[0].path().unwrap();
        assert!(path.starts_with("/nnnn") && path.ends_with("..."), "{path}");
        assert!(path.len() <= crate::error::PATH_LEN);
        // Deeper than the FDT checker allows: malformed, not a crash.
        let blob = with(&p, |w| nest(w, 40));
        assert_eq!(codes(&problems(&p, &blob)), ["dtb-malformed"]);
    }

    #[test]
    fn codes_are_unique_kebab_case_and_complete() {
        let r = Range::new(0x1000, 0x1000);
        let all = [
            Problem::Malformed {
                error: FdtError::MissingRoot,
            },
            Problem::TooLarge { size: 1, max: 0 },
            Problem::RootCells {
                address_cells: None,
                size_cells: Some(1),
            },
            Problem::TooManyCpus {
                path: path("/cpus"),
                count: 3,
                vcpus: 2,
            },
            Problem::CpuReg {
                path: path("/cpus/cpu@9"),
                reg: Some(9),
                vcpus: 2,
            },
            Problem::BadLength {
                path: path("/x"),
                property: "reg",
                bytes: 3,
                entry: 16,
            },
            Problem::MemoryOutsideRam {
                path: path("/memory@0"),
                range: r,
            },
            Problem::NotOwned {
                path: path("/x"),
                property: "reg",
                range: r,
            },
            Problem::UnsupportedCells {
                path: path("/soc"),
                address_cells: 1,
                size_cells: 3,
            },
            Problem::ForeignSpi {
                path: path("/x"),
                spi: 1,
            },
            Problem::InterruptType {
                path: path("/x"),
                kind: 2,
                number: 1,
            },
            Problem::UnsupportedProperty {
                path: path("/x"),
                property: "interrupt-map",
            },
        ];
        let codes: Vec<_> = all.iter().map(|p| p.code()).collect();
        assert_eq!(codes, Problem::CODES);
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len(), "codes are unique");
        for c in &codes {
            assert!(c.starts_with("dtb-"), "{c}");
            assert!(
                c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{c}"
            );
        }
        for p in &all {
            let text = p.to_string();
            assert!(text.starts_with("device tree"), "{text}");
            assert!(!text.contains('\n'), "{text}");
            if let Some(path) = p.path() {
                assert!(text.contains(&format!("{path}: ")), "{text}");
            }
        }
    }

    /// `enter` keeps the longest prefix of a name that fits, cut at a
    /// character boundary, as pushing it character by character did.
    #[test]
    fn path_cut_at_a_character() {
        let mut walk = Walk::new(&attacker(), None, Problems::new());
        let long = "a".repeat(PATH_BUF - 3);
        walk.enter(&long);
        assert_eq!(walk.path.len(), PATH_BUF - 2);
        let mark = walk.enter("\u{e9}\u{e9}");
        assert_eq!(walk.path.len(), PATH_BUF - 1, "'/' fits, 'é' does not");
        walk.leave(mark);
        walk.enter("b\u{e9}");
        assert_eq!(walk.path.len(), PATH_BUF);
        assert!(walk.path.ends_with("/b"));
        let mark = walk.enter("c");
        assert_eq!(walk.path.len(), PATH_BUF, "full: not even '/'");
        walk.leave(mark);
        assert_eq!(walk.here().len(), crate::error::PATH_LEN);
    }
}
